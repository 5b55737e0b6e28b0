"""Synthetic cervical columns with known geometry, shared by the tests of dmx.measure.

A column is built in anatomical millimetres (u anterior, w superior, w up) from
rectangular bodies: each upper vertebra sits on the lower one with a known disc
angle (positive = extension: the anterior disc opens) and a known offset along
the lower superior endplate. It is then drawn into image pixels facing right
(x = x0 + u) or left (x = x0 - u), y down, for any pixel spacing.
"""

from __future__ import annotations

import numpy as np
import pytest

from dmx.anatomy import BODIES, LEVELS
from dmx.tracking.types import Tracks

DEPTH_MM = 16.0
HEIGHT_MM = 12.0
GAP_MM = 4.0


def _rot(theta_deg: float) -> np.ndarray:
    t = np.radians(theta_deg)
    if theta_deg == 0:
        return np.eye(2)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def column_mm(angles_deg, offsets_mm=None, *, depth=DEPTH_MM, height=HEIGHT_MM, gap=GAP_MM) -> np.ndarray:
    """``(T, 6, 4, 2)`` anatomical corners (u, w) of C2..C7 in mm.

    ``angles_deg`` and ``offsets_mm`` are ``(T, 5)`` (or ``(5,)``) per level
    C2-C3 .. C6-C7: the disc angle and the offset of U on L along sup(L).
    """
    angles = np.atleast_2d(np.asarray(angles_deg, dtype=float))
    offsets = np.zeros_like(angles) if offsets_mm is None else np.atleast_2d(np.asarray(offsets_mm, float))
    local = np.array([[depth, height], [0.0, height], [0.0, 0.0], [depth, 0.0]])  # CORNERS order
    frames = []
    for th, off in zip(angles, offsets, strict=True):
        frame_r = np.eye(2)
        verts = [local.copy()]  # C7 with post_inf at the origin
        for t, s in zip(th[::-1], off[::-1], strict=True):  # C6-C7 first, upward
            post_sup = verts[-1][1]
            e, n = frame_r[:, 0], frame_r[:, 1]
            post_inf = post_sup + s * e + gap * n
            frame_r = frame_r @ _rot(t)
            verts.append(post_inf + local @ frame_r.T)
        frames.append(np.array(verts[::-1]))  # C2 .. C7
    return np.array(frames)


def to_image_px(col_mm, *, facing="right", mm_per_px=(1.0, 1.0), x0_mm=300.0, y0_mm=400.0) -> np.ndarray:
    """Draw anatomical mm corners into image pixels (x = column, y = row, y down)."""
    col_mm = np.asarray(col_mm, dtype=float)
    x_mm = x0_mm + col_mm[..., 0] if facing == "right" else x0_mm - col_mm[..., 0]
    y_mm = y0_mm - col_mm[..., 1]
    row, col = mm_per_px
    return np.stack([x_mm / col, y_mm / row], axis=-1)


def make_tracks(corners_px, vertebrae=BODIES, reference_frame: int = 0) -> Tracks:
    corners_px = np.asarray(corners_px, dtype=float)
    t, v = corners_px.shape[:2]
    return Tracks(
        vertebrae=tuple(vertebrae),
        corners_px=corners_px,
        quality=np.ones((t, v)),
        reason=tuple((None,) * v for _ in range(t)),
        reference_frame=reference_frame,
    )


def test_builder_gives_rectangles_with_the_requested_disc():
    col = column_mm([[0, 0, 10, 0, 0]], [[0, 0, 1.5, 0, 0]])[0]
    c4, c5 = col[2], col[3]
    # every body keeps its depth and height
    for body in col:
        assert np.linalg.norm(body[0] - body[1]) == pytest.approx(DEPTH_MM)
        assert np.linalg.norm(body[1] - body[2]) == pytest.approx(HEIGHT_MM)
    # C4 sits 1.5 mm anterior on C5, 4 mm above it, tilted 10 degrees (anterior up)
    assert c4[2] == pytest.approx(c5[1] + np.array([1.5, GAP_MM]))
    inf_c4 = c4[3] - c4[2]
    assert np.degrees(np.arctan2(inf_c4[1], inf_c4[0])) == pytest.approx(10.0)
    assert len(LEVELS) == 5
