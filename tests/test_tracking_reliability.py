"""Issue #13: template pixels that do not move with the body, and the refit without them."""

from dataclasses import replace

import numpy as np
from test_tracking_occlusion import _rod_over_c2_c3

from dmx.anatomy import Vertebra
from dmx.phantom.scenes import make_scene
from dmx.tracking import TRUSTED_QUALITY, track
from dmx.tracking import tracker as tracker_mod
from dmx.tracking.register import FrameROI, make_template, needed_box, register
from dmx.tracking.reliability import outlier_share, template_share, unreliable_mask


def _rod_scene():
    s = make_scene(shape=(256, 256), n_frames=30, amplitude_deg=2.0, noise=3.0, seed=5)
    return s, _rod_over_c2_c3(s.frames, s.landmarks, drift_px=-10.0)


def _followed(tr, truth):
    err = np.linalg.norm(tr.corners_px - truth, axis=-1).max(axis=-1)
    return err, np.isfinite(err) & (np.nan_to_num(tr.quality) >= TRUSTED_QUALITY)


def test_the_rod_on_the_reference_frame_is_found_unreliable_and_the_body_is_not():
    """Over C2's true poses, pixels of the rod (in C2's template on the reference frame, then drifting
    away) are outliers on enough frames to be left out; none of the body's own pixels away from it are."""
    s, frames = _rod_scene()
    c2 = s.landmarks.corners_px[Vertebra.C2]
    tpl = make_template(
        frames[0], c2, exclude_quads_px=(s.landmarks.corners_px[Vertebra.C3],), highpass_sigma_px=4.0
    )
    # the expected residual as the tracker calibrates it, on the frame next to the reference
    roi = FrameROI(frames[1], needed_box(tpl, np.eye(3), frames.shape[1:], 20.0), tpl)
    tpl = replace(tpl, residual_scale=max(tpl.residual_scale, register(tpl, roi, np.eye(3)).residual_scale))
    truth = s.truth_px[:, 0]
    poses = []
    for t in range(1, 30):
        # the rigid pose reference -> frame t from the true corners
        src, dst = c2 - c2.mean(axis=0), truth[t] - truth[t].mean(axis=0)
        u, _, vt = np.linalg.svd(dst.T @ src)
        r = u @ vt
        a = np.eye(3)
        a[:2, :2] = r
        a[:2, 2] = truth[t].mean(axis=0) - r @ c2.mean(axis=0)
        poses.append((t, a, 1.0))
    share, n_frames = outlier_share(frames, poses, tpl, frames[0])
    assert n_frames == 29
    mask = unreliable_mask(share, tpl, frames.shape[1:])
    # where the rod lies on the reference frame (its 9 px core, inside the template's box)
    x_ant = min(c2[:, 0].min(), s.landmarks.corners_px[Vertebra.C3][:, 0].min())
    xc = x_ant + 0.2 * (c2[:, 0].max() - c2[:, 0].min())
    x0, y0, x1, y1 = tpl.bbox
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside_body = (yy > c2[:, 1].min() + 3) & (yy < c2[:, 1].max() - 3)
    rod = (np.abs(xx - xc) <= 3.0) & inside_body
    away = (np.abs(xx - xc) >= 12) & inside_body
    assert mask[y0:y1, x0:x1][rod].mean() > 0.1
    assert mask[y0:y1, x0:x1][away].mean() < 0.01
    assert 0.02 < template_share(tpl, mask) < 0.35  # within the gate of the refit


