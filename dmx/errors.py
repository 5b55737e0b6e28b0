"""Exceptions raised by dmx.

dmx raises few exception types, all under :class:`DmxError`. Each message names
the file (or the parameter) at fault and the problem in one line, so the command
line can print it as is (a :class:`ParameterError` with the option in place of
the parameter).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class DmxError(Exception):
    """Base class of every error dmx raises on purpose.

    Every one pickles as itself, whatever its constructor takes (:func:`_rebuilt`: its message and
    attributes, without calling ``__init__`` again), so an error raised in a worker process reaches the
    caller as itself, not as a broken pool.
    """

    def __reduce__(self):
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


def _rebuilt(cls: type, args: tuple, state: dict) -> DmxError:
    """An error of ``cls`` with these ``args`` (its message) and attributes, as pickled by ``__reduce__``."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


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


class ParameterError(UsageError, ValueError):
    """A parameter's value cannot be used.

    ``parameter`` is the keyword argument's name (``"mm_per_px"``) and the message
    starts with it: ``"mm_per_px must be a number > 0, got -1.0"``. The command line
    prints the same sentence with the option that sets it instead (``--mm-per-px``).
    """

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"{parameter} {problem}")


class ModelFileError(InputError, ValueError):
    """A fitted model file (e.g. ``models/detector.npz``) that cannot be used: unreadable, another
    format, fields missing. The message names the file and how to rebuild it."""


class DetectionUnavailableError(UsageError):
    """Automatic landmark detection cannot run here (not built, or its model file is missing).

    ``why`` is the detector's own explanation; the message tells the user to pass ``--landmarks``.
    ``sequence`` is the loaded study when there was one (to offer the review page all the same).
    """

    sequence: Any = None  # dmx.io.Sequence

    def __init__(self, study_path: str | Path, why: str) -> None:
        self.why = why
        super().__init__(
            f"{study_path}: automatic landmark detection is not available ({why}); "
            "place the landmarks by hand and pass --landmarks L.json"
        )


class DetectionFailedError(InputError):
    """Automatic landmark detection ran but found nothing usable (``problem`` says what).

    ``sequence`` (the loaded study) and ``detection`` (what was found, perhaps nothing) are
    attached where the detector ran, so a caller can still write the review page
    (:func:`dmx.pipeline.write_manual_review`) on which the user places the bodies by hand.
    """

    sequence: Any = None  # dmx.io.Sequence
    detection: Any = None  # dmx.analysis.Detection
