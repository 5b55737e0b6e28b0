"""Temporal smoothing of raw tracks (``dmx analyze`` smooths with a 5-frame local quadratic by default)."""

from __future__ import annotations

import numpy as np

from dmx.tracking.types import TEMPLATE_NOISE_SHARE, Tracks

#: Default window of :func:`smooth_tracks`, in frames (the fit spans two frames either side).
WINDOW_FRAMES = 5


def valid_window(window_frames: int) -> bool:
    """Whether ``window_frames`` is a smoothing window: 0 (none) or an odd number of at least 5."""
    return window_frames == 0 or (window_frames >= 5 and window_frames % 2 == 1)


#: A smoothed pose may move a corner by at most this many times the frame's registration precision
#: (:attr:`Tracks.precision_px`); beyond it the quadratic does not describe the motion (too fast for
#: the frame rate) and the frame keeps its raw pose.
GATE_SIGMA = 3.0


def _local_quadratic(x: np.ndarray, w: np.ndarray, window: int, *, shifted: bool = False) -> np.ndarray:
    """Weighted local quadratic regression (Savitzky-Golay) along axis 0 of ``x`` (T, K), skipping NaN.

    Each valid frame gets the value at its own time of a quadratic fitted, with weights ``w``, to
    the valid frames within ``window // 2`` of it. A quadratic is reproduced exactly, so a turning
    point (the key frames of a flexion-extension) is not flattened as a moving average would.
    Frames with fewer than four valid neighbours in the window, or all on one side, keep their
    value; NaN stays NaN. ``shifted``: near the cine's ends the window is moved inside the cine rather
    than cut, and the first and last frames are fitted too (from one side; see :func:`_windows`).
    """
    valid = np.isfinite(x).all(axis=1) & (w > 0)
    idx, c, fit = _windows(valid, w, window, shifted=shifted)
    out = np.where(valid[:, None], x, np.nan)
    if fit.any():
        win = np.where(c[..., None] != 0, x[idx[fit]], 0.0)  # (F, W, K); NaN outside the fit's frames
        out[fit] = np.einsum("fw,fwk->fk", c, win)
    return out


