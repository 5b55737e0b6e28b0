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


def test_a_corner_peak_on_another_corner_of_the_body_is_not_taken_for_its_own():
    # session 27's network put every corner type's peak on the posterior corners; taken as they came,
    # each body's anterior corners sat on its posterior ones (the outline then refined 53 px off)
    rng = np.random.default_rng(6)
    quads = _column(rng)
    wrong = quads.copy()
    wrong[:, 0] = quads[:, 1]  # the anterior-superior peaks on the posterior-superior corners
    out = _synthetic_maps(160, 128, quads)
    out[N_CLASSES:] = _synthetic_maps(160, 128, wrong)[N_CLASSES:]
    found = decode(out, 1.0, 0.8)
    assert found.facing == "right"
    assert np.all(found.corner_peak > 0.8)  # strong peaks, yet
    # the other corners from their peaks (exact), the anterior-superior from the region's rectangle
    assert np.abs(found.corners_px[:, 1:] - quads[:, 1:]).max() < 0.05
    assert np.hypot(*(found.corners_px[:, 0] - quads[:, 0]).T).max() < 2.0


def test_a_region_off_the_column_neither_becomes_a_body_nor_turns_the_column_upside_down():
    """The network's largest C7 region on the skull base, above C2 (seen on the default look): the
    column's direction came from C2 against that region, so it pointed to the feet and every body's
    superior corners were placed on its inferior endplate (the corners a whole body height off)."""
    import cv2

    rng = np.random.default_rng(7)
    quads = _column(rng)
    out = _synthetic_maps(160, 128, quads, peak=0.2)  # corners from the regions
    real_c7 = out[6] > 0
    out[6][real_c7], out[0][real_c7] = -4.0, 4.0  # the real C7 is not segmented ...
    blob = np.zeros((160, 128), dtype=np.uint8)
    cv2.rectangle(blob, (4, 2), (26, 20), 1, -1)  # ... a larger C7 region lies up and left of C2
    out[6][blob > 0], out[0][blob > 0] = 4.0, -4.0
    found = decode(out, 1.0, 0.8)
    assert found.region_prob[5] == 0.0 and np.all(np.isnan(found.corners_px[5]))
    assert found.labels is not None and not np.any(found.labels == 6)
    assert found.facing == "right"
    # C2..C6 in CORNERS order (superior first) within the rasterised region's 2 px
    assert np.hypot(*(found.corners_px[:5] - quads[:5]).T).max() < 2.0


def test_on_column_keeps_the_bodies_in_their_levels_order():
    from dmx.detect.heatmap import on_column

    column = {k: np.array([60.0 + 3 * k, 20.0 + 23 * k]) for k in range(6)}
    assert on_column(column) == [0, 1, 2, 3, 4, 5]
    assert on_column({**column, 5: np.array([15.0, 11.0])}) == [0, 1, 2, 3, 4]  # on the skull
    assert on_column({**column, 1: np.array([65.0, 90.0])}) == [0, 2, 3, 4, 5]  # below C4
    assert on_column({k: column[k] for k in (2, 3)}) == [2, 3]  # two: nothing to compare


#: The features of a clean network body (every factor of heatmap_confidence at 1).
CLEAN_BODY = dict(
    region_prob=0.95,
    corner_peak=0.2,
    inlier=1.0,
    strength=12.0,
    rms_px=0.2,
    shape_mm=0.3,
    size_ratio=1.02,
    centre_shift_mm=1.0,
    on_region=1.0,
    facing_margin=0.03,
)


def test_confidence_is_one_on_a_clean_fit_and_falls_with_each_doubt():
    clean = CLEAN_BODY
    assert heatmap_confidence(clean) == pytest.approx(1.0)
    for name, value in [
        ("region_prob", 0.6),
        ("inlier", 0.7),
        ("rms_px", 0.8),
        ("shape_mm", 0.75),
        ("size_ratio", 1.4),
        ("facing_margin", 0.016),
    ]:
        doubt = heatmap_confidence(dict(clean, **{name: value}))
        assert 0.0 < doubt < 0.75, name
    for name, value in [
        ("region_prob", 0.4),
        ("inlier", 0.5),
        ("rms_px", 1.1),
        ("shape_mm", 2.5),
        ("size_ratio", 0.6),
        ("on_region", 0.0),
        ("facing_margin", 0.005),
    ]:
        assert heatmap_confidence(dict(clean, **{name: value})) == 0.0, name