def test_bodies_a_rod_drags_are_refitted_without_it_where_they_were_lost():
    """The rod over C2-C3 on the reference frame drifts away from both: the drag guards gave C2 up in 13 of
    30 frames and C3 in 9 (reasons DRAGGED, not found). Refitted with templates cut without the pixels that
    do not move with them, C2 is followed in 23 frames and C3 in 28, every one within 2 px, and the bodies
    clear of the rod are untouched."""
    s, frames = _rod_scene()
    # this refit alone (the fine-detail refit and the consistency weights, which act after it, off in both)
    before = track(frames, s.landmarks, refit_unreliable=False, refit_fine=False, consistency_weights=False)
    after = track(frames, s.landmarks, refit_fine=False, consistency_weights=False)
    err0, ok0 = _followed(before, s.truth_px)
    err1, ok1 = _followed(after, s.truth_px)
    c2, c3 = (after.vertebrae.index(v) for v in (Vertebra.C2, Vertebra.C3))
    assert ok0[:, c2].sum() == 17 and ok0[:, c3].sum() == 21
    assert ok1[:, c2].sum() >= 23 and ok1[:, c3].sum() >= 28
    assert not (ok1 & (err1 > 2.0)).any()
    gained = ok1 & ~ok0
    assert gained[:, c2].sum() >= 6 and gained[:, c3].sum() >= 7
    assert float(np.median(err1[gained])) < 0.5, err1[gained]
    # frames followed before are as they were; the bodies below the rod untouched
    np.testing.assert_array_equal(after.corners_px[ok0], before.corners_px[ok0])
    np.testing.assert_array_equal(after.corners_px[:, c3 + 1 :], before.corners_px[:, c3 + 1 :])
    # what is still lost says why
    assert all(after.reason[t][i] for t, i in zip(*np.nonzero(~ok1), strict=True))
    # by default the consistency weights then act on the followed frames: the same frames followed, C3's
    # worst frame nearer (measured: 1.89 -> 0.45 px; C2's 1.04 px unchanged)
    weighted = track(frames, s.landmarks, refit_fine=False)
    err2, ok2 = _followed(weighted, s.truth_px)
    np.testing.assert_array_equal(ok2, ok1)
    assert err2[ok2[:, c3], c3].max() < 0.5 * err1[ok1[:, c3], c3].max()
    assert err2[ok2].max() <= err1[ok1].max() + 0.05
    # by default the frames still lost are registered again on their fine detail (refit_fine): C2 then
    # followed in all 30 frames and C3 in 29 (measured), none lost that was followed, none beyond 1.1 px
    default = track(frames, s.landmarks)
    err3, ok3 = _followed(default, s.truth_px)
    assert not (ok2 & ~ok3).any()
    assert ok3[:, c2].sum() == 30 and ok3[:, c3].sum() >= 29
    assert err3[ok3].max() < 1.1, err3[ok3].max()


def _rod_tracker(s, frames):
    """A tracker of the rod scene after its forward pass (the refits not run), with ``track``'s options."""
    options = tracker_mod._Options(
        margin_frac=0.15,
        blur_sigma_px=1.0,
        highpass_frac=0.1,
        n_levels=None,
        max_iterations=12,
        min_quality=TRUSTED_QUALITY,
        min_visible=0.6,
        max_rotation_step_deg=20.0,
        max_step_frac=0.6,
        max_overlap=0.1,
        anatomy_check=True,
        reacquire=True,
    )
    tk = tracker_mod._Tracker(frames, s.landmarks, None, options)
    tk.calibrate_residuals()
    tk.run_pass(range(1, len(frames)), None)
    return tk


def test_a_refit_its_neighbours_do_not_carry_there_is_not_followed():
    """The refit's own checks (``_Tracker._refit_checks``): on a frame C3 was lost on and the refit found it
    (within 1 px of the truth), its pose passes them; the same pose 3 px off (0.11 of C3's size: within the
    plausible step, beyond where its neighbours carry it) does not, nor does the refit when no neighbour
    is tracked on that frame."""
    s, frames = _rod_scene()
    tk = _rod_tracker(s, frames)
    c3 = tk.verts.index(Vertebra.C3)
    lost = ~tk._tracked(c3)
    tk.refit_unreliable()
    t = int(np.flatnonzero(lost & tk._tracked(c3))[0])  # a frame the refit found C3 on
    assert np.abs(tk.corners[t, c3] - s.truth_px[t, c3]).max() < 1.0
    refit = tk._pose(t, c3)
    tk.quality[t, c3] = 0.0  # as before the refit
    tracked = np.flatnonzero(tk._tracked(c3))
    near = int(tracked[np.argmin(np.abs(tracked - t))])
    assert tk._refit_checks(c3, t, refit, near)
    off = refit.copy()
    off[0, 2] += 3.0
    assert not tk._refit_checks(c3, t, off, near)
    for j in (c3 - 1, c3 + 1, c3 + 2):
        tk.quality[t, j] = 0.0  # no neighbour tracked on frame t: nothing supports the refit
    assert not tk._refit_checks(c3, t, refit, near)


def _occluders_tracked(seed: int):
    """A 60-frame 512² phantom of the ``occluders`` family drawn with ``seed``, tracked: the phantom, its
    tracks, each body's worst corner error per frame (T, bodies) and where it is trusted."""
    from dmx.phantom import draw_appearance, make_phantom, truth_corners

    ph = make_phantom(
        frames=60, rows=512, cols=512, seed=seed, appearance=draw_appearance("occluders", seed=seed)
    )
    tr = track(ph.frames, ph.landmarks)
    bodies = [tr.vertebrae.index(v) for v in tr.bodies]
    err = np.linalg.norm(tr.corners_px[:, bodies] - truth_corners(ph.truth, tr.bodies), axis=-1).max(-1)
    ok = np.isfinite(err) & (np.nan_to_num(tr.quality[:, bodies]) >= TRUSTED_QUALITY)
    return ph, tr, err, ok


