"""Robust rigid registration of one vertebral body template to one frame.

The core of the tracker: an inverse-compositional Lucas-Kanade fit over the
Euclidean group (rotation + translation, 3 parameters) with a per-iteration
gain/bias photometric normalisation and iteratively re-weighted least squares
(Huber, then Tukey) so that an occluder over part of the body (mandible,
shoulder, skull base) is rejected instead of pulling the fit. Coarse to fine
over a small Gaussian pyramid built on a region of interest only.

All transforms are 3x3 matrices in full-resolution pixel coordinates
(x = column, y = row, centre of the top-left pixel = (0, 0)) mapping
reference-frame coordinates to the frame.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

_TUKEY_C = 4.685


def rigid(theta_rad: float, tx_px: float, ty_px: float, centre_px: np.ndarray) -> np.ndarray:
    """3x3 rotation by ``theta_rad`` about ``centre_px`` followed by a translation."""
    c, s = math.cos(theta_rad), math.sin(theta_rad)
    cx, cy = float(centre_px[0]), float(centre_px[1])
    return np.array(
        [[c, -s, cx - c * cx + s * cy + tx_px], [s, c, cy - s * cx - c * cy + ty_px], [0.0, 0.0, 1.0]]
    )


def rigid_params(a: np.ndarray, centre_px: np.ndarray) -> np.ndarray:
    """``(theta_rad, tx_px, ty_px)`` of rigid ``a``: rotation, and displacement of ``centre_px``."""
    theta = math.atan2(a[1, 0], a[0, 0])
    moved = a[:2, :2] @ centre_px + a[:2, 2]
    return np.array([theta, moved[0] - centre_px[0], moved[1] - centre_px[1]])


def _level_matrix(scale: float) -> np.ndarray:
    """Full-resolution coordinates -> pyramid level coordinates (cv2.pyrDown pixel-centre convention)."""
    off = 0.5 / scale - 0.5
    return np.array([[1.0 / scale, 0.0, off], [0.0, 1.0 / scale, off], [0.0, 0.0, 1.0]])


def _level_matrix_inv(scale: float) -> np.ndarray:
    off = 0.5 / scale - 0.5
    return np.array([[scale, 0.0, -off * scale], [0.0, scale, -off * scale], [0.0, 0.0, 1.0]])


def _pyramid(image: np.ndarray, n_levels: int) -> list[np.ndarray]:
    levels = [image]
    for _ in range(1, n_levels):
        levels.append(cv2.pyrDown(levels[-1]))
    return levels


@dataclass(frozen=True)
class _Level:
    scale: float
    shape: tuple[int, int]  # (h, w) of the dense template grid
    origin: tuple[float, float]  # level coordinates of grid pixel (0, 0)
    centre: np.ndarray  # rotation centre, level coordinates
    idx: np.ndarray  # flat indices of the pixels used
    u: np.ndarray  # grid columns of used pixels (float32)
    v: np.ndarray  # grid rows of used pixels (float32)
    values: np.ndarray  # template values (N,)
    weight: np.ndarray  # static weights (N,)
    sd: np.ndarray  # steepest-descent images (N, 3)
    sd_t: np.ndarray  # the same, transposed and contiguous (3, N): cheaper weighted products
    design: np.ndarray  # (4, N) photometric design: template values, 1, x and y (body-size units)

    # float64 copies for the final statistics of every fit (made once)
    @functools.cached_property
    def values64(self) -> np.ndarray:
        return self.values.astype(np.float64)

    @functools.cached_property
    def weight64(self) -> np.ndarray:
        return self.weight.astype(np.float64)

    @functools.cached_property
    def sd64(self) -> np.ndarray:
        return self.sd.astype(np.float64)

    @functools.cached_property
    def all_weighted(self) -> bool:
        """Every used pixel has a positive static weight (then only the frame's edge can hide one)."""
        return bool((self.weight64 > 0).all())

    @functools.cached_property
    def grid_corners(self) -> np.ndarray:
        """Homogeneous grid coordinates (3, 4) of the template grid's corners."""
        h, w = self.shape
        return np.array([[0.0, w - 1, w - 1, 0.0], [0.0, 0.0, h - 1, h - 1], [1.0, 1.0, 1.0, 1.0]])


@dataclass(frozen=True)
class Template:
    """Reference appearance of one vertebral body, precomputed for every pyramid level.

    Build with :func:`make_template`.
    """

    quad_px: np.ndarray  # (4, 2) reference corners
    centre_px: np.ndarray  # (2,) rotation centre (quad centroid)
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the finest template grid
    filter_pad_px: int  # context the prefilter and pyramid need around a frame region
    levels: tuple[_Level, ...]  # finest first
    blur_sigma_px: float
    highpass_sigma_px: float | None
    size_px: float  # sqrt(quad area)
    residual_scale: float  # expected residual std of a good match at the finest level (noise + model error)
    weight_total: float  # sum of static weights at the finest level
    # the share of a good match's ZNCC and gain the template's own noise leaves, where it keeps them below
    # 0.9 (1.0 otherwise, and until calibrated): the quality judges a fit's against it (see
    # dmx.tracking.tracker.match_ceiling)
    match_ceiling: float = 1.0

    @functools.cached_property
    def bbox_corners(self) -> np.ndarray:
        """``(4, 3)`` homogeneous corners of ``bbox`` (made once: :func:`needed_boxes` runs twice a fit)."""
        x0, y0, x1, y1 = self.bbox
        return np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=np.float64)


def _box_size(highpass_sigma: float) -> int:
    """Odd box width whose double application has about the given Gaussian sigma."""
    k = int(round(math.sqrt(6.0 * highpass_sigma**2 + 1.0)))
    return k + 1 - k % 2


def filter_radius(blur_sigma: float, highpass_sigma: float | None) -> int:
    """Pixels of context the prefilter needs on each side."""
    r = int(math.ceil(3 * blur_sigma))
    if highpass_sigma:
        r = max(r, 2 * (_box_size(highpass_sigma) // 2))
    return r


#: Frame dtypes OpenCV filters straight into float32 (no float copy of the region first).
_CV_DEPTHS = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.int16), np.dtype(np.float32))


