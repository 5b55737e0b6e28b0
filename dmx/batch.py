"""Batch runner: analyse every study found under an inbox folder, resumably, in parallel.

One study in, one output folder out::

    OUT/
      manifest.csv, manifest.jsonl     one row per input found (ok / failed / skipped)
      <study key>/                     16 hex digits, a hash: no names, no UIDs, no dates
        measurements.json, report.html, landmarks.csv   (written by dmx.pipeline; without a
                                         landmark sidecar also landmarks.auto.json, review.html)
        batch.json                     input checksum and finish time (for resuming)

Every study folder appears atomically: the analysis writes into
``OUT/.tmp-<key>-<pid>/`` which is renamed to ``OUT/<key>/`` only when complete,
so a crash or Ctrl-C never leaves half a study; stale temporary folders are
removed at the start of the next run.

The per-study function :func:`run_study` is a picklable top-level function that
never raises for a bad study (it returns a failed :class:`ManifestRow`), so the
same function runs in local worker processes (``concurrent.futures``) or on a
Dask distributed cluster.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from dmx.anatomy import LandmarkSource
from dmx.errors import DmxError, InputError, LandmarkError, UsageError
from dmx.files import write_text_atomic

if TYPE_CHECKING:
    from dmx.io.discover import Discovery

log = logging.getLogger("dmx.batch")

#: The analysis each worker runs, as ``"module:function"`` (a string, so that it
#: pickles under any start method and on a Dask cluster). See :func:`analyze_study`.
DEFAULT_ANALYZER = "dmx.batch:analyze_study"
#: The same analysis that also writes the results as DICOM (``dmx batch --dicom``; ``dmx listen``).
DICOM_ANALYZER = "dmx.batch:analyze_study_dicom"

#: Columns of ``manifest.csv`` (and keys of each ``manifest.jsonl`` line), in order.
MANIFEST_FIELDS: tuple[str, ...] = (
    "input",
    "kind",
    "files",
    "status",
    "reason",
    "duration_s",
    "input_sha256",
    "landmarks_sha256",
    "landmarks_source",
    "output",
    "finished_at",
)

BATCH_SCHEMA = "dmx.batch-study/1"
_MAX_REASON = 300
#: Worker processes start from a clean server process, never by forking this one
#: (forking a process with threads can deadlock; the same on every Python version).
_MP = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


class Status(StrEnum):
    """Outcome of one input in the manifest."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StudyJob:
    """One study found in the inbox: what the analysis reads and where its output goes.

    Attributes
    ----------
    key : str
        Stable, non-identifying id (16 hex digits): the output folder name.
    label : str
        The study's path relative to the inbox (POSIX form); what the manifest and logs show.
    kind : str
        ``"multiframe"``, ``"dicom-series"``, ``"dicomdir"`` or ``"video"`` (as
        :class:`dmx.io.discover.InputKind`).
    study_path : Path
        What :func:`dmx.pipeline.analyze` reads: a file, or the folder of a series.
    paths : tuple of Path
        Every input file of the study, in frame order.
    root : Path
        The inbox (used to shorten paths in messages).
    series_uid : str or None
        Series to read when ``study_path`` is a folder; passed to the analysis, never logged.
    landmarks_path : Path or None
        The sidecar landmark file, when there is one.
    landmarks_hint : str
        Where a landmark file would be picked up (for the "no landmarks" reason).
    sha256 : str
        SHA-256 over the study's files in order (:func:`input_checksum`, the same as
        ``measurements.json`` ``input.sha256``); filled in by :func:`run_batch`.
    landmarks_sha256 : str
        SHA-256 of the landmark sidecar ("" without one); filled in by :func:`run_batch`.
    """

    key: str
    label: str
    kind: str
    study_path: Path
    paths: tuple[Path, ...]
    root: Path
    series_uid: str | None = None
    landmarks_path: Path | None = None
    landmarks_hint: str = ""
    sha256: str = ""
    landmarks_sha256: str = ""
    detector_sha256: str = ""

    @property
    def landmarks_source(self) -> str:
        """``"file"`` (a sidecar) or ``"auto"`` (found automatically), as in measurements.json."""
        return (LandmarkSource.FILE if self.landmarks_path is not None else LandmarkSource.AUTO).value

    @property
    def fingerprint(self) -> str:
        """What decides "unchanged" and "duplicate": the images and the landmarks.

        Without a landmark file the landmarks come from the detector, so its model
        file stands in for them: a new model re-analyses those studies.
        """
        if self.landmarks_path is None:
            return f"{self.sha256}+auto:{self.detector_sha256}"
        return f"{self.sha256}+{self.landmarks_sha256}"


