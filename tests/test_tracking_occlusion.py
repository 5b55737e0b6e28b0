"""Issue #13: no trusted-but-wrong frames under occluders that do not move with the bone."""

import math

import numpy as np

from dmx.anatomy import Vertebra
from dmx.phantom.scenes import make_scene
from dmx.tracking import TRUSTED_QUALITY, track
from dmx.tracking import tracker as tracker_mod
from dmx.tracking.register import make_template, rigid, spread_outliers
from dmx.tracking.robust import inconsistent, reject_inconsistent, static_mask


def _blade(frames: np.ndarray, rows: int) -> np.ndarray:
    """A white collimator blade over the top ``rows`` rows of every frame (static, saturated)."""
    out = frames.copy()
    out[:, :rows] = np.iinfo(frames.dtype).max
    return out


def test_static_mask_finds_a_saturated_blade_and_nothing_in_a_noisy_image():
    s = make_scene(shape=(200, 200), n_frames=2, noise=4.0, seed=3)
    assert static_mask(s.frames[0]) is None
    frame = _blade(s.frames, 40)[0]
    m = static_mask(frame, pad_px=3)
    assert m is not None
    assert m[:40].all()  # the whole blade
    assert m[40:43].all() and not m[44:].any()  # its edge (3 px), nothing below


def test_collimator_blade_over_c2_never_gives_a_trusted_wrong_frame():
    s = make_scene(shape=(256, 256), n_frames=24, amplitude_deg=6.0, drift_px=20.0, noise=3.0, seed=5)
    c2 = s.vertebrae.index(Vertebra.C2)
    top = s.landmarks.corners_px[Vertebra.C2][:, 1]
    rows = int(round(top.min() + 0.5 * (top.max() - top.min()) + 8))  # about half of C2 behind the blade
    frames = _blade(s.frames, rows)
    tr = track(frames, s.landmarks)
    err = np.linalg.norm(tr.corners_px - s.truth_px, axis=-1).max(axis=-1)
    trusted = np.isfinite(err) & (np.nan_to_num(tr.quality) >= TRUSTED_QUALITY)
    assert not (trusted & (err > 2.0)).any(), np.nanmax(np.where(trusted, err, np.nan), axis=0)
    # C2 is lost with a reason in most frames, never followed along the blade
    lost = [t for t in range(len(frames)) if not np.isfinite(tr.corners_px[t, c2]).any()]
    assert len(lost) >= len(frames) // 2
    assert all(tr.reason[t][c2] for t in lost)
    # the bodies clear of the blade are followed in every frame, as without it
    assert trusted[:, c2 + 1 :].all()
    assert float(np.median(err[:, c2 + 1 :])) < 0.3


def test_a_body_dragged_away_from_its_neighbours_is_rejected():
    centres = [np.array([100.0, 60.0 + 40.0 * k]) for k in range(4)]
    sizes = [30.0] * 4
    # physiological: each body turned a few degrees about the disc below it
    poses = [rigid(math.radians(3.0 * (3 - k)), 0.0, 0.0, centres[k] + [0.0, 20.0]) for k in range(4)]
    assert reject_inconsistent(poses, centres, sizes, [True] * 4) == []
    # the top body dragged 15 px forwards (an occluder's edge): rejected, not its neighbour
    dragged = list(poses)
    dragged[0] = rigid(0.0, -15.0, 0.0, centres[0]) @ poses[0]
    assert inconsistent(dragged[0], poses[1], centres[0], centres[1], 30.0)
    assert reject_inconsistent(dragged, centres, sizes, [True] * 4) == [0]
    # a middle body turned 40 degrees: rejected; C1-like regions (not checked) never are
    turned = list(poses)
    turned[2] = rigid(math.radians(40.0), 0.0, 0.0, centres[2]) @ poses[2]
    assert reject_inconsistent(turned, centres, sizes, [True] * 4) == [2]
    assert reject_inconsistent(turned, centres, sizes, [True, True, False, True]) == []


def test_rejected_body_has_the_reason():
    assert tracker_mod.INCONSISTENT.startswith("moved inconsistently")


def test_a_body_mostly_behind_a_blade_is_not_followed():
    s = make_scene(shape=(256, 256), n_frames=6, amplitude_deg=2.0, noise=3.0, seed=2)
    c2 = s.vertebrae.index(Vertebra.C2)
    ys = s.landmarks.corners_px[Vertebra.C2][:, 1]
    rows = int(round(ys.min() + 0.45 * (ys.max() - ys.min())))  # about 45 % of C2 behind it
    frames = _blade(s.frames, rows)
    tr = track(frames, s.landmarks)
    assert tr.quality[s.landmarks.frame, c2] == 1.0  # the landmarks themselves
    others = [t for t in range(6) if t != s.landmarks.frame]
    assert all(tr.reason[t][c2] == tracker_mod.BEHIND_STATIC for t in others)
    assert not np.isfinite(tr.corners_px[others, c2]).any()
    assert (tr.quality[others, c2] <= 0.2).all()
    # without the blade, C2 is followed in every frame
    plain = track(s.frames, s.landmarks)
    assert np.isfinite(plain.corners_px[:, c2]).all()


def test_spread_outliers_rejects_the_neighbours_of_rejected_pixels_only():
    s = make_scene(shape=(160, 160), n_frames=1, noise=2.0, seed=1)
    tpl = make_template(s.frames[0].astype(np.float32), s.landmarks.corners_px[Vertebra.C4], n_levels=1)
    level = tpl.levels[0]
    w = np.ones(level.idx.size, np.float32)
    k = level.idx.size // 2
    w[k] = 0.0  # one rejected pixel
    out = spread_outliers(level, w, 2.0)
    d = np.hypot(level.u - level.u[k], level.v - level.v[k])
    assert (out[d <= 2.0] == 0.0).all()
    assert (out[d > 2.9] == 1.0).all()
    assert spread_outliers(level, w, 0.4) is w  # below one pixel: unchanged
