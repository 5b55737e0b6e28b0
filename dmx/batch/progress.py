"""The progress display: a bar with ETA on a terminal, one log line per study otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

from dmx.batch.jobs import Status
from dmx.batch.manifest import ManifestRow

log = logging.getLogger("dmx.batch")


class Progress:
    """Progress bar with ETA on a terminal; one log line per study otherwise."""

    def __init__(self, total: int, *, stream: IO[str] | None = None, tty: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.total = total
        self.done = 0
        self.counts = {s: 0 for s in Status}
        self.t0 = time.monotonic()
        if self.tty and total:
            self._draw()

    def update(self, row: ManifestRow) -> None:
        self.done += 1
        self.counts[row.status] += 1
        if self.tty:
            self._draw()
        else:
            dur = "" if row.duration_s is None else f" ({row.duration_s:.1f} s)"
            why = f": {row.reason}" if row.reason else ""
            log.info("[%d/%d] %s %s%s%s", self.done, self.total, row.status.value, row.input, dur, why)

    def eta_s(self) -> float | None:
        if not self.done:
            return None
        return (time.monotonic() - self.t0) / self.done * (self.total - self.done)

    def _draw(self) -> None:
        width = 30
        filled = int(width * self.done / self.total) if self.total else width
        eta = self.eta_s()
        c = self.counts
        text = (
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
            f"  ok {c[Status.OK]}  failed {c[Status.FAILED]}  skipped {c[Status.SKIPPED]}"
            f"  ETA {'--' if eta is None else format_duration(eta)}   "
        )
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\n")
            self.stream.flush()


def format_duration(seconds: float) -> str:
    """``"1h02m"``, ``"3m05s"`` or ``"12s"``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
