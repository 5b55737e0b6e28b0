"""The analysis pipeline: sequence -> landmarks -> tracks -> measurements -> files.

This is the one function the CLI (``dmx analyze``) and the batch runner call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmx.io.sequence import Sequence
from dmx.landmarks import Landmarks
from dmx.tracking.types import Tracks


@dataclass(frozen=True)
class Analysis:
    """Everything one study's analysis produced.

    ``measurements`` is the ``measurements.json`` document (spec section 8).
    """

    sequence: Sequence
    landmarks: Landmarks
    tracks: Tracks
    measurements: dict[str, Any]


def analyze(
    study_path: str | Path,
    *,
    landmarks_path: str | Path | None = None,
    series: str | None = None,
    mm_per_px: float | None = None,
    neutral_frame: int | None = None,
    thresholds: dict[str, float] | None = None,
) -> Analysis:
    """Load, track and measure one study. Not built yet."""
    raise NotImplementedError("analysis pipeline not built yet")


def write_outputs(analysis: Analysis, out_dir: str | Path, *, report: bool = True) -> dict[str, Path]:
    """Write measurements.json, landmarks.csv and report.html into ``out_dir``. Not built yet."""
    raise NotImplementedError("analysis outputs not built yet")
