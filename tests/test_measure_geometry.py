"""Hand-computed checks of dmx.measure.geometry (spec section 3), including the sign convention."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dmx.anatomy import Vertebra
from dmx.measure.geometry import (
    anterior_distance,
    depth,
    facing,
    inferior_endplate,
    posterior_wall,
    signed_angle_deg,
    spine_facing,
    superior_endplate,
    to_mm,
)

# A hand-drawn lower vertebra L and upper vertebra U, patient facing right
# (anterior = +x), image coordinates (y down). Corner order: ant_sup, post_sup,
# post_inf, ant_inf. The disc is 3 px high posteriorly and 7 px anteriorly
# (wider anteriorly = lordotic), and U sits 2 px anterior on L.
L_RIGHT = np.array([[120.0, 200.0], [100.0, 200.0], [100.0, 215.0], [120.0, 215.0]])
U_RIGHT = np.array([[122.0, 178.0], [102.0, 182.0], [102.0, 197.0], [122.0, 193.0]])


def mirror(points: np.ndarray, width: float = 512.0) -> np.ndarray:
    out = np.array(points, dtype=float, copy=True)
    out[..., 0] = width - out[..., 0]
    return out


def test_to_mm_scales_x_by_column_and_y_by_row_spacing():
    pts = np.array([[10.0, 20.0], [np.nan, 1.0]])
    out = to_mm(pts, (0.3, 0.2))  # (row, col)
    assert out[0] == pytest.approx([2.0, 6.0])
    assert np.isnan(out[1, 0]) and out[1, 1] == pytest.approx(0.3)
    assert pts[0, 0] == 10.0  # input untouched
    same = to_mm(pts, None)
    assert same is not pts and np.array_equal(same, pts, equal_nan=True)
    with pytest.raises(ValueError):
        to_mm(pts, (0.0, 0.2))


def test_endplate_and_wall_vectors_and_depth():
    assert superior_endplate(L_RIGHT) == pytest.approx([20.0, 0.0])
    assert inferior_endplate(U_RIGHT) == pytest.approx([20.0, -4.0])
    assert posterior_wall(L_RIGHT) == pytest.approx([0.0, -15.0])
    wedge = np.array([[110.0, 0.0], [100.0, 0.0], [100.0, 10.0], [106.0, 18.0]])  # |sup| 10, |inf| 10
    wedge[3] = [112.0, 10.0]  # |inf| = 12
    assert depth(wedge) == pytest.approx(10.0)
    assert depth(wedge, vertebra=Vertebra.C5) == pytest.approx(10.0)
    assert depth(wedge, vertebra=Vertebra.C7) == pytest.approx(12.0)  # spec: |inf(C7)| for C7
    assert np.isnan(depth(np.full((4, 2), np.nan)))


def test_facing_sign_right_is_minus_one_left_is_plus_one():
    assert facing(L_RIGHT) == -1.0
    assert facing(mirror(L_RIGHT)) == 1.0
    assert np.isnan(facing(np.full((4, 2), np.nan)))


def test_spine_facing_is_the_majority_over_all_vertebra_frames():
    good = np.stack([L_RIGHT] * 5)
    swapped = mirror(L_RIGHT)[None]  # one vertebra with anterior/posterior swapped
    corners = np.concatenate([good, swapped])[None]  # (1, 6, 4, 2)
    assert spine_facing(corners) == (-1, 5, 6)
    # lost vertebra-frames do not vote
    corners2 = np.concatenate([corners, np.full_like(corners, np.nan)])
    assert spine_facing(corners2) == (-1, 5, 6)
    assert spine_facing(np.full((2, 3, 4, 2), np.nan)) == (None, 0, 0)


def test_spine_facing_tie_is_broken_by_the_reference_frame():
    right = np.stack([L_RIGHT, L_RIGHT])
    left = np.stack([mirror(L_RIGHT), mirror(L_RIGHT)])
    corners = np.stack([right, left])  # frame 0 faces right, frame 1 left: 2 against 2
    assert spine_facing(corners, reference_frame=0)[0] == -1
    assert spine_facing(corners, reference_frame=1)[0] == 1


def test_signed_angle_hand_computed():
    p = np.array([1.0, 0.0])
    up30 = np.array([math.cos(math.radians(30)), -math.sin(math.radians(30))])  # 30 deg towards image-up
    assert signed_angle_deg(p, up30, h=-1) == pytest.approx(30.0, abs=1e-12)
    assert signed_angle_deg(p, up30, h=1) == pytest.approx(-30.0, abs=1e-12)
    assert np.isnan(signed_angle_deg(p, np.array([np.nan, 0.0]), h=1))


def test_lordotic_disc_is_positive_for_either_facing():
    """The spec's sign: a disc wider anteriorly (lordotic / extension) is positive, facing right or left."""
    expected = math.degrees(math.atan2(4.0, 20.0))  # U's inferior endplate rises 4 px over 20 px anteriorly
    for lower, upper in ((L_RIGHT, U_RIGHT), (mirror(L_RIGHT), mirror(U_RIGHT))):
        h, _, _ = spine_facing(np.stack([upper, lower])[None])
        angle = signed_angle_deg(superior_endplate(lower), inferior_endplate(upper), h=h)
        assert angle == pytest.approx(expected, abs=1e-12)
        assert angle > 0


def test_anterior_distance_positive_anterior_of_the_chord_for_either_facing():
    start, end = np.array([300.0, 400.0]), np.array([300.0, 320.0])  # C7 -> C2, vertical chord
    point = np.array([302.0, 360.0])  # 2 px anterior (facing right)
    assert anterior_distance(point, start, end, h=-1) == 2.0
    assert anterior_distance(mirror(point), mirror(start), mirror(end), h=1) == 2.0
    assert anterior_distance(np.array([297.0, 360.0]), start, end, h=-1) == -3.0
    assert np.isnan(anterior_distance(point, start, start, h=-1))
