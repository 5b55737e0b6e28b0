"""Finding studies under a folder of any layout.

Every file under the root is accounted for: DICOM images are grouped into
:class:`StudyInput` entries (a multi-frame file is one entry; single-frame
files are grouped by Study and Series Instance UID and put in frame order),
video files are one entry each, and everything else is returned as a
:class:`SkippedInput` with the reason, so a batch manifest can list it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from dmx.errors import InputError
from dmx.io.dicom import Header, quiet_pydicom, read_header

log = logging.getLogger("dmx.io")

#: File name endings read as video (through OpenCV).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".m4v", ".mkv", ".mpg", ".mpeg", ".wmv")

#: Header elements read when grouping files (the rest of the header is not needed).
GROUPING_TAGS = [
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "InstanceNumber",
    "AcquisitionDateTime",
    "AcquisitionTime",
    "ContentTime",
    "NumberOfFrames",
    "Rows",
    "Columns",
]


class InputKind(StrEnum):
    """What an input is made of."""

    DICOM_SERIES = "dicom-series"
    """Single-frame DICOM files of one series, one frame each."""
    MULTIFRAME = "multiframe"
    """One multi-frame DICOM file."""
    DICOMDIR = "dicomdir"
    """Images of one series listed by a DICOMDIR."""
    VIDEO = "video"
    """A video file (.mp4, .avi ...)."""


@dataclass(frozen=True)
class StudyInput:
    """One loadable study (one series, or one multi-frame file, or one video).

    Attributes
    ----------
    kind : InputKind
        What the input is made of.
    paths : tuple of Path
        The files, in frame order.
    study_uid, series_uid : str or None
        From the DICOM headers (``None`` for video or when missing).
    id : str
        A stable identifier (16 hex digits) derived from the UIDs (or the
        path relative to the root when there are none); never a patient name.
    modality, description : str or None
        Modality and Series Description, to help choose a series.
    dicomdir : Path or None
        The DICOMDIR that listed the files, for kind ``dicomdir``.
    """

    kind: InputKind
    paths: tuple[Path, ...]
    study_uid: str | None
    series_uid: str | None
    id: str
    modality: str | None = None
    description: str | None = None
    dicomdir: Path | None = None

    def summary(self) -> str:
        """One line to tell series apart: UID, modality, number of files, description."""
        n = len(self.paths)
        what = f"{n} file{'s' if n != 1 else ''}"
        uid = self.series_uid or f"id {self.id}"
        desc = f", {self.description!r}" if self.description else ""
        if self.kind is InputKind.VIDEO:
            return f"video {self.paths[0].name} (id {self.id})"
        return f"{uid} ({self.modality or 'no modality'}, {what}{desc})"


@dataclass(frozen=True)
class SkippedInput:
    """A file that is not part of any study, and why."""

    path: Path
    reason: str


#: Reason recorded for a landmark file (``landmarks.json``, ``<file>.landmarks.json``) found while walking.
LANDMARK_FILE = "landmark file"


@dataclass(frozen=True)
class Discovery:
    """Everything found under a root: loadable studies and skipped files."""

    studies: tuple[StudyInput, ...]
    skipped: tuple[SkippedInput, ...]


def _stable_id(*parts: str | None) -> str:
    key = "|".join(p or "" for p in parts)
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def _text(header: Header, keyword: str) -> str | None:
    try:
        value = header.dataset.get(keyword)
    except Exception:
        return None
    text = None if value is None else str(value).strip()
    return text or None


def _frame_count(header: Header) -> int:
    try:
        return int(header.dataset.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return 1


def frame_order_key(header: Header) -> tuple:
    """Sort key of a single-frame file in its series: Instance Number, then acquisition/content time, name."""
    try:
        number = int(header.dataset.get("InstanceNumber"))
    except (TypeError, ValueError):
        number = None
    acq = _text(header, "AcquisitionDateTime") or _text(header, "AcquisitionTime") or ""
    content = _text(header, "ContentTime") or ""
    return (number is None, number if number is not None else 0, acq, content, header.path.name)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def group_headers(
    headers: list[Header], *, root: Path, kind: InputKind | None = None, dicomdir: Path | None = None
) -> tuple[list[StudyInput], list[SkippedInput]]:
    """Group image headers into studies: multi-frame files alone, single frames by series.

    Parameters
    ----------
    headers : list of Header
        Headers read with :func:`dmx.io.dicom.read_header`.
    root : Path
        The folder paths are made relative to for ids of files without UIDs.
    kind : InputKind, optional
        Force the kind of every entry (``DICOMDIR``).
    dicomdir : Path, optional
        The DICOMDIR listing the files.
    """
    studies: list[StudyInput] = []
    skipped: list[SkippedInput] = []
    series: dict[tuple[str | None, str | None, str | None], list[Header]] = {}
    # Of several files with one SOP Instance UID keep the largest (a truncated copy is never
    # larger than the complete one), the first in walk order on a tie.
    keep: dict[str, Header] = {}
    for h in headers:
        sop_uid = _text(h, "SOPInstanceUID")
        if sop_uid and (sop_uid not in keep or _size(h.path) > _size(keep[sop_uid].path)):
            keep[sop_uid] = h
    for h in headers:
        sop_uid = _text(h, "SOPInstanceUID")
        if sop_uid and keep[sop_uid] is not h:
            skipped.append(
                SkippedInput(h.path, f"duplicate: same SOP Instance UID as {_rel(keep[sop_uid].path, root)}")
            )
            continue
        if h.is_dicomdir:
            skipped.append(SkippedInput(h.path, "DICOMDIR index (its images are read as files)"))
            continue
        if not h.is_image:
            sop = h.dataset.get("SOPClassUID")
            name = getattr(sop, "name", None) or (str(sop) if sop else "unknown SOP class")
            skipped.append(SkippedInput(h.path, f"DICOM without an image ({name})"))
            continue
        study_uid = _text(h, "StudyInstanceUID")
        series_uid = _text(h, "SeriesInstanceUID")
        if _frame_count(h) > 1:
            ident = _stable_id(study_uid, series_uid, sop_uid or _rel(h.path, root))
            studies.append(
                StudyInput(
                    kind or InputKind.MULTIFRAME,
                    (h.path,),
                    study_uid,
                    series_uid,
                    ident,
                    _text(h, "Modality"),
                    _text(h, "SeriesDescription"),
                    dicomdir,
                )
            )
            continue
        key = (study_uid, series_uid, None if series_uid else _rel(h.path, root))
        series.setdefault(key, []).append(h)
    for (study_uid, series_uid, rel), members in series.items():
        members.sort(key=frame_order_key)
        first = members[0]
        studies.append(
            StudyInput(
                kind or InputKind.DICOM_SERIES,
                tuple(m.path for m in members),
                study_uid,
                series_uid,
                _stable_id(study_uid, series_uid, rel),
                _text(first, "Modality"),
                _text(first, "SeriesDescription"),
                dicomdir,
            )
        )
    studies.sort(key=lambda s: (s.study_uid or "", s.series_uid or "", str(s.paths[0])))
    return studies, skipped


def _probe(path: Path, root: Path) -> Header | SkippedInput:
    try:
        return read_header(path, specific_tags=GROUPING_TAGS)
    except InputError as exc:
        return SkippedInput(path, exc.problem)


def dicomdir_files(dicomdir: Path) -> list[Path]:
    """The files a DICOMDIR lists (read with pydicom's FileSet; raw directory records as a fallback).

    Raises
    ------
    dmx.errors.InputError
        The DICOMDIR cannot be read.
    """
    import pydicom
    from pydicom.fileset import FileSet

    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(dicomdir, force=True)
    except Exception as exc:
        raise InputError(dicomdir, f"not a readable DICOMDIR ({type(exc).__name__})") from None
    if "DirectoryRecordSequence" not in ds:
        raise InputError(dicomdir, "not a DICOMDIR (no directory records)")
    paths: list[Path] = []
    try:
        with quiet_pydicom():
            fs = FileSet(ds)
            paths = [Path(inst.path) for inst in fs]
    except Exception as exc:
        log.debug(
            "%s: directory records not in a standard hierarchy (%s); reading them one by one",
            dicomdir.name,
            type(exc).__name__,
        )
        for record in ds.DirectoryRecordSequence:
            ref = record.get("ReferencedFileID")
            if ref is None:
                continue
            parts = [ref] if isinstance(ref, str) else list(ref)
            paths.append(dicomdir.parent.joinpath(*[str(p) for p in parts]))
    seen: set[Path] = set()
    unique = []
    for p in paths:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return [p for p in unique if _inside_media(p, dicomdir)]


def _inside_media(path: Path, dicomdir: Path) -> bool:
    """Whether ``path`` (listed by ``dicomdir``) lies inside the DICOMDIR's folder, symlinks resolved.

    Media from another facility are untrusted: a record naming ``../secret/x.dcm``, an
    absolute path or a symlink leading out of the folder is refused with a warning naming it.
    """
    folder = dicomdir.parent.resolve()
    try:
        inside = path.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        try:
            shown = path.relative_to(dicomdir.parent).as_posix()
        except ValueError:
            shown = str(path)
        log.warning(
            "%s: refused the record naming %s: it lies outside the DICOMDIR's folder",
            dicomdir.name,
            shown,
        )
    return inside


def _discover_dicomdir(dicomdir: Path) -> Discovery:
    headers: list[Header] = []
    skipped: list[SkippedInput] = []
    for p in dicomdir_files(dicomdir):
        probed = _probe(p, dicomdir.parent)
        if isinstance(probed, SkippedInput):
            skipped.append(probed)
        else:
            headers.append(probed)
    studies, more = group_headers(headers, root=dicomdir.parent, kind=InputKind.DICOMDIR, dicomdir=dicomdir)
    _log_skipped(skipped + more, dicomdir.parent)
    return Discovery(tuple(studies), tuple(skipped + more))


def is_dicomdir(path: Path) -> bool:
    """Whether ``path`` is a DICOMDIR file (by its Media Storage SOP Class, or its name)."""
    if not path.is_file():
        return False
    try:
        return read_header(path, specific_tags=["SOPClassUID"]).is_dicomdir
    except InputError:
        return False


def discover(root: str | Path) -> Discovery:
    """Find every study under ``root`` (a folder of any layout, a DICOMDIR, a DICOM or video file).

    Parameters
    ----------
    root : str or Path
        Folder to walk (recursively, in sorted order), or a single file.

    Returns
    -------
    Discovery
        ``studies`` (sorted by study and series UID) and ``skipped`` files
        with the reason each was not used (also logged on ``dmx.io``).

    Raises
    ------
    dmx.errors.InputError
        ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(root, "not found")
    if root.is_file():
        if root.suffix.lower() in VIDEO_SUFFIXES:
            return Discovery((StudyInput(InputKind.VIDEO, (root,), None, None, _stable_id(root.name)),), ())
        probed = _probe(root, root.parent)
        if isinstance(probed, SkippedInput):
            return Discovery((), (probed,))
        if probed.is_dicomdir:
            return _discover_dicomdir(root)
        studies, skipped = group_headers([probed], root=root.parent)
        return Discovery(tuple(studies), tuple(skipped))

    headers: list[Header] = []
    skipped: list[SkippedInput] = []
    videos: list[StudyInput] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() in VIDEO_SUFFIXES:
                videos.append(StudyInput(InputKind.VIDEO, (path,), None, None, _stable_id(_rel(path, root))))
                continue
            if name == "landmarks.json" or name.endswith(".landmarks.json"):
                skipped.append(SkippedInput(path, LANDMARK_FILE))  # a study's sidecar, not an image
                continue
            probed = _probe(path, root)
            if isinstance(probed, SkippedInput):
                skipped.append(probed)
            else:
                headers.append(probed)
    studies, more = group_headers(headers, root=root)
    skipped.extend(more)
    _log_skipped(skipped, root)
    return Discovery(tuple(studies + videos), tuple(skipped))


def _log_skipped(skipped: list[SkippedInput], root: Path) -> None:
    """Each skipped file at DEBUG, and one INFO line counting them by reason."""
    counts: dict[str, int] = {}
    sidecars = 0
    for s in skipped:
        log.debug("skipped %s: %s", _rel(s.path, root), s.reason)
        if s.reason == LANDMARK_FILE:
            sidecars += 1  # not an image, but not unused either: read with its study
            continue
        kind = s.reason.split(" (")[0].split(":")[0]
        counts[kind] = counts.get(kind, 0) + 1
    n = sum(counts.values())
    if counts:
        detail = ", ".join(f"{c} {k}" for k, c in sorted(counts.items(), key=lambda kv: -kv[1]))
        log.info("skipped %d file%s: %s", n, "s" if n != 1 else "", detail)
    if sidecars:
        log.info(
            "%d landmark file%s (read with %s)",
            sidecars,
            "s" if sidecars != 1 else "",
            "their studies" if sidecars != 1 else "its study",
        )


def find_studies(root: str | Path) -> list[StudyInput]:
    """The loadable studies under ``root``; see :func:`discover` for the skipped files too."""
    return list(discover(root).studies)
