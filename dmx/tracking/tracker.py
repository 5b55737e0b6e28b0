"""Follow every vertebral body, and the atlas, through the cine: :func:`track`.

Every frame is registered against the *reference* appearance of each body (the
template cut from the landmark frame), so errors do not accumulate; previous
frames only predict the starting guess (constant velocity of the rigid motion).
When that fails, candidates from the last good pose and from the neighbouring
bodies' motion are tried, with a coarse rotation/translation search
(:func:`cv2.matchTemplate`) on the coarsest pyramid level. A frame is reported
NaN with a reason rather than drifting silently.

C1 has no corners: when the landmarks give ``C1.arch_post`` it is followed as a rigid body too, from a
template around its anterior arch (:func:`dmx.tracking.atlas.arch_region_px`), by the same registration,
quality and reasons. It has transforms but NaN corners (so that the atlanto-dental interval can be carried
through the frames), and is left out of the anatomy check (it must never cost a body).

Quality (0..1) of a frame is the product of: the share of the template that
still matches the reference within noise (inliers), the share inside the image,
the normalised correlation over the inliers, the expected corner precision from
the fit's Hessian, convergence, and a plausible photometric gain. Frames below
:data:`TRUSTED_QUALITY` (default ``min_quality``) are NaN, with ``reason`` one of
:data:`LEFT_IMAGE`, :data:`NOT_FOUND`, :data:`DIVERGED`, :data:`IMPLAUSIBLE`,
:data:`OVERLAP`, :data:`ORDER`, :data:`REFERENCE_OUTSIDE`.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from dmx.anatomy import Vertebra
from dmx.errors import LandmarkError
from dmx.landmarks import Landmarks
from dmx.tracking.atlas import arch_region_px
from dmx.tracking.register import (
    Fit,
    FrameROI,
    Template,
    _level_matrix,
    _level_matrix_inv,
    _rigid_inv,
    make_template,
    needed_box,
    register,
    rigid,
)
from dmx.tracking.types import Tracks

#: Ratio of the actual RMS corner error to the white-noise Cramer-Rao estimate of the fit, measured on
#: the phantom at three dose levels (4.4-4.6): neighbouring pixels' noise is correlated (detector blur,
#: prefilter, compression), so the pixels are not independent samples.
NOISE_CORRELATION = 4.5

#: The same ratio for the rotation of a body (``Tracks.rotation_precision_deg``): the actual RMS error of
#: the segmental angle over the white-noise estimate, measured on phantoms held out from the benchmarks
#: (seeds 11-14: default, 3000 and 1000 photons, JPEG q80; raw tracks, 1180 level-frames): 0.74 of
#: NOISE_CORRELATION. ``benchmarks/measurements.py`` checks it on its own cases.
ROTATION_NOISE_CORRELATION = 3.3

#: Quality below which a tracked frame should not be used for measurement.
TRUSTED_QUALITY = 0.6

LEFT_IMAGE = "left the image"
NOT_FOUND = "not found (occluded or changed appearance)"
DIVERGED = "registration diverged"
IMPLAUSIBLE = "implausible jump from the previous frame"
OVERLAP = "overlaps a neighbouring body"
ORDER = "out of order with a neighbouring body"
REFERENCE_OUTSIDE = "body outside the reference frame"


@dataclass
class _State:
    """Per-vertebra tracking state within one pass (forward or backward)."""

    history: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (t, 3x3) good fits
    lost: bool = False


def _quality(fit: Fit, *, min_visible: float) -> float:
    """Confidence in 0..1 from inlier fraction, visibility, precision, convergence and gain."""
    if not np.isfinite(fit.gain) or fit.gain <= 0:
        return 0.0
    q_in = float(np.clip((fit.inliers - 0.25) / 0.35, 0.0, 1.0))
    q_vis = float(np.clip((fit.visible - min_visible) / (1.0 - min_visible + 1e-9) * 2, 0.0, 1.0))
    q_prec = 1.0 / (1.0 + (fit.corner_std_px / 0.25) ** 2)
    q_corr = float(np.clip((fit.zncc - 0.2) / 0.5, 0.0, 1.0))
    q_conv = 1.0 if fit.converged else 0.6
    q_gain = float(np.clip((fit.gain - 0.3) / 0.3, 0.0, 1.0)) * float(
        np.clip((3.0 - fit.gain) / 1.5, 0.0, 1.0)
    )
    return q_in * q_vis * q_prec * q_corr * q_conv * q_gain


def _predict(state: _State, t: int) -> np.ndarray | None:
    """Initial guess for frame ``t`` from the last good poses (None before any)."""
    if not state.history:
        return None
    t1, a1 = state.history[-1]
    if len(state.history) < 2:
        return a1
    t0, a0 = state.history[-2]
    if abs(t1 - t0) > 3 or abs(t - t1) > 3:
        return a1
    # constant velocity: repeat the last inter-frame rigid motion, scaled to the frame gap
    rel = a1 @ _rigid_inv(a0)
    step = (t - t1) / (t1 - t0)
    theta = math.atan2(rel[1, 0], rel[0, 0])
    # fractional power of a rigid motion: rotate by step*theta about its fixed point
    if abs(theta) > 1e-6:
        m = np.eye(2) - rel[:2, :2]
        c = np.linalg.solve(m, rel[:2, 2])
        pred = rigid(step * theta, 0.0, 0.0, c)
    else:
        pred = np.eye(3)
        pred[:2, 2] = step * rel[:2, 2]
    return pred @ a1


def _visible(template: Template, a: np.ndarray | None, shape: tuple[int, int]) -> float:
    """Share of the body quadrilateral (or region polygon) inside the frame at pose ``a`` (sampled)."""
    if a is None:
        return 0.0
    q = _corners(a, template.quad_px)
    if len(q) == 4:  # a 7x7 grid over the quadrilateral
        s = np.linspace(0.0, 1.0, 7)
        u, v = np.meshgrid(s, s)
        u = u.ravel()[:, None]
        v = v.ravel()[:, None]
        top = q[0] + (q[1] - q[0]) * u
        bottom = q[3] + (q[2] - q[3]) * u
        p = top + (bottom - top) * v
    else:  # a star-shaped polygon: its vertices drawn towards the centre
        c = q.mean(axis=0)
        p = np.concatenate([c + f * (q - c) for f in (0.2, 0.45, 0.7, 0.95)] + [c[None]])
    h, w = shape
    inside = (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)
    return float(inside.mean())


def _size(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return math.sqrt(0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))))


def _corners(a: np.ndarray, quad: np.ndarray) -> np.ndarray:
    return quad @ a[:2, :2].T + a[:2, 2]


def _search(
    template: Template,
    frame: np.ndarray,
    around: np.ndarray,
    *,
    radius_px: float,
    angles_deg: tuple[float, ...],
    blur: float,
) -> list[np.ndarray]:
    """Coarse search: best translation for each rotation offset of ``around``, on the coarsest level."""
    lvl = len(template.levels) - 1
    level = template.levels[lvl]
    scale = level.scale
    h, w = level.shape
    tmpl = np.zeros(h * w, np.float32)
    tmpl[level.idx] = level.values
    mask = np.zeros(h * w, np.float32)
    mask[level.idx] = level.weight
    tmpl = tmpl.reshape(h, w)
    mask = mask.reshape(h, w)
    if mask.sum() < 20:
        return []
    box = needed_box(template, around, frame.shape, radius_px + template.filter_pad_px + 4)
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        return []
    roi = FrameROI(frame, box, template)
    img = roi.images[lvl]
    out = []
    c_ref = template.centre_px
    s = _level_matrix(scale)
    s_inv = _level_matrix_inv(scale)
    for ang in angles_deg:
        cand = around @ rigid(math.radians(ang), 0.0, 0.0, c_ref)
        # resample the frame so the template is axis aligned: search grid = template grid translated
        n_pad = int(math.ceil(radius_px / scale)) + 1
        a_l = s @ cand @ s_inv
        g = np.array(
            [[1.0, 0.0, level.origin[0] - n_pad], [0.0, 1.0, level.origin[1] - n_pad], [0.0, 0.0, 1.0]]
        )
        m = a_l @ g
        m[0, 2] -= roi.box[0] / scale
        m[1, 2] -= roi.box[1] / scale
        big = cv2.warpAffine(
            img,
            m[:2],
            (w + 2 * n_pad, h + 2 * n_pad),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        res = cv2.matchTemplate(big, tmpl, cv2.TM_CCOEFF_NORMED, mask=mask)
        res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, score, _, loc = cv2.minMaxLoc(res)
        du, dv = loc[0] - n_pad, loc[1] - n_pad
        shift = np.eye(3)
        shift[0, 2] = du
        shift[1, 2] = dv
        # template point x maps to cand(x + shift) at this level
        out.append((score, s_inv @ a_l @ shift @ s))
    out.sort(key=lambda p: -p[0])
    return [a for _, a in out[:3]]


def _poly_overlap(p: np.ndarray, q: np.ndarray) -> float:
    """Intersection area of two quads as a fraction of the smaller one."""
    a = np.asarray(p, np.float32)
    b = np.asarray(q, np.float32)
    ha = cv2.convexHull(a)
    hb = cv2.convexHull(b)
    inter, _ = cv2.intersectConvexConvex(ha, hb)
    small = min(cv2.contourArea(ha), cv2.contourArea(hb))
    return float(inter / small) if small > 0 else 0.0


def track(
    frames: np.ndarray,
    landmarks: Landmarks,
    *,
    vertebrae: tuple[Vertebra, ...] | None = None,
    margin_frac: float = 0.15,
    blur_sigma_px: float = 1.0,
    highpass_frac: float | None = 0.1,
    n_levels: int | None = None,
    max_iterations: int = 12,
    min_quality: float = TRUSTED_QUALITY,
    min_visible: float = 0.6,
    max_rotation_step_deg: float = 20.0,
    max_step_frac: float = 0.6,
    max_overlap: float = 0.1,
    anatomy_check: bool = True,
    reacquire: bool = True,
    threads: int = 1,
) -> Tracks:
    """Track the four corners of every landmarked vertebral body (and C1, when landmarked) through the cine.

    Each body is a rigid body (rotation + translation). Every frame is registered against the body's
    appearance on the reference frame (``landmarks.frame``) with a robust inverse-compositional
    Lucas-Kanade fit; frames after the reference are tracked forwards, frames before it backwards. When the
    landmarks give ``C1.arch_post``, C1 is followed the same way from its anterior arch: it is in
    ``Tracks.vertebrae`` with transforms and quality, and NaN corners.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` grey frames, any integer or float dtype, display polarity (not modified).
    landmarks : Landmarks
        Corners of the bodies on frame ``landmarks.frame``.
    vertebrae : tuple of Vertebra, optional
        Subset to track (default: every body in ``landmarks``, and C1 when ``C1.arch_post`` is given),
        kept in top-to-bottom order.
    margin_frac : float
        Template = body dilated by this fraction of its size.
    blur_sigma_px : float
        Gaussian pre-filter sigma (pixels) for template and frames.
    highpass_frac : float or None
        Subtract a Gaussian blur of sigma = this fraction of the body size (removes smooth soft-tissue
        shading that does not move with the bone); None to disable.
    n_levels : int, optional
        Pyramid levels (default: chosen from the body size).
    max_iterations : int
        Gauss-Newton iterations per pyramid level.
    min_quality : float
        Frames whose quality falls below this are reported NaN (``reason`` says why).
    min_visible : float
        Fraction of the template that must lie inside the frame.
    max_rotation_step_deg, max_step_frac : float
        Largest plausible change between consecutive tracked frames: rotation in degrees and corner
        displacement as a fraction of the body size (beyond the constant-velocity prediction).
    max_overlap : float
        Largest allowed overlap of neighbouring bodies (fraction of the smaller body).
    anatomy_check : bool
        Check that neighbours keep their top-to-bottom order and do not overlap.
    reacquire : bool
        Search for a lost body in later frames (coarse search) instead of giving it up.
    threads : int
        Register the bodies of a frame on this many threads (OpenCV releases the GIL; results are
        identical to one thread).

    Returns
    -------
    Tracks
        Raw (unsmoothed) tracks; see :func:`dmx.tracking.smooth_tracks` for smoothing.

    Raises
    ------
    LandmarkError
        If the landmark frame is not a frame of the cine.
    ValueError
        If ``frames`` is not ``(T, H, W)``.
    """
    frames_arr = np.asarray(frames)
    if frames_arr.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames_arr.shape}")
    n_t, h_img, w_img = frames_arr.shape
    ref = int(landmarks.frame)
    if not 0 <= ref < n_t:
        raise LandmarkError(None, f"landmark reference frame {ref} is outside the cine (frames 0..{n_t - 1})")
    regions = {v: np.asarray(c, dtype=np.float64) for v, c in landmarks.corners_px.items()}
    arch = arch_region_px(landmarks)
    if arch is not None:
        regions[Vertebra.C1] = arch
    verts = tuple(v for v in Vertebra if v in regions and (vertebrae is None or v in vertebrae))
    n_v = len(verts)
    quads = [regions[v] for v in verts]
    # regions without corners (C1): tracked, but their corners stay NaN
    has_corners = [v in landmarks.corners_px for v in verts]

    corners = np.full((n_t, n_v, 4, 2), np.nan)
    transforms = np.full((n_t, n_v, 2, 3), np.nan)
    quality = np.full((n_t, n_v), np.nan)
    precision = np.full((n_t, n_v), np.nan)
    rotation_precision = np.full((n_t, n_v), np.nan)
    reason: list[list[str | None]] = [[None] * n_v for _ in range(n_t)]

    reference = frames_arr[ref]
    templates: list[Template | None] = []
    for i, q in enumerate(quads):
        neighbours = tuple(quads[j] for j in (i - 1, i + 1) if 0 <= j < n_v)
        try:
            templates.append(
                make_template(
                    reference,
                    q,
                    exclude_quads_px=neighbours,
                    margin_frac=margin_frac,
                    margin_px=None if has_corners[i] else 0.0,  # C1: the region holds its rim already
                    blur_sigma_px=blur_sigma_px,
                    n_levels=n_levels,
                    highpass_sigma_px=None if not highpass_frac else highpass_frac * _size(q),
                )
            )
        except ValueError:
            templates.append(None)

    for i in range(n_v):
        if templates[i] is None:
            for t in range(n_t):
                reason[t][i] = REFERENCE_OUTSIDE
                quality[t, i] = 0.0
        else:
            transforms[ref, i] = np.eye(3)[:2]
            if has_corners[i]:
                corners[ref, i] = quads[i]
            quality[ref, i] = 1.0
            precision[ref, i] = 0.0
            rotation_precision[ref, i] = 0.0

    def fit_at(
        i: int, frame: np.ndarray, guess: np.ndarray, first_level: int | None = None
    ) -> tuple[Fit, float]:
        tpl = templates[i]
        assert tpl is not None
        slack = 6.0 + 2.0 ** len(tpl.levels) + tpl.filter_pad_px
        box = needed_box(tpl, guess, frame.shape, slack)
        fit = None
        if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
            roi = FrameROI(frame, box, tpl)
            fit = register(tpl, roi, guess, max_iterations=max_iterations, first_level=first_level)
            # the estimate moved beyond the region: redo the finest levels on a region around it
            fbox = needed_box(tpl, fit.transform, frame.shape, 2.0 + tpl.filter_pad_px)
            box2 = needed_box(tpl, fit.transform, frame.shape, slack)
            if not roi.covers(fbox) and box2[2] - box2[0] >= 8 and box2[3] - box2[1] >= 8:
                roi = FrameROI(frame, box2, tpl)
                fit = register(
                    tpl,
                    roi,
                    fit.transform,
                    max_iterations=max_iterations,
                    first_level=1,
                )
        if fit is None:
            fit = Fit(guess, False, 0.0, 0.0, float("nan"), float("nan"), 0.0, float("inf"), 0)
        return fit, _quality(fit, min_visible=min_visible)

    # calibrate the expected residual of a good match on the frames next to the reference (their noise,
    # compression and blur are the study's, which the template's own noise estimate may miss)
    for i in range(n_v):
        tpl = templates[i]
        if tpl is None:
            continue
        scales = []
        for t_adj in (ref + 1, ref - 1):
            if 0 <= t_adj < n_t:
                fit, _ = fit_at(i, frames_arr[t_adj], np.eye(3))
                # a wrong fit (motion beyond reach of an unpredicted start) leaves residuals far above noise
                if (
                    fit.converged
                    and fit.visible > 0.9
                    and np.isfinite(fit.residual_scale)
                    and fit.residual_scale < 20.0 * tpl.residual_scale
                ):
                    scales.append(fit.residual_scale)
        if scales:
            templates[i] = replace(tpl, residual_scale=max(tpl.residual_scale, float(np.min(scales))))

    def plausible(i: int, a: np.ndarray, pred: np.ndarray | None, last: np.ndarray | None) -> bool:
        tpl = templates[i]
        assert tpl is not None
        if last is not None:
            rel = a @ _rigid_inv(last)
            if abs(math.degrees(math.atan2(rel[1, 0], rel[0, 0]))) > max_rotation_step_deg:
                return False
        if pred is not None:
            d = np.abs(_corners(a, quads[i]) - _corners(pred, quads[i])).max()
            if d > max_step_frac * tpl.size_px:
                return False
        return True

    def run_pass(order: range) -> None:
        states = [_State(history=[(ref, np.eye(3))]) for _ in range(n_v)]
        for t in order:
            frame = frames_arr[t]
            fits: list[tuple[np.ndarray, float, float, float] | None] = [None] * n_v
            preds = [_predict(states[i], t) for i in range(n_v)]

            def primary(i: int, frame=frame, preds=preds, states=states) -> tuple[Fit, float] | None:
                if templates[i] is None or preds[i] is None or states[i].lost:
                    return None
                return fit_at(i, frame, preds[i], 1 if len(states[i].history) >= 2 else None)

            firsts = (
                list(pool.map(primary, range(n_v))) if pool is not None else [primary(i) for i in range(n_v)]
            )
            # accept the predicted fits that are good; the others fall back, once their neighbours are known
            pending: list[int] = []
            for i in range(n_v):
                if templates[i] is None:
                    continue
                first = firsts[i]
                if first is not None and first[1] >= TRUSTED_QUALITY:
                    last = states[i].history[-1][1] if states[i].history else None
                    if plausible(i, first[0].transform, preds[i], last):
                        fit0 = first[0]
                        fits[i] = (fit0.transform, first[1], fit0.corner_std_px, fit0.rotation_std_rad)
                        continue
                pending.append(i)
            # fallbacks next to a tracked neighbour first (bottom-up and top-down chains)
            while pending:
                nxt = [
                    k for k in pending if any(0 <= j < n_v and fits[j] is not None for j in (k - 1, k + 1))
                ]
                i = nxt[0] if nxt else pending[0]
                pending.remove(i)
                tpl = templates[i]
                assert tpl is not None
                st = states[i]
                pred = preds[i]
                last = st.history[-1][1] if st.history else None
                best: tuple[Fit, float] | None = None
                why = NOT_FOUND
                if firsts[i] is not None:
                    fit, q = firsts[i]
                    if plausible(i, fit.transform, pred, last):
                        best = (fit, q)
                    else:
                        why = IMPLAUSIBLE
                if (reacquire or not st.lost) and last is not None:
                    # fallback: last pose, neighbours' motion, coarse search around them
                    cands: list[np.ndarray] = []
                    last_t = st.history[-1][0]
                    for j in (i + 1, i - 1):
                        if 0 <= j < n_v and templates[j] is not None:
                            aj_now = fits[j][0] if fits[j] is not None else None
                            aj_then = None
                            for tt, aa in reversed(states[j].history):
                                if tt == last_t:
                                    aj_then = aa
                                    break
                            if aj_now is not None and aj_then is not None:
                                cands.append(aj_now @ _rigid_inv(aj_then) @ last)
                    cands.append(last)
                    gap = abs(t - last_t)
                    radius = min(0.5 * tpl.size_px * (1 + 0.5 * gap), 2.0 * tpl.size_px)
                    searched: list[np.ndarray] = []
                    for c in cands[:2]:
                        searched += _search(
                            tpl,
                            frame,
                            c,
                            radius_px=radius,
                            angles_deg=(-10.0, -5.0, 0.0, 5.0, 10.0),
                            blur=blur_sigma_px,
                        )
                    for c in cands + searched:
                        fit, q = fit_at(i, frame, c)
                        ok = plausible(i, fit.transform, None, last if gap <= 3 else None)
                        if ok and (best is None or q > best[1]):
                            best = (fit, q)
                            if q >= 0.9:
                                break
                if best is None:
                    quality[t, i] = 0.0
                    reason[t][i] = why
                    continue
                fit, q = best
                quality[t, i] = q
                if (
                    fit.visible < min_visible
                    and _visible(tpl, pred if pred is not None else last, frame.shape) < min_visible
                ):
                    reason[t][i] = LEFT_IMAGE
                elif not np.isfinite(fit.gain) or fit.gain <= 0:
                    reason[t][i] = DIVERGED
                elif q < min_quality:
                    reason[t][i] = NOT_FOUND
                else:
                    fits[i] = (fit.transform, q, fit.corner_std_px, fit.rotation_std_rad)
            for i in range(n_v):
                if fits[i] is not None:
                    quality[t, i] = fits[i][1]
            if anatomy_check:
                _check_anatomy(fits, quads, reason, quality, t, max_overlap, has_corners)
            for i in range(n_v):
                if fits[i] is None:
                    if templates[i] is not None:
                        states[i].lost = True
                    continue
                a, q, std, rot_std = fits[i]
                precision[t, i] = NOISE_CORRELATION * std
                rotation_precision[t, i] = ROTATION_NOISE_CORRELATION * math.degrees(rot_std)
                transforms[t, i] = a[:2]
                if has_corners[i]:
                    corners[t, i] = _corners(a, quads[i])
                st = states[i]
                st.lost = False
                st.history.append((t, a))
                del st.history[:-3]

    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        run_pass(range(ref + 1, n_t))
        run_pass(range(ref - 1, -1, -1))
    finally:
        if pool is not None:
            pool.shutdown()

    return Tracks(
        vertebrae=verts,
        corners_px=corners,
        quality=quality,
        reason=tuple(tuple(r) for r in reason),
        reference_frame=ref,
        transforms=transforms,
        precision_px=precision,
        rotation_precision_deg=rotation_precision,
        centres_px=np.array([q.mean(axis=0) for q in quads]).reshape(n_v, 2),
    )


def _check_anatomy(
    fits: list[tuple[np.ndarray, float, float, float] | None],
    quads: list[np.ndarray],
    reason: list[list[str | None]],
    quality: np.ndarray,
    t: int,
    max_overlap: float,
    has_corners: list[bool] | None = None,
) -> None:
    """Neighbours keep their top-to-bottom order and do not overlap; reject the weaker of a bad pair.

    A region without corners (C1) is not checked: it is no body, and must never cost one.
    """
    n_v = len(fits)
    has_corners = [True] * n_v if has_corners is None else has_corners
    for i in range(n_v - 1):
        j = i + 1
        if fits[i] is None or fits[j] is None or not (has_corners[i] and has_corners[j]):
            continue
        ci = _corners(fits[i][0], quads[i])
        cj = _corners(fits[j][0], quads[j])
        # inferior direction of the upper body: from its superior to its inferior endplate midpoints
        down = 0.5 * (ci[2] + ci[3]) - 0.5 * (ci[0] + ci[1])
        bad = None
        if float(np.dot(cj.mean(axis=0) - ci.mean(axis=0), down)) <= 0:
            bad = ORDER
        elif _poly_overlap(ci, cj) > max_overlap:
            bad = OVERLAP
        if bad is None:
            continue
        k = i if fits[i][1] < fits[j][1] else j
        reason[t][k] = bad
        quality[t, k] = min(float(quality[t, k]), 0.2)
        fits[k] = None