def test_an_outline_unlike_its_level_shape_is_not_reported():
    """Session 35: the network's refined C2s whose outline deviated from C2's mean shape by 0.6 mm or
    more were all off, six by an anterior corner 6-30 px (the anterior wall on a crossing edge where
    looked at): all-family 1180006 (1.19 mm, ant_inf 7.2 px off) and 1180013 (0.78 mm, anterior
    corners 7-8 px off). They now fall below the reporting threshold; a clean outline (0.45 mm) keeps
    full confidence."""
    from dmx.detect.detector import HEATMAP_THRESHOLD

    clean = dict(CLEAN_BODY, shape_mm=0.45)
    assert heatmap_confidence(clean) == pytest.approx(1.0)
    for shape in (0.78, 1.19):
        assert heatmap_confidence(dict(clean, shape_mm=shape)) < HEATMAP_THRESHOLD, shape


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


def _bodies_at(centres_mm: dict[int, tuple[float, float]], shift_mm: dict[int, float] | None = None):
    """BodyResults of C2..C7 with square outlines at the given centres (1 mm per pixel)."""
    from dmx.anatomy import BODIES
    from dmx.detect.detector import HEATMAP_FEATURES, BodyResult

    out = []
    for k, v in enumerate(BODIES):
        if k not in centres_mm:
            out.append(BodyResult(v, None, np.zeros(len(HEATMAP_FEATURES)), 0.0, "not found"))
            continue
        f = np.zeros(len(HEATMAP_FEATURES))
        f[HEATMAP_FEATURES.index("centre_shift_mm")] = (shift_mm or {}).get(k, 1.0)
        c = np.array(centres_mm[k]) + np.array([[7.0, -6.0], [-7.0, -6.0], [-7.0, 6.0], [7.0, 6.0]])
        out.append(BodyResult(v, c, f, 0.9, None))
    return out


def test_two_levels_on_one_outline_keep_the_one_the_network_placed_closer():
    from dmx.detect.detector import _one_outline_per_body

    bodies = _bodies_at({1: (0, 0), 2: (1, 2), 3: (0, 40)}, shift_mm={1: 0.8, 2: 2.5})
    out = _one_outline_per_body(bodies, 1.0)
    assert out[1].corners_px is not None and out[3].corners_px is not None
    assert out[2].corners_px is None and out[2].problem == "its outline is the one found for C3"


def test_a_body_spaced_unlike_its_level_is_left_out():
    from dmx.detect import _cached_model, model_file
    from dmx.detect.detector import _consistent_levels

    model = _cached_model(model_file())
    step = np.hypot(model.trans_mean[:, 0], model.trans_mean[:, 1])
    y = np.concatenate([[0.0], np.cumsum(step)])  # C2..C7 centres down a straight column (mm)
    good = _bodies_at({k: (0.0, y[k]) for k in range(6)})
    assert all(b.corners_px is not None for b in _consistent_levels(good, model))
    # the network called C3's body 'C4' (and found no C3): C4 sits one level too high
    wrong = _bodies_at({0: (0.0, y[0]), 2: (0.0, y[1]), 3: (0.0, y[3]), 4: (0.0, y[4]), 5: (0.0, y[5])})
    out = _consistent_levels(wrong, model)
    assert [b.corners_px is not None for b in out] == [True, False, False, True, True, True]
    assert out[2].problem == "its distance to the other bodies does not fit its level"


@pytest.mark.parametrize(
    "network_at, agrees",
    [
        ({1: (0, 0), 2: (0, 17)}, True),  # C3 and C4 on the chain's C3 and C4
        ({1: (0, 0)}, False),  # one body only
        ({1: (0, 0), 2: (0, 17), 4: (0, 34)}, False),  # the network's C6 on the chain's C5
        ({1: (0, 0), 2: (0, 21)}, False),  # its C4 4 mm from the chain's
    ],
    ids=["two-agree", "one-agrees", "another-level", "apart"],
)
def test_a_weak_chain_is_kept_only_where_the_network_puts_two_of_its_bodies_at_its_levels(
    network_at, agrees, monkeypatch
):
    """A template chain scoring below the model's minimum (a bone-dark frame, C2 near the field's edge)
    is kept where the network reports at least two of its bodies at the same levels and nothing
    conflicts; the network's labels must not dispute it (here: they do not)."""
    from dmx.anatomy import BODIES
    from dmx.detect import _cached_model, detector, model_file
    from dmx.detect.detector import ColumnResult, _weak_chain_agrees

    model = _cached_model(model_file())
    monkeypatch.setattr(detector, "levels_evidence", lambda *a, **k: (None, True))
    weak = ColumnResult(
        tuple(_bodies_at({1: (0, 0), 2: (0, 17), 3: (0, 34), 4: (0, 51)})), 30.0, "right", 1.0, True
    )
    network = ColumnResult(tuple(_bodies_at(network_at)), 0.0, "right", 1.0, True)
    kept = _weak_chain_agrees(np.zeros((8, 8)), weak, network, model, None)
    if agrees:
        assert [v.value for v in kept] == ["C3", "C4", "C5", "C6"]
        np.testing.assert_allclose(kept[BODIES[3]], weak.bodies[3].corners_px)
    else:
        assert kept == {}
    monkeypatch.setattr(detector, "levels_evidence", lambda *a, **k: ("disputed", False))
    assert _weak_chain_agrees(np.zeros((8, 8)), weak, network, model, None) == {}