def _windows(
    valid: np.ndarray, w: np.ndarray, window: int, *, shifted: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame's local quadratic at once: ``(idx, c, fit)``.

    ``fit`` (T,) marks the valid frames fitted (at least four valid frames in the window, on both
    sides of it; the other valid frames keep their value); ``idx`` (T, W) the frames of each window
    (clipped to the cine); ``c`` (F, W) for the fitted frames the weights of the window's frames in
    the quadratic's value at the fitted frame, ``e0' (X' W X)^-1 X' W`` (zero for frames outside
    the cine, not valid or of weight 0): the same weighted least squares as a fit per frame.

    ``shifted``: a window that would reach past the cine's first or last frame is moved inside it (as a
    Savitzky-Golay filter treats the ends), so that it holds ``window`` frames of the cine, and a frame
    needs at least four valid frames in it on any side (the first and last frames are fitted from one
    side, with a larger variance, which :func:`_local_quadratic_sd` carries).
    """
    n = valid.shape[0]
    half = window // 2
    offs = np.arange(-half, half + 1)
    t = np.arange(n)
    moved = shifted and n >= window  # a cine shorter than the window keeps cut windows
    if moved:
        start = np.clip(t - half, 0, n - window)
        idx = start[:, None] + np.arange(window)[None, :]
        inside = np.ones_like(idx, dtype=bool)
    else:
        idx = t[:, None] + offs[None, :]
        inside = (idx >= 0) & (idx < n)
        idx = np.clip(idx, 0, n - 1)
    rel = (idx - t[:, None]).astype(float)  # each window frame's time from the fitted frame
    m = inside & valid[idx]
    ww = np.where(m, w[idx], 0.0)
    fit = valid & (m.sum(axis=1) >= 4)
    if not moved:
        fit &= (m & (rel < 0)).any(axis=1) & (m & (rel > 0)).any(axis=1)
    design = np.stack([np.ones_like(rel), rel, rel * rel], axis=-1)  # (T, W, 3)
    wf, df = ww[fit], design[fit]
    normal = np.einsum("fw,fwi,fwj->fij", wf, df, df)
    e0 = np.broadcast_to(np.array([1.0, 0.0, 0.0]), (len(wf), 3))
    row = np.linalg.solve(normal, e0[..., None])[..., 0]  # (F, 3): N^-1 e0, N symmetric
    c = np.einsum("fi,fwi->fw", row, df) * wf
    return idx, c, fit


def _local_quadratic_sd(
    valid: np.ndarray, w: np.ndarray, sd: np.ndarray, window: int, *, shifted: bool = False
) -> np.ndarray:
    """SD of :func:`_local_quadratic`'s output given the per-frame registration SDs ``sd`` (T, K).

    The smoothed value of frame ``t`` is ``sum_k c_k x_k`` over its window, with the weights ``c`` of
    the same weighted least squares (``valid`` and ``w`` as there). Of each frame's error variance,
    the share :data:`TEMPLATE_NOISE_SHARE` comes from the reference template's noise, common to the
    neighbouring frames of the window (it passes through the fit unreduced, ``(sum_k c_k sd_k)**2``);
    the rest is the frame's own noise, independent between frames (``sum_k c_k**2 sd_k**2``). Frames
    that keep their own value keep their SD; NaN stays NaN.
    """
    idx, c, fit = _windows(valid, w, window, shifted=shifted)
    out = np.where(valid[:, None], sd, np.nan)
    if fit.any():
        share = TEMPLATE_NOISE_SHARE
        win = np.where(c[..., None] != 0, sd[idx[fit]], 0.0)
        cw = c[..., None] * win
        out[fit] = np.sqrt(share * cw.sum(axis=1) ** 2 + (1 - share) * (cw**2).sum(axis=1))
    return out


#: Longest window over which a faint body (:attr:`Tracks.faint`) is smoothed, in frames.
FAINT_WINDOW_MAX = 31

#: The bias of a quadratic fitted over a window is largest where the motion turns (the end range, where
#: the key frames are): about sqrt(2) times its RMS over a sinusoidal motion. :func:`faint_window` weighs
#: the mean square bias it measures by this factor.
PEAK_BIAS_FACTOR = 2.0


def faint_window(tracks: Tracks, v: int, window_frames: int) -> int:
    """The window over which faint body ``v`` of ``tracks`` is smoothed (issue #13): an odd number of
    frames from ``window_frames`` to :data:`FAINT_WINDOW_MAX`.

    A faint body's per-frame error is mostly its own noise, independent from frame to frame (C7 under
    dense shoulders: about 4 times its neighbours' imprecision), which a longer window reduces. What a
    longer window costs is bias where the motion is not a quadratic over it, largest where the motion
    turns (the end range). That bias is read from the body's precise neighbours (adjacent, not faint, with
    stated rotation precisions), which follow nearly the same motion: for each window, their mean
    square residual from the fit less what their own noise explains (the part of it common to every frame,
    :data:`TEMPLATE_NOISE_SHARE`, cancels in a residual), weighted by :data:`PEAK_BIAS_FACTOR`, the larger
    of the two neighbours'. The window chosen minimises that bias plus the body's own noise through the
    fit (:func:`_local_quadratic_sd`). With no such neighbour, or no stated precisions, ``window_frames``.
    """
    if window_frames == 0 or tracks.transforms is None or tracks.rotation_precision_deg is None:
        return window_frames
    faint = _faint_mask(tracks)
    q = np.nan_to_num(tracks.quality, nan=0.0)
    sd = tracks.rotation_precision_deg
    n = tracks.n_frames
    neighbours = [j for j in (v - 1, v + 1) if 0 <= j < len(faint) and not faint[j]]
    own = _rotation_deg(tracks.transforms[:, v])
    own_valid = np.isfinite(own) & (q[:, v] > 0) & np.isfinite(sd[:, v])
    if not neighbours or own_valid.sum() < 4:
        return window_frames
    share = TEMPLATE_NOISE_SHARE
    # each neighbour's rotation and the frames it is measured on, the same for every window
    rotations = []
    for j in neighbours:
        th = _rotation_deg(tracks.transforms[:, j])
        rotations.append((j, th, np.isfinite(th) & (q[:, j] > 0) & np.isfinite(sd[:, j])))
    best, best_mse = window_frames, np.inf
    for w in range(window_frames, min(FAINT_WINDOW_MAX, n if n % 2 else n - 1) + 1, 2):
        bias2 = []
        for j, th, valid in rotations:
            idx, c, fit = _windows(valid, q[:, j], w, shifted=w > window_frames)
            if not fit.any():
                continue
            sm = np.einsum("fw,fw->f", c, np.where(c != 0, th[idx[fit]], 0.0))
            resid = sm - th[fit]
            var = np.where(c != 0, sd[idx[fit], j], 0.0) ** 2
            # the fitted frame's own weight (a cut window's clipped entries weigh 0)
            centre = np.where(idx[fit] == np.flatnonzero(fit)[:, None], c, 0.0).sum(axis=1)
            noise = (1 - share) * ((c * c * var).sum(axis=1) - 2 * centre * sd[fit, j] ** 2 + sd[fit, j] ** 2)
            bias2.append(max(0.0, float(np.mean(resid**2) - np.mean(noise))))
        if not bias2:
            return window_frames
        own_sd = _local_quadratic_sd(own_valid, q[:, v], sd[:, v : v + 1], w, shifted=w > window_frames)
        noise_own = own_sd[own_valid, 0]
        mse = float(np.mean(noise_own**2)) + PEAK_BIAS_FACTOR * max(bias2)
        if mse < best_mse:
            best, best_mse = w, mse
    return best


def _rotation_deg(a: np.ndarray) -> np.ndarray:
    """Rotation angles (deg; unwrapped over the finite frames, NaN elsewhere) of rigid poses ``a``
    (T, 2, 3)."""
    ok = np.isfinite(a[:, 0, 0]) & np.isfinite(a[:, 1, 0])
    out = np.full(a.shape[0], np.nan)
    out[ok] = np.degrees(np.unwrap(np.arctan2(a[ok, 1, 0], a[ok, 0, 0])))
    return out


#: Points around a region's centre that stand in for corners when it has none (C1), in px.
_PROBES_PX = np.array([[10.0, 10.0], [-10.0, 10.0], [-10.0, -10.0], [10.0, -10.0]])


def smooth_tracks(tracks: Tracks, *, window_frames: int = WINDOW_FRAMES) -> Tracks:
    """Temporal smoothing of the rigid motion of every body by local quadratic regression.

    The rigid parameters (rotation angle, position of the body's centre) of each body are fitted,
    frame by frame, with a quadratic over ``window_frames`` frames, each frame weighted by its
    tracking quality (Savitzky-Golay). Unlike a moving average this keeps the extremes of the
    motion, where the key frames are, unbiased to second order, while the independent per-frame
    registration noise is reduced (by about 30 % for 5 frames). Where the smoothed pose of a body
    would move a corner by more than :data:`GATE_SIGMA` times that frame's registration precision,
    the motion is too fast for the frame rate to be a quadratic over the window (or the frame is an
    outlier), and the frame keeps the raw poses of all bodies (tracks without precision estimates
    are smoothed everywhere); a faint body (:attr:`Tracks.faint`) keeps its raw pose only where its own
    smoothed pose misfits, as its error is its own noise (issue #13), and is smoothed over its own window
    (:func:`faint_window`; moved inside the cine at its ends, see :func:`_windows`), recorded in
    :attr:`Tracks.smoothing_windows`. Lost (NaN) frames stay NaN and are
    not bridged; the reference frame keeps its landmarks exactly. The corners are recomputed from
    the smoothed transforms, so each body stays rigid. The input is not modified; quality, reasons
    and ``cost_excess`` are kept. ``precision_px`` and ``rotation_precision_deg`` become those of the smoothed
    poses, propagated through the fit's weights (:func:`_local_quadratic_sd`; frames that keep their
    raw pose keep theirs).

    Parameters
    ----------
    tracks : Tracks
        Raw tracks from :func:`dmx.tracking.track` (with ``transforms``).
    window_frames : int
        Odd number of frames of each fit, at least 5; 0 returns the tracks unchanged.

    Raises
    ------
    ValueError
        For a window that is not 0 or an odd number of at least 5.
    """
    if not valid_window(window_frames):
        raise ValueError(f"smoothing window must be 0 or an odd number of frames >= 5, got {window_frames}")
    if window_frames == 0 or tracks.transforms is None:
        return tracks
    tr = tracks.transforms
    ref = tracks.reference_frame
    # reference corners of each body = corners at the reference frame
    ref_quads = tracks.corners_px[ref]
    out_tf = np.full_like(tr, np.nan)
    prec = (
        None
        if tracks.precision_px is None or tracks.rotation_precision_deg is None
        else np.stack([tracks.precision_px, tracks.rotation_precision_deg], axis=-1)
    )
    out_prec = None if prec is None else np.full_like(prec, np.nan)
    misfit = np.zeros(tr.shape[:2], dtype=bool)
    q = np.nan_to_num(tracks.quality, nan=0.0)
    faint = _faint_mask(tracks)
    windows = [
        faint_window(tracks, v, window_frames) if faint[v] else window_frames for v in range(tr.shape[1])
    ]
    for v, win in enumerate(windows):
        a = tr[:, v]
        theta = np.unwrap(np.where(np.isfinite(a[:, 0, 0]), np.arctan2(a[:, 1, 0], a[:, 0, 0]), 0.0))
        theta = np.where(np.isfinite(a[:, 0, 0]), theta, np.nan)
        if tracks.centres_px is not None:
            centre = np.asarray(tracks.centres_px[v], dtype=float)
        else:
            centre = np.nanmean(ref_quads[v], axis=0)
        moved = np.einsum("tij,j->ti", a[:, :, :2], centre) + a[:, :, 2]
        params = np.concatenate([theta[:, None], moved], axis=1)
        sm = _local_quadratic(params, q[:, v], win, shifted=win > window_frames)
        sm[ref] = params[ref]  # the reference frame is the landmarks themselves
        if prec is not None and out_prec is not None:
            valid = np.isfinite(params).all(axis=1) & (q[:, v] > 0)
            out_prec[:, v] = _local_quadratic_sd(valid, q[:, v], prec[:, v], win, shifted=win > window_frames)
            out_prec[ref, v] = prec[ref, v]
        c, s = np.cos(sm[:, 0]), np.sin(sm[:, 0])
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (T, 2, 2)
        trans = sm[:, 1:] - np.einsum("tij,j->ti", rot, centre)
        out_tf[:, v] = np.concatenate([rot, trans[:, :, None]], axis=2)
        if tracks.precision_px is not None:
            probes = ref_quads[v] if np.isfinite(ref_quads[v]).all() else centre + _PROBES_PX
            raw_pts = np.einsum("tij,kj->tki", a[:, :, :2], probes) + a[:, None, :, 2]
            new_pts = np.einsum("tij,kj->tki", rot, probes) + trans[:, None, :]
            moved_px = np.linalg.norm(new_pts - raw_pts, axis=-1).max(axis=1)
            with np.errstate(invalid="ignore"):
                misfit[:, v] = moved_px > GATE_SIGMA * tracks.precision_px[:, v]
                misfit[:, v] |= np.isfinite(moved_px) & ~np.isfinite(tracks.precision_px[:, v])
    # A frame where any body's motion is not a quadratic keeps every body's raw pose: errors of
    # neighbouring bodies are correlated, and mixing raw and smoothed poses would break what cancels.
    # A faint body (Tracks.faint: its template's own noise caps its match) is gated on its own: its error
    # is that noise, not shared with its neighbours, and on a frame the others' fit does not describe it
    # kept the raw pose it has the least reason to keep.
    raw = _raw_poses(misfit, faint)
    out_tf[raw] = tr[raw]
    if prec is not None and out_prec is not None:
        out_prec[raw] = prec[raw]
    out_c = np.einsum("tvij,vkj->tvki", out_tf[:, :, :, :2], ref_quads) + out_tf[:, :, None, :, 2]
    return Tracks(
        vertebrae=tracks.vertebrae,
        corners_px=out_c,
        quality=tracks.quality.copy(),
        reason=tracks.reason,
        reference_frame=ref,
        transforms=out_tf,
        precision_px=tracks.precision_px if out_prec is None else out_prec[..., 0],
        centres_px=tracks.centres_px,
        rotation_precision_deg=tracks.rotation_precision_deg if out_prec is None else out_prec[..., 1],
        cost_excess=tracks.cost_excess,
        grid_lines=tracks.grid_lines,
        faint=tracks.faint,
        smoothing_windows=tuple(
            (tracks.vertebrae[v], w) for v, w in enumerate(windows) if w != window_frames
        ),
    )


def _faint_mask(tracks: Tracks) -> np.ndarray:
    """Which bodies of ``tracks`` are faint (:attr:`Tracks.faint`), over ``tracks.vertebrae``."""
    faint = {v for v, _ in tracks.faint}
    return np.array([v in faint for v in tracks.vertebrae], dtype=bool)


def _raw_poses(misfit: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Which (frame, body) poses :func:`smooth_tracks` keeps raw, from where each body's smoothed pose
    misfits (``misfit``, (T, V)): every body of a frame where a body not in ``own`` (V,) misfits, and a
    body in ``own`` (a faint one) where it misfits itself."""
    shared = misfit[:, ~own].any(axis=1)
    return (shared[:, None] & ~own[None, :]) | (misfit & own[None, :])
