"""dmx: cervical-spine instability measurements from Digital Motion X-ray.

The public names are importable from here; the modules behind them load on
first use, so ``import dmx`` stays light::

    import dmx

    analysis = dmx.analyze("study.dcm", landmarks_path="landmarks.json")
    print(analysis.measurements["levels"]["C4-C5"]["rotation_rom_deg"])
    dmx.write_outputs(analysis, "out/")  # measurements.json, landmarks.csv, report.html

Step by step: :func:`load_sequence` -> :func:`read_landmarks` (or
:func:`find_landmarks`) -> :func:`track` -> :func:`measure` -> :func:`write_report`.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("dmx")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

#: Public name -> the module that defines it (imported on first access).
_EXPORTS: dict[str, str] = {
    # errors
    "DmxError": "dmx.errors",
    "InputError": "dmx.errors",
    "LandmarkError": "dmx.errors",
    "UsageError": "dmx.errors",
    "DetectionUnavailableError": "dmx.errors",
    "DetectionFailedError": "dmx.errors",
    # the data every step passes on
    "Sequence": "dmx.io.sequence",
    "StudyInfo": "dmx.io.sequence",
    "Landmarks": "dmx.landmarks",
    "Detection": "dmx.analysis",
    "Tracks": "dmx.tracking.types",
    "Thresholds": "dmx.measure.config",
    "Analysis": "dmx.analysis",
    # the steps, in order
    "load_sequence": "dmx.io.load",
    "read_landmarks": "dmx.landmarks",
    "write_landmarks": "dmx.landmarks",
    "find_landmarks": "dmx.detect",
    "detect_landmarks": "dmx.detect",
    "track": "dmx.tracking",
    "smooth_tracks": "dmx.tracking",
    "measure": "dmx.measure",
    "load_thresholds": "dmx.measure.config",
    "validate_measurements": "dmx.measure",
    "write_report": "dmx.report",
    "render_report": "dmx.report",
    # the whole pipeline
    "analyze": "dmx.pipeline",
    "write_outputs": "dmx.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dmx' has no attribute {name!r}")
    # ``dmx.measure`` is the subpackage, callable as its function measure() (see dmx/measure/__init__.py)
    value = import_module(module) if name == "measure" else getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["__version__", *_EXPORTS]
