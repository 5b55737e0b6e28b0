"""The landmark review page (dmx.report.review): data, escaping, self-containment (no browser here)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from report_fixtures import HOSTILE_DESCRIPTION, make_analysis
from test_report import external_references

from dmx.anatomy import UpperCervicalPoint, Vertebra
from dmx.io.sequence import StudyInfo
from dmx.landmarks import Landmarks
from dmx.report.review import DOWNLOAD_NAME, LOW_CONFIDENCE, render_review, review_payload, write_review


def review_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="dmx-review">(.*?)</script>', html, flags=re.S)
    assert m, "data block missing"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def study():
    a = make_analysis(n_frames=3, size_px=192)
    lm = a.landmarks
    corners = {v: c for v, c in lm.corners_px.items() if v is not Vertebra.C7}
    conf = {v: 0.9 for v in corners} | {Vertebra.C4: 0.3}
    extra = {UpperCervicalPoint.C2_DENS_ANT: np.array([40.5, 20.25])}
    return a.sequence, Landmarks(frame=1, corners_px=corners, extra_px=extra, confidence=conf)


def test_payload_carries_the_corners_in_image_pixels_and_the_frame(study):
    seq, lm = study
    d = review_payload(seq, lm, missing={"C7": "below the shoulders"})
    assert (d["width"], d["height"], d["frame"], d["schema"]) == (192, 192, 1, "dmx.landmarks/1")
    assert [b["name"] for b in d["bodies"]] == ["C2", "C3", "C4", "C5", "C6"]
    c4 = next(b for b in d["bodies"] if b["name"] == "C4")
    np.testing.assert_allclose(c4["corners"], lm.corners_px[Vertebra.C4], atol=1e-3)
    assert c4["confidence"] == 0.3 and c4["confidence"] < LOW_CONFIDENCE
    assert d["missing"] == {"C7": "below the shoulders"}
    assert d["extra"] == {"C2.dens_ant": [40.5, 20.25]}
    assert d["corners"] == ["ant_sup", "post_sup", "post_inf", "ant_inf"]
    assert d["order"][:6] == ["C2", "C3", "C4", "C5", "C6", "C7"]
    assert d["image"].startswith("data:image/jpeg;base64,") and d["file_name"] == DOWNLOAD_NAME


def test_page_is_self_contained_and_says_what_to_review(study):
    seq, lm = study
    html = render_review(seq, lm, missing={"C7": "below the shoulders"}, warnings=["scale prior unused"])
    assert external_references(html) == []
    assert "Landmarks found automatically: review." in html
    assert "especially C4 (confidence below 0.8)" in html
    assert "not found: C7 (below the shoulders)" in html
    assert "scale prior unused" in html
    assert "Download corrected landmarks" in html
    assert f"dmx analyze STUDY --landmarks {DOWNLOAD_NAME}" in html
    assert html.count("<script") == 2  # the data block and the page's own script
    assert review_data(html)["frame"] == 1


def test_hand_placed_landmarks_have_no_automatic_banner(study):
    seq, lm = study
    html = render_review(seq, Landmarks(frame=0, corners_px=dict(lm.corners_px)), automatic=False)
    assert "found automatically" not in html
    assert review_data(html)["bodies"][0]["confidence"] is None


def test_dicom_text_and_detector_text_are_escaped(study):
    seq, lm = study
    hostile = type(seq)(
        **{
            **seq.__dict__,
            "study": StudyInfo(patient_id="<b>P</b>", study_description=HOSTILE_DESCRIPTION),
        }
    )
    html = render_review(
        hostile, lm, missing={"C7": "</script><script>alert(3)</script>"}, warnings=["<i>w</i>"]
    )
    assert HOSTILE_DESCRIPTION not in html and "<b>P</b>" not in html and "<i>w</i>" not in html
    assert "&lt;b&gt;P&lt;/b&gt;" in html and "&lt;i&gt;w&lt;/i&gt;" in html
    assert "<script>alert" not in html
    assert review_data(html)["missing"] == {"C7": "</script><script>alert(3)</script>"}  # intact as data
    assert html.count("<script") == 2


def test_write_review_is_atomic_and_returns_the_path(study, tmp_path):
    seq, lm = study
    path = write_review(seq, lm, tmp_path / "sub" / "review.html")
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in path.parent.iterdir()] == ["review.html"]
