"""Per-vertebra geometry of spec section 3: endplate and wall vectors, depth, facing, signed angles.

All functions work on arrays of corners in :data:`dmx.anatomy.CORNERS` order,
shape ``(..., 4, 2)`` with ``(x, y)`` last, and broadcast over any leading
axes (frames, vertebrae). NaN propagates: a lost vertebra gives NaN vectors,
NaN depth, NaN angle. Inputs are never modified.

Coordinates are image coordinates (``x`` = column, ``y`` = row, ``y`` down).
Geometry is computed in millimetres after :func:`to_mm`; without calibration
it is computed in pixels (square pixels assumed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmx.anatomy import Vertebra

ANT_SUP, POST_SUP, POST_INF, ANT_INF = 0, 1, 2, 3


def to_mm(points_px: np.ndarray, mm_per_px: Sequence[float] | None) -> np.ndarray:
    """Scale pixel points ``(..., 2)`` to millimetres.

    Parameters
    ----------
    points_px : numpy.ndarray
        ``(..., 2)`` points ``(x, y)`` in pixels.
    mm_per_px : (float, float) or None
        ``(row_spacing_mm, column_spacing_mm)`` as in DICOM PixelSpacing:
        ``x`` is scaled by the column spacing, ``y`` by the row spacing.
        ``None`` (no calibration) returns a float copy in pixels.

    Returns
    -------
    numpy.ndarray
        New array of the same shape, in mm (or px without calibration).
    """
    pts = np.array(points_px, dtype=float, copy=True)
    if mm_per_px is None:
        return pts
    row_mm, col_mm = (float(v) for v in mm_per_px)
    if not (np.isfinite(row_mm) and np.isfinite(col_mm) and row_mm > 0 and col_mm > 0):
        raise ValueError(f"mm_per_px must be two positive numbers (row, col), got {mm_per_px!r}")
    pts[..., 0] *= col_mm
    pts[..., 1] *= row_mm
    return pts


def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """2-D cross product ``u.x * v.y - u.y * v.x`` over the last axis."""
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """2-D dot product over the last axis."""
    u = np.asarray(u, dtype=float)
    v = np.asarray(v, dtype=float)
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1]


def norm(u: np.ndarray) -> np.ndarray:
    """Euclidean length over the last axis."""
    u = np.asarray(u, dtype=float)
    return np.hypot(u[..., 0], u[..., 1])


def superior_endplate(corners: np.ndarray) -> np.ndarray:
    """``sup(V) = ant_sup - post_sup``, shape ``(..., 2)``."""
    c = np.asarray(corners, dtype=float)
    return c[..., ANT_SUP, :] - c[..., POST_SUP, :]


def inferior_endplate(corners: np.ndarray) -> np.ndarray:
    """``inf(V) = ant_inf - post_inf``, shape ``(..., 2)``."""
    c = np.asarray(corners, dtype=float)
    return c[..., ANT_INF, :] - c[..., POST_INF, :]


def posterior_wall(corners: np.ndarray) -> np.ndarray:
    """``pw(V) = post_sup - post_inf`` (posterior tangent), shape ``(..., 2)``."""
    c = np.asarray(corners, dtype=float)
    return c[..., POST_SUP, :] - c[..., POST_INF, :]


def depth(corners: np.ndarray, *, vertebra: Vertebra | str | None = None) -> np.ndarray:
    """Depth of a vertebral body: ``|sup(V)|``, or ``|inf(C7)|`` for C7 (spec section 3).

    Parameters
    ----------
    corners : numpy.ndarray
        ``(..., 4, 2)`` corners in mm (or px).
    vertebra : Vertebra, optional
        Which vertebra the corners belong to; only C7 changes the rule.

    Returns
    -------
    numpy.ndarray
        ``(...)`` depth in the units of ``corners``; NaN where lost.
    """
    if vertebra is not None and Vertebra(vertebra) is Vertebra.C7:
        return norm(inferior_endplate(corners))
    return norm(superior_endplate(corners))


def facing(corners: np.ndarray) -> np.ndarray:
    """Facing sign ``h(V) = sign(cross(a, s))`` of each vertebra (spec section 3).

    ``a = mean(ant) - mean(post)`` and ``s = mean(sup) - mean(inf)``. In image
    coordinates (``y`` down) a patient facing right (anterior = +x) gives
    ``h = -1`` and a patient facing left gives ``h = +1``.

    Returns
    -------
    numpy.ndarray
        ``(...)`` of -1.0, 0.0 or +1.0; NaN where the vertebra is lost.
    """
    c = np.asarray(corners, dtype=float)
    a = 0.5 * (c[..., ANT_SUP, :] + c[..., ANT_INF, :]) - 0.5 * (c[..., POST_SUP, :] + c[..., POST_INF, :])
    s = 0.5 * (c[..., ANT_SUP, :] + c[..., POST_SUP, :]) - 0.5 * (c[..., POST_INF, :] + c[..., ANT_INF, :])
    return np.sign(cross(a, s))


def spine_facing(corners: np.ndarray, *, reference_frame: int | None = None) -> tuple[int | None, int, int]:
    """The one facing sign ``h`` used for the whole spine: the sign shared by most vertebrae.

    The vote is over every tracked vertebra-frame (all frames, all vertebrae),
    so that a single badly placed vertebra cannot flip the sign. A tie is
    broken by the vote of ``reference_frame`` alone; if that ties too, by the
    sign of the summed cross products.

    Parameters
    ----------
    corners : numpy.ndarray
        ``(T, V, 4, 2)`` corners (mm or px; the sign does not depend on the scale).
    reference_frame : int, optional
        Frame whose vertebrae break a tie.

    Returns
    -------
    h : int or None
        +1 or -1; ``None`` when no vertebra is tracked in any frame.
    n_agree : int
        Vertebra-frames whose own sign equals ``h``.
    n_total : int
        Vertebra-frames with a defined (non-zero) sign.
    """
    c = np.asarray(corners, dtype=float)
    signs = facing(c)
    valid = np.isfinite(signs) & (signs != 0)
    n_pos = int(np.sum(signs[valid] > 0))
    n_neg = int(np.sum(signs[valid] < 0))
    n_total = n_pos + n_neg
    if n_total == 0:
        return None, 0, 0
    if n_pos != n_neg:
        h = 1 if n_pos > n_neg else -1
    else:
        h = 0
        if reference_frame is not None and 0 <= reference_frame < c.shape[0]:
            ref = signs[reference_frame]
            ref = ref[np.isfinite(ref)]
            h = int(np.sign(np.sum(ref)))
        if h == 0:
            a = 0.5 * (c[..., ANT_SUP, :] + c[..., ANT_INF, :]) - 0.5 * (
                c[..., POST_SUP, :] + c[..., POST_INF, :]
            )
            s = 0.5 * (c[..., ANT_SUP, :] + c[..., POST_SUP, :]) - 0.5 * (
                c[..., POST_INF, :] + c[..., ANT_INF, :]
            )
            h = int(np.sign(np.nansum(cross(a, s))))
        if h == 0:
            h = 1 if n_pos > 0 else -1
    n_agree = n_pos if h > 0 else n_neg
    return h, n_agree, n_total


def signed_angle_deg(p: np.ndarray, q: np.ndarray, *, h: int) -> np.ndarray:
    """``ang(p, q) = h * atan2(cross(p, q), dot(p, q))`` in degrees (spec section 3).

    With ``h`` from :func:`spine_facing`, positive is lordotic / extension for
    either facing direction. NaN where either vector is NaN.
    """
    return float(h) * np.degrees(np.arctan2(cross(p, q), dot(p, q)))


def anterior_distance(points: np.ndarray, start: np.ndarray, end: np.ndarray, *, h: int) -> np.ndarray:
    """Signed perpendicular distance of ``points`` from the line ``start -> end``, positive anterior.

    ``start`` is the lower end of the chord (e.g. ``post_inf(C7)``) and
    ``end`` the upper end (``post_inf(C2)``). With the facing sign ``h``, the
    anterior side of the chord is the side where ``-h * cross(end - start,
    point - start)`` is positive (for a patient facing right, ``h = -1`` and
    anterior is +x). NaN where any input is NaN or the chord has zero length.
    """
    chord = np.asarray(end, dtype=float) - np.asarray(start, dtype=float)
    rel = np.asarray(points, dtype=float) - np.asarray(start, dtype=float)
    length = norm(chord)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = -float(h) * cross(chord, rel) / length
    return np.where(length > 0, d, np.nan)
