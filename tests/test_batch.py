"""Tests of dmx.batch: discovery, resumable parallel runs, manifest, atomic folders, crashes."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dmx
from dmx import batch
from dmx.batch import Status, discover_inputs, input_checksum, run_batch
from dmx.cli import main

PACKAGE_ROOT = Path(dmx.__file__).resolve().parents[1]  # where the dmx under test lives
PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "PID-93731"

# A stand-in for the per-study analysis, imported by name in the worker processes
# (a string "module:function", so it works under fork, spawn and on Dask).
FAKE_PIPELINE = """
import json, os, signal, time
from dataclasses import replace
from pathlib import Path

import pydicom

from dmx.batch import analyze_study
from dmx.errors import InputError


def analyze(study, out_dir, *, mm_per_px=None):
    if study.landmarks_path is None:  # the real analysis: automatic landmarks (none on noise)
        return analyze_study(study, out_dir, mm_per_px=mm_per_px)
    landmarks = study.landmarks_path
    label = study.label
    if "crash" in label:
        os._exit(3)  # the worker process dies (segfault, OOM kill ...)
    if "boom" in label:
        raise RuntimeError("unexpected bug")
    if "interrupt" in label:
        raise KeyboardInterrupt
    # Workers start from a server process: they see files, not the test's later environment.
    control = out_dir.parent.parent  # out_dir is OUT/.tmp-<key>-<pid>: this is the test's tmp_path
    sleep_s = control / "sleep-s"
    if sleep_s.exists() and "slow" in label:  # a long analysis, to be killed while it runs
        (control / f"started-{study.key}").write_text(str(os.getpid()))
        time.sleep(float(sleep_s.read_text()))
    kill_flag = control / "kill-once"
    if kill_flag.exists() and "kill" in label:
        main_pid = int(kill_flag.read_text())
        kill_flag.unlink()
        (out_dir / "measurements.json").write_text("{half")  # half-written output
        os.kill(main_pid, signal.SIGKILL)  # the whole batch dies (power cut, kill -9)
        os._exit(9)
    if study.kind != "video":
        for p in study.paths:
            try:
                n = pydicom.dcmread(p).pixel_array.size
            except Exception as exc:
                raise InputError(p, f"cannot decode pixel data: {exc}") from None
    else:
        import cv2
        ok, _ = cv2.VideoCapture(str(study.study_path)).read()
        if not ok:
            raise InputError(study.study_path, "cannot decode the video")
    doc = {"schema": "dmx.measurements/1", "input": {"paths": [str(p) for p in study.paths],
           "sha256": study.sha256}, "landmarks": json.loads(Path(landmarks).read_text())}
    (out_dir / "measurements.json").write_text(json.dumps(doc))
    (out_dir / "report.html").write_text("<html></html>")
    (out_dir / "landmarks.csv").write_text("vertebra,corner,x,y\\n")
    if (control / "ran.txt").exists():  # a test that wants to know what ran creates it
        with open(control / "ran.txt", "a") as fh:
            fh.write(label + "\\n")
    return ["calibration from ImagerPixelSpacing"] if "warn" in label else []
