"""Where the detector's corners lie against a rounded outline: the corner convention (issue #12).

The detector puts each corner where two fitted sides meet (the outline's vertex). The independent
renderer (``benchmarks/independent_phantom.py``) puts its truth on the rounded outer cortex along the
corner's bisector, about 0.4 of the rounding radius further in (0.3-0.5 mm there); a reader places a
corner on the bone too. Against that renderer's corners the detector's are 1.7-1.8 px off (median),
against its vertices 0.7-0.8 px.

This script tries to move each reported corner onto the outline from the image alone, along its
bisector, and prints the corner error before and after on the renderer's held-out detection studies
(``--indep A``) and on this project's phantom families (``--phantom default``; sharp corners, whose
truth is the vertex). Two estimators of how far the outline lies inside the vertex:

- ``product``: the bisector's edge against a sharp corner predicted from the two sides' own edge
  profiles (their product), which is exact for a Gaussian blur of a right-angled step;
- ``gaussian``: the rounding radius whose Gaussian-blurred rounded wedge (blur from the curvature of the
  sides' edge steps) puts the bisector's edge where the image does.

Neither is in ``dmx`` (session 21; sets A and B, 700 corners of right bodies; this project's default
look, 10 phantoms, 206 corners):

=================  ==========================  ==========================
estimator          renderer A+B, median / p95  default phantom, median / p95
=================  ==========================  ==========================
none (the vertex)  1.74 / 2.89 px              0.24 / 0.90 px
product            0.96 / 2.06 px              0.91 / 1.56 px
gaussian           0.66 / 2.06 px              1.47 / 2.28 px
=================  ==========================  ==========================

Why: the bisector's edge lies about as far inside the vertex on both renderers (median 1.61 px on the
renderer, 1.66 px on the default phantom, sides' blur 1.1 px on both), but the truth there is 1.77 px
in on the renderer (rounded corners) and 0.08 px on the phantom (sharp corners, with its soft walls and
bright rim). The image at the corner does not tell the two conventions apart at this scale; a rule that
moved corners would be tuned to one renderer. Annotated real radiographs would settle where a reader
puts the corner (docs/detection.md, "Corners on the outline").

    PYTHONPATH=. python benchmarks/corner_outline.py --indep A --cache /tmp/indep_det
    PYTHONPATH=. python benchmarks/corner_outline.py --phantom default --n 10 --model product
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

#: Stretch of each side sampled for its local line and edge profile (fractions of the side's chord,
#: from the corner): beyond a rounded corner's arc, close enough for the side's local direction.
SIDE_SPAN = (0.1, 0.3)
#: Edge search across a side, mm outwards / inwards of the chord between the corners (a concave
#: endplate or waisted wall lies inside the chord near the corner by up to about 2 mm).
SIDE_OUT_MM, SIDE_IN_MM = 1.2, 2.5
#: Bisector profile: from this far outside the local vertex (mm) to this far inside.
BISECTOR_OUT_MM, BISECTOR_IN_MM = 1.0, 2.0
#: Largest move onto the outline (mm): a rounding radius of about 3 mm.
MAX_SHIFT_MM = 1.2
_STEP = 0.25  # px, along every profile


def _sample(image: np.ndarray, pts: np.ndarray) -> np.ndarray:
    m = pts.astype(np.float32)
    return cv2.remap(image, m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _step_position(profile: np.ndarray, offsets: np.ndarray, sign: float, lo: float, hi: float):
    """Offset (px) of the strongest step ``sign`` x (inside - outside) within lo..hi, sub-pixel; its
    height."""
    k = int(round(0.5 / _STEP))
    g = sign * (profile[..., 2 * k :] - profile[..., : -2 * k]) / (2 * k * _STEP)
    og = offsets[k:-k]
    g = np.where((og >= lo) & (og <= hi), g, -np.inf)
    j = np.argmax(g, axis=-1)
    jj = np.clip(j, 1, g.shape[-1] - 2)
    take = lambda d: np.take_along_axis(g, (jj + d)[..., None], axis=-1)[..., 0]  # noqa: E731
    y0, y1, y2 = take(-1), take(0), take(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = y0 - 2 * y1 + y2
        frac = np.where(np.isfinite(den) & (den < 0), 0.5 * (y0 - y2) / den, 0.0)
    return og[jj] + np.clip(np.nan_to_num(frac), -0.5, 0.5) * _STEP, np.take_along_axis(g, j[..., None], -1)[
        ..., 0
    ]


def _side_near(image, corner, other, inward, px_per_mm):
    """Local line of the side from ``corner`` towards ``other`` near the corner and its edge profile.

    Returns (unit direction of the line away from the corner, mean edge profile over ``u`` inward offsets
    from the line (px), ``u``, polarity) or None.
    """
    d = other - corner
    length = float(np.hypot(*d))
    if length < 4:
        return None
    d = d / length
    f = np.arange(SIDE_SPAN[0] * length, SIDE_SPAN[1] * length + 1e-9, 0.5)
    if len(f) < 4:
        return None
    offs = np.arange(-SIDE_OUT_MM * px_per_mm - 1, SIDE_IN_MM * px_per_mm + 1 + 1e-9, _STEP)
    pts = corner[None, None] + f[:, None, None] * d[None, None] + offs[None, :, None] * inward[None, None]
    prof = _sample(image, pts)  # (len f, len offs): inward offsets
    # polarity: bone inside brighter (display) unless the profiles say otherwise
    mid = prof.mean(axis=0)
    sign = 1.0 if mid[offs > 0.3 * SIDE_IN_MM * px_per_mm].mean() >= mid[offs < 0].mean() else -1.0
    # the strongest inward step of each profile (inside minus outside: the sample further in minus
    # the one further out)
    pos, height = _step_position(prof, offs, sign, -SIDE_OUT_MM * px_per_mm, SIDE_IN_MM * px_per_mm)
    ok = np.isfinite(height) & (height > 0)
    if ok.sum() < 4:
        return None
    keep = ok.copy()
    for _ in range(3):
        a, b = np.polyfit(f[keep], pos[keep], 1)
        res = pos - (a * f + b)
        mad = 1.4826 * np.median(np.abs(res[keep]))
        new = ok & (np.abs(res) <= max(3 * mad, 0.75))
        if new.sum() < 4 or np.array_equal(new, keep):
            break
        keep = new
    if keep.mean() < 0.6:
        return None
    a = np.polyfit(f[keep], pos[keep], 1)[0]
    # the local line's direction (its inward offset grows by a per px along d)
    u_dir = d + a * inward
    u_dir = u_dir / np.hypot(*u_dir)
    # mean profile aligned on each profile's own step
    u = np.arange(-BISECTOR_OUT_MM * px_per_mm, BISECTOR_IN_MM * px_per_mm + 1e-9, _STEP)
    rows = [np.interp(u + pos[i], offs, prof[i]) for i in np.nonzero(keep)[0]]
    return u_dir, np.mean(rows, axis=0), u, sign


def _blur_px(profile: np.ndarray, u: np.ndarray, sign: float) -> float | None:
    """Effective Gaussian blur (px) of a side's mean edge profile: from the curvature of the log of its
    edge step at the step (a Gaussian's log is a parabola of curvature -1 / sigma^2)."""
    k = int(round(0.5 / _STEP))
    g = sign * (profile[2 * k :] - profile[: -2 * k]) / (2 * k * _STEP)
    ug = u[k:-k]
    j = int(np.argmin(np.abs(ug)))
    h = int(round(0.75 / _STEP))  # +-0.75 px either side of the step
    if j - h < 0 or j + h >= len(g) or min(g[j - h], g[j], g[j + h]) <= 0:
        return None
    curv = (np.log(g[j - h]) - 2 * np.log(g[j]) + np.log(g[j + h])) / (h * _STEP) ** 2
    if curv >= -1e-6:
        return None
    return float(np.sqrt(-1.0 / curv))


def _normalised(profile: np.ndarray, u: np.ndarray, sign: float) -> np.ndarray:
    """A side's mean edge profile scaled to 0 well outside .. 1 at its brightest inside."""
    v = sign * profile
    lo = float(np.mean(v[u < u[0] * 0.6]))
    hi = float(np.max(v[u >= 0]))
    return np.clip((v - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def _rounded_wedge_edge(r_over_sigma: np.ndarray, phi: float) -> np.ndarray:
    """Where the bisector's edge step of a Gaussian-blurred (sigma 1) wedge of opening ``phi`` (rad),
    rounded with radius ``r``, lies from its vertex (in sigma, inwards), per ``r / sigma``."""
    return _EDGE_TABLE(round(float(np.degrees(phi)) / 5) * 5)(r_over_sigma)


class _EdgeTable:
    """Lazily computed :func:`_rounded_wedge_edge` per opening (degrees, 5-degree steps)."""

    RADII = np.arange(0.0, 8.01, 0.25)

    def __init__(self) -> None:
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, deg: int):
        deg = int(np.clip(deg, 50, 150))
        if deg not in self._cache:
            # monotone in r (the blur hides radii below about one sigma: the edge barely moves there)
            self._cache[deg] = np.maximum.accumulate([_edge_of(r, np.radians(deg)) for r in self.RADII])
        tab = self._cache[deg]
        return lambda x: np.interp(x, self.RADII, tab)


def _edge_of(r: float, phi: float, sigma: float = 1.0) -> float:
    """:func:`_rounded_wedge_edge` of one radius, by rendering (sigma 1 at 16 samples per sigma)."""
    ss = 16
    half = phi / 2
    lim = 10.0 + r
    x = (np.arange(-4 * ss, int((lim + 4) * ss)) + 0.5) / ss
    y = (np.arange(-int(lim * ss), int(lim * ss)) + 0.5) / ss
    xx, yy = np.meshgrid(x, y)
    # the rounded wedge: points within r of the wedge shrunk by r (vertex moved in by r / sin(half))
    x0 = r / np.sin(half)
    px, py = xx - x0, np.abs(yy)
    side = np.array([np.cos(half), np.sin(half)])  # the shrunk wedge's side direction (upper half)
    normal = np.array([np.sin(half), -np.cos(half)])  # inward normal of that side
    along = px * side[0] + py * side[1]
    inside_w = (px * normal[0] + py * normal[1]) >= 0
    d_side = np.where(along > 0, np.abs(px * normal[0] + py * normal[1]), np.hypot(px, py))
    dist = np.where(inside_w, 0.0, d_side)
    mask = (dist <= r if r > 0 else inside_w).astype(np.float32)
    img = cv2.GaussianBlur(mask, (0, 0), sigma * ss)
    row = img[len(y) // 2 - 1 : len(y) // 2 + 1].mean(axis=0)  # along the bisector (y = 0)
    g = np.gradient(row)
    j = int(np.argmax(g))
    if 0 < j < len(g) - 1:
        den = g[j - 1] - 2 * g[j] + g[j + 1]
        j = j + (0.5 * (g[j - 1] - g[j + 1]) / den if den < 0 else 0.0)
    return float(np.interp(j, np.arange(len(x)), x))


_EDGE_TABLE = _EdgeTable()


def outline_shift(
    image: np.ndarray, corners_px: np.ndarray, k: int, px_per_mm: float, model: str = "gaussian"
) -> tuple[float, np.ndarray] | None:
    """How far (px, >= 0) corner ``k`` of ``corners_px`` (CORNERS order, px; where the sides meet) lies
    outside the body's outline along its bisector (unit, inwards; returned too); None when a side near
    the corner, its blur or the bisector's edge is not found.

    The bisector's edge of a blurred rounded corner lies further in than the rounded outline would
    put it by an amount that depends on the blur and the radius: the radius whose blurred corner puts
    the edge where the image does is found (a Gaussian blur as wide as the sides' edge steps), and
    the corner goes where that radius puts the outline, ``r (1 / sin(phi / 2) - 1)`` from the vertex.
    """
    c = np.asarray(corners_px, float)
    centre = c.mean(axis=0)
    sides = []
    for other in (c[(k - 1) % 4], c[(k + 1) % 4]):
        d = other - c[k]
        n = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-9)
        if np.dot(n, centre - c[k]) < 0:
            n = -n
        s = _side_near(image, c[k], other, n, px_per_mm)
        if s is None:
            return None
        sides.append(s)
    (da, ea, u, sa), (db, eb, _, sb) = sides
    if sa != sb:
        return None
    blur = [_blur_px(e, u, sa) for e in (ea, eb)]
    if None in blur:
        return None
    sigma = float(np.mean(blur))
    bis = da + db
    if np.hypot(*bis) < 1e-6:
        return None
    bis = bis / np.hypot(*bis)
    phi = float(np.arccos(np.clip(np.dot(da, db), -1.0, 1.0)))
    if not np.radians(50) <= phi <= np.radians(150):
        return None
    t = np.arange(-BISECTOR_OUT_MM * px_per_mm, BISECTOR_IN_MM * px_per_mm + 1e-9, _STEP)
    across = np.array([-bis[1], bis[0]])
    lines = np.stack([c[k][None] + t[:, None] * bis[None] + o * across[None] for o in (-0.5, 0.0, 0.5)])
    prof = _sample(image, lines).mean(axis=0)
    t_meas, h = _step_position(prof[None], t, sa, -0.5 * px_per_mm, BISECTOR_IN_MM * px_per_mm)
    if not np.isfinite(h[0]) or h[0] <= 0:
        return None
    if model == "product":
        # the sharp corner's bisector profile predicted from the sides' own (normalised) profiles;
        # the corner moves by how much further in the image's edge lies
        s = np.sin(phi / 2)
        pred = np.interp(t * s, u, _normalised(ea, u, sa)) * np.interp(t * s, u, _normalised(eb, u, sa))
        t_sharp, _ = _step_position(pred[None], t, 1.0, -0.5 * px_per_mm, BISECTOR_IN_MM * px_per_mm)
        shift = t_meas[0] - t_sharp[0]
    else:
        radii = _EdgeTable.RADII
        edge = _rounded_wedge_edge(radii, phi)  # in sigma, increasing with r
        r = float(np.interp(t_meas[0] / sigma, edge, radii)) * sigma
        shift = r * (1.0 / np.sin(phi / 2) - 1.0)
    return float(np.clip(shift, 0.0, MAX_SHIFT_MM * px_per_mm)), bis


# ------------------------------------------------------------------------------------------ benchmark
def moved(image: np.ndarray, corners: np.ndarray, mm_per_px: float, is_c2: bool, model: str):
    """Corners moved onto the outline (C2's superior corners kept: they have no rounded corner) and the
    shifts (mm; NaN where none was estimated)."""
    from dmx.detect.pose import smoothed

    sm = smoothed(image, mm_per_px)[0]
    out, shifts = corners.astype(float).copy(), []
    for k in range(4):
        est = None if is_c2 and k < 2 else outline_shift(sm, corners, k, 1 / mm_per_px, model)
        if est is None:
            shifts.append(np.nan)
            continue
        out[k] = corners[k] + est[0] * est[1]
        shifts.append(est[0] * mm_per_px)
    return out, shifts


def studies(args):
    """(image, {level: true corners}, mm per px, detection) of each study asked for."""
    from dmx.detect import detect_landmarks

    if args.indep:
        sys.path.insert(0, str(Path(__file__).parent))
        import independent as ind

        for _name, _seed, _out, truth, seq in ind.set_studies(Path(args.cache), args.indep):
            det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
            t = {v: np.asarray(truth["corners"][0][v.value]) for v in det.landmarks.corners_px}
            yield seq.frames[0].astype(np.float32), t, float(np.mean(seq.mm_per_px)), det
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        import detection as db

        if args.cache:
            db.CACHE = args.cache
        family = None if args.phantom == "default" else args.phantom
        for kw in db.family_specs(family, args.n, max_size_px=768):
            image, truth, mpp = db.reference_frame(kw)
            yield image, truth, mpp, detect_landmarks(image, mm_per_px=mpp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indep", default=None, help="independent renderer's detection sets, e.g. A or ABC")
    parser.add_argument("--phantom", default=None, help="this project's phantom family (default: the look)")
    parser.add_argument("--n", type=int, default=10, help="phantoms (with --phantom)")
    parser.add_argument("--model", choices=("product", "gaussian"), default="gaussian")
    parser.add_argument("--cache", default=None, help="folder keeping the rendered studies")
    args = parser.parse_args()
    if not args.indep and not args.phantom:
        parser.error("give --indep SETS or --phantom FAMILY")
    if args.indep and not args.cache:
        parser.error("--indep needs --cache DIR (the rendered studies are kept there)")
    before, after, shifts = [], [], []
    for image, truth, mpp, det in studies(args):
        for v, c in det.landmarks.corners_px.items():
            t = truth[v]
            e0 = np.hypot(*(c - t).T)
            if e0.max() * mpp > 5.0:  # on another structure: not a corner error
                continue
            new, s = moved(image, c, mpp, v.value == "C2", args.model)
            keep = slice(2, 4) if v.value == "C2" else slice(0, 4)
            before += e0[keep].tolist()
            after += np.hypot(*(new - t).T)[keep].tolist()
            shifts += s[keep]
    b, a, s = np.asarray(before), np.asarray(after), np.asarray(shifts, float)
    what = f"independent sets {args.indep}" if args.indep else f"phantom {args.phantom} ({args.n})"
    print(f"{what}, model {args.model}: {len(b)} corners of right bodies (C2: inferior corners)")
    for name, e in (("at the vertex", b), ("moved onto the outline", a)):
        print(
            f"  {name:24s} median {np.median(e):.2f} / p95 {np.percentile(e, 95):.2f} / max {e.max():.2f} px"
        )
    print(
        f"  shift median {np.nanmedian(s):.3f} mm, p90 {np.nanpercentile(s, 90):.3f} mm; "
        f"none estimated at {int(np.isnan(s).sum())} corners"
    )


if __name__ == "__main__":
    main()
