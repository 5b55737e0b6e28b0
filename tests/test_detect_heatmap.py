"""The learned heatmap detector (issue #12): input preparation, peak decoding, confidence, selection."""

from __future__ import annotations

import numpy as np
import pytest

from dmx.detect import DETECTORS, detector_method
from dmx.detect.detector import heatmap_confidence
from dmx.detect.heatmap import (
    N_BODIES,
    N_CLASSES,
    N_CORNERS,
    N_OUT,
    NET_MM_PER_PX,
    NET_STRIDE,
    decode,
    net_input,
)
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


def _synthetic_maps(h: int, w: int, quads: np.ndarray, *, peak: float = 0.9) -> np.ndarray:
    """Network-like output: segmentation logits (each quadrilateral its body's class) and corner-type
    logits of Gaussian peaks (height ``peak``) at the quadrilaterals' corners."""
    import cv2

    lab = np.zeros((h, w), dtype=np.uint8)
    for b, q in enumerate(quads):
        cv2.fillPoly(lab, [np.round(q * 16).astype(np.int32)], b + 1, shift=4)
    out = np.full((N_OUT, h, w), -4.0, dtype=np.float32)
    for c in range(N_CLASSES):
        out[c][lab == c] = 4.0
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(N_CORNERS):
        g = np.zeros((h, w))
        for q in quads:
            x, y = q[k]
            g = np.maximum(g, peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * PEAK_SIGMA**2)))
        g = np.clip(g, 1e-6, 1 - 1e-6)
        out[N_CLASSES + k] = np.log(g / (1 - g))
    return out


def _column(rng: np.random.Generator) -> np.ndarray:
    """Six slightly tilted bodies 20 px deep, 16 px high, 7 px apart (network px), facing right."""
    quads = []
    for b in range(N_BODIES):
        cx, cy = 60.0 + 3 * b + rng.uniform(-0.5, 0.5), 20.0 + 23 * b + rng.uniform(-0.5, 0.5)
        t = np.deg2rad(rng.uniform(-10, 10))
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        box = np.array([[10.0, -8.0], [-10.0, -8.0], [-10.0, 8.0], [10.0, 8.0]])  # ant-sup first
        quads.append(box @ rot.T + [cx, cy])
    return np.array(quads)


def test_decode_finds_regions_and_sub_pixel_corners_in_image_pixels():
    rng = np.random.default_rng(3)
    quads = _column(rng)
    out = _synthetic_maps(160, 128, quads)
    factor = 0.5  # image px -> network px
    found = decode(out, factor, 0.4)
    assert found.corners_px.shape == (N_BODIES, N_CORNERS, 2)
    expected = (quads + 0.5) / factor - 0.5
    assert np.abs(found.corners_px - expected).max() < 0.05 / factor  # exact for a Gaussian peak
    assert found.region_prob == pytest.approx(np.full(N_BODIES, 1 / (1 + 6 * np.exp(-8.0))), abs=1e-6)
    # the map's value at the peak's pixel: 0.9 x exp(-d^2 / 2 sigma^2), d <= 0.71 px off the true peak
    assert np.all((found.corner_peak > 0.9 * np.exp(-0.5 / (2 * PEAK_SIGMA**2))) & (found.corner_peak <= 0.9))
    assert found.facing == "right"
    assert np.all(found.overlap > 0.85)  # the rasterised region against the exact quadrilateral
    # 20 x 16 px bodies; fillPoly also takes the pixels the outline passes through
    assert found.area_mm2 == pytest.approx(np.full(N_BODIES, 340 * NET_MM_PER_PX**2), rel=0.08)
    assert found.score() == pytest.approx(float(np.sum(found.region_prob * found.overlap)))


def test_decode_leaves_out_a_body_without_region_and_ignores_other_bodies_corners():
    rng = np.random.default_rng(4)
    quads = _column(rng)
    out = _synthetic_maps(160, 128, quads)
    c5 = out[4] > 0  # C5's region (class 4) becomes background
    out[4][c5], out[0][c5] = -4.0, 4.0
    # a stronger posterior-superior peak far from C3: not in C3's region, so not taken
    out[N_CLASSES + 1, 150, 10] = 6.0
    found = decode(out, 1.0, 0.8)
    assert found.region_prob[3] == 0.0 and np.all(np.isnan(found.corners_px[3]))
    assert np.abs(found.corners_px[1] - quads[1]).max() < 0.05
    assert np.all(found.region_prob[[0, 1, 2, 4, 5]] > 0.99)


def test_decode_mirrored_column_faces_left_and_weak_corner_maps_fall_back_to_the_region():
    rng = np.random.default_rng(5)
    quads = _column(rng)
    quads[..., 0] = 127 - quads[..., 0]  # mirrored: anterior corners now on the left
    found = decode(_synthetic_maps(160, 128, quads), 1.0, 0.8)
    assert found.facing == "left"
    assert np.abs(found.corners_px - quads).max() < 0.05
    # corner maps too weak to place corners: the rectangle around each region, at the right corners
    weak = decode(_synthetic_maps(160, 128, quads, peak=0.2), 1.0, 0.8)
    assert weak.facing == "left"
    assert np.all(weak.corner_peak < 0.2)
    # the rasterised region (fillPoly takes every pixel the outline touches): within 2 px
    assert np.hypot(*(weak.corners_px - quads).T).max() < 2.0


def test_confidence_is_one_on_a_clean_fit_and_falls_with_each_doubt():
    clean = dict(
        region_prob=0.95,
        corner_peak=0.2,
        inlier=1.0,
        strength=12.0,
        rms_px=0.2,
        shape_mm=0.3,
        size_ratio=1.02,
        centre_shift_mm=1.0,
    )
    assert heatmap_confidence(clean) == pytest.approx(1.0)
    for name, value in [
        ("region_prob", 0.6),
        ("inlier", 0.7),
        ("rms_px", 0.8),
        ("shape_mm", 1.6),
        ("size_ratio", 1.4),
        ("centre_shift_mm", 3.5),
    ]:
        doubt = heatmap_confidence(dict(clean, **{name: value}))
        assert 0.0 < doubt < 0.75, name
    for name, value in [
        ("region_prob", 0.4),
        ("inlier", 0.5),
        ("rms_px", 1.1),
        ("shape_mm", 2.5),
        ("size_ratio", 0.6),
        ("centre_shift_mm", 5.0),
    ]:
        assert heatmap_confidence(dict(clean, **{name: value})) == 0.0, name


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


def test_cv2_dnn_reads_an_onnx_network():
    """A 1x1-convolution ONNX network (channel c = (c + 1) x - c, made with the onnx helper) read
    with cv2.dnn gives every output channel at the input's size."""
    from pathlib import Path

    from dmx.detect.heatmap import load_net

    net = load_net(Path(__file__).parent / "data" / "affine_maps.onnx")
    x = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    out = net.heatmaps(x)
    assert out.shape == (N_OUT, 48, 64)
    expected = np.arange(1, N_OUT + 1)[:, None, None] * x - np.arange(N_OUT)[:, None, None]
    assert np.abs(out - expected).max() < 1e-5
