"""The spec's numbers (docs/measurements.md sections 3-8), computed from corner tracks.

A functional core: plain functions over numpy arrays and small frozen
dataclasses, no I/O except reading a threshold config file.

- :func:`measure`: tracks + calibration -> the measurement part of ``measurements.json``
- :func:`format_summary`: the short text ``dmx analyze`` prints
- :func:`no_measurement_reason`: why a study gave no measurement at all (``None`` when it gave some)
- :func:`validate_measurements`: check a whole document against the schema
- :class:`Thresholds`, :func:`load_thresholds`: flag thresholds with their origin and source
"""

import sys as _sys
import types as _types
from typing import Any as _Any

from dmx.measure.config import THRESHOLD_INFO, Thresholds, load_thresholds, parse_override, threshold_names
from dmx.measure.measurements import measure, quality_json, tracks_json
from dmx.measure.text_summary import format_summary, level_measured, no_measurement_reason
from dmx.measure.validation import MeasurementsSchemaError, validate_measurements

__all__ = [
    "THRESHOLD_INFO",
    "MeasurementsSchemaError",
    "Thresholds",
    "format_summary",
    "level_measured",
    "load_thresholds",
    "measure",
    "no_measurement_reason",
    "parse_override",
    "quality_json",
    "threshold_names",
    "tracks_json",
    "validate_measurements",
]


class _CallableModule(_types.ModuleType):
    """``dmx.measure`` is this package and, called, its :func:`measure` (``dmx.measure(tracks, ...)``).

    The public API names the step ``dmx.measure`` like the others (``dmx.track``, ``dmx.write_report``);
    the package of the same name would shadow a plain function there as soon as it is imported.
    """

    def __call__(self, *args: _Any, **kwargs: _Any) -> dict[str, _Any]:
        return measure(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
