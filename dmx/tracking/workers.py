"""Worker processes that share the tracker's frames and templates: :class:`ForkedWorkers`.

The bodies of a frame are registered independently of one another (:meth:`dmx.tracking.tracker._Tracker.
fit_at`), but as dozens of small numpy calls each, which hold the GIL: threads barely overlap them. Worker
processes forked from the tracker once its templates are ready inherit the decoded frames and the
templates copy-on-write (nothing large is pickled, and the frames' pages stay shared as long as nobody
writes them); only a small job per body and frame (body, frame, predicted 3x3 pose) and the small
:class:`~dmx.tracking.register.Fit` it gives go through a pipe. The same code on the same numbers gives
the same fit to the bit in either process, so the tracks do not depend on where a body was registered.

The calls of one :meth:`ForkedWorkers.map` are shared out as they go: the workers take them from the
front of the list, the calling process from the back, each the next one not yet taken (a counter pair
under a lock in shared memory), so a worker that the machine's other jobs hold back does fewer.

:meth:`ForkedWorkers.start` sends calls without waiting (the tracker starts the workers on the next
frame while it finishes this one), :meth:`ForkedWorkers.finish` collects them. :class:`ForkedCall` runs
one function in a forked process (the report, while the other files are written).

Forking is used on Linux only (:func:`can_fork`): elsewhere a process that has used the system's
frameworks is not safe to fork (why Python starts processes afresh there), and the tracker uses
threads. A worker that fails or dies is not used again; the calls it did not answer are run in the
calling process, so an error there is raised as it would be without workers.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: The shortest wait for a worker once this process has run out of calls (seconds; see
#: :meth:`ForkedWorkers.finish`).
_MIN_PATIENCE_S = 0.005

#: How long this process waits for the lock it shares with the workers before it takes them for dead
#: (seconds): a worker killed while it held the lock would otherwise hang this process for ever.
_LOCK_WAIT_S = 10.0


class _LockLost(RuntimeError):
    """The lock shared with the workers was not released in time (a worker died holding it)."""


def can_fork() -> bool:
    """Whether worker processes can be forked here (Linux, not inside a daemonic process)."""
    return (
        sys.platform.startswith("linux")
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


def _take(lock: Any, span: Any, batch: int, *, front: bool, wait_s: float | None = None) -> int | None:
    """The next call of ``batch`` not yet taken, from the front or the back of ``span`` (next front, next
    back + 1, the batch they belong to); None when there is none (or the calls are another batch's).
    Raises :class:`_LockLost` when the lock is not free within ``wait_s`` seconds (None: wait)."""
    if not lock.acquire(timeout=wait_s):
        raise _LockLost
    try:
        if span[2] != batch or span[0] >= span[1]:
            return None
        if front:
            span[0] += 1
            return span[0] - 1
        span[1] -= 1
        return span[1]
    finally:
        lock.release()


def _serve(fn: Callable[..., Any], conn: Any, lock: Any, span: Any) -> None:
    """A worker's loop: each message is a batch number and a list of argument tuples; the worker runs the
    calls it takes (from the front) and answers with the batch number and ``(index, result)`` pairs."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message is None:
            return
        batch, calls = message
        done: list[tuple[int, Any]] = []
        try:
            while (k := _take(lock, span, batch, front=True)) is not None:
                done.append((k, fn(*calls[k])))
            conn.send((batch, "ok", done))
        except BaseException as exc:  # any failure: the caller runs the calls not answered itself
            try:
                conn.send((batch, "failed", type(exc).__name__))
            except (OSError, ValueError):
                return
            if isinstance(exc, KeyboardInterrupt):
                return


class ForkedWorkers:
    """``n_workers`` processes forked from this one, running ``fn`` on the calls of :meth:`map` with it.

    ``fn`` and everything it reads are inherited at the fork, as they are at that moment: whatever
    ``fn`` reads must not change afterwards (the workers would not see it). :meth:`close` ends the
    workers (also on exit from a ``with`` block).
    """

    def __init__(self, fn: Callable[..., Any], n_workers: int):
        self._fn = fn
        ctx = multiprocessing.get_context("fork")
        self._lock = ctx.Lock()
        # the next call from the front, one past the next from the back, the batch they belong to
        self._span = ctx.RawArray("l", 3)
        self._batch = 0
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        for _ in range(n_workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(
                target=_serve,
                args=(fn, there, self._lock, self._span),
                daemon=True,
                name="dmx-tracking-worker",
            )
            proc.start()
            there.close()
            self._conns.append(here)
            self._procs.append(proc)
        self._alive = [True] * n_workers
        self._calls: list[tuple[Any, ...]] | None = None  # started, not finished
        self._busy: list[int] = []  # the workers sent them

    def __len__(self) -> int:
        """The workers still in use."""
        return sum(self._alive)

    def __enter__(self) -> ForkedWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(self, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``[fn(*args) for args in calls]``, run by the workers and by this process together."""
        self.start(calls, min_calls=2)  # one call: run here, no round trip
        return self.finish()

    def start(self, calls: Sequence[tuple[Any, ...]], *, min_calls: int = 1) -> None:
        """Send the workers ``calls`` (when there are at least ``min_calls``) and return at once: they take
        them from the front while this process does something else, until :meth:`finish`."""
        if self._calls is not None:
            raise RuntimeError("ForkedWorkers.start: the calls started before are not finished")
        self._calls = calls = list(calls)
        self._batch += 1
        self._busy = []
        if not any(self._alive):
            return
        if not self._lock.acquire(timeout=_LOCK_WAIT_S):
            self._give_up()
            return
        try:
            self._span[0], self._span[1], self._span[2] = 0, len(calls), self._batch
        finally:
            self._lock.release()
        for k, conn in enumerate(self._conns):
            if self._alive[k] and len(calls) >= max(min_calls, 1):
                try:
                    conn.send((self._batch, calls))
                    self._busy.append(k)
                except (OSError, ValueError):
                    self._alive[k] = False

    def finish(self) -> list[Any]:
        """The results of the calls of :meth:`start`, in order: this process takes the calls left from
        the back, then collects the workers' (and runs here any that a failed worker took).

        A worker still busy well after this process ran out of calls (longer than twice its longest
        call here: the machine's other jobs hold it back) is not waited for: the calls it took are run
        here, and its late answer is dropped (by its batch number) when it comes.
        """
        calls, self._calls = self._calls or [], None
        if not self._busy and not any(self._alive):
            return [self._fn(*args) for args in calls]  # no worker left: every call here, in order
        results: list[Any] = [None] * len(calls)
        answered = [False] * len(calls)
        # an error here is raised once the workers have answered
        failure: BaseException | None = None
        longest_s = 0.0
        try:
            while (
                i := _take(self._lock, self._span, self._batch, front=False, wait_s=_LOCK_WAIT_S)
            ) is not None:
                t0 = time.perf_counter()
                results[i], answered[i] = self._fn(*calls[i]), True
                longest_s = max(longest_s, time.perf_counter() - t0)
        except _LockLost:
            self._give_up()  # the calls not answered are run here below
        except BaseException as exc:
            failure = exc
            if self._lock.acquire(timeout=_LOCK_WAIT_S):  # nothing more to take
                self._span[0] = self._span[1]
                self._lock.release()
            else:
                self._give_up()
        patience_s = max(2.0 * longest_s, _MIN_PATIENCE_S)
        for k in self._busy:
            status, value = self._answer(k, patience_s if failure is None else None)
            if status == "late":
                continue
            if status != "ok":
                self._alive[k] = False  # a worker that failed once is not used again
                continue
            for i, found in value:
                results[i], answered[i] = found, True
        self._busy = []
        if failure is not None:
            raise failure
        for i, args in enumerate(calls):  # taken by a worker that failed
            if not answered[i]:
                results[i] = self._fn(*args)
        return results

    def _give_up(self) -> None:
        """The lock shared with the workers is lost (one died holding it): end them all, use none again."""
        for k, proc in enumerate(self._procs):
            if self._alive[k]:
                proc.kill()
            self._alive[k] = False
        self._busy = []

    def _answer(self, k: int, patience_s: float | None) -> tuple[str, Any]:
        """Worker ``k``'s answer to the current batch (older, late ones dropped): ``(status, value)``,
        status ``"late"`` when none came within ``patience_s`` (None: wait as long as it takes)."""
        conn = self._conns[k]
        while True:
            try:
                if patience_s is not None and not conn.poll(patience_s):
                    return "late", None
                batch, status, value = conn.recv()
            except (EOFError, OSError):
                return "failed", None
            if batch == self._batch:
                return status, value

    def close(self) -> None:
        """End the workers (they are idle between calls; a stuck one is killed)."""
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
        self._conns, self._procs, self._alive = [], [], []


class ForkedCall:
    """``fn()`` run in a process forked now, while this one goes on; :meth:`result` waits for it.

    Where processes cannot be forked (:func:`can_fork`), or the forked one fails or dies, :meth:`result`
    runs ``fn()`` here instead, so its error is raised here as without the fork. ``fn``'s return value
    must be picklable (it comes back through a pipe).
    """

    def __init__(self, fn: Callable[[], Any]):
        self._fn = fn
        self._proc: Any = None
        if can_fork():
            ctx = multiprocessing.get_context("fork")
            self._conn, there = ctx.Pipe(duplex=False)
            self._proc = ctx.Process(
                target=_call_once, args=(fn, there, self._conn), daemon=True, name="dmx-worker"
            )
            self._proc.start()
            there.close()

    def join(self) -> None:
        """Wait for the forked process to end, and drop its result (nothing is run here)."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            self._conn.close()
            proc.join()

    def result(self) -> Any:
        """``fn()``'s result, from the forked process or computed here."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                status, value = self._conn.recv()
            except (EOFError, OSError):
                status, value = "failed", None
            self._conn.close()
            proc.join()
            if status == "ok":
                return value
        return self._fn()


def _call_once(fn: Callable[[], Any], conn: Any, reader: Any = None) -> None:
    """A :class:`ForkedCall`'s process: ``fn()``'s result, or that it failed, sent back. ``reader``, the
    pipe's end the caller reads (inherited by the fork), is closed here first: once the caller closes
    its own (:meth:`ForkedCall.join`), sending a result larger than the pipe's buffer then fails
    instead of waiting for ever."""
    if reader is not None:
        reader.close()
    try:
        conn.send(("ok", fn()))
    except BaseException as exc:  # the caller runs fn itself, and raises its error there
        try:
            conn.send(("failed", type(exc).__name__))
        except (OSError, ValueError):
            pass
