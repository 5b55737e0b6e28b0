"""Anti-scatter grid lines: found in a cine and taken out of its frames before tracking (issue #13).

A stationary anti-scatter grid leaves straight, evenly spaced lines along the detector's rows or columns
(or their moire at another period, still straight and even). They do not move with the patient: a body's
template holds them at the reference pose, and on a frame where the body has moved by about a whole
period the rigid fit is pulled to put them back in place (on the held-out acquisition phantom 800017,
C5 misread on a frame by 2-3.7 degrees; every other body and frame as without the lines).

:func:`find_grid` looks for the lines in the mean of the frames (the lines add up, the moving anatomy
blurs) averaged along each axis: a 1-D profile, in whose spectrum a grid is a narrow line far above
its surroundings (JPEG's 8 x 8 blocks, which leave such lines at 8/k px, excepted).
:func:`remove_grid` takes them out of each frame: per pixel, a least-squares fit of a cosine and a sine
of the grid's period (each harmonic that stands out) to the frame high-passed across the lines, over a
window of a few periods (the display's gamma makes the lines' contrast follow the local grey level),
with saturated regions and strong edges left out of the fit (a blade's edge parallel to the lines holds
the grid's frequency too: on development phantom 900007, taken for lines, it left the lines in at the
image's side and C7 was pinned, 5 degrees off); the lines rebuilt from the fit are subtracted. What
the anatomy holds at the grid's exact frequency goes with them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Frames (evenly spread) whose mean is searched for the lines.
MEAN_FRAMES = 60
#: Periods searched, in pixels (the shortest a sampled line can have, to about 1.5 mm at 0.15 mm/px).
MIN_PERIOD_PX, MAX_PERIOD_PX = 2.05, 10.0
#: A line in the profile's spectrum is a grid when its power is this many times the spectrum's median
#: around it (within a fifth of its frequency either side).
MIN_PEAK_RATIO = 200.0
#: A harmonic of the grid is taken out too when its own power is this many times the spectrum around it.
MIN_HARMONIC_RATIO = 10.0
#: JPEG's 8 x 8 pixel blocks leave a faint pattern of period 8 / k pixels (k = 1, 2, 3 in the band
#: searched): a line within this share of such a period, with another of them standing out too
#: (:data:`MIN_HARMONIC_RATIO`), is the blocks of a lossy compression, not a grid.
BLOCK_PX, BLOCK_TOLERANCE = 8.0, 0.01
#: Harmonics considered (the fundamental is the first).
MAX_HARMONICS = 4
#: Zero-padding factor of the profile's spectrum (the period falls between the plain bins).
PAD = 8
#: A pixel whose high-pass across the lines exceeds this many times the frame's typical (robust sd)
#: is a strong edge: it and its neighbours within a period are left out of the lines' fit.
EDGE_SCALES = 4.0
#: Share of a window that must be fitted for the lines there to be estimated (else left in).
MIN_SUPPORT = 0.05
#: Demodulation low-pass: Gaussian sigma across the lines, in periods, and along them, in pixels.
SIGMA_PERIODS, SIGMA_ALONG_PX = 5.0, 25.0


@dataclass(frozen=True)
class Grid:
    """Straight, evenly spaced lines along one image axis.

    Attributes
    ----------
    axis : int
        The image axis along which the lines' profile repeats: 1 (lines run up and down, the
        profile is along x) or 0 (lines run across, along y).
    period_px : float
        Distance between lines, in pixels.
    harmonics : tuple of int
        The harmonics of ``1 / period_px`` taken out (1 the fundamental), each below the Nyquist limit.
    ratio : float
        The fundamental's power over the spectrum's median around it (how plainly it stands out).
    """

    axis: int
    period_px: float
    harmonics: tuple[int, ...]
    ratio: float

    def describe(self) -> str:
        lines = "up and down" if self.axis == 1 else "across"
        return f"anti-scatter grid lines running {lines}, every {self.period_px:.2f} px"


def _profile(mean: np.ndarray, axis: int) -> np.ndarray:
    """The mean image averaged across ``axis``'s lines, with its slow trend taken off."""
    p = mean.mean(axis=1 - axis)
    n = p.size
    k = max(3, int(4 * MAX_PERIOD_PX)) | 1
    trend = np.convolve(np.pad(p, k // 2, mode="reflect"), np.ones(k) / k, mode="valid")
    return p - trend[:n]


def _spectrum(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = profile.size
    w = np.hanning(n)
    power = np.abs(np.fft.rfft(profile * w, n=PAD * n)) ** 2
    return np.fft.rfftfreq(PAD * n), power


def _background(power: np.ndarray, k: int) -> float:
    """The spectrum's level around bin ``k``: the median within a fifth of its frequency either side,
    the line itself (a few bins) left out."""
    half = max(int(0.2 * k), 4 * PAD)
    lo, hi = max(k - half, 1), min(k + half + 1, power.size)
    near = np.concatenate([power[lo : max(k - 2 * PAD, lo)], power[min(k + 2 * PAD + 1, hi) : hi]])
    return float(np.median(near)) if near.size else float("inf")


def _near_line(power: np.ndarray, j: int) -> float:
    """How far the strongest bin within ``PAD`` of bin ``j`` stands above the spectrum around ``j``: a line
    expected at ``j`` (a harmonic, another period of JPEG's blocks), its sub-bin place unknown."""
    near = power[max(j - PAD, 0) : j + PAD + 1]
    return float(near.max()) / _background(power, j) if near.size else 0.0


def _strongest_line(power: np.ndarray, band: np.ndarray) -> tuple[int, float]:
    """The bin of ``band`` standing out most above its surroundings (a local maximum), and by how much."""
    best, best_ratio = -1, 0.0
    inner = band[(band > 0) & (band < power.size - 1)]
    peaks = inner[(power[inner] >= power[inner - 1]) & (power[inner] >= power[inner + 1])]
    for k in peaks:
        bg = _background(power, int(k))
        r = float(power[k]) / bg if bg > 0 else 0.0
        if r > best_ratio:
            best, best_ratio = int(k), r
    return best, best_ratio


def _jpeg_blocks(f: np.ndarray, power: np.ndarray, k: int) -> bool:
    """Whether the line at bin ``k`` is the 8 x 8 block pattern of JPEG compression: at a period of
    8 / n pixels, with another 8 / m standing out too."""
    periods = [BLOCK_PX / n for n in (1, 2, 3) if MIN_PERIOD_PX <= BLOCK_PX / n <= MAX_PERIOD_PX]
    at = [p for p in periods if abs(1.0 / f[k] - p) <= BLOCK_TOLERANCE * p]
    if not at:
        return False
    step = f[1] - f[0]
    others = [p for p in periods if p != at[0]]
    return any(_near_line(power, int(round(1.0 / p / step))) >= MIN_HARMONIC_RATIO for p in others)


def find_grid(frames: np.ndarray) -> Grid | None:
    """The anti-scatter grid lines of a ``(T, H, W)`` cine (or one ``(H, W)`` frame), or None."""
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    idx = np.unique(np.linspace(0, arr.shape[0] - 1, min(MEAN_FRAMES, arr.shape[0])).round().astype(int))
    mean = np.zeros(arr.shape[1:], np.float64)
    for t in idx:
        mean += arr[t]
    mean /= len(idx)
    best: Grid | None = None
    for axis in (0, 1):
        if mean.shape[axis] < 8 * MAX_PERIOD_PX:
            continue
        f, power = _spectrum(_profile(mean, axis))
        band = np.flatnonzero((f >= 1.0 / MAX_PERIOD_PX) & (f <= 1.0 / MIN_PERIOD_PX))
        k, ratio = _strongest_line(power, band)
        if ratio < MIN_PEAK_RATIO:
            continue
        if _jpeg_blocks(f, power, k):
            continue
        # sub-bin peak (parabola through the log power of the peak and its neighbours)
        a, b, c = np.log(power[k - 1 : k + 2])
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) < 0 else 0.0
        freq = float(f[k] + shift * (f[1] - f[0]))
        harmonics = [1]
        for h in range(2, MAX_HARMONICS + 1):
            fh = h * freq
            if fh >= 0.5 - 2.0 / mean.shape[axis]:
                break
            if _near_line(power, int(round(fh / (f[1] - f[0])))) >= MIN_HARMONIC_RATIO:
                harmonics.append(h)
        if best is None or ratio > best.ratio:
            best = Grid(axis=axis, period_px=1.0 / freq, harmonics=tuple(harmonics), ratio=ratio)
    return best


def _box(sigma: float) -> int:
    """Width of a box whose three passes make a Gaussian of ``sigma`` (odd, at least 1)."""
    return max(1, int(round(np.sqrt(4.0 * sigma**2 + 1.0))) | 1)


def _lowpass(a: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Three box passes (a Gaussian of sigma ``sx`` by ``sy`` to within a few per cent; the cost of a box
    does not grow with its width)."""
    import cv2

    size = (_box(sx), _box(sy))
    for _ in range(3):
        a = cv2.blur(a, size, borderType=cv2.BORDER_CONSTANT)
    return a


def _sigmas(grid: Grid, harmonic: int) -> tuple[float, float]:
    """The demodulation low-pass's (x, y) sigmas for one harmonic."""
    across = SIGMA_PERIODS * grid.period_px / harmonic
    return (across, SIGMA_ALONG_PX) if grid.axis == 1 else (SIGMA_ALONG_PX, across)


def _saturated_regions(img: np.ndarray) -> np.ndarray:
    """The saturated, flat regions of ``img`` (float32: :func:`dmx.tracking.robust.flat_saturated`, the
    static mask's test) with their 2-pixel rim back. Single pixels clipped in the noise are not regions:
    the lines are taken out of them like any other (their value had been cut where a line pushed it)."""
    import cv2

    from dmx.tracking.robust import flat_saturated

    return cv2.dilate(flat_saturated(img).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def _across(a: np.ndarray, grid: Grid, sigma: float) -> np.ndarray:
    """Gaussian blur of ``a`` across the lines only (sigma in pixels)."""
    import cv2

    sx, sy = (sigma, 0.1) if grid.axis == 1 else (0.1, sigma)
    return cv2.GaussianBlur(a, (0, 0), sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)


def remove_grid(frame: np.ndarray, grid: Grid) -> np.ndarray:
    """``frame`` (2-D, any real dtype; not modified) as float32 with ``grid``'s lines taken out.

    The lines' local amplitude and phase (each harmonic) are a least-squares fit of a cosine and a sine
    of the grid's period to the frame high-passed across the lines, in a window of
    :data:`SIGMA_PERIODS` periods across and :data:`SIGMA_ALONG_PX` along them, with two kinds of pixel
    left out of the fit (not of the correction): saturated regions (a collimator blade, a burned-out
    background: they hold no lines, and keep their value) and, with a period around them, strong edges
    (a blade's, a bone's: beyond :data:`EDGE_SCALES` times the frame's typical high-pass), whose own
    content at the grid's frequency would be taken for lines. The result stays within the frame's range
    (the tracker finds the blades by their saturated, flat value: :func:`dmx.tracking.robust.static_mask`).
    """
    import cv2

    img = np.asarray(frame, dtype=np.float32)
    lo, hi = float(img.min()), float(img.max())
    if not hi > lo:
        return img.copy()
    n = img.shape[grid.axis]
    pos = np.arange(n, dtype=np.float64)
    shape = (n, 1) if grid.axis == 0 else (1, n)
    saturated = _saturated_regions(img)
    # the lines kept, the level and every slower change taken off
    high = img - _across(img, grid, grid.period_px)
    field = ~saturated
    scale = 1.4826 * float(np.median(np.abs(high[field]))) if field.any() else 0.0
    strong = (np.abs(high) > EDGE_SCALES * scale) & field
    reach = max(3, int(round(grid.period_px))) | 1
    kernel = np.ones(
        (3, reach) if grid.axis == 1 else (reach, 3), np.uint8
    )  # (rows, columns): across the lines
    strong = cv2.dilate(strong.astype(np.uint8), kernel) > 0
    weight = (field & ~strong).astype(np.float32)
    out = img.copy()
    for h in grid.harmonics:
        phase = 2 * np.pi * h * pos / grid.period_px
        c = np.cos(phase).astype(np.float32).reshape(shape)
        s = np.sin(phase).astype(np.float32).reshape(shape)
        sx, sy = _sigmas(grid, h)
        wc, ws = weight * c, weight * s
        # normal equations of (a, b) in a c + b s, per pixel, over the window
        cc = _lowpass(wc * c, sx, sy)
        cs = _lowpass(wc * s, sx, sy)
        ss = _lowpass(weight, sx, sy) - cc
        hc = _lowpass(wc * high, sx, sy)
        hs = _lowpass(ws * high, sx, sy)
        det = cc * ss - cs * cs
        ok = det > MIN_SUPPORT**2 / 4  # enough of the window fitted (a quarter: both halves of a period)
        det = np.where(ok, det, 1.0)
        a = np.where(ok, (ss * hc - cs * hs) / det, 0.0)
        b = np.where(ok, (cc * hs - cs * hc) / det, 0.0)
        out -= (a * c + b * s) * field
    return np.clip(out, lo, hi, out=out)


def without_grid(frames: np.ndarray, grid: Grid, *, threads: int = 1) -> np.ndarray:
    """A ``(T, H, W)`` cine with ``grid``'s lines taken out of every frame (a new array; ``frames`` is
    not modified): integer frames stay in their dtype (rounded), others become float32, so that the
    copy takes no more memory than the frames. ``threads`` frames at a time (OpenCV and numpy release
    the GIL; the result is the same)."""
    arr = np.asarray(frames)
    integer = np.issubdtype(arr.dtype, np.integer)
    out = np.empty(arr.shape, arr.dtype if integer else np.float32)

    def one(t: int) -> None:
        clean = remove_grid(arr[t], grid)
        out[t] = np.rint(clean) if integer else clean

    if threads > 1 and arr.shape[0] > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(arr.shape[0])))
    else:
        for t in range(arr.shape[0]):
            one(t)
    return out
