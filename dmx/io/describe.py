"""What ``dmx info`` prints: a study's size, encoding, timing, calibration and warnings.

Describing reads the headers and decodes only the first frame (to prove the
pixels decode), so it works on long cines without holding them in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import UID

from dmx.errors import InputError
from dmx.io.calibration import resolve_calibration
from dmx.io.discover import InputKind
from dmx.io.load import decode_plan, plan_dicom, resolve_input


def _frame_time_summary(frame_time_ms: np.ndarray | None) -> dict[str, Any]:
    if frame_time_ms is None or len(frame_time_ms) == 0:
        return {"frame_time_ms": None, "frame_time_constant": None, "duration_ms": None}
    ft = np.asarray(frame_time_ms, dtype=float)
    return {
        "frame_time_ms": round(float(np.mean(ft)), 6),
        "frame_time_constant": bool(np.allclose(ft, ft[0])),
        "duration_ms": round(float(np.sum(ft)), 6),
    }


def _describe_video(path: Path, mm_per_px: float | tuple[float, float] | None) -> dict[str, Any]:
    import cv2

    from dmx.io.video import video_properties

    props = video_properties(path)
    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.grab():  # counts frames without keeping them (containers' counts are unreliable)
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise InputError(path, "no frame could be decoded from the video")
    fps = props["fps"]
    cal = resolve_calibration(None, user_mm_per_px=mm_per_px)
    warnings = (
        []
        if mm_per_px is not None
        else ["video input: no calibration (give --mm-per-px): mm values are null"]
    )
    frame_time = np.full(n, 1000.0 / fps) if fps and np.isfinite(fps) and fps > 0 else None
    if frame_time is None:
        warnings.append("the video reports no frame rate: frame times unknown")
    return {
        "path": str(path),
        "kind": InputKind.VIDEO.value,
        "files": 1,
        "frames": n,
        "rows": props["rows"],
        "columns": props["columns"],
        "modality": None,
        "photometric_interpretation": None,
        "transfer_syntax": None,
        "codec": props["codec"],
        "bits_stored": 8,
        "dtype": "uint8",
        **_frame_time_summary(frame_time),
        "calibration": cal.to_json(),
        "study": {},
        "warnings": warnings,
    }


def _describe_still(path: Path, mm_per_px: float | tuple[float, float] | None) -> dict[str, Any]:
    """A PNG, JPEG or TIFF image (:func:`dmx.io.still.read_still`)."""
    from dmx.io.still import read_still

    seq = read_still(path, mm_per_px=mm_per_px)
    return {
        "path": str(path),
        "kind": "still",
        "files": 1,
        "frames": 1,
        "rows": seq.shape[0],
        "columns": seq.shape[1],
        "modality": None,
        "photometric_interpretation": None,
        "transfer_syntax": None,
        "codec": path.suffix.lower().lstrip("."),
        "bits_stored": seq.bits_stored,
        "dtype": str(seq.frames.dtype),
        **_frame_time_summary(None),
        "calibration": {
            "mm_per_px": None if seq.mm_per_px is None else [float(x) for x in seq.mm_per_px],
            "source": seq.calibration_source.value,
        },
        "study": {},
        "warnings": list(seq.warnings),
    }


def describe(
    path: str | Path, *, series: str | None = None, mm_per_px: float | tuple[float, float] | None = None
) -> dict[str, Any]:
    """Describe a study without loading all its frames.

    Parameters
    ----------
    path : str or Path
        DICOM file, folder of single frames, DICOMDIR or video.
    series : str, optional
        Series Instance UID to describe when ``path`` holds several.
    mm_per_px : float or (float, float), optional
        User calibration (shown as source ``user``).

    Returns
    -------
    dict
        JSON-ready: ``path``, ``kind``, ``files``, ``frames``, ``rows``,
        ``columns``, ``modality``, ``photometric_interpretation``,
        ``transfer_syntax`` (``{"uid", "name"}``), ``bits_stored``, ``dtype``,
        ``frame_time_ms`` (mean), ``frame_time_constant``, ``duration_ms``,
        ``calibration`` (``{"mm_per_px": [row, col] | None, "source"}``),
        ``study`` (UIDs, date, descriptions, equipment; no patient name) and
        ``warnings``.

    Raises
    ------
    dmx.errors.InputError
        As :func:`dmx.io.load.load_sequence` (the first frame is decoded).
    """
    path = Path(path)
    from dmx.io.still import is_still_image

    if is_still_image(path) and path.is_file():
        return _describe_still(path, mm_per_px)
    study_input = resolve_input(path, series=series)
    if study_input.kind is InputKind.VIDEO:
        return _describe_video(study_input.paths[0], mm_per_px)
    kind = study_input.kind if study_input.kind is InputKind.DICOMDIR else None
    plan = plan_dicom(study_input.paths, kind=kind, mm_per_px=mm_per_px)
    decode_plan(plan, max_frames=1)  # proves the codestream decodes; one frame in memory
    ds = plan.first.dataset
    ts = UID(plan.first.transfer_syntax)

    def text(keyword: str) -> str | None:
        value = ds.get(keyword)
        value = None if value is None else str(value).strip()
        return value or None

    return {
        "path": str(path),
        "kind": plan.kind.value,
        "files": len(plan.headers),
        "frames": plan.n_frames,
        "rows": plan.rows,
        "columns": plan.columns,
        "modality": text("Modality"),
        "photometric_interpretation": text("PhotometricInterpretation"),
        "transfer_syntax": {"uid": str(ts), "name": ts.name if ts.is_transfer_syntax else None},
        "bits_stored": plan.geometries[0].bits_stored,
        "dtype": str(np.dtype(plan.dtype)),
        **_frame_time_summary(plan.frame_time_ms),
        "calibration": plan.calibration.to_json(),
        "study": {
            "patient_id": text("PatientID"),
            "study_uid": text("StudyInstanceUID"),
            "series_uid": text("SeriesInstanceUID"),
            "study_date": text("StudyDate"),
            "study_description": text("StudyDescription"),
            "series_description": text("SeriesDescription"),
            "manufacturer": text("Manufacturer"),
            "model": text("ManufacturerModelName"),
        },
        "warnings": list(plan.warnings),
    }


def format_description(d: dict[str, Any]) -> str:
    """The text ``dmx info`` prints for a :func:`describe` result (one fact per line)."""
    cal = d["calibration"]
    if cal["mm_per_px"] is None:
        cal_text = f"none ({cal['source']})" if cal["source"] != "none" else "none: mm values will be null"
    else:
        r, c = cal["mm_per_px"]
        cal_text = f"{r:.6g} x {c:.6g} mm/px (row x column) from {cal['source']}"
    ts = d.get("transfer_syntax")
    if ts:
        ts_text = f"{ts['name'] or 'unknown'} ({ts['uid']})"
    else:
        what = "still image" if d.get("kind") == "still" else "video"
        ts_text = f"{what} ({d.get('codec') or 'unknown codec'})"
    if d.get("frame_time_ms") is None:
        ft_text = "unknown"
    else:
        ft_text = f"{d['frame_time_ms']:.6g} ms" + ("" if d.get("frame_time_constant") else " (mean; varies)")
        ft_text += f", {1000.0 / d['frame_time_ms']:.4g} frames/s, {d['duration_ms'] / 1000.0:.4g} s in all"
    study = d.get("study") or {}
    lines = [
        f"path:            {d['path']}",
        f"kind:            {d['kind']} ({d['files']} file{'s' if d['files'] != 1 else ''})",
        f"frames:          {d['frames']}",
        f"rows x columns:  {d['rows']} x {d['columns']}",
        f"modality:        {d.get('modality') or '-'}",
        f"photometric:     {d.get('photometric_interpretation') or '-'}",
        f"transfer syntax: {ts_text}",
        f"bits stored:     {d.get('bits_stored')} (loaded as {d.get('dtype')})",
        f"frame time:      {ft_text}",
        f"calibration:     {cal_text}",
    ]
    if study.get("series_uid"):
        lines.append(f"series:          {study['series_uid']}")
    if study.get("series_description"):
        lines.append(f"description:     {study['series_description']}")
    warnings = d.get("warnings") or []
    if warnings:
        lines.append("warnings:")
        lines.extend(f"  - {w}" for w in warnings)
    else:
        lines.append("warnings:        none")
    return "\n".join(lines)
