"""Register vertebral bodies across the large motion between static views: :func:`register_views`.

A static flexion/extension study is two or three separate exposures, not a cine: between
flexion and extension C2 turns by tens of degrees (60 degrees and more) and moves by several
body heights, the exposure differs and so may the magnification. The tracker's small-motion
prediction does not apply, so each body is found on each other view in three steps:

1. **Coarse search** over the whole view, on images high-passed (soft-tissue shading and
   exposure removed) and reduced so that a body is about 16 px across: the body's template
   from the reference view (the body and a rim of 15 %), rotated over +-``max_rotation_deg``
   and scaled over ``scales``, is correlated (normalised cross-correlation, masked to the body)
   with the view; the best few separate peaks of each body are kept as candidates.
2. **Chain**: one candidate per body (or none) is chosen by dynamic programming over the
   column C2 -> C7: the sum of the correlations, less a penalty wherever two neighbours'
   relative position differs from the reference's (turned with them and scaled) or their
   relative rotation exceeds what one level can do. Bodies look alike; the chain keeps each
   in its anatomical place.
3. **Refinement** with the tracker's robust rigid Lucas-Kanade registration
   (:func:`dmx.tracking.register.register`) on the view resampled to the reference's scale,
   and the tracker's quality (0..1), with the expected residual of a good match measured on the
   view (the median over its bodies) as the tracker measures it on the frames next to the
   reference. A body below :data:`dmx.tracking.TRUSTED_QUALITY`, or
   out of order or overlapping with a neighbour, is ``NaN`` with a reason, never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from dmx.anatomy import Vertebra
from dmx.landmarks import Landmarks
from dmx.tracking.register import Fit, FrameROI, Template, make_template, needed_box, register
from dmx.tracking.tracker import (
    NOT_FOUND,
    REFERENCE_OUTSIDE,
    TRUSTED_QUALITY,
    _quality,
    neighbour_violation,
)
from dmx.tracking.types import Tracks

#: Reason of a body the coarse search found nowhere on a view (no candidate fits the chain).
NOT_IN_VIEW = "not found on this view"

#: Coarse search image: a body about this many pixels across.
COARSE_BODY_PX = 16.0


@dataclass(frozen=True)
class ViewFit:
    """One view's registration of every landmarked body (index ``v`` as in ``vertebrae``).

    Attributes
    ----------
    vertebrae : tuple of Vertebra
    corners_px : numpy.ndarray
        ``(V, 4, 2)`` corners on the view, NaN where not found.
    transforms : numpy.ndarray
        ``(V, 2, 3)`` reference-view pixels -> this view's pixels (a similarity: rotation,
        the view's scale, translation), NaN where not found.
    quality : numpy.ndarray
        ``(V,)`` in 0..1 (NaN where nothing could be scored).
    precision_px : numpy.ndarray
        ``(V,)`` expected corner error from image noise alone, NaN where not found.
    reason : tuple of str or None
    scale : float
        Size on this view / size on the reference view (magnification ratio).
    """

    vertebrae: tuple[Vertebra, ...]
    corners_px: np.ndarray
    transforms: np.ndarray
    quality: np.ndarray
    precision_px: np.ndarray
    reason: tuple[str | None, ...]
    scale: float


def _size(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return math.sqrt(0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))))


def _highpass(image: np.ndarray, sigma_px: float) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    return img - cv2.GaussianBlur(img, (0, 0), sigma_px)


def _reduce(image: np.ndarray, factor: float) -> np.ndarray:
    if factor <= 1.0:
        return image
    h, w = image.shape
    return cv2.resize(
        image, (max(8, round(w / factor)), max(8, round(h / factor))), interpolation=cv2.INTER_AREA
    )


def _resample(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` at the reference's scale: ``out(x) = image(scale * x)``."""
    if abs(scale - 1.0) <= 1e-6:
        return image
    out_w = max(8, int(math.ceil(image.shape[1] / scale)))
    out_h = max(8, int(math.ceil(image.shape[0] / scale)))
    m = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    return cv2.warpAffine(image, m, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def _rescaled(transform: np.ndarray, centre_px: np.ndarray, ratio: float) -> np.ndarray:
    """A rigid pose on a view resampled at another scale (``ratio`` = old / new): same turn, centre moved."""
    theta = math.degrees(math.atan2(transform[1, 0], transform[0, 0]))
    moved = transform[:2, :2] @ centre_px + transform[:2, 2]
    return _similarity(theta, 1.0, centre_px, moved * ratio)


@dataclass(frozen=True)
class _Candidate:
    centre_px: np.ndarray  # full-resolution centre on the view
    angle_deg: float
    scale: float
    score: float


def _candidates(
    ref_low: np.ndarray,
    view_low: np.ndarray,
    quad_low: np.ndarray,
    *,
    angles_deg: np.ndarray,
    scales: tuple[float, ...],
    to_full: float,
    n_peaks: int,
) -> list[_Candidate]:
    """Coarse search of one body: the best ``n_peaks`` separate peaks over rotation and scale."""
    centre = quad_low.mean(axis=0)
    size = _size(quad_low)
    half = int(math.ceil(0.5 * size * 1.45 * max(scales))) + 1
    side = 2 * half + 1
    if side >= min(view_low.shape) - 1:
        return []
    # mask: the body dilated by 15 % (in template coordinates, rotated with the template)
    u0 = float(half)
    best = np.full((view_low.shape[0] - side + 1, view_low.shape[1] - side + 1), -np.inf, np.float32)
    best_i = np.zeros(best.shape, np.int32)
    combos = [(float(a), float(s)) for s in scales for a in angles_deg]
    dil = centre + 1.15 * (quad_low - centre)
    for k, (ang, sc) in enumerate(combos):
        th = math.radians(ang)
        c, s = math.cos(th), math.sin(th)
        rot = np.array([[c, -s], [s, c]])
        # template pixel u samples the reference at centre + R(-th) (u - u0) / sc
        a = rot.T / sc
        b = centre - a @ np.array([u0, u0])
        m = np.hstack([a, b[:, None]])
        tmpl = cv2.warpAffine(
            ref_low,
            m,
            (side, side),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )
        poly = (dil - centre) @ rot.T * sc + u0
        mask = np.zeros((side, side), np.uint8)
        cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
        if mask.sum() < 20:
            continue
        res = cv2.matchTemplate(view_low, tmpl, cv2.TM_CCOEFF_NORMED, mask=mask.astype(np.float32))
        res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
        better = res > best
        best[better] = res[better]
        best_i[better] = k
    out: list[_Candidate] = []
    work = best.copy()
    radius = max(2, int(round(0.45 * size)))
    for _ in range(n_peaks):
        _, score, _, loc = cv2.minMaxLoc(work)
        if not np.isfinite(score) or score <= 0.05:
            break
        x, y = loc
        ang, sc = combos[int(best_i[y, x])]
        ctr_low = np.array([x + u0, y + u0])
        out.append(_Candidate((ctr_low + 0.5) * to_full - 0.5, ang, sc, float(score)))
        work[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1] = -np.inf
    return out


def _rot(angle_deg: float) -> np.ndarray:
    th = math.radians(angle_deg)
    return np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])


