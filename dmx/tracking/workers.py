"""Processes forked to share the tracking frames and templates: :class:`ForkedChains`, :class:`ForkedWorkers`.

The bodies of a frame are registered independently of one another (:meth:`dmx.tracking.tracker._Tracker.
fit_at`), but as dozens of small numpy calls each, which hold the GIL: threads barely overlap them. Worker
processes forked from the tracker once its templates are ready inherit the decoded frames and the
templates copy-on-write (nothing large is pickled, and the frames' pages stay shared as long as nobody
writes them); only a small job per body and frame (body, frame, predicted 3x3 pose) and the small
:class:`~dmx.tracking.register.Fit` it gives go through a pipe. The same code on the same numbers gives
the same fit to the bit in either process, so the tracks do not depend on where a body was registered.

The tracker's passes use :class:`ForkedChains`: each worker runs chains of calls, a body frame after
frame from the poses its own fits give, up to a few frames ahead of the calling process, which judges the
fits and uses a worker's only when it started from the pose it predicts itself (the fits of a frame no
longer wait for the judgement of the frame before: neither side waits for the other on every frame).

The calls of one :meth:`ForkedWorkers.map` (the still-layer screen after the passes) are shared out as
they go: the workers take them from the front of the list, the calling process from the back, each the
next one not yet taken (a counter pair under a lock in shared memory), so a worker that the machine's
other jobs hold back does fewer. :meth:`ForkedWorkers.start` sends calls without waiting,
:meth:`ForkedWorkers.finish` collects them. :class:`ForkedCall` runs
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


@contextmanager
def _opencv_serial() -> Iterator[None]:
    """OpenCV's own thread pool stopped while processes are forked, restored after.

    A process forked while a thread of OpenCV's pool (pthreads) holds the pool's lock inherits the lock
    held and no thread to release it: its first parallel OpenCV call blocks for good (seen once under
    heavy load, in ``cv2.pyrDown``; opencv/opencv#5150). With one thread OpenCV joins its pool's threads,
    and a process forked then runs OpenCV's loops in its own thread (it inherits the setting) and never
    touches the pool. Nothing to do while OpenCV is not imported (a child imports its own)."""
    cv2 = sys.modules.get("cv2")
    if cv2 is None:
        yield
        return
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


def _fork(
    ctx: Any, n_workers: int, target: Callable[..., None], args: Callable[[Any], tuple[Any, ...]]
) -> tuple[list[Any], list[Any]]:
    """``n_workers`` daemon processes forked from this one (with OpenCV's pool stopped,
    :func:`_opencv_serial`), each running ``target(*args(conn))`` with ``conn`` its end of a pipe; this
    process's ends of the pipes and the processes."""
    conns, procs = [], []
    with _opencv_serial():
        for _ in range(n_workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=target, args=args(there), daemon=True, name="dmx-tracking-worker")
            proc.start()
            there.close()
            conns.append(here)
            procs.append(proc)
    return conns, procs


def _end(conns: list[Any], procs: list[Any], alive: list[bool]) -> None:
    """Ask the live workers to end (``None`` on their pipe), close the pipes, wait for each at most 5 s,
    then kill it."""
    for conn, proc, live in zip(conns, procs, alive, strict=True):
        if live:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        conn.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()


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
        lock, span = self._lock, self._span
        self._conns, self._procs = _fork(ctx, n_workers, _serve, lambda conn: (fn, conn, lock, span))
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
        _end(self._conns, self._procs, self._alive)
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
            with _opencv_serial():
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


#: How long this process waits for a chain's next result (seconds) before it runs the call itself and
#: takes the chain back (:meth:`ForkedChains.get`): a worker the machine's other jobs hold back, or one
#: that hangs, is not waited for.
_CHAIN_PATIENCE_S = 0.25

#: A worker that lets this many waits of ``_CHAIN_PATIENCE_S`` in a row pass without a single answer is
#: taken for stuck, ended and not used again (its calls are run here, the tracks the same): a late worker
#: answers again soon, a stuck one never does and would cost every chain given to it a wait. Seen once
#: under heavy load: a forked worker blocked for good inside OpenCV (``cv2.pyrDown``, after the parent
#: had used OpenCV's thread pool: opencv/opencv#5150), which forking with the pool stopped
#: (:func:`_opencv_serial`) now prevents; the guard stays for whatever else may stall a worker.
_CHAIN_MISSES = 8

#: The share of the time since the last :meth:`ForkedChains.shift` that this process waited for the
#: workers (or they sat idle) beyond which one chain moves to the other side.
_SHIFT_SHARE = 0.05


def _run_chains(step: Callable[[Any, Any, Any], tuple[Any, Any]], conn: Any, ahead: int) -> None:
    """A :class:`ForkedChains` worker's loop: it advances its chains one call at a time, always the one
    furthest behind (the earliest position, then the smallest key), never more than ``ahead`` positions
    beyond the one the caller is at, and sends each result as soon as it has it; between calls it reads
    the caller's messages (``("pass", order)``, ``("chain", key, gen, state, pos)``, ``("drop", key)``,
    ``("ack", pos)``, None to end). Answers: ``("ok", key, gen, pos, result, goes_on, idle_s)``, ``idle_s``
    the seconds it has waited with nothing to do; ``("failed", error name)`` ends it."""
    chains: dict[Any, tuple[Any, int, int]] = {}  # key -> (state, next position, generation)
    order: list[Any] = []
    acked = -1
    idle_s = 0.0

    def handle(message: Any) -> bool:
        nonlocal order, acked
        if message is None:
            return False
        kind = message[0]
        if kind == "pass":
            order, acked = list(message[1]), -1
            chains.clear()
        elif kind == "chain":
            _, key, gen, state, pos = message
            chains[key] = (state, pos, gen)
        elif kind == "drop":
            chains.pop(message[1], None)
        elif kind == "ack":
            acked = message[1]
        return True

    while True:
        try:
            while conn.poll():
                if not handle(conn.recv()):
                    return
            ready = [(c[1], key) for key, c in chains.items() if c[1] < len(order) and c[1] <= acked + ahead]
            if not ready:
                t0 = time.perf_counter()
                message = conn.recv()
                idle_s += time.perf_counter() - t0
                if not handle(message):
                    return
                continue
        except (EOFError, OSError, KeyboardInterrupt):
            return
        pos, key = min(ready)
        state, _, gen = chains[key]
        try:
            result, following = step(key, state, order[pos])
        except BaseException as exc:  # the caller runs the chains itself; this worker is not used again
            try:
                conn.send(("failed", type(exc).__name__))
            except (OSError, ValueError):
                pass
            return
        if following is None:
            del chains[key]
        else:
            chains[key] = (following, pos + 1, gen)
        try:
            conn.send(("ok", key, gen, pos, result, following is not None, idle_s))
        except (OSError, ValueError):
            return


class ForkedChains:
    """Chains of calls that worker processes forked from this one run ahead of it, one chain per key.

    A chain of ``key`` from ``state`` at position ``pos`` of the pass's ``order`` is ``result, state2 =
    step(key, state, order[pos])``, then ``step(key, state2, order[pos + 1])``, ... until ``step``
    returns None for the next state (or the order ends). The tracker's chains are the bodies: each
    body's next frame is registered from the pose its fit on this frame gives, as if that fit were
    accepted, while this process judges the frame (:func:`dmx.tracking.track` with ``processes``).
    Unlike :class:`ForkedWorkers`, which this process had to wait for on every frame, the workers here
    wait for nothing but a bound of ``ahead`` positions beyond the one this process is at
    (:meth:`advance`): what they run ahead that this process cannot use (a body whose fit it did not
    accept as it was) is dropped, by the caller's check that the call is the one it wants.

    Each key is run by one worker (:meth:`chain`; :meth:`drop` takes it back). :meth:`get` waits for a
    result, up to ``_CHAIN_PATIENCE_S``; a worker that fails or dies, or lets ``_CHAIN_MISSES`` such waits
    in a row pass without an answer (stuck), is not used again, and :meth:`get` answers ``(False, None)``
    for its keys: the caller runs those calls itself. :meth:`shift` says
    whether this process should give the workers a chain more (they waited) or take one back (it
    waited for them). ``step`` and everything it reads are inherited at the fork (see
    :class:`ForkedWorkers`).
    """

    def __init__(self, step: Callable[[Any, Any, Any], tuple[Any, Any]], n_workers: int, *, ahead: int = 3):
        ctx = multiprocessing.get_context("fork")
        self._conns, self._procs = _fork(ctx, n_workers, _run_chains, lambda conn: (step, conn, ahead))
        self._alive = [True] * n_workers
        self._owner: dict[Any, int] = {}  # the live chains' keys -> their worker
        self._gens: dict[Any, int] = {}  # ... and generation (answers of an older one are dropped)
        self._gen = 0
        self._results: dict[tuple[Any, int], Any] = {}
        self._last: dict[Any, int] = {}  # a chain that ended: its last position
        self._idle_s = [0.0] * n_workers  # as the workers last said
        self._misses = [0] * n_workers  # waits in a row each worker let pass without an answer
        self.waited_s = 0.0  # this process, for results
        self._shift_at = (time.perf_counter(), 0.0, 0.0)

    def __len__(self) -> int:
        """The workers still in use."""
        return sum(self._alive)

    def __enter__(self) -> ForkedChains:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def keys(self) -> set[Any]:
        """The keys whose chains the workers run."""
        return set(self._owner)

    def goes_on(self, key: Any) -> bool:
        """Whether ``key``'s chain runs and has not ended (as far as this process has read)."""
        return key in self._owner and key not in self._last

    def begin(self, order: Sequence[Any]) -> None:
        """A new pass along ``order``: every chain ends (start them with :meth:`chain`)."""
        self._owner.clear()
        self._gens.clear()
        self._results.clear()
        self._last.clear()
        for k in range(len(self._conns)):
            self._send(k, ("pass", list(order)))

    def chain(self, key: Any, state: Any, pos: int) -> bool:
        """Start (or restart) ``key``'s chain from ``state`` at position ``pos``; False when no worker is
        left."""
        self.drop(key)
        alive = [k for k in range(len(self._conns)) if self._alive[k]]
        if not alive:
            return False
        load = {k: 0 for k in alive}
        for k in self._owner.values():
            load[k] += 1
        k = min(alive, key=lambda j: (load[j], j))
        self._gen += 1
        if not self._send(k, ("chain", key, self._gen, state, pos)):
            return False
        self._owner[key], self._gens[key] = k, self._gen
        return True

    def drop(self, key: Any) -> None:
        """End ``key``'s chain (its results not yet read are dropped)."""
        k = self._owner.pop(key, None)
        self._gens.pop(key, None)
        self._last.pop(key, None)
        for found in [r for r in self._results if r[0] == key]:
            del self._results[found]
        if k is not None:
            self._send(k, ("drop", key))

    def advance(self, pos: int) -> None:
        """This process is at position ``pos``: the workers may run up to ``ahead`` beyond it. The answers
        already there are read (so that no pipe fills while this process reads none: a worker blocked
        sending would not read this process's messages either)."""
        for k in range(len(self._conns)):
            try:
                while self._alive[k] and self._conns[k].poll():
                    self._receive(k)
            except (EOFError, OSError):
                self._end_worker(k)
            self._send(k, ("ack", pos))
        for found in [r for r in self._results if r[1] < pos]:
            del self._results[found]

    def get(self, key: Any, pos: int) -> tuple[bool, Any]:
        """``(True, result)`` of ``key``'s chain at position ``pos``, or ``(False, None)`` when its chain does
        not reach there (it ended, was never started, its worker failed) or the result does not come within
        ``_CHAIN_PATIENCE_S`` (the chain is then dropped: run the call here)."""
        while True:
            found = self._results.pop((key, pos), self)
            if found is not self:
                return True, found
            k = self._owner.get(key)
            last = self._last.get(key)
            if k is None or (last is not None and pos > last):
                return False, None
            t0 = time.perf_counter()
            try:
                ready = self._conns[k].poll(_CHAIN_PATIENCE_S)
            except (EOFError, OSError):
                ready = True  # recv below finds it closed
            self.waited_s += time.perf_counter() - t0
            if not ready:
                self.drop(key)
                self._misses[k] += 1
                if self._misses[k] >= _CHAIN_MISSES:
                    self._end_worker(k)  # stuck, not late
                return False, None
            self._receive(k)

    def shift(self) -> int:
        """+1 when, since the last call, the workers sat idle more than this process waited for them (give
        them one chain more), -1 when this process waited more (take one back), else 0; only when the
        difference is more than ``_SHIFT_SHARE`` of the time."""
        now, idle_s = time.perf_counter(), sum(self._idle_s)
        t0, waited0, idle0 = self._shift_at
        self._shift_at = (now, self.waited_s, idle_s)
        waited, idle, span = self.waited_s - waited0, idle_s - idle0, now - t0
        if waited - idle > _SHIFT_SHARE * span:
            return -1
        if idle - waited > _SHIFT_SHARE * span:
            return 1
        return 0

    def _receive(self, k: int) -> None:
        """Read one answer of worker ``k`` (a failed or closed worker is not used again)."""
        try:
            message = self._conns[k].recv()
        except (EOFError, OSError):
            message = ("failed", "EOFError")
        if message[0] != "ok":
            self._end_worker(k)
            return
        self._misses[k] = 0
        _, key, gen, pos, result, goes_on, idle_s = message
        self._idle_s[k] = idle_s
        if self._owner.get(key) == k and self._gens.get(key) == gen:
            self._results[(key, pos)] = result
            if not goes_on:
                self._last[key] = pos

    def _send(self, k: int, message: Any) -> bool:
        if not self._alive[k]:
            return False
        try:
            self._conns[k].send(message)
            return True
        except (OSError, ValueError):
            self._end_worker(k)
            return False

    def _end_worker(self, k: int) -> None:
        """Worker ``k`` failed or died: ended, never used again; its chains are dropped."""
        self._alive[k] = False
        for key in [key for key, owner in self._owner.items() if owner == k]:
            self._owner.pop(key)
            self._gens.pop(key, None)
        if self._procs[k].is_alive():
            self._procs[k].kill()

    def close(self) -> None:
        """End the workers."""
        _end(self._conns, self._procs, self._alive)
        self._conns, self._procs, self._alive = [], [], []
