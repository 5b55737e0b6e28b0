"""Curve shape of spec section 5: C2-C7 Cobb angle, Harrison ARA, Ishihara distances, CCI and class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dmx.anatomy import CurveClass, SType, Vertebra
from dmx.measure.geometry import (
    POST_INF,
    anterior_distance,
    depth,
    inferior_endplate,
    norm,
    posterior_wall,
    signed_angle_deg,
)

#: Vertebrae whose Ishihara distance ``d`` is measured, top to bottom.
ISHIHARA_VERTEBRAE: tuple[Vertebra, ...] = (Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6)


def cobb_c2c7_deg(c2: np.ndarray, c7: np.ndarray, *, h: int) -> np.ndarray:
    """C2-C7 Cobb angle ``ang(inf(C7), inf(C2))`` in degrees; positive = lordosis.

    Parameters
    ----------
    c2, c7 : numpy.ndarray
        ``(..., 4, 2)`` corners of C2 and C7 (mm or px), NaN where lost.
    h : int
        Facing sign of the spine.
    """
    return signed_angle_deg(inferior_endplate(c7), inferior_endplate(c2), h=h)


def ara_c2c7_deg(c2: np.ndarray, c7: np.ndarray, *, h: int) -> np.ndarray:
    """Harrison posterior-tangent absolute rotation angle ``ang(pw(C7), pw(C2))``; positive = lordosis."""
    return signed_angle_deg(posterior_wall(c7), posterior_wall(c2), h=h)


def classify_curve(d: Sequence[float], *, tolerance: float) -> tuple[CurveClass, SType | None]:
    """Class of a curve from its Ishihara distances ``d`` of C3..C6, top to bottom.

    Parameters
    ----------
    d : sequence of float
        Signed distances, positive anterior of the chord, in the units of ``tolerance``.
    tolerance : float
        ``tau``: a vertebra counts as anterior when ``d > tau`` and posterior
        when ``d < -tau`` (strict); ``|d| <= tau`` is on the chord.

    Returns
    -------
    (CurveClass, SType or None)
        ``s_type`` is set only for :attr:`CurveClass.S_CURVE`: upper_kyphotic
        when the most negative ``d`` lies above (nearer C2 than) the most
        positive one, else lower_kyphotic. Any missing (None/NaN) distance or
        tolerance gives :attr:`CurveClass.UNDETERMINED`.
    """
    values = [np.nan if v is None else float(v) for v in d]
    if not values or tolerance is None or not np.isfinite(tolerance) or not all(np.isfinite(values)):
        return CurveClass.UNDETERMINED, None
    arr = np.array(values)
    anterior = bool(np.any(arr > tolerance))
    posterior = bool(np.any(arr < -tolerance))
    if anterior and posterior:
        upper = int(np.argmin(arr)) < int(np.argmax(arr))
        return CurveClass.S_CURVE, SType.UPPER_KYPHOTIC if upper else SType.LOWER_KYPHOTIC
    if anterior:
        return CurveClass.LORDOTIC, None
    if posterior:
        return CurveClass.KYPHOTIC, None
    return CurveClass.STRAIGHT, None


@dataclass(frozen=True)
class CurveShape:
    """Curve shape in one frame, in working units (mm with calibration, px without).

    Attributes
    ----------
    cobb_c2c7_deg, ara_c2c7_deg : float or None
        Angles; ``None`` when C2 or C7 is missing.
    d : dict
        ``{Vertebra: float or None}`` Ishihara distance of C3..C6, positive anterior of the chord.
    cci : float or None
        ``100 * sum(d) / |chord|``; ``None`` unless C2, C7 and all of C3..C6 are present.
    tolerance : float or None
        ``tau`` used for the class, in working units.
    curve_class : CurveClass
    s_type : SType or None
    """

    cobb_c2c7_deg: float | None
    ara_c2c7_deg: float | None
    d: dict[Vertebra, float | None]
    cci: float | None
    tolerance: float | None
    curve_class: CurveClass
    s_type: SType | None


def _finite(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def curve_shape(
    corners: Mapping[Vertebra, np.ndarray],
    *,
    h: int | None,
    tolerance: float | None = None,
    tolerance_pct_depth: float | None = None,
) -> CurveShape:
    """Cobb, ARA, Ishihara ``d``, CCI and class of one frame.

    Parameters
    ----------
    corners : mapping
        ``{Vertebra: (4, 2) corners}`` of one frame in working units; a
        vertebra absent or NaN is missing.
    h : int or None
        Facing sign of the spine; ``None`` makes everything unmeasurable.
    tolerance : float, optional
        Absolute ``tau`` in working units (calibrated: mm).
    tolerance_pct_depth : float, optional
        Relative ``tau`` as a percentage of the mean C3..C6 depth of this
        frame (used when ``tolerance`` is ``None``: uncalibrated studies).

    Returns
    -------
    CurveShape
        Class :attr:`CurveClass.UNDETERMINED` when C2, C7 or any of C3..C6 is missing.
    """

    def get(v: Vertebra) -> np.ndarray | None:
        c = corners.get(v)
        if c is None:
            return None
        c = np.asarray(c, dtype=float)
        return c if np.all(np.isfinite(c)) else None

    c2, c7 = get(Vertebra.C2), get(Vertebra.C7)
    mids = {v: get(v) for v in ISHIHARA_VERTEBRAE}
    d: dict[Vertebra, float | None] = {v: None for v in ISHIHARA_VERTEBRAE}
    if h is None:
        return CurveShape(None, None, d, None, None, CurveClass.UNDETERMINED, None)
    cobb = ara = None
    chord_len = None
    if c2 is not None and c7 is not None:
        cobb = _finite(cobb_c2c7_deg(c2, c7, h=h))
        ara = _finite(ara_c2c7_deg(c2, c7, h=h))
        start, end = c7[POST_INF], c2[POST_INF]
        chord_len = float(norm(end - start))
        if chord_len > 0:
            for v, c in mids.items():
                if c is not None:
                    d[v] = _finite(anterior_distance(c[POST_INF], start, end, h=h))
    tau = tolerance
    if tau is None and tolerance_pct_depth is not None and all(c is not None for c in mids.values()):
        mean_depth = float(np.mean([depth(c, vertebra=v) for v, c in mids.items()]))
        tau = tolerance_pct_depth / 100.0 * mean_depth if np.isfinite(mean_depth) else None
    values = list(d.values())
    cci = None
    if chord_len and all(v is not None for v in values):
        cci = 100.0 * float(sum(values)) / chord_len
    if tau is None:
        cls, s_type = CurveClass.UNDETERMINED, None
    else:
        cls, s_type = classify_curve(values, tolerance=tau)
    return CurveShape(cobb, ara, d, cci, tau, cls, s_type)
