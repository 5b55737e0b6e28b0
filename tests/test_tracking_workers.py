"""Issue #13: the bodies of a frame registered in forked worker processes give the same tracks to the bit."""

import multiprocessing
import os
import time

import numpy as np
import pytest

from dmx.tracking import track
from dmx.tracking import tracker as tracker_mod
from dmx.tracking.workers import ForkedWorkers, can_fork


def test_this_platform_forks():
    assert can_fork()  # Linux: the tests below run the worker processes, never skipped


def _mandible_phantom():
    """An occluded case (the mandible over C2-C4 in deep flexion, shoulders over C7; 30 frames, 384 px)
    where the tracker recovers, refits from the neighbours and rejects: every step runs."""
    from tests.test_tracking_occlusion import _mandible_phantom as occluded

    return occluded(frames=30, rows=384, cols=384)


def _assert_same_tracks(got, want):
    for name in ("corners_px", "transforms", "quality", "precision_px", "rotation_precision_deg"):
        assert np.array_equal(getattr(got, name), getattr(want, name), equal_nan=True), name
    assert got.reason == want.reason
    assert got.vertebrae == want.vertebrae


def _counting_fits(monkeypatch):
    """Count the registrations run in this process (a forked worker's are not counted here)."""
    calls = {"n": 0}
    fit_at = tracker_mod._Tracker.fit_at

    def counted(self, *args, **kwargs):
        if os.getpid() == parent:
            calls["n"] += 1
        return fit_at(self, *args, **kwargs)

    parent = os.getpid()
    monkeypatch.setattr(tracker_mod._Tracker, "fit_at", counted)
    return calls


def test_tracks_with_worker_processes_equal_one_process_to_the_bit(monkeypatch):
    from dmx.tracking import workers as workers_mod

    ph = _mandible_phantom()
    calls = _counting_fits(monkeypatch)
    # never run here what a worker took (however long the machine keeps it): the count below is then
    # this process's share alone
    monkeypatch.setattr(workers_mod, "_MIN_PATIENCE_S", 600.0)
    monkeypatch.setattr(workers_mod, "_CHAIN_PATIENCE_S", 600.0)
    one = track(ph.frames, ph.landmarks)
    here_alone = calls["n"]
    assert any(r is not None for row in one.reason for r in row)  # the case has lost frames and reasons
    for processes in (2, 3):
        calls["n"] = 0
        many = track(ph.frames, ph.landmarks, processes=processes)
        _assert_same_tracks(many, one)
        # the workers registered bodies (how many depends on how the machine runs the processes: they
        # take the next body as they come free), the fits of this process were its share only
        assert 0 < calls["n"] < here_alone, (processes, calls, here_alone)


def test_fits_run_ahead_are_used_only_from_the_same_pose(monkeypatch):
    """The workers register each body frame after frame from the poses its own fits give; this process
    uses such a fit only when it started from the pose this process predicts, to the bit. Here the
    workers' calls on every fifth frame start from a pose one nanopixel off: those fits are not used
    (registered again here), and the tracks stay those of one process."""
    ph = _mandible_phantom()
    one = track(ph.frames, ph.landmarks)
    seen = []
    same_call = tracker_mod._same_call
    chain_step = tracker_mod._Tracker.chain_step

    def recorded(a, b):
        seen.append(same_call(a, b))
        return seen[-1]

    def off_on_every_fifth(self, i, history, t):  # runs in the workers
        if t % 5:
            return chain_step(self, i, history, t)
        pred = tracker_mod._predict(tracker_mod._State(history=history), t)
        off = (
            i,
            t,
            pred + np.array([[0.0, 0.0, 1e-9], [0.0] * 3, [0.0] * 3]),
            1 if len(history) >= 2 else None,
        )
        fit = self.fit_on_frame(*off)
        return (off, fit), [*history, (t, fit[0].transform)][-3:]

    monkeypatch.setattr(tracker_mod, "_same_call", recorded)
    monkeypatch.setattr(tracker_mod._Tracker, "chain_step", off_on_every_fifth)
    _assert_same_tracks(track(ph.frames, ph.landmarks, processes=2), one)
    assert sum(seen) > 0.5 * len(seen)  # most are used ...
    assert not all(seen)  # ... not those from another pose


