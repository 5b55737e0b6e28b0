"""The spec's numbers (docs/measurements.md sections 3-8), computed from corner tracks.

A functional core: plain functions over numpy arrays and small frozen
dataclasses, no I/O except reading a threshold config file.

- :func:`measure`: tracks + calibration -> the measurement part of ``measurements.json``
- :func:`format_summary`: the short text ``dmx analyze`` prints
- :func:`no_measurement_reason`: why a study gave no measurement at all (``None`` when it gave some)
- :func:`validate_measurements`: check a whole document against the schema
- :class:`Thresholds`, :func:`load_thresholds`: flag thresholds with their origin and source
"""

from dmx.measure.config import THRESHOLD_INFO, Thresholds, load_thresholds, parse_override, threshold_names
from dmx.measure.measurements import measure, quality_json, tracks_json
from dmx.measure.summary import format_summary, level_measured, no_measurement_reason
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
