"""How many threads per-frame work (registration, report frame encoding) may use."""

from __future__ import annotations

import os

#: Never more threads than this, however many CPUs: the per-frame work is small.
MAX_THREADS = 4


def default_threads() -> int:
    """The CPUs this process may run on (its affinity), at most :data:`MAX_THREADS`."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, n))
