"""Per-frame uncertainty (1 SD) of the segmental measurements: registration precision and model error.

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

Model error (issue #13). The precision describes image noise; where something that does not move
with a body covers part of it (the mandible, the shoulders, a soft-tissue edge), the fit is also
pulled a little, a bias the noise term does not contain. Its size grows with how much the fit's
robust cost lies above the body's cost where nothing covers it (``Tracks.cost_excess``), so each
body's rotation also carries a model-error SD

    ``m = MODEL_SD_DEG + MODEL_SD_PER_EXCESS_DEG * min(excess, MODEL_EXCESS_CAP)``

(the cap where the excess is unknown), independent of the noise:
``u_angle = sqrt(sd_U**2 + sd_L**2 + m_U**2 + m_L**2)``. The constants were fitted on development
phantoms only and are checked on held-out ones by ``benchmarks/uncertainty.py``.

The offset carries the same model error: L's rotation model term turns the endplate under the disc
height as its noise does (``lever * m_L``), and each body's corners are pulled along the endplate by
``f * depth`` with ``f = POSITION_MODEL_FRAC + POSITION_MODEL_FRAC_PER_EXCESS * min(excess, cap)``
(:func:`position_model_frac`), so
``u_offset**2 = (p_U**2 + p_L**2) / 2 * s**2 + (f_U depth_U)**2 + (f_L depth_L)**2
+ lever**2 (sd_L**2 + m_L**2)``; fitted and checked the same way.

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

#: Model-error SD of a body's rotation (degrees) where nothing covers it, and its growth per unit of
#: robust-cost excess up to the cap (see the module docstring). Fitted on development phantoms (the
#: default look seeds 21, 31, 32; one phantom of each appearance family, seeds 22-26; the mandible and
#: shoulders case seed 40) so that the angle z-score has RMS 1 in every band of excess:
#: ``python benchmarks/uncertainty.py --fit``; held-out phantoms (other seeds) check it.
MODEL_SD_DEG = 0.02
MODEL_SD_PER_EXCESS_DEG = 0.75
MODEL_EXCESS_CAP = 0.3

#: Model-error SD of a body's corner positions along an endplate (a share of the body's depth) where
#: nothing covers it, and its growth per unit of cost excess up to the same cap: the offset's model term
#: (see the module docstring). Fitted on the same development phantoms as the rotation's:
#: ``python benchmarks/uncertainty.py --fit``.
POSITION_MODEL_FRAC = 0.0
POSITION_MODEL_FRAC_PER_EXCESS = 0.01


def rotation_model_sd_deg(
    cost_excess: np.ndarray,
    *,
    base_deg: float = MODEL_SD_DEG,
    per_excess_deg: float = MODEL_SD_PER_EXCESS_DEG,
    cap: float = MODEL_EXCESS_CAP,
) -> np.ndarray:
    """Per-frame model-error SD of a body's rotation (degrees) from its fit's robust-cost excess.

    Parameters
    ----------
    cost_excess : numpy.ndarray
        ``(T,)`` :attr:`dmx.tracking.types.Tracks.cost_excess`; NaN (unknown) counts as the cap.
    base_deg, per_excess_deg, cap : float
        The model (defaults: the fitted :data:`MODEL_SD_DEG`, :data:`MODEL_SD_PER_EXCESS_DEG`,
        :data:`MODEL_EXCESS_CAP`).

    Returns
    -------
    numpy.ndarray
        ``(T,)`` ``base + per_excess * min(excess, cap)``.
    """
    x = np.asarray(cost_excess, dtype=float)
    x = np.where(np.isfinite(x), np.clip(x, 0.0, cap), cap)
    return base_deg + per_excess_deg * x


def angle_uncertainty_deg(
    rotation_sd_upper_deg: np.ndarray,
    rotation_sd_lower_deg: np.ndarray,
    model_sd_upper_deg: np.ndarray | float = 0.0,
    model_sd_lower_deg: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Per-frame SD of a level's ``angle_deg`` from its two bodies' rotation SDs (degrees).

    Parameters
    ----------
    rotation_sd_upper_deg, rotation_sd_lower_deg : numpy.ndarray
        ``(T,)`` rotation SD of U and of L per frame from image noise, NaN where not tracked.
    model_sd_upper_deg, model_sd_lower_deg : numpy.ndarray or float
        ``(T,)`` model-error SD of U's and L's rotation (:func:`rotation_model_sd_deg`); 0 (default)
        for the noise alone.

    Returns
    -------
    numpy.ndarray
        ``(T,)`` ``sqrt(sd_U**2 + sd_L**2 + m_U**2 + m_L**2)``, NaN where a noise SD is unknown.
    """
    su = np.asarray(rotation_sd_upper_deg, dtype=float)
    sl = np.asarray(rotation_sd_lower_deg, dtype=float)
    mu = np.asarray(model_sd_upper_deg, dtype=float)
    ml = np.asarray(model_sd_lower_deg, dtype=float)
    return np.sqrt(su**2 + sl**2 + mu**2 + ml**2)