@functools.lru_cache(maxsize=16)
def _gaussian_kernel(sigma: float) -> np.ndarray:
    """The 1-D kernel cv2.GaussianBlur uses for float images (radius 4 sigma), float32."""
    kernel = cv2.getGaussianKernel(int(round(sigma * 8 + 1)) | 1, sigma, cv2.CV_32F)
    kernel.flags.writeable = False
    return kernel


def _prefilter(img: np.ndarray, sigma: float, highpass_sigma: float | None) -> np.ndarray:
    """Gaussian low-pass (noise, JPEG) minus a wide smooth (soft-tissue shading that does not follow bone).

    ``img`` is any real 2-D array (8/16-bit frames are filtered without a float copy); the result is
    float32. The wide smooth is a box filter applied twice (about Gaussian, cost independent of its width).
    """
    src = img if img.dtype in _CV_DEPTHS else np.asarray(img, dtype=np.float32)
    if sigma > 0:
        kernel = _gaussian_kernel(float(sigma))
        out = cv2.sepFilter2D(src, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT)
    else:
        out = np.array(src, dtype=np.float32)
    if highpass_sigma:
        k = _box_size(highpass_sigma)
        low = cv2.boxFilter(src, cv2.CV_32F, (k, k), borderType=cv2.BORDER_REFLECT)
        low = cv2.boxFilter(low, -1, (k, k), borderType=cv2.BORDER_REFLECT)
        np.subtract(out, low, out=out)
    return out


