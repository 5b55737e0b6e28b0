"""``dmx info``: what it prints, and one clean line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from corpus import pydicom_file
from test_io import write_image

from dmx.cli import main


def _info_json(capsys, *args: str) -> dict:
    assert main(["info", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _cine(path: Path, **attrs) -> Path:
    return write_image(path, np.zeros((6, 16, 20), np.uint16), bits_stored=12, FrameTime="33.3", **attrs)


def test_info_json_on_a_bundled_file(capsys):
    d = _info_json(capsys, str(pydicom_file("MR_small_bigendian.dcm")))
    assert (d["frames"], d["rows"], d["columns"]) == (1, 64, 64)
    assert d["calibration"] == {"mm_per_px": [0.3125, 0.3125], "source": "PixelSpacing"}
    assert d["modality"] == "MR" and d["photometric_interpretation"] == "MONOCHROME2"
    assert d["transfer_syntax"] == {"uid": "1.2.840.10008.1.2.2", "name": "Explicit VR Big Endian"}
    assert d["dtype"] == "int16" and "patient_name" not in json.dumps(d)


def test_info_text_on_a_bundled_multiframe_file(capsys):
    assert main(["info", str(pydicom_file("rtdose_rle.dcm"))]) == 0
    out = capsys.readouterr().out
    assert "frames:          15" in out
    assert "rows x columns:  10 x 10" in out
    assert "RLE Lossless (1.2.840.10008.1.2.5)" in out


def test_acceptance_pixel_spacing(tmp_path, capsys):
    p = _cine(
        tmp_path / "ps.dcm",
        PixelSpacing=[0.25, 0.2],
        ImagerPixelSpacing=[0.3, 0.3],
        EstimatedRadiographicMagnificationFactor=1.2,
    )
    d = _info_json(capsys, str(p))
    assert (d["frames"], d["rows"], d["columns"]) == (6, 16, 20)
    assert d["calibration"] == {"mm_per_px": [0.25, 0.2], "source": "PixelSpacing"}
    assert d["frame_time_ms"] == pytest.approx(33.3)


def test_acceptance_imager_spacing_with_magnification(tmp_path, capsys):
    p = _cine(
        tmp_path / "ermf.dcm", ImagerPixelSpacing=[0.3, 0.3], EstimatedRadiographicMagnificationFactor=1.2
    )
    d = _info_json(capsys, str(p))
    assert d["calibration"]["source"] == "ImagerPixelSpacing/ERMF"
    assert d["calibration"]["mm_per_px"] == pytest.approx([0.25, 0.25])
    assert main(["info", str(p)]) == 0
    assert "0.25 x 0.25 mm/px (row x column) from ImagerPixelSpacing/ERMF" in capsys.readouterr().out


def test_acceptance_imager_spacing_alone_warns(tmp_path, capsys):
    p = _cine(tmp_path / "ips.dcm", ImagerPixelSpacing=[0.3, 0.3])
    d = _info_json(capsys, str(p))
    assert d["calibration"] == {"mm_per_px": [0.3, 0.3], "source": "ImagerPixelSpacing"}
    assert any("not corrected for magnification" in w for w in d["warnings"])


def test_acceptance_no_calibration(tmp_path, capsys):
    p = _cine(tmp_path / "none.dcm")
    d = _info_json(capsys, str(p))
    assert d["calibration"] == {"mm_per_px": None, "source": "none"}
    d = _info_json(capsys, str(p), "--mm-per-px", "0.18")
    assert d["calibration"] == {"mm_per_px": [0.18, 0.18], "source": "user"}


def test_info_chooses_a_series_in_a_folder(tmp_path, capsys):
    write_image(tmp_path / "a.dcm", np.zeros((4, 4), np.uint8), series_uid="1.2.3.100", InstanceNumber=1)
    write_image(tmp_path / "b.dcm", np.zeros((4, 4), np.uint8), series_uid="1.2.3.200", InstanceNumber=1)
    assert main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "2 series found" in err and "1.2.3.100" in err and "1.2.3.200" in err
    d = _info_json(capsys, str(tmp_path), "--series", "1.2.3.200")
    assert d["frames"] == 1 and d["study"]["series_uid"] == "1.2.3.200"


def _one_error_line(capsys, *args: str) -> str:
    assert main(["info", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    line = _one_error_line(capsys, str(tmp_path / "absent.dcm"))
    assert "absent.dcm" in line and "not found" in line


def test_non_dicom_file_is_one_line_exit_2(tmp_path, capsys):
    p = tmp_path / "photo.dcm"
    p.write_bytes(b"\xff\xd8\xff\xe0" + bytes(500))
    line = _one_error_line(capsys, str(p))
    assert "photo.dcm" in line and "not a DICOM file" in line


def test_truncated_file_is_one_line_exit_2(capsys):
    line = _one_error_line(capsys, str(pydicom_file("MR_truncated.dcm")))
    assert "MR_truncated.dcm" in line and "shorter than its header says" in line


def test_bad_mm_per_px_is_a_usage_error(tmp_path, capsys):
    line = _one_error_line(capsys, str(_cine(tmp_path / "c.dcm")), "--mm-per-px", "-1")
    assert "--mm-per-px" in line


def test_real_process_prints_one_line_for_a_bad_file(tmp_path):
    from cli_support import run_dmx

    bad = pydicom_file("MR_truncated.dcm")
    proc = run_dmx("info", str(bad))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dmx: error: {bad}: file cut short: pixel data shorter than its header says (8130 of 8192 bytes)"
    ]
