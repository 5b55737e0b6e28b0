"""Atlanto-dental interval end to end: the phantom analysed by ``dmx.pipeline.analyze`` against its truth."""

import json

import numpy as np
import pytest

from dmx import pipeline
from dmx.phantom import make_phantom, write_phantom


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    out = tmp_path_factory.mktemp("adi")
    paths = write_phantom(make_phantom(seed=5, adi_mm=3.0), out)
    analysis = pipeline.analyze(paths["study"], landmarks_path=paths["landmarks"])
    return analysis, json.loads(paths["truth"].read_text())


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
    json.dumps(doc, allow_nan=False)


def test_adi_flag_follows_the_threshold(tmp_path):
    # 4 mm is well above the 3 mm threshold; 1.5 mm well below
    for adi_mm, flagged in ((4.0, True), (1.5, False)):
        paths = write_phantom(make_phantom(frames=20, seed=6, adi_mm=adi_mm), tmp_path / str(adi_mm))
        adi = pipeline.analyze(paths["study"], landmarks_path=paths["landmarks"]).measurements["adi"]
        assert ("adi_gt_3mm" in adi["flags"]) is flagged
        assert adi["flags_not_evaluated"] == []
