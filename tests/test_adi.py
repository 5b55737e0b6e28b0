"""Atlanto-dental interval end to end: the phantom analysed by ``dmx.pipeline.analyze`` against its truth."""

import json

import numpy as np
import pytest

from dmx import pipeline
from dmx.cli import main
from dmx.measure import validate_measurements
from dmx.phantom import make_phantom, write_phantom


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_phantom(make_phantom(seed=5, adi_mm=3.0), tmp_path_factory.mktemp("adi"))


@pytest.fixture(scope="module")
def analysed(written):
    analysis = pipeline.analyze(written["study"], landmarks_path=written["landmarks"])
    return analysis, json.loads(written["truth"].read_text())


def test_adi_per_frame_matches_the_phantom(analysed):
    analysis, truth = analysed
    adi = analysis.measurements["adi"]
    got = np.array([np.nan if x is None else x for x in adi["adi_mm"]])
    want = np.array(truth["adi_mm"])
    assert got.shape == want.shape == (60,)
    assert np.isfinite(got).all()
    assert np.abs(got - want).max() < 0.15, np.abs(got - want)
    assert adi["max_mm"] == pytest.approx(np.max(got))
    assert adi["adi_px"] is None  # calibrated: mm only


def test_c1_is_tracked_but_not_a_body(analysed):
    analysis, _ = analysed
    doc = analysis.measurements
    assert "C1" in [v.value for v in analysis.tracks.vertebrae]
    assert "C1" not in doc["tracks"] and "C1" not in doc["quality"]
    assert "C1" not in doc.get("tracking_lost", {})
    # the body measurements are unaffected by the extra track
    assert set(doc["tracks"]) == {"C2", "C3", "C4", "C5", "C6", "C7"}
    assert doc["facing"]["vertebra_frames_total"] == 6 * 60
    validate_measurements(doc)


def test_dmx_analyze_writes_the_adi(written, tmp_path, capsys):
    rc = main(
        [
            "analyze",
            str(written["study"]),
            "--landmarks",
            str(written["landmarks"]),
            "--out",
            str(tmp_path),
            "--no-report",
        ]
    )
    assert rc == 0
    assert "ADI max: 3." in capsys.readouterr().out
    doc = json.loads((tmp_path / "measurements.json").read_text())
    truth = np.array(json.loads(written["truth"].read_text())["adi_mm"])
    assert np.abs(np.array(doc["adi"]["adi_mm"], dtype=float) - truth).max() < 0.15
    adi_threshold = [t for t in doc["thresholds"].values() if t["flag"] == "adi_gt_3mm"]
    assert [(t["value"], t["unit"]) for t in adi_threshold] == [(3.0, "mm")]


def test_adi_flag_follows_the_threshold(tmp_path):
    # 4 mm is well above the 3 mm threshold; 1.5 mm well below
    for adi_mm, flagged in ((4.0, True), (1.5, False)):
        paths = write_phantom(
            make_phantom(frames=20, rows=384, cols=384, seed=6, adi_mm=adi_mm), tmp_path / str(adi_mm)
        )
        adi = pipeline.analyze(paths["study"], landmarks_path=paths["landmarks"]).measurements["adi"]
        assert ("adi_gt_3mm" in adi["flags"]) is flagged
        assert adi["flags_not_evaluated"] == []