def test_without_fork_the_same_tracks_on_threads(monkeypatch):
    ph = _mandible_phantom()
    one = track(ph.frames[:12], ph.landmarks)
    monkeypatch.setattr(tracker_mod, "can_fork", lambda: False)
    seen = []
    monkeypatch.setattr(tracker_mod, "ForkedChains", lambda *a: seen.append(a))  # must not be used
    _assert_same_tracks(track(ph.frames[:12], ph.landmarks, processes=2), one)
    assert seen == []


PARENT = os.getpid()
#: Released by a worker when it runs a call, and by this process when it does (inherited at the fork)
WORKER_STARTED = multiprocessing.get_context("fork").Semaphore(0)
HERE_STARTED = multiprocessing.get_context("fork").Semaphore(0)


def _pid_once_both_started(x):
    """Each process waits until the other side took a call, so that both take some whatever the machine
    does (the workers each block in their first call: this process is left calls to take)."""
    mine, other = (HERE_STARTED, WORKER_STARTED) if os.getpid() == PARENT else (WORKER_STARTED, HERE_STARTED)
    mine.release()
    assert other.acquire(timeout=120)
    other.release()  # for every later call
    return os.getpid(), x


def _fails_on_three(x):
    if x == 3:
        raise ValueError(f"three in {os.getpid()}")
    return x


def _pid(x):
    return os.getpid(), x


def test_forked_workers_share_the_calls_with_this_process_in_order():
    with ForkedWorkers(_pid_once_both_started, 2) as workers:
        assert len(workers) == 2
        got = workers.map([(k,) for k in range(12)])
        assert [r[1] for r in got] == list(range(12))
        pids = [r[0] for r in got]
        assert pids[-1] == PARENT and pids[0] != PARENT  # this one from the back, the workers from the front
        assert workers.map([]) == [] and workers.map([(7,)]) == [(PARENT, 7)]  # one call: run here


def test_a_failing_call_is_run_again_here_and_raises_here():
    with ForkedWorkers(_fails_on_three, 1) as workers:
        assert workers.map([(1,), (2,), (4,)]) == [1, 2, 4]
        with pytest.raises(ValueError, match=f"three in {PARENT}$"):
            workers.map([(k,) for k in range(1, 40)])  # raised here, as without workers
        assert workers.map([(5,), (6,)]) == [5, 6]


def test_a_dead_worker_is_replaced_by_this_process():
    with ForkedWorkers(_pid, 1) as workers:
        workers._procs[0].kill()  # a worker killed (out of memory, a signal)
        workers._procs[0].join()
        assert workers.map([(k,) for k in range(5)]) == [(PARENT, k) for k in range(5)]
        assert len(workers) == 0  # not used again
        assert workers.map([(1,), (2,)]) == [(PARENT, 1), (PARENT, 2)]


def test_a_worker_that_died_holding_the_shared_lock_does_not_hang_this_process(monkeypatch):
    """A worker killed while it held the lock they share (a few instructions, but out-of-memory kills
    and signals come when they come) would leave this process waiting for ever: it waits
    ``_LOCK_WAIT_S``, ends the workers and runs the calls itself."""
    from dmx.tracking import workers as workers_mod

    monkeypatch.setattr(workers_mod, "_LOCK_WAIT_S", 0.2)
    with ForkedWorkers(_pid, 1) as workers:
        assert workers.map([(1,), (2,)]) is not None  # the lock free: shared as usual
        assert workers._lock.acquire(timeout=5)  # held, as by a worker killed inside _take
        assert workers.map([(k,) for k in range(5)]) == [(PARENT, k) for k in range(5)]
        assert len(workers) == 0
        workers._procs[0].join(5)
        assert not workers._procs[0].is_alive()  # ended, not left waiting on the lock

        class Untouchable:
            def acquire(self, *a, **k):
                raise AssertionError("the lost lock was waited on again")

        workers._lock = Untouchable()
        assert workers.map([(7,), (8,)]) == [(PARENT, 7), (PARENT, 8)]  # no more waits on it
    # a batch the worker had started when the lock was lost: its calls are run here too
    with ForkedWorkers(_pid, 1) as workers:
        workers.start([(k,) for k in range(4)], min_calls=2)
        assert workers._lock.acquire(timeout=5)
        got = workers.finish()
        assert [r[1] for r in got] == [0, 1, 2, 3]
        assert len(workers) == 0


