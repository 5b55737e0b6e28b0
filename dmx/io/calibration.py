"""Pixel calibration (mm per pixel) by the precedence of spec section 2.

1. ``user``: a value given on the command line (``--mm-per-px``);
2. ``PixelSpacing`` (0028,0030), top level or in a functional group sequence
   of an enhanced object, when both values are > 0;
3. ``ImagerPixelSpacing/ERMF``: ImagerPixelSpacing (0018,1164) divided by
   EstimatedRadiographicMagnificationFactor (0018,1114);
4. ``ImagerPixelSpacing`` alone (at the detector: mm overstated by the
   magnification; a warning says so);
5. ``none``.

Invalid values (zero, negative, non-numeric, not finite, wrong count) are
skipped with a warning naming the tag and are never used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from dmx.anatomy import CalibrationSource
from dmx.errors import ParameterError

PIXEL_SPACING = "PixelSpacing (0028,0030)"
IMAGER_PIXEL_SPACING = "ImagerPixelSpacing (0018,1164)"
ERMF = "EstimatedRadiographicMagnificationFactor (0018,1114)"

#: The warning given when only the detector spacing is known (spec section 2, rule 4).
DETECTOR_WARNING = (
    "calibration from ImagerPixelSpacing (0018,1164) without a magnification factor: "
    "mm measured at the detector, not corrected for magnification: "
    "values overstated by the magnification factor"
)


@dataclass(frozen=True)
class Calibration:
    """The calibration chosen for a study.

    Attributes
    ----------
    mm_per_px : tuple of float or None
        ``(row_spacing_mm, column_spacing_mm)``: the distance between the
        centres of adjacent rows, then of adjacent columns; ``None`` when
        uncalibrated.
    source : CalibrationSource
        The rule of spec section 2 that gave ``mm_per_px``.
    warnings : tuple of str
        Values skipped as invalid, and caveats on the value used.
    """

    mm_per_px: tuple[float, float] | None
    source: CalibrationSource
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """``{"mm_per_px": [row, col] | None, "source": "..."}`` as in measurements.json."""
        return {
            "mm_per_px": None if self.mm_per_px is None else [float(v) for v in self.mm_per_px],
            "source": self.source.value,
        }


def _numbers(value: Any) -> list[float] | None:
    """Parse a DS value (string, number or multi-value) into floats; ``None`` if not numeric."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        parts: Iterable[Any] = [p for p in value.split("\\")]
    elif isinstance(value, Iterable):
        parts = list(value)
    else:
        parts = [value]
    out = []
    try:
        for p in parts:
            if isinstance(p, bytes):
                p = p.decode("ascii", errors="replace")
            if isinstance(p, str):
                p = p.strip()
            out.append(float(p))
    except (TypeError, ValueError):
        return None
    return out


def _raw_value(dataset: Dataset, keyword: str) -> Any:
    """The value of ``keyword`` in ``dataset``; the undecoded bytes when pydicom cannot convert it."""
    try:
        return dataset[keyword].value
    except KeyError:
        return None
    except (ValueError, TypeError, OverflowError):  # e.g. a DS that is not a number
        raw = dataset.get_item(keyword)
        return None if raw is None else getattr(raw, "value", None)


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        return repr(value.strip())
    try:
        return "[" + ", ".join(str(v) for v in value) + "]"
    except TypeError:
        return str(value)


def _spacing(value: Any, name: str, warnings: list[str]) -> tuple[float, float] | None:
    """A valid ``(row, col)`` spacing in mm, or ``None`` with a warning saying why not."""
    if value is None or value == "" or (not isinstance(value, str | bytes) and _empty(value)):
        return None
    nums = _numbers(value)
    if nums is None:
        warnings.append(f"{name} is {_show(value)}: not numeric, ignored")
        return None
    if len(nums) != 2:
        warnings.append(f"{name} has {len(nums)} value(s) {_show(value)} instead of 2 (row, column): ignored")
        return None
    if not all(math.isfinite(v) and v > 0 for v in nums):
        warnings.append(f"{name} is {_show(value)}: both values must be > 0, ignored")
        return None
    return float(nums[0]), float(nums[1])


def _empty(value: Any) -> bool:
    try:
        return len(value) == 0
    except TypeError:
        return False


