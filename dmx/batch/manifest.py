"""The manifest: one row per input found (ok / failed / skipped and why), as CSV and JSON lines."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from dmx.batch.jobs import Status, StudyJob
from dmx.errors import InputError
from dmx.files import write_text_atomic

#: Columns of ``manifest.csv`` (and keys of each ``manifest.jsonl`` line), in order.
MANIFEST_FIELDS: tuple[str, ...] = (
    "input",
    "kind",
    "files",
    "status",
    "reason",
    "duration_s",
    "input_sha256",
    "landmarks_sha256",
    "landmarks_source",
    "output",
    "finished_at",
)

_MAX_REASON = 300


@dataclass(frozen=True)
class ManifestRow:
    """One line of the manifest: what happened to one input."""

    input: str
    kind: str
    files: int
    status: Status
    reason: str
    duration_s: float | None
    input_sha256: str
    landmarks_sha256: str
    output: str
    finished_at: str
    landmarks_source: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d


def study_row(
    study: StudyJob, status: Status, reason: str, *, duration_s: float | None, output: str = ""
) -> ManifestRow:
    """The manifest row of ``study``; its output folder is its key unless it failed."""
    return ManifestRow(
        input=study.label,
        kind=study.kind,
        files=len(study.paths),
        status=status,
        reason=reason,
        duration_s=None if duration_s is None else round(duration_s, 3),
        input_sha256=study.sha256,
        landmarks_sha256=study.landmarks_sha256,
        output=output or (study.key if status is not Status.FAILED else ""),
        finished_at=utc_now(),
        landmarks_source=study.landmarks_source,
    )


def one_line(text: str, root: Path) -> str:
    """``text`` as a manifest reason: paths relative to the inbox ``root``, one line, <= 300 characters."""
    text = text.replace(str(root) + os.sep, "")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def utc_now() -> str:
    """The time now, as the manifest and ``batch.json`` write it (``2026-11-29T13:47:43Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ManifestWriter:
    """``manifest.csv`` + ``manifest.jsonl``, appended and flushed row by row.

    An interrupted run keeps every row written so far; :meth:`finish` rewrites
    both files atomically, sorted by input.
    """

    def __init__(self, out_root: Path) -> None:
        """Start both files with no rows.

        Raises
        ------
        InputError
            When either file cannot be written (one line naming it).
        """
        self.csv_path = out_root / "manifest.csv"
        self.jsonl_path = out_root / "manifest.jsonl"
        self._csv: IO[str] = _start(self.csv_path, _csv_line(MANIFEST_FIELDS), newline="")
        try:
            self._jsonl: IO[str] = _start(self.jsonl_path, "")
        except BaseException:
            self._csv.close()
            raise

    def add(self, row: ManifestRow) -> None:
        for fh, line in ((self._csv, _csv_row(row)), (self._jsonl, json.dumps(row.to_json()) + "\n")):
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self, rows: Sequence[ManifestRow]) -> None:
        self.close()
        ordered = sorted(rows, key=lambda r: r.input)
        write_text_atomic(
            self.csv_path, _csv_line(MANIFEST_FIELDS) + "".join(_csv_row(r) for r in ordered), fsync=True
        )
        write_text_atomic(
            self.jsonl_path, "".join(json.dumps(r.to_json()) + "\n" for r in ordered), fsync=True
        )

    def close(self) -> None:
        self._csv.close()
        self._jsonl.close()


def _start(path: Path, header: str, *, newline: str | None = None) -> IO[str]:
    """``path`` written anew with ``header`` and open for appending rows."""
    try:
        write_text_atomic(path, header, fsync=True)
        return open(path, "a", encoding="utf-8", newline=newline)  # noqa: SIM115 - closed by close()
    except OSError as exc:
        raise InputError(path, f"cannot write the manifest: {exc.strerror}") from None


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _csv_row(row: ManifestRow) -> str:
    d = row.to_json()
    return _csv_line(["" if d[k] is None else d[k] for k in MANIFEST_FIELDS])


def read_manifest(out_root: str | Path) -> list[dict[str, Any]]:
    """Rows of ``out_root/manifest.jsonl`` (as written; a torn last line is ignored)."""
    rows = []
    for line in (Path(out_root) / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            rows.append(json.loads(line))
    return rows
