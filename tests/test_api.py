"""The public API re-exported from the package root (``dmx.analyze``, ``dmx.measure``, ...)."""

from __future__ import annotations

import numpy as np
import pytest

import dmx
import dmx.measure.config  # the subpackage dmx.measure is imported, as any caller of measure would
from dmx.anatomy import BODIES
from dmx.measure.measurements import measure as measure_function
from dmx.tracking.types import Tracks


def test_every_public_name_resolves_to_its_definition():
    import importlib

    for name, module in dmx._EXPORTS.items():
        value = getattr(dmx, name)
        if name == "measure":
            assert value is importlib.import_module("dmx.measure")
        else:
            assert value is getattr(importlib.import_module(module), name), name
    assert set(dmx.__all__) == {"__version__", *dmx._EXPORTS} and set(dir(dmx)) >= set(dmx.__all__)
    with pytest.raises(AttributeError, match="no attribute 'analyse'"):
        dmx.analyse  # noqa: B018


def test_dmx_measure_is_the_package_and_the_function():
    from dmx import measure

    assert measure is dmx.measure and measure.measure is measure_function
    n = 3
    corners = np.zeros((n, 2, 4, 2))
    for v in range(2):  # two square bodies 10 px apart, rotating together
        corners[:, v] = [[0, 10 * v], [8, 10 * v], [8, 10 * v + 8], [0, 10 * v + 8]]
    tracks = Tracks(
        vertebrae=BODIES[:2],
        corners_px=corners,
        quality=np.ones((n, 2)),
        reason=((None, None),) * n,
    )
    called = dmx.measure(tracks, mm_per_px=(0.2, 0.2))
    assert called == measure_function(tracks, mm_per_px=(0.2, 0.2))
    assert called["levels"]["C2-C3"]["rotation_rom_deg"] == 0.0
