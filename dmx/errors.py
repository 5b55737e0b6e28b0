"""Exceptions raised by dmx.

dmx raises few exception types. Each message names the file (or value) at
fault and the problem in one line, so the command line can print it as is.
"""

from __future__ import annotations

from pathlib import Path


class DmxError(Exception):
    """Base class of every error dmx raises on purpose."""


class InputError(DmxError):
    """An input file or folder cannot be used (not DICOM, truncated, undecodable, ...).

    The message starts with the path so that a batch log line says which
    study failed: ``"<path>: <problem>"``.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")


class LandmarkError(InputError):
    """A landmark file is malformed or incomplete (e.g. a vertebra with fewer than four corners)."""


class UsageError(DmxError):
    """The request itself is wrong (bad option value, conflicting options)."""


class OutputError(DmxError):
    """An output location cannot be used (a file where a folder is needed, no permission, ...).

    Checked before any work is done; the message starts with the path: ``"<path>: <problem>"``.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