def test_a_forked_call_runs_elsewhere_and_its_failure_is_raised_here(monkeypatch):
    from functools import partial

    from dmx.tracking import workers as workers_mod
    from dmx.tracking.workers import ForkedCall

    call = ForkedCall(partial(_pid, 4))
    pid, four = call.result()
    assert pid != PARENT and four == 4
    with pytest.raises(ValueError, match=f"three in {PARENT}$"):
        ForkedCall(partial(_fails_on_three, 3)).result()  # failed there: run here, raised here
    monkeypatch.setattr(workers_mod, "can_fork", lambda: False)
    assert ForkedCall(partial(_pid, 5)).result() == (PARENT, 5)  # no fork: run here


def _opencv_threads():
    import cv2

    return os.getpid(), cv2.getNumThreads()


def _send_opencv_threads(conn):
    conn.send(_opencv_threads())
    conn.close()


def test_processes_are_forked_with_opencv_on_one_thread_and_this_one_keeps_its_threads():
    """A process forked while OpenCV's pool holds its lock would block in its first parallel call
    (opencv/opencv#5150): forked processes run OpenCV on their own thread, this one keeps its pool."""
    import cv2

    from dmx.tracking import workers as workers_mod
    from dmx.tracking.workers import ForkedCall

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        cv2.GaussianBlur(np.ones((512, 512), np.float32), (0, 0), 3)  # the pool in use before the fork
        pid, threads = ForkedCall(_opencv_threads).result()  # the report's and the cine's process
        assert pid != PARENT and threads == 1
        ctx = multiprocessing.get_context("fork")
        conns, procs = workers_mod._fork(ctx, 1, _send_opencv_threads, lambda conn: (conn,))  # the workers
        assert conns[0].poll(60)
        pid, threads = conns[0].recv()
        procs[0].join(10)
        assert pid != PARENT and threads == 1
        assert cv2.getNumThreads() == 2  # this process keeps its threads
    finally:
        cv2.setNumThreads(before)


def _large(n):
    return b"x" * n


def test_a_forked_call_whose_large_result_is_not_wanted_ends_when_joined():
    from functools import partial

    from dmx.tracking.workers import ForkedCall

    call = ForkedCall(partial(_large, 4_000_000))  # far more than a pipe's buffer
    proc = call._proc
    call.join()  # the result is dropped: the forked process cannot send it, and ends
    assert call._proc is None and proc.exitcode == 0
    assert len(ForkedCall(partial(_large, 4_000_000)).result()) == 4_000_000  # wanted: received


#: A worker's first call of :func:`_held_in_a_worker` waits for this (released by the test)
HOLD = multiprocessing.get_context("fork").Semaphore(0)
HELD_STARTED = multiprocessing.get_context("fork").Semaphore(0)


def _held_in_a_worker(x):
    if x < 10:
        if os.getpid() != PARENT:
            HELD_STARTED.release()
            assert HOLD.acquire(timeout=120)  # held back (the machine's other jobs) until the test lets go
        else:
            assert HELD_STARTED.acquire(timeout=120)  # a worker took a call
            HELD_STARTED.release()
    return os.getpid(), x


def test_a_worker_held_back_is_not_waited_for_and_its_late_answer_is_dropped():
    with ForkedWorkers(_held_in_a_worker, 1) as workers:
        # the worker takes call 0 and is held: this process runs the others, then call 0 too
        assert workers.map([(k,) for k in range(4)]) == [(PARENT, k) for k in range(4)]
        HOLD.release()  # its answer to the first calls comes now, late: dropped
        got = workers.map([(k,) for k in range(10, 16)])
        assert [r[1] for r in got] == list(range(10, 16))
        assert len(workers) == 1  # late, not failed: still used