# ------------------------------------------------------------------------------------------------
# the shipped network (models/heatmap.onnx), on phantoms it was not fitted on (fitting: seeds 400000+)


def _display(ph, frame: int) -> np.ndarray:
    img = ph.frames[frame].astype(np.float32)
    if ph.truth["params"]["photometric"] == "MONOCHROME1":
        img = float((1 << ph.truth["params"]["bits"]) - 1) - img
    return img


@pytest.mark.parametrize(
    "family, seed",
    [(None, 4242), ("posterior", 4243), ("cortical", 4244)],
    ids=["default", "posterior", "cortical"],
)
def test_shipped_network_finds_c3_to_c6_on_unseen_phantoms(family, seed):
    """The shipped network, trained on every appearance family (other seeds), on a fresh phantom of
    the default look and of the two families that defeat the template detector: C3-C6 found within
    2 px (the issue's p95 target). C2 and C7 are not asserted: on the default look of seed 4242 the
    network reports C2 with a corner 5.2 px off (a known limit, see models/README.md)."""
    from dmx.anatomy import BODIES
    from dmx.detect import detect_landmarks
    from dmx.phantom import draw_appearance, make_phantom

    kw = dict(seed=seed, frames=4, return_to_neutral=False, curve="lordotic", reference_frame=0)
    if family is not None:
        kw["appearance"] = draw_appearance(family, seed=seed, max_size_px=768)
    ph = make_phantom(**kw)
    det = detect_landmarks(_display(ph, 0), mm_per_px=tuple(ph.truth["mm_per_px"]), method="heatmap")
    truth = ph.landmarks.corners_px
    worst = {v: float(np.hypot(*(c - truth[v]).T).max()) for v, c in det.landmarks.corners_px.items()}
    assert set(BODIES[1:5]) <= set(worst), det.missing
    assert max(worst[v] for v in BODIES[1:5]) < 2.0, worst
    assert all(c >= 0.5 for c in det.landmarks.confidence.values())
    assert set(det.missing) == set(BODIES) - set(worst)


@pytest.mark.parametrize("kind", ["noise", "blank"])
def test_shipped_network_invents_no_column(kind):
    from dmx.anatomy import BODIES
    from dmx.detect import detect_landmarks

    rng = np.random.default_rng(3)
    img = rng.normal(100, 20, (512, 512)) if kind == "noise" else np.full((512, 512), 80.0)
    det = detect_landmarks(img, mm_per_px=(0.3, 0.3), method="heatmap")
    assert det.landmarks.corners_px == {}
    assert set(det.missing) == set(BODIES)


@pytest.mark.parametrize("mirrored", [False, True], ids=["facing-right", "facing-left"])
@pytest.mark.parametrize("inverted", [False, True], ids=["bone-bright", "bone-dark"])
def test_facing_from_the_bone_beside_the_column(mirrored, inverted):
    """With the image given, the facing comes from the posterior elements beside the bodies (the
    side more like the bodies), whatever the corner maps say and whatever the polarity."""
    import cv2

    rng = np.random.default_rng(6)
    quads = _column(rng)
    img = np.full((160, 128), 0.3, dtype=np.float32)
    for q in quads:
        cv2.fillPoly(img, [np.round(q * 16).astype(np.int32)], 0.8, shift=4)
        c = q.mean(axis=0)
        cv2.circle(img, (int(c[0]) - 20, int(c[1])), 5, 0.7, -1)  # a pillar behind the body
    img[:, 100:] = 0.1  # airway and soft tissue in front
    out = _synthetic_maps(160, 128, quads, peak=0.2)
    out[N_CLASSES + 0], out[N_CLASSES + 1] = out[N_CLASSES + 1].copy(), out[N_CLASSES + 0].copy()
    out[N_CLASSES + 2], out[N_CLASSES + 3] = out[N_CLASSES + 3].copy(), out[N_CLASSES + 2].copy()
    if mirrored:
        img, out = img[:, ::-1].copy(), out[:, :, ::-1].copy()
    if inverted:
        img = 1.0 - img
    found = decode(out, 1.0, 0.8, image=img)
    assert found.facing == ("left" if mirrored else "right")
    assert decode(out, 1.0, 0.8).facing == ("right" if mirrored else "left")  # the swapped corner maps


