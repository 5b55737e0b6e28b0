"""Sub-pixel corners of one vertebral body from its four cortical outlines.

Each side of the body (superior endplate, posterior wall, inferior endplate,
anterior wall) is found as the strongest bright-to-dark step along profiles
normal to the side (the outer cortical boundary), fitted robustly with a line
or a gentle quadratic (walls are waisted, endplates concave), and each corner
is the intersection of its two sides.

Given the level's mean shape (``mean_shape_mm``), the wide first search does not take the strongest
step of every profile: per side it gathers a few candidate edges (lines the profiles' strongest steps
agree on, each refitted as a quadratic) and keeps the combination of four whose outline best fits
the edges and the mean shape together (:func:`_shape_guided`); the narrower searches after it then
prefer the steps near the curve found before over stronger ones further off (:data:`NEAR_SIGMA`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

#: Sides as (from corner, to corner) in CORNERS order: superior, posterior, inferior, anterior.
SIDES: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (2, 3), (3, 0))
#: Part of each side sampled (fractions from its first to its second corner) in the wide first
#: search, where the start may be a few mm off and the ends of a side can stray onto a neighbour.
SPANS_BODY: tuple[tuple[tuple[float, float], ...], ...] = (((0.12, 0.88),),) * 4
#: ... and in the narrow final search from corners already near: closer to the corners, so that the
#: curved sides (waisted walls, concave endplates) are extrapolated less far.
SPANS_BODY_FINE: tuple[tuple[tuple[float, float], ...], ...] = (((0.06, 0.94),),) * 4
#: C2 (both searches): the superior side is only the two shoulders beside the base of the dens (where
#: the corners sit relative to the line through them is ``side_offsets_mm``).
SPANS_C2: tuple[tuple[tuple[float, float], ...], ...] = (
    ((0.03, 0.2), (0.88, 0.97)),
    ((0.12, 0.88),),
    ((0.12, 0.88),),
    ((0.12, 0.88),),
)


#: Polynomial degree of C2's sides: the superior shoulders a line (its own tilt: C2 is wedged by a
#: patient-specific amount), the others gentle quadratics like every body's.
C2_DEGREES = (1, 2, 2, 2)
#: Largest tilt of C2's shoulder line against the inferior endplate (tan of about 11 degrees) before
#: the fit falls back to one offset parallel to the inferior endplate.
C2_MAX_TILT = 0.2
#: Largest plausible sag of a side (waist of a wall, concavity of an endplate), mm.
MAX_SAG_MM = 2.5

#: Shape-guided search (``mean_shape_mm`` given): candidate edges per side in the wide first search ...
SIDE_CANDIDATES = 5
#: ... from at most this many lines through two candidate steps (evenly spread over the pairs).
CANDIDATE_LINES = 1000
#: ... the combination's score: the sum over sides of log(candidate's edge support / the side's best),
#: less this weight times (the outline's RMS deviation from the mean shape, mm, after similarity alignment
#: + |log| of its size against the mean's) ...
SHAPE_WEIGHT = 4.0
#: ... and in the narrower searches after it, each profile takes the local maximum of its edge step
#: weighted by a Gaussian of its distance from the previous curve, SD this share of the search radius.
#: Chosen on the refinement from the true corners (``benchmarks/refine_from_truth.py``, development sets
#: 1250000+, 1260000+, 1320000+, 1330000+): C3-C6 right and passing 212 -> 247 of 320 as set here; SD
#: 0.15-0.5 and weights 1-30 give within 4 of that; held out (1360000+) 55 -> 62 of 80.
NEAR_SIGMA = 0.3


@dataclass(frozen=True)
class SideFit:
    """One fitted side: ``coef`` of offset(t) = c0 + c1 t + c2 t^2 (px, along the outward normal)."""

    start: np.ndarray
    end: np.ndarray
    normal: np.ndarray
    coef: np.ndarray
    inlier_fraction: float
    strength: float
    rms_px: float

    def point(self, t: float) -> np.ndarray:
        off = self.coef[0] + self.coef[1] * t + self.coef[2] * t * t
        return self.start + t * (self.end - self.start) + off * self.normal

    def tangent(self, t: float) -> np.ndarray:
        doff = self.coef[1] + 2 * self.coef[2] * t
        return (self.end - self.start) + doff * self.normal


def shape_deviation_mm(corners_mm: np.ndarray, mean_mm: np.ndarray) -> tuple[float, float]:
    """RMS distance (mm) after similarity alignment to the mean shape, and the fitted size ratio.

    ``corners_mm`` are image corners (facing right) scaled to mm; ``mean_mm`` is in the body frame.
    """
    dev, size = shape_deviations_mm(np.asarray(corners_mm, dtype=float)[None], mean_mm)
    return float(dev[0]), float(size[0])


def shape_deviations_mm(corners_mm: np.ndarray, mean_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`shape_deviation_mm` of many outlines at once: ``corners_mm`` (n, 4, 2)."""
    a = corners_mm * np.array([1.0, -1.0])  # image y is down, the body frame's v is up
    a = a - a.mean(axis=1, keepdims=True)
    b = mean_mm - mean_mm.mean(axis=0)
    # complex-number similarity fit: a * z ~ b
    za = a[..., 0] + 1j * a[..., 1]
    zb = b[:, 0] + 1j * b[:, 1]
    z = (np.conj(za) * zb).sum(axis=1) / np.maximum((np.abs(za) ** 2).sum(axis=1), 1e-12)
    res = za * z[:, None] - zb[None]
    return np.sqrt(np.mean(np.abs(res) ** 2, axis=1)), 1.0 / np.maximum(np.abs(z), 1e-12)


