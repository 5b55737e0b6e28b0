"""Key frames (spec section 6): neutral, flexion = min Cobb, extension = max Cobb, and the fallback."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest

from dmx.anatomy import Level
from dmx.errors import UsageError
from dmx.measure.keyframes import BASIS_COBB, BASIS_SUM, key_frames

NAN = np.nan


def test_flexion_is_min_and_extension_max_cobb():
    kf = key_frames(np.array([10.0, -4.0, 3.0, 25.0, 24.0]), {})
    assert (kf.neutral, kf.flexion, kf.extension, kf.basis) == (0, 1, 3, BASIS_COBB)
    assert kf.warnings == () and kf.n_frames_used == 5


def test_neutral_frame_given_and_checked():
    cobb = np.array([10.0, -4.0, 3.0])
    assert key_frames(cobb, {}, neutral_frame=2).neutral == 2
    for bad in (3, -1, 1.5, True):
        with pytest.raises(UsageError, match="neutral_frame"):
            key_frames(cobb, {}, neutral_frame=bad)


def test_cobb_missing_in_some_frames_is_not_a_basis():
    # C2 leaves the image in frames 1-2, where the patient is most flexed: the Cobb angle of the
    # visible frames would pick frame 3 (-1); the levels tracked in every frame see frame 2 (sum -9)
    cobb = np.array([10.0, NAN, NAN, -1.0, 20.0])
    angles = {
        Level.C2_C3: np.array([2.0, NAN, NAN, 0.0, 4.0]),  # C2 lost: not in the sum
        Level.C3_C4: np.array([2.0, -1.0, -4.0, -0.5, 4.0]),
        Level.C4_C5: np.array([2.0, -2.0, -5.0, -1.0, 5.0]),
    }
    kf = key_frames(cobb, angles)
    # sums: 4, -3, -9, -1.5, 9
    assert (kf.flexion, kf.extension, kf.basis, kf.n_frames_used) == (2, 4, BASIS_SUM, 5)
    assert kf.levels_summed == (Level.C3_C4, Level.C4_C5)
    assert len(kf.warnings) == 1
    assert "2 of 5 frames" in kf.warnings[0] and "C3-C4, C4-C5" in kf.warnings[0]


def test_ties_choose_the_earliest_frame():
    kf = key_frames(np.array([5.0, 1.0, 1.0, 9.0, 9.0]), {})
    assert (kf.flexion, kf.extension) == (1, 3)


def test_sum_of_angles_stands_in_when_c2_or_c7_is_not_tracked():
    angles = {
        Level.C3_C4: np.array([1.0, -2.0, 4.0, 0.0]),
        Level.C4_C5: np.array([1.0, -3.0, 1.0, 6.0]),
        Level.C5_C6: np.array([NAN, NAN, NAN, NAN]),  # never measured: not part of the sum
    }
    kf = key_frames(np.full(4, NAN), angles)
    # sums: 2, -5, 5, 6
    assert (kf.flexion, kf.extension, kf.basis) == (1, 3, BASIS_SUM)
    assert kf.levels_summed == (Level.C3_C4, Level.C4_C5)
    assert len(kf.warnings) == 1 and "4 of 4 frames" in kf.warnings[0] and "C3-C4, C4-C5" in kf.warnings[0]


def test_a_level_missing_one_frame_is_left_out_of_the_sum():
    angles = {
        Level.C2_C3: np.array([1.0, NAN, 3.0, 8.0]),  # lost in frame 1: out of the sum
        Level.C3_C4: np.array([1.0, 5.0, -2.0, 1.0]),
    }
    kf = key_frames(np.array([3.0, NAN, 1.0, 2.0]), angles)
    assert kf.levels_summed == (Level.C3_C4,)
    assert (kf.flexion, kf.extension, kf.n_frames_used) == (2, 1, 4)


def test_no_level_in_every_frame_gives_no_key_frames_rather_than_a_partial_choice():
    disjoint = {Level.C2_C3: np.array([1.0, NAN, 7.0]), Level.C3_C4: np.array([NAN, 5.0, NAN])}
    kf = key_frames(np.array([1.0, NAN, 7.0]), disjoint)
    assert (kf.neutral, kf.flexion, kf.extension, kf.basis, kf.levels_summed) == (0, None, None, None, ())
    assert len(kf.warnings) == 1 and "not determined" in kf.warnings[0]


def test_nothing_measurable_gives_none_not_a_guess():
    kf = key_frames(np.full(3, NAN), {Level.C3_C4: np.full(3, NAN)})
    assert (kf.neutral, kf.flexion, kf.extension, kf.basis) == (0, None, None, None)
    assert kf.warnings


def test_no_motion_warns_that_flexion_and_extension_are_the_same_frame():
    kf = key_frames(np.array([4.0, 4.0, 4.0]), {})
    assert kf.flexion == kf.extension == 0
    assert any("same frame" in w for w in kf.warnings)


def test_c2_leaving_the_image_in_deep_flexion_keeps_the_true_end_range(tmp_path):
    """End to end: a kyphotic phantom moved anteriorly so that C2 leaves the image around end flexion.

    Choosing flexion among the frames where C2 is visible would give a frame short of the end
    range; the key frame chosen over all frames (sum of the levels tracked in every frame) must
    have a true C2-C7 Cobb within 0.5 deg of the true extreme, and the levels that lost C2 there
    have null end-range values with the reason, never a neighbouring frame's.
    """
    from dmx.anatomy import Vertebra
    from dmx.phantom import make_phantom, truth_corners, write_phantom
    from dmx.phantom import truth as phantom_truth
    from dmx.pipeline import analyze
    from dmx.schema import measurements_schema

    ph = make_phantom(frames=40, curve="kyphotic", anterior_shift_mm=45.0, seed=2)
    paths = write_phantom(ph, tmp_path / "ph")
    mm = np.array(ph.truth["mm_per_px"])[::-1]  # (col, row) scales x, y
    c2, c7 = (truth_corners(ph.truth, (v,))[:, 0] * mm for v in (Vertebra.C2, Vertebra.C7))
    true_cobb = phantom_truth.cobb_c2c7_deg(c2, c7, ph.truth["h"])
    doc = analyze(paths["study"], landmarks_path=paths["landmarks"]).measurements
    jsonschema.validate(doc, measurements_schema())
    frames, levels = doc["frames"], doc["levels"]

    c2_lost = [t for t, xy in enumerate(doc["tracks"]["C2"]["ant_sup"]) if xy is None]
    assert len(c2_lost) >= 3, "the case must lose C2 near end flexion"
    # among the frames where C2 is visible, the most flexed is far short of the end range
    visible = np.setdiff1d(np.arange(40), c2_lost)
    assert true_cobb[visible].min() - true_cobb.min() > 2.0
    assert frames["key_frame_basis"] == BASIS_SUM
    assert "C2-C3" not in frames["key_frame_levels"] and "C5-C6" in frames["key_frame_levels"]
    assert any("instead of cobb_c2c7_deg" in w for w in doc["warnings"])
    assert true_cobb[frames["flexion"]] - true_cobb.min() < 0.5
    assert true_cobb.max() - true_cobb[frames["extension"]] < 0.5
    assert frames["flexion"] in c2_lost

    c23 = levels["C2-C3"]
    for key in ("rotation_rom_deg", "translation_mm", "translation_pct"):
        assert c23[key] is None
    assert c23["rotation_rom_uncertainty_deg"] is None
    assert c23["rotation_range_deg"] is not None and c23["offset_range_mm"] is not None
    assert any(f"flexion key frame (frame {frames['flexion']}: C2" in w for w in c23["warnings"])
    assert c23["angle_deg"][frames["flexion"]] is None  # never a neighbouring frame's value
    for name in frames["key_frame_levels"]:
        lvl = levels[name]
        assert lvl["rotation_rom_deg"] is not None and lvl["warnings"] == []
        assert 0 < lvl["rotation_rom_uncertainty_deg"] < 0.5


def test_one_frame_has_no_flexion_or_extension():
    """A single image (a still PNG, a one-frame DICOM) shows no motion: the end range is not measured
    (flexion and extension None, so rotation_rom_deg and translation are null), never a 0.0."""
    kf = key_frames(np.array([4.0]), {Level.C3_C4: np.array([1.0])})
    assert (kf.neutral, kf.flexion, kf.extension) == (0, None, None)
    assert any("one frame" in w for w in kf.warnings)