@dataclass(frozen=True)
class Unusable:
    """An input file that is not a study (``skipped``) or cannot be read at all (``failed``)."""

    path: Path
    label: str
    reason: str
    status: Status = Status.SKIPPED


@dataclass(frozen=True)
class ManifestRow:
    """One line of the manifest: what happened to one input."""

    input: str
    kind: str
    files: int
    status: Status
    reason: str
    duration_s: float | None
    input_sha256: str
    landmarks_sha256: str
    output: str
    finished_at: str
    landmarks_source: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


@dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` did."""

    rows: tuple[ManifestRow, ...]
    elapsed_s: float
    manifest_csv: Path
    manifest_jsonl: Path
    interrupted: bool = False

    def count(self, status: Status) -> int:
        return sum(r.status is status for r in self.rows)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (skipped counts as success), 1 otherwise."""
        return 1 if self.interrupted or self.count(Status.FAILED) else 0


# --------------------------------------------------------------------------- discovery


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


#: Reasons ``dmx.io.discover`` gives for DICOM files that are fine but not studies.
_BENIGN_SKIPS = ("duplicate", "dicomdir", "dicom without an image")


def _studies_from_discovery(
    found: Discovery, root: Path, *, exclude: tuple[Path, ...]
) -> tuple[list[StudyJob], list[Unusable]]:
    """Batch jobs from :class:`dmx.io.discover.Discovery`; a corrupt DICOM file counts as failed."""

    def wanted(path: Path) -> bool:
        rel = path.relative_to(root).parts if path.is_relative_to(root) else path.parts
        if any(part.startswith(".") for part in rel) or _is_sidecar(path.name):
            return False
        return not any(path.resolve().is_relative_to(e) for e in exclude)

    unusable = []
    for sk in found.skipped:
        path = Path(sk.path)
        if not wanted(path):
            continue
        benign = str(sk.reason).lower().startswith(_BENIGN_SKIPS)
        status = Status.SKIPPED if benign or not _has_dicom_magic(path) else Status.FAILED
        unusable.append(Unusable(path, _rel(path, root), str(sk.reason), status))

    entries = [st for st in found.studies if all(wanted(Path(p)) for p in st.paths)]
    jobs = []
    for st in entries:
        kind = getattr(st.kind, "value", str(st.kind))
        paths = tuple(Path(p) for p in st.paths)
        dicomdir = getattr(st, "dicomdir", None)
        if len(paths) == 1:
            study_path, series = paths[0], None
        else:
            study_path = Path(dicomdir) if dicomdir is not None else Path(os.path.commonpath(paths))
            series = st.series_uid
        jobs.append((st.id, kind, study_path, paths, series))
    return _make_jobs(jobs, root), sorted(unusable, key=lambda u: u.label)


def _make_jobs(
    entries: list[tuple[str, str, Path, tuple[Path, ...], str | None]], root: Path
) -> list[StudyJob]:
    """Labels, landmark sidecars and unique keys for ``(key, kind, study_path, paths, series)`` entries."""

    def home(study_path: Path, paths: tuple[Path, ...]) -> Path:
        """The folder whose ``landmarks.json`` would belong to the study."""
        if study_path.is_dir():
            return study_path
        return paths[0].parent if len(paths) == 1 else study_path.parent  # a DICOMDIR's folder

    per_folder: dict[Path, int] = {}  # studies per folder: a folder's landmarks.json needs exactly one
    for _, _, study_path, paths, _ in entries:
        folder = home(study_path, paths)
        per_folder[folder] = per_folder.get(folder, 0) + 1
    jobs: list[StudyJob] = []
    seen_keys: set[str] = set()
    for key, kind, study_path, paths, series in entries:
        folder = home(study_path, paths)
        alone = per_folder[folder] == 1
        if len(paths) == 1:
            f = paths[0]
            label = _rel(f, root)
            candidates = [f.with_name(f.name + ".landmarks.json"), f.with_name(f.stem + ".landmarks.json")]
            if alone:
                candidates.append(folder / "landmarks.json")
            hint = f"{label}.landmarks.json"
        else:
            label = _rel(folder, root) if alone else f"{_rel(paths[0], root)} (+{len(paths) - 1} files)"
            candidates = [folder / "landmarks.json"] if alone else []
            hint = f"{_rel(folder, root)}/landmarks.json" + ("" if alone else " (one series per folder)")
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


# --------------------------------------------------------------------------- checksums


def file_sha256(path: str | Path) -> str:
    """SHA-256 of one file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_checksum(paths: Sequence[str | Path]) -> str:
    """SHA-256 over the bytes of the study's files concatenated in the given (frame) order.

    The same as ``input.sha256`` in ``measurements.json`` (:func:`dmx.io.checksum.sha256_files`);
    for a single file it is that file's SHA-256, so copies of a study share it.
    """
    from dmx.io.checksum import sha256_files

    return sha256_files(paths)


# --------------------------------------------------------------------------- one study


def _no_landmarks(study: StudyJob, exc: DmxError) -> LandmarkError:
    """The batch reason for a study without a sidecar whose automatic detection gave nothing usable."""
    from dmx.pipeline import DetectionUnavailableError

    if isinstance(exc, DetectionUnavailableError):
        why = f"automatic detection not available: {exc.why}"
    else:
        why = getattr(exc, "problem", str(exc))
    return LandmarkError(None, f"no landmarks: add {study.landmarks_hint} ({why})")


def detect_landmarks(study: StudyJob, *, mm_per_px: float | None = None) -> Any:
    """Automatic landmark detection hook: the corners of C2-C7 found on the study's first frame.

    Loads the study and runs :func:`dmx.detect.find_landmarks` (looked up at call
    time, through :func:`dmx.pipeline.detect_on_sequence`).

    Returns
    -------
    dmx.detect.Detection
        At least one body found (``.landmarks`` with confidence; ``.missing`` with reasons).

    Raises
    ------
    LandmarkError
        "no landmarks: add <sidecar> (<why>)" when detection is not available or found nothing.
    DmxError
        When the study itself cannot be read.
    """
    from dmx.io.load import load_sequence
    from dmx.pipeline import DetectionFailedError, DetectionUnavailableError, detect_on_sequence

    sequence = load_sequence(study.study_path, series=study.series_uid, mm_per_px=mm_per_px)
    try:
        return detect_on_sequence(sequence, study_path=study.study_path)
    except (DetectionUnavailableError, DetectionFailedError) as exc:
        raise _no_landmarks(study, exc) from None


def resolve_landmarks(study: StudyJob, out_dir: Path, *, mm_per_px: float | None = None) -> Path:
    """The landmark file for ``study``: its sidecar, else automatic detection written into ``out_dir``.

    The detected landmarks go to ``out_dir/landmarks.auto.json`` (``dmx.landmarks/1``
    with the confidence map).

    Raises
    ------
    LandmarkError
        "no landmarks: add <file>.landmarks.json (<why>)" when there is no sidecar and
        automatic detection is not available or found nothing.
    """
    if study.landmarks_path is not None:
        return study.landmarks_path
    detected = detect_landmarks(study, mm_per_px=mm_per_px)
    from dmx.landmarks import write_landmarks
    from dmx.pipeline import AUTO_LANDMARKS_NAME

    path = out_dir / AUTO_LANDMARKS_NAME
    write_landmarks(detected.landmarks, path)
    return path


def analyze_study(
    study: StudyJob, out_dir: Path, *, mm_per_px: float | None = None, dicom: bool = False
) -> list[str]:
    """The default per-study analysis: :func:`dmx.pipeline.analyze` then ``write_outputs``.

    Writes ``measurements.json``, ``report.html`` and ``landmarks.csv`` into
    ``out_dir`` and returns the analysis warnings. A study without a landmark sidecar
    is analysed with automatic landmarks (found once, inside the analysis), which adds
    ``landmarks.auto.json`` and ``review.html``; its ``measurements.json`` says
    ``landmarks_source: "auto"``. With ``dicom`` the results are also written as DICOM
    in the source study under ``out_dir/dicom/`` (:func:`dmx.dicom.write_dicom_outputs`).

    Raises
    ------
    DmxError
        Bad input, or no landmarks: no sidecar and automatic detection not available
        or not usable ("no landmarks: add <sidecar> (<why>)").
    """
    from dmx import pipeline

    try:
        analysis = pipeline.analyze(
            study.study_path,
            landmarks_path=study.landmarks_path,
            series=study.series_uid,
            mm_per_px=mm_per_px,
        )
    except (pipeline.DetectionUnavailableError, pipeline.DetectionFailedError) as exc:
        raise _no_landmarks(study, exc) from None
    pipeline.write_outputs(analysis, out_dir, report=True, dicom=dicom)
    return [str(w) for w in analysis.measurements.get("warnings", []) or []]


def analyze_study_dicom(study: StudyJob, out_dir: Path, *, mm_per_px: float | None = None) -> list[str]:
    """:func:`analyze_study` with the DICOM results (:data:`DICOM_ANALYZER`)."""
    return analyze_study(study, out_dir, mm_per_px=mm_per_px, dicom=True)


def _fingerprint(study: StudyJob, analyzer: str) -> str:
    """What makes an earlier result reusable: the study's fingerprint, and the analysis when not the default.

    So that ``--dicom`` after a run without it redoes the studies (their DICOM is missing).
    """
    return study.fingerprint if analyzer == DEFAULT_ANALYZER else f"{study.fingerprint}+{analyzer}"


def run_study(
    study: StudyJob,
    out_root: str | Path,
    *,
    force: bool = False,
    mm_per_px: float | None = None,
    analyzer: str = DEFAULT_ANALYZER,
) -> ManifestRow:
    """Analyse one study into ``out_root/<study.key>/`` atomically; never raises for a bad study.

    Parameters
    ----------
    study : StudyJob
        The study, with its checksum filled in.
    out_root : path
        The batch output folder (shared by every worker).
    force : bool
        Redo the study even when its outputs exist for the same input checksum.
    mm_per_px : float, optional
        Calibration override passed to the analysis.
    analyzer : str
        ``"module:function"`` called as ``function(study, out_dir, mm_per_px=...)``; it
        writes the outputs into ``out_dir`` and returns a list of warnings.

    Returns
    -------
    ManifestRow
        ``ok``, ``skipped`` (unchanged since an earlier run) or ``failed`` with a
        one-line reason. Only ``KeyboardInterrupt`` propagates.
    """
    t0 = time.monotonic()
    out_root = Path(out_root)
    final = out_root / study.key

    def row(status: Status, reason: str) -> ManifestRow:
        return _row(study, status, reason, duration_s=time.monotonic() - t0)

    try:
        if not force:
            since = previous_success(final, _fingerprint(study, analyzer))
            if since is not None:
                return row(Status.SKIPPED, f"unchanged since {since}")
        tmp = out_root / f".tmp-{study.key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            warnings = _resolve(analyzer)(study, tmp, mm_per_px=mm_per_px) or []
            if not (tmp / "measurements.json").is_file():
                raise DmxError("the analysis wrote no measurements.json")
            outputs = sorted(p.name for p in tmp.iterdir())
            record = {
                "schema": BATCH_SCHEMA,
                "input": study.label,
                "input_sha256": study.sha256,
                "landmarks_sha256": study.landmarks_sha256,
                "fingerprint": _fingerprint(study, analyzer),
                "finished_at": _now(),
                "outputs": outputs,
            }
            write_text_atomic(tmp / "batch.json", json.dumps(record, indent=2) + "\n", fsync=True)
            _install(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        n = len(warnings)
        return row(Status.OK, f"{n} warning{'s' * (n != 1)} (see measurements.json)" if n else "")
    except KeyboardInterrupt:
        raise
    except DmxError as exc:
        return row(Status.FAILED, _one_line(str(exc), study.root))
    except BaseException as exc:  # noqa: BLE001 - a bad study must never stop the batch
        return row(Status.FAILED, _one_line(f"internal error ({type(exc).__name__}): {exc}", study.root))


def previous_success(folder: Path, fingerprint: str) -> str | None:
    """Finish time of an earlier successful run on the same input and landmarks, or None.

    The outputs count as existing when ``folder/batch.json`` records ``fingerprint``
    (:attr:`StudyJob.fingerprint`) and every file it lists is still there.
    """
    try:
        record = json.loads((folder / "batch.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint or not fingerprint:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, list) or "measurements.json" not in outputs:
        return None
    if not all(isinstance(n, str) and (folder / n).exists() for n in outputs):  # files, dicom/
        return None
    return str(record.get("finished_at") or "an earlier run")


def _install(tmp: Path, final: Path) -> None:
    """Move the complete temporary folder into place (replacing an older version)."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _resolve(analyzer: str) -> Callable[..., Any]:
    module, _, name = analyzer.partition(":")
    return getattr(importlib.import_module(module), name)


def _row(
    study: StudyJob, status: Status, reason: str, *, duration_s: float | None, output: str = ""
) -> ManifestRow:
    return ManifestRow(
        input=study.label,
        kind=study.kind,
        files=len(study.paths),
        status=status,
        reason=reason,
        duration_s=None if duration_s is None else round(duration_s, 3),
        input_sha256=study.sha256,
        landmarks_sha256=study.landmarks_sha256,
        output=output or (study.key if status is not Status.FAILED else ""),
        finished_at=_now(),
        landmarks_source=study.landmarks_source,
    )


def _one_line(text: str, root: Path) -> str:
    text = text.replace(str(root) + os.sep, "")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- manifest


class ManifestWriter:
    """``manifest.csv`` + ``manifest.jsonl``, appended and flushed row by row.

    An interrupted run keeps every row written so far; :meth:`finish` rewrites
    both files atomically, sorted by input.
    """

    def __init__(self, out_root: Path) -> None:
        self.csv_path = out_root / "manifest.csv"
        self.jsonl_path = out_root / "manifest.jsonl"
        write_text_atomic(self.csv_path, _csv_line(MANIFEST_FIELDS), fsync=True)
        write_text_atomic(self.jsonl_path, "", fsync=True)
        self._csv: IO[str] = open(self.csv_path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        self._jsonl: IO[str] = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115

    def add(self, row: ManifestRow) -> None:
        for fh, line in ((self._csv, _csv_row(row)), (self._jsonl, json.dumps(row.to_json()) + "\n")):
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self, rows: Sequence[ManifestRow]) -> None:
        self.close()
        ordered = sorted(rows, key=lambda r: r.input)
        write_text_atomic(
            self.csv_path, _csv_line(MANIFEST_FIELDS) + "".join(_csv_row(r) for r in ordered), fsync=True
        )
        write_text_atomic(
            self.jsonl_path, "".join(json.dumps(r.to_json()) + "\n" for r in ordered), fsync=True
        )

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _csv_row(row: ManifestRow) -> str:
    d = row.to_json()
    return _csv_line(["" if d[k] is None else d[k] for k in MANIFEST_FIELDS])


def read_manifest(out_root: str | Path) -> list[dict[str, Any]]:
    """Rows of ``out_root/manifest.jsonl`` (as written; a torn last line is ignored)."""
    rows = []
    for line in (Path(out_root) / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows


# --------------------------------------------------------------------------- progress


class Progress:
    """Progress bar with ETA on a terminal; one log line per study otherwise."""

    def __init__(self, total: int, *, stream: IO[str] | None = None, tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = total
        self.done = 0
        self.counts = {s: 0 for s in Status}
        self.t0 = time.monotonic()
        if self.tty and total:
            self._draw()

    def update(self, row: ManifestRow) -> None:
        self.done += 1
        self.counts[row.status] += 1
        if self.tty:
            self._draw()
        else:
            dur = "" if row.duration_s is None else f" ({row.duration_s:.1f} s)"
            why = f": {row.reason}" if row.reason else ""
            log.info("[%d/%d] %s %s%s%s", self.done, self.total, row.status.value, row.input, dur, why)

    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return (time.monotonic() - self.t0) / self.done * (self.total - self.done)

    def _draw(self) -> None:
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        eta = self.eta_s()
        c = self.counts
        text = (
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            f"  ok {c[Status.OK]}  failed {c[Status.FAILED]}  skipped {c[Status.SKIPPED]}"
            f"  ETA {'--' if eta is None else format_duration(eta)}   "
        )
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


def format_duration(seconds: float) -> str:
    """``"1h02m"``, ``"3m05s"`` or ``"12s"``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


# --------------------------------------------------------------------------- the run


@contextlib.contextmanager
def _lock(out_root: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(out_root / ".dmx-batch.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(out_root, "another 'dmx batch' is writing to this folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def clean_stale(out_root: Path) -> int:
    """Remove temporary folders left by a crashed run; restore a replaced folder whose successor is missing.

    Returns the number of entries cleaned.
    """
    n = 0
    for entry in sorted(out_root.iterdir()):
        name = entry.name
        if name.startswith(".tmp-") and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            n += 1
        elif name.startswith(".old-") and entry.is_dir():
            key = name[len(".old-") :].rsplit("-", 1)[0]
            if not (out_root / key).exists():
                os.replace(entry, out_root / key)
            else:
                shutil.rmtree(entry, ignore_errors=True)
            n += 1
    return n


def run_batch(
    inbox: str | Path,
    out_root: str | Path,
    *,
    jobs: int = 1,
    force: bool = False,
    executor: str = "local",
    scheduler: str | None = None,
    mm_per_px: float | None = None,
    analyzer: str | None = None,
    progress_stream: IO[str] | None = None,
) -> BatchResult:
    """Analyse every study under ``inbox`` into ``out_root``; resumable.

    Parameters
    ----------
    inbox : path
        Folder of studies in any layout.
    out_root : path
        Output folder (created). Must not be a study folder of the inbox.
    jobs : int
        Parallel worker processes (local executor), or local Dask workers
        when ``executor="dask"`` and no ``scheduler`` is given.
    force : bool
        Redo studies whose outputs exist for the same input checksum.
    executor : {"local", "dask"}
        ``"local"``: a ``ProcessPoolExecutor``; ``"dask"``: a Dask distributed
        cluster (``scheduler`` address, workers sharing ``out_root``'s file system).
    scheduler : str, optional
        Dask scheduler address, e.g. ``"tcp://10.0.0.5:8786"``.
    mm_per_px : float, optional
        Calibration override for every study.
    analyzer : str, optional
        ``"module:function"`` per-study analysis (default :data:`DEFAULT_ANALYZER`).
    progress_stream : file, optional
        Where the progress bar goes (default stderr; a bar only on a terminal).

    Returns
    -------
    BatchResult
        Every manifest row; ``exit_code`` is 0 when nothing failed.

    Raises
    ------
    InputError, UsageError
        Bad inbox, output folder or options. ``KeyboardInterrupt`` propagates
        after the manifest has been completed with "interrupted" rows.
    """
    t0 = time.monotonic()
    inbox, out_root = Path(inbox), Path(out_root)
    if not inbox.is_dir():
        raise InputError(inbox, "inbox folder not found" if not inbox.exists() else "not a folder")
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    if executor not in ("local", "dask"):
        raise UsageError(f"--executor must be 'local' or 'dask', got {executor!r}")
    if scheduler and executor != "dask":
        raise UsageError("--scheduler needs --executor dask")
    analyzer = analyzer or DEFAULT_ANALYZER
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = "exists and is not a folder" if out_root.exists() else exc.strerror
        raise InputError(out_root, f"cannot create the output folder: {problem}") from None
    with _lock(out_root):
        if n := clean_stale(out_root):
            log.info("removed %d unfinished folder(s) left by an earlier run", n)
        studies, unusable = discover_inputs(inbox, exclude=[out_root])
        studies = _with_checksums(studies, jobs=jobs)
        manifest = ManifestWriter(out_root)
        rows: list[ManifestRow] = []
        for u in unusable:
            sha = _safe_sha(u.path)
            row = ManifestRow(u.label, "file", 1, u.status, u.reason, None, sha, "", "", _now())
            rows.append(row)
            manifest.add(row)
        primaries: list[StudyJob] = []
        first: dict[str, StudyJob] = {}
        for s in studies:
            if s.fingerprint in first:
                orig = first[s.fingerprint]
                row = _row(s, Status.SKIPPED, f"duplicate of {orig.label}", duration_s=None, output=orig.key)
                rows.append(row)
                manifest.add(row)
            else:
                first[s.fingerprint] = s
                primaries.append(s)
        log.info(
            "%d stud%s found under %s (%d duplicate, %d other file%s)",
            len(studies),
            "y" if len(studies) == 1 else "ies",
            inbox,
            len(studies) - len(primaries),
            len(unusable),
            "" if len(unusable) == 1 else "s",
        )
        progress = Progress(len(primaries), stream=progress_stream)
        finished: set[str] = set()

        def on_row(study: StudyJob, row: ManifestRow) -> None:
            finished.add(study.key)
            rows.append(row)
            manifest.add(row)
            progress.update(row)

        kwargs = {"force": force, "mm_per_px": mm_per_px, "analyzer": analyzer}
        interrupted = False
        try:
            if executor == "local":
                _run_local(primaries, out_root, jobs=jobs, kwargs=kwargs, on_row=on_row)
            else:
                _run_dask(primaries, out_root, scheduler=scheduler, jobs=jobs, kwargs=kwargs, on_row=on_row)
            clean_stale(out_root)  # every worker is done: what is left of crashed ones goes
        except KeyboardInterrupt:
            interrupted = True
            for s in primaries:
                if s.key not in finished:
                    row = _row(s, Status.FAILED, "interrupted before it finished", duration_s=None)
                    rows.append(row)
                    manifest.add(row)
            raise
        finally:
            progress.close()
            rows = _point_duplicates(rows, first)
            manifest.finish(rows)
            result = BatchResult(
                tuple(sorted(rows, key=lambda r: r.input)),
                time.monotonic() - t0,
                manifest.csv_path,
                manifest.jsonl_path,
                interrupted,
            )
            _log_summary(result)
    return result


def _point_duplicates(rows: list[ManifestRow], first: dict[str, StudyJob]) -> list[ManifestRow]:
    """A duplicate's output is its original's, once that is known (none when the original failed)."""
    output = {r.input: r.output for r in rows}
    by_label = {s.label for s in first.values()}
    out = []
    for r in rows:
        if r.reason.startswith("duplicate of ") and r.reason[len("duplicate of ") :] in by_label:
            r = replace(r, output=output.get(r.reason[len("duplicate of ") :], ""))
        out.append(r)
    return out


def _log_summary(result: BatchResult) -> None:
    dup = sum(r.reason.startswith("duplicate of ") for r in result.rows)
    unchanged = sum(r.reason.startswith("unchanged since ") for r in result.rows)
    other = result.count(Status.SKIPPED) - dup - unchanged
    log.info(
        "%s%d ok, %d failed, %d skipped (%d unchanged, %d duplicate, %d not a study) in %s; manifest: %s",
        "interrupted: " if result.interrupted else "",
        result.count(Status.OK),
        result.count(Status.FAILED),
        result.count(Status.SKIPPED),
        unchanged,
        dup,
        other,
        format_duration(result.elapsed_s),
        result.manifest_csv,
    )


def _safe_sha(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return ""


def _detector_sha256() -> str:
    """Checksum of the detector's model file ("" when there is none)."""
    from dmx.detect import model_file

    try:
        return file_sha256(model_file())
    except (FileNotFoundError, OSError):
        return ""


def _with_checksums(studies: list[StudyJob], *, jobs: int) -> list[StudyJob]:
    detector = _detector_sha256() if any(s.landmarks_path is None for s in studies) else ""

    def one(s: StudyJob) -> StudyJob:
        lm = file_sha256(s.landmarks_path) if s.landmarks_path is not None else ""
        det = detector if s.landmarks_path is None else ""
        return replace(s, sha256=input_checksum(s.paths), landmarks_sha256=lm, detector_sha256=det)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, studies))


def _run_local(
    studies: list[StudyJob],
    out_root: Path,
    *,
    jobs: int,
    kwargs: dict[str, Any],
    on_row: Callable[[StudyJob, ManifestRow], None],
) -> None:
    """Run in a process pool, ``jobs`` studies in flight; survive worker crashes.

    When a worker process dies (segfault, ``os._exit``, out-of-memory kill), every
    study in flight at that moment is re-run alone in a fresh process: the one
    that crashes again is marked failed, the others finish normally.
    """
    if _MP.get_start_method() == "forkserver":
        _MP.set_forkserver_preload(["dmx.batch", "numpy", "pydicom"])  # each worker starts warm
    started = _now()
    pending = deque(studies)
    suspects: list[StudyJob] = []
    while pending:
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=_MP)
        in_flight: dict[Any, StudyJob] = {}
        broken = False
        try:
            while (pending or in_flight) and not broken:
                while pending and len(in_flight) < jobs:
                    s = pending.popleft()
                    try:
                        in_flight[pool.submit(run_study, s, out_root, **kwargs)] = s
                    except BrokenProcessPool:  # broke before we saw it: s never started
                        pending.appendleft(s)
                        broken = True
                        break
                if broken:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for fut in done:
                    s = in_flight.pop(fut)
                    try:
                        on_row(s, fut.result())
                    except BrokenProcessPool:
                        broken = True
                        suspects.append(s)
            if in_flight:  # the pool broke: keep what finished, suspect the rest
                wait(in_flight, timeout=30)
                for fut, s in in_flight.items():
                    if fut.done() and not fut.cancelled() and fut.exception() is None:
                        on_row(s, fut.result())
                    else:
                        suspects.append(s)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True, cancel_futures=True)
        if broken and jobs == 1 and len(suspects) == 1:
            s = suspects.pop()
            on_row(s, _crashed_row(s, out_root))
    for s in suspects:
        since = previous_success(out_root / s.key, _fingerprint(s, kwargs.get("analyzer", DEFAULT_ANALYZER)))
        if since is not None and since[:1].isdigit() and since >= started:  # finished; its result got lost
            on_row(s, _row(s, Status.OK, "", duration_s=None))
            continue
        with ProcessPoolExecutor(max_workers=1, mp_context=_MP) as pool:
            try:
                row = pool.submit(run_study, s, out_root, **kwargs).result()
            except BrokenProcessPool:
                row = _crashed_row(s, out_root)
        on_row(s, row)


def _crashed_row(study: StudyJob, out_root: Path) -> ManifestRow:
    for tmp in out_root.glob(f".tmp-{study.key}-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    return _row(
        study, Status.FAILED, "the worker process crashed while analysing this study", duration_s=None
    )


def _run_dask(
    studies: list[StudyJob],
    out_root: Path,
    *,
    scheduler: str | None,
    jobs: int,
    kwargs: dict[str, Any],
    on_row: Callable[[StudyJob, ManifestRow], None],
) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise UsageError("--executor dask needs Dask distributed: pip install 'dmx[dask]'") from None
    if not studies:
        return
    for name in ("distributed", "dask"):  # their INFO chatter would drown the per-study lines
        logging.getLogger(name).setLevel(logging.WARNING)
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="30s")
        else:
            cluster = LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None
            )
            client = Client(cluster)
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        futures = {
            client.submit(run_study, s, out_root, key=f"dmx-study-{s.key}", pure=False, **kwargs): s
            for s in studies
        }
        for fut in as_completed(futures):
            s = futures[fut]
            try:
                row = fut.result()
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the worker died on this study
                row = _row(
                    s,
                    Status.FAILED,
                    _one_line(f"Dask worker failed ({type(exc).__name__}): {exc}", s.root),
                    duration_s=None,
                )
            on_row(s, row)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
