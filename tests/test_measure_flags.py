"""Flags (spec section 7) at and around every threshold, and their three-valued evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from dmx.anatomy import Flag
from dmx.measure.config import Thresholds
from dmx.measure.flags import adi_flags, level_flags

EPS = 1e-9
ANG = Flag.ANGULATION_GT_11DEG_VS_ADJACENT
T = Thresholds()
QUIET = dict(
    translation_mm=0.0,
    offset_range_mm=0.0,
    translation_pct=0.0,
    excursion_mm=0.0,
    rotation_rom_deg=10.0,
    adjacent_rom_deg=[10.0, 10.0],
)


def flags(**changes):
    return level_flags(**{**QUIET, **changes}, thresholds=T)


def test_quiet_level_raises_nothing_and_evaluates_everything():
    r = flags()
    assert r.raised == () and r.not_evaluated == ()


@pytest.mark.parametrize(
    ("changes", "flag", "raised"),
    [
        ({"translation_mm": 3.5}, Flag.TRANSLATION_GT_3_5MM, False),
        ({"translation_mm": 3.5 + EPS}, Flag.TRANSLATION_GT_3_5MM, True),
        ({"translation_mm": -3.5 - EPS}, Flag.TRANSLATION_GT_3_5MM, True),
        ({"offset_range_mm": 3.5}, Flag.TRANSLATION_GT_3_5MM, False),
        ({"offset_range_mm": 3.5 + EPS}, Flag.TRANSLATION_GT_3_5MM, True),
        ({"translation_pct": 20.0}, Flag.TRANSLATION_GT_20PCT, False),
        ({"translation_pct": 20.0 + EPS}, Flag.TRANSLATION_GT_20PCT, True),
        ({"translation_pct": -20.0 - EPS}, Flag.TRANSLATION_GT_20PCT, True),
        ({"excursion_mm": 2.0}, Flag.TRANSLATION_GT_2MM, False),
        ({"excursion_mm": 2.0 + EPS}, Flag.TRANSLATION_GT_2MM, True),
        ({"rotation_rom_deg": 21.0, "adjacent_rom_deg": [10.0, 15.0]}, ANG, False),
        ({"rotation_rom_deg": 21.0 + 1e-6, "adjacent_rom_deg": [10.0, 15.0]}, ANG, True),
        ({"rotation_rom_deg": 21.5, "adjacent_rom_deg": [15.0, 10.0]}, ANG, True),
        ({"rotation_rom_deg": 10.0, "adjacent_rom_deg": [30.0]}, ANG, False),
        ({"rotation_rom_deg": 5.0, "adjacent_rom_deg": [5.0]}, Flag.INSUFFICIENT_MOTION, False),
        ({"rotation_rom_deg": 5.0 - EPS, "adjacent_rom_deg": [5.0]}, Flag.INSUFFICIENT_MOTION, True),
        ({"rotation_rom_deg": -4.0, "adjacent_rom_deg": [5.0]}, Flag.INSUFFICIENT_MOTION, True),
        ({"rotation_rom_deg": -5.0, "adjacent_rom_deg": [5.0]}, Flag.INSUFFICIENT_MOTION, False),
    ],
)
def test_flag_at_and_around_threshold(changes, flag, raised):
    r = flags(**changes)
    assert (flag in r.raised) is raised
    assert flag not in r.not_evaluated


def test_unmeasured_values_are_not_evaluated_never_a_silent_no_flag():
    r = flags(translation_mm=None, offset_range_mm=None, excursion_mm=None)  # uncalibrated
    assert set(r.not_evaluated) == {Flag.TRANSLATION_GT_3_5MM, Flag.TRANSLATION_GT_2MM}
    assert r.raised == ()
    r = flags(rotation_rom_deg=None, translation_pct=None)
    assert set(r.not_evaluated) == {
        Flag.TRANSLATION_GT_20PCT,
        Flag.ANGULATION_GT_11DEG_VS_ADJACENT,
        Flag.INSUFFICIENT_MOTION,
    }


def test_partly_measured_flag_is_raised_when_one_part_exceeds_else_not_evaluated():
    assert Flag.TRANSLATION_GT_3_5MM in flags(translation_mm=None, offset_range_mm=4.0).raised
    r = flags(translation_mm=None, offset_range_mm=1.0)
    assert Flag.TRANSLATION_GT_3_5MM in r.not_evaluated
    r = flags(rotation_rom_deg=25.0, adjacent_rom_deg=[None, 10.0])
    assert Flag.ANGULATION_GT_11DEG_VS_ADJACENT in r.raised
    r = flags(rotation_rom_deg=15.0, adjacent_rom_deg=[None, 10.0])
    assert Flag.ANGULATION_GT_11DEG_VS_ADJACENT in r.not_evaluated
    r = flags(adjacent_rom_deg=[])
    assert Flag.ANGULATION_GT_11DEG_VS_ADJACENT in r.not_evaluated


def test_flags_follow_configured_thresholds():
    t = Thresholds(translation_mm=1.0, min_rotation_deg=12.0)
    r = level_flags(**{**QUIET, "translation_mm": 1.5}, thresholds=t)
    assert r.raised == (Flag.TRANSLATION_GT_3_5MM, Flag.INSUFFICIENT_MOTION)  # Flag order


def test_adi_flag():
    assert adi_flags(np.array([2.0, 3.0, np.nan]), thresholds=T).raised == ()
    assert adi_flags(np.array([2.0, 3.0 + EPS]), thresholds=T).raised == (Flag.ADI_GT_3MM,)
    assert adi_flags(None, thresholds=T).not_evaluated == (Flag.ADI_GT_3MM,)
    assert adi_flags(np.full(3, np.nan), thresholds=T).not_evaluated == (Flag.ADI_GT_3MM,)
