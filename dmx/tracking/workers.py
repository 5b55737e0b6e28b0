"""Worker processes that share the tracker's frames and templates: :class:`ForkedWorkers`.

The bodies of a frame are registered independently of one another (:meth:`dmx.tracking.tracker._Tracker.
fit_at`), but as dozens of small numpy calls each, which hold the GIL: threads barely overlap them. Worker
processes forked from the tracker once its templates are ready inherit the decoded frames and the
templates copy-on-write (nothing large is pickled, and the frames' pages stay shared as long as nobody
writes them); only a small job per body and frame (body, frame, predicted 3x3 pose) and the small
:class:`~dmx.tracking.register.Fit` it gives go through a pipe. The same code on the same numbers gives
the same fit to the bit in either process, so the tracks do not depend on where a body was registered.

Forking needs the ``fork`` start method (Linux, macOS): :func:`can_fork` says whether it is there. A worker
that fails or dies is not used again; its jobs are run in the calling process, so an error there is
raised as it would be without workers.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def can_fork() -> bool:
    """Whether worker processes can be forked here (the ``fork`` start method, not inside a daemon)."""
    return "fork" in multiprocessing.get_all_start_methods() and not multiprocessing.current_process().daemon


def _serve(fn: Callable[..., Any], conn: Any) -> None:
    """A worker's loop: each message is a list of argument tuples, answered by the list of ``fn`` results."""
    while True:
        try:
            calls = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if calls is None:
            return
        try:
            conn.send(("ok", [fn(*args) for args in calls]))
        except BaseException as exc:  # any failure: the caller runs these calls itself
            try:
                conn.send(("failed", type(exc).__name__))
            except (OSError, ValueError):
                return
            if isinstance(exc, KeyboardInterrupt):
                return


class ForkedWorkers:
    """``n_workers`` processes forked from this one, each running ``fn`` on the calls it is sent.

    ``fn`` and everything it reads are inherited at the fork, as they are at that moment: whatever
    ``fn`` reads must not change afterwards (the workers would not see it).

    Use :meth:`submit` to send a worker its calls, then :meth:`results` for their results, in the same
    order (run here when the worker is unavailable). :meth:`close` ends the workers (also on exit from
    a ``with`` block).
    """

    def __init__(self, fn: Callable[..., Any], n_workers: int):
        self._fn = fn
        ctx = multiprocessing.get_context("fork")
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        for _ in range(n_workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_serve, args=(fn, there), daemon=True, name="dmx-tracking-worker")
            proc.start()
            there.close()
            self._conns.append(here)
            self._procs.append(proc)
        self._alive = [True] * n_workers
        self._sent: list[Sequence[tuple[Any, ...]] | None] = [None] * n_workers

    def __len__(self) -> int:
        return len(self._procs)

    def __enter__(self) -> ForkedWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, k: int, calls: Sequence[tuple[Any, ...]]) -> None:
        """Send worker ``k`` its calls (each a tuple of ``fn``'s arguments); collect with :meth:`results`."""
        self._sent[k] = calls
        if not calls or not self._alive[k]:
            return
        try:
            self._conns[k].send(list(calls))
        except (OSError, ValueError):
            self._alive[k] = False

    def results(self, k: int) -> list[Any]:
        """The results of the calls last sent to worker ``k`` (computed here if the worker failed)."""
        calls, self._sent[k] = self._sent[k] or [], None
        if not calls:
            return []
        if self._alive[k]:
            try:
                status, value = self._conns[k].recv()
            except (EOFError, OSError):
                status, value = "failed", None
            if status == "ok":
                return value
            self._alive[k] = False  # a worker that failed once is not used again
        return [self._fn(*args) for args in calls]

    def close(self) -> None:
        """End the workers (they are idle between jobs; a stuck one is killed)."""
        for conn, proc, alive in zip(self._conns, self._procs, self._alive, strict=True):
            if alive:
                try:
                    conn.send(None)
                except (OSError, ValueError):
                    pass
            conn.close()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._conns, self._procs = [], []
