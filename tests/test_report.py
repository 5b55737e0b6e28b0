"""The HTML report: content, escaping, self-containment and size (no browser needed here)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from report_fixtures import HOSTILE_DESCRIPTION, HOSTILE_NAME, make_analysis

from dmx.errors import DmxError
from dmx.report import images, plots, render_report, thresholds, verdict, wording, write_report
from dmx.report.render import script_json
from dmx.tracking.types import rigid_from_corners

DATA_URI = re.compile(r"data:[A-Za-z0-9.+/-]+;base64,[A-Za-z0-9+/=]*")


def external_references(html: str) -> list[str]:
    """Everything in ``html`` that could make a browser fetch something from elsewhere."""
    text = DATA_URI.sub("data:", html)
    found = []
    found += re.findall(r"https?:", text, flags=re.I)
    found += re.findall(r"//[A-Za-z0-9]", text)  # protocol-relative //host (data URIs removed first)
    found += re.findall(r"xmlns", text, flags=re.I)
    for tag in re.findall(r"<[A-Za-z][^>]*>", text):  # real tags only: escaped text starts with &lt;
        for m in re.findall(
            r"""\s(?:src|href|srcset|poster|action|formaction|background)\s*=\s*["']?([^"'\s>]*)""",
            tag,
            flags=re.I,
        ):
            if not (m.startswith("data:") or m.startswith("#")):
                found.append(m)
    found += [
        m for m in re.findall(r"url\(\s*['\"]?([^)'\"]*)", text, flags=re.I) if not m.startswith("data:")
    ]
    found += re.findall(r"@import|<link\b|<iframe\b|<object\b|<embed\b", text, flags=re.I)
    return found


@pytest.fixture(scope="module")
def analysis():
    return make_analysis()


@pytest.fixture(scope="module")
def html(analysis):
    return render_report(analysis)


@pytest.fixture(scope="module")
def uncalibrated():
    return make_analysis(calibrated=False, hostile=True)


@pytest.fixture(scope="module")
def uncalibrated_html(uncalibrated):
    return render_report(uncalibrated)


def embedded_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="dmx-data">(.*?)</script>', html, flags=re.S)
    assert m, "data block missing"
    return json.loads(m.group(1))


# --- the verdict -----------------------------------------------------------------------------


def test_verdict_names_the_flagged_level_and_its_thresholds(analysis):
    v = verdict(analysis.measurements)
    assert v.state == "flagged"
    assert v.flagged_levels == ("C4-C5",)
    flags = {f.flag for f in v.findings}
    assert flags == {
        "translation_gt_3_5mm",
        "translation_gt_2mm",
        "translation_gt_20pct",
        "angulation_gt_11deg_vs_adjacent",
    }
    t = next(f for f in v.findings if f.flag == "translation_gt_3_5mm")
    assert "+4.2 mm" in t.text and "threshold 3.5 mm" in t.text
    assert t.source == "AMA Guides 5th ed. (AOMSI)"
    ang = next(f for f in v.findings if f.flag == "angulation_gt_11deg_vs_adjacent")
    assert "C3-C4 9.0\u00b0 (difference 13.0\u00b0)" in ang.text


def test_verdict_reports_insufficient_motion_and_curves(analysis):
    v = verdict(analysis.measurements)
    assert v.insufficient == ("C2-C3",)
    assert "C2-C3 (2.8\u00b0)" in v.motion_text and "unreliable" in v.motion_text
    assert [(c.key, c.words, c.cobb) for c in v.curves] == [
        ("neutral", "lordotic", "+12.5"),
        ("flexion", "kyphotic", "\u221216.4"),
        ("extension", "lordotic", "+41.4"),
    ]


def test_verdict_clear_study_says_so():
    m = make_analysis().measurements
    m = json.loads(json.dumps(m))
    for lvl in m["levels"].values():
        lvl["flags"] = []
    v = verdict(m)
    assert v.state == "clear"
    assert v.headline == "No level exceeds a threshold"
    assert v.motion_text.startswith("Motion sufficient")
    m["levels"]["C2-C3"]["flags"] = ["insufficient_motion"]
    m["levels"]["C6-C7"]["rotation_rom_deg"] = m["levels"]["C6-C7"]["translation_pct"] = None
    v = verdict(m)
    assert v.state == "incomplete"
    assert v.headline == (
        "No measured level exceeds a threshold; C6-C7 could not be measured; "
        "C2-C3 moved too little to be judged"
    )


