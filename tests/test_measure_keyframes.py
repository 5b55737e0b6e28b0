"""Key frames (spec section 6): neutral, flexion = min Cobb, extension = max Cobb, and the fallback."""

from __future__ import annotations

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


def test_frames_without_cobb_are_skipped_with_a_warning():
    kf = key_frames(np.array([NAN, 2.0, NAN, 9.0]), {})
    assert (kf.flexion, kf.extension, kf.n_frames_used) == (1, 3, 2)
    assert "2 of 4 frames" in kf.warnings[0]


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
    assert len(kf.warnings) == 1 and "stands in" in kf.warnings[0] and "C3-C4, C4-C5" in kf.warnings[0]


def test_fallback_skips_frames_missing_a_summed_level_and_drops_a_level_that_never_overlaps():
    angles = {
        Level.C2_C3: np.array([1.0, NAN, 3.0, 8.0]),
        Level.C3_C4: np.array([1.0, 5.0, NAN, 1.0]),
    }
    kf = key_frames(np.full(4, NAN), angles)  # sums where both: frame 0 = 2, frame 3 = 9
    assert (kf.flexion, kf.extension, kf.n_frames_used) == (0, 3, 2)
    assert "2 of 4 frames" in kf.warnings[0]
    disjoint = {Level.C2_C3: np.array([1.0, NAN, 7.0]), Level.C3_C4: np.array([NAN, 5.0, NAN])}
    kf = key_frames(np.full(3, NAN), disjoint)  # no common frame: the level seen least is dropped
    assert kf.levels_summed == (Level.C2_C3,)
    assert (kf.flexion, kf.extension) == (0, 2)


def test_nothing_measurable_gives_none_not_a_guess():
    kf = key_frames(np.full(3, NAN), {Level.C3_C4: np.full(3, NAN)})
    assert (kf.neutral, kf.flexion, kf.extension, kf.basis) == (0, None, None, None)
    assert kf.warnings


def test_single_usable_frame_warns_that_no_motion_was_measured():
    kf = key_frames(np.array([NAN, 4.0, NAN]), {})
    assert kf.flexion == kf.extension == 1
    assert any("same frame" in w for w in kf.warnings)
