"""Results as DICOM objects in the source study: a TID 1500 SR, key-frame images, the PDF report.

``dmx analyze ... --dicom`` (and ``dmx batch --dicom``) call :func:`write_dicom_outputs`,
which writes into ``OUT/dicom/``:

- ``sr.dcm``: Comprehensive SR, TID 1500 Measurement Report (:mod:`dmx.dicom.sr`);
- ``key_neutral.dcm``, ``key_flexion.dcm``, ``key_extension.dcm``: Secondary Capture images
  of the key frames with the overlays burned in (:mod:`dmx.dicom.images`);
- ``report_pdf.dcm`` with ``--pdf``: Encapsulated PDF (:mod:`dmx.dicom.encapsulated`).

Every object has the source's Study Instance UID and its patient and study
modules, a new series of its own, and dmx as manufacturer and software version.
highdicom is imported only here, lazily: it is the ``dicom`` extra
(``pip install 'dmx[dicom]'``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from dmx.dicom.encapsulated import build_encapsulated_pdf
from dmx.dicom.images import build_key_images, draw_key_frame
from dmx.dicom.source import FrameRef, SourceStudy, read_source_study, result_uid
from dmx.dicom.sr import build_sr
from dmx.errors import UsageError

__all__ = [
    "DICOM_DIR",
    "FrameRef",
    "SourceStudy",
    "build_encapsulated_pdf",
    "build_key_images",
    "build_sr",
    "draw_key_frame",
    "read_source_study",
    "require_extra",
    "result_uid",
    "save_atomic",
    "write_dicom_outputs",
]

#: Folder (under the output folder) of the DICOM results.
DICOM_DIR = "dicom"
INSTALL_HINT = "pip install 'dmx[dicom]'"


def require_extra(option: str = "--dicom", modules: tuple[str, ...] = ("highdicom",)) -> None:
    """Raise a one-line :class:`UsageError` when a module of the ``dicom`` extra is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"{option} needs {', '.join(missing)}: {INSTALL_HINT}")


def save_atomic(dataset: Any, path: str | Path) -> Path:
    """Write ``dataset`` as a DICOM file (with its file meta) through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        dataset.save_as(tmp, enforce_file_format=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_dicom_outputs(
    analysis: Any, out_dir: str | Path, *, measurements_text: str, pdf_path: str | Path | None = None
) -> dict[str, Path]:
    """Write the SR, the key-frame images and (given ``pdf_path``) the Encapsulated PDF.

    Parameters
    ----------
    analysis : dmx.pipeline.Analysis
        The analysed study; it must have been read from DICOM.
    out_dir : path
        Folder to write into (``OUT/dicom``).
    measurements_text : str
        The measurements.json text exactly as written (values and UIDs derive from it).
    pdf_path : path, optional
        The PDF report to encapsulate.

    Returns
    -------
    dict
        ``{"sr": path, "key_neutral": path, ..., "pdf": path}``.

    Raises
    ------
    UsageError
        Without the ``dicom`` extra, or when the study was not read from DICOM.
    """
    require_extra()
    seq = analysis.sequence
    source = read_source_study(seq.paths, seq.n_frames, label=str(seq.paths[0]) if seq.paths else "study")
    out = Path(out_dir)
    written: dict[str, Path] = {}
    m = analysis.measurements
    sr = build_sr(m, source, measurements_text=measurements_text)
    written["sr"] = save_atomic(sr, out / "sr.dcm")
    for key, img in build_key_images(analysis, source, measurements_text=measurements_text).items():
        written[f"key_{key}"] = save_atomic(img, out / f"key_{key}.dcm")
    if pdf_path is not None:
        version = str((m.get("software") or {}).get("version") or "unknown")
        doc = build_encapsulated_pdf(
            pdf_path, source, measurements_text=measurements_text, software_version=version
        )
        written["pdf"] = save_atomic(doc, out / "report_pdf.dcm")
    return written
