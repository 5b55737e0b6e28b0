"""Tracking against the realistic phantom's ground truth (skipped until dmx.phantom is available)."""

import numpy as np
import pytest

from dmx.tracking import TRUSTED_QUALITY, track

phantom = pytest.importorskip("dmx.phantom")
if not hasattr(phantom, "make_phantom"):
    pytest.skip("dmx.phantom.make_phantom not available yet", allow_module_level=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(seed=1),
        dict(seed=2, photometric="MONOCHROME1", facing="left", flicker=0.1),
    ],
)
def test_phantom_corner_accuracy(kwargs):
    ph = phantom.make_phantom(frames=30, rows=384, cols=384, **kwargs)
    tr = track(ph.frames, ph.landmarks)
    err = np.linalg.norm(tr.corners_px - phantom.truth_corners(ph.truth, tr.vertebrae), axis=-1).max(axis=-1)
    trusted = np.isfinite(err) & (np.nan_to_num(tr.quality) >= TRUSTED_QUALITY)
    assert trusted.mean() > 0.95
    assert np.median(err[trusted]) < 0.2
    assert np.percentile(err[trusted], 95) < 0.6
    assert not np.any(err[trusted] > 2.0)
