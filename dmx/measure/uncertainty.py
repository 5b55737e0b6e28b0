"""Per-frame uncertainty (1 SD) of the segmental measurements, from the tracker's registration precision.

Every body is tracked as a rigid body registered to its own reference-frame appearance; the fit's
inverse Hessian, scaled by the measured noise correlation, gives per frame the expected SD of the
body's rotation (:attr:`dmx.tracking.types.Tracks.rotation_precision_deg`) and of its corner
positions (:attr:`~dmx.tracking.types.Tracks.precision_px`). Both describe image noise only: they
do not cover a wrong match (that is what the tracking quality and its threshold are for).

Angle. ``angle_deg = ang(sup(L), inf(U))``. Both endplate vectors are rigid parts of their bodies, so
an error ``dtheta_U`` of U's rotation turns ``inf(U)`` by ``dtheta_U`` and an error ``dtheta_L`` turns
``sup(L)`` by ``dtheta_L``; the angle between them changes by ``dtheta_U - dtheta_L`` whatever the
facing, the lengths or the positions. The two bodies are registered on separate image regions with
independent noise, so

    ``u_angle = sqrt(sd_U**2 + sd_L**2)``.

(Corner by corner, this is the familiar ``sigma / d * sqrt(2 / n)`` of a line through ``n``
independent points of SD ``sigma`` spread over ``d``; the registration measures the rotation from
every textured pixel of the body instead of from four corners.)

Offset. ``offset = (P_U - P_L) . e`` with ``P_U = post_inf(U)``, ``P_L = post_sup(L)`` and
``e = unit(sup(L))``. To first order its error is ``(dP_U - dP_L) . e + cross(e, P_U - P_L) dtheta_L``:
the two corners' errors along the endplate (a 2-D RMS error ``p`` has ``p**2 / 2`` along any one
direction) and L's rotation turning the endplate under the disc height. So

    ``u_offset**2 = (p_U**2 + p_L**2) / 2 * s**2 + (cross(e, P_U - P_L) * sd_L)**2``

with ``s`` the pixel size along ``e`` (1 without calibration) and ``sd_L`` in radians;
``u_pct = 100 * u_offset / depth(L)`` (the depth is rigid: it carries no frame-to-frame error).

End range. ``rotation_rom_deg``, ``translation_mm`` and ``translation_pct`` are differences of the
two key frames. Part of each frame's error comes from the reference template's noise and is shared
by frames of nearly the same pose (:data:`dmx.tracking.types.TEMPLATE_NOISE_SHARE`, which is why
smoothing does not remove it), but flexion and extension are poses far apart: their errors are
taken as independent and add in quadrature (:func:`quadrature`). ``benchmarks/measurements.py``
checks both the per-frame and the end-range calibration against phantom truth.
"""

from __future__ import annotations

import math

import numpy as np

from dmx.anatomy import Vertebra
from dmx.measure.geometry import POST_INF, POST_SUP, depth, norm, superior_endplate


def angle_uncertainty_deg(rotation_sd_upper_deg: np.ndarray, rotation_sd_lower_deg: np.ndarray) -> np.ndarray:
    """Per-frame SD of a level's ``angle_deg`` from its two bodies' rotation SDs (degrees).

    Parameters
    ----------
    rotation_sd_upper_deg, rotation_sd_lower_deg : numpy.ndarray
        ``(T,)`` rotation SD of U and of L per frame, NaN where not tracked.

    Returns
    -------
    numpy.ndarray
        ``(T,)`` ``sqrt(sd_U**2 + sd_L**2)``, NaN where either is unknown.
    """
    su = np.asarray(rotation_sd_upper_deg, dtype=float)
    sl = np.asarray(rotation_sd_lower_deg, dtype=float)
    return np.hypot(su, sl)


def offset_uncertainty(
    upper: np.ndarray,
    lower: np.ndarray,
    *,
    precision_upper_px: np.ndarray,
    precision_lower_px: np.ndarray,
    rotation_sd_lower_deg: np.ndarray,
    mm_per_px: tuple[float, float] | None,
    lower_vertebra: Vertebra | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame SD of a level's offset (working units) and of its offset percentage.

    Parameters
    ----------
    upper, lower : numpy.ndarray
        ``(T, 4, 2)`` corners of U and L in working units (mm with calibration, px without).
    precision_upper_px, precision_lower_px : numpy.ndarray
        ``(T,)`` RMS corner error of U and L (pixels).
    rotation_sd_lower_deg : numpy.ndarray
        ``(T,)`` rotation SD of L (degrees).
    mm_per_px : (float, float) or None
        ``(row_mm, col_mm)``; ``None`` when the working units are pixels.
    lower_vertebra : Vertebra, optional
        Name of L, for its depth rule.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(T,)`` SD of the offset in working units and of ``offset_pct`` in percent; NaN where unknown.
    """
    sup_l = superior_endplate(lower)
    length = norm(sup_l)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = sup_l / length[..., None]
        up, lo = np.asarray(upper, dtype=float), np.asarray(lower, dtype=float)
        rel = up[..., POST_INF, :] - lo[..., POST_SUP, :]
        lever = np.abs(e[..., 0] * rel[..., 1] - e[..., 1] * rel[..., 0])
        if mm_per_px is None:
            s2 = np.ones_like(length)
        else:
            row, col = mm_per_px
            s2 = (col * e[..., 0]) ** 2 + (row * e[..., 1]) ** 2
        pu = np.asarray(precision_upper_px, dtype=float)
        pl = np.asarray(precision_lower_px, dtype=float)
        sd_l = np.radians(np.asarray(rotation_sd_lower_deg, dtype=float))
        u_off = np.sqrt((pu**2 + pl**2) / 2.0 * s2 + (lever * sd_l) ** 2)
        u_pct = 100.0 * u_off / depth(lower, vertebra=lower_vertebra)
    return u_off, u_pct


def quadrature(a: float | None, b: float | None) -> float | None:
    """``sqrt(a**2 + b**2)``, the SD of a difference of two independent values (``None`` if either is)."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return math.hypot(a, b)
