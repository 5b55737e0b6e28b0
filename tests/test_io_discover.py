"""Finding studies in an inbox of any layout, accounting for every file."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from corpus import PYDICOM_DICOMDIR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_io import _write_video, write_image

from dmx.errors import InputError
from dmx.io.discover import InputKind, discover, find_studies
from dmx.io.load import load_input, load_sequence


def _write_report(path: Path) -> Path:
    """A DICOM object without an image (a structured report, as PACS exports put beside images)."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3.9"
    ds.SeriesInstanceUID = "1.2.3.9.9"
    ds.PatientName = "Doe^Jane"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    root = tmp_path / "inbox"
    series = root / "patient1" / "study1" / "series1"
    series.mkdir(parents=True)
    for n in (2, 3, 1):
        write_image(
            series / f"IM{4 - n}",
            np.full((8, 8), n, np.uint8),
            series_uid="1.2.3.1.1",
            study_uid="1.2.3.1",
            InstanceNumber=n,
        )
    write_image(
        root / "patient1" / "study1" / "cine.dcm",
        np.zeros((5, 8, 8), np.uint16),
        series_uid="1.2.3.1.2",
        study_uid="1.2.3.1",
    )
    (root / "zz_exported_twice").mkdir()
    shutil.copy(
        series / "IM1", root / "zz_exported_twice" / "copy_of_IM1"
    )  # walked after: the copy is skipped
    other = root / "patient2"
    other.mkdir()
    _write_video(other / "neck.avi", n=4)
    (other / "readme.txt").write_text("hello")
    (other / "neck.avi.landmarks.json").write_text("{}")
    (root / "patient1" / "study1" / "series1" / "landmarks.json").write_text("{}")
    (other / ".DS_Store").write_bytes(bytes(range(256)))
    _write_report(other / "report.dcm")
    return root


def test_inbox_is_grouped_and_every_file_is_accounted_for(inbox):
    found = discover(inbox)
    kinds = sorted(s.kind.value for s in found.studies)
    assert kinds == ["dicom-series", "multiframe", "video"]
    series = next(s for s in found.studies if s.kind is InputKind.DICOM_SERIES)
    assert [p.name for p in series.paths] == ["IM3", "IM2", "IM1"]  # InstanceNumber 1, 2, 3
    assert series.series_uid == "1.2.3.1.1" and series.study_uid == "1.2.3.1"
    assert series.modality == "RF"
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert reasons["readme.txt"].startswith("not a DICOM file")
    assert reasons[".DS_Store"].startswith("not a DICOM file")
    assert reasons["report.dcm"].startswith("DICOM without an image")
    assert reasons["copy_of_IM1"].startswith("duplicate: same SOP Instance UID as")
    assert reasons["neck.avi.landmarks.json"] == reasons["landmarks.json"] == "landmark file"
    used = {p for s in found.studies for p in s.paths} | {s.path for s in found.skipped}
    assert used == {p for p in inbox.rglob("*") if p.is_file()}


def test_log_counts_skipped_files_apart_from_landmark_files(inbox, caplog):
    with caplog.at_level("INFO", logger="dmx"):
        discover(inbox)
    lines = [r.getMessage() for r in caplog.records]
    skipped = next(m for m in lines if m.startswith("skipped "))
    assert skipped.startswith("skipped 4 files: ") and "landmark" not in skipped
    assert "2 landmark files (read with their studies)" in lines


def test_ids_are_stable_unique_and_carry_no_names(inbox):
    first = [s.id for s in find_studies(inbox)]
    again = [s.id for s in find_studies(inbox)]
    assert first == again
    assert len(set(first)) == len(first)
    for ident in first:
        assert re.fullmatch(r"[0-9a-f]{16}", ident)


def test_found_inputs_load(inbox):
    loaded = {s.kind: load_input(s) for s in find_studies(inbox)}
    assert loaded[InputKind.DICOM_SERIES].frames[:, 0, 0].tolist() == [1, 2, 3]
    assert loaded[InputKind.MULTIFRAME].n_frames == 5
    assert loaded[InputKind.VIDEO].n_frames == 4


def test_single_file_and_missing_root(tmp_path):
    p = write_image(tmp_path / "one.dcm", np.zeros((3, 4, 4), np.uint8))
    (study,) = find_studies(p)
    assert study.kind is InputKind.MULTIFRAME and study.paths == (p,)
    with pytest.raises(InputError, match="not found"):
        discover(tmp_path / "absent")


