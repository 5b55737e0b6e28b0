"""The lock: one ``dmx batch`` at a time writes into an output folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from dmx.errors import InputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None

#: The lock file, present in the output folder only while a batch runs (or after one was killed).
LOCK_NAME = ".dmx-batch.lock"


@contextlib.contextmanager
def output_lock(out_root: Path) -> Iterator[None]:
    """Hold the output folder's lock for the ``with`` block; the lock file is removed on leaving it.

    Raises
    ------
    InputError
        When another ``dmx batch`` holds the lock, or the lock file cannot be created.
    """
    if fcntl is None:  # pragma: no cover - Windows: no lock
        yield
        return
    path = out_root / LOCK_NAME
    fd = _acquire(path)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still holding the lock: nobody else can be using this file
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _acquire(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive lock.

    A batch that ends removes the lock file while it holds the lock, so a lock
    obtained on a file that is no longer at ``path`` is not the folder's lock:
    open the new one and try again.
    """
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(path, f"cannot create the batch lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise InputError(path.parent, "another 'dmx batch' is writing to this folder") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # unlinked by the batch that just finished: lock the file now in its place
