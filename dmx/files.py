"""Writing output files so that a reader never sees half of one; reading JSON inputs with one error ladder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dmx.errors import InputError, OutputError


def read_json(
    path: str | Path, *, what: str, error: type[InputError] = InputError, not_found: str = ""
) -> Any:
    """The JSON document in ``path``; one error naming the file and the problem otherwise.

    Parameters
    ----------
    path : path
        The file.
    what : str
        What the file is, for the messages: ``"normative table"`` gives "normative
        table not found", "cannot read the normative table (...)", "normative table is
        not valid JSON (...)".
    error : type
        The :class:`~dmx.errors.InputError` subclass raised (e.g. ``LandmarkError``).
    not_found : str
        Appended to the "not found" message, e.g. what to give instead.

    Raises
    ------
    InputError
        (``error``) missing, unreadable, not UTF-8 or not JSON.
    """
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(p, f"{what} not found{f' ({not_found})' if not_found else ''}") from None
    except IsADirectoryError:
        raise error(p, f"{what} expected, found a folder") from None
    except OSError as exc:
        raise error(p, f"cannot read the {what} ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(p, f"{what} is not valid JSON ({exc})") from None


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = False) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    The folder is created if needed; the file is an ordinary readable one (0644). With
    ``fsync`` the data is flushed to disk before the rename (for a record that must
    survive a power cut, e.g. the batch manifest).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _blocking_file(folder: Path) -> Path | None:
    """The first existing non-folder among ``folder`` and its parents (``None`` when there is none)."""
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def prepare_output_dir(path: str | Path, *, what: str = "output folder") -> Path:
    """Create the output folder ``path`` if needed and check that files can be written into it.

    Called before any work, so that an unusable ``--out`` costs the user one line, not an analysis.

    Raises
    ------
    dmx.errors.OutputError
        Naming ``path`` and the problem: a file is in the way, the folder cannot be created, or
        nothing can be written into it.
    """
    path = Path(path)
    blocker = _blocking_file(path)
    if blocker == path:
        raise OutputError(path, f"cannot be used as the {what}: it is a file, not a folder")
    if blocker is not None:
        raise OutputError(path, f"cannot create the {what}: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path, f"cannot create the {what} ({exc.strerror or type(exc).__name__})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".dmx-write-check.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            path, f"cannot write into the {what} ({exc.strerror or type(exc).__name__})"
        ) from None
    return path


def prepare_output_file(path: str | Path, *, what: str = "output file") -> Path:
    """Check that the file ``path`` can be written (creating its folder); see :func:`prepare_output_dir`.

    Raises
    ------
    dmx.errors.OutputError
        Naming ``path`` and the problem (a folder where the file should be, a file in the way
        of its folder, no permission).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(path, f"cannot be used as the {what}: it is a folder")
    parent = path.parent
    blocker = _blocking_file(parent)
    if blocker is not None:
        raise OutputError(path, f"cannot write the {what}: {blocker} is a file, not a folder")
    try:
        prepare_output_dir(parent)
    except OutputError as exc:
        raise OutputError(path, f"cannot write the {what}: {exc.problem}") from None
    return path
