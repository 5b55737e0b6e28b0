"""The decoded frames' array (dmx.io.load.empty_frames): ordinary pages, numpy's own switch left as it was."""

from pathlib import Path

import numpy as np

from dmx.io.load import empty_frames, load_sequence

ROOT = Path(__file__).resolve().parents[1]


def _vm_flags(a: np.ndarray) -> list[str]:
    """The kernel's flags of the memory mapping that holds the middle of ``a`` (Linux ``/proc/self/smaps``;
    numpy advises the 2 MB-aligned part of an array, which the kernel then keeps as a mapping of its own)."""
    address = a.__array_interface__["data"][0] + a.nbytes // 2
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("VmFlags:"):
            return line.split()[1:]
    raise AssertionError("no mapping holds the array")


_HUGE_PAGES_CHECK = """
import numpy as np
from dmx.io.load import empty_frames
from tests.test_io_load import _vm_flags

switch = np._core.multiarray._set_madvise_hugepage
switch(True)
shape = (32, 1024, 1024)
frames = empty_frames(shape, np.uint16)
assert frames.shape == shape and frames.dtype == np.uint16
assert "hg" not in _vm_flags(frames), "MADV_HUGEPAGE asked for"
assert switch(True) is True, "numpy's switch changed"
other = np.empty(shape, np.uint16)
assert "hg" in _vm_flags(other), "numpy's other large arrays not as numpy makes them"
"""


def test_frames_are_not_advised_to_huge_pages_and_numpy_is_left_as_it_was():
    """In a fresh process, as ``dmx analyze`` loads a study's frames: a 64-MB array gets a mapping of its
    own there. In this test process the C library may serve it from heap memory freed by earlier tests,
    which numpy advised for huge pages when an array lived there (CI, session 15), so the check of what
    ``empty_frames`` asks for runs where the heap holds no such memory."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _HUGE_PAGES_CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_a_study_is_loaded_into_them(monkeypatch):
    from dmx.io import load as load_mod

    made = []

    def noted(shape, dtype):
        made.append(empty_frames(shape, dtype))
        return made[-1]

    monkeypatch.setattr(load_mod, "empty_frames", noted)
    seq = load_sequence(ROOT / "sample_data" / "lordotic_stable" / "study.dcm")
    assert seq.frames.ndim == 3 and seq.frames.shape[0] > 1 and seq.frames.any()
    assert len(made) == 1 and np.shares_memory(seq.frames, made[0])