def _chain(
    cands: list[list[_Candidate]],
    centres_ref: list[np.ndarray],
    *,
    max_level_rotation_deg: float,
    missing_score: float,
) -> list[_Candidate | None]:
    """Choose one candidate (or none) per body, top to bottom, by dynamic programming."""
    n = len(cands)
    states = [[*c, None] for c in cands]
    cost = [np.array([-(s.score if s is not None else missing_score) for s in states[0]])]
    back: list[np.ndarray] = []
    for i in range(1, n):
        d_ref = centres_ref[i] - centres_ref[i - 1]
        length = float(np.linalg.norm(d_ref)) + 1e-9
        prev = states[i - 1]
        cur_cost = np.empty(len(states[i]))
        cur_back = np.empty(len(states[i]), np.int64)
        for j, c in enumerate(states[i]):
            unary = -(c.score if c is not None else missing_score)
            best, arg = math.inf, 0
            for k, p in enumerate(prev):
                pair = 0.0
                if c is not None and p is not None:
                    turn = (c.angle_deg - p.angle_deg + 180.0) % 360.0 - 180.0
                    mean = p.angle_deg + 0.5 * turn
                    pred = p.centre_px + 0.5 * (c.scale + p.scale) * (_rot(mean) @ d_ref)
                    e = float(np.linalg.norm(c.centre_px - pred)) / length
                    # up to a quarter of the spacing is free: a level's own translation (instability)
                    # must never cost a body its place
                    pair = 0.4 * min((max(0.0, e - 0.25) / 0.15) ** 2, 9.0)
                    if e > 0.8 or abs(turn) > max_level_rotation_deg:
                        pair += 10.0
                total = cost[-1][k] + pair
                if total < best:
                    best, arg = total, k
            cur_cost[j] = unary + best
            cur_back[j] = arg
        cost.append(cur_cost)
        back.append(cur_back)
    j = int(np.argmin(cost[-1]))
    chosen: list[_Candidate | None] = [None] * n
    for i in range(n - 1, -1, -1):
        chosen[i] = states[i][j]
        if i > 0:
            j = int(back[i - 1][j])
    return chosen


