"""The study folders of the output: each appears whole or not at all.

The analysis writes into ``OUT/.tmp-<key>-<pid>/``, which :func:`install` renames
to ``OUT/<key>/`` only when complete (an older version goes aside as
``OUT/.old-<key>-<pid>/`` for the moment of the swap). What a crash leaves of
these is put right by :func:`clean_stale` at the start of the next run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path


def temporary_folder(out_root: Path, key: str) -> Path:
    """A fresh, empty ``OUT/.tmp-<key>-<pid>/`` for this process to write one study into."""
    tmp = out_root / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def install(tmp: Path, final: Path) -> None:
    """Move the complete temporary folder into place (replacing an older version)."""
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def remove_temporary(out_root: Path, key: str) -> None:
    """Remove what any process left of study ``key`` in temporary folders (a crashed worker's)."""
    for tmp in out_root.glob(f".tmp-{key}-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def clean_stale(out_root: Path) -> int:
    """Remove temporary folders left by a crashed run; restore a replaced folder whose successor is missing.

    Returns the number of entries cleaned.
    """
    n = 0
    for entry in sorted(out_root.iterdir()):
        name = entry.name
        if name.startswith(".tmp-") and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            n += 1
        elif name.startswith(".old-") and entry.is_dir():
            key = name[len(".old-") :].rsplit("-", 1)[0]
            if not (out_root / key).exists():
                os.replace(entry, out_root / key)
            else:
                shutil.rmtree(entry, ignore_errors=True)
            n += 1
    return n


def previous_success(folder: Path, fingerprint: str) -> str | None:
    """Finish time of an earlier successful run on the same input and landmarks, or None.

    The outputs count as existing when ``folder/batch.json`` records ``fingerprint``
    (:attr:`dmx.batch.StudyJob.fingerprint`) and every file it lists is still there.
    """
    record = output_record(folder, fingerprint)
    return None if record is None else str(record.get("finished_at") or "an earlier run")


def output_record(folder: Path, fingerprint: str) -> dict[str, object] | None:
    """``folder/batch.json`` when it records complete outputs for ``fingerprint``, else None."""
    try:
        record = json.loads((folder / "batch.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("fingerprint") != fingerprint or not fingerprint:
        return None
    outputs = record.get("outputs")
    if not isinstance(outputs, list) or "measurements.json" not in outputs:
        return None
    if not all(isinstance(n, str) and (folder / n).exists() for n in outputs):  # files, dicom/
        return None
    return record
