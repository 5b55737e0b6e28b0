"""Loading the files of the shared DICOM conformance corpus as its MANIFEST.tsv says.

Real files written by other people's software (licences per file in the manifest), read from
``../shared/dicom-corpus`` beside the clone and never copied into this repository. Without it
this module FAILS under CI (``CI`` set) and is one visible skip otherwise (see ``corpus.py``);
the conformance tests that pydicom's bundled files can carry are in ``test_io.py`` and always run.
"""

from __future__ import annotations

import csv
import functools
import json

import numpy as np
import pydicom
import pytest
from cli_support import run_dmx
from corpus import CORPUS, require_shared_corpus
from pydicom.pixels import apply_modality_lut

from dmx.anatomy import CalibrationSource
from dmx.cli import main
from dmx.errors import InputError
from dmx.io.load import load_sequence

require_shared_corpus()

MANIFEST = CORPUS / "MANIFEST.tsv"


def _manifest() -> list[dict[str, str]]:
    with MANIFEST.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _manifest()


@functools.cache
def _load(rel: str):
    return load_sequence(CORPUS / rel)


def _ids(rows):
    return [r["file"] for r in rows]


LOAD_ROWS = [r for r in ROWS if r["expect"] == "load"]
ERROR_ROWS = [r for r in ROWS if r["expect"] == "error"]
SAME_ROWS = [r for r in ROWS if r["same_pixels_as"]]


def test_manifest_has_every_kind_of_row():
    assert {r["expect"] for r in ROWS} == {"load", "error", "load-dicomdir"}
    assert len(LOAD_ROWS) >= 15 and len(ERROR_ROWS) >= 3


@pytest.mark.parametrize("row", LOAD_ROWS, ids=_ids(LOAD_ROWS))
def test_corpus_file_loads_as_the_manifest_says(row):
    seq = _load(row["file"])
    assert seq.frames.shape == (int(row["frames"]), int(row["rows"]), int(row["columns"]))
    assert seq.calibration_source.value == row["calibration_source"]
    assert seq.frames.dtype.isnative
    assert seq.frames.dtype.kind in "ui"  # none of these needs floats
    assert seq.paths == (CORPUS / row["file"],)
    if seq.calibration_source is CalibrationSource.NONE:
        assert seq.mm_per_px is None
    else:
        assert all(v > 0 for v in seq.mm_per_px)


@pytest.mark.parametrize("row", SAME_ROWS, ids=_ids(SAME_ROWS))
def test_corpus_same_pixels_after_loading(row):
    a = _load(row["file"]).frames
    b = _load(row["same_pixels_as"]).frames
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("row", ERROR_ROWS, ids=_ids(ERROR_ROWS))
def test_corpus_bad_file_fails_with_one_clear_line(row):
    path = CORPUS / row["file"]
    with pytest.raises(InputError) as info:
        load_sequence(path)
    message = str(info.value)
    assert path.name in message
    assert "\n" not in message and "Traceback" not in message
    assert info.value.path == path


def test_corpus_specific_problems_are_named():
    with pytest.raises(InputError, match="shorter than its header says"):
        load_sequence(CORPUS / "real/MR_truncated.dcm")
    with pytest.raises(InputError, match="cut short"):
        load_sequence(CORPUS / "real/emri_small_jpeg_2k_lossless_too_short.dcm")
    with pytest.raises(InputError, match="cannot decode the JPEG 2000"):
        load_sequence(CORPUS / "real/966.dcm")


def test_zero_pixel_spacing_is_skipped_with_a_warning():
    seq = _load("real/RG1_UNCR.dcm")
    assert seq.calibration_source is CalibrationSource.NONE and seq.mm_per_px is None
    assert any("PixelSpacing (0028,0030)" in w and "ignored" in w for w in seq.warnings)


def test_frame_time_and_metadata_of_the_xa_cine():
    seq = _load("real/XA-MONO2-8-12x-catheter.dcm")
    np.testing.assert_allclose(seq.frame_time_ms, np.full(12, 33.0))
    np.testing.assert_allclose(seq.time_ms[:3], [0.0, 33.0, 66.0])
    assert seq.study.modality == "XA"
    assert seq.photometric_interpretation == "MONOCHROME2"
    assert seq.transfer_syntax == "1.2.840.10008.1.2.4.70"
    assert seq.bits_stored == 8 and seq.frames.dtype == np.uint8
    assert seq.kind == "multiframe"


def test_monochrome1_is_inverted_over_the_stored_range():
    raw = pydicom.dcmread(CORPUS / "real/dx_image.dcm").pixel_array
    seq = _load("real/dx_image.dcm")
    assert seq.photometric_interpretation == "MONOCHROME1"
    np.testing.assert_array_equal(seq.frames[0], 255 - raw.astype(int))
    raw15 = pydicom.dcmread(CORPUS / "real/RG1_UNCR.dcm").pixel_array
    np.testing.assert_array_equal(_load("real/RG1_UNCR.dcm").frames[0], 32767 - raw15.astype(int))
    # the brightest stored value becomes the darkest displayed one
    assert seq.frames[0][raw == raw.max()].max() == 255 - raw.max()


def test_modality_lut_sequence_is_applied_then_inverted():
    ds = pydicom.dcmread(CORPUS / "real/CR-ModalitySequenceLUT.dcm")
    lut_values = apply_modality_lut(ds.pixel_array, ds).astype(int)
    loaded = _load("real/CR-ModalitySequenceLUT.dcm").frames[0].astype(int)
    total = loaded + lut_values  # MONOCHROME1: loaded = min + max - lut(raw), a constant sum
    assert np.unique(total).size == 1
    assert not np.array_equal(lut_values, ds.pixel_array)  # the LUT really changed values


def test_acr_nema_file_without_file_meta_loads():
    seq = _load("real/CR-MONO1-10-chest.dcm")
    assert seq.transfer_syntax == "1.2.840.10008.1.2"
    assert seq.frames.shape == (1, 440, 440) and int(seq.frames.max()) <= 1023


# --- dmx info on corpus files ---------------------------------------------------------------------------


def test_info_json_on_a_corpus_file(capsys):
    assert main(["info", "--json", str(CORPUS / "real" / "dx_image.dcm")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["frames"], d["rows"], d["columns"]) == (1, 169, 211)
    assert d["calibration"] == {"mm_per_px": [1.2, 1.201199999999], "source": "PixelSpacing"}
    assert d["modality"] == "DX" and d["photometric_interpretation"] == "MONOCHROME1"
    assert d["transfer_syntax"] == {"uid": "1.2.840.10008.1.2.1", "name": "Explicit VR Little Endian"}
    assert "patient_name" not in json.dumps(d)


def test_info_text_on_the_xa_cine(capsys):
    assert main(["info", str(CORPUS / "real" / "XA-MONO2-8-12x-catheter.dcm")]) == 0
    out = capsys.readouterr().out
    assert "frames:          12" in out
    assert "rows x columns:  512 x 512" in out
    assert "1.2.840.10008.1.2.4.70" in out and "JPEG Lossless" in out
    assert "frame time:      33 ms" in out
    assert "calibration:     none" in out


def test_undecodable_corpus_file_is_one_line_exit_2_in_a_real_process():
    proc = run_dmx("info", str(CORPUS / "real" / "966.dcm"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dmx: error: {CORPUS / 'real' / '966.dcm'}: cannot decode the JPEG 2000 Image Compression "
        "(Lossless Only) pixel data (codestream damaged or unsupported)"
    ]
