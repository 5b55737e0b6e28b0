"""Print an HTML report to PDF with a headless Chromium (or Chrome), when one is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dmx.errors import DmxError

#: Executable names tried in order (``DMX_CHROMIUM`` overrides them).
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser() -> str | None:
    """Path of a Chromium-family browser: ``$DMX_CHROMIUM`` or the first of :data:`BROWSERS` on PATH."""
    env = os.environ.get("DMX_CHROMIUM")
    if env:
        return env if (Path(env).is_file() or shutil.which(env)) else None
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_to_pdf(html_path: str | Path, pdf_path: str | Path, *, timeout_s: float = 120.0) -> Path:
    """Print ``html_path`` to ``pdf_path`` (A4, print styles: no player) with headless Chromium.

    Raises
    ------
    DmxError
        When no browser is found or printing fails; one line naming the file.
    """
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path).resolve()
    browser = find_browser()
    if browser is None:
        raise DmxError(
            f"{pdf_path}: cannot write the PDF: no Chromium or Chrome found (install the 'chromium' package "
            f"or set DMX_CHROMIUM to the browser); the HTML report is at {html_path}"
        )
    with tempfile.TemporaryDirectory(prefix="dmx-pdf-") as profile:
        args = [
            browser,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_path}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to start as root otherwise
        args.append(html_path.as_uri())
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DmxError(f"{pdf_path}: cannot write the PDF: {browser} failed ({exc})") from None
    if proc.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DmxError(f"{pdf_path}: cannot write the PDF: {browser} exited {proc.returncode} ({last})")
    return pdf_path
