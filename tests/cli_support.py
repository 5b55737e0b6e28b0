"""Running the ``dmx`` command line in a real process, as a user does (tracebacks and exit codes included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_dmx(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m dmx ARGS`` with this checkout first on the path; stdout and stderr captured as text."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "dmx", *args], capture_output=True, text=True, env=env, timeout=timeout_s
    )
