"""Thresholds of the instability flags and of the curve class (spec sections 5 and 7).

Every threshold is a default that the user may change, either in a TOML file
or with ``NAME=VALUE`` overrides on the command line. The value used, where it
came from (default, config file, command line) and its literature source are
written into ``measurements.json`` so that a report can always say which rule
produced a flag.

A config file is a TOML document holding the names below, either in a
``[thresholds]`` table or, for a thresholds-only file, at top level::

    [thresholds]
    translation_mm = 3.0
    excursion_mm = 2.5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from dmx.anatomy import Flag
from dmx.errors import InputError, UsageError

#: Origin recorded for a value that was not changed.
DEFAULT = "default"
#: Origin recorded for a value given as ``NAME=VALUE`` on the command line.
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class ThresholdInfo:
    """What a threshold means: its unit, the flag it drives, the rule and the literature source."""

    unit: str
    flag: str | None
    rule: str
    source: str


#: Description of every threshold, keyed by its name (the field of :class:`Thresholds`).
THRESHOLD_INFO: dict[str, ThresholdInfo] = {
    "translation_mm": ThresholdInfo(
        "mm",
        Flag.TRANSLATION_GT_3_5MM.value,
        "abs(translation_mm) > value",
        "AMA Guides 5th ed. (AOMSI); docs/measurements.md section 7",
    ),
    "offset_range_mm": ThresholdInfo(
        "mm",
        Flag.TRANSLATION_GT_3_5MM.value,
        "abs(offset_range_mm) > value",
        "AMA Guides 5th ed. (AOMSI), applied to the continuous offset range; docs/measurements.md section 7",
    ),
    "translation_pct": ThresholdInfo(
        "%",
        Flag.TRANSLATION_GT_20PCT.value,
        "abs(translation_pct) > value",
        "White & Panjabi; docs/measurements.md section 7",
    ),
    "excursion_mm": ThresholdInfo(
        "mm",
        Flag.TRANSLATION_GT_2MM.value,
        "max over frames of abs(offset_mm[f] - offset_mm[neutral]) > value",
        "Freeman et al. 2020 (videofluoroscopy); docs/measurements.md section 7",
    ),
    "angulation_vs_adjacent_deg": ThresholdInfo(
        "deg",
        Flag.ANGULATION_GT_11DEG_VS_ADJACENT.value,
        "rotation_rom_deg - rotation_rom_deg(adjacent level) > value",
        "AMA Guides 5th ed. (AOMSI); docs/measurements.md section 7",
    ),
    "min_rotation_deg": ThresholdInfo(
        "deg",
        Flag.INSUFFICIENT_MOTION.value,
        "abs(rotation_rom_deg) < value",
        "Hipp et al. 2026; docs/measurements.md section 7",
    ),
    "adi_mm": ThresholdInfo(
        "mm",
        Flag.ADI_GT_3MM.value,
        "atlanto-dental interval > value in any measured frame (adults)",
        "standard radiology; docs/measurements.md section 7",
    ),
    "curve_tolerance_mm": ThresholdInfo(
        "mm",
        None,
        "curve class tolerance tau on Ishihara d (calibrated studies)",
        "docs/measurements.md section 5",
    ),
    "curve_tolerance_pct_depth": ThresholdInfo(
        "%",
        None,
        "curve class tolerance tau as a percentage of the mean C3-C6 depth (uncalibrated studies)",
        "docs/measurements.md section 5",
    ),
    "max_angle_uncertainty_deg": ThresholdInfo(
        "deg",
        None,
        "a level's frame whose angle_uncertainty_deg (1 SD) exceeds value is null, with the reason",
        "dmx tracking precision (issue #13): well above the phantom benchmarks' worst tracked frames",
    ),
}


@dataclass(frozen=True)
class Thresholds:
    """Every threshold dmx applies, with the origin of each value.

    Attributes
    ----------
    translation_mm : float
        ``translation_gt_3_5mm``: limit on ``abs(translation_mm)``, mm.
    offset_range_mm : float
        ``translation_gt_3_5mm``: limit on ``abs(offset_range_mm)``, mm.
    translation_pct : float
        ``translation_gt_20pct``: limit on ``abs(translation_pct)``, percent of depth.
    excursion_mm : float
        ``translation_gt_2mm``: limit on the excursion of the offset from neutral, mm.
    angulation_vs_adjacent_deg : float
        ``angulation_gt_11deg_vs_adjacent``: limit on the ROM difference to an adjacent level, degrees.
    min_rotation_deg : float
        ``insufficient_motion``: a level rotating less than this was not stressed, degrees.
    adi_mm : float
        ``adi_gt_3mm``: limit on the atlanto-dental interval, mm.
    curve_tolerance_mm : float
        Curve class tolerance on Ishihara ``d`` with calibration, mm.
    curve_tolerance_pct_depth : float
        Curve class tolerance without calibration, percent of the mean C3-C6 depth.
    max_angle_uncertainty_deg : float
        A level's frame whose angle uncertainty (1 SD: the tracker's registration precision and
        model error) is above this is not measured (``null`` with the reason in the level's
        ``warnings``), degrees.
    origins : tuple of (str, str)
        ``(name, origin)`` for every value that is not the default; the origin
        is a config file path or ``"command line"``. Use :meth:`origin`.
    """

    translation_mm: float = 3.5
    offset_range_mm: float = 3.5
    translation_pct: float = 20.0
    excursion_mm: float = 2.0
    angulation_vs_adjacent_deg: float = 11.0
    min_rotation_deg: float = 5.0
    adi_mm: float = 3.0
    curve_tolerance_mm: float = 2.0
    curve_tolerance_pct_depth: float = 12.5
    max_angle_uncertainty_deg: float = 1.0
    origins: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in threshold_names():
            _check_value(name, getattr(self, name), where="Thresholds")
        for name, _ in self.origins:
            if name not in THRESHOLD_INFO:
                raise UsageError(f"unknown threshold {name!r} in origins")

    def origin(self, name: str) -> str:
        """Where threshold ``name`` came from: ``"default"``, a config file path or ``"command line"``."""
        if name not in THRESHOLD_INFO:
            raise UsageError(f"unknown threshold {name!r}")
        return dict(self.origins).get(name, DEFAULT)

    def to_json(self) -> dict[str, dict[str, Any]]:
        """The ``thresholds`` block of ``measurements.json``: value, unit, origin, flag, rule, source."""
        out: dict[str, dict[str, Any]] = {}
        for name, info in THRESHOLD_INFO.items():
            out[name] = {
                "value": float(getattr(self, name)),
                "unit": info.unit,
                "origin": self.origin(name),
                "flag": info.flag,
                "rule": info.rule,
                "source": info.source,
            }
        return out


def threshold_names() -> tuple[str, ...]:
    """Names of all thresholds, in the order of :class:`Thresholds`."""
    return tuple(f.name for f in fields(Thresholds) if f.name != "origins")


def _normalise_name(name: Any, *, where: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in THRESHOLD_INFO:
        known = ", ".join(threshold_names())
        raise UsageError(f"{where}: unknown threshold {str(name)!r} (known: {known})")
    return key


def _check_value(name: str, value: Any, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise UsageError(f"{where}: threshold {name!r} must be a number, got {value!r}") from None
        else:
            raise UsageError(f"{where}: threshold {name!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise UsageError(f"{where}: threshold {name!r} must be a finite number, got {value!r}")
    if value < 0:
        raise UsageError(f"{where}: threshold {name!r} must not be negative, got {value!r}")
    return value


def _toml_module() -> Any:
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise UsageError(
                "reading a threshold config file needs Python >= 3.11 or the 'tomli' package"
            ) from None
    return tomllib


def parse_override(text: str) -> tuple[str, float]:
    """Parse one ``NAME=VALUE`` override from the command line.

    Raises
    ------
    dmx.errors.UsageError
        When the text has no ``=``, the name is unknown, or the value is not a
        finite non-negative number.
    """
    if "=" not in text:
        raise UsageError(f"threshold override {text!r} must be NAME=VALUE")
    name, _, value = text.partition("=")
    key = _normalise_name(name, where="command line")
    return key, _check_value(key, value, where="command line")


def load_thresholds(
    config_path: str | Path | None = None,
    *,
    overrides: Mapping[str, Any] | Iterable[str] | None = None,
) -> Thresholds:
    """Thresholds from the defaults, an optional TOML file, then command-line overrides.

    Parameters
    ----------
    config_path : str or Path, optional
        TOML file with threshold names and values, in a ``[thresholds]`` table
        or at top level. Its values replace the defaults.
    overrides : mapping or iterable of str, optional
        ``{name: value}`` or ``["NAME=VALUE", ...]`` from the command line;
        they replace file values and defaults.

    Returns
    -------
    Thresholds
        With ``origins`` recording which values came from the file or the command line.

    Raises
    ------
    dmx.errors.InputError
        When the config file cannot be read or is not valid TOML.
    dmx.errors.UsageError
        When a name is unknown or a value is not a finite non-negative number
        (the message names the threshold and, for a file, the file).
    """
    values: dict[str, float] = {}
    origins: dict[str, str] = {}
    if config_path is not None:
        tomllib = _toml_module()
        path = Path(config_path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise InputError(path, "threshold config file not found") from None
        except OSError as exc:
            raise InputError(path, f"cannot read threshold config file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(path, f"not a valid TOML file ({exc})") from None
        table = data.get("thresholds", data)
        if not isinstance(table, dict):
            raise UsageError(f"{path}: 'thresholds' must be a table of NAME = VALUE")
        for name, value in table.items():
            key = _normalise_name(name, where=str(path))
            values[key] = _check_value(key, value, where=str(path))
            origins[key] = str(path)
    if overrides is not None:
        if isinstance(overrides, Mapping):
            items = [(_normalise_name(k, where="command line"), v) for k, v in overrides.items()]
            items = [(k, _check_value(k, v, where="command line")) for k, v in items]
        elif isinstance(overrides, str):
            items = [parse_override(overrides)]
        else:
            items = [parse_override(t) for t in overrides]
        for key, value in items:
            values[key] = value
            origins[key] = COMMAND_LINE
    return replace(Thresholds(), **values, origins=tuple(sorted(origins.items())))