def test_s_curve_words():
    m = json.loads(json.dumps(make_analysis(n_frames=12).measurements))
    m["curve"]["neutral"].update({"class": "s_curve", "s_type": "upper_kyphotic"})
    assert verdict(m).curves[0].words == "S-curve (upper part kyphotic)"


def test_thresholds_recorded_values_win_over_defaults(analysis):
    m = json.loads(json.dumps(analysis.measurements))
    m["thresholds"]["translation_gt_3_5mm"] = {"value": 3.0, "source": "local protocol", "origin": "user"}
    th = thresholds(m)
    assert th["translation_gt_3_5mm"].value == 3.0
    assert th["translation_gt_3_5mm"].source == "local protocol"
    assert "3.0 mm" in th["translation_gt_3_5mm"].rule
    del m["thresholds"]
    th = thresholds(m)
    assert th["translation_gt_20pct"].value == 20.0
    assert th["translation_gt_20pct"].origin == "dmx default (not recorded)"


def test_fmt_never_turns_null_into_zero():
    assert wording.fmt(None) == "\u2014"
    assert wording.fmt(float("nan")) == "\u2014"
    assert wording.fmt(0.0) == "0.0"
    assert wording.fmt(-1.25, 2, signed=True) == "\u22121.25"


# --- the document ----------------------------------------------------------------------------


def test_report_is_self_contained(html, uncalibrated_html):
    for doc in (html, uncalibrated_html):
        assert external_references(doc) == []
        assert "<svg" in doc and "data:image/jpeg;base64," in doc


def test_external_reference_check_catches_urls():
    bad = [
        '<img src="x.png">',
        '<a href="https://example.org">',
        '<div style="background: url(/x.png)">',
        "<script>fetch('//cdn.example.com/x')</script>",
        '<svg xmlns="http://www.w3.org/2000/svg">',
        '<link rel="stylesheet" href="a.css">',
    ]
    for doc in bad:
        assert external_references(doc), doc
    assert external_references('<img src="data:image/jpeg;base64,//8AAA//z">') == []


def test_report_shows_verdict_table_and_sources(html, analysis):
    assert "Exceeds a threshold at C4-C5" in html
    assert 'id="frame-counter"' in html
    for source in (
        "AMA Guides 5th ed. (AOMSI)",
        "White &amp; Panjabi",
        "Freeman et al. 2020",
        "Hipp et al. 2026",
    ):
        assert source in html
    assert analysis.measurements["input"]["sha256"] in html
    assert "dmx 0.1.0" in html
    # the level row of C4-C5 carries its translation against the 3.5 mm threshold, highlighted
    row = re.search(r"<tr class=\"row-flagged\">\s*<th scope=\"row\">C4-C5</th>(.*?)</tr>", html, flags=re.S)
    assert row and 'class="num exceeds">+4.2' in row.group(1)
    assert "mm measured at the detector, not corrected for magnification" in html


def test_uncalibrated_report_shows_dash_with_reason_never_zero(uncalibrated_html, uncalibrated):
    h = uncalibrated_html
    assert "No calibration: mm values are not available" in h
    cells = re.findall(r'<td class="num[^"]*" title="([^"]*)">([^<]*)<small class="reason">', h)
    assert cells, "null cells with a reason expected"
    assert all(text == "\u2014" and reason == "no calibration" for reason, text in cells)
    # 5 levels x (translation mm, offset range, excursion from neutral)
    assert len(cells) == 15
    assert "translation_gt_3_5mm" in uncalibrated.measurements["flags_not_evaluated"]
    assert "Not evaluated (no calibration)" in h
    assert "offset (% of depth)" in h  # the plots fall back to % of depth


