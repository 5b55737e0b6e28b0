"""The listener's spool: every received instance on disk before it is acknowledged.

Layout under ``DIR/spool/``::

    incoming/<series key>/<instance key>.dcm   received, series still arriving
    complete/<series key>/<instance key>.dcm   series complete (quiet for N seconds): the batch inbox
    forwarded/<result key>                     results already sent back (finish time of that result)

Keys are hashes (16/32 hex digits) of the Study/Series and SOP Instance UIDs:
no names, no UIDs in paths. Each instance is written to a hidden temporary file,
flushed to disk and renamed, so a file that exists is whole; temporary files
left by a kill are removed by :meth:`Spool.recover` (their senders got no
acknowledgement and send them again).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Stored(StrEnum):
    """What :meth:`Spool.store` did with an instance."""

    NEW = "new"
    DUPLICATE = "duplicate"


def _hash(*parts: str, n: int = 16) -> str:
    return hashlib.sha256("\\".join(parts).encode("utf-8")).hexdigest()[:n]


@dataclass(frozen=True)
class Series:
    """A spooled series: its key, its instances, and when the last one arrived (epoch seconds)."""

    key: str
    files: tuple[Path, ...]
    last_s: float


class Spool:
    """Instances received, grouped by series; thread-safe (one association per thread)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.incoming = self.root / "incoming"
        self.complete_dir = self.root / "complete"
        self.forwarded = self.root / "forwarded"
        for d in (self.incoming, self.complete_dir, self.forwarded):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    @staticmethod
    def series_key(study_uid: str, series_uid: str) -> str:
        return _hash(study_uid, series_uid)

    def recover(self) -> int:
        """Remove temporary files left by a killed run; return how many."""
        n = 0
        for tmp in self.root.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
        return n

    def store(self, *, study_uid: str, series_uid: str, sop_instance_uid: str, data: bytes) -> Stored:
        """Write one instance (the encoded file, with its meta header) durably; ignore a duplicate."""
        key = self.series_key(study_uid, series_uid)
        name = _hash(sop_instance_uid, n=32) + ".dcm"
        with self._lock:
            if (self.incoming / key / name).exists() or (self.complete_dir / key / name).exists():
                return Stored.DUPLICATE
            folder = self.incoming / key
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, folder / name)
                _fsync_dir(folder)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return Stored.NEW

    def incoming_series(self) -> list[Series]:
        """Series still arriving, with the time of their newest instance."""
        out = []
        for d in sorted(p for p in self.incoming.iterdir() if p.is_dir()):
            files = tuple(sorted(f for f in d.iterdir() if f.suffix == ".dcm" and not f.name.startswith(".")))
            if not files:
                continue
            last = max(f.stat().st_mtime for f in files)
            out.append(Series(d.name, files, last))
        return out

    def due(self, quiet_s: float, *, now: float | None = None) -> list[Series]:
        """Incoming series without a new instance for ``quiet_s`` seconds."""
        now = time.time() if now is None else now
        return [s for s in self.incoming_series() if now - s.last_s >= quiet_s]

    def complete(self, series: Series) -> int:
        """Move a series into ``complete/`` (joining instances already there); return its instance count."""
        with self._lock:
            dest = self.complete_dir / series.key
            dest.mkdir(parents=True, exist_ok=True)
            src = self.incoming / series.key
            for f in sorted(src.glob("*.dcm")):
                os.replace(f, dest / f.name)
            _fsync_dir(dest)
            try:
                src.rmdir()
            except OSError:  # an instance arrived meanwhile: it completes later
                pass
            return sum(1 for _ in dest.glob("*.dcm"))

    def has_complete(self) -> bool:
        return any(p.is_dir() for p in self.complete_dir.iterdir())

    def forwarded_mark(self, result_key: str) -> str:
        try:
            return (self.forwarded / result_key).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def mark_forwarded(self, result_key: str, finished_at: str) -> None:
        from dmx.files import write_text_atomic

        write_text_atomic(self.forwarded / result_key, finished_at + "\n", fsync=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
