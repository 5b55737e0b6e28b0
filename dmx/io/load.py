"""Loading a DMX study into a :class:`~dmx.io.sequence.Sequence`.

Accepted inputs: a multi-frame DICOM file, a single-frame DICOM file, a
folder holding one series of single-frame files (any layout; grouping is
:mod:`dmx.io.discover`'s), a DICOMDIR, DICOM files without preamble or file
meta (ACR-NEMA style), every transfer syntax pydicom and pylibjpeg decode
(big endian and deflate included), and video files through OpenCV.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmx.errors import InputError
from dmx.io.calibration import Calibration, resolve_calibration
from dmx.io.dicom import (
    Geometry,
    Header,
    ValueMap,
    check_pixel_data,
    check_size,
    decode_frames,
    frame_times_ms,
    geometry,
    read_header,
    study_info,
    value_map,
)
from dmx.io.discover import VIDEO_SUFFIXES, Discovery, InputKind, StudyInput, discover
from dmx.io.sequence import Sequence
from dmx.io.video import read_video

log = logging.getLogger("dmx.io")


@dataclass(frozen=True)
class Plan:
    """Everything known about a DICOM study before its pixels are decoded."""

    kind: InputKind
    headers: tuple[Header, ...]
    geometries: tuple[Geometry, ...]
    value_maps: tuple[ValueMap, ...]
    n_frames: int
    rows: int
    columns: int
    dtype: np.dtype
    calibration: Calibration
    frame_time_ms: np.ndarray | None
    warnings: tuple[str, ...]

    @property
    def first(self) -> Header:
        return self.headers[0]


def _series_list(studies: tuple[StudyInput, ...] | list[StudyInput]) -> str:
    return "; ".join(s.summary() for s in studies)


def choose_input(discovery: Discovery, path: Path, *, series: str | None = None) -> StudyInput:
    """The one study to load from what :func:`dmx.io.discover.discover` found under ``path``.

    ``series`` (a Series Instance UID or a study input id) chooses among
    several; without it, several series are an error listing them.

    Raises
    ------
    dmx.errors.InputError
        No image at all, the chosen series is absent, or several series and none chosen.
    """
    studies = discovery.studies
    if not studies:
        n = len(discovery.skipped)
        detail = (
            f" ({n} file{'s' if n != 1 else ''} skipped, e.g. {discovery.skipped[0].path.name}: "
            f"{discovery.skipped[0].reason})"
            if n
            else ""
        )
        raise InputError(path, f"no images found{detail}")
    if series is not None:
        chosen = [s for s in studies if series in (s.series_uid, s.id)]
        if not chosen:
            raise InputError(path, f"series {series} not found; available: {_series_list(studies)}")
        studies = tuple(chosen)
    if len(studies) > 1:
        raise InputError(
            path,
            f"{len(studies)} series found, choose one with --series: {_series_list(studies)}",
        )
    return studies[0]


def plan_dicom(
    paths: tuple[Path, ...] | list[Path],
    *,
    kind: InputKind | None = None,
    mm_per_px: float | tuple[float, float] | None = None,
) -> Plan:
    """Read the headers of a DICOM study and check them, without decoding pixels.

    Parameters
    ----------
    paths : sequence of Path
        One multi-frame (or single-frame) file, or single-frame files in frame order.
    kind : InputKind, optional
        Reported kind; inferred when not given.
    mm_per_px : float or (float, float), optional
        User calibration (wins over DICOM values).

    Raises
    ------
    dmx.errors.InputError
        A file is not DICOM, has no pixel data or pixel data shorter than its
        header says, claims absurd dimensions, or does not match the series.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError(None, "no files given")
    headers = [read_header(p) for p in paths]
    geoms = [geometry(h) for h in headers]
    for h, g in zip(headers, geoms, strict=True):
        check_pixel_data(h, g)
    warnings: list[str] = []
    first, g0 = headers[0], geoms[0]
    if len(headers) == 1:
        n = g0.frames
    else:
        for h, g in zip(headers, geoms, strict=True):
            if g.frames != 1:
                raise InputError(h.path, f"multi-frame file ({g.frames} frames) in a series of single frames")
            if (g.rows, g.columns) != (g0.rows, g0.columns):
                raise InputError(
                    h.path,
                    f"frame size {g.rows} x {g.columns} differs from the series' {g0.rows} x {g0.columns}",
                )
        n = len(headers)
        check_size(first.path.parent, n, g0.rows, g0.columns, bytes_per_px=max(1, g0.bits_allocated // 8))
    maps = []
    for h, g in zip(headers, geoms, strict=True):
        file_warnings: list[str] = []
        maps.append(value_map(h, g, file_warnings))
        for w in file_warnings:
            if w not in warnings:
                warnings.append(w)
    dtype = np.result_type(*[m.dtype for m in maps])
    calibration = resolve_calibration(first.dataset, user_mm_per_px=mm_per_px)
    if len(headers) > 1 and mm_per_px is None:
        others = {resolve_calibration(h.dataset).mm_per_px for h in headers[1:]}
        if others - {calibration.mm_per_px}:
            warnings.append("pixel spacing differs between the files of the series: the first file's is used")
    if len(headers) == 1:
        frame_time = frame_times_ms(first.dataset, n, warnings)
    else:
        frame_time = (
            frame_times_ms(first.dataset, n, warnings)
            if "FrameTime" in first.dataset or ("CineRate" in first.dataset)
            else None
        )
        if frame_time is None:
            warnings.append("single-frame series without FrameTime or CineRate: frame times unknown")
    if kind is None:
        kind = InputKind.MULTIFRAME if len(headers) == 1 and n > 1 else InputKind.DICOM_SERIES
    return Plan(
        kind=kind,
        headers=tuple(headers),
        geometries=tuple(geoms),
        value_maps=tuple(maps),
        n_frames=n,
        rows=g0.rows,
        columns=g0.columns,
        dtype=dtype,
        calibration=calibration,
        frame_time_ms=frame_time,
        warnings=tuple(calibration.warnings) + tuple(warnings),
    )


def empty_frames(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """``numpy.empty`` for decoded frames, on the system's ordinary (4 kB) pages.

    numpy asks Linux for transparent huge pages (2 MB) for every large array; the kernel must then find,
    and on a machine whose memory is fragmented (one that has been running other work for a while) first
    compact, a free 2 MB block for each, and clear it. For 0.63 GB of frames that took 0.6-2.4 s on the
    shared development machine, against 0.4-0.5 s on ordinary pages, with no difference in the tracking
    that reads them (``benchmarks/speed.py``; docs/speed.md). Other arrays are left as numpy makes them.
    """
    multiarray = getattr(np, "_core", None) or getattr(np, "core", None)
    set_huge = getattr(getattr(multiarray, "multiarray", None), "_set_madvise_hugepage", None)
    if set_huge is None:  # a numpy without the switch: as numpy does
        return np.empty(shape, dtype=dtype)
    before = set_huge(False)
    try:
        return np.empty(shape, dtype=dtype)
    finally:
        set_huge(before)


def decode_plan(plan: Plan, *, max_frames: int | None = None) -> np.ndarray:
    """Decode the frames of a planned study into one preallocated ``T x H x W`` array."""
    n = plan.n_frames if max_frames is None else min(plan.n_frames, max_frames)
    out = empty_frames((n, plan.rows, plan.columns), plan.dtype)
    if len(plan.headers) == 1:
        indices = None if n == plan.n_frames else list(range(n))
        decode_frames(plan.first, plan.geometries[0], plan.value_maps[0], out, indices=indices)
    else:
        for i in range(n):
            decode_frames(plan.headers[i], plan.geometries[i], plan.value_maps[i], out[i : i + 1])
    return out


def _sequence(plan: Plan, frames: np.ndarray) -> Sequence:
    first = plan.first
    return Sequence(
        frames=frames,
        mm_per_px=plan.calibration.mm_per_px,
        calibration_source=plan.calibration.source,
        frame_time_ms=plan.frame_time_ms,
        study=study_info(first.dataset),
        paths=tuple(h.path for h in plan.headers),
        photometric_interpretation=_text(first.dataset.get("PhotometricInterpretation")),
        transfer_syntax=str(first.transfer_syntax),
        bits_stored=plan.geometries[0].bits_stored,
        warnings=plan.warnings,
        kind=plan.kind.value,
    )


def _text(value: object) -> str | None:
    text = None if value is None else str(value).strip()
    return text or None


def resolve_input(path: str | Path, *, series: str | None = None) -> StudyInput:
    """Which files (or video) ``path`` designates: a file, a folder, or a DICOMDIR.

    Raises
    ------
    dmx.errors.InputError
        Missing path, empty folder, not DICOM, several series without ``series``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return StudyInput(InputKind.VIDEO, (path,), None, None, "video")
    if path.is_dir():
        if not any(path.iterdir()):
            raise InputError(path, "empty folder")
        return choose_input(discover(path), path, series=series)
    header = read_header(path)  # raises a clean InputError for non-DICOM files
    if header.is_dicomdir:
        return choose_input(discover(path), path, series=series)
    if not header.is_image:
        sop = header.dataset.get("SOPClassUID")
        name = getattr(sop, "name", None) or "unknown SOP class"
        raise InputError(path, f"no image in this DICOM file ({name})")
    uid = header.dataset.get("SeriesInstanceUID")
    if series is not None and series != (str(uid) if uid else None):
        raise InputError(path, f"series {series} not found; this file holds series {uid or '(none)'}")
    return StudyInput(InputKind.MULTIFRAME, (path,), None, None, "file")


def load_input(study: StudyInput, *, mm_per_px: float | tuple[float, float] | None = None) -> Sequence:
    """Load a study found by :func:`dmx.io.discover.discover` (the batch runner's entry point)."""
    if study.kind is InputKind.VIDEO:
        return read_video(study.paths[0], mm_per_px=mm_per_px)
    kind = study.kind if study.kind is InputKind.DICOMDIR else None
    plan = plan_dicom(study.paths, kind=kind, mm_per_px=mm_per_px)
    return _sequence(plan, decode_plan(plan))


def load_sequence(
    path: str | Path, *, series: str | None = None, mm_per_px: float | tuple[float, float] | None = None
) -> Sequence:
    """Load a DMX study: DICOM file, folder of single frames, DICOMDIR or video.

    Parameters
    ----------
    path : str or Path
        A multi-frame DICOM file, a folder holding one series of
        single-frame files, a DICOMDIR, a video file (.mp4, .avi ...), or a
        still image (.png, .jpg, .tif: one frame, :func:`dmx.io.still.read_still`).
    series : str, optional
        Series Instance UID (or study input id) to read when ``path``
        holds several series.
    mm_per_px : float or (float, float), optional
        Calibration in mm per pixel (isotropic, or ``(row, col)``); wins over
        every DICOM value (source ``user``).

    Returns
    -------
    Sequence
        Frames ``T x H x W`` in display polarity (MONOCHROME1 inverted),
        Modality LUT / rescale applied, native byte order, integer dtype
        unless the modality transform gives non-integers (then float32).

    Raises
    ------
    dmx.errors.InputError
        One line naming the file and the problem: missing, not DICOM,
        truncated, no pixel data, undecodable, absurd dimensions, several
        series without ``series``, empty folder.
    dmx.errors.UsageError
        ``mm_per_px`` is not a number > 0.
    """
    from dmx.io.still import is_still_image, read_still

    if is_still_image(path) and Path(path).is_file():
        return read_still(path, mm_per_px=mm_per_px)
    study = resolve_input(path, series=series)
    seq = load_input(study, mm_per_px=mm_per_px)
    log.info(
        "loaded %d frames of %d x %d (%s, calibration %s)",
        seq.n_frames,
        seq.shape[0],
        seq.shape[1],
        seq.kind,
        seq.calibration_source.value,
    )
    return seq
