"""Round trip through a real PACS: Orthanc sends a study to `dmx listen`, the results come back into it.

Orthanc is started by the tests on free loopback ports with a temporary configuration
(`RemoteAccessAllowed` false; its `DicomModalities` names the dmx listener) and stopped after.
"""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from net_support import ROOT, ListenerProcess, Orthanc, free_port, wait_for

from dmx.dicom import codes

LISTENER_AET = "DMX"
ANALYSIS_TIMEOUT_S = 300  # reception + automatic landmarks + tracking + DICOM + forwarding, on a busy machine


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    port = free_port()
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc"), listener_port=port, listener_aet=LISTENER_AET)
    orthanc.listener_port = port
    yield orthanc
    orthanc.stop()


def _upload(pacs: Orthanc, study: Path) -> tuple[str, str]:
    """Put a study into Orthanc through its REST API; (instance id, study id)."""
    r = pacs.post("/instances", study.read_bytes())
    return r["ID"], r["ParentStudy"]


def _result_series(pacs: Orthanc, study_id: str) -> dict[str, list[str]] | None:
    """{modality: [instance ids]} of the study once the SR and three key images are in Orthanc."""
    out: dict[str, list[str]] = {}
    for s in pacs.series_of(study_id):
        out.setdefault(s["MainDicomTags"].get("Modality", ""), []).extend(s["Instances"])
    return out if len(out.get("SR", [])) == 1 and len(out.get("OT", [])) == 3 else None


def _sr_values(sr) -> dict[tuple[str, str], float]:
    """{(tracking identifier, concept code): exact value} of every NUM in the TID 1500 report."""
    (imaging,) = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"]
    out = {}
    for group in imaging.ContentSequence:
        ident = next(
            i.TextValue for i in group.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "112039"
        )
        for item in group.ContentSequence:
            if item.ValueType == "NUM":
                out[ident, item.ConceptNameCodeSequence[0].CodeValue] = float(
                    item.MeasuredValueSequence[0].FloatingPointValue
                )
    return out


def _expected(m: dict) -> dict[tuple[str, str], float]:
    keys = (
        ("rotation_rom_deg", codes.ROTATION_ROM),
        ("translation_mm", codes.TRANSLATION_MM),
        ("translation_pct", codes.TRANSLATION_PCT),
        ("rotation_range_deg", codes.ROTATION_RANGE),
        ("offset_range_mm", codes.OFFSET_RANGE),
        ("excursion_mm", codes.EXCURSION),
    )
    out = {}
    for name, level in m["levels"].items():
        for key, concept in keys:
            if level[key] is not None:
                out[name, concept.value] = level[key]
    for key in ("neutral", "flexion", "extension"):
        c = m["curve"][key]
        for k, concept in (
            ("cobb_c2c7_deg", codes.COBB_ANGLE),
            ("ara_c2c7_deg", codes.ARA),
            ("cci", codes.CCI),
        ):
            if c[k] is not None:
                out[f"curve {key}", concept.value] = c[k]
    return out


def _check_results_in_pacs(pacs: Orthanc, study_id: str, out: Path) -> None:
    found = wait_for(
        lambda: _result_series(pacs, study_id), timeout_s=ANALYSIS_TIMEOUT_S, what="SR + key images"
    )
    manifest = [json.loads(line) for line in (out / "results" / "manifest.jsonl").read_text().splitlines()]
    ok = [r for r in manifest if r["status"] == "ok"]
    assert len(ok) == 1, manifest
    m = json.loads((out / "results" / ok[0]["output"] / "measurements.json").read_text(encoding="utf-8"))
    assert m["landmarks_source"] == "auto"
    sr = pydicom.dcmread(__import__("io").BytesIO(pacs.get(f"/instances/{found['SR'][0]}/file")))
    study = pacs.get(f"/studies/{study_id}")
    assert sr.StudyInstanceUID == study["MainDicomTags"]["StudyInstanceUID"]
    expected = _expected(m)
    assert len(expected) >= 20
    assert _sr_values(sr) == expected  # exact floats, read back from the PACS
    for iid in found["OT"]:
        key = pydicom.dcmread(__import__("io").BytesIO(pacs.get(f"/instances/{iid}/file")))
        assert key.StudyInstanceUID == sr.StudyInstanceUID and key.Manufacturer == "dmx"


def test_orthanc_sends_a_study_and_gets_sr_and_key_images_back(pacs, tmp_path):
    out = tmp_path / "listen"
    listener = ListenerProcess(
        out,
        pacs.listener_port,
        "--aet",
        LISTENER_AET,
        "--forward",
        f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}",
        "--allow",
        pacs.aet,
        "--quiet-seconds",
        "1",
    )
    try:
        instance, study_id = _upload(pacs, ROOT / "sample_data" / "lordotic_stable" / "study.dcm")
        assert _result_series(pacs, study_id) is None  # only the images so far
        job = pacs.post("/modalities/dmx/store", instance)  # Orthanc -> dmx listen (C-STORE)
        assert job.get("FailedInstancesCount", 0) == 0, job
        _check_results_in_pacs(pacs, study_id, out)
        # the PACS holds the results before the listener has released the association and logged it
        wait_for(lambda: "forwarded to ORTHANC@" in listener.text(), timeout_s=60, what="the forwarded line")
        log = listener.text()
        assert "received an instance from ORTHANC" in log
        assert "PHANTOM" not in log  # no patient names or IDs in the log
    finally:
        assert listener.terminate() == 0, listener.text()
    assert "stopped" in listener.text()


def test_listener_killed_mid_study_and_restarted_completes_it(pacs, tmp_path):
    out = tmp_path / "listen"
    args = (
        "--aet",
        LISTENER_AET,
        "--forward",
        f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}",
        "--quiet-seconds",
        "1",
    )
    first = ListenerProcess(out, pacs.listener_port, *args)
    try:
        instance, study_id = _upload(pacs, ROOT / "sample_data" / "s_curve_unstable" / "study.dcm")
        pacs.post("/modalities/dmx/store", instance)
        # the series is complete and its analysis has started: kill everything, no clean-up
        wait_for(
            lambda: "series" in first.text() and "complete" in first.text(), timeout_s=60, what="completion"
        )
        wait_for(
            lambda: list((out / "results").glob(".tmp-*")), timeout_s=60, what="analysis", interval_s=0.05
        )
    finally:
        first.kill()
    assert first.proc.returncode == -9
    assert not list((out / "results").glob("*/measurements.json"))  # nothing finished
    assert _result_series(pacs, study_id) is None
    second = ListenerProcess(out, pacs.listener_port, *args)
    try:
        _check_results_in_pacs(pacs, study_id, out)
    finally:
        assert second.terminate() == 0, second.text()
