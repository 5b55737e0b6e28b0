"""Discovery: the studies of an inbox as batch jobs, with their labels, keys and landmark sidecars.

The files are found and grouped into studies by :func:`dmx.io.discover.discover`;
this module only turns what it found into :class:`~dmx.batch.jobs.StudyJob` and
:class:`~dmx.batch.jobs.Unusable` entries.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dmx.batch.jobs import Status, StudyJob, Unusable

if TYPE_CHECKING:
    from dmx.io.discover import Discovery, StudyInput

#: Reasons ``dmx.io.discover`` gives for DICOM files that are fine but not studies.
_BENIGN_SKIPS = ("duplicate", "dicomdir", "dicom without an image")

#: ``(key, kind, study_path, paths, series_uid)`` of one study found by ``dmx.io.discover``.
_Entry = tuple[str, str, Path, tuple[Path, ...], str | None]


def discover_inputs(
    inbox: str | Path, *, exclude: Sequence[Path] = ()
) -> tuple[list[StudyJob], list[Unusable]]:
    """Find every study under ``inbox`` whatever the folder layout (:func:`dmx.io.discover.discover`).

    Returns the studies (sorted by label, checksums not yet computed) and the
    files that are not studies. Landmark sidecars, hidden files and anything
    under ``exclude`` (the output folder) are left out.
    """
    from dmx.io.discover import discover

    root = Path(inbox)
    excluded = tuple(Path(p).resolve() for p in exclude)
    return _studies_from_discovery(discover(root), root, exclude=excluded)


def _studies_from_discovery(
    found: Discovery, root: Path, *, exclude: tuple[Path, ...]
) -> tuple[list[StudyJob], list[Unusable]]:
    """Batch jobs from :class:`dmx.io.discover.Discovery`; a corrupt DICOM file counts as failed."""

    def wanted(path: Path) -> bool:
        rel = path.relative_to(root).parts if path.is_relative_to(root) else path.parts
        if any(part.startswith(".") for part in rel) or _is_sidecar(path.name):
            return False
        return not any(path.resolve().is_relative_to(e) for e in exclude)

    unusable = _unusable_files(found, root, wanted)
    studies = [st for st in found.studies if all(wanted(Path(p)) for p in st.paths)]
    singles, groups = _static_groups(studies)
    entries = [_entry(st) for st in singles] + [_static_entry(g) for g in groups]
    return _make_jobs(entries, root), unusable


#: ``StudyJob.kind`` (and the manifest's ``kind``) of a static flexion/extension study.
STATIC_KIND = "static F/E, {n} views"


def is_static_kind(kind: str) -> bool:
    """Whether a job's kind is a static flexion/extension study (several single views)."""
    return kind.startswith("static F/E")


def _static_groups(studies: list[StudyInput]) -> tuple[list[StudyInput], list[list[StudyInput]]]:
    """Single-image series of one patient and date in one folder, two or three of them: one static study.

    Returns the studies left as they are, and the groups (:func:`dmx.io.static.static_group`).
    """
    from dmx.errors import InputError
    from dmx.io.dicom import read_header
    from dmx.io.discover import InputKind
    from dmx.io.static import static_group

    by_study: dict[tuple[Path, str, str], list[StudyInput]] = {}  # (folder, patient, date): never logged
    for st in studies:
        if st.kind is InputKind.DICOM_SERIES and len(st.paths) == 1:
            try:
                ds = read_header(Path(st.paths[0])).dataset
            except InputError:
                continue
            patient = str(ds.get("PatientID", "") or "").strip()
            date = str(ds.get("StudyDate", "") or "").strip()
            by_study.setdefault((Path(st.paths[0]).parent, patient, date), []).append(st)
    grouped: list[list[StudyInput]] = []
    for members in by_study.values():
        if 2 <= len(members) <= 3 and static_group([Path(m.paths[0]) for m in members]) is not None:
            grouped.append(sorted(members, key=lambda m: str(m.paths[0])))
    in_group = {id(m) for g in grouped for m in g}
    return [st for st in studies if id(st) not in in_group], grouped