def _expected_residual(
    raw: np.ndarray, filtered: np.ndarray, mask: np.ndarray, sigma: float, highpass_sigma: float | None
) -> float:
    """Residual std expected between the template and a well-registered frame.

    Image noise (Immerkaer's Laplacian estimate on the raw reference, robust form) carried through the
    prefilter and doubled in variance (template and frame are both noisy), plus a model-error floor of
    3 % of the template contrast (interpolation, compression, non-rigid soft tissue).
    """
    kern = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    lap = cv2.filter2D(raw, cv2.CV_32F, kern, borderType=cv2.BORDER_REFLECT)
    inside = mask > 0.5
    if inside.sum() < 16:
        return 1e-6
    sigma_n = 1.4826 * float(np.median(np.abs(lap[inside]))) / 6.0
    n = 4 * int(math.ceil(3 * max(sigma, highpass_sigma or 0.0))) + 9
    delta = np.zeros((n, n), np.float32)
    delta[n // 2, n // 2] = 1.0
    gain = float(np.sqrt(np.square(_prefilter(delta, sigma, highpass_sigma)).sum()))
    contrast = float(filtered[inside].std())
    return math.sqrt(2.0 * (gain * sigma_n) ** 2 + (0.03 * contrast) ** 2) + 1e-6


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return gx, gy


def make_template(
    reference: np.ndarray,
    quad_px: np.ndarray,
    *,
    exclude_quads_px: tuple[np.ndarray, ...] = (),
    margin_frac: float = 0.15,
    margin_px: float | None = None,
    blur_sigma_px: float = 1.0,
    highpass_sigma_px: float | None = None,
    n_levels: int | None = None,
    max_pixels: int | None = 6000,
    exclude_mask: np.ndarray | None = None,
) -> Template:
    """Precompute the template of one body from the reference frame.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(H, W)`` reference frame (any real dtype; not modified).
    quad_px : numpy.ndarray
        ``(4, 2)`` corners of the body on the reference frame.
    exclude_quads_px : tuple of numpy.ndarray
        Corners of the neighbouring bodies; their pixels (dilated by 2 px) are left out of the template.
    margin_frac : float
        The template covers the body dilated by this fraction of its size (sqrt of area), so that its
        cortical edges and a rim of context are in it.
    margin_px : float or None
        The dilation in pixels instead (0: exactly the quadrilateral), for a region drawn with its rim
        already in it (C1's anterior arch, whose posterior rim must stop short of the dens).
    blur_sigma_px : float
        Gaussian pre-filter applied to template and frames alike (noise, JPEG blocks).
    highpass_sigma_px : float or None
        If given, subtract a Gaussian blur of this sigma (high-pass), for template and frames alike.
    n_levels : int or None
        Pyramid levels; by default as many as keep the coarsest template about 10 px across (max 4).
    max_pixels : int or None
        Use at most about this many template pixels per level (a regular subset) for speed on large
        bodies; None for all.
    exclude_mask : numpy.ndarray or None
        ``(H, W)`` boolean mask of reference pixels to leave out of the template (static structures
        that do not move with the body, e.g. a collimator blade: see
        :func:`dmx.tracking.robust.static_mask`); None for none.
    """
    quad = np.asarray(quad_px, dtype=np.float64)
    h_img, w_img = reference.shape
    x = quad[:, 0]
    y = quad[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    size = max(math.sqrt(area), 4.0)
    margin = max(4.0, margin_frac * size) if margin_px is None else max(float(margin_px), 0.0)
    if n_levels is None:
        n_levels = 1
        while n_levels < 4 and size / 2**n_levels >= 10:
            n_levels += 1
    filter_pad = filter_radius(blur_sigma_px, highpass_sigma_px) + 2 ** (n_levels + 1)
    pad = int(math.ceil(margin)) + filter_pad
    x0 = int(math.floor(x.min())) - pad
    y0 = int(math.floor(y.min())) - pad
    x1 = int(math.ceil(x.max())) + pad + 1
    y1 = int(math.ceil(y.max())) + pad + 1
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w_img), min(y1, h_img)
    if cx1 - cx0 < 8 or cy1 - cy0 < 8:
        raise ValueError("vertebral body lies outside the reference frame")
    roi = _prefilter(reference[cy0:cy1, cx0:cx1], blur_sigma_px, highpass_sigma_px)

    # static weight mask: dilated body minus the neighbours' bodies
    shift = 4
    mul = 1 << shift
    mask = np.zeros(roi.shape, np.uint8)
    pts = np.round((quad - [cx0, cy0]) * mul).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_8, shift=shift)
    r = int(round(margin))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = cv2.dilate(mask, kernel)
    if exclude_quads_px:
        other = np.zeros(roi.shape, np.uint8)
        for q in exclude_quads_px:
            p = np.round((np.asarray(q, dtype=np.float64) - [cx0, cy0]) * mul).astype(np.int32)
            cv2.fillPoly(other, [p], 255, lineType=cv2.LINE_8, shift=shift)
        other = cv2.dilate(other, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
        mask[other > 0] = 0
    if exclude_mask is not None:
        mask[np.asarray(exclude_mask, dtype=bool)[cy0:cy1, cx0:cx1]] = 0
    maskf = mask.astype(np.float32) / 255.0
    residual_scale = _expected_residual(
        np.asarray(reference[cy0:cy1, cx0:cx1], dtype=np.float32),
        roi,
        maskf,
        blur_sigma_px,
        highpass_sigma_px,
    )

    centre = quad.mean(axis=0)
    images = _pyramid(roi, n_levels)
    masks = _pyramid(maskf, n_levels)
    levels = []
    grid_box = None
    for lvl, (img_full, msk_full) in enumerate(zip(images, masks, strict=True)):
        scale = float(2**lvl)
        rows = np.flatnonzero(msk_full.max(axis=1) >= 0.5)
        cols = np.flatnonzero(msk_full.max(axis=0) >= 0.5)
        if rows.size == 0 or cols.size == 0:
            raise ValueError("empty template")
        hf, wf = img_full.shape
        r0, r1 = max(rows[0] - 2, 0), min(rows[-1] + 3, hf)
        c0, c1 = max(cols[0] - 2, 0), min(cols[-1] + 3, wf)
        gx_full, gy_full = _sobel(img_full)
        img = img_full[r0:r1, c0:c1]
        gx = gx_full[r0:r1, c0:c1]
        gy = gy_full[r0:r1, c0:c1]
        m = msk_full[r0:r1, c0:c1].copy()
        h, w = img.shape
        m[:1, :] = 0
        m[-1:, :] = 0
        m[:, :1] = 0
        m[:, -1:] = 0
        m[m < 0.5] = 0
        idx = np.flatnonzero(m.ravel() > 0)
        if max_pixels and idx.size > max_pixels:  # a regular subset: precision stays far below noise
            step = int(math.ceil(idx.size / max_pixels))
            idx = idx[::step]
        vv, uu = np.divmod(idx, w)
        origin = (cx0 / scale + c0, cy0 / scale + r0)
        if lvl == 0:
            grid_box = (cx0 + c0, cy0 + r0, cx0 + c1, cy0 + r1)
        c_l = (_level_matrix(scale) @ np.array([centre[0], centre[1], 1.0]))[:2]
        xs = uu + origin[0] - c_l[0]
        ys = vv + origin[1] - c_l[1]
        gxs = gx.ravel()[idx].astype(np.float64)
        gys = gy.ravel()[idx].astype(np.float64)
        sd = np.stack([gys * xs - gxs * ys, gxs, gys], axis=1)
        levels.append(
            _Level(
                scale=scale,
                shape=(h, w),
                origin=origin,
                centre=c_l,
                idx=idx,
                u=uu.astype(np.float32),
                v=vv.astype(np.float32),
                values=img.ravel()[idx].astype(np.float32),
                weight=m.ravel()[idx].astype(np.float32),
                sd=np.ascontiguousarray(sd, dtype=np.float32),
                sd_t=np.ascontiguousarray(sd.T, dtype=np.float32),
                design=np.stack(
                    [img.ravel()[idx], np.ones(idx.size), xs * (scale / size), ys * (scale / size)]
                ).astype(np.float32),
            )
        )
    assert grid_box is not None
    return Template(
        quad_px=quad,
        centre_px=centre,
        bbox=grid_box,
        filter_pad_px=filter_pad,
        levels=tuple(levels),
        blur_sigma_px=blur_sigma_px,
        highpass_sigma_px=highpass_sigma_px,
        size_px=size,
        residual_scale=residual_scale,
        weight_total=float(levels[0].weight.sum()),
    )


def reweighted(template: Template, weights: np.ndarray) -> Template:
    """``template`` with each pixel's static weight, on every pyramid level, multiplied by ``weights``.

    ``weights`` is ``(y1 - y0, x1 - x0)`` over ``template.bbox`` (the finest grid, reference coordinates),
    values in 0..1; a coarser level's pixel takes the map smoothed over its footprint (a Gaussian of half
    its size) at its centre. Values, gradients and the expected residual are unchanged.
    """
    wmap = np.asarray(weights, dtype=np.float32)
    gx0, gy0 = template.bbox[:2]
    h, w = wmap.shape
    levels = []
    for level in template.levels:
        to_full = _level_matrix_inv(level.scale)
        x = to_full[0, 0] * (level.u.astype(np.float64) + level.origin[0]) + to_full[0, 2] - gx0
        y = to_full[1, 1] * (level.v.astype(np.float64) + level.origin[1]) + to_full[1, 2] - gy0
        m = cv2.GaussianBlur(wmap, (0, 0), 0.5 * level.scale) if level.scale > 1 else wmap
        xi = np.clip(np.round(x).astype(np.int64), 0, w - 1)
        yi = np.clip(np.round(y).astype(np.int64), 0, h - 1)
        levels.append(dataclasses.replace(level, weight=(level.weight * m[yi, xi]).astype(np.float32)))
    return dataclasses.replace(template, levels=tuple(levels), weight_total=float(levels[0].weight.sum()))


@dataclass(frozen=True)
class Fit:
    """Result of registering a template to a frame.

    Attributes
    ----------
    transform : numpy.ndarray
        3x3 rigid transform reference -> frame.
    converged : bool
        The last update moved no corner by more than the tolerance.
    visible : float
        Fraction of the template (weighted) that falls inside the frame.
    inliers : float
        Fraction of the template (weighted, invisible parts count as outliers) whose residual is
        within 3.5 expected residual scales (``Template.residual_scale``).
    residual_scale : float
        Robust (MAD) scale of the residual, in template intensity units.
    gain : float
        Photometric gain frame/template.
    zncc : float
        Normalised correlation of template and warped frame over the inliers.
    corner_std_px : float
        Expected corner standard deviation from the inverse Hessian (precision, not accuracy).
    iterations : int
        Iterations used at the finest level.
    rotation_std_rad : float
        Expected standard deviation of the rotation from the inverse Hessian (radians; precision, like
        ``corner_std_px``).
    robust_cost : float
        The robust objective at the final estimate: mean Tukey loss of the residual in units of the
        expected residual (``Template.residual_scale``), over the whole template (parts outside the
        frame at the full loss), 0 (perfect) to 1 (nothing matches). Comparable between fits of one
        template to one frame, so that of two optima the better one can be told.
    """

    transform: np.ndarray
    converged: bool
    visible: float
    inliers: float
    residual_scale: float
    gain: float
    zncc: float
    corner_std_px: float
    iterations: int
    rotation_std_rad: float = float("nan")
    robust_cost: float = float("nan")


class _LazyPyramid:
    """The levels of a Gaussian pyramid, each built when first indexed (a fit often needs only level 0)."""

    def __init__(self, image: np.ndarray, n_levels: int):
        self._levels: list[np.ndarray] = [image]
        self._n = n_levels

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, lvl: int) -> np.ndarray:
        if not -self._n <= lvl < self._n:
            raise IndexError(lvl)
        lvl %= self._n
        while len(self._levels) <= lvl:
            self._levels.append(cv2.pyrDown(self._levels[-1]))
        return self._levels[lvl]