def test_hostile_dicom_strings_are_escaped(uncalibrated_html):
    h = uncalibrated_html
    assert "<script>alert" not in h
    assert "<img src=x" not in h
    assert "onerror=alert" not in h.replace("onerror=alert(1)&gt;", "").replace("onerror=alert(2)&gt;", "")
    assert h.count("<script") == 2  # the data block and the player, nothing else
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in h
    assert "&lt;/script&gt;&lt;script&gt;alert(&#34;desc&#34;)" in h
    assert "Synthetic &amp; Sons &lt;Imaging&gt;" in h


def test_script_json_cannot_break_out_of_its_script():
    s = script_json({"name": HOSTILE_NAME, "d": HOSTILE_DESCRIPTION, "amp": "a&b", "ls": "\u2028"})
    assert "<" not in s and ">" not in s and "&" not in s and "\u2028" not in s
    assert json.loads(s) == {"name": HOSTILE_NAME, "d": HOSTILE_DESCRIPTION, "amp": "a&b", "ls": "\u2028"}


def test_embedded_cine_data_matches_tracks(html, analysis):
    data = embedded_data(html)
    cine = data["cine"]
    n = analysis.sequence.n_frames
    assert cine["count"] == n and cine["indices"] == list(range(n))
    assert len(cine["frames"]) == n and all(f.startswith("data:image/jpeg;base64,") for f in cine["frames"])
    s = cine["scale"]
    assert cine["width"] == round(analysis.sequence.shape[1] * s)
    c5 = cine["vertebrae"].index("C5")
    expected = analysis.tracks.corners_px[10, c5].reshape(-1) * s
    np.testing.assert_allclose(cine["corners"][10][c5], expected, atol=0.06)
    # C7 is lost at the end: no corners, no transform there
    c7 = cine["vertebrae"].index("C7")
    assert cine["corners"][-1][c7] is None and cine["transforms"][-1][c7] is None
    assert data["keys"] == {"neutral": 0, "flexion": 12, "extension": 35}


def test_rigid_transforms_from_corners_match_the_chain(analysis):
    tracks = analysis.tracks
    est = rigid_from_corners(tracks.corners_px, reference_frame=tracks.reference_frame)
    ok = np.isfinite(analysis.tracks.transforms)
    np.testing.assert_allclose(est[ok], analysis.tracks.transforms[ok], atol=1e-6)
    assert np.all(np.isnan(est[~ok]))


def test_keyframe_overlay_labels_levels(html):
    for level in ("C2-C3", "C4-C5", "C6-C7"):
        assert f">{level}</text>" in html
    assert html.count('class="kf-level kf-flagged"') == 3  # C4-C5 in each of the three key frames
    assert html.count('class="kf-level kf-insufficient"') == 3


def test_quality_control_lists_lost_frames(html, analysis):
    n = analysis.sequence.n_frames
    first = int(n * 0.88)
    assert f"<td>{first}\u2013{n - 1}</td>" in html
    assert "lost: shoulders cover the body" in html


# --- the parts -------------------------------------------------------------------------------


def test_nice_ticks_cover_the_range():
    assert plots.nice_ticks(0, 10, count=5) == [0, 2, 4, 6, 8, 10]
    t = plots.nice_ticks(-3.2, 7.9)
    assert t[0] <= -3.2 and t[-1] >= 7.9


def test_path_breaks_at_nan():
    d = plots._path(np.array([0.0, 1, 2, 3]), np.array([0.0, np.nan, 2, 3]))
    assert d == "M0.0 0.0M2.0 2.0L3.0 3.0"


def test_crop_box_contains_the_corners():
    corners = np.array([[[100.0, 50], [140, 50], [140, 300], [100, 300]]])
    x0, y0, x1, y1 = images.crop_box(corners, (512, 512))
    assert x0 <= 100 and x1 >= 140 and y0 <= 50 and y1 >= 300
    assert (x1 - x0) / (y1 - y0) == pytest.approx(0.8, abs=0.02)
    assert images.crop_box(np.full((1, 4, 2), np.nan), (64, 32)) == (0, 0, 32, 64)


