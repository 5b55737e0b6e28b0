"""The analysis pipeline: sequence -> landmarks -> tracks -> measurements -> files.

:func:`analyze` is the one function the command line (``dmx analyze``) and the
batch runner call; :func:`write_outputs` writes what it produced.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmx.anatomy import BODIES, CORNERS, OPTIONAL_BODIES, UpperCervicalPoint, Vertebra
from dmx.errors import LandmarkError
from dmx.io.sequence import Sequence
from dmx.landmarks import Landmarks
from dmx.tracking.types import Tracks

MEASUREMENTS_SCHEMA = "dmx.measurements/1"
BODY_NAMES = frozenset(v.value for v in BODIES + OPTIONAL_BODIES)


@dataclass(frozen=True)
class Analysis:
    """Everything one study's analysis produced.

    ``measurements`` is the ``measurements.json`` document (spec section 8).
    """

    sequence: Sequence
    landmarks: Landmarks
    tracks: Tracks
    measurements: dict[str, Any]


def check_landmarks(landmarks: Landmarks, sequence: Sequence, *, path: str | Path) -> None:
    """Check that ``landmarks`` fit ``sequence``: reference frame exists, points inside the image.

    Raises
    ------
    LandmarkError
        Naming the landmark file and the problem.
    """
    if landmarks.frame >= sequence.n_frames:
        raise LandmarkError(
            path, f"reference frame {landmarks.frame} does not exist (the study has {sequence.n_frames})"
        )
    rows, cols = sequence.shape
    pts = {v.value: c for v, c in landmarks.corners_px.items()}
    pts.update({p.value: xy[None] for p, xy in landmarks.extra_px.items()})
    for name, xy in pts.items():
        x, y = np.asarray(xy)[:, 0], np.asarray(xy)[:, 1]
        if np.any(x < -0.5) or np.any(y < -0.5) or np.any(x > cols - 0.5) or np.any(y > rows - 0.5):
            raise LandmarkError(path, f"{name} lies outside the {cols}x{rows} image")


def _point_track(tracks: Tracks, vertebra: Vertebra, xy_ref: np.ndarray) -> np.ndarray | None:
    """Carry a point fixed to ``vertebra`` through the frames with its rigid transforms."""
    if tracks.transforms is None or vertebra not in tracks.vertebrae:
        return None
    a = tracks.transforms[:, tracks.vertebrae.index(vertebra)]  # (T, 2, 3)
    return a[:, :, :2] @ np.asarray(xy_ref, dtype=float) + a[:, :, 2]


def _adi_points(tracks: Tracks, landmarks: Landmarks) -> dict[str, np.ndarray] | None:
    """Per-frame C1.arch_post and C2.dens_ant, when both were given and both can be followed."""
    if not {UpperCervicalPoint.C1_ARCH_POST, UpperCervicalPoint.C2_DENS_ANT} <= landmarks.extra_px.keys():
        return None
    dens = _point_track(tracks, Vertebra.C2, landmarks.extra_px[UpperCervicalPoint.C2_DENS_ANT])
    arch = _point_track(tracks, Vertebra.C1, landmarks.extra_px[UpperCervicalPoint.C1_ARCH_POST])
    if dens is None or arch is None:
        return None
    return {UpperCervicalPoint.C1_ARCH_POST.value: arch, UpperCervicalPoint.C2_DENS_ANT.value: dens}


def build_measurements(
    sequence: Sequence,
    landmarks: Landmarks,
    tracks: Tracks,
    measured: dict[str, Any],
    *,
    landmarks_source: str,
) -> dict[str, Any]:
    """Assemble the measurements.json document (spec section 8) from its parts."""
    from dmx import __version__
    from dmx.io.checksum import sha256_files
    from dmx.measure import quality_json, tracks_json

    # C1 may be followed (for the atlanto-dental interval) but has no body corners.
    trk = {k: v for k, v in tracks_json(tracks).items() if k in BODY_NAMES}
    qual = {k: v for k, v in quality_json(tracks).items() if k in BODY_NAMES}
    time_ms = sequence.time_ms
    s = sequence.study
    frames = {
        "count": sequence.n_frames,
        "reference": int(landmarks.frame),
        **measured.get("frames", {}),
        "time_ms": None if time_ms is None else [float(t) for t in time_ms],
    }
    lost = {
        v.value: sorted({r for r in (row[i] for row in tracks.reason) if r})
        for i, v in enumerate(tracks.vertebrae)
        if any(row[i] for row in tracks.reason)
    }
    doc: dict[str, Any] = {
        "schema": MEASUREMENTS_SCHEMA,
        "software": {"name": "dmx", "version": __version__},
        "input": {
            "paths": [str(p) for p in sequence.paths],
            "sha256": sha256_files(sequence.paths) if sequence.paths else None,
        },
        "study": {
            "patient_id": s.patient_id,
            "patient_name": s.patient_name,
            "study_uid": s.study_uid,
            "series_uid": s.series_uid,
            "study_date": s.study_date,
            "modality": s.modality,
            "manufacturer": s.manufacturer,
            "study_description": s.study_description,
            "series_description": s.series_description,
        },
        "calibration": {
            "mm_per_px": None if sequence.mm_per_px is None else [float(x) for x in sequence.mm_per_px],
            "source": sequence.calibration_source.value,
        },
        "frames": frames,
        "landmarks_source": landmarks_source,
        "tracks": trk,
        "quality": qual,
        "tracking_lost": lost,
    }
    for key, value in measured.items():
        if key not in ("frames", "warnings"):
            doc[key] = value
    doc["warnings"] = list(sequence.warnings) + list(measured.get("warnings", []))
    return doc


def analyze(
    study_path: str | Path,
    *,
    landmarks_path: str | Path | None = None,
    series: str | None = None,
    mm_per_px: float | None = None,
    neutral_frame: int | None = None,
    thresholds: Any = None,
) -> Analysis:
    """Load, track and measure one study.

    Parameters
    ----------
    study_path : path
        A DICOM file, a folder of frames, a DICOMDIR or a video.
    landmarks_path : path, optional
        Landmark file (``dmx.landmarks/1``) for the reference frame.
    series : str, optional
        Series Instance UID to choose in a folder holding several.
    mm_per_px : float, optional
        User calibration, overriding every DICOM value.
    neutral_frame : int, optional
        Frame to use as neutral instead of the first.
    thresholds : dmx.measure.config.Thresholds, optional
        Flag thresholds (defaults per spec section 7).

    Raises
    ------
    dmx.errors.DmxError
        For unusable input; the message names the file and the problem.
    """
    from dmx.errors import UsageError
    from dmx.io.load import load_sequence
    from dmx.landmarks import read_landmarks
    from dmx.measure import measure
    from dmx.tracking import track

    if landmarks_path is None:
        raise UsageError(
            f"{study_path}: no landmarks given (--landmarks L.json); automatic detection is not available yet"
        )
    landmarks = read_landmarks(landmarks_path)
    sequence = load_sequence(study_path, series=series, mm_per_px=mm_per_px)
    check_landmarks(landmarks, sequence, path=landmarks_path)
    if neutral_frame is not None and not 0 <= neutral_frame < sequence.n_frames:
        raise UsageError(f"--neutral-frame {neutral_frame} is outside 0..{sequence.n_frames - 1}")
    tracks = track(sequence.frames, landmarks)
    measured = measure(
        tracks,
        mm_per_px=sequence.mm_per_px,
        neutral_frame=neutral_frame,
        thresholds=thresholds,
        adi_points_px=_adi_points(tracks, landmarks),
    )
    doc = build_measurements(sequence, landmarks, tracks, measured, landmarks_source="file")
    return Analysis(sequence=sequence, landmarks=landmarks, tracks=tracks, measurements=doc)


def landmarks_csv(tracks: Tracks) -> str:
    """Long-form corner table: frame, vertebra, corner, x_px, y_px, quality (empty where lost)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", "vertebra", "corner", "x_px", "y_px", "quality"])
    for t in range(tracks.n_frames):
        for v_idx, v in enumerate(tracks.vertebrae):
            q = tracks.quality[t, v_idx]
            qs = f"{q:.4f}" if np.isfinite(q) else ""
            for k, corner in enumerate(CORNERS):
                x, y = tracks.corners_px[t, v_idx, k]
                if np.isfinite(x) and np.isfinite(y):
                    w.writerow([t, v.value, corner.value, f"{x:.3f}", f"{y:.3f}", qs])
                else:
                    w.writerow([t, v.value, corner.value, "", "", qs])
    return buf.getvalue()


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def measurements_text(doc: dict[str, Any]) -> str:
    """measurements.json text: strict JSON (no NaN), stable key order."""
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def write_outputs(
    analysis: Analysis, out_dir: str | Path, *, report: bool = True, pdf: bool = False
) -> dict[str, Path]:
    """Write ``measurements.json``, ``landmarks.csv`` and ``report.html`` into ``out_dir``.

    Each file is written atomically. Returns the paths written by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    write_text_atomic(out / "measurements.json", measurements_text(analysis.measurements))
    written["measurements"] = out / "measurements.json"
    write_text_atomic(out / "landmarks.csv", landmarks_csv(analysis.tracks))
    written["landmarks"] = out / "landmarks.csv"
    if report:
        from dmx.report import write_report

        write_report(analysis, out / "report.html", pdf=pdf)
        written["report"] = out / "report.html"
        if pdf and (out / "report.pdf").exists():
            written["pdf"] = out / "report.pdf"
    return written
