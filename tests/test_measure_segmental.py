"""Hand-computed checks of the per-level measurements (spec section 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_measure_geometry import L_RIGHT, U_RIGHT, mirror
from test_measure_support import DEPTH_MM, column_mm, to_image_px

from dmx.anatomy import Vertebra
from dmx.measure.geometry import spine_facing, to_mm
from dmx.measure.segmental import LevelSeries, excursion, level_series, level_summary, value_range


def test_hand_drawn_pair_angle_offset_and_percentage():
    for lower, upper in ((L_RIGHT, U_RIGHT), (mirror(L_RIGHT), mirror(U_RIGHT))):
        h, _, _ = spine_facing(np.stack([upper, lower])[None])
        s = level_series(upper[None], lower[None], h=h)
        assert s.angle_deg[0] == pytest.approx(math.degrees(math.atan2(4.0, 20.0)), abs=1e-12)
        assert s.offset[0] == pytest.approx(2.0, abs=1e-12)  # U 2 px anterior to L
        assert s.offset_pct[0] == pytest.approx(10.0, abs=1e-12)  # 2 of 20 px depth


def test_known_rotations_and_offsets_are_recovered_to_1e9():
    angles = np.array([[7.0, -3.0, 12.5, 0.25, -20.0]])
    offsets = np.array([[1.0, -2.5, 0.0, 3.75, -0.5]])
    col = column_mm(angles, offsets)
    for facing in ("right", "left"):
        px = to_image_px(col, facing=facing)
        h, _, _ = spine_facing(px)
        for k in range(5):
            s = level_series(px[:, k], px[:, k + 1], h=h, lower_vertebra=Vertebra(f"C{k + 3}"))
            assert s.angle_deg[0] == pytest.approx(angles[0, k], abs=1e-9)
            assert s.offset[0] == pytest.approx(offsets[0, k], abs=1e-9)
            assert s.offset_pct[0] == pytest.approx(100 * offsets[0, k] / DEPTH_MM, abs=1e-9)


def test_anisotropic_spacing_gives_the_isotropic_mm_results():
    angles = np.array([[7.0, -3.0, 12.5, 0.25, -20.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    offsets = np.array([[1.0, -2.5, 0.0, 3.75, -0.5], [0.0, 0.5, -0.5, 1.0, 2.0]])
    col = column_mm(angles, offsets)
    iso = to_mm(to_image_px(col, mm_per_px=(1.0, 1.0)), (1.0, 1.0))
    aniso_px = to_image_px(col, mm_per_px=(0.2, 0.3))
    assert not np.allclose(aniso_px, iso)  # the pixels really are different
    aniso = to_mm(aniso_px, (0.2, 0.3))
    for k in range(5):
        a = level_series(iso[:, k], iso[:, k + 1], h=-1)
        b = level_series(aniso[:, k], aniso[:, k + 1], h=-1)
        for name in ("angle_deg", "offset", "offset_pct"):
            assert getattr(b, name) == pytest.approx(getattr(a, name), abs=1e-9)
        assert a.angle_deg == pytest.approx(angles[:, k], abs=1e-9)
    # measured in raw pixels instead, the angles would be wrong: the test can fail
    raw = level_series(aniso_px[:, 2], aniso_px[:, 3], h=-1)
    assert abs(raw.angle_deg[0] - 12.5) > 0.5


def test_lost_vertebra_gives_nan_in_that_frame_only():
    col = to_image_px(column_mm(np.zeros((3, 5)), [[0, 0, 1, 0, 0]] * 3))
    col[1, 3] = np.nan  # C5 lost in frame 1
    s = level_series(col[:, 2], col[:, 3], h=-1)
    assert np.isnan(s.angle_deg[1]) and np.isnan(s.offset[1]) and np.isnan(s.offset_pct[1])
    assert s.offset[[0, 2]] == pytest.approx([1.0, 1.0])


def test_summary_rom_translation_ranges_and_excursion():
    s = LevelSeries(
        angle_deg=np.array([2.0, -6.0, np.nan, 9.0, 4.0]),
        offset=np.array([0.5, 2.0, 7.0, -1.0, np.nan]),
        offset_pct=np.array([3.0, 12.0, 40.0, -6.0, np.nan]),
    )
    sm = level_summary(s, neutral=0, flexion=1, extension=3)
    assert sm.rotation_rom_deg == pytest.approx(9.0 - -6.0)
    assert sm.translation == pytest.approx(2.0 - -1.0)
    assert sm.translation_pct == pytest.approx(12.0 - -6.0)
    assert sm.rotation_range_deg == pytest.approx(15.0)  # NaN skipped
    assert sm.offset_range == pytest.approx(8.0)
    assert sm.excursion == pytest.approx(6.5)  # |7.0 - 0.5|
    # a key frame where the level is not measured gives None, never 0
    sm2 = level_summary(s, neutral=4, flexion=2, extension=4)
    assert sm2.rotation_rom_deg is None and sm2.translation is None and sm2.excursion is None
    assert sm2.rotation_range_deg == pytest.approx(15.0)
    assert level_summary(s, neutral=0, flexion=None, extension=None).translation is None
    assert value_range(np.full(3, np.nan)) is None
    # one measured frame shows no motion: its range is not measured, never 0.0
    assert value_range(np.array([np.nan, 3.0, np.nan])) is None
    assert value_range(np.array([3.0])) is None
    assert value_range(np.array([3.0, np.nan, 3.5])) == pytest.approx(0.5)
    assert excursion(np.array([np.nan, 1.0]), neutral=0) is None
