"""The registration's fast paths (issue #13) give what the plain computations give."""

import dataclasses
import math

import cv2
import numpy as np
import pytest

from dmx.tracking import register as reg


def _body_image(shape=(240, 220), seed=0) -> np.ndarray:
    """A textured bright rounded body on a smooth background, uint8."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, 60.0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img += 0.1 * xx  # shading
    body = ((xx - 110) / 45.0) ** 4 + ((yy - 120) / 38.0) ** 4 < 1
    img[body] += 90
    img += cv2.GaussianBlur(rng.normal(0, 25, shape), (0, 0), 2.0)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    return np.clip(img, 0, 255).astype(np.uint8)


QUAD = np.array([[65.0, 82.0], [155.0, 82.0], [155.0, 158.0], [65.0, 158.0]])


def test_prefilter_of_integer_frames_equals_the_float_computation():
    img = _body_image()
    for frame in (img, img.astype(np.uint16) * 200):
        got = reg._prefilter(frame, 1.0, 9.0)
        f = frame.astype(np.float32)
        k = reg._box_size(9.0)
        low = cv2.boxFilter(f, -1, (k, k), borderType=cv2.BORDER_REFLECT)
        low = cv2.boxFilter(low, -1, (k, k), borderType=cv2.BORDER_REFLECT)
        want = cv2.GaussianBlur(f, (0, 0), 1.0, borderType=cv2.BORDER_REFLECT) - low
        assert got.dtype == np.float32
        assert np.abs(got - want).max() < 1e-5 * max(1.0, float(np.abs(want).max()))


def test_lazy_pyramid_levels_equal_the_full_pyramid():
    img = reg._prefilter(_body_image(), 1.0, None)
    lazy = reg._LazyPyramid(img, 3)
    full = reg._pyramid(img, 3)
    assert len(lazy) == 3
    assert np.array_equal(lazy[2], full[2])  # built on demand, through level 1
    assert np.array_equal(lazy[1], full[1]) and np.array_equal(lazy[-1], full[2])
    with pytest.raises(IndexError):
        lazy[3]


@pytest.mark.parametrize("n_points", [500, 40000])  # above 32767: cv2.remap needs rows of points
def test_sampling_the_used_pixels_equals_warping_the_grid(n_points):
    rng = np.random.default_rng(1)
    image = rng.random((300, 320)).astype(np.float32)
    h, w = 250, 260
    idx = np.sort(rng.choice(h * w, n_points, replace=False))
    vv, uu = np.divmod(idx, w)
    m = np.array([[math.cos(0.05), -math.sin(0.05), 20.3], [math.sin(0.05), math.cos(0.05), 9.7]])
    warped = cv2.warpAffine(
        image, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    f = m.astype(np.float32)
    u, v = uu.astype(np.float32), vv.astype(np.float32)
    got = reg._sample(image, f[0, 0] * u + f[0, 1] * v + f[0, 2], f[1, 0] * u + f[1, 1] * v + f[1, 2])
    assert got.shape == (n_points,)
    # remap and warpAffine interpolate alike: equal to well below the image's steps
    assert np.abs(got - warped.ravel()[idx]).max() < 0.05


def test_bilinear_samples_follow_shifts_far_below_a_32nd_of_a_pixel():
    """The registration samples the frame at sub-pixel points (_sample, cv2.remap) and refines a pose by
    the samples' change. OpenCV 4 rounds a bilinear point to a 1/32-pixel grid, so a shift of 0.01 px
    changes no sample; under OpenCV 4.12 the bundled lordotic_stable sample then loses C7 on 2 of its 60
    frames, which OpenCV 5 tracks on all (session 29). pyproject.toml requires OpenCV 5 for this."""
    ramp = np.tile(np.arange(16, dtype=np.float32) * 10.0, (4, 1))
    xs = np.array([5.0, 5.01, 5.003], np.float32)
    got = reg._sample(ramp, xs, np.ones(3, np.float32))
    np.testing.assert_allclose(got, 10.0 * xs, atol=2e-4)


@pytest.mark.parametrize(("offset_px", "levels"), [(0.3, [0]), (4.0, [0, 1, 0])])
def test_a_prediction_is_refined_and_a_poor_one_falls_back_to_the_coarse_levels(
    offset_px, levels, monkeypatch
):
    ref = _body_image()
    tpl = reg.make_template(ref, QUAD, highpass_sigma_px=8.0)
    assert len(tpl.levels) >= 2
    truth = reg.rigid(math.radians(1.5), 2.2, -1.4, tpl.centre_px)
    frame = cv2.warpAffine(ref, truth[:2], (ref.shape[1], ref.shape[0]), flags=cv2.INTER_LINEAR)
    guess = reg.rigid(0.0, offset_px, 0.0, np.zeros(2)) @ truth  # off by offset_px along x
    roi = reg.FrameROI(frame, (0, 0, ref.shape[1], ref.shape[0]), tpl)
    used = []
    fit_level = reg._fit_level
    monkeypatch.setattr(reg, "_fit_level", lambda t, lvl, *a: used.append(lvl) or fit_level(t, lvl, *a))
    fit = reg.register(tpl, roi, guess, first_level=1)
    assert used == levels  # the finest level alone; a poor guess starts again at level 1
    corners = QUAD @ fit.transform[:2, :2].T + fit.transform[:2, 2]
    want = QUAD @ truth[:2, :2].T + truth[:2, 2]
    assert fit.converged
    assert np.abs(corners - want).max() < 0.05
    assert fit.inliers > 0.9


def _padded_body(pad=90, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """The body image with a wide rim (so that regions around the body are cut inside the frame)."""
    img = np.pad(_body_image(), pad, mode="reflect")
    if dtype == np.uint16:
        img = img.astype(np.uint16) * 251 + 7
    elif dtype == np.float32:
        img = img.astype(np.float32) * 1.7 + 0.3
    return img, QUAD + pad


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_a_region_filtered_on_an_inner_box_has_the_whole_regions_pixels_where_exact(dtype):
    frame, quad = _padded_body(dtype=dtype)
    tpl = reg.make_template(frame, quad, highpass_sigma_px=8.0)
    guess = reg.rigid(math.radians(0.7), 1.3, -0.6, tpl.centre_px)
    box = reg.needed_box(tpl, guess, frame.shape, 60.0)
    inner = reg.needed_box(tpl, guess, frame.shape, 3.0 + reg.cut_radius(1.0, 8.0) + 1)
    assert box[0] > 0 and box[1] > 0 and box[2] < frame.shape[1] and box[3] < frame.shape[0]
    whole = reg.FrameROI(frame, box, tpl).images[0]
    part = reg.FrameROI(frame, box, tpl, inner=inner)
    assert part.images[0].shape == whole.shape and len(part.images) == 1
    x0, y0, x1, y1 = (int(math.ceil(part.exact[0])), int(math.ceil(part.exact[1])), *map(int, part.exact[2:]))
    assert 0 < x0 < x1 < whole.shape[1] - 1 and 0 < y0 < y1 < whole.shape[0] - 1  # cut on every side
    assert np.array_equal(part.images[0][y0 : y1 + 1, x0 : x1 + 1], whole[y0 : y1 + 1, x0 : x1 + 1])
    # next to the cuts the filters reflect the cut region: those pixels differ, and must not be sampled
    assert not np.array_equal(
        part.images[0][y0 - 20 : y1 + 21, x0 - 20 : x1 + 21], whole[y0 - 20 : y1 + 21, x0 - 20 : x1 + 21]
    )


def test_a_fit_on_an_inner_box_equals_the_fit_on_the_whole_region_or_raises():
    frame0, quad = _padded_body()
    tpl = reg.make_template(frame0, quad, highpass_sigma_px=8.0)
    truth = reg.rigid(math.radians(1.5), 2.2, -1.4, tpl.centre_px)
    frame = cv2.warpAffine(frame0, truth[:2], (frame0.shape[1], frame0.shape[0]), flags=cv2.INTER_LINEAR)
    cut = reg.cut_radius(1.0, 8.0) + 1
    for offset_px, inner_slack_px, whole_needed in [(0.3, 3.0, False), (4.0, 3.0, True), (0.3, -2.0, True)]:
        guess = reg.rigid(0.0, offset_px, 0.0, np.zeros(2)) @ truth
        box = reg.needed_box(tpl, guess, frame.shape, 60.0)
        inner = reg.needed_box(tpl, guess, frame.shape, inner_slack_px + cut)
        want = reg.register(tpl, reg.FrameROI(frame, box, tpl), guess, first_level=1)
        part = reg.FrameROI(frame, box, tpl, inner=inner)
        if whole_needed:  # a poor guess needs the coarse levels; a box too tight is left by the fit
            with pytest.raises(reg.OutsideFiltered):
                reg.register(tpl, part, guess, first_level=1)
            continue
        got = reg.register(tpl, part, guess, first_level=1)
        assert np.array_equal(got.transform, want.transform)
        assert dataclasses.astuple(dataclasses.replace(got, transform=None)) == dataclasses.astuple(
            dataclasses.replace(want, transform=None)
        )
        corners = quad @ got.transform[:2, :2].T + got.transform[:2, 2]
        assert np.abs(corners - (quad @ truth[:2, :2].T + truth[:2, 2])).max() < 0.05  # and it is right
