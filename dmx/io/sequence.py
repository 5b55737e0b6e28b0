"""The in-memory DMX study: frames in display polarity plus calibration and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmx.anatomy import CalibrationSource


@dataclass(frozen=True)
class StudyInfo:
    """Study metadata as read from the input (raw strings; escape before display)."""

    patient_id: str | None = None
    patient_name: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    study_date: str | None = None
    study_description: str | None = None
    series_description: str | None = None
    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    institution: str | None = None


@dataclass(frozen=True)
class Sequence:
    """A loaded DMX study.

    Attributes
    ----------
    frames : numpy.ndarray
        ``T x H x W`` in display polarity (MONOCHROME1 inverted so higher is
        brighter), Modality LUT / rescale applied.
    mm_per_px : tuple of float or None
        ``(row_spacing_mm, column_spacing_mm)``, or ``None`` without calibration.
    calibration_source : CalibrationSource
        Which rule of spec section 2 gave ``mm_per_px``.
    frame_time_ms : numpy.ndarray or None
        Per-frame duration in ms (length T), or ``None`` when unknown.
    study : StudyInfo
        Patient and study metadata.
    paths : tuple of Path
        The files the frames were read from, in frame order.
    photometric_interpretation : str or None
        As stored (``MONOCHROME1`` frames have already been inverted).
    transfer_syntax : str or None
        Transfer Syntax UID of the (first) file; ``None`` for video.
    bits_stored : int or None
        Bits Stored of the DICOM pixels (8 for video).
    warnings : tuple of str
        Everything a user should know about the input (e.g. calibration caveats).
    kind : str or None
        What the input was: ``multiframe``, ``dicom-series``, ``dicomdir`` or ``video``.
    """

    frames: np.ndarray
    mm_per_px: tuple[float, float] | None
    calibration_source: CalibrationSource
    frame_time_ms: np.ndarray | None = None
    study: StudyInfo = field(default_factory=StudyInfo)
    paths: tuple[Path, ...] = ()
    photometric_interpretation: str | None = None
    transfer_syntax: str | None = None
    bits_stored: int | None = None
    warnings: tuple[str, ...] = ()
    kind: str | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of one frame."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def time_ms(self) -> np.ndarray | None:
        """Time of each frame's start from the first frame, in ms (cumulative frame times)."""
        if self.frame_time_ms is None:
            return None
        t = np.concatenate([[0.0], np.cumsum(self.frame_time_ms[:-1], dtype=float)])
        return t
