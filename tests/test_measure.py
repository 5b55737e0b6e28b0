"""End-to-end checks of dmx.measure.measure on synthetic columns with known motion."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_measure_support import DEPTH_MM, column_mm, make_tracks, to_image_px

from dmx.anatomy import BODIES, LEVELS, Vertebra
from dmx.errors import UsageError
from dmx.measure import Thresholds, format_summary, load_thresholds, measure

# Five frames: neutral, flexing, full flexion, extending, full extension (disc angles per level).
ANGLES = np.array(
    [
        [4.0, 4.0, 4.0, 3.0, 2.0],
        [0.0, 1.0, 1.0, 1.0, 1.0],
        [-4.0, -3.0, -10.0, -1.0, 0.0],
        [6.0, 6.0, 6.0, 4.0, 3.0],
        [9.0, 8.0, 12.0, 5.0, 4.0],
    ]
)
# C4-C5 slides: 0.5 mm at neutral, 3.0 in flexion, -1.0 in extension.
OFFSETS = np.zeros_like(ANGLES)
OFFSETS[:, 2] = [0.5, 1.0, 3.0, 0.0, -1.0]
COL = column_mm(ANGLES, OFFSETS)


def run(*, facing="right", mm_per_px=(1.0, 1.0), calibrated=True, col=COL, **kwargs):
    px = to_image_px(col, facing=facing, mm_per_px=mm_per_px)
    return measure(make_tracks(px), mm_per_px=mm_per_px if calibrated else None, **kwargs)


def assert_same(a, b, tol=1e-9, where="doc"):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], tol, f"{where}/{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, tol, f"{where}/{i}")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=tol), where
    else:
        assert a == b, where


def test_known_motion_is_measured():
    doc = run()
    assert doc["frames"] == {
        "count": 5,
        "reference": 0,
        "neutral": 0,
        "flexion": 2,
        "extension": 4,
        "key_frame_basis": "cobb_c2c7_deg",
        "key_frame_levels": [],
    }
    c45 = doc["levels"]["C4-C5"]
    assert c45["angle_deg"] == pytest.approx(list(ANGLES[:, 2]), abs=1e-9)
    assert c45["offset_mm"] == pytest.approx(list(OFFSETS[:, 2]), abs=1e-9)
    assert c45["offset_pct"] == pytest.approx(list(100 * OFFSETS[:, 2] / DEPTH_MM), abs=1e-9)
    assert c45["rotation_rom_deg"] == pytest.approx(12.0 - -10.0)
    assert c45["rotation_range_deg"] == pytest.approx(22.0)
    assert c45["translation_mm"] == pytest.approx(3.0 - -1.0)
    assert c45["translation_pct"] == pytest.approx(100 * 4.0 / DEPTH_MM)
    assert c45["offset_range_mm"] == pytest.approx(4.0)
    assert c45["excursion_mm"] == pytest.approx(2.5)
    # 4 mm > 3.5; 25 % > 20; excursion 2.5 > 2; ROM 22 exceeds C5-C6 (ROM 6) by 16 > 11
    assert c45["flags"] == [
        "translation_gt_3_5mm",
        "translation_gt_20pct",
        "translation_gt_2mm",
        "angulation_gt_11deg_vs_adjacent",
    ]
    assert c45["flags_not_evaluated"] == []
    c67 = doc["levels"]["C6-C7"]
    assert c67["rotation_rom_deg"] == pytest.approx(4.0)
    assert c67["flags"] == ["insufficient_motion"]
    assert doc["levels"]["C2-C3"]["flags"] == []
    assert list(doc["levels"]) == [lv.value for lv in LEVELS]
    curve = doc["curve"]
    assert curve["neutral"]["cobb_c2c7_deg"] == pytest.approx(ANGLES[0].sum())
    assert curve["flexion"]["cobb_c2c7_deg"] == pytest.approx(ANGLES[2].sum())
    assert curve["extension"]["ara_c2c7_deg"] == pytest.approx(ANGLES[4].sum())
    assert curve["extension"]["class"] == "lordotic"
    assert curve["neutral"]["tolerance"] == {"value": 2.0, "unit": "mm"}
    assert curve["neutral"]["d_px"] is None
    assert doc["facing"]["direction"] == "right"
    assert any("insufficient motion at C6-C7" in w for w in doc["warnings"])
    json.dumps(doc, allow_nan=False)


def test_mirrored_and_anisotropic_studies_give_identical_measurements():
    ref = run()
    left = run(facing="left")
    assert left["facing"]["direction"] == "left"
    for doc in (left, run(mm_per_px=(0.2, 0.3)), run(facing="left", mm_per_px=(0.3, 0.2))):
        doc = {k: v for k, v in doc.items() if k != "facing"}
        assert_same({k: v for k, v in ref.items() if k != "facing"}, doc)


def test_uncalibrated_mm_values_are_null_angles_and_percentages_remain():
    cal = run()
    doc = run(calibrated=False)
    for name, e in doc["levels"].items():
        assert e["offset_mm"] == [None] * 5
        assert e["translation_mm"] is None and e["offset_range_mm"] is None and e["excursion_mm"] is None
        assert e["angle_deg"] == pytest.approx(cal["levels"][name]["angle_deg"], abs=1e-9)
        assert e["offset_pct"] == pytest.approx(cal["levels"][name]["offset_pct"], abs=1e-9)
        assert e["translation_pct"] == pytest.approx(cal["levels"][name]["translation_pct"], abs=1e-9)
        assert "translation_gt_3_5mm" in e["flags_not_evaluated"]
        assert "translation_gt_2mm" in e["flags_not_evaluated"]
        assert "translation_gt_3_5mm" not in e["flags"]
    assert doc["levels"]["C4-C5"]["flags"] == ["translation_gt_20pct", "angulation_gt_11deg_vs_adjacent"]
    neutral = doc["curve"]["neutral"]
    assert neutral["d_mm"] == {"C3": None, "C4": None, "C5": None, "C6": None}
    assert neutral["d_px"] == pytest.approx(cal["curve"]["neutral"]["d_mm"], abs=1e-9)  # 1 mm/px study
    assert neutral["tolerance"] == {"value": pytest.approx(0.125 * DEPTH_MM), "unit": "px"}
    assert neutral["cci"] == pytest.approx(cal["curve"]["neutral"]["cci"])
    assert "no calibration" in doc["warnings"][0]


def test_lost_vertebra_gives_null_in_that_frame_and_unevaluated_flags():
    px = to_image_px(COL)
    px[1, BODIES.index(Vertebra.C5)] = np.nan  # C5 lost in frame 1 (not a key frame)
    px[2, BODIES.index(Vertebra.C6), 0, 0] = np.nan  # one coordinate of C6 lost in flexion
    before = px.copy()
    doc = measure(make_tracks(px), mm_per_px=(1.0, 1.0))
    assert np.array_equal(px, before, equal_nan=True)  # input untouched
    c45, c56, c67 = (doc["levels"][k] for k in ("C4-C5", "C5-C6", "C6-C7"))
    assert c45["angle_deg"][1] is None and c45["offset_mm"][1] is None and c45["offset_pct"][1] is None
    assert c45["angle_deg"][0] == pytest.approx(4.0)
    assert c45["rotation_rom_deg"] == pytest.approx(22.0)
    # C6 lost in flexion: C5-C6 and C6-C7 have no ROM / translation: null and not evaluated
    assert doc["frames"]["flexion"] == 2  # Cobb needs only C2 and C7
    for e in (c56, c67):
        assert e["rotation_rom_deg"] is None and e["translation_mm"] is None and e["translation_pct"] is None
        assert "insufficient_motion" in e["flags_not_evaluated"]
        assert e["rotation_range_deg"] is not None  # other frames still give a range
    # C4-C5 (ROM 22) exceeds C3-C4 (ROM 11) by exactly 11, not more; C5-C6 is unknown: not evaluated
    assert "angulation_gt_11deg_vs_adjacent" in c45["flags_not_evaluated"]
    assert "angulation_gt_11deg_vs_adjacent" not in c45["flags"]
    assert doc["curve"]["flexion"]["class"] == "undetermined"
    assert doc["curve"]["flexion"]["d_mm"]["C6"] is None
    assert doc["curve"]["flexion"]["cci"] is None
    assert doc["curve"]["flexion"]["cobb_c2c7_deg"] == pytest.approx(ANGLES[2].sum())
    json.dumps(doc, allow_nan=False)


def test_missing_c2_uses_the_angle_sum_for_key_frames_with_a_warning():
    px = to_image_px(COL)[:, 1:]  # no C2 in the tracks
    doc = measure(make_tracks(px, vertebrae=BODIES[1:]), mm_per_px=(1.0, 1.0))
    assert doc["frames"]["key_frame_basis"] == "sum_angle_deg"
    assert doc["frames"]["key_frame_levels"] == ["C3-C4", "C4-C5", "C5-C6", "C6-C7"]
    assert (doc["frames"]["flexion"], doc["frames"]["extension"]) == (2, 4)
    assert any("instead of cobb_c2c7_deg" in w for w in doc["warnings"])
    assert any(w.startswith("C2 is not in the tracks") for w in doc["warnings"])
    assert doc["levels"]["C2-C3"]["angle_deg"] == [None] * 5
    assert doc["levels"]["C2-C3"]["warnings"] == ["C2 not in the tracks: not measured"]
    assert doc["levels"]["C3-C4"]["warnings"] == []
    assert doc["levels"]["C2-C3"]["flags"] == []
    not_evaluated = set(doc["levels"]["C2-C3"]["flags_not_evaluated"])
    assert not_evaluated >= {"translation_gt_20pct", "insufficient_motion"}
    assert all(c["class"] == "undetermined" and c["cobb_c2c7_deg"] is None for c in doc["curve"].values())


def test_neutral_frame_changes_the_excursion_reference():
    doc = run(neutral_frame=3)
    assert doc["frames"]["neutral"] == 3
    assert doc["curve"]["neutral"]["frame"] == 3
    assert doc["levels"]["C4-C5"]["excursion_mm"] == pytest.approx(3.0)  # offsets vs 0.0 at frame 3
    with pytest.raises(UsageError, match="neutral_frame 9"):
        run(neutral_frame=9)


def test_thresholds_used_are_recorded_with_their_origin(tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text("[thresholds]\nexcursion_mm = 3.0\n")
    doc = run(thresholds=load_thresholds(cfg, overrides={"min_rotation_deg": 3.0}))
    c = doc["levels"]
    assert "translation_gt_2mm" not in c["C4-C5"]["flags"]  # 2.5 mm < 3.0
    assert c["C6-C7"]["flags"] == []  # ROM 4 >= 3
    assert doc["thresholds"]["excursion_mm"]["value"] == 3.0
    assert doc["thresholds"]["excursion_mm"]["origin"] == str(cfg)
    assert doc["thresholds"]["min_rotation_deg"]["origin"] == "command line"
    assert doc["thresholds"]["adi_mm"]["origin"] == "default"


def test_adi_from_upper_cervical_points():
    n = COL.shape[0]
    arch = np.tile([100.0, 200.0], (n, 1))
    dens = arch + np.array([[6.0, 0.0], [7.0, 0.0], [np.nan, np.nan], [6.0, 0.0], [5.0, 0.0]])
    points = {"C1.arch_post": arch, "C2.dens_ant": dens}
    doc = run(mm_per_px=(0.5, 0.5), adi_points_px=points)
    assert doc["adi"]["adi_mm"] == pytest.approx([3.0, 3.5, None, 3.0, 2.5])
    assert doc["adi"]["max_mm"] == pytest.approx(3.5)
    assert doc["adi"]["flags"] == ["adi_gt_3mm"] and doc["adi"]["adi_px"] is None
    ok = {"C1.arch_post": arch, "C2.dens_ant": arch + [6.0, 0.0]}
    assert run(mm_per_px=(0.5, 0.5), adi_points_px=ok)["adi"]["flags"] == []  # exactly 3.0 mm
    unc = run(calibrated=False, adi_points_px=points)["adi"]
    assert unc["adi_mm"] == [None] * n and unc["max_mm"] is None
    assert unc["adi_px"] == pytest.approx([6.0, 7.0, None, 6.0, 5.0])
    assert unc["flags"] == [] and unc["flags_not_evaluated"] == ["adi_gt_3mm"]
    assert "adi" not in run()
    with pytest.raises(UsageError, match="C2.dens_ant"):
        run(adi_points_px={"C1.arch_post": arch})


def test_swapped_corners_on_one_vertebra_warn_about_facing():
    px = to_image_px(COL)
    px[:, 3] = px[:, 3][:, [1, 0, 3, 2]]  # C5 labelled back to front in every frame
    doc = measure(make_tracks(px), mm_per_px=(1.0, 1.0))
    assert doc["facing"]["h"] == -1
    assert doc["facing"]["vertebra_frames_agreeing"] == 25
    assert any("facing direction: 5 of 30" in w for w in doc["warnings"])


def test_nothing_tracked_gives_nulls_everywhere():
    px = np.full((3, 6, 4, 2), np.nan)
    doc = measure(make_tracks(px), mm_per_px=(1.0, 1.0))
    assert doc["frames"]["flexion"] is None and doc["frames"]["extension"] is None
    assert all(e["angle_deg"] == [None] * 3 and e["flags"] == [] for e in doc["levels"].values())
    assert all(c["class"] == "undetermined" for c in doc["curve"].values())
    json.dumps(doc, allow_nan=False)


def test_bad_inputs_are_usage_errors():
    tracks = make_tracks(to_image_px(COL))
    for bad in ((0.0, 1.0), (1.0, -1.0), (float("nan"), 1.0), ("a", "b"), (1.0,)):
        with pytest.raises(UsageError, match="mm_per_px"):
            measure(tracks, mm_per_px=bad)
    with pytest.raises(UsageError, match="shape"):
        measure(make_tracks(np.zeros((2, 6, 3, 2))), mm_per_px=None)


def test_isotropic_number_is_accepted_as_calibration():
    a = measure(make_tracks(to_image_px(COL, mm_per_px=(0.25, 0.25))), mm_per_px=0.25)
    assert a["levels"]["C4-C5"]["translation_mm"] == pytest.approx(4.0)


def test_summary_lists_levels_curve_and_warnings():
    text = format_summary(run(calibrated=False))
    lines = text.splitlines()
    c45 = next(line for line in lines if line.startswith("C4-C5"))
    assert "22.0" in c45 and "25.0" in c45 and "angulation_gt_11deg_vs_adjacent" in c45
    assert "not evaluated: translation_gt_3_5mm, translation_gt_2mm" in c45
    assert " - " in c45 or c45.split()[3] == "-"  # translation_mm unknown is shown as '-'
    assert any(line.strip().startswith("extension") and "lordotic" in line for line in lines)
    assert "Warnings:" in text and "no calibration" in text
    full = {**run(), "calibration": {"mm_per_px": [0.2, 0.3], "source": "PixelSpacing"}}
    assert "0.2 x 0.3 mm/px [PixelSpacing]" in format_summary(full)
    assert Thresholds().adi_mm == 3.0
    assert "Tracking:" not in format_summary(full)
    lines = {**full, "tracking": {"grid_lines": "anti-scatter grid lines running across, every 4.59 px"}}
    assert "Tracking: anti-scatter grid lines running across, every 4.59 px taken out" in format_summary(
        lines
    )


def test_summary_does_not_say_none_when_no_flag_could_be_evaluated():
    """A level with values but no flag evaluated (e.g. a single uncalibrated image) is not "none"."""
    doc = run(calibrated=False)
    every = ["translation_gt_3_5mm", "translation_gt_20pct", "translation_gt_2mm",
             "angulation_gt_11deg_vs_adjacent", "insufficient_motion"]  # fmt: skip
    doc["levels"]["C3-C4"].update(flags=[], flags_not_evaluated=every)
    line = next(x for x in format_summary(doc).splitlines() if x.startswith("C3-C4"))
    assert line.endswith("  not evaluated: " + ", ".join(every))
    doc["levels"]["C3-C4"].update(flags=[], flags_not_evaluated=every[:2])
    line = next(x for x in format_summary(doc).splitlines() if x.startswith("C3-C4"))
    assert line.endswith("  none (not evaluated: translation_gt_3_5mm, translation_gt_20pct)")


def test_a_body_tracked_as_faint_as_its_noise_is_named_in_a_warning():
    import dataclasses

    tracks = make_tracks(to_image_px(COL))
    plain = measure(tracks, mm_per_px=(1.0, 1.0))
    assert not any("is faint against its noise" in w for w in plain["warnings"])
    doc = measure(dataclasses.replace(tracks, faint=((Vertebra.C7, 0.59),)), mm_per_px=(1.0, 1.0))
    said = [w for w in doc["warnings"] if "is faint against its noise" in w]
    assert len(said) == 1 and said[0].startswith("C7 ") and "0.59" in said[0] and "C6-C7" in said[0]
    assert "smoothed over" not in said[0]
    # the values themselves are the same
    assert doc["levels"] == plain["levels"]
    # smoothed over a longer window than the others (dmx.tracking.smoothing.faint_window): said too
    longer = dataclasses.replace(tracks, faint=((Vertebra.C7, 0.59),), smoothing_windows=((Vertebra.C7, 17),))
    said = [w for w in measure(longer, mm_per_px=(1.0, 1.0))["warnings"] if "is faint against its noise" in w]
    assert len(said) == 1 and "widened and smoothed over 17 frames;" in said[0]