def _static_entry(group: list[StudyInput]) -> _Entry:
    """One job for the views of a static study (read from their folder, analysed together)."""
    paths = tuple(Path(m.paths[0]) for m in group)
    key = hashlib.sha256("\x00".join(["dmx-static", *(m.id for m in group)]).encode()).hexdigest()[:16]
    return key, STATIC_KIND.format(n=len(group)), paths[0].parent, paths, None


def _unusable_files(found: Discovery, root: Path, wanted: Callable[[Path], bool]) -> list[Unusable]:
    """The files that are not studies, by label: skipped, or failed when a DICOM file is corrupt."""
    unusable = []
    for sk in found.skipped:
        path = Path(sk.path)
        if not wanted(path):
            continue
        benign = str(sk.reason).lower().startswith(_BENIGN_SKIPS)
        status = Status.SKIPPED if benign or not _has_dicom_magic(path) else Status.FAILED
        unusable.append(Unusable(path, _rel(path, root), str(sk.reason), status))
    return sorted(unusable, key=lambda u: u.label)


def _entry(st: StudyInput) -> _Entry:
    """What a job needs of one :class:`dmx.io.discover.StudyInput`; a series is read from its folder."""
    kind = getattr(st.kind, "value", str(st.kind))
    paths = tuple(Path(p) for p in st.paths)
    dicomdir = getattr(st, "dicomdir", None)
    if len(paths) == 1:
        return st.id, kind, paths[0], paths, None
    study_path = Path(dicomdir) if dicomdir is not None else Path(os.path.commonpath(paths))
    return st.id, kind, study_path, paths, st.series_uid


def _make_jobs(entries: list[_Entry], root: Path) -> list[StudyJob]:
    """Labels, landmark sidecars and unique keys for the studies found, sorted by label."""
    per_folder: dict[Path, int] = {}  # studies per folder: a folder's landmarks.json needs exactly one
    for _, _, study_path, paths, _ in entries:
        folder = _home(study_path, paths)
        per_folder[folder] = per_folder.get(folder, 0) + 1
    jobs: list[StudyJob] = []
    seen_keys: set[str] = set()
    for key, kind, study_path, paths, series in entries:
        folder = _home(study_path, paths)
        label, candidates, hint = _label_and_sidecars(paths, folder, root, alone=per_folder[folder] == 1)
        if key in seen_keys:
            key = _study_key(label, key, None)
        seen_keys.add(key)
        jobs.append(
            StudyJob(
                key=key,
                label=label,
                kind=kind,
                study_path=study_path,
                paths=paths,
                root=root,
                series_uid=series,
                landmarks_path=next((c for c in candidates if c.is_file()), None),
                landmarks_hint=hint,
            )
        )
    jobs.sort(key=lambda j: j.label)
    return jobs


def _home(study_path: Path, paths: tuple[Path, ...]) -> Path:
    """The folder whose ``landmarks.json`` would belong to the study."""
    if study_path.is_dir():
        return study_path
    return paths[0].parent if len(paths) == 1 else study_path.parent  # a DICOMDIR's folder


def _label_and_sidecars(
    paths: tuple[Path, ...], folder: Path, root: Path, *, alone: bool
) -> tuple[str, list[Path], str]:
    """The study's label, where its landmark sidecar may be (in order) and the hint for a missing one.

    ``alone``: the study is the only one in ``folder``, so the folder's ``landmarks.json`` is its own.
    """
    if len(paths) == 1:
        f = paths[0]
        label = _rel(f, root)
        candidates = [f.with_name(f.name + ".landmarks.json"), f.with_name(f.stem + ".landmarks.json")]
        if alone:
            candidates.append(folder / "landmarks.json")
        return label, candidates, f"{label}.landmarks.json"
    label = _rel(folder, root) if alone else f"{_rel(paths[0], root)} (+{len(paths) - 1} files)"
    candidates = [folder / "landmarks.json"] if alone else []
    hint = f"{_rel(folder, root)}/landmarks.json" + ("" if alone else " (one series per folder)")
    return label, candidates, hint


def _is_sidecar(name: str) -> bool:
    return name == "landmarks.json" or name.endswith(".landmarks.json")


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _rel(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()
    return rel if rel != "." else path.name


def _study_key(label: str, study_uid: str | None, series_uid: str | None) -> str:
    text = "\x00".join(["dmx-study", label, study_uid or "", series_uid or ""])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
