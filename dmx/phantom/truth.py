"""Reference values computed from the phantom's exact corners with the formulas of the spec.

These are the numbers a perfect tracker would give; they go into
``truth.json`` so benchmarks compare like with like. The formulas follow
``docs/measurements.md`` sections 3-5 literally (corners in CORNERS order,
coordinates in mm with ``y`` down).
"""

from __future__ import annotations

import numpy as np


def _cross(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]


def facing_sign(corners_mm: np.ndarray) -> float:
    """``h`` of spec section 3 for ``(V, 4, 2)`` corners: the sign shared by most vertebrae."""
    ant = 0.5 * (corners_mm[:, 0] + corners_mm[:, 3])
    post = 0.5 * (corners_mm[:, 1] + corners_mm[:, 2])
    sup = 0.5 * (corners_mm[:, 0] + corners_mm[:, 1])
    inf = 0.5 * (corners_mm[:, 2] + corners_mm[:, 3])
    s = np.sign(_cross(ant - post, sup - inf))
    return 1.0 if np.sum(s) >= 0 else -1.0


def signed_angle_deg(p: np.ndarray, q: np.ndarray, h: float) -> np.ndarray:
    """``ang(p, q) = h * atan2(cross(p, q), dot(p, q))`` in degrees."""
    return h * np.degrees(np.arctan2(_cross(p, q), np.sum(p * q, axis=-1)))


def level_values(lower_mm: np.ndarray, upper_mm: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Disc angle (deg) and offset (mm) of level U-L over frames; corners ``(T, 4, 2)`` in mm."""
    sup_l = lower_mm[:, 0] - lower_mm[:, 1]
    inf_u = upper_mm[:, 3] - upper_mm[:, 2]
    angle = signed_angle_deg(sup_l, inf_u, h)
    unit = sup_l / np.linalg.norm(sup_l, axis=-1, keepdims=True)
    offset = np.sum((upper_mm[:, 2] - lower_mm[:, 1]) * unit, axis=-1)
    return angle, offset


def cobb_c2c7_deg(c2_mm: np.ndarray, c7_mm: np.ndarray, h: float) -> np.ndarray:
    """``ang(inf(C7), inf(C2))`` over frames (positive = lordosis)."""
    return signed_angle_deg(c7_mm[..., 3, :] - c7_mm[..., 2, :], c2_mm[..., 3, :] - c2_mm[..., 2, :], h)


def ishihara_d_mm(bodies_mm: np.ndarray, h: float) -> np.ndarray:
    """Signed distances of post_inf(C3..C6) from the C2-C7 chord (positive anterior); bodies C2..C7."""
    a, b = bodies_mm[0, 2], bodies_mm[5, 2]
    chord = b - a
    n = np.linalg.norm(chord)
    # anterior side: the side the mean anterior direction points to
    ant = np.mean(
        0.5 * (bodies_mm[:, 0] + bodies_mm[:, 3]) - 0.5 * (bodies_mm[:, 1] + bodies_mm[:, 2]), axis=0
    )
    side = np.sign(_cross(chord, ant))
    return np.array([side * _cross(chord, bodies_mm[i, 2] - a) / n for i in range(1, 5)])


def curve_class(d_mm: np.ndarray, *, tolerance_mm: float = 2.0) -> tuple[str, str | None]:
    """Curve class and S type from Ishihara distances (spec section 5)."""
    pos, neg = d_mm > tolerance_mm, d_mm < -tolerance_mm
    if pos.any() and neg.any():
        s_type = "upper_kyphotic" if int(np.argmin(d_mm)) < int(np.argmax(d_mm)) else "lower_kyphotic"
        return "s_curve", s_type
    if pos.any():
        return "lordotic", None
    if neg.any():
        return "kyphotic", None
    return "straight", None


def truth_corners(truth: dict, vertebrae: tuple) -> np.ndarray:
    """``(T, V, 4, 2)`` true corners of ``vertebrae`` from a ``dmx.phantom-truth/1`` document.

    Corners are in :data:`dmx.anatomy.CORNERS` order; NaN where the truth has ``null``.
    """
    from dmx.anatomy import CORNERS

    doc = truth["tracks"]
    n_frames = int(truth["frames"])
    out = np.full((n_frames, len(vertebrae), 4, 2), np.nan)
    for v_idx, v in enumerate(vertebrae):
        for k, c in enumerate(CORNERS):
            for t, xy in enumerate(doc[v.value][c.value]):
                if xy is not None:
                    out[t, v_idx, k] = xy
    return out