"""
FAKE = "fake_pipeline:analyze"


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    mod_dir = tmp_path / "fakemod"
    mod_dir.mkdir()
    (mod_dir / "fake_pipeline.py").write_text(FAKE_PIPELINE)
    monkeypatch.syspath_prepend(str(mod_dir))
    monkeypatch.setattr("dmx.batch.study.DEFAULT_ANALYZER", FAKE)  # what run_batch runs by default
    return mod_dir


LANDMARKS = {
    "schema": "dmx.landmarks/1",
    "frame": 0,
    "points": {"C3": {"ant_sup": [1, 1], "post_sup": [5, 1], "post_inf": [5, 5], "ant_inf": [1, 5]}},
}


def write_dicom(path: Path, *, frames: int = 4, study_uid=None, series_uid=None, instance: int = 1) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.2"  # X-Ray Radiofluoroscopic Image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.InstanceNumber = instance
    ds.Modality = "RF"
    ds.Rows = ds.Columns = 16
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(instance)
    ds.PixelData = rng.integers(0, 255, (frames, 16, 16), dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_video(path: Path) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32), False)
    for i in range(5):
        w.write(np.full((32, 32), i * 40, np.uint8))
    w.release()
    return path


def sidecar(path: Path) -> None:
    path.write_text(json.dumps(LANDMARKS))


def good_inbox(root: Path) -> Path:
    """Three good studies in three layouts plus a stray non-DICOM file."""
    cine = write_dicom(root / "patient_a" / "cine.dcm")
    sidecar(cine.with_name("cine.dcm.landmarks.json"))
    st, se = generate_uid(), generate_uid()
    for i in range(3):
        f = root / "b" / "series1" / f"IM{i:04d}"
        write_dicom(f, frames=1, study_uid=st, series_uid=se, instance=i + 1)
    sidecar(root / "b" / "series1" / "landmarks.json")
    clip = write_video(root / "c" / "clip.avi")
    sidecar(clip.with_name("clip.avi.landmarks.json"))
    (root / "notes.txt").write_text("not an image")
    return root


def messy_inbox(root: Path) -> Path:
    """Good studies plus a corrupt file, a truncated cine, a duplicate and one without landmarks."""
    good_inbox(root)
    broken = write_dicom(root / "d" / "broken.dcm")
    broken.write_bytes(broken.read_bytes()[:200])  # header cut short
    trunc = write_dicom(root / "e" / "trunc.dcm")
    trunc.write_bytes(trunc.read_bytes()[:-500])  # pixel data cut short
    sidecar(trunc.with_name("trunc.dcm.landmarks.json"))
    shutil.copytree(root / "patient_a", root / "z_copy")  # duplicates, with their sidecars
    shutil.copytree(root / "c", root / "zz_video")
    write_dicom(root / "g" / "nolm.dcm")
    return root


def manifest(out: Path) -> dict[str, dict]:
    rows = batch.read_manifest(out)
    by_input = {r["input"]: r for r in rows}
    assert len(by_input) == len(rows), "an input appears twice in the manifest"
    with open(out / "manifest.csv", newline="") as fh:
        csv_rows = list(csv.DictReader(fh))
    assert [r["input"] for r in csv_rows] == [r["input"] for r in rows]
    assert tuple(csv_rows[0]) == batch.MANIFEST_FIELDS
    return by_input


def study_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


# --------------------------------------------------------------------------- discovery


def test_discovery_groups_layouts_and_finds_sidecars(tmp_path):
    inbox = messy_inbox(tmp_path / "inbox")
    studies, other = discover_inputs(inbox)
    by_label = {s.label: s for s in studies}
    others = {u.label: u for u in other}
    # a copied DICOM file is a duplicate SOP instance (dmx.io.discover); a copied video is a study
    # (and a duplicate by checksum when run)
    dup = "z_copy/cine.dcm"
    assert dup not in by_label
    assert others[dup].reason == "duplicate: same SOP Instance UID as patient_a/cine.dcm"
    assert others[dup].status is Status.SKIPPED
    assert sorted(set(by_label) - {dup}) == [
        "b/series1",
        "c/clip.avi",
        "e/trunc.dcm",
        "g/nolm.dcm",
        "patient_a/cine.dcm",
        "zz_video/clip.avi",
    ]
    frames = by_label["b/series1"]
    assert len(frames.paths) == 3 and frames.study_path == inbox / "b" / "series1" and frames.series_uid
    assert frames.landmarks_path == inbox / "b" / "series1" / "landmarks.json"
    assert by_label["patient_a/cine.dcm"].landmarks_path == inbox / "patient_a" / "cine.dcm.landmarks.json"
    assert by_label["c/clip.avi"].kind == "video"
    assert by_label["g/nolm.dcm"].landmarks_path is None
    assert by_label["g/nolm.dcm"].landmarks_hint == "g/nolm.dcm.landmarks.json"
    keys = [s.key for s in studies]
    assert len(set(keys)) == len(keys) and all(len(k) == 16 for k in keys)
    assert {(u.label, u.status) for u in other if u.label != dup} == {
        ("notes.txt", Status.SKIPPED),
        ("d/broken.dcm", Status.FAILED),
    }
    # stable: the same inbox gives the same keys
    assert [s.key for s in discover_inputs(inbox)[0]] == keys


def test_checksum_is_the_measurements_checksum_and_ignores_names(tmp_path):
    from dmx.io.checksum import sha256_files

    a = write_dicom(tmp_path / "a.dcm")
    b = tmp_path / "x" / "renamed.dcm"
    b.parent.mkdir()
    shutil.copy(a, b)
    assert input_checksum([a]) == input_checksum([b]) == sha256_files([a])
    assert input_checksum([a]) == hashlib.sha256(a.read_bytes()).hexdigest()
    c = write_dicom(tmp_path / "c.dcm")
    assert input_checksum([a, c]) != input_checksum([c, a])  # frame order matters, as in measurements.json


# --------------------------------------------------------------------------- runs


def test_batch_messy_inbox_every_input_accounted_for(tmp_path, fake, capsys, caplog):
    caplog.set_level("INFO", logger="dmx")
    inbox = messy_inbox(tmp_path / "inbox")
    out = tmp_path / "out"
    assert main(["batch", str(inbox), "--out", str(out), "--jobs", "2"]) == 1
    rows = manifest(out)
    status = {k: (r["status"], r["reason"]) for k, r in rows.items()}
    assert status["patient_a/cine.dcm"] == ("ok", "")
    assert status["b/series1"] == ("ok", "")
    assert status["c/clip.avi"] == ("ok", "")
    assert status["notes.txt"][0] == "skipped" and "not a DICOM" in status["notes.txt"][1]
    assert status["d/broken.dcm"][0] == "failed"
    assert status["e/trunc.dcm"][0] == "failed"
    assert status["e/trunc.dcm"][1].startswith("e/trunc.dcm: cannot decode pixel data")
    assert status["z_copy/cine.dcm"][0] == "skipped"
    assert status["z_copy/cine.dcm"][1] == "duplicate: same SOP Instance UID as patient_a/cine.dcm"
    assert status["zz_video/clip.avi"] == ("skipped", "duplicate of c/clip.avi")
    # no sidecar: automatic detection was tried (not available yet, or nothing found on noise)
    assert status["g/nolm.dcm"][0] == "failed"
    assert status["g/nolm.dcm"][1].startswith("no landmarks: add g/nolm.dcm.landmarks.json (")
    assert rows["g/nolm.dcm"]["landmarks_source"] == "auto"
    assert rows["patient_a/cine.dcm"]["landmarks_source"] == "file"
    assert rows["notes.txt"]["landmarks_source"] == ""
    assert len(rows) == 9
    assert rows["e/trunc.dcm"]["output"] == "" and rows["notes.txt"]["output"] == ""
    # outputs: one complete folder per successful study, named by its key
    ok = {r["output"] for r in rows.values() if r["status"] == "ok"}
    assert {p.name for p in study_dirs(out)} == ok
    for d in study_dirs(out):
        names = {p.name for p in d.iterdir()}
        assert names == {"measurements.json", "report.html", "landmarks.csv", "batch.json"}
    assert rows["zz_video/clip.avi"]["output"] == rows["c/clip.avi"]["output"] != ""
    assert all(len(r["input_sha256"]) == 64 for r in rows.values())
    assert rows["c/clip.avi"]["input_sha256"] == rows["zz_video/clip.avi"]["input_sha256"]
    lm_sha = hashlib.sha256((inbox / "patient_a" / "cine.dcm.landmarks.json").read_bytes()).hexdigest()
    assert rows["patient_a/cine.dcm"]["landmarks_sha256"] == lm_sha
    assert rows["g/nolm.dcm"]["landmarks_sha256"] == "" and rows["notes.txt"]["landmarks_sha256"] == ""
    assert all(isinstance(r["duration_s"], float) for r in rows.values() if r["status"] == "ok")
    # no patient name or ID, no UIDs anywhere in the manifest or the log
    ds = pydicom.dcmread(inbox / "patient_a" / "cine.dcm")
    err = capsys.readouterr().err + caplog.text
    for text in ((out / "manifest.csv").read_text(), (out / "manifest.jsonl").read_text(), err):
        for secret in ("DOE", PATIENT_ID, ds.StudyInstanceUID, ds.SeriesInstanceUID):
            assert secret not in text
    assert "[5/5]" in err and "3 ok, 3 failed, 3 skipped" in err
    # a copied DICOM file (same SOP instance) and a copied video (same checksum) are both duplicates
    assert f"5 studies to analyse under {inbox} (2 duplicate, 2 other files)" in err
    assert "3 skipped (0 unchanged, 2 duplicate, 1 not a study)" in err


def test_rerun_skips_unchanged_force_redoes_and_changes_rerun(tmp_path, fake, capsys):
    inbox = good_inbox(tmp_path / "inbox")
    out = tmp_path / "out"
    log = tmp_path / "ran.txt"  # the fake analysis lists what it analysed there
    log.write_text("")
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert sorted(log.read_text().split()) == ["b/series1", "c/clip.avi", "patient_a/cine.dcm"]
    log.write_text("")
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert log.read_text() == ""  # nothing re-analysed
    rows = manifest(out)
    for k in ("b/series1", "c/clip.avi", "patient_a/cine.dcm"):
        assert rows[k]["status"] == "skipped" and rows[k]["reason"].startswith("unchanged since 20")
    # a corrected landmark file re-runs that study only
    lm = inbox / "c" / "clip.avi.landmarks.json"
    lm.write_text(lm.read_text().replace("[1, 1]", "[2, 1]"))
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert log.read_text().split() == ["c/clip.avi"]
    assert manifest(out)["c/clip.avi"]["status"] == "ok"
    log.write_text("")
    # a study folder whose output went missing is redone
    key = manifest(out)["b/series1"]["output"]
    (out / key / "report.html").unlink()
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert log.read_text().split() == ["b/series1"]
    log.write_text("")
    assert main(["batch", str(inbox), "--out", str(out), "--force"]) == 0
    assert sorted(log.read_text().split()) == ["b/series1", "c/clip.avi", "patient_a/cine.dcm"]
    assert {r["status"] for r in manifest(out).values()} == {"ok", "skipped"}  # notes.txt skipped
    assert len(study_dirs(out)) == 3


def test_failing_analysis_leaves_no_folder_and_others_finish(tmp_path, fake):
    inbox = tmp_path / "inbox"
    for name in ("a_boom", "b_ok", "c_crash", "d_ok"):
        f = write_dicom(inbox / name / "cine.dcm")
        sidecar(f.with_name("cine.dcm.landmarks.json"))
    (inbox / "b_ok" / "cine.dcm.landmarks.json").unlink()
    sidecar(inbox / "b_ok" / "landmarks.json")  # folder sidecar also works for a lone file
    out = tmp_path / "out"
    result = run_batch(inbox, out, jobs=2, analyzer=FAKE)
    rows = {r.input: r for r in result.rows}
    assert rows["a_boom/cine.dcm"].status is Status.FAILED
    assert rows["a_boom/cine.dcm"].reason == "internal error (RuntimeError): unexpected bug"
    assert rows["c_crash/cine.dcm"].status is Status.FAILED
    assert rows["c_crash/cine.dcm"].reason == "the worker process crashed while analysing this study"
    assert rows["b_ok/cine.dcm"].status is Status.OK and rows["d_ok/cine.dcm"].status is Status.OK
    assert result.exit_code == 1
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith((".tmp-", ".old-"))]
    assert len(study_dirs(out)) == 2


def test_worker_crash_with_one_job(tmp_path, fake):
    inbox = tmp_path / "inbox"
    for name in ("a_crash", "b_ok"):
        sidecar(write_dicom(inbox / name / "x.dcm").with_name("x.dcm.landmarks.json"))
    result = run_batch(inbox, tmp_path / "out", jobs=1, analyzer=FAKE)
    assert [(r.input, r.status) for r in result.rows] == [
        ("a_crash/x.dcm", Status.FAILED),
        ("b_ok/x.dcm", Status.OK),
    ]


def test_study_finished_by_a_lost_worker_is_this_runs_result(tmp_path, fake):
    """A worker of a pool broken by another study's crash may finish its study after
    the batch gave up on it; re-run alone, that study is this run's ``ok``, and
    outputs from an earlier run stay ``skipped`` (seen as a flaky CI failure)."""
    inbox = tmp_path / "inbox"
    sidecar(write_dicom(inbox / "b_ok" / "x.dcm").with_name("x.dcm.landmarks.json"))
    job = one_job(inbox)
    out = tmp_path / "out"
    out.mkdir()
    first = batch.run_study(job, out, analyzer=FAKE, run_id="run-1")  # the lost worker's result
    assert first.status is Status.OK
    record = json.loads((out / job.key / "batch.json").read_text())
    assert record["run_id"] == "run-1"
    again = batch.run_study(job, out, analyzer=FAKE, run_id="run-1")  # the re-run, same batch
    assert (again.status, again.reason, again.output) == (Status.OK, "", job.key)
    later = batch.run_study(job, out, analyzer=FAKE, run_id="run-2")  # the next batch
    assert later.status is Status.SKIPPED and later.reason == f"unchanged since {record['finished_at']}"


def test_a_study_reported_twice_keeps_one_row(tmp_path, fake):
    from dmx.batch.manifest import ManifestWriter, study_row
    from dmx.batch.run import _Ledger

    inbox = tmp_path / "inbox"
    sidecar(write_dicom(inbox / "b_ok" / "x.dcm").with_name("x.dcm.landmarks.json"))
    job = one_job(inbox)
    out = tmp_path / "out"
    out.mkdir()
    ledger = _Ledger(ManifestWriter(out))
    ledger.finished(job, study_row(job, Status.FAILED, "the worker process crashed", duration_s=None))
    ledger.finished(job, study_row(job, Status.OK, "", duration_s=None))
    result = ledger.close({}, elapsed_s=0.0)
    assert [(r.input, r.status) for r in result.rows] == [("b_ok/x.dcm", Status.OK)]
    assert manifest(out)["b_ok/x.dcm"]["status"] == "ok"


def test_keyboard_interrupt_keeps_what_finished_and_rerun_completes(tmp_path, fake):
    inbox = tmp_path / "inbox"
    for name in ("a", "b_interrupt", "c", "d"):
        sidecar(write_dicom(inbox / name / "x.dcm").with_name("x.dcm.landmarks.json"))
    out = tmp_path / "out"
    assert main(["batch", str(inbox), "--out", str(out), "--jobs", "1"]) == 130
    rows = manifest(out)
    assert len(rows) == 4
    assert rows["a/x.dcm"]["status"] == "ok"
    assert {rows[k]["reason"] for k in ("b_interrupt/x.dcm", "c/x.dcm", "d/x.dcm")} == {
        "interrupted before it finished"
    }
    assert [p.name for p in study_dirs(out)] == [rows["a/x.dcm"]["output"]]
    os.rename(inbox / "b_interrupt", inbox / "b")
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    rows = manifest(out)
    assert rows["a/x.dcm"]["status"] == "skipped"
    assert [rows[k]["status"] for k in ("b/x.dcm", "c/x.dcm", "d/x.dcm")] == ["ok", "ok", "ok"]
    assert len(study_dirs(out)) == 4


def test_killed_batch_loses_nothing_and_rerun_finishes(tmp_path, fake):
    """kill -9 of the whole batch on the 2nd study: finished rows and folders survive, no half folder."""
    inbox = tmp_path / "inbox"
    for name in ("a", "b_kill", "c"):
        sidecar(write_dicom(inbox / name / "x.dcm").with_name("x.dcm.landmarks.json"))
    out = tmp_path / "out"
    flag = tmp_path / "kill-once"
    script = textwrap.dedent(
        f"""
        import os, pathlib
        from dmx.batch import run_batch
        pathlib.Path({str(flag)!r}).write_text(str(os.getpid()))
        run_batch({str(inbox)!r}, {str(out)!r}, jobs=1, analyzer={FAKE!r})
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), str(fake), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    rows = batch.read_manifest(out)
    assert [(r["input"], r["status"]) for r in rows] == [("a/x.dcm", "ok")]
    finished = [p.name for p in study_dirs(out)]
    assert finished == [rows[0]["output"]]  # the half-written study is only a hidden temp folder
    assert [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    result = run_batch(inbox, out, jobs=1, analyzer=FAKE)
    assert [(r.input, r.status.value) for r in result.rows] == [
        ("a/x.dcm", "skipped"),
        ("b_kill/x.dcm", "ok"),
        ("c/x.dcm", "ok"),
    ]
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert len(study_dirs(out)) == 3
    for d in study_dirs(out):
        json.loads((d / "measurements.json").read_text())  # complete, valid files only


def _session_processes(sid: int) -> list[str]:
    """``"pid command"`` of every live (not zombie) process of session ``sid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # ended meanwhile
            continue
        comm_end = text.rindex(")")
        state, _ppid, _pgrp, session = text[comm_end + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(f"{stat.parent.name} {text[text.index('(') + 1 : comm_end]}")
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc to list processes")
def test_killed_batch_leaves_no_worker_running_and_rerun_finishes(tmp_path, fake):
    """kill -9 of the batch while two workers analyse: all its processes end, nothing half-written."""
    inbox = tmp_path / "inbox"
    for name in ("slow_a", "slow_b", "slow_c", "slow_d"):
        sidecar(write_dicom(inbox / name / "x.dcm").with_name("x.dcm.landmarks.json"))
    out = tmp_path / "out"
    (tmp_path / "sleep-s").write_text("4")
    script = (
        f"from dmx.batch import run_batch; run_batch({str(inbox)!r}, {str(out)!r}, jobs=2, analyzer={FAKE!r})"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), str(fake), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        start_new_session=True,  # its own session (and process group): the batch and all it starts
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # both workers have started a study (at most 60 s)
            if len(list(tmp_path.glob("started-*"))) == 2 or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert len(list(tmp_path.glob("started-*"))) == 2, "the workers never started"
        assert len(_session_processes(proc.pid)) >= 3  # the batch, its workers (and their server)
        os.kill(proc.pid, signal.SIGKILL)  # the terminal closed, the scheduler killed the job
        proc.wait(timeout=30)
        left = _session_processes(proc.pid)
        for _ in range(100):  # at most 10 s: the workers' analyses would take 4 s more
            if not left:
                break
            time.sleep(0.1)
            left = _session_processes(proc.pid)
        assert left == [], f"still running after the batch was killed: {left}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    # the two studies in flight never finished: no folder of theirs, no row
    assert study_dirs(out) == []
    assert batch.read_manifest(out) == []
    (tmp_path / "sleep-s").unlink()
    result = run_batch(inbox, out, jobs=2, analyzer=FAKE)
    assert [(r.input, r.status.value) for r in result.rows] == [
        (f"{name}/x.dcm", "ok") for name in ("slow_a", "slow_b", "slow_c", "slow_d")
    ]
    assert [p.name for p in out.iterdir() if p.name.startswith((".tmp-", ".old-"))] == []
    assert len(study_dirs(out)) == 4
    for d in study_dirs(out):
        json.loads((d / "measurements.json").read_text())  # complete, valid files only


@pytest.mark.parametrize("pidfd", [True, False])
def test_worker_watch_ends_the_worker_when_the_batch_ends(tmp_path, pidfd):
    """The watch each worker starts, with a pidfd (Linux 5.3+) or polling (elsewhere)."""
    batch_proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    ready = tmp_path / "ready"
    code = textwrap.dedent(
        f"""
        import os, pathlib, time
        {"" if pidfd else "del os.pidfd_open"}
        from dmx.batch import executors
        executors._worker_started({batch_proc.pid}, None)
        pathlib.Path({str(ready)!r}).write_text("")
        time.sleep(120)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    worker = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        for _ in range(600):
            if ready.exists() or worker.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists() and worker.poll() is None  # watching, and the batch is alive
        batch_proc.kill()
        batch_proc.wait()
        assert worker.wait(timeout=30) == 1  # ended by the watch, long before its sleep
    finally:
        batch_proc.kill()
        worker.kill()


def _console_script(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The ``dmx`` command as users run it, and an environment in which it runs the dmx under test.

    Installed (``pip install -e .``, as in CI): the console script pip wrote beside the
    interpreter, with no PYTHONPATH. Otherwise the same lines pip writes, finding dmx
    through PYTHONPATH.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    probe = [sys.executable, "-P", "-c", "import dmx; print(dmx.__file__)"]
    found = subprocess.run(probe, cwd=tmp_path, env=env, capture_output=True, text=True)
    installed = found.returncode == 0 and Path(found.stdout.strip()).resolve().parents[1] == PACKAGE_ROOT
    script = Path(sys.executable).with_name("dmx")
    if installed and script.is_file():
        return script, env
    env["PYTHONPATH"] = str(PACKAGE_ROOT)
    script = tmp_path / "bin" / "dmx"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom dmx.cli import main\nif __name__ == '__main__':\n"
        "    sys.exit(main())\n"
    )
    script.chmod(0o755)
    return script, env


@pytest.mark.parametrize("stray", ["empty folder", "another package"])
def test_batch_runs_the_installed_dmx_whatever_the_current_folder_holds(tmp_path, stray):
    """A folder named dmx where the user stands (the clone of the repository, an old copy) is not imported."""
    script, env = _console_script(tmp_path)
    here = tmp_path / "here"
    (here / "dmx").mkdir(parents=True)
    if stray == "another package":  # shadows even a regular install when the current folder comes first
        (here / "dmx" / "__init__.py").write_text("")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("study.dcm", "landmarks.json"):
        shutil.copy(PACKAGE_ROOT / "sample_data" / "kyphotic_left_mono1" / name, inbox / name)
    out = tmp_path / "out"
    cmd = [str(script), "batch", str(inbox), "--out", str(out), "--jobs", "1"]
    proc = subprocess.run(cmd, cwd=here, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = manifest(out)
    assert (rows["study.dcm"]["status"], rows["study.dcm"]["landmarks_source"]) == ("ok", "file")
    doc = json.loads((out / rows["study.dcm"]["output"] / "measurements.json").read_text())
    assert doc["input"]["sha256"] == rows["study.dcm"]["input_sha256"]


def test_stale_replaced_folder_is_restored(tmp_path):
    out = tmp_path / "out"
    (out / ".old-abc123def456-77").mkdir(parents=True)
    (out / ".old-abc123def456-77" / "measurements.json").write_text("{}")
    (out / ".tmp-abc123def456-78").mkdir()
    assert batch.clean_stale(out) == 2
    assert sorted(p.name for p in out.iterdir()) == ["abc123def456"]


def test_ok_row_reports_warnings(tmp_path, fake):
    inbox = tmp_path / "inbox"
    sidecar(write_dicom(inbox / "warn.dcm").with_name("warn.dcm.landmarks.json"))
    result = run_batch(inbox, tmp_path / "out", analyzer=FAKE)
    assert [(r.status, r.reason) for r in result.rows] == [(Status.OK, "1 warning (see measurements.json)")]


def test_progress_bar_on_terminal():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    p = batch.Progress(4, stream=stream)
    row = batch.ManifestRow("x", "dicom", 1, Status.OK, "", 1.0, "", "", "k", "t")
    p.update(row)
    p.close()
    text = stream.getvalue()
    assert "1/4" in text and "ok 1" in text and "ETA" in text and text.endswith("\n")
    assert batch.format_duration(3725) == "1h02m" and batch.format_duration(65) == "1m05s"


# --------------------------------------------------------------------------- usage errors and real pipeline


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["batch", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "inbox folder not found" in capsys.readouterr().err
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--jobs", "0"]) == 2
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--scheduler", "tcp://x:1"]) == 2
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--executor", "slurm"]) == 2
    capsys.readouterr()
    (tmp_path / "afile").write_text("x")
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert (
        err.strip()
        == f"dmx: error: {tmp_path / 'afile'}: cannot create the output folder: exists and is not a folder"
    )


def test_empty_inbox_exits_0(tmp_path):
    (tmp_path / "in").mkdir()
    assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "manifest.csv").read_text().strip() == ",".join(batch.MANIFEST_FIELDS)


def test_dask_executor_runs_the_same_function(tmp_path, fake):
    pytest.importorskip("dask.distributed", reason="dask is an optional extra: pip install 'dmx[dask]'")
    from dask.distributed import LocalCluster

    inbox = messy_inbox(tmp_path / "inbox")
    local = run_batch(inbox, tmp_path / "local", jobs=1, analyzer=FAKE)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        result = run_batch(
            inbox, tmp_path / "dask", executor="dask", scheduler=cluster.scheduler_address, analyzer=FAKE
        )
    strip = [(r.input, r.status, r.reason.split(":")[0]) for r in local.rows]
    assert [(r.input, r.status, r.reason.split(":")[0]) for r in result.rows] == strip
    assert result.exit_code == 1


def _pipeline_built() -> bool:
    """Whether every stage dmx.pipeline.analyze/write_outputs calls exists yet."""
    import importlib

    needed = {
        "dmx.io.load": "load_sequence",
        "dmx.tracking": "track",
        "dmx.measure": "measure",
        "dmx.report": "write_report",
    }
    for module, name in needed.items():
        try:
            if not hasattr(importlib.import_module(module), name):
                return False
        except ImportError:
            return False
    return True


@pytest.mark.skipif(
    not _pipeline_built(), reason="dmx.pipeline not built yet (analyze, loader, tracking, measure, report)"
)
def test_real_pipeline_on_phantom(tmp_path):
    """Two phantom studies through the real pipeline: outputs, checksums, resume, aggregate."""
    phantom = pytest.importorskip("dmx.phantom", reason="dmx.phantom not built yet")
    if not hasattr(phantom, "write_phantom"):
        pytest.skip("dmx.phantom.write_phantom not built yet")
    from dmx.aggregate import aggregate

    inbox = tmp_path / "inbox"
    for seed in (1, 2):  # study.dcm + landmarks.json (+ truth.json, not a study) per folder
        phantom.write_phantom(phantom.make_phantom(seed=seed, frames=12), inbox / f"phantom{seed}")
    out = tmp_path / "out"
    assert main(["batch", str(inbox), "--out", str(out), "--jobs", "2"]) == 0
    rows = batch.read_manifest(out)
    studies = [r for r in rows if r["kind"] != "file"]
    assert [r["status"] for r in studies] == ["ok", "ok"], rows
    for r in studies:
        doc = json.loads((out / r["output"] / "measurements.json").read_text())
        assert doc["schema"] == "dmx.measurements/1"
        assert doc["input"]["sha256"] == r["input_sha256"]
        assert (out / r["output"] / "report.html").is_file()
        assert (out / r["output"] / "landmarks.csv").is_file()
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert {r["status"] for r in batch.read_manifest(out)} == {"skipped"}
    result = aggregate(out, tmp_path / "table.csv")
    assert (result.n_studies, result.exit_code) == (2, 0)


def test_output_inside_inbox_is_not_read_as_input(tmp_path, fake):
    inbox = good_inbox(tmp_path / "inbox")
    out = inbox / "results"
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert sorted(manifest(out)) == ["b/series1", "c/clip.avi", "notes.txt", "patient_a/cine.dcm"]


def test_second_batch_on_the_same_output_is_refused(tmp_path, capsys):
    import fcntl

    (tmp_path / "in").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".dmx-batch.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert main(["batch", str(tmp_path / "in"), "--out", str(out)]) == 2
        assert (out / ".dmx-batch.lock").exists()  # the refused batch leaves the other's lock alone
    assert "another 'dmx batch' is writing to this folder" in capsys.readouterr().err
    assert not (out / "manifest.csv").exists()


def test_the_lock_file_goes_when_the_batch_ends(tmp_path, fake):
    inbox = good_inbox(tmp_path / "inbox")
    out = tmp_path / "out"
    assert main(["batch", str(inbox), "--out", str(out)]) == 0
    assert not (out / ".dmx-batch.lock").exists()
    (out / ".dmx-batch.lock").write_text("")  # left by a batch killed with SIGKILL: nobody holds it
    sidecar(write_dicom(inbox / "x_interrupt" / "x.dcm").with_name("x.dcm.landmarks.json"))
    assert main(["batch", str(inbox), "--out", str(out)]) == 130  # Ctrl-C
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert manifest(out)["x_interrupt/x.dcm"]["reason"] == "interrupted before it finished"


def test_unusable_lock_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    lock = tmp_path / "out" / ".dmx-batch.lock"
    lock.mkdir(parents=True)  # something that is not a file stands where the lock goes
    assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"dmx: error: {lock}: cannot create the batch lock file: Is a directory\n"
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_unwritable_manifest_is_one_error_line(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    where = tmp_path / "out" / "manifest.csv"
    where.mkdir(parents=True)  # a folder where the manifest goes
    assert main(["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"dmx: error: {where}: cannot write the manifest: Is a directory\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.csv"]  # no lock, no temporary


def test_duplicate_of_a_failed_study_points_nowhere(tmp_path, fake):
    inbox = tmp_path / "inbox"
    f = write_video(inbox / "a_boom" / "x.avi")
    sidecar(f.with_name("x.avi.landmarks.json"))
    shutil.copytree(inbox / "a_boom", inbox / "b_copy")
    result = run_batch(inbox, tmp_path / "out", analyzer=FAKE)
    assert [(r.input, r.status.value, r.reason, r.output) for r in result.rows] == [
        ("a_boom/x.avi", "failed", "internal error (RuntimeError): unexpected bug", ""),
        ("b_copy/x.avi", "skipped", "duplicate of a_boom/x.avi", ""),
    ]
    assert manifest(tmp_path / "out")["b_copy/x.avi"]["output"] == ""


def test_two_series_in_one_folder_get_distinct_labels_and_no_shared_landmarks(tmp_path):
    inbox = tmp_path / "inbox"
    for s, (st, se) in enumerate([(generate_uid(), generate_uid()), (generate_uid(), generate_uid())]):
        for i in range(2):
            f = inbox / "mixed" / f"S{s}_IM{i}"
            write_dicom(f, frames=1, study_uid=st, series_uid=se, instance=i + 1)
    sidecar(inbox / "mixed" / "landmarks.json")  # ambiguous: which series?
    studies, other = discover_inputs(inbox)
    assert sorted(s.label for s in studies) == ["mixed/S0_IM0 (+1 files)", "mixed/S1_IM0 (+1 files)"]
    assert all(s.landmarks_path is None for s in studies)
    assert {s.landmarks_hint for s in studies} == {"mixed/landmarks.json (one series per folder)"}
    assert all(s.study_path == inbox / "mixed" and s.series_uid for s in studies)
    assert other == []


# --------------------------------------------------------------------------- automatic landmarks

# The per-study analysis with the detector replaced, inside the worker process, by the
# phantom's true corners (kept outside the inbox, in the test's folder) without C7.
FAKE_AUTO = """
from dataclasses import replace
from pathlib import Path

import dmx.detect
from dmx import batch
from landmark_fakes import fake_detector


def analyze(study, out_dir, *, mm_per_px=None):
    control = out_dir.parent.parent  # OUT/.tmp-<key>-<pid> -> the test's tmp_path
    truth = control / "truth" / (study.study_path.parent.name + ".json")
    dmx.detect.find_landmarks = fake_detector(truth, leave_out={"C7": "below the shoulders"})
    return batch.analyze_study(study, out_dir, mm_per_px=mm_per_px)
"""


def phantom_inbox(tmp_path: Path, names: tuple[str, ...]) -> Path:
    """Phantom studies inbox/<name>/study.dcm; the true landmarks moved out to tmp_path/truth/<name>.json."""
    from landmark_fakes import write_phantom_study

    (tmp_path / "truth").mkdir(exist_ok=True)
    for i, name in enumerate(names):
        _, lm = write_phantom_study(tmp_path / "inbox" / name, seed=i + 1)
        (lm.parent / "truth.json").unlink()
        lm.rename(tmp_path / "truth" / f"{name}.json")
    return tmp_path / "inbox"


def one_job(inbox: Path) -> batch.StudyJob:
    studies, _ = discover_inputs(inbox)
    assert len(studies) == 1
    return batch.with_checksums(studies, jobs=1)[0]


def test_study_without_sidecar_is_analysed_with_automatic_landmarks(tmp_path, monkeypatch):
    from landmark_fakes import fake_detector

    inbox = phantom_inbox(tmp_path, ("p1",))
    job = one_job(inbox)
    assert job.landmarks_path is None and job.landmarks_source == "auto"
    monkeypatch.setattr(
        "dmx.detect.find_landmarks",
        fake_detector(tmp_path / "truth" / "p1.json", leave_out={"C7": "below the shoulders"}),
    )
    out = tmp_path / "out"
    out.mkdir()
    row = batch.run_study(job, out)  # in this process: the monkeypatched detector is used
    assert (row.status, row.landmarks_source, row.output) == (Status.OK, "auto", job.key)
    folder = out / job.key
    names = {p.name for p in folder.iterdir()}
    assert names == {
        "measurements.json",
        "report.html",
        "landmarks.csv",
        "landmarks.auto.json",
        "review.html",
        "batch.json",
    }
    assert set(json.loads((folder / "batch.json").read_text())["outputs"]) == names - {"batch.json"}
    doc = json.loads((folder / "measurements.json").read_text())
    assert doc["landmarks_source"] == "auto"
    assert doc["landmarks_detection"]["missing"] == {"C7": "below the shoulders"}
    assert (
        doc["levels"]["C6-C7"]["rotation_rom_deg"] is None and doc["levels"]["C4-C5"]["rotation_rom_deg"] > 5
    )
    from dmx.landmarks import read_landmarks

    auto = read_landmarks(folder / "landmarks.auto.json")
    assert [v.value for v in auto.vertebrae] == ["C2", "C3", "C4", "C5", "C6"] and auto.confidence
    assert "Landmarks found automatically: review" in (folder / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("detector", "why"),
    [
        ("unavailable", "(automatic detection not available: model file detector.npz not found)"),
        (
            "too_few",
            "(automatic landmark detection found no two adjacent vertebral bodies (found only C3, C5)",
        ),
    ],
)
def test_study_without_sidecar_fails_in_one_line_when_detection_gives_nothing_usable(
    tmp_path, monkeypatch, detector, why
):
    from landmark_fakes import fake_detector, unavailable

    inbox = phantom_inbox(tmp_path, ("p1",))
    job = one_job(inbox)
    if detector == "unavailable":
        fake = unavailable(FileNotFoundError("model file detector.npz not found"))
    else:
        gone = {v: "not found" for v in ("C2", "C4", "C6", "C7")}
        fake = fake_detector(tmp_path / "truth" / "p1.json", leave_out=gone)
    monkeypatch.setattr("dmx.detect.find_landmarks", fake)
    out = tmp_path / "out"
    out.mkdir()
    row = batch.run_study(job, out)
    assert (row.status, row.output, row.landmarks_source) == (Status.FAILED, "", "auto")
    assert row.reason.startswith(f"no landmarks: add p1/study.dcm.landmarks.json {why}")
    assert "\n" not in row.reason
    assert list(out.iterdir()) == []  # no folder, no temporary left


def test_study_without_sidecar_keeps_the_detected_proposal_with_its_confidence(tmp_path, monkeypatch):
    from landmark_fakes import fake_detector

    from dmx.landmarks import read_landmarks

    inbox = phantom_inbox(tmp_path, ("p1",))
    job = one_job(inbox)
    monkeypatch.setattr(
        "dmx.detect.find_landmarks", fake_detector(tmp_path / "truth" / "p1.json", confidence={"C5": 0.4})
    )
    out = tmp_path / "out"
    out.mkdir()
    row = batch.run_study(job, out)
    assert (row.status, row.landmarks_source) == (Status.OK, "auto")
    lm = read_landmarks(out / job.key / "landmarks.auto.json")
    truth = read_landmarks(tmp_path / "truth" / "p1.json")
    assert lm.vertebrae == truth.vertebrae
    for v in truth.vertebrae:
        np.testing.assert_allclose(lm.corners_px[v], truth.corners_px[v])
    assert lm.confidence[lm.vertebrae[3]] == pytest.approx(0.4)
    assert lm.vertebrae[3].value == "C5"


def test_batch_review_loop_auto_then_corrected_sidecar(tmp_path, monkeypatch):
    """Workers detect automatically; a corrected proposal dropped in as a sidecar re-runs the study."""
    mod_dir = tmp_path / "fakemod"
    mod_dir.mkdir()
    (mod_dir / "fake_auto.py").write_text(FAKE_AUTO)
    shutil.copy(Path(__file__).with_name("landmark_fakes.py"), mod_dir / "landmark_fakes.py")
    monkeypatch.syspath_prepend(str(mod_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mod_dir), str(PACKAGE_ROOT)]))
    inbox = phantom_inbox(tmp_path, ("p1", "p2"))
    shutil.copy(tmp_path / "truth" / "p2.json", inbox / "p2" / "landmarks.json")  # p2 has a sidecar
    out = tmp_path / "out"
    result = run_batch(inbox, out, jobs=2, analyzer="fake_auto:analyze")
    assert result.exit_code == 0
    rows = manifest(out)
    assert {k: (r["status"], r["landmarks_source"]) for k, r in rows.items() if r["kind"] != "file"} == {
        "p1/study.dcm": ("ok", "auto"),
        "p2/study.dcm": ("ok", "file"),
    }
    p1 = out / rows["p1/study.dcm"]["output"]
    assert (p1 / "review.html").is_file() and (p1 / "landmarks.auto.json").is_file()
    assert not (out / rows["p2/study.dcm"]["output"] / "landmarks.auto.json").exists()
    assert json.loads((p1 / "measurements.json").read_text())["landmarks_source"] == "auto"
    # the clinician corrects the proposal and puts it next to the study: the next run redoes p1 only
    shutil.copy(p1 / "landmarks.auto.json", inbox / "p1" / "landmarks.json")
    run_batch(inbox, out, jobs=1, analyzer="fake_auto:analyze")
    rows = manifest(out)
    assert rows["p1/study.dcm"]["status"] == "ok" and rows["p1/study.dcm"]["landmarks_source"] == "file"
    assert rows["p2/study.dcm"]["status"] == "skipped"
    p1 = out / rows["p1/study.dcm"]["output"]
    assert json.loads((p1 / "measurements.json").read_text())["landmarks_source"] == "file"
    assert not (p1 / "review.html").exists()


def test_auto_landmark_fingerprint_follows_the_detector_model(tmp_path, monkeypatch):
    f = write_dicom(tmp_path / "inbox" / "p" / "cine.dcm")
    models = tmp_path / "models"
    models.mkdir()
    (models / "detector.npz").write_bytes(b"model one")
    monkeypatch.setenv("DMX_MODEL_DIR", str(models))
    job = batch.StudyJob(
        key="p", label="p/cine.dcm", kind="multiframe", study_path=f, paths=(f,), root=f.parent
    )
    one = batch.with_checksums([job], jobs=1)[0]
    (models / "detector.npz").write_bytes(b"model two")
    two = batch.with_checksums([job], jobs=1)[0]
    assert one.sha256 == two.sha256 and one.landmarks_sha256 == two.landmarks_sha256 == ""
    assert one.detector_sha256 == hashlib.sha256(b"model one").hexdigest()
    assert one.fingerprint != two.fingerprint  # a new model re-analyses studies without landmarks
    (models / "heatmap.onnx").write_bytes(b"network one")  # the network checks the levels
    three = batch.with_checksums([job], jobs=1)[0]
    assert three.detector_sha256 == hashlib.sha256(b"model twonetwork one").hexdigest()
    (models / "heatmap.onnx").write_bytes(b"network two")
    assert batch.with_checksums([job], jobs=1)[0].fingerprint != three.fingerprint
    lm = f.with_name("cine.dcm.landmarks.json")
    sidecar(lm)
    with_file = [batch.with_checksums([replace(job, landmarks_path=lm)], jobs=1)[0] for _ in range(2)]
    assert with_file[0].detector_sha256 == ""  # a landmark file does not depend on the model
    assert with_file[0].fingerprint == with_file[1].fingerprint


def test_study_where_no_level_could_be_measured_is_failed_with_the_reason(tmp_path):
    """A sidecar holding only C4: the analysis finishes but measures nothing: failed, with why."""
    inbox = phantom_inbox(tmp_path, ("p1",))
    doc = json.loads((tmp_path / "truth" / "p1.json").read_text())
    doc["points"] = {"C4": doc["points"]["C4"]}
    (inbox / "p1" / "landmarks.json").write_text(json.dumps(doc))
    job = one_job(inbox)
    out = tmp_path / "out"
    out.mkdir()
    row = batch.run_study(job, out)
    assert row.status == Status.FAILED
    assert row.reason == (
        "no level could be measured (the landmarks hold only C4: a level needs both of its vertebrae)"
    )


def test_batch_config_applies_to_every_study_and_a_new_config_redoes_them(tmp_path):
    from landmark_fakes import write_phantom_study

    inbox = tmp_path / "inbox"
    write_phantom_study(inbox / "p1", seed=3)  # study.dcm with its landmarks.json sidecar
    out = tmp_path / "out"
    cfg = tmp_path / "clinic.toml"
    cfg.write_text("[thresholds]\ntranslation_mm = 3.0\n", encoding="utf-8")
    assert main(["batch", str(inbox), "--out", str(out), "--config", str(cfg)]) == 0
    (folder,) = study_dirs(out)

    def threshold() -> dict:
        return json.loads((folder / "measurements.json").read_text())["thresholds"]["translation_mm"]

    assert threshold()["value"] == 3.0 and threshold()["origin"] == str(cfg.resolve())
    assert main(["batch", str(inbox), "--out", str(out), "--config", str(cfg)]) == 0
    assert manifest(out)["p1/study.dcm"]["reason"].startswith("unchanged since ")  # same settings
    cfg.write_text("[thresholds]\ntranslation_mm = 2.5\n", encoding="utf-8")
    assert main(["batch", str(inbox), "--out", str(out), "--config", str(cfg)]) == 0
    assert manifest(out)["p1/study.dcm"]["status"] == "ok" and threshold()["value"] == 2.5  # redone
    assert main(["batch", str(inbox), "--out", str(out)]) == 0  # back to the defaults: redone
    assert manifest(out)["p1/study.dcm"]["status"] == "ok" and threshold()["origin"] == "default"
    assert main(["batch", str(inbox), "--out", str(out), "--mm-per-px", "0.2"]) == 0  # a new calibration
    assert manifest(out)["p1/study.dcm"]["status"] == "ok"


def test_batch_with_a_bad_config_is_one_line_and_analyses_nothing(tmp_path, capsys):
    from landmark_fakes import write_phantom_study

    inbox = tmp_path / "inbox"
    write_phantom_study(inbox / "p1", seed=3)
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[thresholds]\ntranslation_mm = -1\n", encoding="utf-8")
    out = tmp_path / "out"
    assert main(["batch", str(inbox), "--out", str(out), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(cfg) in err[0] and "must not be negative" in err[0]
    assert not out.exists() or not study_dirs(out)
    assert main(["batch", str(inbox), "--out", str(out), "--mm-per-px", "0"]) == 2  # not a failure per study
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dmx: error: --mm-per-px must be a number > 0, got 0.0"]
    assert not out.exists() or not study_dirs(out)
