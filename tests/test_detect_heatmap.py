"""The learned heatmap detector (issue #12): input preparation, peak decoding, confidence, selection."""

from __future__ import annotations

import numpy as np
import pytest

from dmx.detect import DETECTORS, detector_method
from dmx.detect.detector import heatmap_confidence
from dmx.detect.heatmap import N_BODIES, N_CORNERS, NET_MM_PER_PX, NET_STRIDE, decode, net_input
from dmx.detect.heatmap import PEAK_SIGMA_PX as PEAK_SIGMA
from dmx.errors import UsageError


def test_net_input_resamples_to_the_network_pixel_and_pads():
    img = np.zeros((500, 300), dtype=np.float32)
    img[100:200, 50:150] = 10.0
    x, factor = net_input(img, 0.4)
    assert factor == pytest.approx(0.4 / NET_MM_PER_PX)
    assert x.shape[0] % NET_STRIDE == 0 and x.shape[1] % NET_STRIDE == 0
    assert x.shape[0] >= round(500 * factor) and x.shape[1] >= round(300 * factor)
    assert 0.0 <= x.min() and x.max() <= 1.0
    # the bright square stays where it was, scaled: its centre (99.5, 149.5) px -> input px
    ys, xs = np.nonzero(x[: round(500 * factor), : round(300 * factor)] > 0.5)
    assert np.mean(xs) == pytest.approx((99.5 + 0.5) * factor - 0.5, abs=0.6)
    assert np.mean(ys) == pytest.approx((149.5 + 0.5) * factor - 0.5, abs=0.6)


def test_decode_finds_sub_pixel_peaks_in_image_pixels():
    h, w = 64, 80
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(3)
    true = rng.uniform(5, 55, (N_BODIES * N_CORNERS, 2))
    hm = np.stack([np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2)) for x, y in true]).astype(
        np.float32
    )
    hm[5] *= 0.3
    factor = 0.5  # image px -> network px
    pos, height = decode(hm, factor)
    assert pos.shape == (N_BODIES, N_CORNERS, 2) and height.shape == (N_BODIES, N_CORNERS)
    expected = ((true + 0.5) / factor - 0.5).reshape(N_BODIES, N_CORNERS, 2)
    assert np.abs(pos - expected).max() < 0.02 / factor  # exact for a Gaussian, up to float32
    assert height[1, 1] == pytest.approx(0.3, abs=0.05)
    assert height[0, 0] == pytest.approx(1.0, abs=0.05)


def test_confidence_falls_with_weak_peaks_and_refinement_shift():
    assert heatmap_confidence(1.0, 0.0) == pytest.approx(1.0)
    assert heatmap_confidence(0.9, 0.1) > heatmap_confidence(0.9, 0.6) > heatmap_confidence(0.9, 1.2)
    assert heatmap_confidence(0.4, 0.0) < 0.5
    assert heatmap_confidence(1.0, None) == pytest.approx(0.5)  # refinement failed: network corners
    assert heatmap_confidence(1.7, 0.0) == pytest.approx(1.0)  # peaks above 1 count as 1


def test_detector_method_from_argument_or_environment(monkeypatch):
    monkeypatch.delenv("DMX_DETECTOR", raising=False)
    assert detector_method() == "template"
    assert detector_method("heatmap") == "heatmap"
    monkeypatch.setenv("DMX_DETECTOR", "Heatmap")
    assert detector_method() == "heatmap"
    assert detector_method("template") == "template"
    monkeypatch.setenv("DMX_DETECTOR", "cnn")
    with pytest.raises(UsageError, match="unknown detector 'cnn'"):
        detector_method()
    assert DETECTORS == ("template", "heatmap")


def test_cv2_dnn_reads_an_onnx_network_and_its_peaks_decode():
    """A 1x1-convolution ONNX network (every heatmap = the input) read with cv2.dnn: a Gaussian peak
    in the input comes back from all 24 channels at its position, mapped to image pixels."""
    from pathlib import Path

    from dmx.detect.heatmap import load_net

    net = load_net(Path(__file__).parent / "data" / "identity_heatmaps.onnx")
    yy, xx = np.mgrid[0:48, 0:64].astype(np.float32)
    x0, y0 = 20.3, 31.6
    x = (0.8 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * PEAK_SIGMA**2))).astype(np.float32)
    hm = net.heatmaps(x)
    assert hm.shape == (N_BODIES * N_CORNERS, 48, 64)
    assert np.abs(hm - x).max() < 1e-5
    pos, height = decode(hm, 0.5)
    assert np.abs(pos[..., 0] - ((x0 + 0.5) / 0.5 - 0.5)).max() < 0.02
    assert np.abs(pos[..., 1] - ((y0 + 0.5) / 0.5 - 0.5)).max() < 0.02
    assert height.min() == pytest.approx(0.8 * np.exp(-(0.3**2 + 0.4**2) / (2 * PEAK_SIGMA**2)), abs=1e-4)
