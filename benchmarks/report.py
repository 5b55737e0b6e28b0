"""Report size and speed on a 600-frame 1024x1024 synthetic study.

Prints the HTML size (target: within 15 MB), the render time, how the cine was
encoded, and, when Playwright and Chromium are available, how long the page takes
to open (target: under 2 s).

    PYTHONPATH=. python benchmarks/report.py [--frames 600] [--size 1024] [--pdf]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from report_fixtures import make_analysis  # noqa: E402

from dmx.report import render_report  # noqa: E402
from dmx.report.pdf import print_to_pdf  # noqa: E402


def open_time_s(path: Path) -> float | None:
    """Seconds from navigation to the load event plus the first cine frame drawn, in headless Chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    chromium = os.environ.get("DMX_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        return None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = b.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.perf_counter()
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("document.getElementById('frame-counter').textContent.startsWith('frame 0')")
        elapsed = time.perf_counter() - t0
        b.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--pdf", action="store_true", help="also time printing to PDF")
    args = ap.parse_args()

    t0 = time.perf_counter()
    analysis = make_analysis(n_frames=args.frames, size_px=args.size)
    built_s = time.perf_counter() - t0
    print(f"synthetic study: {args.frames} frames {args.size}x{args.size}, built in {built_s:.1f} s")

    t0 = time.perf_counter()
    html = render_report(analysis)
    render_s = time.perf_counter() - t0
    size = len(html.encode("utf-8"))
    print(f"render time: {render_s:.1f} s")
    print(f"report size: {size / 1e6:.2f} MB ({'within' if size <= 15e6 else 'OVER'} the 15 MB target)")

    import json
    import re

    data = json.loads(re.search(r'id="dmx-data">(.*?)</script>', html, flags=re.S).group(1))
    cine = data["cine"]
    frame_bytes = sum(len(f) for f in cine["frames"])
    print(
        f"cine: {len(cine['frames'])} of {cine['count']} frames at {cine['width']}x{cine['height']} px, "
        f"JPEG quality {cine['jpeg_quality']}, {frame_bytes / 1e6:.2f} MB "
        f"({frame_bytes / len(cine['frames']) / 1e3:.1f} kB per frame as base64)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(html, encoding="utf-8")
        opened = open_time_s(path)
        if opened is None:
            print("open time: not measured (needs playwright and chromium)")
        else:
            print(
                f"open time in headless Chromium: {opened:.2f} s ({'within' if opened < 2 else 'OVER'} 2 s)"
            )
        if args.pdf:
            t0 = time.perf_counter()
            pdf = print_to_pdf(path, Path(tmp) / "report.pdf")
            print(f"PDF: {pdf.stat().st_size / 1e6:.2f} MB in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
