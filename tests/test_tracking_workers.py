"""Issue #13: the bodies of a frame registered in forked worker processes give the same tracks to the bit."""

import os

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
    ph = _mandible_phantom()
    calls = _counting_fits(monkeypatch)
    one = track(ph.frames, ph.landmarks)
    here_alone = calls["n"]
    assert any(r is not None for row in one.reason for r in row)  # the case has lost frames and reasons
    for processes in (2, 3):
        calls["n"] = 0
        many = track(ph.frames, ph.landmarks, processes=processes)
        _assert_same_tracks(many, one)
        # the workers did register bodies: this process ran that many fewer (7 bodies, 29 frames)
        predicted = 29 * len(one.vertebrae)
        assert here_alone - calls["n"] >= predicted * (processes - 1) // processes - 29, (processes, calls)


def test_without_fork_the_same_tracks_on_threads(monkeypatch):
    ph = _mandible_phantom()
    one = track(ph.frames[:12], ph.landmarks)
    monkeypatch.setattr(tracker_mod, "can_fork", lambda: False)
    seen = []
    monkeypatch.setattr(tracker_mod, "ForkedWorkers", lambda *a: seen.append(a))  # must not be used
    _assert_same_tracks(track(ph.frames[:12], ph.landmarks, processes=2), one)
    assert seen == []


def _pid_and_square(x):
    return os.getpid(), x * x


def _fails_on_three(x):
    if x == 3:
        raise ValueError(f"three in {os.getpid()}")
    return x


def _dies_on_three(x):
    if x == 3 and os.getpid() != PARENT:
        os._exit(1)  # a worker killed (out of memory, a signal)
    return os.getpid(), x


PARENT = os.getpid()


def test_forked_workers_run_the_calls_elsewhere_in_order():
    with ForkedWorkers(_pid_and_square, 2) as workers:
        assert len(workers) == 2
        workers.submit(0, [(1,), (2,), (3,)])
        workers.submit(1, [(4,)])
        workers.submit(1, [])  # nothing to do: no message
        first, second = workers.results(0), workers.results(1)
        assert [r[1] for r in first] == [1, 4, 9] and second == []
        assert {r[0] for r in first} != {os.getpid()} and len({r[0] for r in first}) == 1


def test_a_failing_call_is_run_again_here_and_raises_here():
    with ForkedWorkers(_fails_on_three, 1) as workers:
        workers.submit(0, [(1,), (2,)])
        assert workers.results(0) == [1, 2]
        workers.submit(0, [(2,), (3,)])
        with pytest.raises(ValueError, match=f"three in {os.getpid()}$"):
            workers.results(0)  # the worker failed: run here, where the error is raised as without workers
        workers.submit(0, [(5,)])
        assert workers.results(0) == [5]  # not sent to the failed worker again


def test_a_dead_worker_is_replaced_by_this_process():
    with ForkedWorkers(_dies_on_three, 1) as workers:
        workers.submit(0, [(1,)])
        ((pid, one),) = workers.results(0)
        assert pid != os.getpid() and one == 1
        workers.submit(0, [(3,), (4,)])
        assert workers.results(0) == [(os.getpid(), 3), (os.getpid(), 4)]
