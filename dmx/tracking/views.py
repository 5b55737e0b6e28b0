"""Register vertebral bodies across the large motion between static views: :func:`register_views`.

A static flexion/extension study is two or three separate exposures, not a cine: between
flexion and extension C2 turns by tens of degrees (60 degrees and more) and moves by several
body heights, the exposure differs and so may the magnification. The tracker's small-motion
prediction does not apply, so each body is found on each other view in these steps:

1. **Coarse search** over the whole view, on images high-passed (soft-tissue shading and
   exposure removed) and reduced so that a body is about 16 px across: the body's template
   from the reference view (the body and a rim of 15 %), rotated over +-``max_rotation_deg``
   and scaled, is correlated (normalised cross-correlation, masked to the body) with the view;
   the best few separate peaks of each body are kept as candidates.
2. **Chain**: one candidate per body (or none) is chosen by dynamic programming over the
   column C2 -> C7: the sum of the scores, less a penalty wherever two neighbours'
   relative position differs from the reference's (turned with them and scaled) or their
   relative rotation exceeds what one level can do. The view's scale (one per exposure) is the
   coarse scale whose chain scores best, refined over +-6 % by the trusted bodies' relative
   residuals (:func:`_refine_scale`).
3. **Verification**: every candidate is refined with the tracker's robust rigid Lucas-Kanade
   registration (:func:`dmx.tracking.register.register`) on the view resampled to the
   reference's scale and scored by the tracker's quality (0..1), with the expected residual of a
   good match measured on the view (the median over its bodies' best candidates) as the tracker
   measures it on the frames next to the reference; C2 is also tried where C3 puts it; the chain
   is chosen again on these scores. Bodies look alike at 16 px; their own texture does not.
4. **Decision**: a body below :data:`dmx.tracking.TRUSTED_QUALITY`, out of order or overlapping
   with a neighbour, whose level is not unique (:func:`_ambiguous`: the chain with it kept off its
   place costs almost nothing more, so the column could be a level off), or that registered back
   onto the reference view does not land on its own landmarks (``confirm``), or that has no
   neighbour found next to it (nothing has checked its place), is ``NaN`` with a reason, never
   guessed.

Structures that do not move with the patient between the exposures (the shoulders over C7, a collimator
blade, burned-in text: at the same place on both views) are left out of every body's refinement
template (:func:`still_structure`). A template whose strongest structure is the shoulders' edge crossing
C7 otherwise matches that edge on the other view, at high confidence, with C7 several pixels and
degrees off.
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
    _size,
    neighbour_violation,
)
from dmx.tracking.types import Tracks

#: Reason of a body the coarse search found nowhere on a view (no candidate fits the chain).
NOT_IN_VIEW = "not found on this view"

#: Reason of a body found on a view at a place where a neighbour fits about as well: the bodies look
#: alike there and the column could be a level off, so which body it is cannot be told.
LEVEL_AMBIGUOUS = "a neighbouring body fits this view as well (which level it is is uncertain)"

#: Reason of a body found on a view that, registered back onto the reference view, lands elsewhere.
NOT_CONFIRMED = "registered back onto the reference view it does not land on itself"

#: Reason of a body found on a view without a neighbour found next to it (C3 for C2, ...).
ISOLATED = "no neighbouring body found on this view to check its place against"

#: The residual of a good match between two exposures may be up to this many times a template's own
#: (its image noise) before the view is judged to match nowhere. On clean images the template's own is
#: tiny (0.2-0.5 grey levels) and two exposures differ by soft tissue and processing far more than by
#: noise (development phantoms of every family: 10-25 times at the true place, gain 0.9, correlation
#: 1.0); 20 rejected such bodies. The level and back-registration checks guard the wrong places.
VIEW_RESIDUAL_CAP = 100.0

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


def still_structure(
    reference: np.ndarray, view: np.ndarray, body_px: float, *, noise_sd: float = 3.0, changed: float = 0.3
) -> np.ndarray | None:
    """Pixels of ``reference`` whose structure is the same at the same place on ``view``: what did not
    move between the exposures.

    Both images are band-passed as the refinement sees them (Gaussian sigma 1 px less a blur of a tenth of
    a body); a pixel is still where the reference's band-pass exceeds ``noise_sd`` times its noise (a robust
    standard deviation over the image) and the view's differs from it by less than ``changed`` of it,
    dilated by one pixel. A body that moves between the views keeps almost none of its own pixels (it has
    moved, or turned: its edges are not where they were). None when the views differ in size (no common
    pixel grid).

    Returns
    -------
    numpy.ndarray or None
        ``(H, W)`` bool.
    """
    if reference.shape != view.shape:
        return None
    sigma = max(2.0, 0.1 * float(body_px))
    a = np.asarray(reference, dtype=np.float32)
    b = np.asarray(view, dtype=np.float32)
    ha = cv2.GaussianBlur(a, (0, 0), 1.0) - cv2.GaussianBlur(a, (0, 0), sigma)
    hb = cv2.GaussianBlur(b, (0, 0), 1.0) - cv2.GaussianBlur(b, (0, 0), sigma)
    noise = 1.4826 * float(np.median(np.abs(ha - np.median(ha))))
    if not noise > 0:
        return None
    still = (np.abs(ha) > noise_sd * noise) & (np.abs(ha - hb) < changed * np.abs(ha))
    return cv2.dilate(still.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


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
) -> tuple[list[_Candidate | None], float]:
    """One candidate (or none) per body, top to bottom, by dynamic programming; and the chain's cost."""
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
    return chosen, float(np.min(cost[-1]))


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
    min_quality: float = TRUSTED_QUALITY,
) -> tuple[float, np.ndarray, list[Fit | None]]:
    """The view's scale to within a fraction of a per cent: the bodies' rigid fits over scales
    ``scale * (1 +- span)``; the best has the smallest robust residual, refined by a parabola through
    the best three. (The correlation over the inliers is flat in scale: a wrong scale loses inliers,
    not correlation.)

    Only bodies trusted at some scale (quality >= ``min_quality``) vote, each by its residual relative to
    its own smallest, combined by the median: one body matched to the wrong place (its residual a hundred
    times the others', and as noisy) must not choose the scale of the whole view. With no trusted body
    the scale stays as it is."""

    def fits_at(s: float, start_scale: float, start: list[Fit | None]) -> tuple[np.ndarray, np.ndarray, list]:
        work = _resample(img, s)
        out: list[Fit | None] = []
        z = np.full((2, len(start)), np.nan)  # residual / gain, quality
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
                z[:, i] = fit.residual_scale / fit.gain, _quality(fit, min_visible=0.6)
        return z, work, out

    grid = [scale * (1.0 + d) for d in np.arange(-span, span + 1e-9, step)]
    zq = np.stack([fits_at(s, scale, first)[0] for s in grid])  # (scales, 2, bodies)
    with np.errstate(invalid="ignore"):
        voters = np.flatnonzero(np.nanmax(np.nan_to_num(zq[:, 1], nan=0.0), axis=0) >= min_quality)
    if voters.size == 0:
        return float(scale), _resample(img, scale), first
    z = zq[:, 0][:, voters]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = z / np.nanmin(z, axis=0)
    scores = []
    for r in rel:
        r = r[np.isfinite(r)]
        scores.append(-float(np.median(r)) if r.size else -np.inf)
    k = int(np.argmax(scores))
    best = grid[k]
    if 0 < k < len(grid) - 1 and all(np.isfinite(scores[k - 1 : k + 2])):
        y0, y1, y2 = scores[k - 1], scores[k], scores[k + 1]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            best = grid[k] + 0.5 * (y0 - y2) / denom * (grid[k + 1] - grid[k])
    _, work, fits = fits_at(best, scale, first)
    return float(best), work, fits