def test_cine_plan_fits_the_budget():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 4096, (30, 256, 256), dtype=np.uint16)  # noise: the worst case for JPEG
    window = images.display_window(frames)
    plan = images.plan_cine(frames, window, max_side_px=128, budget_bytes=200_000)
    encoded = images.encode_cine(frames, window, plan)
    assert sum(len(u) for u in encoded) <= 200_000 * 1.1
    assert plan.scale <= 0.5
    roomy = images.plan_cine(frames, window, max_side_px=128, budget_bytes=50_000_000)
    assert roomy.frame_indices == tuple(range(30)) and roomy.jpeg_quality == 70 and roomy.scale == 0.5


def test_cine_encoded_on_threads_is_the_same_frame_for_frame():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (20, 96, 128), dtype=np.uint8)
    window = images.display_window(frames)
    plan = images.CinePlan(tuple(range(0, 20, 2)), 0.5, 70, 0)
    one = images.encode_cine(frames, window, plan, threads=1)
    assert len(one) == 10 and len(set(one)) == 10  # ten different frames, in plan order
    assert images.encode_cine(frames, window, plan, threads=3) == one
    assert one[3] == images.data_uri(
        images.jpeg_bytes(images.resize(images.to_uint8(frames[6], window), 0.5), quality=70)
    )


def test_cine_encoded_ahead_is_used_and_gives_the_same_report(analysis, monkeypatch):
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    frames = analysis.sequence.frames
    plain = render_report(analysis, generated_at=when)
    ahead = images.encode_study_cine(frames)
    assert ahead.plan.frame_indices and len(ahead.uris) == len(ahead.plan.frame_indices)
    other = images.encode_study_cine(frames, max_side_px=64)  # not the report's options: not used
    real = images.encode_cine
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "encode_cine", counted)
    assert render_report(analysis, generated_at=when, encoded_cine=ahead) == plain
    assert calls == []
    assert render_report(analysis, generated_at=when, encoded_cine=other) == plain
    assert calls == [1]


def test_display_window_handles_uint16_and_flat_frames():
    a = make_analysis(n_frames=6, size_px=128, dtype="uint16")
    lo, hi = images.display_window(a.sequence.frames)
    assert 0 <= lo < hi <= 4096
    flat = np.zeros((3, 8, 8))
    assert images.display_window(flat) == (0.0, 1.0)


@pytest.mark.parametrize("dtype, top", [(np.uint8, 255), (np.uint16, 4095), (np.uint16, 65535)])
def test_to_uint8_lookup_table_equals_the_window_arithmetic(dtype, top):
    # 8/16-bit frames go through a lookup table: the same grey levels as the float mapping, pixel for pixel
    rng = np.random.default_rng(3)
    frame = rng.integers(0, top + 1, (300, 400)).astype(dtype)
    for window in ((0.0, float(top)), (12.5, top / 3.0), (top / 2.0, top / 2.0 + 0.75)):
        lo, hi = window
        expected = np.clip(np.nan_to_num((frame.astype(np.float32) - lo) * (255.0 / (hi - lo))), 0, 255)
        got = images.to_uint8(frame, window)
        assert got.dtype == np.uint8 and got.shape == frame.shape
        np.testing.assert_array_equal(got, expected.astype(np.uint8))
        np.testing.assert_array_equal(images.to_uint8(frame[5:9, 7:30], window), got[5:9, 7:30])
    assert images.to_uint8(frame, (0.0, float(top))).max() == 255  # not a constant image


def test_report_without_cine_is_small_and_still_complete(analysis):
    h = render_report(analysis, cine=False)
    assert 'id="player"' not in h and "Exceeds a threshold at C4-C5" in h
    assert "cine" not in embedded_data(h)
    assert len(h) < 400_000


def test_write_report(tmp_path, analysis):
    out = write_report(analysis, tmp_path / "report.html")
    assert out == {"html": tmp_path / "report.html"}
    text = out["html"].read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not list(tmp_path.glob(".*.tmp"))


def test_pdf_without_browser_is_one_clear_error(tmp_path, analysis, monkeypatch):
    monkeypatch.setenv("DMX_CHROMIUM", str(tmp_path / "no-such-browser"))
    with pytest.raises(DmxError, match="cannot write the PDF: no Chromium or Chrome found"):
        write_report(analysis, tmp_path / "report.html", pdf=True, cine=False)
    assert (tmp_path / "report.html").is_file()  # the HTML is written first