class _TruthNet:
    """A stand-in for the network: its segmentation is the phantom's true bodies, each given the
    class ``labels[k]`` (0: background), corner maps too weak to place corners."""

    def __init__(self, corners_px: np.ndarray, labels: list[int]) -> None:
        self.corners_px, self.labels = corners_px, labels

    def bodies(self, image: np.ndarray, mm_per_px: float):
        x, factor = net_input(image, mm_per_px)
        quads = (self.corners_px + 0.5) * factor - 0.5
        order = [k for k in range(N_BODIES) if self.labels[k]]
        out = _synthetic_maps(*x.shape, quads[order], peak=0.2)  # classes 1.. in `order`
        seg = out[:N_CLASSES].copy()
        out[:N_CLASSES] = -4.0
        out[0] = seg[0]
        for i, k in enumerate(order):
            out[self.labels[k]] = seg[i + 1]
        return decode(out, factor, mm_per_px, image=x)

    def bodies_in_windows(self, image: np.ndarray, mm_per_px: float):
        return self.bodies(image, mm_per_px)  # the truth needs no windows


@pytest.fixture(scope="module")
def lordotic_phantom():
    from dmx.anatomy import BODIES
    from dmx.phantom import make_phantom

    ph = make_phantom(seed=4251, frames=4, curve="lordotic", rows=512, cols=512, mm_per_px=0.3)
    return _display(ph, 0), np.stack([ph.landmarks.corners_px[v] for v in BODIES])


def test_a_column_without_c2_or_c7_reports_no_level(lordotic_phantom):
    """Held out from the posterior elements, the network segmented the bodies C4..C7 as C3..C6 and
    found neither C2 nor C7 (seeds 700000 and 700005 of the benchmark). Given such a segmentation of
    this phantom, the old detector reported C3..C6 at confidence 1.0, each on the body below its
    level (61-68 px off). Without a column end to count from, no body is reported, with the
    reason; the same four bodies with their true levels (C7 among them) are reported on their
    bodies."""
    from dmx.detect import _cached_model, model_file
    from dmx.detect.detector import NO_COLUMN_END, run_heatmap

    image, truth = lordotic_phantom
    model = _cached_model(model_file())
    shifted = run_heatmap(image, model, _TruthNet(truth, [0, 0, 2, 3, 4, 5]), mm_per_px=0.3)
    assert [b.corners_px is None for b in shifted.bodies] == [True] * 6
    assert [b.problem for b in shifted.bodies[1:5]] == [NO_COLUMN_END] * 4  # C3..C6 refined, not reported
    anchored = run_heatmap(image, model, _TruthNet(truth, [0, 0, 3, 4, 5, 6]), mm_per_px=0.3)
    reported = {
        k: b for k, b in enumerate(anchored.bodies) if b.corners_px is not None and b.confidence >= 0.5
    }
    assert set(reported) == {2, 3, 4, 5}
    assert max(float(np.hypot(*(b.corners_px - truth[k]).T).max()) for k, b in reported.items()) < 2.0


def test_a_column_facing_the_wrong_way_is_refused_by_the_body_template(lordotic_phantom):
    """The body template (the body with its posterior elements behind and soft tissue in front) fits a
    column's true bodies better facing the way they do; the same outlines with anterior and posterior
    swapped (as the network reported all-family phantom 1110015's C4-C6) are disputed, the true ones not."""
    from dmx.anatomy import BODIES
    from dmx.detect import _cached_model, model_file
    from dmx.detect.detector import (
        FACING_DISPUTED,
        HEATMAP_FEATURES,
        BodyResult,
        ColumnResult,
        ColumnView,
        facing_disputed,
        facing_fits,
        network_levels_unconfirmed,
    )

    img, corners = lordotic_phantom
    model = _cached_model(model_file())
    facing = "right" if corners[:, [0, 3]].mean() > corners[:, [1, 2]].mean() else "left"

    def column(cs, face):
        feats = np.zeros(len(HEATMAP_FEATURES))
        return ColumnResult(
            tuple(BodyResult(v, c, feats, 1.0, None) for v, c in zip(BODIES, cs, strict=True)),
            0.0,
            face,
            0.3,
            True,
        )

    true = column(corners, facing)
    swapped = column(corners[:, [1, 0, 3, 2]], "left" if facing == "right" else "right")
    own, mirrored = facing_fits(true, ColumnView(img, true, model))
    assert own > mirrored + 0.1
    assert not facing_disputed(true, ColumnView(img, true, model))
    assert facing_disputed(swapped, ColumnView(img, swapped, model))
    assert network_levels_unconfirmed(img, swapped, model) == FACING_DISPUTED
