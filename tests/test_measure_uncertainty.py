"""Per-frame angle uncertainty, end-range uncertainties and the uncertainty limit (hand-computed)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from test_measure_support import DEPTH_MM, GAP_MM, column_mm, make_tracks, to_image_px

from dmx.anatomy import BODIES, Vertebra
from dmx.measure import load_thresholds, measure
from dmx.measure.uncertainty import quadrature

# three frames: neutral, flexion (frame 1), extension (frame 2); every level moves
ANGLES = np.array([[2.0] * 5, [-4.0] * 5, [6.0] * 5])
MM = (0.5, 0.5)


def tracks_with_precision(rot_sd_deg, pos_sd_px):
    px = to_image_px(column_mm(ANGLES), mm_per_px=MM)
    n, v = px.shape[:2]
    return dataclasses.replace(
        make_tracks(px),
        rotation_precision_deg=np.broadcast_to(np.asarray(rot_sd_deg, float), (n, v)).copy(),
        precision_px=np.broadcast_to(np.asarray(pos_sd_px, float), (n, v)).copy(),
    )


def test_angle_uncertainty_is_the_two_bodies_rotation_sds_in_quadrature():
    # C2..C7 rotation SDs 0.3, 0.4, 0.3, 0.4, 0.3, 0.4 deg in every frame but the reference (0)
    rot = np.array([[0.0] * 6, [0.3, 0.4] * 3, [0.3, 0.4] * 3])
    doc = measure(tracks_with_precision(rot, 0.2), mm_per_px=MM)
    lvl = doc["levels"]["C4-C5"]
    assert lvl["angle_uncertainty_deg"] == pytest.approx([0.0, 0.5, 0.5])
    # ROM = frame 2 - frame 1, two poses far apart: independent errors, sqrt(0.5^2 + 0.5^2)
    assert lvl["rotation_rom_deg"] == pytest.approx(10.0)
    assert lvl["rotation_rom_uncertainty_deg"] == pytest.approx(math.sqrt(0.5))
    assert lvl["warnings"] == []


def test_translation_uncertainty_from_corner_precision_and_the_lower_body_rotation():
    doc = measure(tracks_with_precision(0.1, 0.2), mm_per_px=MM)
    lvl = doc["levels"]["C3-C4"]
    # offset = (post_inf(U) - post_sup(L)) . e: the two corners' 2-D RMS error 0.2 px gives
    # 0.2^2 / 2 px^2 each along e, at 0.5 mm/px; L's rotation (0.1 deg) turns e under the disc
    # height (GAP_MM, the offset is 0): per frame
    u_frame = math.sqrt((0.04 + 0.04) / 2 * 0.25 + (GAP_MM * math.radians(0.1)) ** 2)
    u_tr = math.sqrt(2) * u_frame
    assert lvl["translation_uncertainty_mm"] == pytest.approx(u_tr, rel=1e-6)
    assert lvl["translation_uncertainty_pct"] == pytest.approx(100 * u_tr / DEPTH_MM, rel=1e-6)
    assert lvl["angle_uncertainty_deg"] == pytest.approx([math.hypot(0.1, 0.1)] * 3)


def test_uncalibrated_study_has_a_percentage_uncertainty_but_no_mm():
    doc = measure(tracks_with_precision(0.1, 0.2), mm_per_px=None)
    lvl = doc["levels"]["C3-C4"]
    assert lvl["translation_uncertainty_mm"] is None
    depth_px = DEPTH_MM / MM[0]
    u_frame = math.sqrt((0.04 + 0.04) / 2 + (GAP_MM / MM[0] * math.radians(0.1)) ** 2)
    assert lvl["translation_uncertainty_pct"] == pytest.approx(
        math.sqrt(2) * 100 * u_frame / depth_px, rel=1e-6
    )


def test_tracks_without_precision_have_null_uncertainty_not_zero():
    px = to_image_px(column_mm(ANGLES), mm_per_px=MM)
    doc = measure(make_tracks(px), mm_per_px=MM)
    lvl = doc["levels"]["C4-C5"]
    assert lvl["angle_uncertainty_deg"] == [None, None, None]
    assert lvl["rotation_rom_uncertainty_deg"] is None and lvl["translation_uncertainty_mm"] is None
    assert lvl["translation_uncertainty_pct"] is None and lvl["rotation_rom_deg"] == pytest.approx(10.0)


def test_a_frame_above_the_uncertainty_limit_is_null_with_its_reason():
    rot = np.full((3, 6), 0.1)
    rot[0] = 0.0
    rot[1, BODIES.index(BODIES[3])] = 2.0  # C5 badly registered in the flexion frame
    doc = measure(tracks_with_precision(rot, 0.2), mm_per_px=MM)
    assert doc["frames"]["flexion"] == 1  # Cobb (C2, C7) is not affected
    for name in ("C4-C5", "C5-C6"):
        lvl = doc["levels"][name]
        assert lvl["angle_deg"][1] is None and lvl["offset_mm"][1] is None
        assert lvl["angle_uncertainty_deg"][1] is None
        assert lvl["rotation_rom_deg"] is None and lvl["rotation_rom_uncertainty_deg"] is None
        assert len(lvl["warnings"]) == 2
        assert (
            "1 frame(s) (1)" in lvl["warnings"][0] and "max_angle_uncertainty_deg 1 deg" in lvl["warnings"][0]
        )
        assert "flexion key frame (frame 1: angle uncertainty above" in lvl["warnings"][1]
        assert lvl["rotation_range_deg"] is not None
    assert doc["levels"]["C3-C4"]["rotation_rom_deg"] == pytest.approx(10.0)
    # the limit is a threshold like the others: raised, the frame is measured again
    raised = load_thresholds(overrides={"max_angle_uncertainty_deg": 2.5})
    doc = measure(tracks_with_precision(rot, 0.2), mm_per_px=MM, thresholds=raised)
    assert doc["levels"]["C4-C5"]["angle_uncertainty_deg"][1] == pytest.approx(math.hypot(0.1, 2.0))
    assert doc["levels"]["C4-C5"]["warnings"] == []
    assert doc["thresholds"]["max_angle_uncertainty_deg"]["origin"] == "command line"


def test_quadrature():
    assert quadrature(0.3, 0.4) == pytest.approx(0.5)
    assert quadrature(None, 0.4) is None
    assert quadrature(float("nan"), 0.4) is None


def test_the_terminal_summary_lists_each_level_warning():
    from dmx.measure import format_summary

    rot = np.full((3, 6), 0.1)
    rot[0] = 0.0
    rot[1, 3] = 2.0  # C5 in the flexion frame
    text = format_summary(measure(tracks_with_precision(rot, 0.2), mm_per_px=MM))
    assert "  - C4-C5: not measured in 1 frame(s) (1): angle uncertainty above" in text
    assert "  - C5-C6: not measured at the flexion key frame (frame 1: angle uncertainty" in text


def test_model_error_grows_with_the_cost_excess_up_to_the_cap_and_takes_the_cap_when_unknown():
    from dmx.measure.uncertainty import rotation_model_sd_deg

    m = rotation_model_sd_deg(
        np.array([0.0, 0.1, 0.3, 0.9, np.nan, -0.2]), base_deg=0.04, per_excess_deg=0.5, cap=0.3
    )
    assert m == pytest.approx([0.04, 0.09, 0.19, 0.19, 0.19, 0.04])


def test_angle_uncertainty_adds_each_bodys_model_error_from_its_cost_excess():
    from dmx.measure.uncertainty import MODEL_EXCESS_CAP, MODEL_SD_DEG, MODEL_SD_PER_EXCESS_DEG

    rot = np.array([[0.0] * 6, [0.3, 0.4] * 3, [0.3, 0.4] * 3])
    c4, c5 = BODIES.index(Vertebra.C4), BODIES.index(Vertebra.C5)
    excess = np.zeros((3, 6))
    excess[1, c5] = 0.2  # something covers C5 in the flexion frame
    excess[2, c4] = np.nan  # C4's extension pose has no cost (a later refit)
    tracks = dataclasses.replace(tracks_with_precision(rot, 0.2), cost_excess=excess)
    lvl = measure(tracks, mm_per_px=MM)["levels"]["C4-C5"]
    m0 = MODEL_SD_DEG
    u1 = math.sqrt(0.3**2 + 0.4**2 + m0**2 + (m0 + MODEL_SD_PER_EXCESS_DEG * 0.2) ** 2)
    u2 = math.sqrt(0.3**2 + 0.4**2 + (m0 + MODEL_SD_PER_EXCESS_DEG * MODEL_EXCESS_CAP) ** 2 + m0**2)
    # none on the reference frame: its poses are the landmarks
    assert lvl["angle_uncertainty_deg"] == pytest.approx([0.0, u1, u2])
    assert lvl["rotation_rom_uncertainty_deg"] == pytest.approx(math.hypot(u1, u2))
    # C2-C3, clear in every frame: the noise and the clear fits' model error
    u = math.sqrt(0.3**2 + 0.4**2 + 2 * m0**2)
    assert measure(tracks, mm_per_px=MM)["levels"]["C2-C3"]["angle_uncertainty_deg"] == pytest.approx(
        [0.0, u, u]
    )


def test_translation_uncertainty_adds_the_corners_and_the_lower_bodys_model_error():
    from dmx.measure.uncertainty import (
        MODEL_SD_DEG,
        MODEL_SD_PER_EXCESS_DEG,
        POSITION_MODEL_FRAC,
        POSITION_MODEL_FRAC_PER_EXCESS,
    )

    c4 = BODIES.index(Vertebra.C4)
    excess = np.zeros((3, 6))
    excess[1, c4] = 0.2  # something covers C4 (L of C3-C4) in the flexion frame
    tracks = dataclasses.replace(tracks_with_precision(0.1, 0.05), cost_excess=excess)
    lvl = measure(tracks, mm_per_px=MM)["levels"]["C3-C4"]

    def u_frame(x_upper: float, x_lower: float) -> float:
        f_u = POSITION_MODEL_FRAC + POSITION_MODEL_FRAC_PER_EXCESS * x_upper
        f_l = POSITION_MODEL_FRAC + POSITION_MODEL_FRAC_PER_EXCESS * x_lower
        m_l = MODEL_SD_DEG + MODEL_SD_PER_EXCESS_DEG * x_lower
        # noise as without a model; each body's corners pulled along the endplate by f * depth; L's
        # rotation model error turning e under the disc height (GAP_MM) as its noise does
        return math.sqrt(
            (0.0025 + 0.0025) / 2 * 0.25
            + (f_u * DEPTH_MM) ** 2
            + (f_l * DEPTH_MM) ** 2
            + GAP_MM**2 * (math.radians(0.1) ** 2 + math.radians(m_l) ** 2)
        )

    u_tr = math.hypot(u_frame(0.0, 0.2), u_frame(0.0, 0.0))
    assert lvl["translation_uncertainty_mm"] == pytest.approx(u_tr, rel=1e-6)
    assert lvl["translation_uncertainty_pct"] == pytest.approx(100 * u_tr / DEPTH_MM, rel=1e-6)
    # larger than the noise alone (the same tracks without a cost)
    noise = measure(tracks_with_precision(0.1, 0.05), mm_per_px=MM)["levels"]["C3-C4"]
    assert lvl["translation_uncertainty_mm"] > 1.2 * noise["translation_uncertainty_mm"]
