"""Calibration precedence (spec section 2) on small synthetic headers."""

from __future__ import annotations

import dataclasses

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from dmx.anatomy import CalibrationSource as Src
from dmx.errors import UsageError
from dmx.io.calibration import DETECTOR_WARNING, resolve_calibration


def _ds(**attrs) -> Dataset:
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def _raw(ds: Dataset, tag: int, value: bytes) -> Dataset:
    """Put an undecoded (possibly invalid) DS value into ``ds``, as a file read would."""
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), "DS", len(value), value, 0, False, True)
    return ds


ALL = {
    "PixelSpacing": [0.2, 0.25],
    "ImagerPixelSpacing": [0.3, 0.3],
    "EstimatedRadiographicMagnificationFactor": 1.5,
}


def test_pixel_spacing_wins_over_imager_spacing():
    cal = resolve_calibration(_ds(**ALL))
    assert cal.mm_per_px == (0.2, 0.25) and cal.source is Src.PIXEL_SPACING
    assert cal.warnings == ()


def test_user_value_wins_over_everything():
    cal = resolve_calibration(_ds(**ALL), user_mm_per_px=0.1)
    assert cal.mm_per_px == (0.1, 0.1) and cal.source is Src.USER
    assert resolve_calibration(None, user_mm_per_px=(0.1, 0.2)).mm_per_px == (0.1, 0.2)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "x", (0.1,), (0.1, 0.0)])
def test_invalid_user_value_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="^mm_per_px must be a number > 0") as info:
        resolve_calibration(_ds(**ALL), user_mm_per_px=bad)
    assert info.value.parameter == "mm_per_px"  # the command line names its option (tests/test_errors.py)


def test_imager_spacing_divided_by_magnification():
    ds = _ds(ImagerPixelSpacing=[0.3, 0.24], EstimatedRadiographicMagnificationFactor=1.2)
    cal = resolve_calibration(ds)
    assert cal.source is Src.IMAGER_PIXEL_SPACING_ERMF
    assert cal.mm_per_px == pytest.approx((0.25, 0.2))
    assert cal.warnings == ()


def test_imager_spacing_alone_warns_in_plain_words():
    cal = resolve_calibration(_ds(ImagerPixelSpacing=[0.3, 0.3]))
    assert cal.source is Src.IMAGER_PIXEL_SPACING and cal.mm_per_px == (0.3, 0.3)
    assert DETECTOR_WARNING in cal.warnings
    assert "not corrected for magnification" in DETECTOR_WARNING
    assert "overstated by the magnification factor" in DETECTOR_WARNING


def test_nothing_gives_none():
    cal = resolve_calibration(_ds(Modality="RF"))
    assert cal.mm_per_px is None and cal.source is Src.NONE
    assert cal.to_json() == {"mm_per_px": None, "source": "none"}


@pytest.mark.parametrize(
    ("value", "why"),
    [([0, 0], "> 0"), ([-0.2, 0.2], "> 0"), ([0.2], "1 value"), ([0.2, 0.2, 0.2], "3 value")],
)
def test_invalid_pixel_spacing_falls_through_to_imager_spacing(value, why):
    ds = _ds(PixelSpacing=value, ImagerPixelSpacing=[0.3, 0.3], EstimatedRadiographicMagnificationFactor=1.5)
    cal = resolve_calibration(ds)
    assert cal.source is Src.IMAGER_PIXEL_SPACING_ERMF
    assert cal.mm_per_px == pytest.approx((0.2, 0.2))
    assert any(w.startswith("PixelSpacing (0028,0030)") and why in w for w in cal.warnings)


def test_non_numeric_pixel_spacing_is_skipped_with_the_tag_named():
    ds = _raw(_ds(ImagerPixelSpacing=[0.3, 0.3]), 0x00280030, b"abc\\0.2 ")
    cal = resolve_calibration(ds)
    assert cal.source is Src.IMAGER_PIXEL_SPACING
    assert any("PixelSpacing (0028,0030)" in w and "not numeric" in w for w in cal.warnings)


@pytest.mark.parametrize("ermf", [0, -1.2, b"abc"])
def test_invalid_magnification_falls_through_to_imager_spacing_alone(ermf):
    ds = _ds(ImagerPixelSpacing=[0.3, 0.3])
    if isinstance(ermf, bytes):
        _raw(ds, 0x00181114, ermf)
    else:
        ds.EstimatedRadiographicMagnificationFactor = ermf
    cal = resolve_calibration(ds)
    assert cal.source is Src.IMAGER_PIXEL_SPACING and cal.mm_per_px == (0.3, 0.3)
    assert any("EstimatedRadiographicMagnificationFactor (0018,1114)" in w for w in cal.warnings)
    assert DETECTOR_WARNING in cal.warnings


def test_magnification_below_one_is_used_with_a_warning():
    cal = resolve_calibration(
        _ds(ImagerPixelSpacing=[0.3, 0.3], EstimatedRadiographicMagnificationFactor=0.75)
    )
    assert cal.source is Src.IMAGER_PIXEL_SPACING_ERMF and cal.mm_per_px == pytest.approx((0.4, 0.4))
    assert any("below 1" in w for w in cal.warnings)


@pytest.mark.parametrize("value", [[0, 0], [-1, 1]])
def test_invalid_imager_spacing_gives_none(value):
    cal = resolve_calibration(_ds(ImagerPixelSpacing=value, EstimatedRadiographicMagnificationFactor=1.2))
    assert cal.source is Src.NONE and cal.mm_per_px is None
    assert any(w.startswith("ImagerPixelSpacing (0018,1164)") for w in cal.warnings)


def test_pixel_spacing_in_functional_groups_of_an_enhanced_object():
    measures = _ds(PixelSpacing=[0.15, 0.16])
    shared = _ds(PixelMeasuresSequence=[measures])
    cal = resolve_calibration(_ds(SharedFunctionalGroupsSequence=[shared], ImagerPixelSpacing=[0.3, 0.3]))
    assert cal.source is Src.PIXEL_SPACING and cal.mm_per_px == (0.15, 0.16)
    per_frame = _ds(PixelMeasuresSequence=[_ds(PixelSpacing=[0.11, 0.11])])
    cal = resolve_calibration(_ds(PerFrameFunctionalGroupsSequence=[per_frame, per_frame]))
    assert cal.source is Src.PIXEL_SPACING and cal.mm_per_px == (0.11, 0.11)
    bad = _ds(SharedFunctionalGroupsSequence=[_ds(PixelMeasuresSequence=[_ds(PixelSpacing=[0, 0])])])
    cal = resolve_calibration(bad)
    assert cal.source is Src.NONE
    assert any("functional group" in w for w in cal.warnings)


def test_pixel_spacing_equal_to_detector_spacing_is_flagged():
    cal = resolve_calibration(_ds(PixelSpacing=[0.3, 0.3], ImagerPixelSpacing=[0.3, 0.3]))
    assert cal.source is Src.PIXEL_SPACING
    assert any("may be the detector spacing" in w for w in cal.warnings)


def test_calibration_is_frozen_and_serialises():
    cal = resolve_calibration(_ds(PixelSpacing=[0.2, 0.25]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cal.source = Src.NONE  # type: ignore[misc]
    assert cal.to_json() == {"mm_per_px": [0.2, 0.25], "source": "PixelSpacing"}
