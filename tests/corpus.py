"""Where the DICOM conformance files the tests read live, and what happens when they are absent.

Two sources:

- **pydicom's bundled test files** (``pydicom/data/test_files``, installed with pydicom, MIT
  licence; see pydicom's ``LICENSE`` and ``data/test_files/README.txt``): MR_small in eight
  transfer syntaxes, MR_truncated, a deflated file, big-endian and files without preamble or
  file meta, and the DICOMDIR test set. Always present: the tests on them always run.
- **The shared conformance corpus** (``../shared/dicom-corpus`` beside the clone, driven by its
  ``MANIFEST.tsv``; real files from other projects, licences per file in the manifest; not copied
  into this repository): the real XA cines, CR/DX radiographs, MONOCHROME1, Modality LUT Sequence,
  ACR-NEMA. Its tests are in ``test_io_corpus.py``; when it is absent they FAIL under CI (the
  ``CI`` environment variable set, as in ``.ci/run``) and otherwise are one visible skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydicom.data
import pytest

#: The shared conformance corpus (``shared/`` beside the clone).
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "dicom-corpus"

#: pydicom's bundled test files (installed with pydicom: always present).
PYDICOM_FILES = Path(pydicom.data.get_testdata_file("MR_small.dcm", read=False)).parent

#: pydicom's DICOMDIR test set: a DICOMDIR (and variants) with 13 series in 31 files.
PYDICOM_DICOMDIR = PYDICOM_FILES / "dicomdirtests"


def pydicom_file(name: str) -> Path:
    """A file of pydicom's bundled test data, which must be there (no download)."""
    path = PYDICOM_FILES / name
    if not path.is_file():
        raise FileNotFoundError(f"pydicom's bundled test file {name} is missing from {PYDICOM_FILES}")
    return path


def require_shared_corpus() -> None:
    """At the top of a test module that needs the shared corpus: fail under CI, else skip once.

    Outside CI (a contributor's fresh clone without ``../shared``) the module is one visible
    skip giving the reason; with ``CI`` set a missing corpus is a collection error, so it can
    never pass unnoticed.
    """
    if (CORPUS / "MANIFEST.tsv").is_file():
        return
    reason = f"shared DICOM conformance corpus not found at {CORPUS} (MANIFEST.tsv)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run these tests", pytrace=False)
    pytest.skip(f"{reason}: the tests over it are skipped (CI runs them)", allow_module_level=True)