def test_sparse_measurements_still_render(analysis):
    """A study where almost nothing could be measured still gives a readable report, not a crash."""
    import dataclasses

    m = {
        "schema": "dmx.measurements/1",
        "calibration": {"mm_per_px": None, "source": "none"},
        "frames": {"count": analysis.sequence.n_frames, "neutral": 0, "flexion": None, "extension": None},
        "levels": {
            "C3-C4": {"angle_deg": [None] * analysis.sequence.n_frames, "rotation_rom_deg": None, "flags": []}
        },
        "curve": {"neutral": {"class": "undetermined"}},
    }
    a = dataclasses.replace(analysis, measurements=m)
    h = render_report(a, cine=False)
    assert verdict(m).state == "incomplete"
    assert "No level could be measured" in h
    assert "Motion not measured" in h and "Motion sufficient" not in h  # nothing green when nothing measured
    assert h.count("not determined") == 2  # flexion and extension key frames
    assert external_references(h) == []


def test_unknown_frame_times_use_frame_numbers(analysis):
    import dataclasses

    m = json.loads(json.dumps(analysis.measurements))
    del m["frames"]["time_ms"]
    seq = dataclasses.replace(analysis.sequence, frame_time_ms=None)
    h = render_report(dataclasses.replace(analysis, sequence=seq, measurements=m))
    data = embedded_data(h)
    assert data["time_known"] is False
    assert data["times"][:3] == [0, 1, 2]
    assert ">frame</text>" in h  # the x axis of the plots is labelled in frames
    header = h[h.index("<header") : h.index("</header>")]
    assert "48 frames, 320\u00d7320 px</dd>" in header  # no duration or frame rate is invented


def test_thresholds_recorded_by_dmx_measure_are_shown_with_their_origin():
    from dmx.report.wording import thresholds

    recorded = {
        "translation_mm": {
            "value": 3.0,
            "flag": "translation_gt_3_5mm",
            "origin": "command line",
            "source": "AMA",
        },
        "offset_range_mm": {
            "value": 3.5,
            "flag": "translation_gt_3_5mm",
            "origin": "default",
            "source": "AMA",
        },
        "curve_tolerance_mm": {"value": 2.0, "origin": "default", "source": "spec"},
    }
    out = thresholds({"thresholds": recorded})
    assert out["translation_gt_3_5mm"].value == 3.0
    assert out["translation_gt_3_5mm"].origin == "command line"
    assert "translation_mm" not in out  # shown as its flag's threshold
    assert out["offset_range_mm"].value == 3.5  # the flag's second threshold is listed too
    assert out["curve_tolerance_mm"].value == 2.0


# --- automatic landmarks: the review banner ----------------------------------------------------


def auto_analysis(analysis):
    import dataclasses

    from dmx.landmarks import Landmarks

    lm = analysis.landmarks
    corners = {v: c for v, c in lm.corners_px.items() if v.value != "C7"}
    conf = {v: 0.9 for v in corners} | {next(v for v in corners if v.value == "C4"): 0.3}
    m = dict(analysis.measurements)
    m["landmarks_source"] = "auto"
    m["landmarks_detection"] = {
        "frame": 0,
        "confidence": {v.value: s for v, s in conf.items()},
        "missing": {"C7": "<b>below</b> the shoulders"},
        "warnings": ["scale prior unused"],
    }
    return dataclasses.replace(
        analysis, landmarks=Landmarks(frame=0, corners_px=corners, confidence=conf), measurements=m
    )


