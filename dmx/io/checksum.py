"""Checksums of input files, so outputs can say exactly what they were computed from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 20


def sha256_files(paths: Iterable[str | Path]) -> str:
    """SHA-256 (hex) over the bytes of ``paths`` concatenated in the given order.

    For a multi-frame file this is the file's own SHA-256; for a series of
    single-frame files, give them in frame order.
    """
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()
