"""Optional temporal smoothing of raw tracks (analysis uses raw tracks unless asked)."""

from __future__ import annotations

import math

import numpy as np

from dmx.tracking.types import Tracks


def _smooth_series(x: np.ndarray, w: np.ndarray, sigma: float) -> np.ndarray:
    """Weighted Gaussian smoothing along axis 0 of ``x`` (T, ...) skipping NaN; NaN stays NaN."""
    n = x.shape[0]
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    valid = np.isfinite(x).all(axis=tuple(range(1, x.ndim))) & (w > 0)
    xv = np.where(valid.reshape((n,) + (1,) * (x.ndim - 1)), x, 0.0)
    wv = np.where(valid, w, 0.0)
    out = np.full_like(x, np.nan)
    for t in range(n):
        if not valid[t]:
            continue
        lo, hi = max(t - r, 0), min(t + r + 1, n)
        kk = k[lo - t + r : hi - t + r] * wv[lo:hi]
        out[t] = np.tensordot(kk, xv[lo:hi], axes=(0, 0)) / kk.sum()
    return out


def smooth_tracks(tracks: Tracks, *, sigma_frames: float = 1.0) -> Tracks:
    """Gaussian temporal smoothing of the rigid motion of every body, weighted by quality.

    The rigid parameters (rotation angle, translation) of each body are smoothed with a Gaussian of
    ``sigma_frames`` frames, each frame weighted by its quality; lost (NaN) frames stay NaN and are not
    bridged. The corners are recomputed from the smoothed transforms, so each body stays rigid. The input
    is not modified; quality and reasons are kept.

    Parameters
    ----------
    tracks : Tracks
        Raw tracks from :func:`dmx.tracking.track` (with ``transforms``).
    sigma_frames : float
        Standard deviation of the Gaussian, in frames (0 returns the tracks unchanged).
    """
    if sigma_frames <= 0 or tracks.transforms is None:
        return tracks
    tr = tracks.transforms
    ref = tracks.reference_frame
    # reference corners of each body = corners at the reference frame
    ref_quads = tracks.corners_px[ref]
    out_tf = np.full_like(tr, np.nan)
    out_c = np.full_like(tracks.corners_px, np.nan)
    q = np.nan_to_num(tracks.quality, nan=0.0)
    for v in range(tr.shape[1]):
        a = tr[:, v]
        theta = np.unwrap(np.where(np.isfinite(a[:, 0, 0]), np.arctan2(a[:, 1, 0], a[:, 0, 0]), 0.0))
        theta = np.where(np.isfinite(a[:, 0, 0]), theta, np.nan)
        if tracks.centres_px is not None:
            centre = np.asarray(tracks.centres_px[v], dtype=float)
        else:
            centre = np.nanmean(ref_quads[v], axis=0)
        moved = np.einsum("tij,j->ti", a[:, :, :2], centre) + a[:, :, 2]
        params = np.concatenate([theta[:, None], moved], axis=1)
        sm = _smooth_series(params, q[:, v], sigma_frames)
        c, s = np.cos(sm[:, 0]), np.sin(sm[:, 0])
        rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (T, 2, 2)
        trans = sm[:, 1:] - np.einsum("tij,j->ti", rot, centre)
        out_tf[:, v, :, :2] = rot
        out_tf[:, v, :, 2] = trans
        out_c[:, v] = np.einsum("tij,kj->tki", rot, ref_quads[v]) + trans[:, None, :]
    return Tracks(
        vertebrae=tracks.vertebrae,
        corners_px=out_c,
        quality=tracks.quality.copy(),
        reason=tracks.reason,
        reference_frame=ref,
        transforms=out_tf,
        precision_px=tracks.precision_px,
        centres_px=tracks.centres_px,
    )
