"""Executors: where :func:`~dmx.batch.study.run_study` runs, one call per study.

``local``: a pool of worker processes on this machine that survives a worker
crashing. ``dask``: a Dask distributed cluster whose workers share the output
folder's file system.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from dmx.batch.jobs import Status, StudyJob
from dmx.batch.manifest import ManifestRow, one_line, study_row
from dmx.batch.outputs import remove_temporary
from dmx.batch.study import run_study
from dmx.errors import ParameterError, UsageError

#: Called with each study and its manifest row as soon as the study is done.
OnRow = Callable[[StudyJob, ManifestRow], None]

#: Worker processes start from a clean server process, never by forking this one
#: (forking a process with threads can deadlock; the same on every Python version).
_MP = multiprocessing.get_context(
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


#: Set in the environment of the server process the workers are forked from: Python
#: (3.11+) then puts no current folder on its ``sys.path`` (see :func:`_start_server`).
_SAFE_PATH = "PYTHONSAFEPATH"


# --------------------------------------------------------------------------- local worker processes


def run_local(
    studies: list[StudyJob], out_root: Path, *, jobs: int, kwargs: dict[str, Any], on_row: OnRow
) -> None:
    """Run in a process pool, ``jobs`` studies in flight; survive worker crashes.

    When a worker process dies (segfault, ``os._exit``, out-of-memory kill), every
    study in flight at that moment is re-run alone in a fresh process: the one
    that crashes again is marked failed, the others finish normally.
    """
    _start_server()
    pending = deque(studies)
    suspects: list[StudyJob] = []
    while pending:
        broken = _run_pool(pending, suspects, out_root, jobs=jobs, kwargs=kwargs, on_row=on_row)
        if broken and jobs == 1 and len(suspects) == 1:  # it ran alone: it is the one that crashed
            s = suspects.pop()
            on_row(s, _crashed_row(s, out_root))
    for s in suspects:
        on_row(s, _rerun_alone(s, out_root, kwargs=kwargs))


def _run_pool(
    pending: deque[StudyJob],
    suspects: list[StudyJob],
    out_root: Path,
    *,
    jobs: int,
    kwargs: dict[str, Any],
    on_row: OnRow,
) -> bool:
    """Run ``pending`` studies in one pool until it is done or breaks; whether it broke.

    The studies in flight when the pool broke go to ``suspects``; those never
    started stay in ``pending``.
    """
    pool = _worker_pool(jobs)
    in_flight: dict[Future[ManifestRow], StudyJob] = {}
    broken = False
    try:
        while (pending or in_flight) and not broken:
            broken = _submit(pool, pending, in_flight, out_root, jobs=jobs, kwargs=kwargs)
            if broken:
                break
            broken = _collect_first(in_flight, suspects, on_row)
        if in_flight:  # the pool broke: keep what finished, suspect the rest
            _settle_after_break(in_flight, suspects, on_row)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)
    return broken


def _submit(
    pool: ProcessPoolExecutor,
    pending: deque[StudyJob],
    in_flight: dict[Future[ManifestRow], StudyJob],
    out_root: Path,
    *,
    jobs: int,
    kwargs: dict[str, Any],
) -> bool:
    """Keep ``jobs`` studies in flight; whether the pool turned out to be broken."""
    while pending and len(in_flight) < jobs:
        s = pending.popleft()
        try:
            in_flight[pool.submit(run_study, s, out_root, **kwargs)] = s
        except BrokenProcessPool:  # broke before we saw it: s never started
            pending.appendleft(s)
            return True
    return False


def _collect_first(
    in_flight: dict[Future[ManifestRow], StudyJob], suspects: list[StudyJob], on_row: OnRow
) -> bool:
    """Wait for the next studies to finish and report them; whether the pool broke meanwhile."""
    broken = False
    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
    for fut in done:
        s = in_flight.pop(fut)
        try:
            on_row(s, fut.result())
        except BrokenProcessPool:
            broken = True
            suspects.append(s)
    return broken


def _settle_after_break(
    in_flight: dict[Future[ManifestRow], StudyJob], suspects: list[StudyJob], on_row: OnRow
) -> None:
    """After the pool broke: report the studies that still finished, suspect the others."""
    wait(in_flight, timeout=30)
    for fut, s in in_flight.items():
        if fut.done() and not fut.cancelled() and fut.exception() is None:
            on_row(s, fut.result())
        else:
            suspects.append(s)


def _rerun_alone(s: StudyJob, out_root: Path, *, kwargs: dict[str, Any]) -> ManifestRow:
    """A study in flight when a worker crashed, re-run alone: failed if it crashes its worker again.

    If the broken pool's worker finished it after all, :func:`run_study` finds this
    run's outputs (``run_id``) and reports ``ok`` without analysing it again.
    """
    with _worker_pool(1) as pool:
        try:
            return pool.submit(run_study, s, out_root, **kwargs).result()
        except BrokenProcessPool:
            return _crashed_row(s, out_root)


def _start_server() -> None:
    """Start the server process the workers are forked from, with the batch's modules loaded.

    It is started without the current folder on its ``sys.path``: a folder named
    ``dmx`` (a clone of the repository, an old copy) where the user happens to stand
    must not stand in for the installed package in the workers.
    """
    if _MP.get_start_method() != "forkserver":
        return  # "spawn": each worker takes the batch's sys.path as it is
    from multiprocessing import forkserver

    _MP.set_forkserver_preload(["dmx.batch", "numpy", "pydicom"])  # each worker starts warm
    with _environment(_SAFE_PATH, "1"):
        forkserver.ensure_running()


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` inside the ``with`` block only (processes started in it inherit it)."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes that end when this process ends, however it ends."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_MP,
        initializer=_worker_started,
        initargs=(os.getpid(), os.environ.get(_SAFE_PATH)),
    )


def _worker_started(batch_pid: int, safe_path: str | None) -> None:
    """Initializer of each worker process: the batch's environment, and a watch on the batch.

    A thread ends the worker as soon as the batch process is gone (killed with any
    signal, the terminal closed), so no worker goes on analysing or idling for a
    batch that no longer exists. A study it was writing stays a hidden temporary
    folder, removed by the next run.
    """
    if safe_path is None:
        os.environ.pop(_SAFE_PATH, None)  # set only to start the server process
    else:
        os.environ[_SAFE_PATH] = safe_path
    try:
        pidfd: int | None = os.pidfd_open(batch_pid)
    except (AttributeError, OSError):  # not Linux 5.3+: ask every second instead
        pidfd = None
        if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would end the batch there
            return
    threading.Thread(target=_watch, args=(batch_pid, pidfd), name="dmx-batch-watch", daemon=True).start()


def _watch(batch_pid: int, pidfd: int | None) -> None:
    """Wait until the batch process has ended, then end this worker at once."""
    if pidfd is not None:
        select.select([pidfd], [], [])  # readable when the process ends
    else:
        while _alive(batch_pid):
            time.sleep(1.0)
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (POSIX: signal 0 is only a check)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _crashed_row(study: StudyJob, out_root: Path) -> ManifestRow:
    remove_temporary(out_root, study.key)
    return study_row(
        study, Status.FAILED, "the worker process crashed while analysing this study", duration_s=None
    )


# --------------------------------------------------------------------------- Dask


def run_dask(
    studies: list[StudyJob],
    out_root: Path,
    *,
    scheduler: str | None,
    jobs: int,
    kwargs: dict[str, Any],
    on_row: OnRow,
) -> None:
    """Run on the Dask cluster at ``scheduler`` (or a local one of ``jobs`` worker processes)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ParameterError("executor", "dask needs Dask distributed: pip install 'dmx[dask]'") from None
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
            on_row(s, _dask_row(s, fut))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dask_row(s: StudyJob, fut: Any) -> ManifestRow:
    """The study's row from its finished Dask future; failed when the worker died on it."""
    try:
        return fut.result()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the worker died on this study
        reason = one_line(f"Dask worker failed ({type(exc).__name__}): {exc}", s.root)
        return study_row(s, Status.FAILED, reason, duration_s=None)