def test_dicomdir_lists_its_series():
    found = discover(PYDICOM_DICOMDIR / "DICOMDIR")
    assert len(found.studies) == 13
    assert all(s.kind is InputKind.DICOMDIR and s.dicomdir.name == "DICOMDIR" for s in found.studies)
    assert sum(len(s.paths) for s in found.studies) == 31
    empty = discover(PYDICOM_DICOMDIR / "DICOMDIR-empty.dcm")
    assert empty.studies == () and empty.skipped == ()
    tiny = discover(PYDICOM_DICOMDIR / "TINY_ALPHA" / "DICOMDIR")
    assert tiny.studies == () and len(tiny.skipped) == 50


def test_logs_carry_no_patient_names(inbox, caplog):
    caplog.set_level("DEBUG", logger="dmx")
    for study in find_studies(inbox):
        load_input(study)
    load_sequence(inbox / "patient1" / "study1" / "cine.dcm")
    assert "skipped 4 files" in caplog.text and "loaded 5 frames of 8 x 8" in caplog.text
    assert "Doe" not in caplog.text and "Jane" not in caplog.text


def test_a_truncated_copy_does_not_displace_the_complete_file(tmp_path):
    full = tmp_path / "a" / "cine.dcm"
    full.parent.mkdir()
    write_image(full, np.zeros((4, 16, 16), np.uint8))
    cut = tmp_path / "0_first_in_walk" / "cine.dcm"
    cut.parent.mkdir()
    cut.write_bytes(full.read_bytes()[: full.stat().st_size - 100])
    found = discover(tmp_path)
    assert [s.paths for s in found.studies] == [(full,)]
    assert [s.path for s in found.skipped] == [cut]
    assert found.skipped[0].reason.startswith("duplicate: same SOP Instance UID as a/cine.dcm")


def _media_copy(tmp_path: Path) -> Path:
    """pydicom's DICOMDIR test set (13 series) copied to ``tmp_path/media``."""
    media = tmp_path / "media"
    shutil.copytree(PYDICOM_DICOMDIR, media)
    return media


def _first_image_record(ds):
    return next(r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE")


def test_dicomdir_record_pointing_outside_its_folder_is_refused(tmp_path, caplog):
    import pydicom

    media = _media_copy(tmp_path)
    ds = pydicom.dcmread(media / "DICOMDIR")
    record = _first_image_record(ds)
    inside = media.joinpath(*record.ReferencedFileID)  # 77654033/CR1/6154: the 'Cervical LAT' series
    (tmp_path / "secret").mkdir()
    shutil.move(inside, tmp_path / "secret" / "OUTSIDE")
    with warnings.catch_warnings():  # ".." is not a valid CS value: that is the point
        warnings.simplefilter("ignore")
        record.ReferencedFileID = ["..", "secret", "OUTSIDE"]
        ds.save_as(media / "DICOMDIR")
    caplog.set_level("WARNING", logger="dmx")
    found = discover(media / "DICOMDIR")
    listed = {p.resolve() for s in found.studies for p in s.paths}
    assert (tmp_path / "secret" / "OUTSIDE").resolve() not in listed
    assert len(found.studies) == 12 and len(listed) == 30  # 13 series, 31 files, less the one outside
    assert "refused the record naming ../secret/OUTSIDE" in caplog.text
    assert "outside the DICOMDIR's folder" in caplog.text
    lat = "1.3.6.1.4.1.5962.1.1.0.0.0.1196527414.5534.0.10"
    with pytest.raises(InputError, match=f"series {lat} not found"):
        load_sequence(media / "DICOMDIR", series=lat)


def test_dicomdir_record_that_is_a_symlink_leading_outside_is_refused(tmp_path, caplog):
    import pydicom

    media = _media_copy(tmp_path)
    inside = media.joinpath(*_first_image_record(pydicom.dcmread(media / "DICOMDIR")).ReferencedFileID)
    outside = tmp_path / "elsewhere.dcm"
    shutil.move(inside, outside)
    inside.symlink_to(outside)
    caplog.set_level("WARNING", logger="dmx")
    found = discover(media / "DICOMDIR")
    assert len(found.studies) == 12
    assert "refused the record naming 77654033/CR1/6154" in caplog.text
    # a symlink that stays inside the folder is followed as usual
    inside.unlink()
    shutil.move(outside, media / "77654033" / "CR1" / "real6154")
    inside.symlink_to(media / "77654033" / "CR1" / "real6154")
    assert len(discover(media / "DICOMDIR").studies) == 13
