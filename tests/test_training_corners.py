"""The experimental corner network's data and input geometry (numpy and OpenCV only, no PyTorch)."""

import numpy as np
import pytest

from dmx.training.corners import (
    CROP_MM_PER_PX,
    CROP_SIDE,
    OUT_STRIDE,
    Geometry,
    augment,
    corner_specs,
    crop_around,
    facing_right,
    main,
    soft_argmax_np,
)


def _quad_image(corners: np.ndarray, shape=(400, 500)) -> np.ndarray:
    import cv2

    img = np.zeros(shape, np.float32)
    cv2.fillPoly(img, [np.round(corners * 16).astype(np.int32).reshape(-1, 1, 2)], 1.0, shift=4)
    return img


def _centroid(img: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    w = np.clip(img, 0, None)
    return np.array([(xs * w).sum(), (ys * w).sum()]) / w.sum()


BODY = np.array([[260.0, 150.0], [205.0, 140.0], [200.0, 185.0], [255.0, 196.0]])  # facing right


def test_a_crop_is_centred_on_the_body_and_its_corners_follow_it():
    img = _quad_image(BODY)
    crop, m = crop_around(img, BODY.mean(0), mm_per_px=0.3)
    assert crop.shape == (CROP_SIDE, CROP_SIDE) and crop.dtype == np.uint8
    c = BODY @ m[:, :2].T + m[:, 2]
    # 0.3 mm image px -> 0.25 mm crop px: the body is 1.2 times as large, centred
    np.testing.assert_allclose(
        np.linalg.norm(c[0] - c[1]), 1.2 * np.linalg.norm(BODY[0] - BODY[1]), rtol=1e-9
    )
    np.testing.assert_allclose(c.mean(0), [(CROP_SIDE - 1) / 2] * 2, atol=1e-9)
    np.testing.assert_allclose(_centroid(crop.astype(float)), c.mean(0), atol=0.6)


@pytest.mark.parametrize("res", [CROP_MM_PER_PX, 0.5])
def test_the_augmented_input_and_its_corners_stay_together(res):
    img = _quad_image(BODY)
    crop, m = crop_around(img, BODY.mean(0), mm_per_px=0.3)
    c = (BODY @ m[:, :2].T + m[:, 2]).astype(np.float32)
    g = Geometry(res=res, inp=112 if res == CROP_MM_PER_PX else 64)
    x, cc = augment(np.random.default_rng(0), crop, c, g, train=False)
    assert x.shape == (g.inp, g.inp) and x.dtype == np.float32
    np.testing.assert_allclose(cc.mean(0), [(g.inp - 1) / 2] * 2, atol=1e-4)  # no shift when not training
    side = np.linalg.norm(cc[0] - cc[1])
    np.testing.assert_allclose(side, np.linalg.norm(c[0] - c[1]) * CROP_MM_PER_PX / res, rtol=1e-5)
    for seed in range(5):  # rotated, scaled and shifted: the body's pixels move with its corners
        x, cc = augment(np.random.default_rng(seed), crop, c, g, train=True)
        body = np.zeros_like(x)
        import cv2

        cv2.fillPoly(body, [np.round(cc * 16).astype(np.int32).reshape(-1, 1, 2)], 1.0, shift=4)
        assert x[body > 0].mean() > x[body == 0].mean() + 0.3  # bright inside its own corners


def test_left_facing_crops_are_mirrored_so_the_anterior_corners_lie_right():
    crops = np.zeros((2, 8, 10), np.uint8)
    crops[1, 0, 0] = 255
    right = np.array([[8.0, 1], [2, 1], [2, 6], [8, 6]])
    left = right.copy()
    left[:, 0] = 9 - left[:, 0]
    out, cors = facing_right(crops, np.stack([right, left]))
    np.testing.assert_array_equal(cors[0], right)
    np.testing.assert_array_equal(cors[1], right)
    assert out[1, 0, 9] == 255 and out[1, 0, 0] == 0  # the image mirrored too
    assert crops[1, 0, 0] == 255  # the input is not changed


def test_soft_argmax_reads_each_peak_at_its_input_pixel():
    logits = np.full((4, 28, 28), -50.0, np.float32)
    peaks = [(3, 4), (10, 20), (27, 0), (14, 14)]  # (x, y) in heatmap px
    for k, (x, y) in enumerate(peaks):
        logits[k, y, x] = 50.0
    c, spread = soft_argmax_np(logits)
    expected = [((x + 0.5) * OUT_STRIDE - 0.5, (y + 0.5) * OUT_STRIDE - 0.5) for x, y in peaks]
    np.testing.assert_allclose(c, expected, atol=1e-4)
    assert np.all(spread < 1e-3)
    flat = np.zeros((4, 28, 28), np.float32)  # no evidence: the centre, spread wide
    c, spread = soft_argmax_np(flat)
    np.testing.assert_allclose(c, [[27.5, 27.5]] * 4, atol=1e-4)
    assert np.all(spread > 20)


def test_the_recipe_is_deterministic_and_draws_mixed_families_within_its_pixel_sizes():
    a = corner_specs(12, seed=5, first_seed=1000)
    b = corner_specs(12, seed=5, first_seed=1000)
    assert [k["seed"] for k in a] == list(range(1000, 1012))
    assert [k["appearance"] for k in a] == [k["appearance"] for k in b]
    assert [k["mm_per_px"] for k in a] == [k["mm_per_px"] for k in b]
    counts = [len(k["appearance"].families) for k in a]
    assert min(counts) < max(counts)  # mixed: some phantoms take more families than others
    for k in a:
        assert 0.18 <= k["mm_per_px"] <= 0.4
        acq = k["appearance"].acquisition
        if acq is not None:
            assert 0.18 <= acq.mm_per_px <= 0.4 and 300 <= acq.rows <= 900


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--exclude", "bones"], "--exclude: no family 'bones'"),
        (["--input-px", "100"], "--input-px 100 is not a multiple of 16"),
    ],
)
def test_a_bad_training_option_is_one_error_line(argv, message, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "n.onnx"), *argv])
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "n.onnx.json").exists()


def test_appearance_drawn_from_no_family_changes_the_image_not_the_corners():
    img = _quad_image(BODY)
    crop, m = crop_around(img, BODY.mean(0), mm_per_px=0.3)
    c = (BODY @ m[:, :2].T + m[:, 2]).astype(np.float32)
    plain = augment(np.random.default_rng(4), crop, c, Geometry(), train=True)
    again = augment(np.random.default_rng(4), crop, c, Geometry(overlaps=0.0, texture=0.0), train=True)
    np.testing.assert_array_equal(plain[0], again[0])  # off: nothing more is drawn
    for g in (Geometry(overlaps=1.0), Geometry(texture=1.0)):
        x, cc = augment(np.random.default_rng(4), crop, c, g, train=True)
        np.testing.assert_array_equal(cc, plain[1])  # geometry drawn first: the targets stay
        assert np.abs(x - plain[0]).mean() > 0.005


def test_training_without_pytorch_is_one_error_line_naming_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # as on a machine without the train extra
    (tmp_path / "d.npz").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "n.onnx")])
    assert "pip install 'dmx[train]'" in str(e.value) and "\n" not in str(e.value)


def test_training_from_a_missing_data_file_is_one_error_line_naming_it(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(tmp_path / "none.npz"), "--out", str(tmp_path / "n.onnx")])
    assert str(e.value).startswith(f"error: {tmp_path / 'none.npz'}: no such data file")