def test_auto_landmarks_banner_shows_confidence_missing_and_the_review_loop(analysis):
    html = render_report(auto_analysis(analysis), cine=False)
    banner = html.split('<section id="auto-landmarks"', 1)[1].split("</section>", 1)[0]
    assert "Landmarks found automatically: review" in banner
    assert html.index('id="auto-landmarks"') < html.index('id="verdict"')  # before any number
    rows = re.findall(
        r'<tr class="([^"]*)"><th scope="row">(C\d)</th><td class="num">([^<]*)</td><td>([^<]*)</td>', banner
    )
    assert rows == [
        ("", "C2", "0.90", "found"),
        ("", "C3", "0.90", "found"),
        ("auto-low", "C4", "0.30", "low confidence: check"),
        ("", "C5", "0.90", "found"),
        ("", "C6", "0.90", "found"),
        ("auto-missing", "C7", "\u2014", "not found: &lt;b&gt;below&lt;/b&gt; the shoulders"),
    ]
    assert "<b>below</b>" not in html
    assert "scale prior unused" in banner
    # the landmarks on the reference frame, the low-confidence one marked
    assert banner.count('class="kf-corner"') == 5 * 4
    assert ">C4?</text>" in banner and ">C5</text>" in banner
    assert '<a href="review.html">review.html</a>' in banner
    assert "dmx analyze STUDY --landmarks landmarks.reviewed.json" in banner
    assert "dmx landmarks STUDY --out L.json" in banner
    assert "detected automatically on" in html  # methods
    assert "<dt>Landmarks</dt><dd>auto: found automatically on frame 0, not yet reviewed" in html
    assert external_references(html) == ["review.html"]  # a link to the page next to it, nothing fetched


def test_file_landmarks_have_no_banner(html):
    assert 'id="auto-landmarks"' not in html and "review.html" not in html
    assert "<dt>Landmarks</dt><dd>file: given with --landmarks</dd>" in html


def test_adi_words_state_value_limit_and_why_not_measured():
    th = {"adi_mm": {"value": 3.0, "unit": "mm", "flag": "adi_gt_3mm"}}
    m = {"thresholds": th, "adi": {"adi_mm": [2.9, None, 3.4], "max_mm": 3.4, "flags": ["adi_gt_3mm"]}}
    text, raised = wording.adi_words(m)
    assert raised and "largest 3.4 mm, above the 3.0 mm limit" in text and "2 of 3 frames" in text
    m["adi"] = {"adi_mm": [1.4, 1.6], "max_mm": 1.6, "flags": []}
    text, raised = wording.adi_words(m)
    assert not raised and "largest 1.6 mm" in text and "limit" not in text
    text, raised = wording.adi_words({"adi": {"adi_mm": None, "adi_px": [5.0, 6.25], "max_mm": None}})
    assert not raised and f"largest {wording.fmt(6.25)} px (no calibration" in text
    assert "not measured" in wording.adi_words({"adi": None})[0]


def test_report_shows_the_adi(html):
    assert 'class="adi' in html and "Atlanto-dental interval" in html


def test_methods_state_the_smoothing_when_there_was_some(analysis, html):
    import dataclasses

    assert "smoothed over" not in html  # the fixture's tracks are raw (no "tracking" record)
    m = dict(analysis.measurements, tracking={"smoothing": "local quadratic", "window_frames": 7})
    h = render_report(dataclasses.replace(analysis, measurements=m), cine=False)
    assert "smoothed over 7 frames by a local quadratic fit" in h and "faint against its noise" not in h
    # a faint body smoothed over more frames (dmx.tracking.smoothing.faint_window) is named with its window
    m["tracking"] = dict(m["tracking"], body_window_frames={"C7": 17})
    h = render_report(dataclasses.replace(analysis, measurements=m), cine=False)
    assert "a body faint against its noise over more frames (C7 over 17)" in h


def test_methods_state_the_grid_lines_taken_out_before_tracking(analysis, html):
    import dataclasses

    assert "grid lines" not in html
    words = "anti-scatter grid lines running across, every 4.59 px"
    tracking = {"smoothing": None, "window_frames": 0, "grid_lines": words}
    m = dict(analysis.measurements, tracking=tracking)
    h = render_report(dataclasses.replace(analysis, measurements=m), cine=False)
    said = f"The images show {words}: they were taken out of the images before the bodies were registered"
    assert said in h