def _candidate_template(template: Template | None, view_residual: float | None) -> Template | None:
    """``template`` expecting the residual of a good match between the two views (never less than its
    own; unchanged when that residual is unknown or absurd, over :data:`VIEW_RESIDUAL_CAP` times its own)."""
    if template is None or view_residual is None:
        return template
    if template.residual_scale < view_residual < VIEW_RESIDUAL_CAP * template.residual_scale:
        return replace(template, residual_scale=view_residual)
    return template


def _as_candidate(fit: Fit, centre_ref: np.ndarray, scale: float) -> _Candidate:
    """A refined fit (on the view resampled by ``scale``) as a chain candidate scored by its quality."""
    a = fit.transform
    moved = a[:2, :2] @ centre_ref + a[:2, 2]
    angle = math.degrees(math.atan2(a[1, 0], a[0, 0]))
    return _Candidate(moved * scale, angle, scale, _quality(fit, min_visible=0.6))


def _ambiguous(
    cands: list[list[_Candidate]],
    picked: list[_Candidate | None],
    base: float,
    centres_ref: list[np.ndarray],
    sizes: list[float],
    scale: float,
    *,
    max_level_rotation_deg: float,
    margin: float = 0.3,
) -> list[bool]:
    """Which picked bodies are not unique: the best chain with that body kept away from its place
    (a quarter of its size) costs less than ``margin`` more than the chosen one (``picked``, of cost
    ``base``).

    Bodies that look alike (the same size and texture at this resolution) let the chain be shifted by a
    level at almost no cost: each body on its neighbour's place, with a refined quality 0.01 below its
    own (held-out phantoms of every family, session 24: C3-C5 130 px off at quality 0.97). A body whose
    level is unique costs its whole quality (and more) to move."""
    out = [False] * len(cands)
    for i, c in enumerate(picked):
        if c is None:
            continue
        radius = 0.25 * sizes[i] * scale
        without = list(cands)
        without[i] = [k for k in cands[i] if np.linalg.norm(k.centre_px - c.centre_px) > radius]
        _, cost = _chain(
            without, centres_ref, max_level_rotation_deg=max_level_rotation_deg, missing_score=0.25
        )
        out[i] = cost - base < margin
    return out


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
    leave_out_still: bool = True,
    confirm: bool = True,
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
    leave_out_still : bool
        Leave what is at the same place on both views (:func:`still_structure`: the shoulders, blades,
        text) out of the refinement templates (views of the same size only).
    confirm : bool
        Register the bodies found back from ``view`` onto ``reference`` (the same search, roles swapped)
        and keep only those that land on their own landmarks (within a tenth of their size, at least
        1.5 px): a body found on a neighbour's place, or on something else that happens to fit, does not
        come back to itself. Others are ``NaN`` with :data:`NOT_CONFIRMED`.

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

    # one magnification per exposure: every body searched at each scale, and the scale whose best chain
    # (the whole column) scores best is the view's (one body's best peak alone picks the wrong scale on
    # small views, where a 10 % step is 1.6 px of a 16 px body)
    centres_ref = [q.mean(axis=0) for q in quads]
    chosen: list[_Candidate | None] = [None] * n_v
    cands: list[list[_Candidate]] = [[] for _ in quads]
    best_cost = math.inf
    for rel in rel_scales:
        at_rel = [search(q, (rel,)) for q in quads]
        picked, cost = _chain(
            at_rel, centres_ref, max_level_rotation_deg=max_level_rotation_deg, missing_score=0.25
        )
        if cost < best_cost:
            chosen, cands, best_cost = picked, at_rel, cost
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
    still = still_structure(ref, img, body) if leave_out_still else None
    # every candidate of every body refined and scored by the fit's quality: at the coarse search's
    # 16 px the bodies look alike and the chain can pick each body's lower neighbour, whose texture
    # the refinement then rejects (the true place is usually among the candidates)
    verified: list[list[_Candidate]] = [[] for _ in quads]
    verified_fits: list[list[Fit]] = [[] for _ in quads]
    for i, q in enumerate(quads):
        neighbours = tuple(quads[j] for j in (i - 1, i + 1) if 0 <= j < n_v)
        try:
            template = make_template(
                ref,
                q,
                exclude_quads_px=neighbours,
                exclude_mask=still,
                margin_frac=margin_frac,
                blur_sigma_px=blur_sigma_px,
                highpass_sigma_px=highpass_frac * sizes[i] if highpass_frac else None,
            )
        except ValueError:
            templates.append(None)
            reason[i] = REFERENCE_OUTSIDE
            quality[i] = 0.0
            continue
        templates.append(template)
    if refine_scale:
        # the coarse search's scale steps are 10 %: a candidate refined 5 % off the view's scale loses
        # its quality, so the scale is refined first, from the coarse chain's bodies
        start: list[Fit | None] = []
        for i, c in enumerate(chosen):
            template = templates[i]
            box = None
            if c is not None and template is not None:
                initial = _similarity(c.angle_deg, 1.0, centres_ref[i], c.centre_px / scale)
                box = needed_box(template, initial, work.shape, 0.3 * sizes[i] + template.filter_pad_px)
            if box is None or box[2] - box[0] < 8 or box[3] - box[1] < 8:
                start.append(None)
                continue
            start.append(register(template, FrameROI(work, box, template), initial, max_iterations=30))
        if any(f is not None for f in start):
            new_scale, work, _ = _refine_scale(
                img, scale, templates, start, centres_ref, sizes, min_quality=min_quality
            )
            scale = new_scale
            unscale = np.diag([scale, scale, 1.0])
    for i, template in enumerate(templates):
        if template is None:
            continue
        for c in cands[i]:
            initial = _similarity(c.angle_deg, 1.0, centres_ref[i], c.centre_px / scale)
            box = needed_box(template, initial, work.shape, 0.3 * sizes[i] + template.filter_pad_px)
            if box[2] - box[0] < 8 or box[3] - box[1] < 8:
                continue
            fit = register(template, FrameROI(work, box, template), initial, max_iterations=30)
            if np.all(np.isfinite(fit.transform)):
                verified_fits[i].append(fit)
    # scored against the residual of a good match between these two exposures (the tracker's expected
    # residual is that of neighbouring frames): each body's best candidate's residual, the median over
    # the bodies (below), never below the template's own
    best_residual = [
        min((f.residual_scale for f in fl if f.converged and f.visible > 0.9), default=np.nan)
        for fl in verified_fits
    ]
    best_residual = [r for r in best_residual if np.isfinite(r)]
    cand_residual = float(np.median(best_residual)) if best_residual else None
    fitted = [_candidate_template(t, cand_residual) for t in templates]
    for i, fl in enumerate(verified_fits):
        template = fitted[i]
        if template is None:
            continue
        if template is not templates[i]:
            refit = []
            for f in fl:
                box = needed_box(template, f.transform, work.shape, 4.0 + template.filter_pad_px)
                if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
                    f = register(template, FrameROI(work, box, template), f.transform, max_iterations=10)
                if np.all(np.isfinite(f.transform)):
                    refit.append(f)
            verified_fits[i] = fl = refit
        verified[i] = [_as_candidate(f, centres_ref[i], scale) for f in fl]
    picked, cost = _chain(
        verified, centres_ref, max_level_rotation_deg=max_level_rotation_deg, missing_score=0.25
    )
    # a body whose place was not among its coarse candidates because it turned most (C2, whose view
    # changes most): refined from where the found body below it puts it, turned with that body and by up
    # to +-16 degrees more, then the chain again. Only upwards: at the bottom of the column a body half
    # under the shoulders fits (quality 0.7-0.97) 14-19 px from its place, with its template mostly
    # shoulder (development phantoms 860005, 860015)
    again = False
    for i in range(n_v):
        if picked[i] is not None or fitted[i] is None:
            continue
        j = i + 1
        if j < n_v and picked[j] is not None:
            nb = picked[j]
            for turn in (-16.0, -8.0, 0.0, 8.0, 16.0):
                centre = nb.centre_px / scale + _rot(nb.angle_deg) @ (centres_ref[i] - centres_ref[j])
                initial = _similarity(nb.angle_deg + turn, 1.0, centres_ref[i], centre)
                tpl = fitted[i]
                box = needed_box(tpl, initial, work.shape, 0.3 * sizes[i] + tpl.filter_pad_px)
                if box[2] - box[0] < 8 or box[3] - box[1] < 8:
                    continue
                f = register(tpl, FrameROI(work, box, tpl), initial, max_iterations=30)
                if not np.all(np.isfinite(f.transform)):
                    continue
                verified_fits[i].append(f)
                verified[i].append(_as_candidate(f, centres_ref[i], scale))
                again = True
    if again:
        picked, cost = _chain(
            verified, centres_ref, max_level_rotation_deg=max_level_rotation_deg, missing_score=0.25
        )
    ambiguous = _ambiguous(
        verified, picked, cost, centres_ref, sizes, scale, max_level_rotation_deg=max_level_rotation_deg
    )
    first: list[Fit | None] = []
    for i in range(n_v):
        c = picked[i]
        if ambiguous[i]:
            first.append(None)
            reason[i] = LEVEL_AMBIGUOUS
            quality[i] = 0.0
            continue
        if c is None or templates[i] is None:
            first.append(None)
            if templates[i] is not None:
                reason[i] = NOT_IN_VIEW
                quality[i] = 0.0
            continue
        first.append(verified_fits[i][next(k for k, v in enumerate(verified[i]) if v is c)])
    if refine_scale and any(f is not None for f in first):
        scale, work, first = _refine_scale(
            img, scale, templates, first, centres_ref, sizes, min_quality=min_quality
        )
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
        if view_residual is not None and view_residual < VIEW_RESIDUAL_CAP * template.residual_scale:
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

    def drop(k: int, why: str) -> None:
        """Body ``k``, found, is not reported after all: NaN with ``why``, its quality at most 0.2."""
        reason[k] = why
        quality[k] = min(float(quality[k]), 0.2)
        fits[k] = None
        corners[k] = np.nan
        transforms[k] = np.nan
        precision[k] = np.nan

    # anatomy: neighbours keep their order and do not overlap; the weaker of a bad pair is dropped
    for i in range(n_v - 1):
        j = i + 1
        if fits[i] is None or fits[j] is None:
            continue
        bad = neighbour_violation(corners[i], corners[j], max_overlap=max_overlap)
        if bad is None:
            continue
        drop(i if fits[i][1] < fits[j][1] else j, bad)
    if confirm and any(f is not None for f in fits):
        found = [i for i in range(n_v) if fits[i] is not None]
        back = register_views(
            img,
            Landmarks(frame=0, corners_px={verts[i]: corners[i] for i in found}),
            ref,
            expected_scale=1.0 / scale,
            max_rotation_deg=max_rotation_deg,
            rotation_step_deg=rotation_step_deg,
            scale_range=scale_range,
            max_level_rotation_deg=max_level_rotation_deg,
            n_peaks=n_peaks,
            margin_frac=margin_frac,
            blur_sigma_px=blur_sigma_px,
            highpass_frac=highpass_frac,
            min_quality=min_quality,
            max_overlap=max_overlap,
            refine_scale=refine_scale,
            leave_out_still=leave_out_still,
            confirm=False,
        )
        for k, i in enumerate(found):
            err = float(np.linalg.norm(back.corners_px[k] - quads[i], axis=1).max())
            if not err <= max(1.5, 0.1 * sizes[i]):  # NaN (not found back) fails too
                drop(i, NOT_CONFIRMED)
    # a body with no neighbour found next to it has had no anatomical check of its place (the chain's
    # neighbour terms): on held-out phantoms such a lone C6 was 241 px off and registered back onto itself
    # (a look-alike). A level needs two neighbouring bodies anyway.
    ok = np.isfinite(corners).all(axis=(1, 2))
    for i in range(n_v):
        alone = not ((i > 0 and ok[i - 1]) or (i + 1 < n_v and ok[i + 1]))
        if ok[i] and alone and n_v > 1:
            drop(i, ISOLATED)
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
