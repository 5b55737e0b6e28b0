"""Reading DMX studies: DICOM (multi-frame, single-frame series, DICOMDIR), video, still images,
and static studies (separate flexion/extension views).

Public names are importable from here; the heavy modules (pydicom, OpenCV)
are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from dmx.io.sequence import Sequence, StudyInfo

_LAZY = {
    "load_sequence": "dmx.io.load",
    "load_input": "dmx.io.load",
    "Calibration": "dmx.io.calibration",
    "resolve_calibration": "dmx.io.calibration",
    "discover": "dmx.io.discover",
    "find_studies": "dmx.io.discover",
    "Discovery": "dmx.io.discover",
    "InputKind": "dmx.io.discover",
    "SkippedInput": "dmx.io.discover",
    "StudyInput": "dmx.io.discover",
    "describe": "dmx.io.describe",
    "format_description": "dmx.io.describe",
    "read_still": "dmx.io.still",
    "load_static": "dmx.io.static",
    "StaticStudy": "dmx.io.static",
    "View": "dmx.io.static",
    "Posture": "dmx.io.static",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dmx.io' has no attribute {name!r}")


__all__ = ["Sequence", "StudyInfo", *_LAZY]
