"""comparison.html in a real headless Chromium: renders, verdict first, self-contained, inert.

Needs the Python package ``playwright`` and a Chromium (see ``browser_support``); without them
the tests are skipped with the reason.
"""

from __future__ import annotations

import json

import pytest
from browser_support import CHROMIUM  # noqa: F401  (skips this module without a browser)
from followup_support import BASELINE_EXTRA_MM, FOLLOWUP_EXTRA_MM, make_visit

from dmx.pipeline import write_comparison

HOSTILE = "<script>alert(2)</script>^<img src-x>"


@pytest.fixture(scope="module")
def comparison_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp-browser")
    outs = [
        make_visit(root / "v1", seed=3, extra_mm=BASELINE_EXTRA_MM, study_date="20260415"),
        make_visit(root / "v2", seed=4, extra_mm=FOLLOWUP_EXTRA_MM, study_date="20260601"),
    ]
    for out in outs:  # a hostile patient name and description, as a vendor might send
        path = out / "measurements.json"
        doc = json.loads(path.read_text())
        doc["study"]["patient_name"] = HOSTILE
        path.write_text(json.dumps(doc))
    written = write_comparison(outs[0], outs[1], root / "cmp")
    return written["html"]


@pytest.fixture()
def page(browser, comparison_file):
    errors, dialogs, requests = [], [], []
    pg = browser.new_page(viewport={"width": 1300, "height": 900})
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(comparison_file.as_uri())
    pg.wait_for_load_state("load")
    yield pg, errors, dialogs, requests
    pg.close()


def test_renders_verdict_first_with_the_change(page):
    pg, errors, dialogs, requests = page
    assert errors == [] and dialogs == []
    assert requests == [requests[0]] and requests[0].startswith("file://")  # nothing but the file itself
    first = pg.locator("main > section").first
    assert first.get_attribute("id") == "verdict"
    verdict = first.locator(".verdict-list li").first.inner_text()
    assert verdict.startswith("C4-C5 translation fell from 5.3 to 3.0 mm, beyond the 0.5 mm detectable")
    assert "C4-C5: translation_gt_3_5mm" in pg.locator("#flags-resolved").inner_text()
    assert pg.locator("#flags-new").inner_text() == "none"


def test_table_marks_only_the_changed_level(page):
    pg, *_ = page
    changed = pg.locator("table.cmp tr.changed")
    levels = {changed.nth(i).get_attribute("data-level") for i in range(changed.count())}
    assert levels == {"C4-C5"}
    row = pg.locator('table.cmp tr[data-level="C4-C5"][data-measure="Translation (mm)"]')
    cells = row.locator("td").all_inner_texts()
    assert cells[1:] == ["5.3", "3.0", "\u22122.3", "0.5", "yes"]
    assert pg.locator('table.cmp tr[data-level="C5-C6"] td.sig').all_inner_texts() == ["no"] * 6


def test_curves_and_key_frames_of_both_studies(page):
    pg, *_ = page
    assert pg.locator("#curves svg.plot").count() == 10  # angle and offset for five levels
    offset = pg.locator('svg[id="cmp-offset-C4-C5"] path.series')
    assert offset.count() == 2  # baseline and follow-up overlaid
    figures = pg.locator("#keyframes svg.keyframe-img")
    assert figures.count() == 6  # three key frames x two studies, re-read from the inputs
    assert figures.first.locator("image").get_attribute("href").startswith("data:image/jpeg;base64,")
    assert figures.first.locator("circle.kf-corner").count() == 24  # C2-C7 x 4 corners
    box = figures.first.bounding_box()
    assert box["width"] > 100 and box["height"] > 100
    assert pg.locator("#images-note").count() == 0
    script = "[...document.querySelectorAll('#keyframes image')].every(i => i.getBBox().width > 0)"
    assert pg.evaluate(script)


def test_patient_name_is_text_not_markup(page):
    pg, _, dialogs, _ = page
    assert dialogs == []
    assert pg.locator("img").count() == 0 and pg.locator("script").count() == 0
    assert "<script>alert(2)</script>, <img src-x>" in pg.locator(".facts").inner_text()
