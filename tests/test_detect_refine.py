"""Corner refinement on drawn bodies whose outline is known exactly (dmx.detect.refine)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dmx.anatomy import Vertebra
from dmx.detect import refine
from dmx.detect.model import FEATURES, confidence_inputs
from dmx.detect.pose import smoothed
from dmx.phantom import shapes
from dmx.phantom import skeleton as sk

MM_PER_PX = 0.3
SIZE = 160


def _anatomy(*, sag_mm: float, waist_ant_mm: float = 0.6) -> sk.Anatomy:
    base = sk.DEFAULT_ANATOMY
    return sk.Anatomy(
        sizes=base.sizes,
        disc_mm=base.disc_mm,
        waist_ant_mm={**base.waist_ant_mm, Vertebra.C4: waist_ant_mm},
        waist_post_mm=base.waist_post_mm,
        sag_mm={**base.sag_mm, Vertebra.C4: sag_mm},
    )


def _drawn_body(anatomy: sk.Anatomy, *, tilt_deg: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """C4 drawn at ``MM_PER_PX`` (bright rim, dimmer inside, blurred); the image and true corners (px)."""
    centre = np.array([SIZE / 2, SIZE / 2])
    th = np.deg2rad(tilt_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    # image (x right, y down) -> body frame (u anterior = right, v superior = up), mm
    d = np.stack([xs - centre[0], -(ys - centre[1])], axis=-1) * MM_PER_PX
    uv = d @ rot  # inverse rotation
    sdf = shapes.body_sdf(Vertebra.C4, uv[..., 0], uv[..., 1], anatomy=anatomy)
    inside = shapes.coverage(sdf, MM_PER_PX)
    rim = inside * (1.0 - shapes.coverage(sdf - 0.6, MM_PER_PX))
    image = (40.0 + 60.0 * inside + 50.0 * rim).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    corners_mm = sk.body_corners_mm(Vertebra.C4, anatomy=anatomy)
    corners_px = centre + (corners_mm @ rot.T) * np.array([1.0, -1.0]) / MM_PER_PX
    return image, corners_px


def _refine(image: np.ndarray, start_px: np.ndarray):
    sm, noise = smoothed(image, MM_PER_PX)
    return refine.refine_corners(sm, start_px, is_c2=False, px_per_mm=1 / MM_PER_PX, noise=noise), sm, noise


@pytest.mark.parametrize("sag_mm", [0.9, 2.0])
def test_concave_endplates_give_their_corners(sag_mm):
    # endplates 2 mm concave (beyond the old 1.5 mm limit, which fell back to straight sides and
    # put the corners about 4 px off) and a 0.9 mm anterior waist: corners within half a pixel
    image, truth = _drawn_body(_anatomy(sag_mm=sag_mm, waist_ant_mm=0.9))
    rng = np.random.default_rng(3)
    start = truth + rng.normal(0.0, 1.5, truth.shape)
    (corners, feats, fits), _, _ = _refine(image, start)
    assert corners is not None
    err = np.hypot(*(corners - truth).T)
    assert err.max() < 0.6, err
    assert feats["inlier"] > 0.9
    # the endplates' fitted sag matches the drawing (coef[2] / 4 is the sag at mid-side, px)
    sag_px = [abs(fits[s].coef[2]) / 4 for s in (0, 2)]
    assert sag_px == pytest.approx([sag_mm / MM_PER_PX] * 2, abs=0.6)


def test_stability_is_small_for_a_clear_body_and_the_ceiling_for_a_lost_one():
    image, truth = _drawn_body(_anatomy(sag_mm=0.9))
    (corners, _, fits), sm, noise = _refine(image, truth + 1.0)
    kw = dict(is_c2=False, px_per_mm=1 / MM_PER_PX, noise=noise, side_offsets_mm=None)
    assert refine.stability_px(sm, corners, fits, **kw) < 0.2
    # the same fitted sides on an image without the body: the repeated search finds no outline
    blank = np.full_like(sm, float(sm.mean()))
    assert refine.stability_px(blank, corners, fits, **kw) == refine.UNSTABLE_PX


def test_confidence_inputs_take_logs_of_scale_like_features_only():
    raw = np.array([[0.9, 0.8, 20.0, 0.25, 0.3, 1.02, 0.5, 1.0]])
    assert raw.shape[1] == len(FEATURES)
    x = confidence_inputs(raw)
    i = {name: j for j, name in enumerate(FEATURES)}
    assert x[0, i["strength"]] == pytest.approx(np.log(20.0))
    assert x[0, i["rms_px"]] == pytest.approx(np.log(0.30))
    assert x[0, i["shape_mm"]] == pytest.approx(np.log(0.35))
    assert x[0, i["stability_px"]] == pytest.approx(np.log(0.6))
    for name in ("coarse_score", "inlier", "size_ratio", "is_c2"):
        assert x[0, i[name]] == raw[0, i[name]]
    assert raw[0, i["strength"]] == 20.0  # input untouched


def test_a_bright_bar_along_an_endplate_is_not_taken_for_it_when_the_mean_shape_guides():
    # a bar brighter than the body, 1 mm wide and 1.5 mm below C4's inferior endplate, along it: its lower
    # edge is the strongest step of every profile of that side within the wide search (3 mm). Each side
    # from its strongest steps puts the inferior corners on the bar, 8-9 px off; chosen among candidate
    # edges with the level's mean shape (``mean_shape_mm``), they stay on the endplate
    image, truth = _drawn_body(_anatomy(sag_mm=0.9))
    post, ant = truth[2], truth[3]
    along = (ant - post) / np.hypot(*(ant - post))
    out = np.array([-along[1], along[0]])
    if np.dot(out, truth.mean(axis=0) - post) > 0:
        out = -out  # away from the body
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    off = ((xs - post[0]) * out[0] + (ys - post[1]) * out[1]) * MM_PER_PX
    bar = ((off > 1.5) & (off < 2.5)).astype(np.float32)
    image = image + 120.0 * cv2.GaussianBlur(bar, (0, 0), 0.8)
    image = image + np.random.default_rng(0).normal(0.0, 1.0, image.shape).astype(np.float32)
    sm, noise = smoothed(image, MM_PER_PX)
    kw = dict(is_c2=False, px_per_mm=1 / MM_PER_PX, noise=noise, radii_mm=(3.0, 1.5, 0.8))
    strongest, _, _ = refine.refine_corners(sm, truth + [3.0, -2.0], **kw)
    assert np.hypot(*(strongest - truth).T)[2:].min() > 5.0
    mean_mm = sk.body_corners_mm(Vertebra.C4)
    for shift in ([0.0, 0.0], [3.0, -2.0], [-3.0, 2.0]):
        guided, feats, _ = refine.refine_corners(sm, truth + shift, mean_shape_mm=mean_mm, **kw)
        assert np.hypot(*(guided - truth).T).max() < 0.6
        assert feats["inlier"] > 0.9


def test_shape_deviations_of_many_outlines_are_each_ones_own():
    mean_mm = sk.body_corners_mm(Vertebra.C4)
    th = np.deg2rad(20.0)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    same = (mean_mm @ rot.T) * 1.3 * np.array([1.0, -1.0]) + [40.0, 7.0]  # turned, larger, image y down
    bent = same.copy()
    bent[2] += [0.0, 2.0]
    dev, size = refine.shape_deviations_mm(np.stack([same, bent]), mean_mm)
    assert dev[0] == pytest.approx(0.0, abs=1e-9)
    assert size[0] == pytest.approx(1.3)
    assert 0.3 < dev[1] < 1.0
    assert (dev[1], size[1]) == pytest.approx(refine.shape_deviation_mm(bent, mean_mm))


def test_sides_intersected_in_pairs_meet_where_each_pair_meets():
    image, truth = _drawn_body(_anatomy(sag_mm=2.0))
    (_, _, fits), _, _ = _refine(image, truth)
    bent = refine.SideFit(
        fits[1].start, fits[1].end, fits[1].normal, fits[1].coef + [3.0, 1.0, -2.0], 1, 1, 0
    )
    away = refine.SideFit(fits[1].start + 500.0, fits[1].end + 500.0, fits[1].normal, fits[1].coef, 1, 1, 0)
    before, after = [fits[0], fits[2]], [fits[1], bent, away]
    pairs = refine._intersect_pairs(before, after)
    for i, a in enumerate(before):
        for j, b in enumerate(after):
            one = refine._intersect(a, b)
            if one is None:
                assert np.isnan(pairs[i, j]).all()
            else:
                assert pairs[i, j] == pytest.approx(one, abs=1e-6)
    assert np.isfinite(pairs[0, :2]).all() and np.isnan(pairs[:, 2]).all()


def test_each_lines_support_and_nearest_steps_are_those_of_every_step_weighed_at_once():
    """_candidate_lines weighs its lines in blocks, one step of each profile at a time; its supports and
    nearest steps must be those of the direct (lines, profiles, steps) reckoning, ties to the first step,
    profiles with fewer steps than ``top`` and more lines than one block included."""
    rng = np.random.default_rng(7)
    n, m = 40, 60
    t = np.linspace(0.1, 0.9, n)
    off = np.linspace(-10.0, 10.0, m)
    g = rng.normal(0.0, 1.0, (n, m)) + 6.0 * np.exp(-0.5 * ((off[None] - 1.0 - 2.0 * t[:, None]) / 0.6) ** 2)
    g[::7] = -5.0  # profiles with no step above the threshold
    g[5, 30], g[5, 34] = 20.0, 20.0  # two equal steps on one profile
    tol = 1.5
    lines = refine._candidate_lines(t, g, off, threshold=1.0, top=3, max_lines=5000, tol_px=tol)
    assert len(lines.slope) > refine._LINES_PER_BLOCK
    valid = lines.valid
    res = np.where(
        valid[None],
        np.abs(
            lines.cand_e[None] - (lines.icpt[:, None, None] + lines.slope[:, None, None] * t[None, :, None])
        ),
        np.inf,
    )
    nearest = res.argmin(axis=2)
    w = np.take_along_axis(np.where(valid, lines.cand_w, 0.0)[None], nearest[..., None], axis=2)[..., 0]
    support = np.where(res.min(axis=2) < tol, w, 0.0).sum(axis=1)
    assert np.array_equal(lines.support, support)
    assert (~valid).any(axis=1).any() and (lines.support > 0).sum() > 100
    for line in (0, 1, refine._LINES_PER_BLOCK, len(lines.slope) - 1, int(np.argmax(lines.support))):
        which, dist = lines.nearest(line)
        assert np.array_equal(which, nearest[line])
        assert np.array_equal(dist, res[line].min(axis=1))