def test_methods_table_gives_every_threshold_a_rule_in_words_and_a_unit(analysis):
    from dmx.measure.config import Thresholds

    m = json.loads(json.dumps(analysis.measurements))
    m["thresholds"] = Thresholds().to_json()  # every threshold dmx applies, as measurements.json records them
    import dataclasses

    h = render_report(dataclasses.replace(analysis, measurements=m), cine=False)
    table = re.search(r'<table class="thresholds">.*?</table>', h, re.S).group(0)
    rows = re.findall(
        r'<tr id="th-([^"]+)"><td><code>[^<]*</code></td><td>(.*?)</td><td class="num">(.*?)</td>', table
    )
    names = {name for name, _, _ in rows}
    assert {"offset_range_mm", "curve_tolerance_mm", "curve_tolerance_pct_depth"} <= names
    for name, rule, value in rows:
        assert rule != name and name not in rule, (name, rule)  # the key is not repeated as its rule
        assert re.fullmatch(r"[\d.]+(\s(mm|%)|°)", value), (name, value)  # a unit with every number
    by_name = {name: (rule, value) for name, rule, value in rows}
    assert by_name["curve_tolerance_pct_depth"][1] == "12.5 %"
    assert by_name["curve_tolerance_mm"][1] == "2.0 mm" and "chord" in by_name["curve_tolerance_mm"][0]
    assert by_name["offset_range_mm"][1] == "3.5 mm"


def test_quality_control_explains_the_one_tracking_threshold(analysis):
    from dmx.tracking import TRUSTED_QUALITY

    h = render_report(analysis, cine=False)
    qc = re.search(r'<section id="qc".*?</section>', h, re.S).group(0)
    text = re.sub(r"<[^>]+>", "", qc)
    assert TRUSTED_QUALITY == 0.6
    assert "A frame below 0.6 is not used" in text and "never guessed" in text
    assert "0.5" not in text  # not a second, contradictory threshold


def test_end_range_table_shows_the_uncertainty(analysis):
    import copy
    import dataclasses

    m = copy.deepcopy(analysis.measurements)
    lvl = next(v for v in m["levels"].values() if v.get("rotation_rom_deg") is not None)
    lvl["rotation_rom_deg"], lvl["rotation_rom_uncertainty_deg"] = 12.34, 0.26
    lvl["translation_mm"], lvl["translation_uncertainty_mm"] = 1.5, 0.014  # would read 0.0: two more digits
    lvl["translation_pct"], lvl["translation_uncertainty_pct"] = 9.0, None  # unknown: no "±"
    m["frames"] = dict(m["frames"], key_frame_basis="sum_angle_deg", key_frame_levels=["C4-C5", "C5-C6"])
    m["thresholds"] = dict(m["thresholds"], max_angle_uncertainty_deg={"value": 1.0, "flag": None})
    h = render_report(dataclasses.replace(analysis, measurements=m), cine=False)
    assert "+12.3 \u00b1 0.3<" in h
    assert "+1.5 \u00b1 0.01<" in h
    assert "+9.0<" in h
    assert "sum of the segmental angles of C4-C5, C5-C6 (the levels tracked in every frame)" in h
    assert "angle uncertainty exceeds 1.0\u00b0 is not measured" in h
    assert wording.fmt_uncertainty(0.0004, 1) == "0.000"
    assert "tracked in every frame" not in render_report(analysis, cine=False)  # Cobb basis: not said


def test_without_key_frames_the_reason_and_flags_say_so(analysis):
    """One image (no flexion/extension frame): the end-range cells say why, and a level whose flags
    could none be evaluated shows "not evaluated", never "none" (no flag found)."""
    import copy

    a = copy.deepcopy(analysis)
    m = a.measurements
    assert wording.null_reason(m, "rotation_rom_deg") == "not tracked at a key frame"
    m["frames"].update(flexion=None, extension=None)
    every = ["translation_gt_3_5mm", "translation_gt_20pct", "translation_gt_2mm",
             "angulation_gt_11deg_vs_adjacent", "insufficient_motion"]  # fmt: skip
    for lvl in m["levels"].values():
        lvl.update(rotation_rom_deg=None, translation_mm=None, translation_pct=None, flags=[],
                   flags_not_evaluated=every)  # fmt: skip
    assert wording.null_reason(m, "rotation_rom_deg") == "no flexion/extension frame"
    h = render_report(a)
    flag_cells = re.findall(r'<td class="flags"><span class="none">([^<]*)</span>', h)
    assert flag_cells == ["not evaluated"] * 5