def _functional_group_pixel_spacing(dataset: Dataset) -> Any:
    """PixelSpacing from the shared (else first per-frame) Pixel Measures Sequence of an enhanced object."""
    for group_kw in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        groups = _raw_value(dataset, group_kw)
        if not groups:
            continue
        try:
            measures = groups[0].get("PixelMeasuresSequence")
            if measures:
                value = _raw_value(measures[0], "PixelSpacing")
                if value is not None:
                    return value
        except (AttributeError, IndexError, TypeError, KeyError):
            continue
    return None


def _user_spacing(user_mm_per_px: float | tuple[float, float] | list[float]) -> tuple[float, float]:
    if isinstance(user_mm_per_px, int | float):
        values = [user_mm_per_px, user_mm_per_px]
    else:
        values = list(user_mm_per_px)
    try:
        nums = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ParameterError("mm_per_px", f"must be a number > 0, got {user_mm_per_px!r}") from None
    if len(nums) != 2 or not all(math.isfinite(v) and v > 0 for v in nums):
        raise ParameterError("mm_per_px", f"must be a number > 0, got {user_mm_per_px!r}")
    return nums[0], nums[1]


def resolve_calibration(
    dataset: Dataset | None, *, user_mm_per_px: float | tuple[float, float] | None = None
) -> Calibration:
    """Choose mm per pixel for ``dataset`` by the precedence of spec section 2.

    Parameters
    ----------
    dataset : pydicom.dataset.Dataset or None
        The image header (pixel data not needed). ``None`` for inputs without
        DICOM metadata (video).
    user_mm_per_px : float or (float, float), optional
        A calibration given by the user, isotropic or ``(row, col)``, in mm
        per pixel. It wins over every DICOM value.

    Returns
    -------
    Calibration
        The spacing, its source and the warnings (invalid values skipped,
        caveats on the value used).

    Raises
    ------
    dmx.errors.ParameterError
        If ``user_mm_per_px`` is not a finite number > 0 (parameter ``mm_per_px``).
    """
    if user_mm_per_px is not None:
        return Calibration(_user_spacing(user_mm_per_px), CalibrationSource.USER)
    warnings: list[str] = []
    if dataset is None:
        return Calibration(None, CalibrationSource.NONE, ("no calibration in the input: mm values are null",))

    ps_value = _raw_value(dataset, "PixelSpacing")
    ps_name = PIXEL_SPACING
    if ps_value is None or (not isinstance(ps_value, str | bytes) and _empty(ps_value)):
        ps_value = _functional_group_pixel_spacing(dataset)
        ps_name = f"{PIXEL_SPACING} in the Pixel Measures functional group"
    ps = _spacing(ps_value, ps_name, warnings)
    ips = _spacing(_raw_value(dataset, "ImagerPixelSpacing"), IMAGER_PIXEL_SPACING, warnings)

    if ps is not None:
        if ips is not None and ps == ips and "PixelSpacingCalibrationType" not in dataset:
            warnings.append(
                "PixelSpacing equals ImagerPixelSpacing and no PixelSpacingCalibrationType is given: "
                "it may be the detector spacing, not corrected for magnification"
            )
        return Calibration(ps, CalibrationSource.PIXEL_SPACING, tuple(warnings))

    if ips is not None:
        ermf_value = _raw_value(dataset, "EstimatedRadiographicMagnificationFactor")
        ermf = None
        if ermf_value is not None and not (not isinstance(ermf_value, str | bytes) and _empty(ermf_value)):
            nums = _numbers(ermf_value)
            if nums is None or len(nums) != 1:
                warnings.append(f"{ERMF} is {_show(ermf_value)}: not a single number, ignored")
            elif not (math.isfinite(nums[0]) and nums[0] > 0):
                warnings.append(f"{ERMF} is {_show(ermf_value)}: must be > 0, ignored")
            else:
                ermf = nums[0]
                if ermf < 1:
                    warnings.append(
                        f"{ERMF} is {ermf:g}, below 1 (a projection magnifies, so >= 1 is expected): "
                        "used as given, check the calibration"
                    )
        if ermf is not None:
            return Calibration(
                (ips[0] / ermf, ips[1] / ermf), CalibrationSource.IMAGER_PIXEL_SPACING_ERMF, tuple(warnings)
            )
        warnings.append(DETECTOR_WARNING)
        return Calibration(ips, CalibrationSource.IMAGER_PIXEL_SPACING, tuple(warnings))

    warnings.append("no valid pixel spacing in the file: mm values are null (give --mm-per-px to calibrate)")
    return Calibration(None, CalibrationSource.NONE, tuple(warnings))
