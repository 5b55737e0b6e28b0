"""What the browser tests share: the system Chromium, its flags, and a module-scoped browser.

Needs the Python package ``playwright`` (driving the system browser; ``playwright install`` is
not used) and a Chromium at ``/usr/bin/chromium`` (Debian package ``chromium``) or at
``$DMX_CHROMIUM``. Without them, importing this module skips the importing test module with the
reason. The ``browser`` fixture itself is in ``conftest.py``.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("DMX_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the 'playwright' package")
if not os.path.isfile(CHROMIUM):
    pytest.skip(
        f"browser tests need Chromium (apt-get install chromium); not found at {CHROMIUM}",
        allow_module_level=True,
    )