def _profiles(image: np.ndarray, points: np.ndarray, normal: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    xy = points[:, None, :] + offsets[None, :, None] * normal[None, None, :]
    mx = xy[..., 0].astype(np.float32)
    my = xy[..., 1].astype(np.float32)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


#: Spacing (px) of the samples along each edge profile.
PROFILE_STEP_PX = 0.25


def _edge_steps(
    image: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    normal: np.ndarray,
    *,
    radius_px: float,
    spans: tuple[tuple[float, float], ...],
    around: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The edge step (inside minus outside, over +-0.5 px) along profiles normal to one side, about 1 px
    apart over ``spans``, every 0.25 px out to ``radius_px`` either way of the chord or of the curve
    ``around`` (:func:`fit_side`); each profile averaged with its neighbours along the side (1-2-1, within
    a span: less noise, no blur across the edge), -inf beyond the radius. Returns t (profiles' places along
    the side), the steps (profiles, offsets), the offsets (px from the centre curve) and that curve's
    offset from the chord at each t."""
    base_coef = np.zeros(3) if around is None else np.asarray(around, dtype=float)
    length = float(np.hypot(*(end - start)))
    ts = [np.linspace(a, b, max(3, int(np.ceil((b - a) * length / 1.0)))) for a, b in spans]
    t = np.concatenate(ts)
    span_id = np.concatenate([np.full(len(x), i) for i, x in enumerate(ts)])
    step = PROFILE_STEP_PX
    offsets = np.arange(-radius_px - 1.0, radius_px + 1.0 + step / 2, step)
    base = base_coef[0] + base_coef[1] * t + base_coef[2] * t * t
    pts = start[None] + t[:, None] * (end - start)[None] + base[:, None] * normal[None]
    prof = _profiles(image, pts, normal, offsets)
    k = int(round(0.5 / step))  # derivative over +-0.5 px
    g = (prof[:, : -2 * k] - prof[:, 2 * k :]) / (2 * k * step)  # inside minus outside
    up = np.vstack([g[:1], g[:-1]])
    down = np.vstack([g[1:], g[-1:]])
    same_up = np.r_[False, span_id[1:] == span_id[:-1]][:, None]
    same_down = np.r_[span_id[:-1] == span_id[1:], False][:, None]
    g = (2 * g + np.where(same_up, up, g) + np.where(same_down, down, g)) / 4
    off_g = offsets[k:-k]
    return t, np.where((np.abs(off_g) <= radius_px)[None], g, -np.inf), off_g, base


def fit_side(
    image: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    normal: np.ndarray,
    *,
    radius_px: float,
    spans: tuple[tuple[float, float], ...],
    degree: int,
    noise: float,
    max_sag_px: float = np.inf,
    around: np.ndarray | None = None,
    near_sigma: float | None = None,
) -> SideFit | None:
    """Fit one side between ``start`` and ``end`` (outward ``normal``), searching ``radius_px`` either way.

    The search is centred on the chord from ``start`` to ``end``, or on the curve offset(t) =
    ``around`` (c0, c1, c2; px along ``normal``) from it: a previous fit, so that a narrow search
    follows a deeply concave endplate instead of losing its middle beyond the search radius.
    ``near_sigma`` (with ``around``): each profile takes the local maximum of its step weighted by a
    Gaussian of its distance from that curve (SD ``near_sigma`` times the radius), not the strongest.
    """
    t, g, off_g, base = _edge_steps(
        image, start, end, normal, radius_px=radius_px, spans=spans, around=around
    )
    step = PROFILE_STEP_PX
    j = np.argmax(g, axis=1)
    if around is not None and near_sigma is not None:
        # the step nearest the previous curve, unless one further off is much stronger
        local = np.zeros_like(g, dtype=bool)
        local[:, 1:-1] = (g[:, 1:-1] > g[:, :-2]) & (g[:, 1:-1] >= g[:, 2:]) & (g[:, 1:-1] > 0)
        weighted = np.where(local, g, -np.inf) * np.exp(-0.5 * (off_g / (near_sigma * radius_px)) ** 2)[None]
        near = np.argmax(weighted, axis=1)
        j = np.where(np.isfinite(weighted[np.arange(len(t)), near]), near, j)
    peak = g[np.arange(len(t)), j]
    # sub-pixel parabola
    jj = np.clip(j, 1, g.shape[1] - 2)
    y0, y1, y2 = (g[np.arange(len(t)), jj + d] for d in (-1, 0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        den = y0 - 2 * y1 + y2
        frac = np.where(np.isfinite(den) & (den < 0), 0.5 * (y0 - y2) / den, 0.0)
    frac = np.clip(np.nan_to_num(frac), -0.5, 0.5)
    e = base + off_g[jj] + frac * step
    # a side sampled on separate spans (C2's shoulders) pools few profiles, so it can take weaker steps
    pooled = len(spans) > 1
    ok = np.isfinite(peak) & (peak > (2.0 if pooled else 3.0) * noise)
    if ok.sum() < max(2 if pooled else 3, 0.3 * len(t)):
        return None
    deg = min(degree, 1) if ok.sum() < 8 else degree
    w = np.where(ok, peak, 0.0)
    coef, keep = _robust_fit(t, e, w, ok, deg)
    if deg >= 1 and keep.mean() < 0.8:
        # another edge (an overlapping bone) took part of the side: look at each profile's
        # strongest few steps and keep, per profile, the one on the best-supported line
        alt = _consensus(
            t, g, off_g, step, (2.0 if pooled else 3.0) * noise, tol_px=1.0 + 0.5 * min(max_sag_px, 4.0)
        )
        if alt is not None:
            e2, w2, ok2 = alt
            e2 = base + e2
            coef2, keep2 = _robust_fit(t, e2, w2, ok2, deg)
            if keep2.mean() > keep.mean():
                coef, keep, e, peak = coef2, keep2, e2, np.where(ok2, w2, peak)
    if deg == 2 and abs(coef[2]) / 4 > max_sag_px:
        # implausibly curved: the edge search strayed; a straight side is the safer reading
        return fit_side(
            image,
            start,
            end,
            normal,
            radius_px=radius_px,
            spans=spans,
            degree=1,
            noise=noise,
            around=around,
            near_sigma=near_sigma,
        )
    res = e - (coef[0] + coef[1] * t + coef[2] * t * t)
    rms = float(np.sqrt(np.mean(res[keep] ** 2))) if keep.any() else float("inf")
    return SideFit(
        start=start,
        end=end,
        normal=normal,
        coef=coef,
        inlier_fraction=float(keep.mean()),
        strength=float(np.median(peak[keep]) / max(noise, 1e-9)),
        rms_px=rms,
    )


def _robust_fit(
    t: np.ndarray, e: np.ndarray, w: np.ndarray, ok: np.ndarray, deg: int
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted polynomial offset(t) with iterative trimming of outliers; returns coef (3,) and inliers."""
    keep = ok.copy()
    coef = np.zeros(3)
    for _ in range(4):
        a = np.vander(t[keep], deg + 1, increasing=True)
        sw = np.sqrt(w[keep])
        sol, *_ = np.linalg.lstsq(a * sw[:, None], e[keep] * sw, rcond=None)
        coef = np.zeros(3)
        coef[: deg + 1] = sol
        res = e - (coef[0] + coef[1] * t + coef[2] * t * t)
        mad = 1.4826 * np.median(np.abs(res[keep])) if keep.any() else 0.0
        new = ok & (np.abs(res) <= max(3.0 * mad, 0.6))
        if new.sum() < deg + 2 or np.array_equal(new, keep):
            break
        keep = new
    return coef, keep


@dataclass(frozen=True)
class _Lines:
    """Lines through two of the profiles' strongest steps (:func:`_candidate_lines`): per profile its
    ``top`` steps (``idx`` into the offsets, strength ``cand_w``, offset ``cand_e``, ``valid``), per line
    its ``slope``, intercept ``icpt`` (offset against t) and ``support`` (the summed strength of each
    profile's step nearest it, where within the tolerance); :meth:`nearest` gives one line's steps."""

    t: np.ndarray
    idx: np.ndarray
    cand_w: np.ndarray
    cand_e: np.ndarray
    valid: np.ndarray
    slope: np.ndarray
    icpt: np.ndarray
    support: np.ndarray

    def nearest(self, line: int) -> tuple[np.ndarray, np.ndarray]:
        """Per profile the step nearest ``line`` (index among its ``top``; the first of equals) and its
        distance from the line (inf where the profile has no step)."""
        pred = self.icpt[line] + self.slope[line] * self.t
        e = np.where(self.valid, self.cand_e, np.inf)
        best = np.abs(e[:, 0] - pred)
        which = np.zeros(len(self.t), dtype=np.intp)
        for k in range(1, e.shape[1]):
            r = np.abs(e[:, k] - pred)
            nearer = r < best
            best = np.where(nearer, r, best)
            which[nearer] = k
        return which, best


#: Lines weighed at a time by :func:`_candidate_lines` (fastest at 256-1024 on 2 cores).
_LINES_PER_BLOCK = 512


def _candidate_lines(
    t: np.ndarray,
    g: np.ndarray,
    off_g: np.ndarray,
    *,
    threshold: float,
    top: int,
    max_lines: int,
    tol_px: float,
) -> _Lines | None:
    """Every line through two of the profiles' ``top`` strongest steps (local maxima above ``threshold``) of
    profiles at least 0.3 of the side apart (at most ``max_lines``, evenly spread over the pairs), with the
    support of the steps within ``tol_px`` of it; None with too few steps."""
    loc = np.zeros_like(g, dtype=bool)
    loc[:, 1:-1] = (g[:, 1:-1] > g[:, :-2]) & (g[:, 1:-1] >= g[:, 2:]) & (g[:, 1:-1] > threshold)
    vals = np.where(loc, g, -np.inf)
    idx = np.argsort(-vals, axis=1)[:, :top]
    cand_w = np.take_along_axis(vals, idx, axis=1)  # (n, top)
    cand_e = off_g[idx]
    valid = np.isfinite(cand_w)
    if valid.sum() < 4:
        return None
    pi, ci = np.nonzero(valid)
    pt, pe = t[pi], cand_e[pi, ci]
    a, b = np.triu_indices(len(pi), k=1)
    sel = np.abs(pt[a] - pt[b]) >= 0.3
    a, b = a[sel], b[sel]
    if len(a) == 0:
        return None
    if len(a) > max_lines:
        keep = np.linspace(0, len(a) - 1, max_lines).astype(int)
        a, b = a[keep], b[keep]
    slope = (pe[b] - pe[a]) / (pt[b] - pt[a])
    icpt = pe[a] - slope * pt[a]
    # each line's support: per profile the strength of the step nearest it (as _Lines.nearest), where
    # within tol_px; in blocks of lines, one of the profiles' steps at a time (the (lines, profiles, steps)
    # array at once took four times as long)
    e = np.where(valid, cand_e, np.inf)
    w = np.where(valid, cand_w, 0.0)
    support = np.empty(len(slope))
    for first in range(0, len(slope), _LINES_PER_BLOCK):
        block = slice(first, first + _LINES_PER_BLOCK)
        pred = icpt[block, None] + slope[block, None] * t[None, :]  # (lines, profiles)
        best = np.abs(e[:, 0][None] - pred)
        w_best = np.broadcast_to(w[:, 0][None], best.shape)
        for k in range(1, e.shape[1]):
            r = np.abs(e[:, k][None] - pred)
            nearer = r < best
            best = np.where(nearer, r, best)
            w_best = np.where(nearer, w[:, k][None], w_best)
        support[block] = np.where(best < tol_px, w_best, 0.0).sum(axis=1)
    return _Lines(t, idx, cand_w, cand_e, valid, slope, icpt, support)


def _consensus(
    t: np.ndarray,
    g: np.ndarray,
    off_g: np.ndarray,
    step: float,
    threshold: float,
    *,
    tol_px: float,
    top: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per profile, the step (among its ``top`` strongest) nearest the line most steps support."""
    n = len(t)
    lines = _candidate_lines(t, g, off_g, threshold=threshold, top=top, max_lines=20000, tol_px=tol_px)
    if lines is None:
        return None
    line = int(np.argmax(lines.support))
    choice, dist = lines.nearest(line)
    w = lines.cand_w[np.arange(n), choice]
    ok = np.isfinite(w) & (dist < tol_px)
    # sub-pixel refinement of the chosen steps
    j = lines.idx[np.arange(n), choice]
    jj = np.clip(j, 1, g.shape[1] - 2)
    y0, y1, y2 = (g[np.arange(n), jj + d] for d in (-1, 0, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        den = y0 - 2 * y1 + y2
        frac = np.where(np.isfinite(den) & (den < 0), 0.5 * (y0 - y2) / den, 0.0)
    e = off_g[jj] + np.clip(np.nan_to_num(frac), -0.5, 0.5) * step
    return e, np.where(ok, w, 0.0), ok


def _side_candidates(
    image: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    normal: np.ndarray,
    *,
    radius_px: float,
    spans: tuple[tuple[float, float], ...],
    noise: float,
    max_sag_px: float,
    top: int = 4,
) -> list[tuple[SideFit, float]]:
    """Up to :data:`SIDE_CANDIDATES` edges for one side (searched as :func:`fit_side` searches, without
    ``around``), each with its support: the lines that most of the profiles' ``top`` strongest steps agree
    on (distinct lines only), each refitted robustly as a quadratic through the steps near it (a straight
    line where the quadratic sags implausibly). Support: the summed step of the profiles kept, over the
    profiles sampled."""
    t, g, off_g, _ = _edge_steps(image, start, end, normal, radius_px=radius_px, spans=spans, around=None)
    n = len(t)
    tol = 1.0 + 0.5 * min(max_sag_px, 4.0)
    lines = _candidate_lines(
        t, g, off_g, threshold=3.0 * noise, top=top, max_lines=CANDIDATE_LINES, tol_px=tol
    )
    if lines is None:
        return []
    out: list[tuple[SideFit, float]] = []
    rows = np.arange(n)
    order = np.argsort(-lines.support)
    slopes = lines.slope[order]
    mids = lines.icpt[order] + 0.5 * slopes  # offset at mid-side
    free = lines.support[order] > 0  # not yet the same edge as a line kept (and supported at all)
    while len(out) < SIDE_CANDIDATES and free.any():
        k = int(np.argmax(free))  # the best-supported line left
        line = order[k]
        free &= (np.abs(mids - mids[k]) >= 2.0) | (np.abs(slopes - slopes[k]) >= 3.0)
        choice, dist = lines.nearest(line)
        ok = np.isfinite(lines.cand_w[rows, choice]) & (dist < tol)
        if ok.sum() < max(3, 0.3 * n):
            continue
        e = lines.cand_e[rows, choice]
        w = np.where(ok, lines.cand_w[rows, choice], 0.0)
        deg = 2 if ok.sum() >= 8 else 1
        coef, kept = _robust_fit(t, e, w, ok, deg)
        if deg == 2 and abs(coef[2]) / 4 > max_sag_px:
            coef, kept = _robust_fit(t, e, w, ok, 1)
        r = e - (coef[0] + coef[1] * t + coef[2] * t * t)
        fit = SideFit(
            start=start,
            end=end,
            normal=normal,
            coef=coef,
            inlier_fraction=float(kept.mean()),
            strength=float(np.median(w[kept]) / max(noise, 1e-9)),
            rms_px=float(np.sqrt(np.mean(r[kept] ** 2))),
        )
        out.append((fit, float(w[kept].sum() / n)))
    return out


def _shape_guided(
    image: np.ndarray,
    corners: np.ndarray,
    fits: list[SideFit],
    *,
    radius_px: float,
    noise: float,
    px_per_mm: float,
    mean_shape_mm: np.ndarray,
) -> list[SideFit]:
    """The four sides of the wide first search chosen among candidates (:func:`_side_candidates`, and the
    strongest-step fit ``fits`` of each side) as the combination whose outline scores best: the sum over
    sides of log(support / the side's best support), less :data:`SHAPE_WEIGHT` times its deviation from the
    level's mean shape (RMS mm after similarity alignment, :func:`shape_deviation_mm`, plus |log| of its
    size against the mean's). A crossing bar, another bone's edge or a neighbour's rim can carry the
    strongest step of most profiles of one side; the body's own edge is then a weaker candidate that makes
    the outline a body's shape."""
    centre = corners.mean(axis=0)
    options: list[list[tuple[SideFit, float]]] = []
    for s, (i, j) in enumerate(SIDES):
        a, b = corners[i], corners[j]
        cands = _side_candidates(
            image,
            a,
            b,
            _outward_normal(a, b, centre),
            radius_px=radius_px,
            spans=SPANS_BODY[s],
            noise=noise,
            max_sag_px=MAX_SAG_MM * px_per_mm,
        )
        f = fits[s]
        options.append([*cands, (f, f.strength * noise * f.inlier_fraction)])
    # each corner once per pair of candidates of its two sides, then every combination at once
    corner = [
        _intersect_pairs([f for f, _ in options[(k - 1) % 4]], [f for f, _ in options[k]]) for k in range(4)
    ]
    choice = np.array(list(itertools.product(*(range(len(o)) for o in options))))  # (combos, 4 sides)
    q = np.stack(
        [corner[k][choice[:, (k - 1) % 4], choice[:, k]] for k in range(4)], axis=1
    )  # (combos, 4, 2)
    valid = np.isfinite(q).all(axis=(1, 2))
    if not valid.any():
        return fits
    choice, q = choice[valid], q[valid]
    dev, size = shape_deviations_mm(q / px_per_mm, mean_shape_mm)
    sup = [np.array([v for _, v in opts]) for opts in options]  # each side's candidates' support
    support = np.log(
        np.maximum(np.stack([sup[s][choice[:, s]] for s in range(4)], axis=1), 1e-12)
        / np.maximum(np.array([v.max() for v in sup]), 1e-12)
    ).sum(axis=1)
    score = support - SHAPE_WEIGHT * (dev + np.abs(np.log(np.maximum(size, 1e-3))))
    best = choice[int(np.argmax(score))]
    return [options[s][i][0] for s, i in enumerate(best)]


def _intersect(a: SideFit, b: SideFit) -> np.ndarray | None:
    """Where side ``a`` (near its end, t=1) meets side ``b`` (near its start, t=0)."""
    ta, tb = 1.0, 0.0
    for _ in range(20):
        r = a.point(ta) - b.point(tb)
        jac = np.stack([a.tangent(ta), -b.tangent(tb)], axis=1)
        if abs(np.linalg.det(jac)) < 1e-9:
            return None
        d = np.linalg.solve(jac, -r)
        ta, tb = ta + d[0], tb + d[1]
        if np.hypot(*d) < 1e-6:
            break
    if not (0.5 < ta < 1.5 and -0.5 < tb < 0.5):
        return None
    return a.point(ta)


def _intersect_pairs(before: list[SideFit], after: list[SideFit]) -> np.ndarray:
    """:func:`_intersect` of every side in ``before`` with every side in ``after`` at once: (len(before),
    len(after), 2), NaN where :func:`_intersect` gives None."""

    def curves(fits: list[SideFit]) -> tuple[np.ndarray, ...]:
        return (
            np.array([f.start for f in fits]),
            np.array([f.end - f.start for f in fits]),
            np.array([f.normal for f in fits]),
            np.array([f.coef for f in fits]),
        )

    sa, da, na, ca = (x[:, None] for x in curves(before))  # (n, 1, ...)
    sb, db, nb, cb = (x[None] for x in curves(after))  # (1, m, ...)
    shape = (len(before), len(after))
    ta, tb = np.ones(shape), np.zeros(shape)
    ok = np.ones(shape, dtype=bool)

    def at(s, d, n, c, t):
        off = c[..., 0] + c[..., 1] * t + c[..., 2] * t * t
        return s + t[..., None] * d + off[..., None] * n, d + (c[..., 1] + 2 * c[..., 2] * t)[..., None] * n

    for _ in range(20):
        pa, ga = at(sa, da, na, ca, ta)
        pb, gb = at(sb, db, nb, cb, tb)
        r = pa - pb
        det = ga[..., 0] * -gb[..., 1] - (-gb[..., 0]) * ga[..., 1]
        ok &= np.abs(det) >= 1e-9
        det = np.where(ok, det, 1.0)
        # (ga | -gb) d = -r, by Cramer's rule
        d0 = (-r[..., 0] * -gb[..., 1] - (-gb[..., 0]) * -r[..., 1]) / det
        d1 = (ga[..., 0] * -r[..., 1] - ga[..., 1] * -r[..., 0]) / det
        ta, tb = np.where(ok, ta + d0, ta), np.where(ok, tb + d1, tb)
        if np.all(np.hypot(d0, d1)[ok] < 1e-6):
            break
    ok &= (ta > 0.5) & (ta < 1.5) & (tb > -0.5) & (tb < 0.5)
    point, _ = at(sa, da, na, ca, ta)
    return np.where(ok[..., None], point, np.nan)


def _outward_normal(a: np.ndarray, b: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit normal of the side from ``a`` to ``b``, pointing away from the body's ``centre``."""
    d = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    n = np.array([d[1], -d[0]])
    return -n if np.dot(n, 0.5 * (a + b) - centre) < 0 else n


def refine_corners(
    image: np.ndarray,
    corners_px: np.ndarray,
    *,
    is_c2: bool,
    px_per_mm: float,
    noise: float,
    side_offsets_mm: np.ndarray | None = None,
    radii_mm: tuple[float, ...] = (2.0, 0.8),
    around: list[SideFit] | None = None,
    mean_shape_mm: np.ndarray | None = None,
) -> tuple[np.ndarray | None, dict[str, float], list[SideFit]]:
    """Refine four corners (CORNERS order) on a smoothed float image.

    Each search after the first (wide, 12-88 % of each side) samples 6-94 % of each side around
    the previous search's fitted curve; ``around`` (fitted sides, e.g. of an earlier call) makes
    even the first search such a narrow one around those curves.
    ``side_offsets_mm`` (4, 2) moves each fitted side outwards at its start and end (fitted:
    where the annotated outline lies relative to the steepest step). ``mean_shape_mm`` (the level's mean
    corners, body frame; not for C2): the wide first search chooses each side among candidate edges with
    the mean shape (:func:`_shape_guided`) and the searches after it prefer steps near the curve found
    (:data:`NEAR_SIGMA`). Returns the corners (or None when a side
    cannot be found), fit features and the side fits (before the offsets):
    ``inlier`` (worst side's share of profiles on the fitted edge), ``strength``
    (weakest side's median edge step / noise), ``rms_px`` (worst side's residual).
    """
    c = np.asarray(corners_px, dtype=float).copy()
    fits: list[SideFit] = []
    previous: list[SideFit] = []  # this call's previous pass: its fits centre the next search
    guide: list[SideFit] = list(around) if around is not None else []
    guided = mean_shape_mm is not None and not is_c2
    for n_pass, radius_mm in enumerate(radii_mm):
        wide = n_pass == 0 and around is None  # the first search from a rough start
        spans = SPANS_C2 if is_c2 else (SPANS_BODY if wide else SPANS_BODY_FINE)
        centre = c.mean(axis=0)
        fits = [None, None, None, None]
        order = (1, 2, 3, 0)  # the superior side last: C2's is fitted parallel to the inferior one
        for s in order:
            i, j = SIDES[s]
            a, b = c[i], c[j]
            if is_c2 and s == 0:
                inf = fits[2]
                d = inf.point(0.0) - inf.point(1.0)
                d /= max(np.hypot(*d), 1e-9)
                mid = 0.5 * (a + b)
                a, b = mid + np.dot(a - mid, d) * d, mid + np.dot(b - mid, d) * d
            length = max(float(np.hypot(*(b - a))), 1e-9)
            n = _outward_normal(a, b, centre)
            degree = C2_DEGREES[s] if is_c2 else 2
            fit = fit_side(
                image,
                a,
                b,
                n,
                radius_px=radius_mm * px_per_mm,
                spans=spans[s],
                degree=degree,
                noise=noise,
                max_sag_px=MAX_SAG_MM * px_per_mm,
                around=_curve_about((previous or guide)[s], a, b, n) if previous or guide else None,
                near_sigma=NEAR_SIGMA if guided else None,
            )
            if is_c2 and s == 0 and (fit is None or abs(np.dot(fit.tangent(0.5), n)) > C2_MAX_TILT * length):
                # shoulders too faint (or too uneven) for their own tilt: one offset parallel to the
                # inferior endplate, pooling both shoulders' profiles
                fit = fit_side(
                    image, a, b, n, radius_px=radius_mm * px_per_mm, spans=spans[s], degree=0, noise=noise
                )
            if fit is None and previous:
                fit = previous[s]  # the narrower search lost a weak side: keep the wider one's fit
            if fit is None:
                return None, {"inlier": 0.0, "strength": 0.0, "rms_px": 99.0}, []
            fits[s] = fit
        if guided and wide:
            fits = _shape_guided(
                image,
                c,
                fits,
                radius_px=radius_mm * px_per_mm,
                noise=noise,
                px_per_mm=px_per_mm,
                mean_shape_mm=mean_shape_mm,
            )
        new = _corners(fits)
        if new is None:
            return None, {"inlier": 0.0, "strength": 0.0, "rms_px": 99.0}, fits
        c = new
        previous = fits
    out = c
    if side_offsets_mm is not None:
        shifted = [
            SideFit(
                f.start,
                f.end,
                f.normal,
                f.coef + np.array([o[0], o[1] - o[0], 0.0]) * px_per_mm,
                0.0,
                0.0,
                0.0,
            )
            for f, o in zip(fits, np.asarray(side_offsets_mm), strict=True)
        ]
        out = _corners(shifted)
        if out is None:
            return None, {"inlier": 0.0, "strength": 0.0, "rms_px": 99.0}, fits
    feats = {
        "inlier": min(f.inlier_fraction for f in fits),
        "strength": min(f.strength for f in fits),
        "rms_px": max(f.rms_px for f in fits),
    }
    return out, feats, fits


#: Stability reported when the repeated search loses a side (px; the feature's ceiling).
UNSTABLE_PX = 10.0


def stability_px(
    image: np.ndarray,
    corners_px: np.ndarray,
    fits: list[SideFit],
    *,
    is_c2: bool,
    px_per_mm: float,
    noise: float,
    side_offsets_mm: np.ndarray | None,
    radius_mm: float = 0.8,
) -> float:
    """How far the corners move when the final search is repeated from where it ended (px).

    A body whose outline is clear converges: repeating the narrow search from its own fitted
    sides moves no corner more than a fraction of a pixel. Where a side is ambiguous (a faint
    edge, another bone's edge within reach, a corner so acute that a small change of one side
    slides it far) the corners move: an estimate of their uncertainty that the fit residuals do
    not give. Returns :data:`UNSTABLE_PX` (the ceiling) when the repeated search loses a side.
    """
    raw = _corners(fits)
    if raw is None:
        return UNSTABLE_PX
    again, _, _ = refine_corners(
        image,
        raw,
        is_c2=is_c2,
        px_per_mm=px_per_mm,
        noise=noise,
        side_offsets_mm=side_offsets_mm,
        radii_mm=(radius_mm,),
        around=fits,
    )
    if again is None:
        return UNSTABLE_PX
    return float(min(np.hypot(*(again - corners_px).T).max(), UNSTABLE_PX))


def _curve_about(fit: SideFit, start: np.ndarray, end: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Coefficients of ``fit``'s curve as an offset (px along ``normal``) from the chord start-end."""
    k = float(np.dot(fit.normal, normal))
    d0 = float(np.dot(fit.start - start, normal))
    d1 = float(np.dot(fit.end - end, normal))
    return np.array([d0 + k * fit.coef[0], d1 - d0 + k * fit.coef[1], k * fit.coef[2]])


def _corners(fits: list[SideFit]) -> np.ndarray | None:
    out = np.zeros((4, 2))
    for k in range(4):
        # corner k is the end of side k-1 and the start of side k
        p = _intersect(fits[(k - 1) % 4], fits[k])
        if p is None:
            return None
        out[k] = p
    return out


def side_offsets_px(fits: list[SideFit], true_corners_px: np.ndarray) -> np.ndarray:
    """(4, 2) signed outward distance (px) of the true corners from each fitted side at its two ends."""
    out = np.zeros((4, 2))
    for s, (i, j) in enumerate(SIDES):
        f = fits[s]
        out[s, 0] = np.dot(true_corners_px[i] - f.point(0.0), f.normal)
        out[s, 1] = np.dot(true_corners_px[j] - f.point(1.0), f.normal)
    return out


# ------------------------------------------------------------------ C2 from its walls (issue #12)
#: Parts of C2's sides sampled when it is found from its walls (:func:`refine_c2_walls`): the
#: posterior wall above 20 % of its length from the top (its top runs on into the dens), the inferior
#: endplate as every body's, the anterior wall below 75 % (its top turns into the dens base).
SPANS_C2_WALLS: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((0.2, 0.88),),
    2: ((0.12, 0.88),),
    3: ((0.12, 0.75),),
}
#: The anterior wall ends where its edge step, averaged over 0.5 mm of wall, falls below this share of
#: its median along the wall's middle, and stays below for :data:`WALL_END_RUN_MM`.
WALL_END_DROP = 0.5
WALL_END_RUN_MM = 1.5
#: The wall's edge step is read within this distance (mm) of the wall's fitted line: an edge set
#: back from it (the dens behind the body's front, a shoulder) is not the wall.
WALL_END_RADIUS_MM = 0.6
#: Beyond this share of the anterior side the wall is extrapolated straight (its quadratic is fitted
#: below 75 %).
_WALL_STRAIGHT_FROM = 0.85


def _side_point(fit: SideFit, t: float, straight_from: float) -> np.ndarray:
    """``fit``'s curve up to ``straight_from``, its tangent line beyond."""
    if t <= straight_from:
        return fit.point(t)
    return fit.point(straight_from) + (t - straight_from) * fit.tangent(straight_from)


def wall_end(
    image: np.ndarray, fit: SideFit, *, px_per_mm: float, noise: float, reach: float = 1.9
) -> tuple[float | None, float]:
    """Where the anterior wall of C2 (``fit``, from its inferior corner at t=0) ends: the t at which its
    edge step falls to :data:`WALL_END_DROP` of its median along the wall (searched up to ``reach``
    times the side's length), and that median's strength over the noise. ``None`` when the wall is
    too faint or its step never falls for :data:`WALL_END_RUN_MM` (another edge continues it)."""
    length = float(np.hypot(*(fit.end - fit.start)))
    ts = np.arange(0.25, reach, 0.5 / max(length, 1.0))
    pts = np.array([_side_point(fit, t, _WALL_STRAIGHT_FROM) for t in ts])
    step = 0.25
    radius = WALL_END_RADIUS_MM * px_per_mm
    offsets = np.arange(-radius - 1.0, radius + 1.0 + step / 2, step)
    prof = _profiles(image, pts, fit.normal, offsets)
    k = int(round(0.5 / step))
    g = (prof[:, : -2 * k] - prof[:, 2 * k :]) / (2 * k * step)  # inside minus outside
    g = np.where(np.abs(offsets[k:-k])[None] <= radius, g, -np.inf).max(axis=1)
    w = max(1, int(round(0.5 * px_per_mm)))  # samples every 0.5 px: +-0.25 mm
    gs = np.convolve(g, np.ones(2 * w + 1) / (2 * w + 1), mode="same")
    ref = float(np.median(gs[(ts > 0.3) & (ts < 0.8)]))
    if ref < 3.0 * noise:
        return None, ref / max(noise, 1e-9)
    low = gs < WALL_END_DROP * ref
    run = int(round(WALL_END_RUN_MM * px_per_mm / 0.5))
    for i in range(1, len(ts) - run):
        if ts[i] >= 0.6 and low[i] and low[i : i + run].all():
            a, b = gs[i - 1] - WALL_END_DROP * ref, gs[i] - WALL_END_DROP * ref
            f = a / (a - b) if a != b else 0.0
            return float(ts[i - 1] + f * (ts[i] - ts[i - 1])), ref / max(noise, 1e-9)
    return None, ref / max(noise, 1e-9)


def refine_c2_walls(
    image: np.ndarray,
    corners_px: np.ndarray,
    *,
    px_per_mm: float,
    noise: float,
    radii_mm: tuple[float, ...] = (2.0, 0.8),
    around: list[SideFit | None] | None = None,
) -> tuple[np.ndarray | None, dict[str, float], list[SideFit | None]]:
    """C2's corners from its posterior and anterior walls and its inferior endplate (facing right).

    The spec puts C2's superior corners where the body meets the base of the dens. Where the body
    has no shoulders there (the posterior wall runs on into the dens, the anterior wall turns back
    into it), :func:`refine_corners`' search for two shoulder lines has nothing to fit. Here the
    inferior corners are the walls' intersections with the inferior endplate, as for every body;
    ``ant_sup`` is where the anterior wall's edge ends (:func:`wall_end`); ``post_sup`` is the point of
    the fitted posterior wall at the same height above the inferior endplate's chord (no edge of its
    own marks it: only its direction, the posterior wall's, enters a measurement).
    Returns the corners (or None), the fit features (``inlier``, ``strength``, ``rms_px`` over the
    three sides) and the four side fits (superior: None). ``around``: side fits (of an earlier call)
    that centre even the first search, as in :func:`refine_corners`.
    """
    c = np.asarray(corners_px, dtype=float).copy()
    previous: dict[int, SideFit] = {s: around[s] for s in SPANS_C2_WALLS} if around is not None else {}
    fits: dict[int, SideFit] = {}
    fail: tuple[None, dict[str, float], list] = (None, {"inlier": 0.0, "strength": 0.0, "rms_px": 99.0}, [])
    for radius_mm in radii_mm:
        centre = c.mean(axis=0)
        fits = {}
        for s, spans in SPANS_C2_WALLS.items():
            i, j = SIDES[s]
            a, b = c[i], c[j]
            n = _outward_normal(a, b, centre)
            fit = fit_side(
                image,
                a,
                b,
                n,
                radius_px=radius_mm * px_per_mm,
                spans=spans,
                degree=2,
                noise=noise,
                max_sag_px=MAX_SAG_MM * px_per_mm,
                around=_curve_about(previous[s], a, b, n) if previous else None,
            )
            if fit is None:
                return fail
            fits[s] = fit
        post_inf, ant_inf = _intersect(fits[1], fits[2]), _intersect(fits[2], fits[3])
        if post_inf is None or ant_inf is None:
            return fail
        t_end, _ = wall_end(image, fits[3], px_per_mm=px_per_mm, noise=noise)
        if t_end is None:
            return fail
        ant_sup = _side_point(fits[3], t_end, _WALL_STRAIGHT_FROM)
        d = (ant_inf - post_inf) / max(float(np.hypot(*(ant_inf - post_inf))), 1e-9)
        up = np.array([d[1], -d[0]])
        if np.dot(up, ant_sup - post_inf) < 0:
            up = -up
        height = float(np.dot(ant_sup - post_inf, up))
        # the posterior side runs from post_sup (t=0) down to post_inf (t=1)
        tt = np.linspace(-0.6, 1.0, 641)
        pts = np.array([fits[1].point(t) for t in tt])
        h = (pts - post_inf) @ up
        cross = np.nonzero(np.diff(np.sign(h - height)))[0]
        if len(cross) == 0:
            return fail
        q = int(cross[0])
        f = (height - h[q]) / (h[q + 1] - h[q])
        post_sup = pts[q] + f * (pts[q + 1] - pts[q])
        c = np.array([ant_sup, post_sup, post_inf, ant_inf])
        previous = fits
    feats = {
        "inlier": min(f.inlier_fraction for f in fits.values()),
        "strength": min(f.strength for f in fits.values()),
        "rms_px": max(f.rms_px for f in fits.values()),
    }
    return c, feats, [None, fits[1], fits[2], fits[3]]