def position_model_frac(
    cost_excess: np.ndarray,
    *,
    base_frac: float | None = None,
    per_excess_frac: float | None = None,
    cap: float = MODEL_EXCESS_CAP,
) -> np.ndarray:
    """Per-frame model-error SD of a body's corner positions along an endplate, as a share of its depth,
    from its fit's robust-cost excess: ``base + per_excess * min(excess, cap)`` (NaN counts as the cap;
    defaults: the fitted :data:`POSITION_MODEL_FRAC`, :data:`POSITION_MODEL_FRAC_PER_EXCESS`)."""
    return rotation_model_sd_deg(
        cost_excess,
        base_deg=POSITION_MODEL_FRAC if base_frac is None else base_frac,
        per_excess_deg=POSITION_MODEL_FRAC_PER_EXCESS if per_excess_frac is None else per_excess_frac,
        cap=cap,
    )


def offset_uncertainty(
    upper: np.ndarray,
    lower: np.ndarray,
    *,
    precision_upper_px: np.ndarray,
    precision_lower_px: np.ndarray,
    rotation_sd_lower_deg: np.ndarray,
    mm_per_px: tuple[float, float] | None,
    lower_vertebra: Vertebra | str | None = None,
    upper_vertebra: Vertebra | str | None = None,
    model_frac_upper: np.ndarray | float = 0.0,
    model_frac_lower: np.ndarray | float = 0.0,
    model_sd_lower_deg: np.ndarray | float = 0.0,
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
    lower_vertebra, upper_vertebra : Vertebra, optional
        Names of L and U, for their depth rule.
    model_frac_upper, model_frac_lower : numpy.ndarray or float
        ``(T,)`` model-error SD of U's and L's corner positions along the endplate as a share of each
        body's depth (:func:`position_model_frac`); 0 (default) for the noise alone.
    model_sd_lower_deg : numpy.ndarray or float
        ``(T,)`` model-error SD of L's rotation (:func:`rotation_model_sd_deg`), which turns the
        endplate under the disc height as the noise does; 0 (default) for the noise alone.

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
        m_l = np.radians(np.asarray(model_sd_lower_deg, dtype=float))
        depth_l = depth(lower, vertebra=lower_vertebra)
        model = (np.asarray(model_frac_upper, dtype=float) * depth(up, vertebra=upper_vertebra)) ** 2 + (
            np.asarray(model_frac_lower, dtype=float) * depth_l
        ) ** 2
        u_off = np.sqrt((pu**2 + pl**2) / 2.0 * s2 + model + lever**2 * (sd_l**2 + m_l**2))
        u_pct = 100.0 * u_off / depth_l
    return u_off, u_pct


def quadrature(a: float | None, b: float | None) -> float | None:
    """``sqrt(a**2 + b**2)``, the SD of a difference of two independent values (``None`` if either is)."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return math.hypot(a, b)