def _similarity(
    angle_deg: float, scale: float, centre_ref: np.ndarray, centre_view: np.ndarray
) -> np.ndarray:
    """3x3 map reference -> view: rotate and scale about the reference centre, move it to ``centre_view``."""
    a = scale * _rot(angle_deg)
    out = np.eye(3)
    out[:2, :2] = a
    out[:2, 2] = centre_view - a @ centre_ref
    return out


def _refine_scale(
    img: np.ndarray,
    scale: float,
    templates: list[Template | None],
    first: list[Fit | None],
    centres_ref: list[np.ndarray],
    sizes: list[float],
    *,
    span: float = 0.06,
    step: float = 0.02,
) -> tuple[float, np.ndarray, list[Fit | None]]:
    """The view's scale to within a fraction of a per cent: the bodies' rigid fits over scales
    ``scale * (1 +- span)``; the best has the smallest robust residual (in the reference's intensity
    units), refined by a parabola through the best three. (The correlation over the inliers is flat
    in scale: a wrong scale loses inliers, not correlation.)"""

    def fits_at(s: float, start_scale: float, start: list[Fit | None]) -> tuple[float, np.ndarray, list]:
        work = _resample(img, s)
        out: list[Fit | None] = []
        z = []
        for i, f in enumerate(start):
            tpl = templates[i]
            if f is None or tpl is None or not np.all(np.isfinite(f.transform)):
                out.append(None)
                continue
            init = _rescaled(f.transform, centres_ref[i], start_scale / s)
            box = needed_box(tpl, init, work.shape, 0.1 * sizes[i] + tpl.filter_pad_px)
            if box[2] - box[0] < 8 or box[3] - box[1] < 8:
                out.append(None)
                continue
            fit = register(tpl, FrameROI(work, box, tpl), init, max_iterations=20, first_level=1)
            out.append(fit)
            if np.isfinite(fit.residual_scale) and fit.gain > 0:
                z.append(-fit.residual_scale / fit.gain)
        return (float(np.mean(z)) if z else -np.inf), work, out

    grid = [scale * (1.0 + d) for d in np.arange(-span, span + 1e-9, step)]
    scores = [fits_at(s, scale, first)[0] for s in grid]
    k = int(np.argmax(scores))
    best = grid[k]
    if 0 < k < len(grid) - 1 and all(np.isfinite(scores[k - 1 : k + 2])):
        y0, y1, y2 = scores[k - 1], scores[k], scores[k + 1]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            best = grid[k] + 0.5 * (y0 - y2) / denom * (grid[k + 1] - grid[k])
    _, work, fits = fits_at(best, scale, first)
    return float(best), work, fits


