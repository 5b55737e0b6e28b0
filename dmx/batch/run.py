"""The run: every study of an inbox analysed into an output folder, resumably, with a manifest."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from dmx.batch import study as _study
from dmx.batch.discovery import discover_inputs
from dmx.batch.executors import run_dask, run_local
from dmx.batch.jobs import Status, StudyJob, Unusable, unusable_sha256, with_checksums
from dmx.batch.lock import output_lock
from dmx.batch.manifest import ManifestRow, ManifestWriter, study_row, utc_now
from dmx.batch.outputs import clean_stale
from dmx.batch.progress import Progress, format_duration
from dmx.errors import InputError, ParameterError

log = logging.getLogger("dmx.batch")

_DUPLICATE_OF = "duplicate of "


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
    config: str | Path | None = None,
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
        ``"module:function"`` per-study analysis (default
        :data:`dmx.batch.study.DEFAULT_ANALYZER`).
    config : path, optional
        Thresholds TOML file for every study (as ``dmx analyze --config``), with the
        normative table its ``[normative] file`` names. A run with other settings than
        the earlier one (thresholds, ``mm_per_px``) redoes the studies.
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
    _check_request(inbox, jobs=jobs, executor=executor, scheduler=scheduler)
    _study.check_settings(mm_per_px=mm_per_px, config=config)  # one error now, not one per study
    kwargs = {
        "force": force,
        "mm_per_px": mm_per_px,
        "analyzer": analyzer or _study.DEFAULT_ANALYZER,
        "run_id": uuid.uuid4().hex,  # outputs installed by this run are told apart from earlier ones
    }
    if config is not None:
        kwargs["config"] = str(Path(config).resolve())  # workers may stand elsewhere
    _make_output_folder(out_root)
    with output_lock(out_root):
        if n := clean_stale(out_root):
            log.info("removed %d unfinished folder(s) left by an earlier run", n)
        studies, unusable = discover_inputs(inbox, exclude=[out_root])
        studies = with_checksums(studies, jobs=jobs)
        ledger = _Ledger(ManifestWriter(out_root))
        for u in unusable:
            ledger.add(_unusable_row(u))
        primaries, first = _set_duplicates_aside(studies, ledger)
        _log_found(inbox, primaries, ledger.rows)
        ledger.progress = Progress(len(primaries), stream=progress_stream)
        try:
            if executor == "local":
                run_local(primaries, out_root, jobs=jobs, kwargs=kwargs, on_row=ledger.finished)
            else:
                run_dask(
                    primaries, out_root, scheduler=scheduler, jobs=jobs, kwargs=kwargs, on_row=ledger.finished
                )
            clean_stale(out_root)  # every worker is done: what is left of crashed ones goes
        except KeyboardInterrupt:
            ledger.interrupt(primaries)
            raise
        finally:
            result = ledger.close(first, elapsed_s=time.monotonic() - t0)
            _log_summary(result)
    return result


def _check_request(inbox: Path, *, jobs: int, executor: str, scheduler: str | None) -> None:
    """Refuse a missing inbox and bad options before anything is written."""
    if not inbox.is_dir():
        raise InputError(inbox, "inbox folder not found" if not inbox.exists() else "not a folder")
    if jobs < 1:
        raise ParameterError("jobs", f"must be at least 1, got {jobs}")
    if executor not in ("local", "dask"):
        raise ParameterError("executor", f"must be 'local' or 'dask', got {executor!r}")
    if scheduler and executor != "dask":
        raise ParameterError("scheduler", "is only used with executor 'dask'")


def _make_output_folder(out_root: Path) -> None:
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = "exists and is not a folder" if out_root.exists() else exc.strerror
        raise InputError(out_root, f"cannot create the output folder: {problem}") from None


@dataclass
class _Ledger:
    """Every manifest row of the run as it comes: kept, written to the manifest, shown as progress."""

    manifest: ManifestWriter
    progress: Progress | None = None
    rows: list[ManifestRow] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    interrupted: bool = False

    def add(self, row: ManifestRow) -> None:
        self.rows.append(row)
        self.manifest.add(row)

    def finished(self, study: StudyJob, row: ManifestRow) -> None:
        """A study analysed (or failed, or unchanged): its row, and one step of progress.

        A study reported twice (its result lost in a worker crash, then found done)
        keeps one row, the later one.
        """
        if study.key in self.done:
            self.rows = [r for r in self.rows if r.input != study.label]
            self.add(row)
            return
        self.done.add(study.key)
        self.add(row)
        if self.progress is not None:
            self.progress.update(row)

    def interrupt(self, studies: list[StudyJob]) -> None:
        """Ctrl-C: every study not finished gets a failed row."""
        self.interrupted = True
        for s in studies:
            if s.key not in self.done:
                self.add(study_row(s, Status.FAILED, "interrupted before it finished", duration_s=None))

    def close(self, first: dict[str, StudyJob], *, elapsed_s: float) -> BatchResult:
        """Rewrite the manifest complete and sorted; what the run did."""
        if self.progress is not None:
            self.progress.close()
        rows = _point_duplicates(self.rows, first)
        self.manifest.finish(rows)
        return BatchResult(
            tuple(sorted(rows, key=lambda r: r.input)),
            elapsed_s,
            self.manifest.csv_path,
            self.manifest.jsonl_path,
            self.interrupted,
        )


def _unusable_row(u: Unusable) -> ManifestRow:
    sha = unusable_sha256(u.path)
    return ManifestRow(u.label, "file", 1, u.status, u.reason, None, sha, "", "", utc_now())


def _set_duplicates_aside(
    studies: list[StudyJob], ledger: _Ledger
) -> tuple[list[StudyJob], dict[str, StudyJob]]:
    """The studies to analyse (the first of each fingerprint) and, by fingerprint, that first one.

    Each later copy (same images, same landmarks) gets a skipped "duplicate of" row.
    """
    primaries: list[StudyJob] = []
    first: dict[str, StudyJob] = {}
    for s in studies:
        if s.fingerprint in first:
            orig = first[s.fingerprint]
            reason = f"{_DUPLICATE_OF}{orig.label}"
            ledger.add(study_row(s, Status.SKIPPED, reason, duration_s=None, output=orig.key))
        else:
            first[s.fingerprint] = s
            primaries.append(s)
    return primaries, first


def _point_duplicates(rows: list[ManifestRow], first: dict[str, StudyJob]) -> list[ManifestRow]:
    """A duplicate's output is its original's, once that is known (none when the original failed)."""
    output = {r.input: r.output for r in rows}
    by_label = {s.label for s in first.values()}
    out = []
    for r in rows:
        if r.reason.startswith(_DUPLICATE_OF) and r.reason[len(_DUPLICATE_OF) :] in by_label:
            r = replace(r, output=output.get(r.reason[len(_DUPLICATE_OF) :], ""))
        out.append(r)
    return out


def _is_duplicate(reason: str) -> bool:
    """A copy of another input: ``duplicate of <label>`` (same images and landmarks) or, from
    :mod:`dmx.io.discover`, ``duplicate: same SOP Instance UID as <file>``."""
    return reason.startswith("duplicate")


def _log_found(inbox: Path, primaries: list[StudyJob], rows: list[ManifestRow]) -> None:
    """What is to be done: the studies to analyse, and the inputs already set aside (``rows``)."""
    duplicates = sum(_is_duplicate(r.reason) for r in rows)
    log.info(
        "%d stud%s to analyse under %s (%d duplicate, %d other file%s)",
        len(primaries),
        "y" if len(primaries) == 1 else "ies",
        inbox,
        duplicates,
        len(rows) - duplicates,
        "" if len(rows) - duplicates == 1 else "s",
    )


def _log_summary(result: BatchResult) -> None:
    dup = sum(_is_duplicate(r.reason) for r in result.rows)
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
