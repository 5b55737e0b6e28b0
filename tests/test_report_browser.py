"""The HTML report in a real headless Chromium: renders, plays, stabilises, stays inert, prints.

Needs the Python package ``playwright`` (driving the system browser; ``playwright install`` is
not used) and a Chromium at ``/usr/bin/chromium`` (Debian package ``chromium``) or at
``$DMX_CHROMIUM``. Without them the tests are skipped with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from browser_support import CHROMIUM
from report_fixtures import HOSTILE_DESCRIPTION, HOSTILE_NAME, make_analysis

from dmx.report import write_report


class Page:
    """A page that records console errors, page errors, dialogs and requests."""

    def __init__(self, browser, path) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    write_report(make_analysis(), path)
    return path


@pytest.fixture(scope="module")
def hostile_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "report.html"
    write_report(make_analysis(n_frames=16, calibrated=False, hostile=True), path)
    return path


def canvas_region(page, canvas_id: str, box: tuple[int, int, int, int]) -> np.ndarray:
    """Red channel of ``box`` = (x0, y0, x1, y1) of a canvas, as floats."""
    x0, y0, x1, y1 = (int(v) for v in box)
    data = page.evaluate(
        """([id, x, y, w, h]) => { const c = document.getElementById(id);
             const d = c.getContext('2d').getImageData(x, y, w, h).data;
             const out = []; for (let i = 0; i < d.length; i += 4) { out.push(d[i]); } return out; }""",
        [canvas_id, x0, y0, x1 - x0, y1 - y0],
    )
    return np.array(data, dtype=float).reshape(y1 - y0, x1 - x0)


def test_report_renders_without_errors(browser, report_file, tmp_path):
    p = Page(browser, report_file)
    page = p.page
    page.wait_for_timeout(300)
    shot = tmp_path / "shot.png"
    page.screenshot(path=str(shot), full_page=True)
    import cv2

    img = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    assert img is not None and img.shape[0] > 2000 and img.std() > 20  # not blank
    for selector in (
        "#verdict .headline",
        "table.levels",
        "svg.keyframe-img",
        "#plot-angle",
        "#plot-offset",
        "#cine",
        "#stable",
        "#frame-counter",
        "#qc",
        "#methods",
    ):
        assert page.locator(selector).count() >= 1, selector
    assert page.inner_text("#verdict .headline") == "Exceeds a threshold at C4-C5"
    assert page.locator("svg.keyframe-img").count() == 3
    # the key-frame images decoded (a broken data URI would leave them empty)
    assert page.evaluate("document.querySelectorAll('svg.keyframe-img image').length") == 3
    assert p.errors == []
    assert all(u.startswith(("file:", "data:")) for u in p.requests), p.requests
    page.close()


def test_cine_plays_and_stabilises(browser, report_file):
    p = Page(browser, report_file)
    page = p.page
    assert page.inner_text("#frame-counter") == "frame 0 / 47"
    page.click("#play")
    page.wait_for_function(
        "document.getElementById('frame-counter').textContent !== 'frame 0 / 47'", timeout=5000
    )
    page.click("#play")  # pause
    shown = page.inner_text("#frame-counter")
    page.wait_for_timeout(300)
    assert page.inner_text("#frame-counter") == shown  # paused
    # scrub to flexion (frame 12) and compare with neutral, stabilised on C5
    page.select_option("#stabilise", label="C5")
    page.eval_on_selector("#scrub", "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }")
    page.wait_for_timeout(100)
    # the box inside C5 (reference corners; cine pixels = frame pixels here) stays put only when stabilised
    c5 = make_analysis(n_frames=2).tracks.corners_px[0, 3]
    box = (*(np.floor(c5.min(axis=0)) + 2), *(np.ceil(c5.max(axis=0)) - 2))
    raw0, stable0 = canvas_region(page, "cine", box), canvas_region(page, "stable", box)
    page.click("button.jump[data-key='flexion']")
    page.wait_for_timeout(200)
    assert page.inner_text("#frame-counter") == "frame 12 / 47"
    raw12, stable12 = canvas_region(page, "cine", box), canvas_region(page, "stable", box)
    raw_change = np.abs(raw12 - raw0).mean()
    stable_change = np.abs(stable12 - stable0).mean()
    assert stable_change < raw_change / 2, (stable_change, raw_change)
    # the plot cursor follows the cine
    x = float(page.get_attribute("#plot-angle line.cursor", "x1"))
    assert x > float(page.get_attribute("#plot-angle line.cursor", "data-x0")) + 10
    assert p.errors == []
    page.close()


def test_hostile_strings_stay_inert_text(browser, hostile_file):
    p = Page(browser, hostile_file)
    page = p.page
    page.wait_for_timeout(300)
    assert p.dialogs == []
    header = page.inner_text("header")
    assert HOSTILE_NAME.split("=")[0] in header  # the PN before its '=' group separator, literally
    assert HOSTILE_DESCRIPTION in header
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.scripts.length") == 2
    assert p.errors == []
    page.close()


def test_print_hides_the_player(browser, report_file):
    p = Page(browser, report_file)
    page = p.page
    page.emulate_media(media="print")
    assert not page.is_visible("#player")
    assert page.is_visible("#verdict") and page.is_visible("table.levels") and page.is_visible("#keyframes")
    page.close()


def test_pdf_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("DMX_CHROMIUM", CHROMIUM)
    out = write_report(make_analysis(n_frames=12, size_px=192), tmp_path / "r.html", pdf=True)
    pdf = out["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000


def test_auto_landmarks_banner_is_visible_first(browser, tmp_path):
    from test_report import auto_analysis

    path = tmp_path / "report.html"
    write_report(auto_analysis(make_analysis(n_frames=12, size_px=192)), path)
    p = Page(browser, path)
    page = p.page
    assert page.is_visible("#auto-landmarks")
    assert page.inner_text("#auto-landmarks h2") == "Landmarks found automatically: review"
    top = page.evaluate("document.getElementById('auto-landmarks').getBoundingClientRect().top")
    assert top < page.evaluate("document.getElementById('verdict').getBoundingClientRect().top")
    assert page.evaluate("document.querySelectorAll('#auto-landmarks svg.keyframe-img image').length") == 1
    assert p.errors == [] and p.dialogs == []
    page.close()