def register_views(
    reference: np.ndarray,
    landmarks: Landmarks,
    view: np.ndarray,
    *,
    expected_scale: float | None = None,
    max_rotation_deg: float = 75.0,
    rotation_step_deg: float = 4.0,
    scale_range: float = 0.1,
    max_level_rotation_deg: float = 25.0,
    n_peaks: int = 10,
    margin_frac: float = 0.06,
    blur_sigma_px: float = 1.0,
    highpass_frac: float = 0.1,
    min_quality: float = TRUSTED_QUALITY,
    max_overlap: float = 0.1,
    refine_scale: bool = True,
) -> ViewFit:
    """Find every landmarked body of ``reference`` on another static ``view``.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(H, W)`` the view the landmarks were placed on (display polarity; not modified).
    landmarks : Landmarks
        Corners of the bodies on ``reference``.
    view : numpy.ndarray
        ``(H', W')`` another view of the same patient (any size, exposure and magnification).
    expected_scale : float, optional
        Expected size on ``view`` / size on ``reference`` (e.g. the ratio of the views'
        pixel sizes); the scale search is centred on it (default 1).
    max_rotation_deg : float
        Rotation searched either way (degrees) relative to the reference view.
    rotation_step_deg : float
        Step of the coarse rotation search.
    scale_range : float
        Scales searched: ``expected_scale * (1 - scale_range .. 1 + scale_range)``.
    max_level_rotation_deg : float
        Largest change of the angle between two neighbouring bodies from one view to the other.
    n_peaks : int
        Candidates kept per body from the coarse search.
    margin_frac : float
        The refinement's template is the body dilated by this fraction of its size: less rim than the
        tracker's (0.15), since between static views the neighbours and soft tissue around a body change
        much more than between frames of a cine.
    blur_sigma_px, highpass_frac : float
        Prefilter of the refinement (as the tracker's).
    min_quality : float
        Bodies below this quality are ``NaN`` with a reason.
    max_overlap : float
        Largest allowed overlap of neighbouring bodies (fraction of the smaller).
    refine_scale : bool
        Refine the view's scale (magnification ratio) beyond the coarse search's steps, by the
        bodies' correlation over scales within 6 % (one scale for the whole view).

    Returns
    -------
    ViewFit
    """
    ref = np.asarray(reference, dtype=np.float32)
    img = np.asarray(view, dtype=np.float32)
    verts = tuple(v for v in Vertebra if v in landmarks.corners_px)
    quads = [np.asarray(landmarks.corners_px[v], dtype=np.float64) for v in verts]
    n_v = len(verts)
    s0 = 1.0 if expected_scale is None else float(expected_scale)
    sizes = [_size(q) for q in quads]
    body = float(np.median(sizes)) if sizes else 1.0
    factor = max(1.0, body / COARSE_BODY_PX)
    sigma = max(2.0, 0.5 * body)
    ref_low = _reduce(_highpass(ref, sigma), factor)
    view_low = _reduce(_highpass(img, sigma * s0), factor * s0 if s0 > 0 else factor)
    fx_ref = ref_low.shape[1] / ref.shape[1]
    fx_view = view_low.shape[1] / img.shape[1]
    angles = np.arange(-max_rotation_deg, max_rotation_deg + 1e-9, rotation_step_deg)
    # scales relative to the expected one, on the view reduced by factor * s0
    rel_scales = tuple(sorted({1.0 - scale_range, 1.0, 1.0 + scale_range}))

    def search(q: np.ndarray, scales: tuple[float, ...]) -> list[_Candidate]:
        found = _candidates(
            ref_low,
            view_low,
            (q + 0.5) * fx_ref - 0.5,
            angles_deg=angles,
            scales=scales,
            to_full=1.0 / fx_view,
            n_peaks=n_peaks,
        )
        return [_Candidate(c.centre_px, c.angle_deg, c.scale * s0, c.score) for c in found]

    # the scale (one magnification per exposure) from the middle body, then every body at that scale
    cands: list[list[_Candidate]] = [[] for _ in quads]
    if quads:
        mid = n_v // 2
        cands[mid] = search(quads[mid], rel_scales)
        rel = cands[mid][0].scale / s0 if cands[mid] else 1.0
        for i, q in enumerate(quads):
            if i != mid:
                cands[i] = search(q, (rel,))
    centres_ref = [q.mean(axis=0) for q in quads]
    chosen = _chain(cands, centres_ref, max_level_rotation_deg=max_level_rotation_deg, missing_score=0.25)

    found_scales = [c.scale for c in chosen if c is not None]
    scale = float(np.median(found_scales)) if found_scales else s0
    # refine on the view resampled to the reference's scale: view'(x) = view(scale * x)
    work = _resample(img, scale)
    corners = np.full((n_v, 4, 2), np.nan)
    transforms = np.full((n_v, 2, 3), np.nan)
    quality = np.full(n_v, np.nan)
    precision = np.full(n_v, np.nan)
    reason: list[str | None] = [None] * n_v
    fits: list[tuple[np.ndarray, float] | None] = [None] * n_v
    unscale = np.diag([scale, scale, 1.0])
    templates: list[Template | None] = []
    first: list[Fit | None] = []
    for i, q in enumerate(quads):
        neighbours = tuple(quads[j] for j in (i - 1, i + 1) if 0 <= j < n_v)
        try:
            template = make_template(
                ref,
                q,
                exclude_quads_px=neighbours,
                margin_frac=margin_frac,
                blur_sigma_px=blur_sigma_px,
                highpass_sigma_px=highpass_frac * sizes[i] if highpass_frac else None,
            )
        except ValueError:
            templates.append(None)
            first.append(None)
            reason[i] = REFERENCE_OUTSIDE
            quality[i] = 0.0
            continue
        templates.append(template)
        c = chosen[i]
        box = None
        if c is not None:
            initial = _similarity(c.angle_deg, 1.0, centres_ref[i], c.centre_px / scale)
            box = needed_box(template, initial, work.shape, 0.3 * sizes[i] + template.filter_pad_px)
        if c is None or box is None or box[2] - box[0] < 8 or box[3] - box[1] < 8:
            first.append(None)
            reason[i] = NOT_IN_VIEW
            quality[i] = 0.0
            continue
        first.append(register(template, FrameROI(work, box, template), initial, max_iterations=30))
    if refine_scale and any(f is not None for f in first):
        scale, work, first = _refine_scale(img, scale, templates, first, centres_ref, sizes)
        unscale = np.diag([scale, scale, 1.0])
    # The expected residual of a good match: the tracker measures it on the frames next to the
    # reference; a static study has none, so it is the median residual of this view's bodies (the
    # study's noise, blur and compression between two exposures), never below the template's own.
    good = [
        f.residual_scale
        for f in first
        if f is not None and f.converged and f.visible > 0.9 and np.isfinite(f.residual_scale)
    ]
    view_residual = float(np.median(good)) if good else None
    for i, q in enumerate(quads):
        template, fit = templates[i], first[i]
        if template is None or fit is None:
            continue
        if view_residual is not None and view_residual < 20.0 * template.residual_scale:
            template = replace(template, residual_scale=max(template.residual_scale, view_residual))
            box = needed_box(template, fit.transform, work.shape, 4.0 + template.filter_pad_px)
            if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
                fit = register(template, FrameROI(work, box, template), fit.transform, max_iterations=30)
        q_fit = _quality(fit, min_visible=0.6)
        quality[i] = q_fit
        if not np.all(np.isfinite(fit.transform)) or q_fit < min_quality:
            reason[i] = NOT_FOUND
            continue
        a = unscale @ fit.transform
        fits[i] = (a, q_fit)
        transforms[i] = a[:2]
        corners[i] = q @ a[:2, :2].T + a[:2, 2]
        precision[i] = fit.corner_std_px * scale
    # anatomy: neighbours keep their order and do not overlap; the weaker of a bad pair is dropped
    for i in range(n_v - 1):
        j = i + 1
        if fits[i] is None or fits[j] is None:
            continue
        bad = neighbour_violation(corners[i], corners[j], max_overlap=max_overlap)
        if bad is None:
            continue
        k = i if fits[i][1] < fits[j][1] else j
        reason[k] = bad
        quality[k] = min(float(quality[k]), 0.2)
        fits[k] = None
        corners[k] = np.nan
        transforms[k] = np.nan
        precision[k] = np.nan
    return ViewFit(verts, corners, transforms, quality, precision, tuple(reason), scale)


