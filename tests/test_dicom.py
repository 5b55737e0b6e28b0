"""dmx.dicom: the results as DICOM in the source study (TID 1500 SR, key images, Encapsulated PDF).

Every file is checked with dciodvfy (dicom3tools) and the SR with dsrdump (dcmtk): CI installs
them; a machine without them fails these tests instead of skipping them.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from dmx.cli import main
from dmx.dicom import codes

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "s_curve_unstable"


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom") / "out"
    code = main(
        [
            "analyze",
            str(SAMPLE / "study.dcm"),
            "--landmarks",
            str(SAMPLE / "landmarks.json"),
            "--out",
            str(out),
            "--dicom",
            "--pdf",
        ]
    )
    assert code == 0
    return out


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (Debian: dicom3tools / dcmtk; .ci/run installs them)"
    return path


def _measurements(out: Path) -> dict:
    return json.loads((out / "measurements.json").read_text(encoding="utf-8"))


def _groups(sr) -> list:
    """The TID 1501 measurement groups of a TID 1500 report, as pydicom content items."""
    measurements = [
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "126010"  # Imaging Measurements
    ]
    assert len(measurements) == 1
    return list(measurements[0].ContentSequence)


def _tracking_id(group) -> str:
    return next(
        i.TextValue for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039"
    )


def _nums(group) -> dict[str, tuple[float, str]]:
    out = {}
    for item in group.ContentSequence:
        if item.ValueType == "NUM":
            mv = item.MeasuredValueSequence[0]
            out[item.ConceptNameCodeSequence[0].CodeValue] = (
                float(mv.FloatingPointValue),
                mv.MeasurementUnitsCodeSequence[0].CodeValue,
            )
    return out


def _codes(group) -> dict[str, str]:
    return {
        i.ConceptNameCodeSequence[0].CodeValue: i.ConceptCodeSequence[0].CodeValue
        for i in group.ContentSequence
        if i.ValueType == "CODE" and i.RelationshipType == "CONTAINS"
    }


def test_writes_sr_key_images_and_pdf(result):
    names = sorted(p.name for p in (result / "dicom").iterdir())
    assert names == ["key_extension.dcm", "key_flexion.dcm", "key_neutral.dcm", "report_pdf.dcm", "sr.dcm"]


def test_every_object_sits_in_the_source_study_in_its_own_series(result):
    src = pydicom.dcmread(SAMPLE / "study.dcm", stop_before_pixels=True)
    series = set()
    for path in (result / "dicom").iterdir():
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == src.StudyInstanceUID
        assert ds.PatientID == src.PatientID and ds.PatientName == src.PatientName
        assert ds.StudyDate == src.StudyDate
        assert ds.SeriesInstanceUID != src.SeriesInstanceUID
        assert ds.SOPInstanceUID != src.SOPInstanceUID
        assert ds.Manufacturer == "dmx" and ds.SoftwareVersions
        series.add((ds.Modality, ds.SeriesInstanceUID))
    assert {m for m, _ in series} == {"SR", "OT", "DOC"}
    assert len({uid for _, uid in series}) == 3


def test_every_file_passes_dciodvfy(result):
    dciodvfy = _tool("dciodvfy")
    for path in sorted((result / "dicom").iterdir()):
        proc = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Error" in ln]
        assert not errors, f"{path.name}: {errors}"


def test_sr_is_read_by_dsrdump(result):
    proc = subprocess.run(
        [_tool("dsrdump"), str(result / "dicom" / "sr.dcm")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "Imaging Measurement Report" in proc.stdout
    assert '"Tracking Identifier")="C4-C5"' in proc.stdout
    assert '(49400002,SCT,"C4/C5 disc")' in proc.stdout


def test_sr_values_equal_measurements_json_exactly(result):
    m = _measurements(result)
    sr = pydicom.dcmread(result / "dicom" / "sr.dcm")
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    groups = {_tracking_id(g): g for g in _groups(sr)}
    assert set(groups) == set(m["levels"]) | {"curve neutral", "curve flexion", "curve extension", "ADI"}
    assert _nums(groups["ADI"]) == {codes.ADI_MAX.value: (m["adi"]["max_mm"], "mm")}  # the sample has C1
    compared = 0
    for name, level in m["levels"].items():
        nums = _nums(groups[name])
        for key, concept, unit in (
            ("rotation_rom_deg", codes.ROTATION_ROM, "deg"),
            ("translation_mm", codes.TRANSLATION_MM, "mm"),
            ("translation_pct", codes.TRANSLATION_PCT, "%"),
            ("rotation_range_deg", codes.ROTATION_RANGE, "deg"),
            ("offset_range_mm", codes.OFFSET_RANGE, "mm"),
            ("excursion_mm", codes.EXCURSION, "mm"),
        ):
            assert nums[concept.value] == (level[key], unit), (name, key)
            compared += 1
    for key in ("neutral", "flexion", "extension"):
        nums = _nums(groups[f"curve {key}"])
        curve = m["curve"][key]
        assert nums[codes.COBB_ANGLE.value] == (curve["cobb_c2c7_deg"], "deg")
        assert nums[codes.ARA.value] == (curve["ara_c2c7_deg"], "deg")
        assert nums[codes.CCI.value] == (curve["cci"], "%")
        compared += 3
    assert compared == 6 * len(m["levels"]) + 9 == 39


def test_sr_flags_and_curve_classes(result):
    m = _measurements(result)
    sr = pydicom.dcmread(result / "dicom" / "sr.dcm")
    groups = {_tracking_id(g): g for g in _groups(sr)}
    c45 = _codes(groups["C4-C5"])
    assert m["levels"]["C4-C5"]["flags"] == [
        "translation_gt_3_5mm",
        "translation_gt_20pct",
        "translation_gt_2mm",
    ]
    assert c45[codes.FLAGS["translation_gt_3_5mm"].value] == codes.PRESENT.value
    assert c45[codes.FLAGS["translation_gt_20pct"].value] == codes.PRESENT.value
    assert c45[codes.FLAGS["translation_gt_2mm"].value] == codes.PRESENT.value
    assert c45[codes.FLAGS["insufficient_motion"].value] == codes.ABSENT.value
    c23 = _codes(groups["C2-C3"])
    assert {c23[c.value] for c in codes.FLAGS.values()} == {codes.ABSENT.value}
    assert m["curve"]["neutral"]["class"] == "s_curve" and m["curve"]["neutral"]["s_type"] == "upper_kyphotic"
    assert _codes(groups["curve neutral"])[codes.CURVE_CLASS.value] == "CURVE-S-UPPER"
    assert m["curve"]["flexion"]["class"] == "kyphotic"
    assert _codes(groups["curve flexion"])[codes.CURVE_CLASS.value] == "CURVE-KYPHOTIC"
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99DMX"


def test_sr_references_the_key_frames_of_the_source(result):
    m = _measurements(result)
    src = pydicom.dcmread(SAMPLE / "study.dcm", stop_before_pixels=True)
    sr = pydicom.dcmread(result / "dicom" / "sr.dcm")
    groups = {_tracking_id(g): g for g in _groups(sr)}
    rom = next(
        i
        for i in groups["C4-C5"].ContentSequence
        if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeValue == codes.ROTATION_ROM.value
    )
    ref = next(i for i in rom.ContentSequence if "ReferencedSOPSequence" in i).ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert list(ref.ReferencedFrameNumber) == [m["frames"]["flexion"] + 1, m["frames"]["extension"] + 1]
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


def test_key_images_show_the_key_frames_with_overlays(result):
    m = _measurements(result)
    src = pydicom.dcmread(SAMPLE / "study.dcm")
    for key in ("neutral", "flexion", "extension"):
        ds = pydicom.dcmread(result / "dicom" / f"key_{key}.dcm")
        i = m["frames"][key]
        assert ds.SourceImageSequence[0].ReferencedFrameNumber == i + 1
        assert ds.BurnedInAnnotation == "YES" and ds.PhotometricInterpretation == "RGB"
        rgb = ds.pixel_array
        assert rgb.shape == (src.Rows, src.Columns, 3)
        # the frame is grey; the overlays are the only coloured pixels, and they are there
        coloured = (abs(rgb[..., 0].astype(int) - rgb[..., 2]) > 60).sum()
        assert 500 < coloured < 0.2 * rgb.shape[0] * rgb.shape[1]
        # a viewer's ruler on it gives the mm of measurements.json, and says where they came from
        assert [float(v) for v in ds.PixelSpacing] == m["calibration"]["mm_per_px"] == [0.3, 0.3]
        assert m["calibration"]["source"] == "ImagerPixelSpacing/ERMF"
        assert ds.PixelSpacingCalibrationType == "GEOMETRY"
        assert ds.ImageComments.endswith("pixel spacing: dmx calibration from ImagerPixelSpacing/ERMF")


def test_uncalibrated_key_image_has_no_pixel_spacing():
    from pydicom.dataset import Dataset

    from dmx.dicom.images import _pixel_spacing

    for calibration in ({"mm_per_px": None, "source": "none"}, {}):
        ds = Dataset()
        ds.ImageComments = "dmx flexion: frame 3 of 9"
        _pixel_spacing(ds, calibration)
        assert "PixelSpacing" not in ds and ds.ImageComments == "dmx flexion: frame 3 of 9"
    ds = Dataset()
    ds.ImageComments = "t"
    _pixel_spacing(ds, {"mm_per_px": [0.2, 0.25], "source": "user"})
    assert [float(v) for v in ds.PixelSpacing] == [0.2, 0.25] and "PixelSpacingCalibrationType" not in ds
    assert ds.ImageComments == "t; pixel spacing: dmx calibration from user"


def test_encapsulated_pdf_holds_the_pdf_report(result):
    ds = pydicom.dcmread(result / "dicom" / "report_pdf.dcm")
    pdf = (result / "report.pdf").read_bytes()
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert ds.EncapsulatedDocumentLength == len(pdf)
    assert bytes(ds.EncapsulatedDocument)[: len(pdf)] == pdf


def test_same_analysis_same_uids(result, tmp_path):
    out = tmp_path / "again"
    args = ["analyze", str(SAMPLE / "study.dcm"), "--landmarks", str(SAMPLE / "landmarks.json")]
    assert main([*args, "--out", str(out), "--dicom", "--no-report"]) == 0
    for name in ("sr.dcm", "key_flexion.dcm"):
        a = pydicom.dcmread(result / "dicom" / name, stop_before_pixels=True)
        b = pydicom.dcmread(out / "dicom" / name, stop_before_pixels=True)
        assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID


def test_uncertainty_flags_not_evaluated_and_nulls(result, tmp_path):
    """Per-level uncertainty (1 SD) when measurements.json has it; nothing for null or unevaluated."""
    from dmx.dicom import build_sr, read_source_study, save_atomic

    m = copy.deepcopy(_measurements(result))
    lv = m["levels"]["C3-C4"]
    lv["rotation_rom_uncertainty_deg"] = 0.123456789012345
    lv["translation_uncertainty_mm"] = 0.0421
    lv["translation_uncertainty_pct"] = None
    m["levels"]["C2-C3"]["rotation_rom_uncertainty_deg"] = None  # unknown: no SD property
    c56 = m["levels"]["C5-C6"]
    c56["translation_mm"] = None
    c56["flags_not_evaluated"] = ["translation_gt_3_5mm"]
    source = read_source_study([SAMPLE / "study.dcm"], m["frames"]["count"], label="t")
    sr = build_sr(m, source, measurements_text=json.dumps(m))
    groups = {_tracking_id(g): g for g in _groups(sr)}

    def sd(group, concept):
        item = next(
            i
            for i in group.ContentSequence
            if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeValue == concept
        )
        props = [c for c in getattr(item, "ContentSequence", []) if c.ValueType == "NUM"]
        return [float(p.MeasuredValueSequence[0].FloatingPointValue) for p in props]

    path = tmp_path / "sr.dcm"
    save_atomic(sr, path)
    proc = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    assert not [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Error" in ln]
    assert sd(groups["C3-C4"], codes.ROTATION_ROM.value) == [0.123456789012345]
    assert sd(groups["C3-C4"], codes.TRANSLATION_MM.value) == [0.0421]
    assert sd(groups["C3-C4"], codes.TRANSLATION_PCT.value) == []
    assert sd(groups["C2-C3"], codes.ROTATION_ROM.value) == []
    assert codes.TRANSLATION_MM.value not in _nums(groups["C5-C6"])
    assert codes.FLAGS["translation_gt_3_5mm"].value not in _codes(groups["C5-C6"])
    assert codes.FLAGS["translation_gt_20pct"].value in _codes(groups["C5-C6"])


def test_without_the_extra_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "highdicom" else real(name, *a)
    )
    out = tmp_path / "o"
    code = main(
        [
            "analyze",
            str(SAMPLE / "study.dcm"),
            "--landmarks",
            str(SAMPLE / "landmarks.json"),
            "--out",
            str(out),
            "--dicom",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["dmx: error: --dicom needs highdicom: pip install 'dmx[dicom]'"]
    assert not out.exists()  # refused before any work


def test_video_study_is_refused_with_one_line(tmp_path):
    from dmx.dicom.source import read_source_study
    from dmx.errors import UsageError

    with pytest.raises(UsageError, match="needs a DICOM study"):
        read_source_study([], 10, label="clip.mp4")
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\0" * 200)
    with pytest.raises(UsageError, match="needs a DICOM source study: not DICOM"):
        read_source_study([fake], 10, label=str(fake))


def test_batch_dicom_redoes_a_study_analysed_without_it_then_skips_it(tmp_path):
    from dmx.batch import DICOM_ANALYZER, Status, run_batch

    inbox = tmp_path / "inbox" / "a"
    inbox.mkdir(parents=True)
    shutil.copy(SAMPLE / "study.dcm", inbox / "study.dcm")
    shutil.copy(SAMPLE / "landmarks.json", inbox / "landmarks.json")
    out = tmp_path / "out"
    (plain,) = run_batch(tmp_path / "inbox", out).rows
    assert plain.status is Status.OK and not (out / plain.output / "dicom").exists()
    (row,) = run_batch(tmp_path / "inbox", out, analyzer=DICOM_ANALYZER).rows
    assert row.status is Status.OK, row.reason
    assert (out / row.output / "dicom" / "sr.dcm").is_file()
    assert len(list((out / row.output / "dicom").glob("key_*.dcm"))) == 3
    (again,) = run_batch(tmp_path / "inbox", out, analyzer=DICOM_ANALYZER).rows
    assert again.status is Status.SKIPPED and again.reason.startswith("unchanged since")


def test_private_codes_are_short_unique_and_documented():
    values = [c.value for c in codes.private_codes()]
    assert len(values) == len(set(values))
    assert all(
        len(v) <= 16 and len(c.meaning) <= 64 for v, c in zip(values, codes.private_codes(), strict=True)
    )
    assert codes.DMX_SCHEME.startswith("99")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert codes.coding_scheme_table() in readme


def test_sr_names_the_algorithm_its_version_and_thresholds(result):
    from dmx.dicom.source import read_source_study
    from dmx.dicom.sr import build_sr

    def params(sr) -> tuple[set, set]:
        group = {_tracking_id(g): g for g in _groups(sr)}["C4-C5"]
        items = [
            (i.ConceptNameCodeSequence[0].CodeValue, getattr(i, "TextValue", None))
            for i in group.ContentSequence
        ]
        return {v for c, v in items if c == "111002"}, {v for c, v in items if c in ("111001", "111003")}

    sr = pydicom.dcmread(result / "dicom" / "sr.dcm")
    m = _measurements(result)
    p, name_version = params(sr)
    assert name_version == {"dmx", m["software"]["version"]}
    assert {"translation_mm=3.5 mm", "translation_pct=20.0 %", "thresholds: defaults (spec section 7)"} <= p
    m = copy.deepcopy(m)
    m["thresholds"]["translation_mm"].update(value=3.0, origin="/etc/dmx/site.toml")
    source = read_source_study([SAMPLE / "study.dcm"], m["frames"]["count"], label="t")
    p, _ = params(build_sr(m, source, measurements_text=json.dumps(m)))
    assert {"translation_mm=3.0 mm", "thresholds from /etc/dmx/site.toml"} <= p


def test_cli_batch_dicom_uses_the_dicom_analysis(monkeypatch, tmp_path):
    import dmx.batch

    seen = {}

    class Result:
        exit_code = 0

    def fake_run_batch(inbox, out, **kwargs):
        seen.update(kwargs)
        return Result()

    monkeypatch.setattr(dmx.batch, "run_batch", fake_run_batch)
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--dicom"]) == 0
    assert seen["analyzer"] == dmx.batch.DICOM_ANALYZER == "dmx.batch:analyze_study_dicom"
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    assert seen["analyzer"] is None  # the default analysis


def test_sr_holds_the_atlanto_dental_interval(result, tmp_path):
    """The ADI group: the largest value (its frame referenced) and the flag; absent without an ADI."""
    from dmx.dicom import build_sr, read_source_study, save_atomic

    m = copy.deepcopy(_measurements(result))
    n = m["frames"]["count"]
    source = read_source_study([SAMPLE / "study.dcm"], n, label="t")
    no_adi = {k: v for k, v in m.items() if k != "adi"}  # no C1/dens landmarks: no ADI block
    assert "ADI" not in {_tracking_id(g) for g in _groups(build_sr(no_adi, source, measurements_text="a"))}
    per_frame = [None] + [2.5 + 0.01 * i for i in range(n - 1)]
    per_frame[7] = 3.456789012345  # the largest, in frame 7
    m["adi"] = {
        "adi_mm": per_frame,
        "adi_px": None,
        "max_mm": 3.456789012345,
        "flags": ["adi_gt_3mm"],
        "flags_not_evaluated": [],
    }
    sr = build_sr(m, source, measurements_text=json.dumps(m))
    groups = {_tracking_id(g): g for g in _groups(sr)}
    assert _nums(groups["ADI"]) == {codes.ADI_MAX.value: (3.456789012345, "mm")}
    assert _codes(groups["ADI"])[codes.ADI_FLAGS["adi_gt_3mm"].value] == codes.PRESENT.value
    num = next(i for i in groups["ADI"].ContentSequence if i.ValueType == "NUM")
    (ref,) = [c for c in num.ContentSequence if c.ValueType == "IMAGE"]
    assert int(ref.ReferencedSOPSequence[0].ReferencedFrameNumber) == 8  # frame 7, numbered from 1
    path = tmp_path / "sr.dcm"
    save_atomic(sr, path)
    proc = subprocess.run([_tool("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    assert not [ln for ln in (proc.stdout + proc.stderr).splitlines() if "Error" in ln]
    m["adi"].update(max_mm=None, adi_mm=[None] * n, flags=[], flags_not_evaluated=["adi_gt_3mm"])
    groups = {_tracking_id(g) for g in _groups(build_sr(m, source, measurements_text="b"))}
    assert "ADI" not in groups  # nothing measured, nothing evaluated: no group
