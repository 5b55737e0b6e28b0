"""``dmx landmarks STUDY --out L.json [--review PAGE]`` and the loop back into ``dmx analyze --landmarks``."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from landmark_fakes import fake_detector, unavailable, write_phantom_study

from dmx.anatomy import Vertebra
from dmx.cli import main
from dmx.landmarks import read_landmarks


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return write_phantom_study(tmp_path_factory.mktemp("phantom"))


def test_landmarks_writes_the_proposal_prints_a_summary_and_analyze_accepts_it(
    phantom, monkeypatch, tmp_path, capsys, caplog
):
    caplog.set_level("INFO", logger="dmx")
    study, truth = phantom
    monkeypatch.setattr(
        "dmx.detect.find_landmarks",
        fake_detector(truth, leave_out={"C7": "covered by the shoulders"}, confidence={"C4": 0.31}),
    )
    out, page = tmp_path / "L.json", tmp_path / "review.html"
    assert main(["landmarks", str(study), "--out", str(out), "--review", str(page)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "C2  found    confidence 0.90",
        "C3  found    confidence 0.90",
        "C4  found    confidence 0.31  (low: check it)",
        "C5  found    confidence 0.90",
        "C6  found    confidence 0.90",
        "C7  missing  covered by the shoulders",
    ]
    assert f"dmx analyze {study} --landmarks {out}" in caplog.text
    doc = json.loads(out.read_text())
    assert doc["schema"] == "dmx.landmarks/1" and doc["frame"] == 0
    assert doc["confidence"] == {"C2": 0.9, "C3": 0.9, "C4": 0.31, "C5": 0.9, "C6": 0.9}
    lm = read_landmarks(out)
    np.testing.assert_allclose(lm.corners_px[Vertebra.C4], read_landmarks(truth).corners_px[Vertebra.C4])
    html = page.read_text(encoding="utf-8")
    assert "Landmarks found automatically: review" in html and "covered by the shoulders" in html
    # the clinician's correction goes back in: the analysis uses the file, the detector is not called
    monkeypatch.setattr("dmx.detect.find_landmarks", unavailable(AssertionError("must not run")))
    res = tmp_path / "res"
    assert main(["analyze", str(study), "--landmarks", str(out), "--out", str(res), "--no-report"]) == 0
    m = json.loads((res / "measurements.json").read_text())
    assert m["landmarks_source"] == "file" and "landmarks_detection" not in m
    assert m["levels"]["C6-C7"]["rotation_rom_deg"] is None and m["levels"]["C4-C5"]["rotation_rom_deg"] > 5
    assert not (res / "landmarks.auto.json").exists()


def test_landmarks_on_another_frame(phantom, monkeypatch, tmp_path, capsys):
    study, truth = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(truth))
    assert main(["landmarks", str(study), "--out", str(tmp_path / "L.json"), "--frame", "3"]) == 0
    assert read_landmarks(tmp_path / "L.json").frame == 3
    assert main(["landmarks", str(study), "--out", str(tmp_path / "M.json"), "--frame", "12"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "dmx: error: --frame 12 is outside 0..11"
    assert not (tmp_path / "M.json").exists()


def test_landmarks_without_the_detector_is_one_line_exit_2(phantom, monkeypatch, tmp_path, capsys):
    study, _ = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", unavailable(NotImplementedError("not built yet")))
    assert main(["landmarks", str(study), "--out", str(tmp_path / "L.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"dmx: error: {study}: automatic landmark detection is not available (not built yet); "
        "place the landmarks by hand and pass --landmarks L.json"
    )
    assert not (tmp_path / "L.json").exists()


def test_landmarks_with_too_few_bodies_still_writes_them_and_warns(phantom, monkeypatch, tmp_path, caplog):
    caplog.set_level("INFO", logger="dmx")
    study, truth = phantom
    gone = {v: "not found" for v in ("C2", "C4", "C6", "C7")}
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(truth, leave_out=gone))
    assert main(["landmarks", str(study), "--out", str(tmp_path / "L.json")]) == 0
    assert read_landmarks(tmp_path / "L.json").vertebrae == (Vertebra.C3, Vertebra.C5)
    assert "no two adjacent bodies found" in caplog.text


def test_analyze_without_landmarks_writes_review_and_says_so(phantom, monkeypatch, tmp_path, caplog):
    caplog.set_level("INFO", logger="dmx")
    study, truth = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(truth, confidence={"C6": 0.2}))
    out = tmp_path / "out"
    assert main(["analyze", str(study), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "measurements.json",
        "report.html",
        "review.html",
        "landmarks.auto.json",
        "landmarks.csv",
    } <= names
    err = caplog.text
    assert "landmarks found automatically: review them" in err
    assert "C6  found    confidence 0.20  (low: check it)" in err
    assert f"correct {out / 'review.html'}, then re-run with --landmarks" in err
    assert json.loads((out / "measurements.json").read_text())["landmarks_source"] == "auto"


def test_landmarks_into_an_unwritable_place_is_one_line(phantom, monkeypatch, tmp_path, capsys):
    study, truth = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(truth))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["landmarks", str(study), "--out", str(blocker / "L.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"dmx: error: {blocker / 'L.json'}: cannot write the landmark file"
    )
    # a new folder is made when needed
    assert main(["landmarks", str(study), "--out", str(tmp_path / "new" / "L.json")]) == 0
    assert read_landmarks(tmp_path / "new" / "L.json").frame == 0


def _review_data(page) -> dict:
    html = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script [^>]*id="dmx-review">(.*?)</script>', html).group(1))


EVERY_BODY = {v: "no vertebral body" for v in ("C2", "C3", "C4", "C5", "C6", "C7")}


def _searched_too(study) -> str:
    """What the one error line adds where every frame of the cine was searched (dmx.pipeline.other_frames)."""
    from dmx.io.load import load_sequence
    from dmx.pipeline import other_frames

    frames = ", ".join(map(str, other_frames(load_sequence(study).n_frames)))
    return f" (on frame 0; frames {frames} of the cine searched too)"


def test_landmarks_finding_nothing_writes_the_review_page_not_the_file_exit_1(
    phantom, monkeypatch, tmp_path, capsys
):
    study, truth = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(truth, leave_out=EVERY_BODY))
    out, page = tmp_path / "L.json", tmp_path / "review.html"
    assert main(["landmarks", str(study), "--out", str(out), "--review", str(page)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"dmx: error: {study}: automatic landmark detection found no vertebral body{_searched_too(study)}; "
        f"{out} not written; place each body by hand in the review page {page} "
        "(then 'Download corrected landmarks') and run: "
        f"dmx analyze {study} --landmarks <downloaded file>"
    )
    assert not out.exists()  # no landmark file pretending there are landmarks
    data = _review_data(page)
    assert data["bodies"] == [] and list(data["missing"]) == ["C2", "C3", "C4", "C5", "C6", "C7"]
    assert "No vertebral body was found automatically" in page.read_text(encoding="utf-8")
    # without --review: nothing written, one line saying how to get the page
    assert main(["landmarks", str(study), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"{out} not written; add --review page.html to place them by hand")
    assert not out.exists()


def test_landmarks_with_detection_unavailable_still_writes_the_review_page(
    phantom, monkeypatch, tmp_path, capsys
):
    study, _ = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", unavailable(FileNotFoundError("no model file")))
    out, page = tmp_path / "L.json", tmp_path / "review.html"
    assert main(["landmarks", str(study), "--out", str(out), "--review", str(page)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "automatic landmark detection is not available (no model file)" in err and str(page) in err
    assert not out.exists()
    assert set(_review_data(page)["missing"].values()) == {
        "automatic detection not available (no model file)"
    }


def test_analyze_finding_nothing_writes_the_review_page_into_out_and_says_where(
    phantom, monkeypatch, tmp_path, capsys
):
    study, truth = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(truth, leave_out=EVERY_BODY))
    out = tmp_path / "out"
    assert main(["analyze", str(study), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"dmx: error: {study}: automatic landmark detection found no vertebral body{_searched_too(study)}; "
        f"place the bodies by hand in the review page {out / 'review.html'} "
        "(then 'Download corrected landmarks') and run: "
        f"dmx analyze {study} --landmarks <downloaded file>"
    )
    assert sorted(p.name for p in out.iterdir()) == ["review.html"]
    assert _review_data(out / "review.html")["missing"]["C4"] == "no vertebral body"