def _count_up(key, state, t):
    """A chain step: the result names the process, the key, the position's item and the state; the chain
    ends once the state reaches 3."""
    if key == "fails" and t == 2:
        raise ValueError("two")
    return (os.getpid(), key, t, state), (state + 1 if state < 3 else None)


def test_forked_chains_run_ahead_in_a_worker_until_they_end():
    from dmx.tracking.workers import ForkedChains

    with ForkedChains(_count_up, 1, ahead=2) as chains:
        chains.begin([10, 11, 12, 13, 14, 15])
        assert chains.chain("a", 0, 0) and chains.chain("b", 2, 1)
        assert chains.keys() == {"a", "b"}
        chains.advance(0)
        found, (pid, key, t, state) = chains.get("a", 0)
        assert found and pid != PARENT and (key, t, state) == ("a", 10, 0)
        chains.advance(1)
        assert chains.get("b", 1)[1][1:] == ("b", 11, 2)
        assert chains.get("a", 1)[1][1:] == ("a", 11, 1)
        chains.advance(2)
        assert chains.get("b", 2)[1][1:] == ("b", 12, 3)  # its last: the next state would be 4
        assert not chains.goes_on("b")  # ("a" ends at 3: whether that was read yet depends on the machine)
        chains.advance(3)
        assert chains.get("b", 3) == (False, None)  # ended: the caller runs it
        assert chains.get("a", 3)[1][1:] == ("a", 13, 3)
        # restarted from another state at a later position; the old chain's answers are dropped
        assert chains.chain("b", 1, 4)
        chains.advance(4)
        assert chains.get("b", 4)[1][1:] == ("b", 14, 1)
        chains.drop("b")
        assert chains.get("b", 5) == (False, None) and chains.keys() == {"a"} and not chains.goes_on("a")
        chains.begin([20, 21])  # a new pass: no chain left from the last
        assert chains.keys() == set() and chains.get("a", 0) == (False, None)
        assert chains.chain("a", 0, 0) and chains.get("a", 1)[1][1:] == ("a", 21, 1)


def test_a_chain_whose_step_fails_or_whose_worker_dies_is_left_to_this_process():
    from dmx.tracking.workers import ForkedChains

    with ForkedChains(_count_up, 1) as chains:
        chains.begin(range(6))
        assert chains.chain("fails", 0, 0)
        chains.advance(0)
        assert chains.get("fails", 0)[0] and chains.get("fails", 1)[0]
        assert chains.get("fails", 2) == (False, None)  # failed there: run here (and raised here)
        assert len(chains) == 0 and not chains.chain("a", 0, 3)  # not used again
    with ForkedChains(_count_up, 1) as chains:
        chains.begin(range(6))
        chains._procs[0].kill()  # killed (out of memory, a signal)
        chains._procs[0].join()
        chains.chain("a", 0, 0)
        assert chains.get("a", 0) == (False, None) and len(chains) == 0


def _held_chain(key, state, t):
    if t == 1:
        assert HOLD.acquire(timeout=120)  # held back (the machine's other jobs) until the test lets go
    return t, state + 1


def test_a_chain_held_back_is_not_waited_for(monkeypatch):
    from dmx.tracking import workers as workers_mod
    from dmx.tracking.workers import ForkedChains

    monkeypatch.setattr(workers_mod, "_CHAIN_PATIENCE_S", 0.2)
    with ForkedChains(_held_chain, 1) as chains:
        chains.begin(range(4))
        chains.chain("a", 0, 0)
        chains.chain("b", 0, 1)
        assert chains.get("a", 0) == (True, 0)
        assert chains.get("b", 1) == (False, None)  # not within the patience: dropped, run here
        assert chains.keys() == {"a"} and len(chains) == 1  # late, not failed: still used
        HOLD.release()
        assert chains.get("a", 1) == (True, 1)


def _stuck_chain(key, state, t):
    if t == 1:
        time.sleep(3600)  # blocked for good (as a forked worker once was inside OpenCV)
    return t, state + 1