def cut_radius(blur_sigma: float, highpass_sigma: float | None) -> int:
    """Pixels next to a region's cut edge whose prefiltered value depends on where it was cut.

    The prefilter (:func:`_prefilter`) reflects the region at its edges: the Gaussian reaches 4 sigma,
    the twice-applied box filter twice its half-width. Further inside, a region's filtered pixels are those
    of any larger region around it.
    """
    r = _gaussian_kernel(float(blur_sigma)).size // 2 if blur_sigma > 0 else 0
    if highpass_sigma:
        r = max(r, 2 * (_box_size(highpass_sigma) // 2))
    return r


class OutsideFiltered(Exception):
    """A fit on a :class:`FrameROI` filtered on an inner box only reached beyond it (see ``inner``)."""


def _prefilter_into(
    out: np.ndarray, src: np.ndarray, cols: tuple[int, int], sigma: float, highpass_sigma: float | None
) -> tuple[int, int]:
    """:func:`_prefilter` of ``src`` written to ``out`` (its shape) in columns ``cols`` only; those columns.

    The Gaussian runs on every column, the wide smooth on ``cols`` alone: OpenCV's box filter gives a
    pixel the same value wherever the columns around it are cut, its Gaussian does not (hence
    :func:`cut_radius` on both sides of a cut column, as of a cut row). ``out`` is left as it is elsewhere.
    """
    if not highpass_sigma:
        out[...] = _prefilter(src, sigma, None)
        return 0, src.shape[1]
    c0, c1 = max(cols[0], 0), min(cols[1], src.shape[1])
    c1 = max(c1, c0)
    img = src if src.dtype in _CV_DEPTHS else np.asarray(src, dtype=np.float32)
    if sigma > 0:
        kernel = _gaussian_kernel(float(sigma))
        smooth = cv2.sepFilter2D(img, cv2.CV_32F, kernel, kernel, borderType=cv2.BORDER_REFLECT)[:, c0:c1]
    else:
        smooth = img[:, c0:c1]
    k = _box_size(highpass_sigma)
    low = cv2.boxFilter(img[:, c0:c1], cv2.CV_32F, (k, k), borderType=cv2.BORDER_REFLECT)
    low = cv2.boxFilter(low, -1, (k, k), borderType=cv2.BORDER_REFLECT)
    dst = out[:, c0:c1]
    if smooth.dtype == np.float32 and dst.size:
        # OpenCV's float32 subtraction: the same IEEE results as numpy's, at a third of its CPU on a
        # strided 2-D view; should OpenCV not write into the view, its result is copied there
        res = cv2.subtract(smooth, low, dst=dst)
        if res is not dst:
            dst[...] = res
    else:
        np.subtract(smooth, low, out=dst, dtype=np.float32)
    return c0, c1


class FrameROI:
    """A blurred pyramid of one region of a frame (levels built when first used, reused across fits).

    With ``inner`` (a box inside ``box``, frame coordinates), only that part of the region is filtered,
    at the finest level alone: a fit from a good prediction rarely leaves it. Its pixels further than
    :func:`cut_radius` from a cut are those of the whole region (OpenCV's filters give a pixel the same
    value whichever rows around it are cut; the box filter, not the Gaussian, the same for columns, so
    the Gaussian runs on the region's every column), so a fit that samples only them (``exact``, region
    coordinates) gives the same numbers as on the whole region; a fit that reaches beyond raises
    :class:`OutsideFiltered` (and should be run again on the whole region).
    """

    def __init__(
        self,
        frame: np.ndarray,
        box: tuple[int, int, int, int],
        template: Template,
        *,
        inner: tuple[int, int, int, int] | None = None,
    ):
        x0, y0, x1, y1 = box
        n_levels = len(template.levels)
        sigma, hp = template.blur_sigma_px, template.highpass_sigma_px
        self.exact: tuple[float, float, float, float] | None = None
        if inner is None:
            img = _prefilter(frame[y0:y1, x0:x1], sigma, hp)
        else:
            iy0 = max(inner[1], y0)
            iy1 = max(min(inner[3], y1), iy0)
            img = np.zeros((y1 - y0, x1 - x0), np.float32)
            c0, c1 = _prefilter_into(
                img[iy0 - y0 : iy1 - y0], frame[iy0:iy1, x0:x1], (inner[0] - x0, inner[2] - x0), sigma, hp
            )
            # a cut inside the region moves inwards by the filters' reach, plus one pixel for bilinear
            # sampling; a cut on the region's edge is the region's own
            r = cut_radius(sigma, hp) + 1
            self.exact = (
                -math.inf if c0 == 0 else c0 + r,
                -math.inf if iy0 == y0 else iy0 - y0 + r,
                math.inf if c1 == x1 - x0 else c1 - 1 - r,
                math.inf if iy1 == y1 else iy1 - y0 - 1 - r,
            )
            n_levels = 1
        self.box = box
        self.images = _LazyPyramid(img, n_levels)
        self.frame_shape = frame.shape

    def covers(self, box: tuple[int, int, int, int]) -> bool:
        fx1, fy1 = self.frame_shape[1], self.frame_shape[0]
        bx0, by0, bx1, by1 = box
        x0, y0, x1, y1 = self.box
        return (
            (bx0 >= x0 or x0 == 0)
            and (by0 >= y0 or y0 == 0)
            and (bx1 <= x1 or x1 == fx1)
            and (by1 <= y1 or y1 == fy1)
        )


def needed_box(
    template: Template, transform: np.ndarray, frame_shape: tuple[int, int], slack_px: float
) -> tuple[int, int, int, int]:
    """Frame region (x0, y0, x1, y1) holding the template warped by ``transform`` plus ``slack_px``
    (``transform`` a 2x3 or 3x3 pose, or a stack ``(N, 2|3, 3)`` of them: the box holding it at every
    pose)."""
    return needed_boxes(template, transform, frame_shape, (slack_px,))[0]


def needed_boxes(
    template: Template, transform: np.ndarray, frame_shape: tuple[int, int], slacks_px: tuple[float, ...]
) -> list[tuple[int, int, int, int]]:
    """:func:`needed_box` for each of ``slacks_px`` (the template warped once)."""
    p = np.asarray(transform)[..., :2, :] @ template.bbox_corners.T  # (..., 2, 4): the corners at each pose
    xy = p.swapaxes(-2, 0).reshape(2, -1)  # x and y of every corner at every pose
    (px_min, py_min), (px_max, py_max) = xy.min(axis=1).tolist(), xy.max(axis=1).tolist()
    h, w = frame_shape
    boxes = []
    for slack_px in slacks_px:
        bx0 = max(int(math.floor(px_min - slack_px)), 0)
        by0 = max(int(math.floor(py_min - slack_px)), 0)
        bx1 = min(int(math.ceil(px_max + slack_px)) + 1, w)
        by1 = min(int(math.ceil(py_max + slack_px)) + 1, h)
        boxes.append((bx0, by0, max(bx1, bx0), max(by1, by0)))
    return boxes


def _rigid_inv(a: np.ndarray) -> np.ndarray:
    r_t = a[:2, :2].T
    # the translation through numpy's matmul as before (BLAS fuses its multiply-adds), the rest in one go
    t0, t1 = (-r_t @ a[:2, 2]).tolist()
    (r00, r01), (r10, r11) = r_t.tolist()
    return np.array([[r00, r01, t0], [r10, r11, t1], [0.0, 0.0, 1.0]])


def _solve3(h: np.ndarray, b: np.ndarray) -> tuple[float, float, float] | None:
    """Solve the 3x3 system ``h x = b`` (Cramer; numpy's solver costs more than the fit for tiny systems)."""
    (a, b_, c), (d, e, f), (g, h_, i) = h.tolist()
    det = a * (e * i - f * h_) - b_ * (d * i - f * g) + c * (d * h_ - e * g)
    scale = abs(a * e * i) + 1e-300
    if not math.isfinite(det) or abs(det) < 1e-12 * scale:
        return None
    r0, r1, r2 = b.tolist()
    x0 = (r0 * (e * i - f * h_) - b_ * (r1 * i - f * r2) + c * (r1 * h_ - e * r2)) / det
    x1 = (a * (r1 * i - f * r2) - r0 * (d * i - f * g) + c * (d * r2 - r1 * g)) / det
    x2 = (a * (e * r2 - r1 * h_) - b_ * (d * r2 - r1 * g) + r0 * (d * h_ - e * g)) / det
    return x0, x1, x2


#: Columns of the sampling maps: cv2.remap takes maps under 32767 pixels wide.
_MAP_COLS = 16384


def _sample(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` at float32 points ``(xs, ys)`` (replicated border), shape (N,)."""
    n = xs.size
    if n <= _MAP_COLS:
        mx, my = xs.reshape(1, -1), ys.reshape(1, -1)
    else:  # rows of _MAP_COLS points
        pad = (-n) % _MAP_COLS
        mx = np.concatenate([xs, np.zeros(pad, np.float32)]).reshape(-1, _MAP_COLS)
        my = np.concatenate([ys, np.zeros(pad, np.float32)]).reshape(-1, _MAP_COLS)
    out = cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.ravel()[:n]


def _warp(
    level: _Level,
    image: np.ndarray,
    roi_origin: tuple[float, float],
    a_l: np.ndarray,
    exact: tuple[float, float, float, float] | None = None,
):
    """Sample ``image`` (level coordinates offset by ``roi_origin``) at the warped template pixels.

    Returns the values (float32) and a validity mask (None when every pixel is inside ``image``).
    Only the used pixels are sampled (``cv2.remap``, bilinear, replicated border). With ``exact``
    (``FrameROI.exact``), raises :class:`OutsideFiltered` when the template grid reaches beyond it.
    """
    # grid (u, v) -> level ref coords: + origin ; -> level frame coords: a_l ; -> roi: - roi_origin.
    # In Python floats: the same IEEE operations numpy's elementwise arithmetic did on the 2x3 copy
    (m00, m01, m02), (m10, m11, m12) = a_l[:2].tolist()
    ox, oy = level.origin
    m02 = m02 + (m00 * ox + m01 * oy) - roi_origin[0]
    m12 = m12 + (m10 * ox + m11 * oy) - roi_origin[1]
    f32 = np.float32
    u, v = level.u, level.v
    # the products and sums of ``f00 * u + f01 * v + f02`` in that order, into fewer temporary arrays
    xs = f32(m00) * u
    xs += f32(m01) * v
    xs += f32(m02)
    ys = f32(m10) * u
    ys += f32(m11) * v
    ys += f32(m12)
    vals = _sample(image, xs, ys)
    ih, iw = image.shape
    # the corners through numpy's matmul (BLAS fuses multiply-adds: Python floats would round otherwise);
    # min/max per row, NaN propagated as before
    corners = np.array([[m00, m01, m02], [m10, m11, m12]]) @ level.grid_corners
    (x_lo, y_lo), (x_hi, y_hi) = corners.min(axis=1).tolist(), corners.max(axis=1).tolist()
    if exact is not None and (x_lo < exact[0] or y_lo < exact[1] or x_hi > exact[2] or y_hi > exact[3]):
        raise OutsideFiltered
    if x_lo >= 0 and x_hi <= iw - 1 and y_lo >= 0 and y_hi <= ih - 1:
        return vals, None
    valid = (xs >= 0) & (xs <= iw - 1) & (ys >= 0) & (ys <= ih - 1)
    return vals, valid


def _fast_median(x: np.ndarray) -> float:
    """Median of a 1-D array (upper middle element; no NaN checks): a robust scale for every iteration."""
    k = x.size // 2
    if not x.size:
        return 0.0
    part = x.copy()  # what np.partition does, without its wrapper's overhead (called ~8 times a fit)
    part.partition(k)
    return float(part[k])


def _median(x: np.ndarray) -> float:
    """``numpy.median`` of a 1-D float array without NaN (the mean of the two middle values), faster."""
    n = x.size
    if n == 0:
        return float("nan")
    k = n // 2
    part = x.copy()
    part.partition(k)
    if n % 2:
        return float(part[k])
    # the lower middle value is the largest of the k below: one selection, not two (the same values;
    # of a 0.0 and a -0.0 the sign of a zero median could differ, never its value)
    return float((part[:k].max() + part[k]) / 2.0)


def _solve_spd(m: list[list[float]], r: list[float]) -> list[float] | None:
    """Gaussian elimination for a small symmetric positive system (plain Python: cheaper than numpy).

    The photometric fit's 4x4 system (gain and a bias plane: every fit the tracker runs) is unrolled
    (the loops below cost more than its arithmetic): the same operations in the same order, so the same
    bits; other sizes (the 2x2 of a constant bias) take the loops. The eliminated entries below
    the pivots, which nothing reads, are not computed; a multiplier of exactly 0 skips its row, as in
    the loop (it would change a -0.0 to 0.0); the back-substitution sums its terms with ``sum`` as the
    loop does (Python 3.12's ``sum`` of floats compensates its rounding).
    """
    n = len(r)
    if n == 4:
        (a00, a01, a02, a03), (a10, a11, a12, a13), (a20, a21, a22, a23), (a30, a31, a32, a33) = m
        r0, r1, r2, r3 = r
        tiny = 1e-12 * (abs(a00) + 1e-300)
        if not abs(a00) > tiny:
            return None
        f = a10 / a00
        if f:
            a11 -= f * a01
            a12 -= f * a02
            a13 -= f * a03
            r1 -= f * r0
        f = a20 / a00
        if f:
            a21 -= f * a01
            a22 -= f * a02
            a23 -= f * a03
            r2 -= f * r0
        f = a30 / a00
        if f:
            a31 -= f * a01
            a32 -= f * a02
            a33 -= f * a03
            r3 -= f * r0
        if not abs(a11) > tiny:
            return None
        f = a21 / a11
        if f:
            a22 -= f * a12
            a23 -= f * a13
            r2 -= f * r1
        f = a31 / a11
        if f:
            a32 -= f * a12
            a33 -= f * a13
            r3 -= f * r1
        if not abs(a22) > tiny:
            return None
        f = a32 / a22
        if f:
            a33 -= f * a23
            r3 -= f * r2
        if not abs(a33) > tiny:
            return None
        x3 = r3 / a33
        x2 = (r2 - sum((a23 * x3,))) / a22
        x1 = (r1 - sum((a12 * x2, a13 * x3))) / a11
        x0 = (r0 - sum((a01 * x1, a02 * x2, a03 * x3))) / a00
        return [x0, x1, x2, x3]
    a = [row[:] + [r[k]] for k, row in enumerate(m)]
    for c in range(n):
        piv = a[c][c]
        if not abs(piv) > 1e-12 * (abs(a[0][0]) + 1e-300):
            return None
        for k in range(c + 1, n):
            f = a[k][c] / piv
            if f:
                row_c = a[c]
                row_k = a[k]
                for j in range(c, n + 1):
                    row_k[j] -= f * row_c[j]
    x = [0.0] * n
    for c in range(n - 1, -1, -1):
        x[c] = (a[c][n] - sum(a[c][j] * x[j] for j in range(c + 1, n))) / a[c][c]
    return x


def _photometric(
    level: _Level, i: np.ndarray, w: np.ndarray, plane: bool
) -> tuple[float, np.ndarray | float]:
    """Weighted least squares ``i ~ gain * template + bias``, bias a constant or a plane over the body.

    The plane absorbs smooth shading that does not move with the bone (soft tissue, a wide overlapping
    structure). Returns ``(gain, bias)``, bias an array (N,) or a float.
    """
    c = level.design if plane else level.design[:2]
    cw = c * w
    m = (cw @ c.T).tolist()  # float32 -> Python floats: exact, as through float64
    r = (cw @ i).tolist()
    x = _solve_spd(m, r)
    if x is None:
        return 0.0, 0.0
    if plane:
        # x1 + x2 * c2 + x3 * c3 (x1 added after the product: addition commutes exactly), fewer temporaries
        bias = np.float32(x[2]) * c[2]
        bias += np.float32(x[1])
        bias += np.float32(x[3]) * c[3]
        return x[0], bias
    return x[0], x[1]


#: The weights of :func:`coherent_weights` are estimated again on this many first iterations of the finest
#: level, then kept: estimated on every one, they moved with the pose and a fit from 1-2 px off (the rod
#: over C3 in ``tests/test_tracking_reliability.py``) stepped back and forth without converging.
COHERENT_ITERATIONS = 3


def coherent_weights(level: _Level, e: np.ndarray, sigma_px: float) -> np.ndarray:
    """Tukey weights of the residual ``e`` smoothed over ``sigma_px`` (level pixels): what misfits coherently.

    A structure that does not move with the body (the shoulders' soft edge, the mandible's border seen
    through the body) leaves, wherever the template holds it, a residual that is small pixel by pixel,
    within the noise that scales the robust weights, and so pulls the pose; but it is spatially coherent
    where the noise is not. Smoothed with a Gaussian of ``sigma_px`` over the template's pixels (a
    normalised convolution: pixels the template does not use do not count), the noise averages out and
    such a residual stands out against the smoothed residual's own robust scale (1.4826 x its median
    absolute deviation); its pixels are weighed down with Tukey's biweight at ``_TUKEY_C`` times that
    scale. Returns float32 weights (N,) in 0..1, to multiply the fit's pixelwise robust weights.
    """
    h, w = level.shape
    grid = np.zeros(h * w, np.float32)
    used = np.zeros(h * w, np.float32)
    grid[level.idx] = e
    used[level.idx] = 1.0
    k = 2 * int(3 * sigma_px) + 1
    num = cv2.GaussianBlur(grid.reshape(h, w), (k, k), sigma_px, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(used.reshape(h, w), (k, k), sigma_px, borderType=cv2.BORDER_CONSTANT)
    smooth = (num / np.maximum(den, 1e-6)).ravel()[level.idx]
    dev = np.abs(smooth - np.float32(_median(smooth)))
    scale = 1.4826 * _median(dev) + 1e-9
    return _tukey_weights(dev * np.float32(1.0 / (_TUKEY_C * scale)))


def _tukey_weights(r: np.ndarray) -> np.ndarray:
    """Tukey's biweight ``(1 - min(r, 1)^2)^2`` of float32 ``r``, computed in place (``r`` is returned)."""
    np.minimum(r, np.float32(1.0), out=r)
    np.square(r, out=r)
    np.subtract(1, r, out=r)
    return np.square(r, out=r)


#: A prediction is refined at the finest level alone unless its first step there is longer than this
#: (full-resolution pixels); then the fit starts again at the coarser level asked for.
_FINE_ONLY_STEP_PX = 0.5


def _fit_level(
    template: Template,
    lvl: int,
    roi: FrameROI,
    a: np.ndarray,
    max_iterations: int,
    tolerance_px: float,
    plane: bool,
    abort_step_px: float | None,
    outlier_spread_px: float = 0.0,
    coherent_sigma_px: float = 0.0,
) -> tuple[np.ndarray, int, bool, np.ndarray | None] | None:
    """Gauss-Newton iterations on pyramid level ``lvl`` from full-resolution pose ``a``.

    Returns ``(a, iterations, converged, robust weights of the last step or None)``, or None when
    ``abort_step_px`` is given and the first step is longer than that (full-resolution pixels).
    """
    level = template.levels[lvl]
    s = _level_matrix(level.scale)
    s_inv = _level_matrix_inv(level.scale)
    a_l = s @ a @ s_inv
    image = roi.images[lvl]
    roi_origin = (roi.box[0] / level.scale, roi.box[1] / level.scale)
    tol = tolerance_px / level.scale if lvl == 0 else 0.1  # coarse levels: a tenth of their pixel
    rad_l = 0.5 * template.size_px * math.sqrt(2) / level.scale
    robust_w = None
    coherent = None
    last_w = None
    converged = False
    iters = 0
    rs = template.residual_scale
    max_step = max(1.0, 0.15 * template.size_px / level.scale)
    for it in range(max_iterations):
        vals, valid = _warp(level, image, roi_origin, a_l, roi.exact if lvl == 0 else None)
        w0 = level.weight if valid is None else level.weight * valid
        if valid is not None and w0.sum() < 0.2 * level.weight.sum():
            break
        # photometric fit and robust weights; on a level's first iteration, a few rounds so that an
        # occluder is rejected before the first geometric step
        ok = True
        if robust_w is None:
            # robust start: same exposure assumed (gain 1), bias = median difference, Tukey weights
            d = vals - level.values
            dv = d if valid is None else d[valid]
            e0 = np.abs(d - np.float32(_fast_median(dv[::3])))
            sig0 = 1.4826 * _fast_median(e0[::4] if valid is None else e0[valid][::4]) + 1e-9
            r = e0 * np.float32(1.0 / (_TUKEY_C * max(sig0, rs)))
            robust_w = _tukey_weights(r)
        for _rnd in range(3 if it == 0 else 1):
            gain, bias = _photometric(level, vals, w0 * robust_w, plane)
            if not gain > 1e-6:
                ok = False
                break
            e = (vals - bias) * np.float32(1.0 / gain) - level.values
            ae = np.abs(e)
            sub = ae[::4] if valid is None else ae[valid][::4]
            sigma = 1.4826 * _fast_median(sub) + 1e-9
            # Tukey biweight, robust scale of this residual (never below the expected noise)
            scale_t = max(sigma, rs)
            r = ae * np.float32(1.0 / (_TUKEY_C * scale_t))
            robust_w = _tukey_weights(r)
            if coherent_sigma_px > 0 and lvl == 0:
                if coherent is None or it < COHERENT_ITERATIONS:
                    coherent = coherent_weights(level, e, coherent_sigma_px)
                robust_w *= coherent
            if outlier_spread_px > 0:
                robust_w = spread_outliers(level, robust_w, outlier_spread_px / level.scale)
        if not ok:
            break
        sdw = level.sd_t * (w0 * robust_w)
        dp = _solve3(sdw @ level.sd, sdw @ e)  # float32 -> Python floats: exact, as through float64
        if dp is None:
            break
        dtheta, dx, dy = dp
        if (
            it == 0
            and abort_step_px is not None
            and (math.hypot(dx, dy) + abs(dtheta) * rad_l) * level.scale > abort_step_px
        ):
            return None
        step = math.hypot(dx, dy)
        if step > max_step:  # trust region: never jump far on one linearisation
            dx, dy = dx * max_step / step, dy * max_step / step
        dtheta = max(-0.1, min(0.1, dtheta))
        a_l = a_l @ _rigid_inv(rigid(dtheta, dx, dy, level.centre))
        last_w = robust_w
        iters = it + 1
        if math.hypot(dx, dy) + abs(dtheta) * rad_l < tol:
            converged = True
            break
    return s_inv @ a_l @ s, iters, converged, last_w


def register(
    template: Template,
    roi: FrameROI,
    initial: np.ndarray,
    *,
    max_iterations: int = 15,
    tolerance_px: float = 0.01,
    first_level: int | None = None,
    plane: bool = True,
    outlier_spread_px: float = 0.0,
    coherent_sigma_px: float = 0.0,
) -> Fit:
    """Robustly register ``template`` to the frame region ``roi``, starting from ``initial``.

    Parameters
    ----------
    template : Template
        From :func:`make_template`.
    roi : FrameROI
        Region of the frame, as a blurred pyramid with as many levels as the template (or filtered on an
        inner box only: see :class:`FrameROI`; the fit raises :class:`OutsideFiltered` when it reaches
        beyond it, or needs the coarser levels).
    initial : numpy.ndarray
        3x3 initial guess reference -> frame.
    max_iterations : int
        Per pyramid level.
    tolerance_px : float
        Stop a level when an update moves no corner more than this (full-resolution pixels; scaled up on
        coarse levels).
    first_level : int or None
        Coarsest level to start at (default: the coarsest). When given (a predicted pose), the finest
        level is tried alone first; only if its first step is longer than ``_FINE_ONLY_STEP_PX`` (or it
        cannot step) does the fit start again at ``first_level``.
    plane : bool
        Photometric model gain + bias plane (True) or gain + constant bias.
    outlier_spread_px : float
        If > 0, every rejected pixel's neighbours within this radius (full-resolution pixels) are
        rejected too (:func:`spread_outliers`); 0 (default) leaves the fit unchanged.
    coherent_sigma_px : float
        If > 0, at the finest level the robust weights are multiplied by :func:`coherent_weights` of the
        residual smoothed over this many pixels: a residual too faint pixel by pixel but coherent over an
        area (an edge that does not move with the body) no longer pulls the pose. 0 (default): unchanged.
    """
    n = len(template.levels)
    start = n - 1 if first_level is None else min(first_level, n - 1)
    a0 = np.array(initial, dtype=np.float64)
    radius = 0.5 * template.size_px * math.sqrt(2)
    run = None
    if first_level is not None and start >= 1 and template.levels[0].idx.size >= 12:
        # a good guess (a prediction): the finest level alone, unless its first step shows the guess
        # was not that good, in which case start again from ``start`` as below
        run = _fit_level(
            template,
            0,
            roi,
            a0,
            max_iterations,
            tolerance_px,
            plane,
            _FINE_ONLY_STEP_PX,
            outlier_spread_px,
            coherent_sigma_px,
        )
        if run is not None and run[3] is None:  # no step taken (mostly outside the region): as below
            run = None
    if run is None:
        if roi.exact is not None:
            raise OutsideFiltered  # the coarser levels need the whole region
        a, iters, converged, last = a0, 0, False, None
        for lvl in range(start, -1, -1):
            if template.levels[lvl].idx.size < 12:
                continue
            res = _fit_level(
                template,
                lvl,
                roi,
                a,
                max_iterations,
                tolerance_px,
                plane,
                None,
                outlier_spread_px,
                coherent_sigma_px,
            )
            assert res is not None
            a, it_l, converged, robust_w = res
            if robust_w is not None:
                last = (robust_w,)
            if lvl == 0:
                iters = it_l
    else:
        a, iters, converged, robust_w = run
        last = None if robust_w is None else (robust_w,)
    if last is None:
        return Fit(a, False, 0.0, 0.0, float("nan"), float("nan"), 0.0, float("inf"), iters)
    # final statistics at the finest level, at the final estimate
    level = template.levels[0]
    vals32, valid = _warp(level, roi.images[0], (roi.box[0], roi.box[1]), a, roi.exact)
    vals = vals32.astype(np.float64)
    values = level.values64
    weight = level.weight64
    w0 = weight if valid is None else weight * valid
    w0_sum = w0.sum()
    visible = float(w0_sum / max(template.weight_total, 1e-12))
    if w0_sum <= 0:
        return Fit(a, False, visible, 0.0, float("nan"), float("nan"), 0.0, float("inf"), iters)
    robust_w = (
        last[0].astype(np.float64)
        if last[0] is not None and last[0].shape == vals.shape
        else np.ones_like(vals)
    )
    gain, bias = _photometric(level, vals32, (w0 * robust_w).astype(np.float32), plane)
    if not gain > 1e-6:
        return Fit(a, False, visible, 0.0, float("nan"), gain, 0.0, float("inf"), iters)
    e = (vals - bias) / gain - values
    # every pixel seen (the usual case): the masks below would select or keep every element
    seen_all = valid is None and level.all_weighted
    seen = None if seen_all else w0 > 0
    abs_e = np.abs(e)
    sigma = 1.4826 * _median(abs_e if seen is None else abs_e[seen]) + 1e-9
    ref = template.residual_scale
    inl = abs_e < 3.5 * ref
    if seen is not None:
        inl &= seen
    wi = weight * inl
    wi_sum = wi.sum()
    inliers = float(wi_sum / max(template.weight_total, 1e-12))
    # Tukey's loss, scaled to 0..1, at the expected residual (pixels outside the frame: 1)
    u = np.minimum(np.square(e / (_TUKEY_C * ref)), 1.0)
    loss = 1.0 - (1.0 - u) ** 3
    if seen is not None:
        loss = np.where(seen, loss, 1.0)
    robust_cost = float((weight * loss).sum() / max(template.weight_total, 1e-12))
    if wi_sum > 0:
        mt = (wi * values).sum() / wi_sum
        mi = (wi * vals).sum() / wi_sum
        dt = values - mt
        di = vals - mi
        wdt = wi * dt  # the common first product of (wi * dt * dt) and (wi * dt * di)
        den = math.sqrt(float((wdt * dt).sum() * (wi * di * di).sum()))
        zncc = float((wdt * di).sum() / den) if den > 0 else 0.0
    else:
        zncc = 0.0
    sd = level.sd64
    h_mat = (sd * wi[:, None]).T @ sd
    try:
        cov = np.linalg.inv(h_mat) * ref**2
        corner_std = math.sqrt(max(cov[1, 1] + cov[2, 2] + cov[0, 0] * radius**2, 0.0))
        rotation_std = math.sqrt(max(cov[0, 0], 0.0))
    except np.linalg.LinAlgError:
        corner_std = rotation_std = float("inf")
    return Fit(
        a, converged, visible, inliers, sigma, gain, zncc, corner_std, iters, rotation_std, robust_cost
    )


def spread_outliers(level: _Level, robust_w: np.ndarray, radius: float) -> np.ndarray:
    """Robust weights with every rejected pixel's neighbourhood (``radius``, level pixels) rejected too.

    An occluder's soft edge leaves residuals too small to reject but large enough to pull the pose;
    they lie next to the pixels it rejects outright, so a spatial minimum filter removes them.
    """
    r = int(round(radius))
    if r < 1:
        return robust_w
    h, w = level.shape
    grid = np.ones(h * w, np.float32)
    grid[level.idx] = robust_w
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    eroded = cv2.erode(grid.reshape(h, w), k, borderType=cv2.BORDER_CONSTANT, borderValue=1.0)
    return eroded.ravel()[level.idx]
