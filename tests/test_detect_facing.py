"""Which way a found column faces, from what repeats level by level behind its bodies (dmx.detect.facing)."""

from __future__ import annotations

import numpy as np
import pytest

from dmx.anatomy import BODIES, Vertebra
from dmx.detect import detect_landmarks
from dmx.detect.facing import FACING_REPEAT_MARGIN, facing_contradicted, side_coherence
from dmx.phantom import draw_appearance, make_phantom
from dmx.training.fit import training_specs

# the all-family phantom whose whole column C2-C6 the detector reported with anterior and posterior swapped
# (session 31, held-out set 1150000+ of benchmarks/heldout.py; the set is seen since)
GENERATOR, FIRST, INDEX = 11515, 1150000, 17


def _display(ph, frame: int) -> np.ndarray:
    img = ph.frames[frame].astype(np.float32)
    if ph.truth["params"]["photometric"] == "MONOCHROME1":
        img = 255.0 - img
    return img


@pytest.fixture(scope="module")
def swapped_case():
    kw = training_specs(INDEX + 1, seed=GENERATOR, first_seed=FIRST)[INDEX]
    kw["appearance"] = draw_appearance("all", seed=kw["seed"], max_size_px=768)
    ph = make_phantom(**kw)
    ref = kw["reference_frame"]
    return _display(ph, ref), dict(ph.landmarks.corners_px), tuple(ph.truth["mm_per_px"])


def _swapped(corners: dict) -> dict:
    """The same outlines with anterior and posterior swapped (ant-sup <-> post-sup, post-inf <-> ant-inf)."""
    return {v: np.asarray(c)[[1, 0, 3, 2]] for v, c in corners.items()}


def test_the_posterior_side_repeats_level_by_level(swapped_case):
    image, truth, _ = swapped_case
    posterior, anterior = side_coherence(image, truth)
    assert posterior - anterior > FACING_REPEAT_MARGIN, (posterior, anterior)
    assert not facing_contradicted(image, truth)
    # the same outlines with the sides swapped: the side called posterior is the one that does not repeat
    back, front = side_coherence(image, _swapped(truth))
    assert (back, front) == pytest.approx((anterior, posterior))
    assert facing_contradicted(image, _swapped(truth))
    # either polarity
    assert facing_contradicted(255.0 - image, _swapped(truth))
    assert not facing_contradicted(255.0 - image, truth)


def test_too_few_bodies_or_bands_outside_the_image_say_nothing(swapped_case):
    image, truth, _ = swapped_case
    two = {v: truth[v] for v in (Vertebra.C3, Vertebra.C4)}
    assert side_coherence(image, two) is None
    assert not facing_contradicted(image, _swapped(two))
    far = {v: np.asarray(c) + 5000.0 for v, c in truth.items()}
    assert side_coherence(image, far) is None


def _assert_found_right(det, truth: dict) -> None:
    """C3-C6 reported, every body reported within 3.5 px of the truth (C2 8 px)."""
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():
        err = float(np.hypot(*(c - truth[v]).T).max())
        assert err < (3.5 if v is not Vertebra.C2 else 8.0), (v, err)


def test_a_column_reported_with_its_sides_swapped_is_found_facing_the_right_way(swapped_case):
    """The detector's own chain search reported C2-C6 of this phantom on their bodies with anterior and
    posterior swapped (every corner 106-114 px off, confidence 1.0); the swap was refused and the column
    found again in a view where it stands upright, facing the right way. Since session 48 (the learned
    network's bodies outlined with the mean shape) the frame as given gives fewer than two bodies and the
    column is found on the view turned an eighth: the same bodies, within the same limits. Since session 59
    (a network trained on crops flipped and turned any way) the network's column on the frame as given is
    reported, facing the right way. The refusal of a swapped column itself: the next test."""
    image, truth, mpp = swapped_case
    det = detect_landmarks(image, mm_per_px=mpp)
    _assert_found_right(det, truth)


def test_a_swapped_column_from_the_frame_as_given_is_refused_and_searched_again(swapped_case, monkeypatch):
    """The column the frame as given gave before session 48 (C2-C6 on their bodies, anterior and posterior
    swapped, confidence 1.0), put in its place: refused for its facing, and the views searched."""
    import dmx.detect as detect_mod
    from dmx.detect import Detection
    from dmx.landmarks import Landmarks

    image, truth, mpp = swapped_case
    swapped = {v: c for v, c in _swapped(truth).items() if v is not Vertebra.C7}
    wrong = Detection(Landmarks(frame=0, corners_px=swapped, confidence=dict.fromkeys(swapped, 1.0)), {}, ())
    real, calls = detect_mod._detect_once, []

    def first_pass_swapped(img, **kw):
        calls.append(img.shape)
        return wrong if len(calls) == 1 else real(img, **kw)

    monkeypatch.setattr(detect_mod, "_detect_once", first_pass_swapped)
    det = detect_landmarks(image, mm_per_px=mpp)
    assert len(calls) > 1
    _assert_found_right(det, truth)
    assert any("anterior and posterior swapped" in w for w in det.warnings), det.warnings


def test_a_kyphotic_column_with_its_sides_swapped_is_contradicted():
    """All-family phantom 1170009 (generator 11717; held-out set 1170000+ of session 33, seen since): a
    flexed, kyphotic neck at 0.31 mm per pixel whose C3-C6 the chain search reported with anterior and
    posterior swapped (45-52 px off). On the true outlines the posterior side leads by less than on most
    phantoms (0.19), more than FACING_REPEAT_MARGIN: swapped, they are contradicted."""
    kw = training_specs(10, seed=11717, first_seed=1170000)[9]
    assert kw["seed"] == 1170009
    kw["appearance"] = draw_appearance("all", seed=kw["seed"], max_size_px=768)
    ph = make_phantom(**kw)
    image, truth = _display(ph, kw["reference_frame"]), dict(ph.landmarks.corners_px)
    posterior, anterior = side_coherence(image, truth)
    assert 0.15 < posterior - anterior < 0.2, (posterior, anterior)
    assert not facing_contradicted(image, truth)
    assert facing_contradicted(image, _swapped(truth))