def test_a_stuck_worker_is_ended_after_a_few_waits_without_an_answer(monkeypatch):
    from dmx.tracking import workers as workers_mod
    from dmx.tracking.workers import ForkedChains

    monkeypatch.setattr(workers_mod, "_CHAIN_PATIENCE_S", 0.05)
    monkeypatch.setattr(workers_mod, "_CHAIN_MISSES", 3)
    with ForkedChains(_stuck_chain, 1) as chains:
        chains.begin(range(4))
        chains.chain("a", 0, 0)
        assert chains.get("a", 0) == (True, 0)  # answered: not stuck so far
        for _ in range(2):
            assert chains.get("a", 1) == (False, None)  # late: run here, the worker still used
            assert len(chains) == 1
            chains.chain("a", 1, 1)
        assert chains.get("a", 1) == (False, None)  # the third wait in a row without an answer
        assert len(chains) == 0 and chains.keys() == set()  # stuck: ended, never asked again
        assert not chains.chain("b", 0, 2)
        chains._procs[0].join(5)
        assert not chains._procs[0].is_alive()  # killed, not left sleeping


#: Released by a worker each time it runs the step :func:`_shared_with_a_worker` watches
WORKER_RAN = multiprocessing.get_context("fork").Semaphore(0)


def _shared_with_a_worker(monkeypatch, method: str, option: str) -> None:
    """``_Tracker.<method>`` runs in a worker forked for it and here: the same tracks as one process, fewer
    bodies here, and the step changes the tracks (``track(..., <option>=False)`` differs)."""
    ph = _mandible_phantom()
    one = track(ph.frames, ph.landmarks)
    while WORKER_RAN.acquire(block=False):  # what an earlier test's workers left
        pass
    here = []
    step = getattr(tracker_mod._Tracker, method)

    def counted(self, i):
        if os.getpid() == PARENT:
            here.append(i)
            assert WORKER_RAN.acquire(timeout=120)  # whatever the machine does, a worker took one
            WORKER_RAN.release()
        else:
            WORKER_RAN.release()
        return step(self, i)

    monkeypatch.setattr(tracker_mod._Tracker, method, counted)
    _assert_same_tracks(track(ph.frames, ph.landmarks, processes=2), one)
    assert 0 < len(here) < len(one.vertebrae)
    assert not np.array_equal(one.transforms, track(ph.frames, ph.landmarks, **{option: False}).transforms)


def test_the_still_layer_screen_is_shared_with_a_worker(monkeypatch):
    """After the passes the bodies' still layers are looked for in a worker forked then and here: the
    same tracks (the shoulders' still layer over C7 is taken out in this case), fewer bodies here."""
    _shared_with_a_worker(monkeypatch, "_still_layer", "still_layers")


def _large_step(key, state, t):
    return b"x" * 100_000, state  # more than a pipe holds


def test_chains_whose_answers_are_not_read_do_not_fill_the_pipes():
    """Frames where this process reads no chain (its bodies lost, all its own) still tell the workers where
    it is: the answers they send meanwhile are read then, so that neither side blocks on a full pipe."""
    import threading

    from dmx.tracking.workers import ForkedChains

    with ForkedChains(_large_step, 1, ahead=2) as chains:
        chains.begin(range(5000))
        chains.chain("a", 0, 0)

        def frames():
            for pos in range(4000):  # far more messages than a pipe holds, either way
                chains.advance(pos)

        going = threading.Thread(target=frames, daemon=True)
        going.start()
        going.join(120)
        assert not going.is_alive()  # not blocked on a full pipe
        found, answer = chains.get("a", 4000)
        assert found and len(answer) == 100_000 and len(chains) == 1


def test_the_consistency_refits_are_shared_with_a_worker(monkeypatch):
    """The last step (bodies registered again with their template's pixels weighed by how steadily they
    follow them) runs in a worker forked then and here: the same tracks, fewer bodies here; and it
    changes them (30 frames: enough trusted frames for the weights)."""
    _shared_with_a_worker(monkeypatch, "_consistent_refit", "consistency_weights")