def static_tracks(
    views: list[np.ndarray] | tuple[np.ndarray, ...],
    landmarks: Landmarks,
    *,
    given: dict[int, Landmarks] | None = None,
    expected_scales: list[float | None] | None = None,
    **options: float,
) -> tuple[Tracks, list[ViewFit | None]]:
    """Corners of every landmarked body on every static view, as :class:`Tracks` (frames = views).

    Parameters
    ----------
    views : sequence of numpy.ndarray
        The views (each ``(H, W)``, sizes may differ), in frame order.
    landmarks : Landmarks
        Corners on view ``landmarks.frame`` (the reference view).
    given : dict, optional
        ``{view: Landmarks}`` corners given on other views: used as they are (bodies not given on such a
        view are registered).
    expected_scales : list, optional
        Per view, expected body size on it / on the reference view (ratio of pixel sizes).
    **options
        Passed to :func:`register_views`.

    Returns
    -------
    (Tracks, list of ViewFit or None)
        Tracks with ``reference_frame = landmarks.frame``; a body is NaN with a reason on a view
        where it was not found. The ViewFit of each registered view (None for the reference and given ones).
    """
    given = dict(given or {})
    ref = int(landmarks.frame)
    verts = tuple(v for v in Vertebra if v in landmarks.corners_px)
    n_t, n_v = len(views), len(verts)
    corners = np.full((n_t, n_v, 4, 2), np.nan)
    transforms = np.full((n_t, n_v, 2, 3), np.nan)
    quality = np.full((n_t, n_v), np.nan)
    precision = np.full((n_t, n_v), np.nan)
    reason: list[list[str | None]] = [[None] * n_v for _ in range(n_t)]
    fits: list[ViewFit | None] = [None] * n_t
    for i, v in enumerate(verts):
        corners[ref, i] = landmarks.corners_px[v]
        transforms[ref, i] = np.eye(3)[:2]
        quality[ref, i] = 1.0
        precision[ref, i] = 0.0
    for t in range(n_t):
        if t == ref:
            continue
        lm = given.get(t)
        if lm is None or any(v not in lm.corners_px for v in verts):
            scale = None if expected_scales is None else expected_scales[t]
            fit = register_views(views[ref], landmarks, views[t], expected_scale=scale, **options)
            fits[t] = fit
            corners[t] = fit.corners_px
            transforms[t] = fit.transforms
            quality[t] = fit.quality
            precision[t] = fit.precision_px
            reason[t] = list(fit.reason)
        if lm is not None:  # corners given on this view are used as they are
            for i, v in enumerate(verts):
                if v in lm.corners_px:
                    corners[t, i] = lm.corners_px[v]
                    quality[t, i] = 1.0
                    precision[t, i] = 0.0
                    reason[t][i] = None
                    src = np.asarray(landmarks.corners_px[v], dtype=float)
                    transforms[t, i] = _fit_similarity(src, np.asarray(lm.corners_px[v], dtype=float))
    tracks = Tracks(
        vertebrae=verts,
        corners_px=corners,
        quality=quality,
        reason=tuple(tuple(r) for r in reason),
        reference_frame=ref,
        transforms=transforms,
        precision_px=precision,
        centres_px=np.array([np.asarray(landmarks.corners_px[v]).mean(axis=0) for v in verts]).reshape(
            n_v, 2
        ),
    )
    return tracks, fits


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2, 3) mapping ``src`` points to ``dst`` points."""
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32), method=cv2.LMEDS)
    if m is None:
        return np.full((2, 3), np.nan)
    return m.astype(float)