def test_occluders_case_c2_c3_found_again_and_no_interval_from_a_look_alike():
    """The ``occluders`` case of ``benchmarks/measurements.py --appearance`` (seed 26, developed on): the
    mandible's outline over C2-C3 on the reference frame dragged both, so the guards gave them up in 49 of
    60 frames. Refitted without the template pixels that move otherwise, they are followed in 42 and 37
    frames, none more than 2 px off. C1's arch, followed 15-96 px off where C2 had been lost (unchecked),
    is checked against the refitted C2: the atlanto-dental interval is never more than 1 mm off (it read
    30.5 mm before that check)."""
    from dmx.pipeline import _adi_points

    ph, tr, err, ok = _occluders_tracked(26)
    assert not (ok & (err > 2.0)).any()
    assert ok[:, 0].sum() >= 40 and ok[:, 1].sum() >= 35  # C2, C3 (11 each before)
    assert ok[:, 2:].all()
    mm = np.array(ph.truth["mm_per_px"])[::-1]
    points = _adi_points(tr, ph.landmarks)
    adi = np.linalg.norm((points["C1.arch_post"] - points["C2.dens_ant"]) * mm, axis=-1)
    given = np.isfinite(adi)
    # 5 or more before the checks of C2 dragged alone gave up C2 (and the arch) on more frames
    assert given.sum() >= 4
    assert np.abs(adi[given] - np.array(ph.truth["adi_mm"])[given]).max() < 1.0


def test_c2_dragged_alone_is_disputed_by_c4_across_two_segments():
    """The ``occluders`` family drawn with seed 62 (developed on): the mandible's outline drags C2 alone
    (C3 lost or itself far from clear beside it, C1's arch confirms nothing), so no neighbour near to clear
    could dispute it: C2 was trusted 2.2-6.1 px off on frames 5, 25-27 and 33. C4, near to clear, now
    disputes it across two segments from C2's last clear frame (``DRAG_TOP_FRAC``), and C2 found again far
    from clear is not followed: one frame was left, 2.4 px off (frame 33, where C2 had slid in from 1.1 px
    on the frame before), which the consistency refit through the finer pre-filter (``refine_precise``,
    session 39) brings back to 0.28 px (frame 32: 1.08 -> 0.11 px)."""
    _, _, err, ok = _occluders_tracked(62)
    bad = ok & (err > 2.0)
    assert not bad[:, 0].any()  # C2: frames 5, 25, 26, 27, 33 before the dispute, 33 before session 39
    assert ok[33, 0] and err[33, 0] < 0.5
    assert not bad[:, 1:].any()
    assert ok[:, 0].sum() >= 38  # C2 followed in 41 frames before, 38 after
    assert ok[:, 2:].all()


def test_the_fine_template_is_calibrated_two_frames_from_the_reference_when_none_next_to_it_converges(
    monkeypatch,
):
    """``_Tracker._fine_template``: its expected residual and clear cost come from fine fits on the frames
    next to the reference; where none of those converges (C2 under the mandible, seed 41: its fit on frame
    1 oscillated to the iteration limit, and without a template C2 stayed lost on 21 frames), the frames
    two from it are used; where none of those converges either, there is no fine template."""
    from dataclasses import replace

    s, frames = _rod_scene()
    tk = _rod_tracker(s, frames)
    c4 = tk.verts.index(Vertebra.C4)  # clear of the rod, tracked on every frame
    assert tk._tracked(c4).all()
    normal = tk._fine_template(c4)
    assert normal is not None
    fit_at = tk.fit_at
    seen: list[int] = []
    unconverged: set[int] = {1}

    def failing(i, frame, start, level, **kw):
        fit, q = fit_at(i, frame, start, level, **kw)
        address = frame.__array_interface__["data"][0]
        t = next(k for k in range(len(frames)) if tk.frames[k].__array_interface__["data"][0] == address)
        if kw.get("template") is not None and i == c4:
            seen.append(t)
        return (replace(fit, converged=False) if t in unconverged else fit), q

    monkeypatch.setattr(tk, "fit_at", failing)
    fallback = tk._fine_template(c4)
    assert fallback is not None and seen == [1, 2, 2]  # frame 1 fails: calibrated and costed on frame 2
    assert fallback[0].residual_scale >= normal[0].residual_scale * 0.5
    seen.clear()
    unconverged.add(2)
    assert tk._fine_template(c4) is None and seen == [1, 2]
