"""The lock: one ``dmx batch`` at a time writes into an output folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from dmx.errors import InputError

#: The lock file in the output folder.
LOCK_NAME = ".dmx-batch.lock"


@contextlib.contextmanager
def output_lock(out_root: Path) -> Iterator[None]:
    """Hold the output folder's lock for the ``with`` block.

    Raises
    ------
    InputError
        When another ``dmx batch`` holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    with open(out_root / LOCK_NAME, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(out_root, "another 'dmx batch' is writing to this folder") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
