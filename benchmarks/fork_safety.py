"""Do processes forked by dmx ever block in OpenCV? A stress check of ``dmx.tracking.workers._opencv_serial``.

A process forked while a thread of OpenCV's pool (pthreads) holds the pool's lock inherits the lock held
and no thread to release it: its first parallel OpenCV call blocks for good (opencv/opencv#5150). dmx
forks its tracking workers and the report's process from a process that has used OpenCV's pool, so it
stops the pool while it forks (:func:`dmx.tracking.workers._opencv_serial`). This script forks N
processes, each right after this process used the pool and while it goes on using it, each child calling
``cv2.pyrDown`` and ``cv2.GaussianBlur`` as the tracking workers do, and counts the children that do not
answer within 5 s (blocked; killed). Run it on a loaded machine (the window is short): with ``--without``
the pool is left running at the fork, as before.

    PYTHONPATH=. python benchmarks/fork_safety.py [--forks 600] [--without]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from contextlib import nullcontext

import cv2
import numpy as np

from dmx.tracking.workers import _opencv_serial

IMAGE = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)


def _child(conn) -> None:
    cv2.pyrDown(IMAGE)
    cv2.GaussianBlur(IMAGE, (0, 0), 3)
    conn.send(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--forks", type=int, default=600)
    ap.add_argument("--without", action="store_true", help="fork with OpenCV's pool running (as before)")
    a = ap.parse_args()
    ctx = multiprocessing.get_context("fork")
    blocked, t0 = [], time.perf_counter()
    for k in range(a.forks):
        for _ in range(2):
            cv2.GaussianBlur(IMAGE, (0, 0), 3)  # the pool in use just before the fork
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_child, args=(there,), daemon=True)
        with nullcontext() if a.without else _opencv_serial():
            proc.start()
        there.close()
        cv2.GaussianBlur(IMAGE, (0, 0), 3)  # and while the child starts
        if not here.poll(5.0):
            blocked.append(k)
            proc.kill()
        proc.join(5)
        here.close()
    how = "OpenCV's pool running at the fork" if a.without else "OpenCV's pool stopped at the fork (dmx)"
    print(
        f"{how}: {len(blocked)} of {a.forks} forked processes blocked in OpenCV"
        + (f" (forks {', '.join(map(str, blocked))})" if blocked else "")
        + f"; OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads, {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
