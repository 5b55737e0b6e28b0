"""Tracks: every vertebral body's corners in every frame, with per-frame confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmx.anatomy import Vertebra

#: Share of a frame's registration error variance (``precision_px``, ``rotation_precision_deg``) that is
#: common to the neighbouring frames. Every frame is matched to the same template, cut from a frame of
#: the same cine: the template's noise pulls frames of nearly the same pose the same way, so that part
#: does not average out over a smoothing window. Measured as the correlation of neighbouring frames'
#: segmental angle errors on held-out phantoms (0.41; in theory up to 0.5, template and frame being
#: equally noisy). Frames far apart in pose (the key frames) are treated as independent.
TEMPLATE_NOISE_SHARE = 0.4


@dataclass(frozen=True)
class Tracks:
    """Corner tracks of the vertebral bodies through a cine.

    Attributes
    ----------
    vertebrae : tuple of Vertebra
        Vertebrae tracked, top to bottom; index ``v`` of the arrays below.
    corners_px : numpy.ndarray
        ``(T, V, 4, 2)`` corner positions (x, y) in pixels in
        :data:`dmx.anatomy.CORNERS` order; NaN where the vertebra is not
        tracked in that frame.
    quality : numpy.ndarray
        ``(T, V)`` confidence in 0..1; NaN where no score could be computed.
        A frame whose corners are NaN may still carry a (low) score.
    reason : tuple of tuple of str or None
        ``reason[t][v]`` says why a frame is NaN for that vertebra (``None`` when tracked).
    reference_frame : int
        The frame the landmarks were placed on.
    transforms : numpy.ndarray or None
        ``(T, V, 2, 3)`` rigid transforms mapping reference-frame pixel
        coordinates of each vertebra to frame ``t`` (``[x', y'] = A @ [x, y, 1]``);
        NaN where lost. Lets other points on a body (e.g. the dens) follow it.
    precision_px : numpy.ndarray or None
        ``(T, V)`` expected RMS corner error from image noise alone (pixels), from the fit's Hessian;
        NaN where lost, 0 on the reference frame. It does not cover a wrong match (see ``quality``).
    rotation_precision_deg : numpy.ndarray or None
        ``(T, V)`` expected SD of each body's rotation from image noise alone (degrees), from the same
        Hessian as ``precision_px`` (with its own measured noise-correlation factor); NaN where lost,
        0 on the reference frame. Smoothing replaces both by their values propagated through its weights.
    centres_px : numpy.ndarray or None
        ``(V, 2)`` centre of each tracked region on the reference frame (rotation centre of its fit; the
        only reference point of a vertebra without corners, C1).
    cost_excess : numpy.ndarray or None
        ``(T, V)`` how far the accepted fit's robust cost (:attr:`dmx.tracking.register.Fit.robust_cost`)
        lies above the body's cost on the frames next to the reference, where nothing covers it (>= 0):
        about the share of the body's template that something not moving with it covers, as the fit
        sees it. 0 on the reference frame; NaN where lost. A pose refitted with the still layer taken out
        keeps its first fit's value; one refitted with a template cleaned of the pixels that do not move
        with the body has its cost above the cleaned template's clear cost. NaN where unknown (the
        measurement then takes the largest model error). It sets the model-error part of
        ``angle_uncertainty_deg`` and of the offsets' uncertainty
        (:func:`dmx.measure.uncertainty.rotation_model_sd_deg`,
        :func:`dmx.measure.uncertainty.position_model_frac`).
    grid_lines : str or None
        The anti-scatter grid lines taken out of the frames before they were registered, in words
        (:meth:`dmx.tracking.grid.Grid.describe`); None when the cine showed none.
    faint : tuple of (Vertebra, float)
        The bodies whose template holds so much noise that even a good match correlates at less than
        :data:`dmx.tracking.tracker.MATCH_CEILING` (C7 under dense shoulders), with the ZNCC their match
        reached next to the reference: their fits were judged against it and their precision widened.
    smoothing_windows : tuple of (Vertebra, int)
        Set by :func:`dmx.tracking.smooth_tracks`: the bodies smoothed over a longer window than the
        others (a faint body, :func:`dmx.tracking.smoothing.faint_window`), with that window in frames.
    """

    vertebrae: tuple[Vertebra, ...]
    corners_px: np.ndarray
    quality: np.ndarray
    reason: tuple[tuple[str | None, ...], ...]
    reference_frame: int = 0
    transforms: np.ndarray | None = None
    precision_px: np.ndarray | None = None
    centres_px: np.ndarray | None = None
    rotation_precision_deg: np.ndarray | None = None
    cost_excess: np.ndarray | None = None
    grid_lines: str | None = None
    faint: tuple[tuple[Vertebra, float], ...] = ()
    smoothing_windows: tuple[tuple[Vertebra, int], ...] = ()

    @property
    def n_frames(self) -> int:
        return int(self.corners_px.shape[0])

    @property
    def bodies(self) -> tuple[Vertebra, ...]:
        """The tracked vertebrae that have corners (every one but C1), top to bottom."""
        return tuple(v for v in self.vertebrae if v is not Vertebra.C1)

    @property
    def tracked(self) -> np.ndarray:
        """``(T, V)`` True where the vertebra was followed in that frame (finite transform; for tracks
        without transforms, finite corners). Use this, not the corners, for C1, which has none."""
        if self.transforms is not None:
            return np.all(np.isfinite(self.transforms), axis=(2, 3))
        return np.all(np.isfinite(self.corners_px), axis=(2, 3))

    def corners_of(self, vertebra: Vertebra) -> np.ndarray:
        """``(T, 4, 2)`` corners of one vertebra (NaN where lost)."""
        return self.corners_px[:, self.vertebrae.index(vertebra)]

    def rigid_transforms(self) -> np.ndarray:
        """``(T, V, 2, 3)`` rigid transforms reference -> frame: :attr:`transforms` when the tracker
        recorded them, else fitted to the corners (:func:`rigid_from_corners`)."""
        if self.transforms is not None:
            return self.transforms
        return rigid_from_corners(self.corners_px, reference_frame=self.reference_frame)


def rigid_from_corners(corners_px: np.ndarray, *, reference_frame: int = 0) -> np.ndarray:
    """Rigid transforms mapping each body's reference-frame corners to its corners in every frame.

    A least-squares rotation and translation (Kabsch) per vertebra and frame, no scaling.

    Parameters
    ----------
    corners_px : numpy.ndarray
        ``(T, V, 4, 2)`` corners in pixels, NaN where lost.
    reference_frame : int
        The frame the transforms start from.

    Returns
    -------
    numpy.ndarray
        ``(T, V, 2, 3)``: ``[x', y'] = A @ [x, y, 1]``; NaN where the body is lost in that frame
        or on the reference frame.
    """
    n, nv = corners_px.shape[:2]
    out = np.full((n, nv, 2, 3), np.nan)
    ref = corners_px[reference_frame]
    for v in range(nv):
        p = ref[v]
        if not np.all(np.isfinite(p)):
            continue
        for t in range(n):
            q = corners_px[t, v]
            if np.all(np.isfinite(q)):
                out[t, v] = rigid_fit(p, q)
    return out


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation and translation (Kabsch, no scaling) mapping points ``src`` to ``dst``.

    Parameters
    ----------
    src, dst : numpy.ndarray
        ``(N, 2)`` corresponding points, N >= 2.

    Returns
    -------
    numpy.ndarray
        ``(2, 3)``: ``dst ~ A @ [x, y, 1]``.
    """
    pc = src - src.mean(axis=0)
    qc = dst - dst.mean(axis=0)
    u, _, vt = np.linalg.svd(pc.T @ qc)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    r = vt.T @ np.diag([1.0, d]) @ u.T
    out = np.empty((2, 3))
    out[:, :2] = r
    out[:, 2] = dst.mean(axis=0) - r @ src.mean(axis=0)
    return out
