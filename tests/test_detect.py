"""Automatic corner detection (dmx.detect) on phantoms the detector was not fitted on."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from dmx.anatomy import BODIES, Vertebra
from dmx.detect import BODY_SIZE_MARK, Detection, detect_landmarks, find_landmarks, model_file
from dmx.detect.model import FEATURES, load_model
from dmx.landmarks import Landmarks
from dmx.phantom import make_phantom

# fitting uses seeds 100000+; these never appear there
SEED = 4242


def _display(ph, frame: int) -> np.ndarray:
    img = ph.frames[frame].astype(np.float32)
    if ph.truth["params"]["photometric"] == "MONOCHROME1":
        img = 255.0 - img
    return img


def _errors(det: Detection, truth: dict) -> dict[Vertebra, float]:
    return {
        v: float(np.hypot(*(c - truth[v]).T).max()) for v, c in det.landmarks.corners_px.items() if v in truth
    }


def _acquisition_phantom(generator: int, first_seed: int, index: int, *, bone_dark: bool = False, **extra):
    """Phantom ``index`` of ``training_specs(seed=generator, first_seed=first_seed)`` with the acquisition
    look drawn as ``benchmarks/heldout.py`` draws it (bone dark on every frame with ``bone_dark``), and
    its detection on the reference frame."""
    from dmx.phantom import draw_appearance
    from dmx.training.fit import training_specs

    kw = training_specs(index + 1, seed=generator, first_seed=first_seed)[index]
    look = draw_appearance("acquisition", seed=kw["seed"], max_size_px=768)
    if bone_dark:
        look = replace(look, acquisition=replace(look.acquisition, inverted=True))
    ph = make_phantom(**dict(kw, appearance=look, **extra))
    ref = kw["reference_frame"]
    return ph, detect_landmarks(_display(ph, ref), mm_per_px=tuple(ph.truth["mm_per_px"]), frame=ref)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(seed=SEED, frames=4, return_to_neutral=False, curve="lordotic", reference_frame=3)


@pytest.fixture(scope="module")
def detection(phantom):
    return detect_landmarks(_display(phantom, 3), mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)


def test_model_file_loads():
    path = model_file()
    assert path.name == "detector.npz" and path.is_file()
    assert path.stat().st_size < 2_000_000
    m = load_model(path)
    assert m.mean_shape_mm.shape == (6, 4, 2)
    assert m.trans_mean.shape == (5, 3)
    assert m.conf_weights.shape == (len(FEATURES) + 1,)
    assert 0.0 < m.conf_threshold < 1.0
    # C3's depth in its own frame is about 15 mm (phantom body size)
    depth = np.hypot(*(m.mean_shape_mm[1, 0] - m.mean_shape_mm[1, 1]))
    assert 14.0 < depth < 16.0


def test_not_a_model_file(tmp_path):
    bad = tmp_path / "x.npz"
    np.savez(bad, a=np.zeros(3))
    with pytest.raises(ValueError, match="not a dmx.detector"):
        load_model(bad)


def test_finds_c2_to_c7_within_2px(phantom, detection):
    assert detection.landmarks.frame == 3
    errs = _errors(detection, phantom.landmarks.corners_px)
    assert set(errs) == set(BODIES), detection.missing
    assert max(errs.values()) <= 2.0, errs
    assert all(0.5 <= c <= 1.0 for c in detection.landmarks.confidence.values())
    assert detection.missing == {}


def test_facing_left_mirrored(phantom):
    img = np.ascontiguousarray(_display(phantom, 3)[:, ::-1])
    w = img.shape[1]
    truth = {}
    for v, c in phantom.landmarks.corners_px.items():
        m = c.copy()
        m[:, 0] = w - 1 - m[:, 0]
        truth[v] = m
    det = detect_landmarks(img, mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    errs = _errors(det, truth)
    assert set(errs) >= set(BODIES[:5]), det.missing
    assert max(errs.values()) <= 2.0, errs
    # anterior corners lie to the left of the posterior ones when the patient faces left
    c4 = det.landmarks.corners_px[Vertebra.C4]
    assert c4[0, 0] < c4[1, 0] - 20


def test_monochrome1_and_uint8_input():
    ph = make_phantom(seed=SEED + 1, frames=4, photometric="MONOCHROME1", facing="left", curve="kyphotic")
    det = detect_landmarks((255 - ph.frames[0]).astype(np.uint8), mm_per_px=tuple(ph.truth["mm_per_px"]))
    errs = _errors(det, ph.landmarks.corners_px)
    assert len(errs) >= 5, det.missing
    assert max(errs.values()) <= 2.5, errs


@pytest.mark.parametrize("kind", ["noise", "blank"])
def test_no_spine_no_vertebrae(kind):
    # 320 px at 0.3 mm (a 96-mm field, room for four bodies): every view and size is searched as on a
    # larger frame, in a third of the time of 512 px
    rng = np.random.default_rng(3)
    img = rng.normal(100, 20, (320, 320)) if kind == "noise" else np.full((320, 320), 80.0)
    det = detect_landmarks(img, mm_per_px=(0.3, 0.3))
    assert det.landmarks.corners_px == {}
    assert set(det.missing) == set(BODIES)
    assert all(isinstance(r, str) and r for r in det.missing.values())


def test_hidden_body_is_left_out(phantom):
    img = _display(phantom, 3).copy()
    c5 = phantom.landmarks.corners_px[Vertebra.C5]
    x0, y0 = np.floor(c5.min(axis=0)).astype(int) - 12
    x1, y1 = np.ceil(c5.max(axis=0)).astype(int) + 12
    img[y0:y1, x0:x1] = float(np.median(img))
    det = detect_landmarks(img, mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    assert Vertebra.C5 not in det.landmarks.corners_px
    assert Vertebra.C5 in det.missing
    errs = _errors(det, phantom.landmarks.corners_px)
    assert all(e <= 3.0 for e in errs.values()), errs


def test_low_confidence_is_omitted(tmp_path, phantom):
    strict = replace(load_model(model_file()), conf_threshold=0.999999)
    path = tmp_path / "strict.npz"
    strict.save(path)
    # the detector's own confidence (calibrated=False): the calibrated chance replaces it after this threshold
    det = detect_landmarks(
        _display(phantom, 3), mm_per_px=tuple(phantom.truth["mm_per_px"]), model_path=path, calibrated=False
    )
    for v in BODIES:
        assert (v in det.landmarks.corners_px) != (v in det.missing)
    assert any("confidence" in r for r in det.missing.values())
    assert all(c >= 0.999999 for c in det.landmarks.confidence.values())


def test_scattered_side_is_not_reported(monkeypatch, phantom):
    # every refinement reports a side 1.2 px RMS off its curve: above the 1 px limit of C3-C7,
    # below C2's 1.5 px (its shoulders are short and scatter more)
    import dmx.detect.detector as detector

    real = detector.refine_corners

    def scattered(*args, **kwargs):
        corners, feats, fits = real(*args, **kwargs)
        return corners, dict(feats, rms_px=1.2), fits

    monkeypatch.setattr(detector, "refine_corners", scattered)
    det = detect_landmarks(_display(phantom, 3), mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    for v in BODIES[1:]:
        assert v not in det.landmarks.corners_px
        assert "cortical edges are scattered (a side strays 1.2 px" in det.missing[v]
    assert "scattered" not in det.missing.get(Vertebra.C2, "")


def test_find_landmarks_uses_sequence_frame(phantom, detection):
    class Seq:
        frames = np.stack([_display(phantom, f) for f in range(4)])
        mm_per_px = tuple(phantom.truth["mm_per_px"])

    det = find_landmarks(Seq(), frame=3)
    assert det.landmarks.frame == 3
    for v, c in detection.landmarks.corners_px.items():
        np.testing.assert_allclose(det.landmarks.corners_px[v], c)


def test_rejects_non_image_and_says_why_a_tiny_frame_has_no_vertebra():
    with pytest.raises(ValueError, match="2-D"):
        detect_landmarks(np.zeros(100))
    det = detect_landmarks(np.zeros((16, 40)))
    assert det.landmarks.corners_px == {}
    assert set(det.missing.values()) == {"image too small for automatic detection (40 x 16 px)"}


def test_uncalibrated_searches_scales(phantom):
    det = detect_landmarks(_display(phantom, 3), mm_per_px=None, frame=3)
    errs = _errors(det, phantom.landmarks.corners_px)
    assert len(errs) >= 5, det.missing
    assert max(errs.values()) <= 2.0, errs
    assert any("no calibration" in w for w in det.warnings)


def test_varied_anatomy_beyond_the_fitted_range():
    # anatomy_sd 0.1 is above the fitting set's 0.08: other body sizes, wedging, discs and outlines
    ph = make_phantom(seed=SEED + 2, frames=4, return_to_neutral=False, anatomy_sd=0.1)
    assert ph.truth["params"]["anatomy"]["scale"] != 1.0
    det = detect_landmarks(_display(ph, 0), mm_per_px=tuple(ph.truth["mm_per_px"]))
    errs = _errors(det, ph.landmarks.corners_px)
    assert set(errs) == set(BODIES), det.missing
    assert max(errs.values()) <= 2.5, errs


# ------------------------------------------------------------------------------------------------
# the template detector's levels checked against the learned network (issue #12)


class _VotingNet:
    """A stand-in for the network: labels the point nearest each given centre with a level."""

    def __init__(self, labels: dict[tuple[float, float], int]):
        self.labels = labels

    def bodies(self, image, mm_per_px):
        labels = self.labels

        class _Found:
            def level_at(self, point):
                for (x, y), level in labels.items():
                    if np.hypot(point[0] - x, point[1] - y) < 1.0:
                        return level
                return -1

        return _Found()


def _column(confidences: list[float]):
    from dmx.detect.detector import BodyResult, ColumnResult

    bodies = []
    for k, conf in enumerate(confidences):
        corners = np.array([[0, 0], [10, 0], [10, 8], [0, 8]], float) + [0.0, 20.0 * k]
        bodies.append(BodyResult(BODIES[k], corners, np.zeros(len(FEATURES)), conf, None))
    return ColumnResult(tuple(bodies), 80.0, "right", 0.3, True)


def test_levels_disputed_when_the_network_puts_as_many_bodies_at_other_levels():
    from dmx.detect.detector import level_votes, levels_disputed

    col = _column([0.2, 0.9, 0.9, 0.9, 0.2, 0.9])  # C2 and C6 below the threshold: not voted on
    centre = {k: (5.0, 4.0 + 20.0 * k) for k in range(6)}
    image = np.zeros((8, 8))
    # the network agrees on C3, C4 and C7, puts C5 one level up, sees nothing at C6
    net = _VotingNet({centre[1]: 1, centre[2]: 2, centre[5]: 5, centre[3]: 2})
    assert level_votes(image, col, net, 0.7) == (3, 1, 4)
    assert levels_disputed(image, col, net, 0.7) is None
    # every body one level down (the column as the template detector shifts it): disputed
    shifted = _VotingNet({centre[k]: k + 1 for k in range(5)})
    assert level_votes(image, col, shifted, 0.7) == (0, 3, 4)
    reason = levels_disputed(image, col, shifted, 0.7)
    assert reason is not None and "3 of the 4 bodies" in reason
    # a tie is a coin toss too; background alone votes neither way
    tie = _VotingNet({centre[1]: 1, centre[2]: 3})
    assert levels_disputed(image, col, tie, 0.7) is not None
    assert levels_disputed(image, col, _VotingNet({}), 0.7) is None
    # with C2 reported, the top of the column is identified: not checked
    with_c2 = _column([0.9, 0.9, 0.9, 0.9, 0.2, 0.9])
    assert levels_disputed(image, with_c2, shifted, 0.7) is None


def test_a_column_without_level_evidence_is_told_apart_from_one_the_network_confirms():
    from dmx.detect.detector import columns_conflict, levels_evidence

    col = _column([0.2, 0.9, 0.9, 0.2, 0.2, 0.2])  # C3 and C4 reported, C2 not
    centre = {k: (5.0, 4.0 + 20.0 * k) for k in range(6)}
    image = np.zeros((8, 8))
    # the network sees nothing where the bodies are: no dispute, but nothing confirms the levels either
    assert levels_evidence(image, col, _VotingNet({}), 0.7) == (None, False)
    # more than half of the bodies labelled with their own level confirm them; one of two does not
    # (session 50: the independent renderer's H 1241, a column a level low kept by one vote)
    assert levels_evidence(image, col, _VotingNet({centre[1]: 1}), 0.7) == (None, False)
    assert levels_evidence(image, col, _VotingNet({centre[1]: 1, centre[2]: 2}), 0.7) == (None, True)
    # both labelled a level down: disputed, unconfirmed
    reason, confirmed = levels_evidence(image, col, _VotingNet({centre[1]: 2, centre[2]: 3}), 0.7)
    assert reason is not None and not confirmed
    # with C2 reported the top of the column identifies it
    assert levels_evidence(image, _column([0.9, 0.9, 0.9, 0.2, 0.2, 0.2]), _VotingNet({}), 0.7) == (
        None,
        True,
    )

    template = {b.vertebra: b.corners_px for b in col.bodies if b.confidence >= 0.7}
    assert columns_conflict(col, template) is None  # the same bodies at the same levels
    from dataclasses import replace

    # the network's C2 and C3 where the template detector's C3 and C4 are
    net_col = _column([0.9, 0.9, 0.2, 0.2, 0.2, 0.2])
    net_col = replace(
        net_col, bodies=tuple(replace(b, corners_px=b.corners_px + [0.0, 20.0]) for b in net_col.bodies)
    )
    assert "the template detector's C3" in columns_conflict(net_col, template)


def test_a_column_one_level_off_is_not_reported():
    """Thick cortical rims (an appearance family the template detector was not fitted on): the chain
    search puts C2 on the skull base and every body one level down, at full confidence. Without the
    level check all five are reported on the wrong vertebrae; with it none of them is, each level is
    reported on its own vertebra (here: by the learned network, whose levels the C2 template
    confirms) and a warning says why the template detector's bodies were left out (benchmark
    phantom 700004 of benchmarks/detection.py --families cortical)."""
    from dmx.detect import NETWORK_MARK
    from dmx.detect.detector import run
    from dmx.detect.model import load_model
    from dmx.phantom import draw_appearance
    from dmx.training.fit import training_specs

    kw = training_specs(5, seed=4242, first_seed=700000)[4]
    kw["appearance"] = draw_appearance("cortical", seed=kw["seed"], max_size_px=768)
    ph = make_phantom(**kw)
    image = _display(ph, kw["reference_frame"])
    mpp = tuple(ph.truth["mm_per_px"])
    truth = ph.landmarks.corners_px
    raw = run(image, load_model(model_file()), mm_per_px=float(np.mean(mpp)))
    shifted = [
        b
        for b in raw.bodies
        if b.corners_px is not None
        and b.confidence >= 0.7
        and BODIES.index(b.vertebra) >= 1
        and np.hypot(*(b.corners_px.mean(axis=0) - truth[BODIES[BODIES.index(b.vertebra) - 1]].mean(axis=0)))
        < 3.0
    ]
    assert len(shifted) >= 4  # the failure this guards against: bodies on the level above theirs
    det = detect_landmarks(image, mm_per_px=mpp, frame=kw["reference_frame"])
    for v, c in det.landmarks.corners_px.items():  # every body reported is on its own vertebra
        assert float(np.hypot(*(c - truth[v]).T).max()) < 3.5, v
    assert any(
        w.startswith("the template detector's bodies left out: its level is uncertain") for w in det.warnings
    )
    assert any(NETWORK_MARK in w for w in det.warnings)


def test_without_the_network_the_levels_are_reported_unchecked_with_a_warning(tmp_path, phantom):
    import shutil

    shutil.copy(model_file(), tmp_path / "detector.npz")  # no heatmap.onnx beside it
    det = detect_landmarks(
        _display(phantom, 3),
        mm_per_px=tuple(phantom.truth["mm_per_px"]),
        model_path=tmp_path / "detector.npz",
    )
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px)
    assert any("levels not checked" in w and "heatmap.onnx" in w for w in det.warnings)
    checked = detect_landmarks(_display(phantom, 3), mm_per_px=tuple(phantom.truth["mm_per_px"]))
    assert not any("levels not checked" in w for w in checked.warnings)


# ------------------------------------------------------------------------------------------------
# a second renderer written without dmx/phantom (benchmarks/independent_phantom.py, issue #12)


def _independent_renderer():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "independent_phantom.py"
    spec = importlib.util.spec_from_file_location("independent_phantom", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bodies_spaced_unlike_the_model_and_an_airway_chain_are_still_found(tmp_path):
    """On the independent renderer's images the best chain ran along the airway and the bodies
    (20 mm apart against the model's 18) were all "not found". The next chains and a larger body
    size are now tried when the first reports fewer than two bodies: C3-C6 on their own levels.
    (Seed 11 is one of the five studies this was developed on; docs/detection.md gives held-out seeds.)"""
    seq, true = _independent_study(tmp_path, 11, frames=2, size=512, mm_per_px=0.3, facing="right")
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():
        _assert_on_its_body(det, v, c, true[v])  # its own level (a level off is 60 px)


def test_a_column_left_out_for_its_level_says_so_in_the_one_line_error(tmp_path, monkeypatch):
    """`dmx landmarks` on a study where the only columns found have levels the checks refuse: the error line
    says why (bodies were found, their level is uncertain), not that no body was found; without ``--frame``
    the cine's other frames are searched too, and the line says so. Until session 59 this was the
    independent renderer's held-out set J, seed 1617 (512 px, heavy shoulders), where the network's column
    was a level off; the network shipped since then finds C2-C6 there, on their own levels (checked here), so
    the refusal is played: every frame's bodies left out by the network's dispute of their levels
    (LEVELS_DISPUTED), as that network disputed them."""
    import contextlib
    import io

    import dmx.detect as detect_mod
    from dmx.cli import main
    from dmx.detect.detector import LEVELS_DISPUTED

    ip = _independent_renderer()
    opts = dict(
        frames=3, size=512, mm_per_px=0.335, facing="right", photometric="MONOCHROME1", heavy_shoulders=True
    )
    study = tmp_path / "study" / "study.dcm"
    ip.render_study(tmp_path / "study", 1617, **opts)
    true = _true_corners(tmp_path / "study")
    assert main(["landmarks", str(study), "--frame", "0", "--out", str(tmp_path / "found.json")]) == 0
    from dmx.landmarks import read_landmarks

    found = read_landmarks(tmp_path / "found.json")
    assert set(BODIES[1:5]) <= set(found.corners_px), found.vertebrae
    for v in BODIES[1:5]:
        assert np.hypot(*(found.corners_px[v] - true[v]).T).max() < 3.5, v

    real = detect_mod.detect_landmarks
    disputed = "left out: " + LEVELS_DISPUTED.format(dis=3, n=4)

    def refused(image, **kw):
        det = real(image, **kw)
        assert det.landmarks.corners_px  # a column was found: its levels refused
        missing = {v: disputed for v in BODIES}
        return Detection(Landmarks(frame=det.landmarks.frame, corners_px={}), missing, det.warnings)

    monkeypatch.setattr(detect_mod, "detect_landmarks", refused)
    for args, searched in ((["--frame", "0"], False), ([], True)):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["landmarks", str(study), *args, "--out", str(tmp_path / "L.json")])
        lines = [ln for ln in err.getvalue().splitlines() if "error" in ln]
        assert code == 1 and len(lines) == 1, err.getvalue()
        assert "reported no vertebral body: its level is uncertain: " in lines[0]
        assert ("frames 1, 2 of the cine searched too" in lines[0]) == searched, lines[0]
        assert not (tmp_path / "L.json").exists()


def _assert_on_its_body(det: Detection, v: Vertebra, corners: np.ndarray, true: np.ndarray) -> None:
    """Every corner within 3.5 px of the independent renderer's truth; for a C2 found from its walls
    (the warning says so) its inferior corners, and its superior ones (which no edge marks there)
    within 8 px (a level off is 50-60 px)."""
    from dmx.detect import C2_WALLS

    err = np.hypot(*(corners - true).T)
    if v is Vertebra.C2 and C2_WALLS in det.warnings:
        assert err[2:].max() < 3.5 and err[:2].max() < 8.0, (v, err)
    else:
        assert err.max() < 3.5, (v, err)


def _assert_each_on_its_body(det: Detection, true: dict, required) -> None:
    """The ``required`` levels found, every body reported on its own vertebra: C3-C7 within 3.5 px of
    the independent renderer's truth, C2 by its inferior corners, which the measurements use (its
    superior ones are a convention there; a level off is 50-60 px)."""
    assert set(required) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():
        if v is Vertebra.C2:
            assert np.hypot(*(c - true[v]).T)[2:].max() < 3.5, (v, c)
        else:
            _assert_on_its_body(det, v, c, true[v])


def _true_corners(path) -> dict:
    truth = __import__("json").loads((path / "landmarks.json").read_text())["points"]
    return {
        v: np.array([truth[v.value][c] for c in ("ant_sup", "post_sup", "post_inf", "ant_inf")])
        for v in BODIES
    }


def _independent_study(path, seed: int, frames: int = 1, **opts):
    """``frames`` frames of the independent renderer with ``opts``: the loaded sequence and its true
    corners (frame 0)."""
    from dmx.io.load import load_sequence

    _independent_renderer().render_study(path, seed, frames=frames, **opts)
    return load_sequence(path / "study.dcm"), _true_corners(path)


def test_a_template_column_one_vote_of_two_confirms_does_not_overrule_the_network(tmp_path, monkeypatch):
    """The independent renderer's set H, seed 1241 (1024 px, 0.187 mm, facing left; session 50): the
    template detector's C3-C4, labelled C4-C5, had the network's own level at one body and background at
    the other; the network's column C5-C7 was right and passed the C2 test. Their levels conflicted and the
    template detector's were kept, then extended below: C3-C6 reported as C4-C7, 19 mm off. Its levels now
    need the network's own level at more than half its bodies: they are left out, and the network's
    column is reported, each body on its own."""
    from dmx.detect.detector import levels_evidence

    seq, true = _independent_study(
        tmp_path, 1241, frames=3, size=1024, mm_per_px=0.187, facing="left", photometric="MONOCHROME2"
    )
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():  # each on its own body (a level is about 100 px here)
        worst = np.hypot(*(c - true[v]).T)[2:] if v is Vertebra.C2 else np.hypot(*(c - true[v]).T)
        assert worst.max() < 10.0, (v, worst)
    # the template detector's levels left out for the network's column (session 50's machines); or, on
    # session 63's (an AMD EPYC; code, model and packages as before: presumably floating point rounded
    # otherwise, not proven), its chain finds C3-C5 at their own levels and the network adds C6-C7 below
    # them. Either way no body is a level off (above); the rule itself is checked below, votes given
    left_out = any("the template detector's bodies left out" in w for w in det.warnings)
    added_below = any("C6, C7 found by the learned network" in w for w in det.warnings)
    assert left_out or added_below, det.warnings

    # the rule alone (the network's votes given: agree, disagree, bodies): more than half must agree
    from dmx.detect import detector

    column = _c2_test_column(False, 3)  # C3-C4 reported, no C2
    for votes, confirmed in (((1, 0, 2), False), ((2, 0, 3), True), ((1, 0, 1), True), ((0, 0, 2), False)):
        monkeypatch.setattr(detector, "level_votes", lambda *a, v=votes, **k: v)
        assert levels_evidence(np.zeros((8, 8)), column, None, 0.5) == (None, confirmed), votes


def test_a_dispute_by_at_most_half_of_a_template_columns_bodies_is_settled_by_the_c2_test(
    tmp_path, monkeypatch
):
    """The independent renderer's set J, seed 1608 (768 px, 0.285 mm, facing left, MONOCHROME1, heavy
    shoulders; session 51): the template detector's C3-C5 were right, but the network, lost under the
    shoulders, labelled one of the three with another level and none with its own; one vote against and none
    for disputed the column, and nothing was reported. A dispute by no more than half of the bodies is now
    settled by the C2 test, which confirms these levels: C2-C6 are reported, each on its own body."""
    from dmx.detect import detector
    from dmx.detect.detector import levels_evidence

    seq, true = _independent_study(
        tmp_path,
        1608,
        frames=3,
        size=768,
        mm_per_px=0.285,
        facing="left",
        photometric="MONOCHROME1",
        heavy_shoulders=True,
    )
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES[1:4])  # each on its own body (a level is about 60 px here)

    # the rule alone (votes: agree, disagree, bodies; whether the C2 test confirms the column's levels)
    column = _c2_test_column(False, 4)  # C3-C5 reported, no C2
    image = np.zeros((8, 8))
    cases = (
        ((0, 1, 3), True, False),  # a minority against, the C2 test confirms: kept
        ((0, 1, 3), False, True),  # ... the C2 test does not: disputed
        ((1, 1, 2), True, False),  # half against: the C2 test decides
        ((0, 2, 3), True, True),  # a majority against: disputed whatever the C2 test says
        ((0, 3, 3), True, True),
        ((2, 1, 3), False, False),  # more agree than disagree: never disputed
    )
    for votes, c2_ok, disputed in cases:
        monkeypatch.setattr(detector, "level_votes", lambda *a, v=votes, **k: v)
        monkeypatch.setattr(detector, "c2_confirms", lambda *a, ok=c2_ok, **k: ok)
        reason, _ = levels_evidence(image, column, None, 0.5, model=object())
        assert (reason is not None) == disputed, (votes, c2_ok)
        # without the model (the C2 test not at hand) any dispute as large as the agreement stands
        reason, _ = levels_evidence(image, column, None, 0.5)
        assert (reason is not None) == (votes[1] >= votes[0]), votes


def test_the_c2_test_confirms_only_where_it_can_weigh_c2s_place(monkeypatch):
    """c2_confirms: False where c2_parts has no place for C2 (fewer than two bodies) or C2's place is
    outside the field (NaN), whatever c2_disputed says; otherwise c2_disputed decides."""
    from dmx.detect import detector
    from dmx.detect.detector import c2_confirms

    column = _c2_test_column(False, 4)
    monkeypatch.setattr(detector, "ColumnView", lambda *a, **k: None)
    for parts, disputed, expected in (
        ({}, None, False),
        ({0: (float("nan"), 1.0, float("nan")), -1: (0.5, 1.0, 0.2)}, None, False),
        ({0: (0.6, 1.0, 0.3), -1: (0.5, 1.0, 0.2)}, None, True),
        ({0: (0.6, 1.0, 0.3), -1: (0.7, 1.0, 0.2)}, "one level lower", False),
    ):
        monkeypatch.setattr(detector, "c2_parts", lambda *a, p=parts, **k: p)
        monkeypatch.setattr(detector, "c2_disputed", lambda *a, d=disputed, **k: d)
        assert c2_confirms(np.zeros((8, 8)), column, object(), 0.5) is expected, parts


def test_where_the_template_detector_finds_nothing_the_network_column_is_reported(tmp_path):
    """A 1024-px study of the independent renderer (settings of development seed 104, session 11):
    the template detector's chains find no body; the learned network's column, whose levels the
    C2 template confirms, is reported with a warning saying where it came from."""
    from dmx.detect import NETWORK_MARK
    from dmx.detect.detector import run

    seq, true = _independent_study(
        tmp_path, 104, size=1024, mm_per_px=0.348, facing="left", photometric="MONOCHROME2", mandible_low=True
    )
    model = load_model(model_file())
    alone = run(seq.frames[0], model, mm_per_px=0.348)
    assert alone is None or not [b for b in alone.bodies if b.corners_px is not None and b.confidence >= 0.7]
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert any(NETWORK_MARK in w for w in det.warnings), det.warnings
    assert set(BODIES[2:5]) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():
        _assert_on_its_body(det, v, c, true[v])  # its own level (a level off is 50-60 px)


def test_a_lone_template_body_without_level_evidence_gives_way_to_the_confirmed_network_column(
    tmp_path, monkeypatch
):
    """Independent renderer, development seed 934 of generator 2031 (session 14; 768 px, 0.269 mm,
    MONOCHROME1): the template detector reports one body, C3 as "C4" at confidence 1.0. With the network
    shipped until session 59 its label map there was background (no vote either way); the network's column,
    all six on their levels and confirmed by the C2 template, was refused because its C3 lies on the template
    detector's "C4", and the template body was extended to C5-C7: four bodies one level off. The template's
    levels, confirmed by nothing but its chain, now give way (LEVELS_CONFLICT): every body on its own level.
    The network shipped since session 59 labels that body C3 itself, which disputes the template's level
    before the columns are compared; its old silence is played here by ``levels_evidence`` giving neither a
    dispute nor a confirmation, as it did."""
    import dmx.detect.detector as detector_mod
    from dmx.detect.detector import LEVELS_CONFLICT

    seq, true = _independent_study(
        tmp_path, 934, frames=3, size=768, mm_per_px=0.269, facing="right", photometric="MONOCHROME1"
    )
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES[1:5])
    assert any(w.startswith("the template detector's bodies left out: ") for w in det.warnings), det.warnings
    monkeypatch.setattr(detector_mod, "levels_evidence", lambda *a, **k: (None, False))
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES[1:5])
    head = LEVELS_CONFLICT.split("{")[0]
    assert any(head in w for w in det.warnings), det.warnings


def test_a_body_a_level_off_in_a_column_joined_from_several_sources_is_left_out(tmp_path):
    """Independent renderer, development seed 1126 of generator 2034 (session 14; 1024 px, 0.197 mm,
    mandible low): the network's column (its C5 missing) put its "C6" on C7; its C2 test rests on C2-C4,
    which are right, so it joined; the search next to C4 then found the true C5, and the column
    reported C5 and "C6" two levels apart. The column as reported is now checked as a whole: that "C6"
    is left out, the others stay on their levels. Since session 18 the network's "C6", two levels'
    distance below its C5, is left out as below a skipped level before the columns join, and the search
    next to C5 finds the true C6 and C7: all six on their own vertebrae. With OpenCV 5.1 (its warp and
    ``cv2.dnn`` differ from 5.0 in the fifth decimal) the network's regions differ slightly and it outlines
    C6 and C7 on their own vertebrae itself; either way no body may be reported a level off, and the
    network's "C6" only where it lies on C6. With the network shipped since session 59 the template
    detector's column gives all six on their own vertebrae and no network body is added (the skipped level
    itself: ``test_a_skipped_level_leaves_out_the_bodies_below_it``)."""
    from dmx.detect import NETWORK_MARK

    seq, true = _independent_study(
        tmp_path,
        1126,
        frames=3,
        size=1024,
        mm_per_px=0.197,
        facing="right",
        photometric="MONOCHROME2",
        mandible_low=True,
    )
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert set(BODIES) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():
        # on its own vertebra: every corner within 5 mm (25 px; a level off is 95 px here)
        assert np.hypot(*(c - true[v]).T).max() < 25.0, v
    # the warnings name the network's bodies reported and, where its "C6" was left out (two levels below its
    # C5), C6 and C7 as found next to them
    by_network = next((w.split(NETWORK_MARK)[0] for w in det.warnings if NETWORK_MARK in w), None)
    if by_network is not None and "C6" not in by_network:
        assert any(w.startswith("C6, C7 found next to the reported bodies") for w in det.warnings), (
            det.warnings
        )


def test_bodies_below_a_skipped_level_are_left_out_and_found_again_from_the_chain_prior(tmp_path):
    """Independent renderer, seed 15 of ``benchmarks/independent.py`` (512 px, 0.4 mm, no mandible or
    shoulders), drawn as 3 frames (session 18): the network outlines C2-C5 on their levels, no region on
    C6, and labels C7 "C6" and T1 "C7", two levels below C5 at one level's distance; the spacing check
    over all pairs let them through (most pairs span the shift) and left the right C5 out. Now the
    bodies below a skipped level are left out, and the search next to C5 finds C6, then C7, from the
    chain prior's pose turned either way (C6 turns 6.6 deg against the prior's mean: from the prior's
    tilt alone its posterior wall was taken on the articular pillar)."""
    seq, true = _independent_study(
        tmp_path, 15, frames=3, size=512, mm_per_px=0.4, mandible=False, shoulders=False
    )
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES)


def test_a_skipped_level_leaves_out_the_bodies_below_it():
    """:func:`dmx.detect.detector._skipped_level` on columns drawn from the model's mean spacing: a gap of
    two levels between consecutive labels below C2 and bodies spaced as their levels say leaves out the
    lower body and all below it, with the reason. Left as they are: a column 15 % stretched at one disc;
    one with fewer than three consecutive pairs; one without C2 above the gap (which side is off is not
    known); one whose C2 is spaced unlike the body below it (C3 called "C4": the body above is off)."""
    from dmx.detect.detector import SKIPPED_LEVEL_PAIRS, BodyResult, _skipped_level

    model = load_model(model_file())
    step = np.hypot(model.trans_mean[:, 0], model.trans_mean[:, 1]) * 4.0  # px at 0.25 mm
    square = np.array([[30.0, -28.0], [-30.0, -28.0], [-30.0, 28.0], [30.0, 28.0]])

    def column(gaps: dict[int, float], levels=range(6)) -> list[BodyResult]:
        y = np.concatenate([[0.0], np.cumsum([step[k] * gaps.get(k, 1.0) for k in range(5)])])
        return [
            BodyResult(v, square + [200.0, 100.0 + y[k]] if k in levels else None, np.zeros(1), 1.0, None)
            for k, v in enumerate(BODIES)
        ]

    def reported(bodies: list[BodyResult]) -> list[bool]:
        return [b.corners_px is not None for b in bodies]

    skipped = _skipped_level(column({3: 2.0}), model)  # C6 on C7's place: C6, C7 one level off
    assert reported(skipped) == [True] * 4 + [False] * 2
    assert "skipped" in skipped[4].problem and "below C5" in skipped[4].problem
    assert reported(_skipped_level(column({2: 1.8}), model)) == [True] * 3 + [False] * 3
    three_pairs_below_c2 = range(SKIPPED_LEVEL_PAIRS + 1)  # C2-C5: two pairs among C3-C7
    c3_called_c4 = column({0: 0.5, 1: 0.5, 2: 2.0}, levels=(0, 2, 3, 4, 5))  # "C4" where C3 lies
    for kept in (
        column({}),
        column({3: 1.15}),
        column({2: 2.0}, levels=three_pairs_below_c2),
        column({3: 2.0}, levels=range(1, 6)),
        c3_called_c4,
    ):
        assert reported(_skipped_level(kept, model)) == reported(kept)


def test_a_level_counted_that_is_not_there_leaves_out_the_bodies_below_it():
    """:func:`dmx.detect.detector._merged_level` on columns drawn from the model's mean spacing: the mirror of
    a skipped level. C2-C4 on their own places, no C5, and "C6", "C7" on C5's and C6's places (one level's
    distance below C4, as the network labelled 1080007 inverted): C6 and C7 are left out, with the reason,
    and the spacing check over all pairs (:func:`_consistent_levels`), which before kept C3, "C6" and "C7"
    and left out C2 and C4, keeps C2-C4. Left as they are: C5 only not found (C6 two levels below C4);
    no C2 above; fewer than two consecutive pairs; a column whose C2 is spaced unlike the body below it."""
    from dmx.detect.detector import BodyResult, _consistent_levels, _merged_level

    model = load_model(model_file())
    step = np.hypot(model.trans_mean[:, 0], model.trans_mean[:, 1]) * 4.0  # px at 0.25 mm
    y = np.concatenate([[0.0], np.cumsum(step[:5])])
    square = np.array([[30.0, -28.0], [-30.0, -28.0], [-30.0, 28.0], [30.0, 28.0]])

    def column(places: dict[int, float]) -> list[BodyResult]:
        """Level k's body where level ``places[k]`` lies (an index into the mean spacing; None: none)."""
        return [
            BodyResult(v, square + [200.0, 100.0 + np.interp(places[k], range(6), y)], np.zeros(1), 1.0, None)
            if places.get(k) is not None
            else BodyResult(v, None, np.zeros(1), 0.0, "not found")
            for k, v in enumerate(BODIES)
        ]

    def reported(bodies: list[BodyResult]) -> list[bool]:
        return [b.corners_px is not None for b in bodies]

    shifted = column({0: 0, 1: 1, 2: 2, 4: 3, 5: 4})  # "C6", "C7" on C5, C6
    merged = _merged_level(shifted, model)
    assert reported(merged) == [True, True, True, False, False, False]
    assert "below C4" in merged[4].problem and "one level off" in merged[5].problem
    assert reported(_consistent_levels(shifted, model)) == [True, True, True, False, False, False]
    for kept in (
        column({0: 0, 1: 1, 2: 2, 4: 4, 5: 5}),  # C5 not found: C6 two levels below C4
        column({1: 1, 2: 2, 4: 3, 5: 4}),  # no C2
        column({0: 0, 2: 2, 4: 3}),  # no consecutive pair
        column({0: 0.6, 1: 1, 2: 2, 4: 3, 5: 4}),  # C2 spaced unlike C3 below it
    ):
        assert reported(_merged_level(kept, model)) == reported(kept)


def test_a_far_pair_spaced_one_level_short_is_not_confirmed():
    """:func:`dmx.detect.detector._far_pair_short`: the learned network's column of two reported bodies
    three or more levels apart is judged alone, at the scale their size gives. Bodies drawn with the
    model's mean shape and spacing at 4 px per mm: "C3" and "C6" two levels' distance apart (the network's
    "C3" on C4 below a right C6, 1110014 and 1140011), a right C2 and "C6" on C5 (1140016) are refused
    with the reason; the same pairs at their labels' distance, a pair two levels apart, and three bodies
    are not judged here."""
    from dmx.detect.detector import (
        FAR_PAIR_SHORT,
        BodyResult,
        ColumnResult,
        _far_pair_short,
        network_levels_unconfirmed,
    )

    model = load_model(model_file())
    ppm = 4.0
    step = np.hypot(model.trans_mean[:, 0], model.trans_mean[:, 1]) * ppm
    y = np.concatenate([[0.0], np.cumsum(step[:5])])

    def body(k: int, place: int) -> BodyResult:
        shape = (model.mean_shape_mm[k] - model.mean_shape_mm[k].mean(axis=0)) * ppm
        return BodyResult(BODIES[k], shape + [300.0, 100.0 + y[place]], np.zeros(1), 1.0, None)

    assert _far_pair_short([body(1, 1), body(4, 3)], model)  # "C3" on C3, "C6" on C5: two levels for three
    assert _far_pair_short([body(1, 2), body(4, 4)], model)  # "C3" on C4 above a right C6
    assert _far_pair_short([body(0, 0), body(4, 3)], model)  # a right C2, "C6" on C5
    for kept in (
        [body(1, 1), body(4, 4)],
        [body(0, 0), body(4, 4)],
        [body(1, 1), body(3, 2)],  # two levels apart at one level's distance: the spacing check's
        [body(1, 1), body(2, 2), body(4, 3)],
    ):
        assert not _far_pair_short(kept, model)
    network = ColumnResult((body(0, 0), body(4, 3)), 1.0, "right", 0.25, True)
    blank = np.zeros((1200, 700), np.float32)
    assert network_levels_unconfirmed(blank, network, model) == FAR_PAIR_SHORT


def test_a_column_half_of_it_a_level_off_is_judged_at_its_bodies_size():
    """:func:`dmx.detect.detector._spaced_as_their_size`: all-family phantom 1290014 (cine frame 0, C2 under
    the top collimator blade): the network outlined C3 and C4 as "C2" and "C3", C5 and C6 right. Against
    the median of the pairs (itself off, half the column being off) the check left out "C5" and kept "C2",
    "C3" and C6 at confidence 1.0. At the scale the bodies' size gives "C3" and C6 lie two levels' distance
    apart for three: the levels are disputed, and as which side is off cannot be told from distances, none
    is reported, with the reason. Bodies drawn with the model's mean shape and spacing at 4 px per mm; the
    true column, and one with a disc 15 % longer, are kept whole."""
    from dmx.detect.detector import SPACED_OFF_SIZE, BodyResult, _consistent_levels

    model = load_model(model_file())
    ppm = 4.0
    step = np.hypot(model.trans_mean[:, 0], model.trans_mean[:, 1]) * ppm

    def column(places: dict[int, int], stretch: dict[int, float] | None = None) -> list[BodyResult]:
        y = np.concatenate([[0.0], np.cumsum([step[k] * (stretch or {}).get(k, 1.0) for k in range(5)])])
        out = []
        for k, v in enumerate(BODIES):
            if k not in places:
                out.append(BodyResult(v, None, np.zeros(1), 0.0, "not found"))
                continue
            shape = (model.mean_shape_mm[k] - model.mean_shape_mm[k].mean(axis=0)) * ppm
            out.append(BodyResult(v, shape + [300.0, 100.0 + y[places[k]]], np.zeros(1), 1.0, None))
        return out

    off = _consistent_levels(column({0: 1, 1: 2, 3: 3, 4: 4}), model)  # "C2", "C3" on C3, C4; C5, C6 right
    assert all(b.corners_px is None for b in off)
    said = SPACED_OFF_SIZE.split("{")[0]
    # one left out first against the median ("C5" in 1290014), the other three at their size
    assert sum(b.problem.startswith(said) for b in off) == 3, off
    for kept in (column({k: k for k in range(5)}), column({k: k for k in range(6)}, stretch={2: 1.15})):
        assert [b.corners_px is not None for b in _consistent_levels(kept, model)] == [
            b.corners_px is not None for b in kept
        ]


def test_two_bodies_spaced_unlike_their_levels_are_not_both_kept():
    """:func:`dmx.detect.detector._consistent_levels` on a column of two bodies: their distance is judged
    at the scale their size gives (a pair alone is its own scale, so it could never disagree). A "C3" and
    a "C6" two levels' spacing apart (seen: "C3" on C4, on a view turned an eighth) lose the less
    confident; three levels apart, or 10 % further, both stay."""
    from dmx.detect.detector import BodyResult, _consistent_levels

    model = load_model(model_file())
    px_per_mm = 4.0
    step = np.hypot(model.trans_mean[:, 0], model.trans_mean[:, 1]) * px_per_mm

    def pair(distance_px: float) -> list[BodyResult]:
        out = []
        for k, v in enumerate(BODIES):
            corners = None
            if k in (1, 4):  # C3 and C6, at the model's mean size
                corners = model.mean_shape_mm[k] * px_per_mm + [
                    200.0,
                    100.0 + (distance_px if k == 4 else 0.0),
                ]
            out.append(BodyResult(v, corners, np.zeros(1), 0.9 if k == 1 else 0.95, None))
        return out

    def kept(bodies: list[BodyResult]) -> list[str]:
        return [b.vertebra.value for b in _consistent_levels(bodies, model) if b.corners_px is not None]

    three_levels = float(step[1:4].sum())
    assert kept(pair(three_levels)) == ["C3", "C6"]
    assert kept(pair(1.1 * three_levels)) == ["C3", "C6"]
    assert kept(pair(float(step[1:3].sum()))) == ["C6"]  # two levels' spacing: the less confident "C3" out
    assert kept(pair(float(step[1:5].sum()) * 1.05)) == ["C6"]  # four levels' spacing


def _one_level_low(real_run_heatmap):
    """``run_heatmap`` playing a network that labels every body one level low, as the network shipped until
    session 59 did under heavy shoulders (it takes the lowest body it sees for C7): C3-C6 as C4-C7, C2 and
    C7 not outlined, no C2 region of its own."""

    def run(*args, **kw):
        column = real_run_heatmap(*args, **kw)
        gone = dict(corners_px=None, confidence=0.0, problem="not found")
        low = [replace(b, **gone) for b in column.bodies[:2]]  # C2, C3: not outlined
        low += [replace(b, vertebra=BODIES[k + 1]) for k, b in enumerate(column.bodies[1:5], start=1)]
        return replace(column, bodies=tuple(low), network_c2_region=0.0)

    return run


def test_a_network_column_one_level_off_is_moved_to_its_levels_by_the_c2_test(tmp_path, monkeypatch):
    """Heavy shoulders on a 768-px study of the independent renderer (settings of development seed
    210): the network shipped until session 59 put C4-C6 on C3-C5 (a level off: it took the lowest body it
    saw for C7). The C2 template fits clearly better where the network put C3; until session 15 no body was
    reported, now the column is moved one level higher (`c2_moved`): every body on its own level, and the
    warning says so. The network shipped since session 59 labels this column right (checked here); its
    predecessor's miscount is played by relabelling its outlines one level low (:func:`_one_level_low`)."""
    import dmx.detect.detector as detector_mod
    from dmx.detect import NETWORK_MOVED
    from dmx.detect.detector import HEATMAP_THRESHOLD, reported_bodies, run_heatmap
    from dmx.detect.heatmap import load_net

    seq, true = _independent_study(
        tmp_path,
        210,
        size=768,
        mm_per_px=0.305,
        facing="left",
        photometric="MONOCHROME1",
        heavy_shoulders=True,
    )
    model = load_model(model_file())
    net = load_net(model_file("heatmap.onnx"))
    own = reported_bodies(run_heatmap(seq.frames[0], model, net, mm_per_px=0.305), HEATMAP_THRESHOLD)
    assert {b.vertebra for b in own} >= set(BODIES[1:5])
    for b in own:  # each on its own vertebra
        assert float(np.hypot(*(b.corners_px - true[b.vertebra]).T).max()) < 4.0, b.vertebra
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES[1:5])
    monkeypatch.setattr(detector_mod, "run_heatmap", _one_level_low(run_heatmap))
    shifted = reported_bodies(
        detector_mod.run_heatmap(seq.frames[0], model, net, mm_per_px=0.305), HEATMAP_THRESHOLD
    )
    assert len(shifted) >= 3
    for b in shifted:  # the played network's body sits on the vertebra above its label
        above = BODIES[BODIES.index(b.vertebra) - 1]
        assert float(np.hypot(*(b.corners_px - true[above]).T).max()) < 4.0, b.vertebra
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():
        _assert_on_its_body(det, v, c, true[v])  # its own level (a level off is about 60 px)
    head = NETWORK_MOVED.split("{")[0]
    assert any(w.startswith(head) for w in det.warnings), det.warnings


def test_c2_moved_relabels_a_column_only_past_the_margin(tmp_path, monkeypatch):
    """c2_moved on the true corners of C3-C6 (independent renderer, seed 11) with the C2 test's scores
    given: labelled C4-C7 with C2 one level higher by 0.2, the column is moved to C3-C6. Nothing is moved
    with a margin below C2_MOVE_MARGIN, with fewer than three bodies, one level lower, when a reported
    body would become C2 (labelled C3-C6: its C3 has four sides, C2 has no superior endplate), or when
    the C2 test does not confirm the moved column at its new levels."""
    from dmx.detect import detector
    from dmx.detect.detector import BodyResult, ColumnResult, c2_moved

    seq, true = _independent_study(tmp_path, 11, size=512, mm_per_px=0.3, facing="right")
    model = load_model(model_file())

    def column(shift: int, levels=range(1, 5)) -> ColumnResult:
        bodies = [BodyResult(v, None, np.zeros(1), 0.0, "absent") for v in BODIES]
        for k in levels:
            bodies[k + shift] = BodyResult(BODIES[k + shift], true[BODIES[k]], np.zeros(1), 1.0, None)
        return ColumnResult(tuple(bodies), 1.0, "right", 0.3, True)

    given: list[ColumnResult] = []
    margin = {"first": 0.2, "moved": 0.2, "way": -1}

    def scores(result):
        if result is given[-1]:  # the column as given: C2 fits one level away ("way") by "first"
            return {0: 2.0, margin["way"]: 2.0 + margin["first"], -margin["way"]: 1.7}
        return {-1: 1.9, 0: 2.0 + margin["moved"], 1: 1.9}  # the moved column, at its new levels

    def parts(image, result, model, threshold, view=None):
        # c2_scores sums the first two parts; no body where any shift puts C2 (plain fit below
        # C2_PLAIN_MIN), so the dens contrast confirms nothing
        return {s: (v, 0.0, -1.0) for s, v in scores(result).items()}

    monkeypatch.setattr(detector, "c2_parts", parts)

    def moved(col: ColumnResult):
        given.append(col)
        return c2_moved(seq.frames[0], col, model)

    column_moved, m = moved(column(1))
    assert round(m, 6) == 0.2
    for k in range(1, 5):  # one level higher: each label on its true body
        assert column_moved.bodies[k].vertebra is BODIES[k]
        np.testing.assert_array_equal(column_moved.bodies[k].corners_px, true[BODIES[k]])
    assert column_moved.bodies[0].corners_px is None and column_moved.bodies[5].corners_px is None

    assert moved(column(1, levels=range(3, 5))) is None  # two bodies
    assert moved(column(0)) is None  # its reported C3 would become C2
    margin["first"] = detector.C2_MOVE_MARGIN - 0.01
    assert moved(column(1)) is None
    margin["first"], margin["moved"] = 0.2, -0.2  # at its new levels C2 fits better one level off
    assert moved(column(1)) is None
    margin["moved"], margin["way"] = 0.2, 1  # C2 one level lower: never moved
    assert moved(column(0)) is None and moved(column(-1)) is None


def test_a_near_tie_of_the_c2_test_is_settled_by_the_dens_contrast(tmp_path):
    """Independent renderer, development seed 900 of generator 2031 (768 px, 0.265 mm): the network's
    column C3-C5 is right, but the C2 test (dens + two bodies below) ties with one level higher (C3 is
    clearer than C2 and fits the C2 template nearly as well). Until session 16 nothing was reported;
    the dens contrast (C2 fits the plain body template far worse than the C2 template, C3 does not)
    now confirms the column: C3-C5 reported, each on its own body. With the network shipped since session 59
    (its outlines there differ) the C2 test prefers the column's own levels outright, by more than the tie
    margin, and the dens contrast is not needed; the near tie itself is the next test's, on drawn scores."""
    from dmx.detect.detector import C2_TIE_MARGIN, HEATMAP_THRESHOLD, c2_scores, run_heatmap
    from dmx.detect.heatmap import load_net

    seq, true = _independent_study(  # as the development set renders it (3 frames)
        tmp_path, 900, frames=3, size=768, mm_per_px=0.265, facing="right", photometric="MONOCHROME1"
    )
    model = load_model(model_file())
    net = run_heatmap(seq.frames[0], model, load_net(model_file("heatmap.onnx")), mm_per_px=0.265)
    scores = c2_scores(seq.frames[0], net, model, HEATMAP_THRESHOLD)
    assert scores[0] > max(scores[-1], scores[1]) + C2_TIE_MARGIN  # no tie: its own levels preferred
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES[1:4])


def test_the_dens_contrast_confirms_only_a_near_tie_and_only_by_its_margin(monkeypatch):
    """c2_disputed with the C2 test's parts given: a column refused by a near tie is confirmed when the
    dens contrast prefers it by C2_DENS_MARGIN; not when the tie is wider than C2_TIE_MARGIN (on this
    project's occluders family a column one level off was refused by 0.28 with a dens contrast of
    +0.49 for it), nor when the dens contrast prefers it by less, nor when it cannot be computed."""
    from dmx.detect import detector
    from dmx.detect.detector import C2_DENS_MARGIN, C2_TIE_MARGIN, BodyResult, ColumnResult, c2_disputed

    parts: dict[int, tuple[float, float, float]] = {}
    monkeypatch.setattr(detector, "c2_parts", lambda *a, **k: parts)
    # C3-C7 without their C2 (a column reporting C2 and three bodies or more is not weighed one level
    # higher or lower: _shifts_weighed)
    absent = BodyResult(BODIES[0], None, np.zeros(1), 0.0, "absent")
    bodies = (absent, *(BodyResult(v, np.zeros((4, 2)), np.zeros(1), 1.0, None) for v in BODIES[1:]))
    col = ColumnResult(bodies, 1.0, "right", 0.3, True)

    def disputed(tie: float, contrast: float, plain_here: float = 0.4) -> str | None:
        # shift 0 and one level higher (-1); one level lower far worse; the plain body fit at C2's
        # place sets the dens contrast: 2 dens + below - plain
        parts.clear()
        parts[0] = (0.75, 1.30, plain_here)
        parts[1] = (0.70, 0.80, 0.10)
        d_here = 2 * 0.75 + 1.30 - plain_here
        below = 0.75 + 1.30 + tie - 0.65  # scores[-1] = scores[0] + tie
        plain = 2 * 0.65 + below - (d_here - contrast)  # dens[-1] = dens[0] - contrast
        parts[-1] = (0.65, below, plain)
        return c2_disputed(np.zeros((8, 8)), col, None, 0.5)

    assert disputed(0.0, 0.0) is not None  # a tie, the dens contrast undecided
    assert disputed(0.03, C2_DENS_MARGIN + 0.02) is None
    assert disputed(C2_TIE_MARGIN + 0.02, 0.5) is not None
    assert disputed(0.03, C2_DENS_MARGIN - 0.02) is not None
    assert disputed(0.03, 0.5, plain_here=float("nan")) is not None
    assert disputed(-0.05, -1.0) is None  # the C2 test itself confirms: the contrast is not asked


def test_the_dens_contrast_does_not_confirm_a_c2_place_without_a_body(monkeypatch):
    """All-family 1180008 (session 34): the network labelled C3, C5, C6 as C4, C6, C7, so the place its
    levels give C2 holds the atlas. The C2 test preferred the true C2 below by a near tie (0.057); the
    dens contrast preferred the atlas by 0.55, because the plain body template fits it at -0.37 (no
    body) and the contrast rewards that. With C2's place fitting the plain template below C2_PLAIN_MIN
    the tie is not settled for the column: it is refused. The same parts with a faint body there (plain
    0.05) are still confirmed."""
    from dmx.detect import detector
    from dmx.detect.detector import C2_PLAIN_MIN, BodyResult, ColumnResult, c2_disputed

    parts: dict[int, tuple[float, float, float]] = {}
    monkeypatch.setattr(detector, "c2_parts", lambda *a, **k: parts)
    levels = ("C4", "C6", "C7")
    bodies = tuple(
        BodyResult(v, np.zeros((4, 2)), np.zeros(1), 1.0, None)
        if v.value in levels
        else BodyResult(v, None, np.zeros(1), 0.0, "absent")
        for v in BODIES
    )
    col = ColumnResult(bodies, 1.0, "right", 0.24, True)
    parts.update({-1: (0.527, 1.219, 0.588), 0: (0.531, 1.158, -0.373), 1: (0.815, 0.215, -0.198)})
    assert C2_PLAIN_MIN > -0.373
    assert "one level lower" in c2_disputed(np.zeros((8, 8)), col, None, 0.5)
    parts[0] = (0.531, 1.158, 0.05)  # a faint body (1170001's right C2 fitted it at 0.048)
    assert C2_PLAIN_MIN <= 0.05
    assert c2_disputed(np.zeros((8, 8)), col, None, 0.5) is None


def _c2_test_column(with_c2: bool, n: int = len(BODIES)):
    """A network column for c2_disputed with the C2 test's parts monkeypatched: the first ``n`` levels
    reported at confidence 1 (C2 only ``with_c2``), the others absent."""
    from dmx.detect.detector import BodyResult, ColumnResult

    bodies = tuple(
        BodyResult(v, np.zeros((4, 2)), np.zeros(1), 1.0, None)
        if (with_c2 or v != BODIES[0]) and k < n
        else BodyResult(v, None, np.zeros(1), 0.0, "absent")
        for k, v in enumerate(BODIES)
    )
    return ColumnResult(bodies, 1.0, "right", 0.3, True)


def test_the_c2_test_does_not_weigh_c2_above_a_c2_the_column_reports(monkeypatch):
    """c2_disputed with the C2 test's parts given: where the dens template fits best one level above
    the column's C2 (the atlas and skull base over a right C2 whose dens is faint: session 29's
    all-family phantoms: 1120011's parts), a column that reports its C2 is not refused for it; the same
    column without its C2 reported is. Where C2 fits better one level below (the network's miscount under
    the shoulders, which never came with a reported C2: session 33), a column reporting its C2 and at
    least MIN_REPORTED_WITH_C2 bodies is not refused; one reporting C2 and one body more still is, and
    one without its C2 is."""
    from dmx.detect import detector
    from dmx.detect.detector import MIN_REPORTED_WITH_C2, c2_disputed

    parts: dict[int, tuple[float, float, float]] = {}
    monkeypatch.setattr(detector, "c2_parts", lambda *a, **k: parts)

    parts.update({-1: (0.44, 1.49, 0.63), 0: (0.69, 1.37, 0.62), 1: (0.83, 1.25, 0.57)})  # 1120011's
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(True), None, 0.5) is None
    assert "one level higher" in c2_disputed(np.zeros((8, 8)), _c2_test_column(False), None, 0.5)
    parts.update({-1: (0.43, 1.43, 0.60), 0: (0.44, 1.28, 0.49), 1: (0.82, 1.09, 0.33)})  # 1130011's, right
    assert MIN_REPORTED_WITH_C2 == 3
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(True, 3), None, 0.5) is None
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(True), None, 0.5) is None
    assert "one level lower" in c2_disputed(np.zeros((8, 8)), _c2_test_column(True, 2), None, 0.5)
    assert "one level lower" in c2_disputed(np.zeros((8, 8)), _c2_test_column(False), None, 0.5)


def test_the_c2_test_does_not_weigh_c2_above_the_networks_c2_region(monkeypatch):
    """Session 55: a network column that does not report its C2 but whose network found C2's region is not
    refused for C2 fitting better one level above (all-family 1430013's parts: the dens template fits the
    skull base above its right C2 best); without the region it still is. The shift below is still weighed
    with a region (the network's miscount under the shoulders: its columns a level low have C2 regions
    too)."""
    from dataclasses import replace as replaced

    from dmx.detect import detector
    from dmx.detect.detector import c2_disputed

    parts: dict[int, tuple[float, float, float]] = {}
    monkeypatch.setattr(detector, "c2_parts", lambda *a, **k: parts)
    column = _c2_test_column(False)
    with_region = replaced(column, network_c2_region=0.86)
    parts.update({-1: (0.465, 1.234, 0.566), 0: (0.655, 1.153, 0.588), 1: (0.759, 1.154, 0.358)})  # 1430013's
    assert "one level higher" in c2_disputed(np.zeros((8, 8)), column, None, 0.5)
    assert c2_disputed(np.zeros((8, 8)), with_region, None, 0.5) is None
    # the independent renderer's D914 (session 55's c2_columns run), a level low, its C2 region 0.54
    parts.update({-1: (0.78, 1.36, 0.50), 0: (0.73, 1.18, 0.38), 1: (0.68, 0.88, 0.17)})
    assert "one level lower" in c2_disputed(np.zeros((8, 8)), with_region, None, 0.5)


def test_a_network_column_whose_c2_region_is_found_but_not_outlined_is_kept_at_its_levels():
    """All-family 1430013 (generator 14343; drawn in session 55 and looked at): the network's column C3-C6
    is right, its C2 region (probability 0.86) lies on C2 but C2's outline is not reported, and the C2 test
    refused the column because the dens template fits the skull base above C2 best: nothing was reported.
    The region now counts as the column's C2 for that shift: C3-C6 reported within 2 px."""
    ph, ref, img, mpp = _all_family(14343, 1430000, 13)
    det = detect_landmarks(img, mm_per_px=mpp, frame=ref)
    errs = _errors(det, ph.landmarks.corners_px)
    assert set(BODIES[1:5]) <= set(errs), det.missing
    assert max(errs.values()) <= 2.0, errs


def test_a_column_counted_from_its_own_c2_is_not_refused_where_c2_is_too_near_the_edge(monkeypatch):
    """c2_disputed with the C2 test's parts given, where the column's C2 place cannot be tested (its dens
    above the image's top: parts close to all-family 1140004's, session 35): a column reporting its C2 among
    MIN_REPORTED_WITH_C2 bodies is kept; the same column reporting C2 and one body more is not confirmed
    (C2_OUTSIDE), whatever the place it calls C3 looks like."""
    from dmx.detect import detector
    from dmx.detect.detector import C2_OUTSIDE, MIN_REPORTED_WITH_C2, c2_disputed

    nan = float("nan")
    parts = {-1: (0.47, 1.36, 0.69), 0: (nan, nan, 0.59), 1: (nan, nan, nan)}
    monkeypatch.setattr(detector, "c2_parts", lambda *a, **k: parts)

    assert MIN_REPORTED_WITH_C2 == 3
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(True, 3), None, 0.5) is None
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(True, 5), None, 0.5) is None
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(True, 2), None, 0.5) == C2_OUTSIDE


def test_a_column_whose_c2_cannot_be_tested_is_kept_where_its_c3_looks_like_a_body(monkeypatch):
    """c2_disputed with the C2 test's parts given, C2's place untestable and no C2 reported (session 46):
    a column of MIN_REPORTED_C2_UNTESTED bodies or more is kept where the place it calls C3 fits the plain
    body template about as well as the C2 template (all-family 1330001's parts: contrast -0.20, C3-C5 right);
    refused (C2_OUTSIDE) where the C2 template fits there clearly better (the independent renderer's seed 11
    with C3-C6 labelled C4-C7: 0.20, its "C3" the true C2), where that place cannot be tested either, and
    for a column of two bodies (1320006's "C6-C7" on C5-C6)."""
    from dmx.detect import detector
    from dmx.detect.detector import C2_OUTSIDE, C2_UNTESTED_CONTRAST, MIN_REPORTED_C2_UNTESTED, c2_disputed

    nan = float("nan")
    parts: dict[int, tuple[float, float, float]] = {}
    monkeypatch.setattr(detector, "c2_parts", lambda *a, **k: parts)
    assert MIN_REPORTED_C2_UNTESTED == 3 and C2_UNTESTED_CONTRAST == 0.15

    parts.update({-1: (0.48, 1.45, 0.68), 0: (nan, 1.39, nan), 1: (nan, 1.13, nan)})  # 1330001's C3-C5
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(False, 4), None, 0.5) is None  # C3-C5
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(False, 6), None, 0.5) is None  # C3-C7
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(False, 3), None, 0.5) == C2_OUTSIDE  # C3-C4 only
    parts.update({-1: (0.76, 1.42, 0.56)})  # seed 11's true C2 where a column counted a level low puts C3
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(False, 5), None, 0.5) == C2_OUTSIDE
    parts.update({-1: (nan, 1.42, nan)})
    assert c2_disputed(np.zeros((8, 8)), _c2_test_column(False, 5), None, 0.5) == C2_OUTSIDE


def test_the_c2_test_tells_a_column_from_the_same_column_a_level_off(tmp_path):
    """c2_disputed on the true corners of C3-C6 (independent renderer, seed 11): with their own
    levels it keeps them; labelled a level higher without a C2 (C4-C6 as C3-C5) it says C2 fits one
    level higher; labelled a level lower (C4-C7) the C2 they imply is outside the field and they are
    not confirmed. Labelled a level higher with a C2 (C3-C6 as C2-C5) the test does not weigh C2 above
    that C2 (session 29, _shifts_weighed): the same scores that refuse the column without its C2
    (by 0.08) do not refuse it."""
    from dataclasses import replace

    from dmx.detect.detector import BodyResult, ColumnResult, c2_disputed, c2_scores

    seq, true = _independent_study(tmp_path, 11, size=512, mm_per_px=0.3, facing="right")
    model = load_model(model_file())

    def column(shift: int) -> ColumnResult:
        bodies = [BodyResult(v, None, np.zeros(1), 0.0, "absent") for v in BODIES]
        for k in range(1, 5):
            if 0 <= k + shift < 6:
                bodies[k + shift] = BodyResult(BODIES[k + shift], true[BODIES[k]], np.zeros(1), 1.0, None)
        return ColumnResult(tuple(bodies), 1.0, "right", 0.3, True)

    assert c2_disputed(seq.frames[0], column(0), model, 0.5) is None
    scores = c2_scores(seq.frames[0], column(0), model, 0.5)
    assert scores[0] > max(scores[-1], scores[1])
    # a level lower: the C2 they imply is above the top of this 153-mm field, so nothing confirms them
    assert "too near its edge" in c2_disputed(seq.frames[0], column(1), model, 0.5)
    high = column(-1)
    without_c2 = replace(
        high, bodies=(BodyResult(BODIES[0], None, np.zeros(1), 0.0, "absent"), *high.bodies[1:])
    )
    scores = c2_scores(seq.frames[0], without_c2, model, 0.5)
    assert scores[1] > scores[0] > scores[-1]  # C2 fits best one level above the column's
    assert "one level higher" in c2_disputed(seq.frames[0], without_c2, model, 0.5)
    assert c2_disputed(seq.frames[0], high, model, 0.5) is None


def test_the_c2_test_does_not_weigh_a_c2_the_exposed_fields_edge_cuts(tmp_path):
    """c2_parts / c2_moved on the true corners of C4-C6 at their own levels (independent renderer, seed
    11), the frame's top covered by a flat collimator band down to the middle of C2: the C2 template cannot
    be fitted there, so C2's place is not weighed (NaN, as off the image) and the column is not moved a
    level higher (before: moved with C4-C6 as C3-C5, as on all-family phantom 1270013, session 42, where
    C3-C6 were reported as C2-C5 at confidence 0.8-1.0). Its levels are kept by the place it calls C3, which
    looks like a body (session 46; C2_OUTSIDE before, and still for two bodies). Without the band C2's place
    is weighed and the column kept as it is."""
    from dataclasses import replace

    from dmx.detect.detector import (
        C2_OUTSIDE,
        C2_UNTESTED_CONTRAST,
        BodyResult,
        ColumnResult,
        c2_disputed,
        c2_moved,
        c2_parts,
    )

    seq, true = _independent_study(tmp_path, 11, size=512, mm_per_px=0.3, facing="right")
    model = load_model(model_file())
    bodies = [BodyResult(v, None, np.zeros(1), 0.0, "absent") for v in BODIES]
    for k in range(2, 5):
        bodies[k] = BodyResult(BODIES[k], true[BODIES[k]], np.zeros(1), 1.0, None)
    column = ColumnResult(tuple(bodies), 1.0, "right", 0.3, True)
    image = seq.frames[0].astype(np.float32)
    assert np.isfinite(c2_parts(image, column, model, 0.5)[0][0])
    assert c2_disputed(image, column, model, 0.5) is None
    assert c2_moved(image, column, model) is None

    c2 = true[BODIES[0]]
    band = int(round(0.5 * (c2[:, 1].min() + c2[:, 1].max())))  # down to the middle of C2
    cut = image.copy()
    cut[:band] = float(image.min())
    dens, _, plain = c2_parts(cut, column, model, 0.5)[0]
    assert np.isnan(dens) and np.isnan(plain)
    assert c2_moved(cut, column, model) is None
    # its C3 place, below the band, fits the plain body template as a C3 does: kept at its own levels
    # (session 46); of two bodies, C4-C5, nothing confirms them
    dens, _, plain = c2_parts(cut, column, model, 0.5)[-1]
    assert dens - plain < C2_UNTESTED_CONTRAST
    assert c2_disputed(cut, column, model, 0.5) is None
    two = ColumnResult(
        tuple(replace(b, corners_px=None) if k == 4 else b for k, b in enumerate(bodies)),
        1.0,
        "right",
        0.3,
        True,
    )
    assert c2_disputed(cut, two, model, 0.5) == C2_OUTSIDE


def test_on_a_wide_field_the_network_also_looks_at_windows_around_the_neck(tmp_path):
    """A 1024-px study of the independent renderer at 0.327 mm (a 335-mm field with skull, shoulders
    and chest; settings of development seed 101): on the whole frame the network's C3 region lies on
    the skull base (its levels above C4 are off); on the windows of bodies_in_windows (160 mm, the
    size it was trained on) C3-C6 lie on their own vertebrae and no region on another. (That was the network
    shipped until session 59; the one shipped since puts C3 right on the whole frame too.)"""
    from dmx.detect.heatmap import _window_starts, load_net

    assert _window_starts(1024, 489) == [0, 178, 357, 535]  # at most half a window apart, the last flush
    assert _window_starts(400, 489) == [0]
    seq, true = _independent_study(
        tmp_path, 101, size=1024, mm_per_px=0.327, facing="left", photometric="MONOCHROME2"
    )
    image = seq.frames[0].astype(np.float32)
    net = load_net(model_file("heatmap.onnx"))

    def off_mm(found, k: int) -> float:
        if found.region_prob[k] <= 0:
            return float("inf")
        return (
            float(np.hypot(*(np.nanmean(found.corners_px[k], axis=0) - true[BODIES[k]].mean(axis=0)))) * 0.327
        )

    whole = net.bodies(image, 0.327)
    assert off_mm(whole, 1) < 6.0  # until session 59: "C3" on the skull base
    windows = net.bodies_in_windows(image, 0.327)
    assert windows.origin != (0, 0)
    offs = [off_mm(windows, k) for k in range(6)]
    assert all(d < 6.0 for d in offs[1:5]), offs  # C3-C6 each on its own vertebra
    assert all(d < 6.0 or d == float("inf") for d in offs), offs  # and no region on another level
    centre = true[BODIES[3]].mean(axis=0)  # level_at reads the window's labels at image coordinates
    assert windows.level_at(centre) == 3


def test_a_network_outline_below_its_confidence_is_scored_by_the_template_detector(tmp_path):
    """Under the shoulders the network's C7 region covers only the part in view, so its C7 outline
    (right within 3 px) got network confidence 0 (settings of development seed 100; the network shipped
    until session 59). Refined and scored by the template detector's edge search and confidence model, it
    is reported. The network shipped since then outlines that C7 at full confidence; its predecessor's 0 is
    played on the same outline."""
    from dmx.detect.detector import ColumnView, run_heatmap, template_confirmed
    from dmx.detect.heatmap import load_net

    seq, true = _independent_study(
        tmp_path, 100, size=1024, mm_per_px=0.331, facing="left", photometric="MONOCHROME1", mandible_low=True
    )
    model = load_model(model_file())
    network = run_heatmap(seq.frames[0], model, load_net(model_file("heatmap.onnx")), mm_per_px=0.331)
    c7 = network.bodies[5]
    assert c7.corners_px is not None
    assert float(np.hypot(*(c7.corners_px - true[BODIES[5]]).T).max()) < 3.5
    c7 = replace(c7, confidence=0.0)  # as the network shipped until session 59 scored it
    scored = template_confirmed(ColumnView(seq.frames[0], network, model), c7)
    assert scored.confidence >= 0.7 and float(np.hypot(*(scored.corners_px - true[BODIES[5]]).T).max()) < 3.5
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert BODIES[5] in det.landmarks.corners_px, det.missing
    for v, c in det.landmarks.corners_px.items():
        _assert_on_its_body(det, v, c, true[v])


def test_a_c2_without_shoulders_is_found_from_its_walls(tmp_path):
    """The independent renderer's C2 has no shoulders beside the dens base (its posterior wall runs on
    into the dens): the shoulder search's C2 is left out there (settings of development seed 110).
    Found from its walls above the reported C3, its inferior corners are within 2.5 px of the truth
    and its posterior wall's direction (what ARA reads of its superior corners) within 2 deg; a warning
    says how it was found."""
    from dmx.detect import C2_WALLS
    from dmx.detect.detector import run

    seq, true = _independent_study(tmp_path, 110, size=512, mm_per_px=0.293, facing="left")
    model = load_model(model_file())
    shoulders = run(seq.frames[0], model, mm_per_px=0.293).bodies[0]
    assert shoulders.corners_px is None or shoulders.confidence < 0.5
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert C2_WALLS in det.warnings
    c2 = det.landmarks.corners_px[Vertebra.C2]
    err = np.hypot(*(c2 - true[Vertebra.C2]).T)
    assert err[2:].max() < 2.5, err
    wall = [np.degrees(np.arctan2(*(q[1] - q[2]))) for q in (c2, true[Vertebra.C2])]
    assert abs(wall[0] - wall[1]) < 2.0, wall
    # the detector gives it C3's confidence; reported, C2's chance is its level's rate (dmx.detect.calibrate)
    own = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px, calibrated=False)
    assert own.landmarks.confidence[Vertebra.C2] == own.landmarks.confidence[Vertebra.C3]
    assert det.landmarks.confidence[Vertebra.C2] < 0.8


def test_no_c2_is_made_from_walls_that_are_not_there(tmp_path):
    """The same study with the C2 body flattened to its surroundings' level (to 1 px above C3): no
    wall, no C2 (the search from C3 finds no outline), and C3-C6 are reported as before."""
    from dmx.detect.detector import ColumnView, c2_from_walls, run_combined
    from dmx.detect.heatmap import load_net

    seq, true = _independent_study(tmp_path, 110, size=512, mm_per_px=0.293, facing="left")
    img = seq.frames[0].astype(np.float32).copy()
    c2 = true[Vertebra.C2]
    x0, y0 = np.floor(c2.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(c2.max(axis=0)).astype(int) + 3
    img[y0:y1, x0:x1] = float(np.median(img[y0:y1, x0:x1]))
    model = load_model(model_file())
    comb = run_combined(img, model, load_net(model_file("heatmap.onnx")), mm_per_px=0.293)
    c3, source, reported = comb.bodies[1]
    assert reported and not comb.c2_walls
    column = comb.template if source == "template" else comb.network
    assert c2_from_walls(ColumnView(img, column, model), c3) is None
    det = detect_landmarks(img, mm_per_px=seq.mm_per_px)
    assert Vertebra.C2 not in det.landmarks.corners_px and Vertebra.C2 in det.missing
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px), det.missing


def test_c7_under_the_shoulders_is_found_next_to_c6(tmp_path, monkeypatch):
    """A 1024-px study of the independent renderer at 0.327 mm (settings of development seed 101):
    neither detector's column reaches C7 (the template detector's chain runs elsewhere, the network
    shipped until session 59 had no region for it); searched where the chain prior puts it below the
    reported C6 and scored by the template detector's confidence model, it is reported within 3 px, with
    a warning saying so. The network shipped since then outlines C7 itself (checked here); the earlier
    one's missing C7 is played by taking that outline away."""
    import dmx.detect.detector as detector_mod
    from dmx.detect import NEIGHBOUR_ADDED
    from dmx.detect.detector import run_combined, run_heatmap
    from dmx.detect.heatmap import load_net

    seq, true = _independent_study(
        tmp_path, 101, size=1024, mm_per_px=0.327, facing="left", photometric="MONOCHROME2"
    )
    model = load_model(model_file())
    net = load_net(model_file("heatmap.onnx"))
    comb = run_combined(seq.frames[0], model, net, mm_per_px=0.327)
    c7, source, reported = comb.bodies[5]
    assert reported and source == "network" and np.hypot(*(c7.corners_px - true[BODIES[5]]).T).max() < 3.0

    def without_c7(*args, **kw):
        column = run_heatmap(*args, **kw)
        gone = replace(column.bodies[5], corners_px=None, confidence=0.0, problem="not found")
        return replace(column, bodies=(*column.bodies[:5], gone))

    monkeypatch.setattr(detector_mod, "run_heatmap", without_c7)
    comb = run_combined(seq.frames[0], model, net, mm_per_px=0.327)
    c7, source, reported = comb.bodies[5]
    assert reported and source == "neighbour" and comb.neighbours == (BODIES[5],)
    for column in (comb.template, comb.network):  # neither detector's own C7
        assert column is None or column.bodies[5].corners_px is None or column.bodies[5].confidence < 0.7
    assert c7.confidence >= 0.7
    assert float(np.hypot(*(c7.corners_px - true[BODIES[5]]).T).max()) < 3.0
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    assert NEIGHBOUR_ADDED.format(levels="C7") in det.warnings
    for v, c in det.landmarks.corners_px.items():
        _assert_on_its_body(det, v, c, true[v])


def test_without_calibration_the_body_size_reported_is_that_of_the_bodies_reported(tmp_path):
    """Not given the pixel size, the template detector's chain (along the airway, no body reported)
    settled on 0.19 mm per pixel for a study of 0.331 (settings of development seed 100), and the
    warning gave that figure although every body reported came from the network's column, which
    fits them at 0.35. The warning now gives the size of the column whose bodies are reported."""
    seq, true = _independent_study(
        tmp_path, 100, size=1024, mm_per_px=0.331, facing="left", photometric="MONOCHROME1", mandible_low=True
    )
    det = detect_landmarks(seq.frames[0], mm_per_px=None)
    assert {BODIES[k] for k in range(1, 5)} <= set(det.landmarks.corners_px), det.missing
    (warning,) = [w for w in det.warnings if w.startswith("no calibration")]
    best = float(re.search(r"([0-9.]+) mm per pixel", warning).group(1))
    assert abs(best - 0.331) / 0.331 < 0.1, warning


def test_the_size_searched_again_comes_from_the_networks_outlines_when_nothing_is_reported():
    """bodies_mm_per_px (without calibration, the size of a second search): from the reported bodies;
    with none reported, from the network's outlines at or above its threshold (one outlined body is too
    few to check levels by, but it tells the size); C2 never (its superior corners are no endplate's);
    None when there is nothing to measure."""
    from dmx.detect.detector import HEATMAP_THRESHOLD, BodyResult, ColumnResult, Combined, bodies_mm_per_px
    from dmx.detect.pose import to_image_px

    model = load_model(model_file())

    def body(k: int, mpp: float, confidence: float) -> BodyResult:
        corners = to_image_px(model.mean_shape_mm[k], np.array([300.0, 100.0 + 60 * k]), 0.0, 1 / mpp)
        return BodyResult(BODIES[k], corners, np.zeros(1), confidence, None)

    def combined(reported: dict[int, float], network: dict[int, tuple[float, float]]) -> Combined:
        rows = tuple(
            (body(k, reported[k], 1.0), "template", True)
            if k in reported
            else (BodyResult(v, None, np.zeros(1), 0.0, "absent"), "template", False)
            for k, v in enumerate(BODIES)
        )
        net = tuple(
            body(k, *network[k]) if k in network else BodyResult(v, None, np.zeros(1), 0.0, "absent")
            for k, v in enumerate(BODIES)
        )
        return Combined(rows, None, ColumnResult(net, 1.0, "right", 0.35, False), None, "too few", ())

    assert bodies_mm_per_px(combined({2: 0.25, 3: 0.27}, {4: (0.4, 1.0)}), model) == pytest.approx(0.26)
    assert bodies_mm_per_px(combined({}, {3: (0.29, 0.94)}), model) == pytest.approx(0.29)
    assert bodies_mm_per_px(combined({}, {3: (0.29, HEATMAP_THRESHOLD - 0.01)}), model) is None
    assert bodies_mm_per_px(combined({}, {0: (0.29, 1.0)}), model) is None


class _LouderAt:
    """A network whose evidence (:meth:`dmx.detect.heatmap.Bodies.score`) at one pixel size is raised above
    every other size's, its outlines as they are: plays a network whose regions prefer a size where no outline
    passes."""

    def __init__(self, net, size: float, score: float) -> None:
        self.net, self.size, self.loud = net, size, score

    def __getattr__(self, name):
        return getattr(self.net, name)

    def bodies_in_windows(self, image, mm_per_px):
        found = self.net.bodies_in_windows(image, mm_per_px)
        return _Scored(found, self.loud) if mm_per_px == self.size else found


class _Scored:
    """Bodies found (:class:`dmx.detect.heatmap.Bodies`) as they are, their evidence ``score`` given."""

    def __init__(self, found, score: float) -> None:
        self.found, self.given = found, score

    def __getattr__(self, name):
        return getattr(self.found, name)

    def score(self) -> float:
        return self.given


def test_without_calibration_the_network_size_that_outlines_bodies_wins(tmp_path):
    """Independent renderer, development seed 922 of generator 2031 (512 px, 0.336 mm), not given the
    pixel size: the network shipped until session 59 had its region scores prefer 0.5 mm per pixel, where no
    outline passes; until session 16 that size won and nothing was reported. Now the size whose refined
    outlines report the most bodies wins (0.35), and the search again at their size finds C3-C6 on their own
    bodies. The network shipped since session 59 prefers 0.35 by its regions too (checked); the earlier
    network's preference is played by raising its evidence at 0.5 above every other size's."""
    from dmx.detect.detector import HEATMAP_THRESHOLD, reported_bodies, run_heatmap
    from dmx.detect.heatmap import UNCALIBRATED_SWEEP_MM, load_net

    seq, true = _independent_study(
        tmp_path, 922, frames=3, size=512, mm_per_px=0.336, facing="right", photometric="MONOCHROME1"
    )
    image = seq.frames[0].astype(np.float32)
    model = load_model(model_file())
    net = load_net(model_file("heatmap.onnx"))
    scores = {s: net.bodies_in_windows(image, s).score() for s in UNCALIBRATED_SWEEP_MM}
    assert max(scores, key=scores.get) == 0.35
    assert not reported_bodies(run_heatmap(image, model, net, mm_per_px=0.5), HEATMAP_THRESHOLD)
    loud = _LouderAt(net, 0.5, 2.0 * max(scores.values()))
    played = {s: loud.bodies_in_windows(image, s).score() for s in UNCALIBRATED_SWEEP_MM}
    assert max(played, key=played.get) == 0.5
    for n in (net, loud):
        column = run_heatmap(image, model, n, mm_per_px=None)
        assert column.mm_per_px == 0.35 and len(reported_bodies(column, HEATMAP_THRESHOLD)) >= 2
    det = detect_landmarks(seq.frames[0], mm_per_px=None)
    _assert_each_on_its_body(det, true, BODIES[1:5])


def test_a_calibrated_study_with_nothing_at_its_size_is_searched_over_sizes(tmp_path, monkeypatch):
    """Independent renderer, development seed 973 of generator 2032 (768 px, 0.319 mm, heavy shoulders): at
    the calibrated size the network shipped until session 59 put the column one level off (the C2 test said
    so) and nothing was reported. Searched as without calibration, the network at another size of its sweep
    labelled the column right: C3-C5 on their own bodies, the warning says how they were found and that mm
    values use the calibration. (Until session 51 this was seed 910 of generator 2031.) The network shipped
    since session 59 gives C3-C5 at the calibrated size already (its column moved a level by the C2 test;
    checked here); the earlier refusal there is played by leaving out every body found at that size."""
    import dmx.detect.detector as detector_mod
    from dmx.detect import BODY_SIZE_SEARCH, NOTHING_FOUND
    from dmx.detect.detector import C2_NOT_CONFIRMED, reported_count, run_combined
    from dmx.detect.heatmap import load_net

    seq, true = _independent_study(
        tmp_path,
        973,
        frames=3,
        size=768,
        mm_per_px=0.319,
        facing="right",
        photometric="MONOCHROME1",
        heavy_shoulders=True,
    )
    model = load_model(model_file())
    at_size = run_combined(seq.frames[0], model, load_net(model_file("heatmap.onnx")), mm_per_px=0.319)
    assert reported_count(at_size) >= 3
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES[1:4])
    head = BODY_SIZE_SEARCH.format(why=NOTHING_FOUND, mpp=0, ratio=0).split(";")[
        0
    ]  # "nothing was found at ..."
    assert not any(w.startswith(head) for w in det.warnings), det.warnings

    def refused_at_its_size(image, model, net, *, mm_per_px, **kw):
        comb = run_combined(image, model, net, mm_per_px=mm_per_px, **kw)
        if mm_per_px is None or abs(mm_per_px - 0.319) > 1e-6:
            return comb
        why = C2_NOT_CONFIRMED.format(where="one level higher")
        bodies = tuple((b, source, False) for b, source, _ in comb.bodies)
        return replace(comb, bodies=bodies, template=None, added=(), unconfirmed=why, moved=None)

    monkeypatch.setattr(detector_mod, "run_combined", refused_at_its_size)
    det = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(det, true, BODIES[1:4])
    (warning,) = [w for w in det.warnings if w.startswith(head)]
    assert "(0.319 mm per pixel" in warning


def test_a_body_mirrored_in_its_corner_order_faces_the_other_way():
    """_facing_sign is the spec's h of one body: the same under any tilt, opposite when the anterior and
    posterior corners are swapped."""
    from dmx.detect.detector import _facing_sign

    body = np.array([[60.0, 10.0], [10.0, 12.0], [12.0, 52.0], [62.0, 50.0]])  # facing right
    turn = np.radians(35.0)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    assert _facing_sign(body) == _facing_sign(body @ rot.T) == -1
    assert _facing_sign(body[[1, 0, 3, 2]]) == 1


def test_bodies_of_the_two_detectors_facing_opposite_ways_are_never_reported_together():
    """This project's phantom with every appearance family at once (seed 700018 of the family benchmark,
    facing left): the template detector's chain took the patient for facing right and reported C4-C6
    with anterior and posterior swapped, the network's C2-C3 faced left, and the joined column mixed
    them (corner errors of 50 px at confidence 1.0). Session 16 left every body of such a column out
    (FACING_MIXED); session 41 keeps those facing the way what repeats behind the bodies says (the network's
    C2-C3, the minority) and leaves the others out (FACING_AGAINST); the search over sizes then finds C2-C6
    facing the right way, more than the two kept."""
    from dmx.detect import FACING_LEFT_OUT
    from dmx.detect.detector import reported_count, run_combined
    from dmx.detect.heatmap import load_net

    image, truth, mpp = _all_family_phantom_700018()
    model = load_model(model_file())
    comb = run_combined(image, model, load_net(model_file("heatmap.onnx")), mm_per_px=mpp)
    assert reported_count(comb) == 2 and comb.facing_out == (Vertebra.C4, Vertebra.C5, Vertebra.C6)
    for b, _source, reported in comb.bodies:
        if (
            reported
        ):  # the minority kept: on their own bodies, the right way round (C2 by its inferior corners)
            err = np.hypot(*(b.corners_px - truth[b.vertebra]).T)
            assert b.vertebra in BODIES[:2] and (err[2:] if b.vertebra is Vertebra.C2 else err).max() < 3.0
    det = detect_landmarks(image, mm_per_px=(mpp, mpp))
    said = FACING_LEFT_OUT.split("}")[1].split(",")[0]  # " left out: the two detectors' bodies faced ..."
    assert not any(said in w for w in det.warnings), det.warnings  # the search's column, one facing
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px), det.missing
    for v, c in det.landmarks.corners_px.items():
        err = np.hypot(*(c - truth[v]).T)
        assert (err[2:] if v is Vertebra.C2 else err).max() < 3.0, (v, err)


def test_a_column_read_on_a_frame_whose_column_lies_across_it_is_refused_where_a_turn_shows_it_better():
    """All-family phantom 1290005 (held-out set 1290000+ of benchmarks/heldout.py, generator 12929; seen
    since session 42): the acquisition look turned the frame a quarter and the column leans 24 degrees,
    C2 at its lower end. The template detector read it as given from the wrong end (C2-C4 reported on C6-C4
    at confidence 1.0, 71-468 px off). The learned network sees 7 times more of a column on the frame turned
    a quarter (dmx.detect._turned_column): the column found as given is refused, and no body is reported at
    a level it is not (on the frame turned a quarter, C4-C7 at their own levels). The network shipped since
    session 59, trained on crops turned any way, sees the column about as clearly as given as turned (3.9
    against 4.1): there the column found as given is refused as leaning half-way across the frame with its
    levels unconfirmed (dmx.detect._leaning_unconfirmed); either refusal, the same right column. The
    evidence rule itself is checked on drawn evidence at the end."""
    from dmx.detect import (
        LEANING_UNCONFIRMED,
        TURNED_COLUMN,
        VIEW_WHY_LEANING,
        VIEW_WHY_TURNED,
        VIEWS,
        _turned_column,
    )
    from dmx.phantom import draw_appearance
    from dmx.training.fit import training_specs

    kw = training_specs(6, seed=12929, first_seed=1290000)[5]
    assert kw["seed"] == 1290005
    ph = make_phantom(**dict(kw, appearance=draw_appearance("all", seed=kw["seed"], max_size_px=768)))
    ref = kw["reference_frame"]
    det = detect_landmarks(_display(ph, ref), mm_per_px=tuple(ph.truth["mm_per_px"]), frame=ref)
    truth = ph.landmarks.corners_px
    assert all(err < 3.0 for err in _errors(det, truth).values()), _errors(det, truth)
    # the column found as given refused as lying across the frame; since session 46 C4-C6 (and C7) are found
    # on the frame turned a quarter, their C2 place beyond that view's edge (dmx.detect.LEVELS_UNTESTED)
    assert VIEW_WHY_TURNED in det.warnings[0] or VIEW_WHY_LEANING in det.warnings[0], det.warnings
    assert set(BODIES[2:5]) <= set(_errors(det, truth)), _errors(det, truth)
    # as a cine's other frames are searched (the frame as given only, no view): refused, nothing reported
    given_only = detect_landmarks(
        _display(ph, ref), mm_per_px=tuple(ph.truth["mm_per_px"]), frame=ref, views=False
    )
    assert not given_only.landmarks.corners_px, _errors(given_only, truth)
    refusals = (TURNED_COLUMN, LEANING_UNCONFIRMED)
    assert all(any(r in why for r in refusals) for why in given_only.missing.values()), given_only.missing
    # the rule: the network's evidence as given (-1) against the views turned a quarter, bone bright
    column = Detection(Landmarks(frame=0, corners_px={v: truth[v] for v in BODIES[:3]}), {}, ())
    turned = [k for k, view in enumerate(VIEWS) if view.turns and not view.inverted]
    given = {-1: 0.46, **{k: 0.0 for k in range(len(VIEWS))}}
    assert _turned_column(column, lambda k: {**given, turned[0]: 3.29}[k]) is not None
    assert _turned_column(column, lambda k: {**given, turned[0]: 1.3}[k]) is None
    assert _turned_column(column, lambda k: {**given, 0: 9.0}[k]) is None  # inverted, not turned
    one = Detection(Landmarks(frame=0, corners_px={BODIES[0]: truth[BODIES[0]]}), {}, ())
    assert _turned_column(one, lambda k: {**given, turned[0]: 3.29}[k]) is None


def test_a_network_column_whose_c2_the_top_edge_hides_is_reported_at_its_own_levels_with_a_warning():
    """All-family phantom 1330001 (set 1330000+ of benchmarks/heldout.py, generator 13333; development
    since session 45): 0.15 mm pixels, C2's dens at the top of the 768-px frame. The learned network
    outlines C3-C6 at their right levels but the C2 template cannot be fitted where they put C2; before
    session 46 nothing was reported ("where the learned network's levels put C2 is outside ..."). The place
    the column calls C3 fits the plain body template as a C3 does: C3-C6 are reported within 3 px, and the
    warning says their levels were counted by the network alone, untested on C2."""
    from dmx.detect import LEVELS_UNTESTED
    from dmx.phantom import draw_appearance
    from dmx.training.fit import training_specs

    kw = training_specs(2, seed=13333, first_seed=1330000)[1]
    assert kw["seed"] == 1330001
    ph = make_phantom(**dict(kw, appearance=draw_appearance("all", seed=kw["seed"], max_size_px=768)))
    ref = kw["reference_frame"]
    det = detect_landmarks(_display(ph, ref), mm_per_px=tuple(ph.truth["mm_per_px"]), frame=ref)
    errors = _errors(det, ph.landmarks.corners_px)
    assert set(BODIES[1:5]) <= set(errors), (errors, det.missing)
    assert all(e < 3.0 for e in errors.values()), errors
    assert any(LEVELS_UNTESTED in w for w in det.warnings), det.warnings


def _all_family_phantom_700018():
    """The reference frame, true corners and pixel size of the family benchmark's phantom 700018 (every
    appearance family at once, facing left)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "detection.py"
    spec = importlib.util.spec_from_file_location("detection_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (kw,) = [k for k in bench.family_specs("all", 20, max_size_px=768) if k["seed"] == 700018]
    return bench.reference_frame(kw)


def test_the_facing_of_a_mixed_column_is_read_from_what_repeats_behind_its_bodies_not_from_a_count():
    """Where the two detectors' bodies face opposite ways, which of them face right is read from the image
    (:func:`dmx.detect.detector.facing_by_repeat`): the true corners with any of them, one or three of four,
    turned the other way (anterior and posterior swapped) give the true facing; an image with no column
    gives none."""
    from dmx.detect.detector import _facing_sign, facing_by_repeat

    image, truth, _mpp = _all_family_phantom_700018()
    true_sign = _facing_sign(truth[Vertebra.C4])
    swap = [1, 0, 3, 2]
    for turned in ((Vertebra.C4,), (Vertebra.C3, Vertebra.C4, Vertebra.C5)):
        corners = {v: (c[swap] if v in turned else c) for v, c in truth.items()}
        assert facing_by_repeat(image, corners) == true_sign, turned
    flat = np.random.default_rng(0).normal(100.0, 5.0, image.shape)
    assert facing_by_repeat(flat, {v: c for v, c in truth.items()}) is None


def test_c7_under_heavy_shoulders_is_found_on_the_mean_of_the_cine(tmp_path):
    """Development study 956 of generator 2032 (independent renderer: 512 px, 0.293 mm, heavy shoulders)
    as a 30-frame cine. On frame 0 alone C2-C6 are found and C7 is not (its outline lies within one
    frame's noise under the shoulders); offered the cine as dmx analyze offers it
    (:func:`dmx.pipeline.detect_on_sequence`, :func:`dmx.pipeline.cine_mean`), C7 is found on the mean
    of 16 frames moved back with it, on its own body, with the warning saying so (issue #12, session 17)."""
    from dmx.detect import MEAN_ADDED
    from dmx.pipeline import detect_on_sequence

    opts = dict(size=512, mm_per_px=0.293, facing="right", photometric="MONOCHROME2", heavy_shoulders=True)
    seq, true = _independent_study(tmp_path, 956, frames=30, **opts)
    alone = detect_landmarks(seq.frames[0], mm_per_px=seq.mm_per_px)
    _assert_each_on_its_body(alone, true, BODIES[:5])
    assert Vertebra.C7 not in alone.landmarks.corners_px
    det = detect_on_sequence(seq, study_path=tmp_path / "study")
    _assert_each_on_its_body(det, true, BODIES)
    for v in BODIES[:5]:  # the bodies found on frame 0 are those of frame 0
        assert np.array_equal(det.landmarks.corners_px[v], alone.landmarks.corners_px[v])
    head, tail = MEAN_ADDED.format(level="C7", frames="\n").split("\n")
    said = [w for w in det.warnings if w.startswith(head) and w.endswith(tail)]
    assert len(said) == 1, det.warnings
    used = re.fullmatch(r"(\d+) frames \(0-15\)", said[0][len(head) : -len(tail)])
    assert used and 8 <= int(used[1]) <= 16, said  # frames where the tracker followed it


@pytest.mark.parametrize(
    ("inverted", "turns"),
    [(True, 0), (False, 1), (True, 3)],
    ids=["bone-dark", "turned-left", "dark-turned-right"],
)
def test_a_frame_bone_dark_or_turned_is_searched_in_the_other_views(phantom, inverted, turns):
    """Fluoroscopy shows bone dark, and a landscape frame may be stored turned: where the frame as given
    reports fewer than two bodies, the other views are searched and the corners mapped back."""
    img = _display(phantom, 3)
    h, w = img.shape
    if inverted:
        img = 255.0 - img
    img = np.ascontiguousarray(np.rot90(img, turns))
    truth = {}
    for v, c in phantom.landmarks.corners_px.items():
        x, y = c[:, 0], c[:, 1]
        # np.rot90(a, 1)[i, j] = a[j, w - 1 - i]; np.rot90(a, 3)[i, j] = a[h - 1 - j, i]
        truth[v] = {0: c, 1: np.stack([y, w - 1 - x], 1), 3: np.stack([h - 1 - y, x], 1)}[turns]
    det = detect_landmarks(img, mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    errs = _errors(det, truth)
    assert len(errs) >= 5, det.missing
    assert max(errs.values()) <= 2.0, errs
    (view,) = [w for w in det.warnings if w.startswith("the bodies were found on the frame")]
    assert ("inverted" in view) == inverted and ("turned" in view) == bool(turns), view


def test_a_view_turned_an_eighth_maps_its_points_back():
    """The views turned an eighth (a leaning column) enlarge the canvas to hold the whole frame; a point
    seen in the view maps back to where it was on the frame as given, and forward again."""
    from dmx.detect import LEANING_VIEWS

    img = np.zeros((60, 90), np.float32)
    img[20, 70] = 100.0  # one bright pixel: where the view puts it must map back to (70, 20)
    for view in LEANING_VIEWS:
        seen = view.image(img)
        assert min(seen.shape) > max(img.shape)  # the frame's corners are not cut off
        peak = seen if not view.inverted else seen.max() - seen
        y, x = np.unravel_index(np.argmax(peak), peak.shape)
        back = view.back(np.array([[x, y]], float), img.shape)[0]
        assert np.hypot(*(back - (70, 20))) <= 1.0, (view.words, back)
        there = view.forward(np.array([[70.0, 20.0]]), img.shape)[0]  # and from the frame into the view
        assert np.hypot(*(there - (x, y))) <= 1.0, (view.words, there)
        assert view.spacing((0.2, 0.3)) == (0.25, 0.25)


def test_a_column_leaning_half_way_across_the_frame_is_found_turned_an_eighth(monkeypatch):
    """A flexed neck or a tilted detector can lean the column 40-60 degrees: the detectors looked for upright
    columns (the network shipped until session 59 was trained within 20 degrees). On development phantom
    800000 of generator 7171 (acquisition look: bone dark, the column leaning 50 degrees, C2 behind a blade)
    no view reported a body with that network ("the learned network reports fewer than 2 bodies to check its
    levels by"); turned an eighth clockwise and inverted, C4-C7 are found and mapped back within 2 px
    (0.4-0.8 px measured). The network shipped since session 59 (trained on crops turned any way) reads the
    leaning column on the view inverted itself: C3-C7 within 1 px (checked). The earlier network's failure
    on every view but those turned an eighth is played by finding nothing on them."""
    import dmx.detect as detect_mod

    ph, det = _acquisition_phantom(7171, 800000, 0)
    _found_within_2px_on_view(det, ph.landmarks.corners_px, BODIES[1:6], "inverted (bone dark in it)")
    real = detect_mod._detect_once
    ref = det.landmarks.frame
    shape = _display(ph, ref).shape

    def nothing_unless_turned_an_eighth(img, **kw):
        if img.shape in (shape, shape[::-1]):  # the frame as given, inverted or turned a quarter
            return Detection(Landmarks(frame=kw["frame"], corners_px={}), {}, ())
        return real(img, **kw)

    monkeypatch.setattr(detect_mod, "_detect_once", nothing_unless_turned_an_eighth)
    det = detect_landmarks(_display(ph, ref), mm_per_px=tuple(ph.truth["mm_per_px"]), frame=ref)
    _found_within_2px_on_view(
        det, ph.landmarks.corners_px, BODIES[2:6], "inverted and turned an eighth clockwise"
    )


def _model_with_network(tmp_path, network: str):
    """A model path (``detector.npz``) with ``models/candidates/<network>`` beside it as the network: a test
    plays a network shipped before with the detector's code of today."""
    import shutil
    from pathlib import Path

    models = Path(__file__).resolve().parents[1] / "models"
    shutil.copyfile(models / "detector.npz", tmp_path / "detector.npz")
    shutil.copyfile(models / "candidates" / network, tmp_path / "heatmap.onnx")
    return tmp_path / "detector.npz"


def test_a_column_the_network_faces_otherwise_at_one_of_its_sizes_is_not_kept(monkeypatch, tmp_path):
    """All-family phantom 1380013 (generator 13838; the development set): on the view inverted, the search
    over sizes finds C3-C7 at their own places but facing the wrong way (anterior and posterior swapped,
    77-86 px off). With the network shipped in session 59 (``models/candidates/heatmap-s58.onnx``) and its
    facing taken from the image beside the column (as until session 59: played by
    :data:`dmx.detect.heatmap.FACING_MAPS_MIN` set beyond reach), the network at the calibrated size faced
    them the same wrong way, so it confirmed them there; over its sizes it faced them the right way. The view
    was kept on the confirmation at the calibrated size alone: C3-C7 reported facing the wrong way; now it is
    not kept (nothing reported). With the facing from the network's corner maps (session 59) the network faces
    them right at both sizes, and C3-C6 are found right; so does the network shipped since session 60, which
    reads them the other way round at both sizes."""
    import dmx.detect.heatmap as heatmap_mod
    from dmx.detect import READ_CONFIRMED, READ_OTHERWISE, VIEWS, _detect_once, _network_reads

    ph, ref, img, mpp = _all_family(13838, 1380000, 13)
    truth = ph.landmarks.corners_px
    view = VIEWS[0]
    assert not view.turns and view.inverted
    seen = view.image(img)
    s58 = _model_with_network(tmp_path, "heatmap-s58.onnx")
    monkeypatch.setattr(heatmap_mod, "FACING_MAPS_MIN", np.inf)  # the image beside the column decides
    found = _detect_once(
        seen, mm_per_px=view.spacing(mpp), frame=ref, model_path=s58, method=None, mean_of=None
    )
    assert any(BODY_SIZE_MARK in w for w in found.warnings), found.warnings  # found by the search over sizes
    assert set(BODIES[1:6]) <= set(found.landmarks.corners_px), found.missing
    for v, c in found.landmarks.corners_px.items():  # on their own bodies, facing the wrong way
        c = view.back(c, img.shape)
        assert np.hypot(*(c.mean(axis=0) - truth[v].mean(axis=0))) < 5.0, v
        assert np.hypot(*(c - truth[v]).T).max() > 50.0, v
    assert _network_reads(seen, found, view.spacing(mpp), s58) == READ_CONFIRMED
    assert _network_reads(seen, found, None, s58) == READ_OTHERWISE
    det = detect_landmarks(img, mm_per_px=mpp, frame=ref, model_path=s58)
    assert all(e < 3.0 for e in _errors(det, truth).values()), _errors(det, truth)

    monkeypatch.undo()  # the facing from the corner maps: right at both sizes
    for path in (s58, None):  # session 58's network, and the one shipped now
        assert _network_reads(seen, found, view.spacing(mpp), path) == READ_OTHERWISE
        assert _network_reads(seen, found, None, path) == READ_OTHERWISE
        det = detect_landmarks(img, mm_per_px=mpp, frame=ref, model_path=path)
        errs = _errors(det, truth)
        assert set(BODIES[1:5]) <= set(errs) and max(errs[v] for v in BODIES[1:5]) <= 2.0, (path, errs)
        for v, c in det.landmarks.corners_px.items():  # every body reported on its own
            assert np.hypot(*(c.mean(axis=0) - truth[v].mean(axis=0))) < 5.0, v


def test_the_facing_comes_from_the_networks_corner_maps_where_they_are_clear(monkeypatch):
    """`dmx.detect.heatmap.decode`: the network shipped since session 59 was trained on crops flipped and
    turned any way, its corner maps following the bones, and they tell which side is anterior clearly (mean
    anterior-against-posterior difference near the bodies 0.06-0.12 on the development sets, the network
    before it at most 0.006). On all-family 1380013 as given the image beside the column voted the wrong way
    (0.025: every body outlined facing backwards); the maps face them right. Where the maps are not clear
    (the network before session 59) the image decides, as before."""
    from pathlib import Path

    import dmx.detect.heatmap as heatmap_mod
    from dmx.detect.heatmap import FACING_MAPS_MIN, decode, load_net, net_input
    from dmx.detect.pose import directions

    ph, ref, img, mpp = _all_family(13838, 1380000, 13)
    truth = ph.landmarks.corners_px
    x, factor = net_input(img.astype(np.float32), mpp)

    def facing_right(found) -> list[bool]:
        """Per body outlined on its own level: whether its anterior side is the truth's."""
        right = []
        for k, v in enumerate(BODIES):
            c = found.corners_px[k]
            if found.region_prob[k] > 0 and np.hypot(*(c.mean(axis=0) - truth[v].mean(axis=0))) < 30.0:
                right.append(float(np.dot(directions(c)[0], directions(truth[v])[0])) > 0)
        return right

    out = load_net(model_file("heatmap.onnx")).heatmaps(x)
    by_maps = decode(out, factor, mpp, image=x)
    assert abs(by_maps.facing_maps) >= FACING_MAPS_MIN and by_maps.facing_vote == by_maps.facing_maps
    assert len(facing_right(by_maps)) >= 4 and all(facing_right(by_maps))
    monkeypatch.setattr(heatmap_mod, "FACING_MAPS_MIN", np.inf)
    by_image = decode(out, factor, mpp, image=x)
    assert len(facing_right(by_image)) >= 4 and not any(facing_right(by_image))
    monkeypatch.undo()
    before = Path(__file__).resolve().parents[1] / "models" / "candidates" / "heatmap-before-s59.onnx"
    old = decode(load_net(before).heatmaps(x), factor, mpp, image=x)
    assert abs(old.facing_maps) < FACING_MAPS_MIN and old.facing_vote != old.facing_maps


def test_a_view_is_kept_where_the_network_confirms_it_at_a_size_and_outlines_it_otherwise_at_none(
    monkeypatch,
):
    """The rule of :func:`dmx.detect._confirmed_at_its_sizes`: the network's reading at the calibrated size,
    and for bodies the search over sizes found over its sizes too; kept where one confirms and none outlines a
    body the other way round."""
    import dmx.detect as detect_mod
    from dmx.detect import READ_CONFIRMED, READ_OTHERWISE, READ_UNCONFIRMED, _confirmed_at_its_sizes

    det = Detection(Landmarks(frame=0, corners_px={}), {}, ())
    for calibrated, over_sizes, sized, kept in (
        (READ_CONFIRMED, READ_UNCONFIRMED, False, True),
        (READ_UNCONFIRMED, READ_CONFIRMED, False, False),  # over sizes only for bodies that search found
        (READ_UNCONFIRMED, READ_CONFIRMED, True, True),
        (READ_CONFIRMED, READ_UNCONFIRMED, True, True),
        (READ_CONFIRMED, READ_OTHERWISE, True, False),
        (READ_OTHERWISE, READ_CONFIRMED, True, False),
        (READ_OTHERWISE, READ_CONFIRMED, False, False),
        (READ_UNCONFIRMED, READ_UNCONFIRMED, True, False),
    ):
        reads = {0.3: calibrated, None: over_sizes}
        monkeypatch.setattr(detect_mod, "_network_reads", lambda image, d, mm, path, r=reads: r[mm])
        assert _confirmed_at_its_sizes(np.zeros((8, 8)), det, 0.3, sized, None) is kept, (
            calibrated,
            over_sizes,
        )


def _all_family(generator: int, first: int, index: int):
    """All-family phantom ``first + index`` of ``generator``, as ``benchmarks/heldout.py`` draws it: the
    phantom, its reference frame's index, that frame in display polarity and the mean pixel size."""
    from dmx.phantom import draw_appearance
    from dmx.training.fit import training_specs

    kw = training_specs(index + 1, seed=generator, first_seed=first)[index]
    kw["appearance"] = draw_appearance("all", seed=kw["seed"], max_size_px=768)
    ph = make_phantom(**kw)
    ref = kw["reference_frame"]
    return ph, ref, _display(ph, ref), float(np.mean(ph.truth["mm_per_px"]))


def _all_family_1420012():
    """All-family phantom 1420012 (generator 14242; held out in session 54, looked at in session 55): bone
    dark, its column lying across the frame, C2 at the right."""
    return _all_family(14242, 1420000, 12)


def _found_within_2px_on_view(det: Detection, truth: dict, levels, words: str) -> None:
    """``det`` reports ``levels`` (and every body it reports) within 2 px of ``truth``, found on the view that
    ``words`` names."""
    errs = _errors(det, truth)
    assert set(levels) <= set(errs), det.missing
    assert max(errs.values()) <= 2.0, errs
    (view,) = [w for w in det.warnings if w.startswith("the bodies were found on the frame")]
    assert words in view, view


def test_a_view_whose_levels_the_networks_segmentation_confirms_is_kept():
    """1420012: on the view inverted and turned a quarter anticlockwise the detector outlines C2-C6 at their
    levels, but the network's own outlines there are one body, its "C7" on C6 (its C2-C4 outlines not found,
    its C5 and C6 regions split C5), so `_network_confirms` refused the view and nothing was reported ("no
    cervical column"). The network's segmentation at the calibrated size puts C2-C5's centres on their own
    levels and C6's on C7's: confirmed by it (`_segmentation_confirms`), C3-C6 are reported within 2 px."""
    ph, ref, img, mpp = _all_family_1420012()
    det = detect_landmarks(img, mm_per_px=mpp, frame=ref)
    _found_within_2px_on_view(
        det, ph.landmarks.corners_px, BODIES[1:5], "inverted and turned a quarter anticlockwise"
    )


def test_the_networks_segmentation_does_not_confirm_levels_reversed_or_one_off():
    """The segmentation's confirmation (`_segmentation_confirms`) of 1420012's true bodies on the view where
    they stand upright: their own levels are confirmed; the same bodies labelled in reverse (C2 on C6, the
    template detector's failure on turned views that `_network_confirms` exists for) or one level off are
    not."""
    from dmx.detect import VIEWS, _net_and_model, _segmentation_confirms

    ph, ref, img, mpp = _all_family_1420012()
    (view,) = [v for v in VIEWS if v.inverted and v.turns == 1]
    seen = view.image(img)
    # the true corners on that view (np.rot90 once: (x, y) -> (y, W - 1 - x))
    w = img.shape[1]
    true = {v: np.stack([c[:, 1], w - 1 - c[:, 0]], axis=1) for v, c in ph.landmarks.corners_px.items()}
    for v, c in true.items():
        np.testing.assert_allclose(view.back(c, img.shape), ph.landmarks.corners_px[v], atol=1e-9)
    levels = [v for v in BODIES[:5] if v in true]
    assert levels == list(BODIES[:5])
    net, _ = _net_and_model(None)
    found = net.bodies_in_windows(seen, mpp)

    def confirms(labels) -> bool:
        marks = Landmarks(
            frame=ref, corners_px={new: true[old] for old, new in zip(levels, labels, strict=True)}
        )
        return _segmentation_confirms(Detection(marks, {}, ()), found)

    assert confirms(levels)
    assert not confirms(levels[::-1])
    assert not confirms(list(BODIES[1:6]))  # each one level lower
    # without a calibrated size it does not confirm (the search over sizes has its own confirmation)
    marks = Landmarks(frame=ref, corners_px={v: true[v] for v in levels})
    assert not _segmentation_confirms(Detection(marks, {}, ()), None)


def test_bodies_darker_than_around_them_are_told_apart(phantom):
    """A vertebral body is brighter than the discs and soft tissue just outside it where bone is shown
    bright: the true bodies pass on the frame, and fail on it inverted."""
    from dmx.detect import _darker_than_around

    img = _display(phantom, 3)
    mpp = tuple(phantom.truth["mm_per_px"])
    true = Detection(Landmarks(frame=3, corners_px=dict(phantom.landmarks.corners_px)), {}, ())
    assert not _darker_than_around(img, true, mpp)
    assert _darker_than_around(255.0 - img, true, mpp)


def test_bodies_found_darker_than_around_them_on_a_bone_dark_frame_are_refused():
    """On a bone-dark frame the frame as given reported three bodies at full confidence, each about 100 px
    from its vertebra (the size search and the network's level move on a dark frame; development phantom
    760013 of generator 5151, its acquisition look inverted): they are darker than what lies around them,
    so they are refused and the inverted view finds the column. With OpenCV 5.1 (its warp and ``cv2.dnn``
    differ from 5.0 in the fifth decimal) the frame as given reports fewer than two bodies, so the view is
    searched for that reason; the refusal itself is checked on the true bodies, dark on this frame."""
    from dmx.detect import DARKER_THAN_AROUND, VIEW_WHY_DARK, VIEW_WHY_FEW, _refused

    ph, det = _acquisition_phantom(5151, 760000, 13, bone_dark=True)
    errs = _errors(det, ph.landmarks.corners_px)
    assert len(errs) >= 4 and set(BODIES[1:5]) <= set(errs), det.missing
    assert max(errs.values()) <= 2.0, errs
    (view,) = [w for w in det.warnings if w.startswith("the bodies were found on the frame")]
    assert "inverted" in view and (VIEW_WHY_DARK in view or VIEW_WHY_FEW in view), view
    true = Detection(ph.landmarks, {}, ())
    frame = _display(ph, ph.landmarks.frame)
    assert _refused(frame, true, tuple(ph.truth["mm_per_px"])) == (VIEW_WHY_DARK, DARKER_THAN_AROUND)
    assert _refused(frame.max() + frame.min() - frame, true, tuple(ph.truth["mm_per_px"])) is None


def test_the_exposed_field_is_the_image_less_flat_bands_along_its_edges(phantom):
    """A collimator blade (a flat band, here with burned-in text on it) is not part of the exposed field,
    nor is a featureless background along an edge (this phantom's, beyond the skin in front of the neck:
    nothing of a body is seen in either)."""
    from dmx.detect import _exposed_field

    img = _display(phantom, 3)
    h, w = img.shape
    top, bottom, left, right = _exposed_field(img)
    assert (top, bottom, left) == (0, h, 0)
    skin = max(float(c[:, 0].max()) for c in phantom.landmarks.corners_px.values()) + 40
    assert skin < right < w  # the flat background in front of the neck, well clear of the bodies
    blade = img.copy()
    blade[h - 60 :, :] = 255.0  # a white blade over the bottom 60 rows
    blade[:25, :] = 0.0  # a black one over the top 25
    blade[h - 40 : h - 30, 10:70] = 0.0  # a burned-in label on the blade (12 % of its rows)
    b_top, b_bottom, b_left, b_right = _exposed_field(blade)
    assert (b_top, b_bottom, b_left) == (25, h - 60, 0)
    assert b_right >= right  # the blades' rows are not that background: its band narrower or gone (the
    # field larger: as without the check there)


def test_a_body_at_the_edge_of_the_exposed_field_is_left_out(phantom):
    """A body a collimator blade crosses has its outline on the blade's edge there: left out with the
    reason; the bodies inside the field are kept as they were."""
    from dmx.detect import CUT_BY_FIELD_EDGE, _cut_by_field_edge

    img = _display(phantom, 3)
    true = dict(phantom.landmarks.corners_px)
    c7 = true[Vertebra.C7]
    edge = int(round(float(c7[:, 1].mean())))  # the blade covers C7's lower half
    img[edge:, :] = 255.0
    conf = dict.fromkeys(true, 0.9)
    det = _cut_by_field_edge(img, Detection(Landmarks(frame=3, corners_px=true, confidence=conf), {}, ()))
    assert set(det.landmarks.corners_px) == set(BODIES[:5])
    assert det.missing == {Vertebra.C7: CUT_BY_FIELD_EDGE}
    assert any(w.startswith("C7 left out: a corner lies at the edge") for w in det.warnings)
    for v in BODIES[:5]:
        assert det.landmarks.corners_px[v] is true[v] and det.landmarks.confidence[v] == 0.9
    # a body whose corners are all inside the field by more than the margin is kept
    inside = dict(true)
    del inside[Vertebra.C7]
    kept = _cut_by_field_edge(img, Detection(Landmarks(frame=3, corners_px=inside), {}, ()))
    assert set(kept.landmarks.corners_px) == set(BODIES[:5]) and not kept.warnings


def test_a_bone_dark_frame_with_a_body_under_a_blade():
    """Held-out phantom 780009 of the acquisition family (bone dark, a blade over C7's lower edge), now a
    development case: the frame as given reported C3-C5 about 120 px off at full confidence (before the
    darker-than-around refusal), and the inverted view then C7 with a corner on the blade's edge 26 px
    from its own (before the field-edge check). Now C2-C6 on their bodies and C7 left out."""
    from dmx.detect import CUT_BY_FIELD_EDGE

    ph, det = _acquisition_phantom(6161, 780000, 9, frames=30)
    assert ph.truth["params"]["seed"] == 780009
    errs = _errors(det, ph.landmarks.corners_px)
    assert set(errs) == set(BODIES[:5]), (errs, det.missing)
    assert max(errs.values()) <= 2.0, errs
    assert det.missing[Vertebra.C7] == CUT_BY_FIELD_EDGE


def test_a_leaning_column_is_kept_only_where_the_network_confirms_it_stood_upright():
    """A column on the frame as given leaning more than 45 degrees (outside the network's training, within
    20 degrees) is kept only where the network confirms its levels on the view turned an eighth that stands
    it upright. Development phantom 800000 of generator 7171 (bone dark; shown bone bright here), its column
    leaning 50 degrees: the true levels are confirmed, the same bodies labelled upside down are not."""
    from dmx.detect import VIEW_WHY_LEANING, _lean_deg, _leaning_unconfirmed

    ph, det = _acquisition_phantom(7171, 800000, 0)
    img = _display(ph, det.landmarks.frame)
    img = img.max() + img.min() - img
    mpp = tuple(ph.truth["mm_per_px"])
    truth = {v: c for v, c in ph.landmarks.corners_px.items() if np.isfinite(c).all()}
    levels = [v for v in BODIES if v in truth]
    upside_down = dict(zip(levels, [truth[v] for v in reversed(levels)], strict=True))
    true, wrong = (Detection(Landmarks(frame=0, corners_px=c), {}, ()) for c in (truth, upside_down))
    assert 45.0 < _lean_deg(true) < 65.0 and len(levels) >= 4
    assert _leaning_unconfirmed(img, true, mpp, None) is None
    assert _leaning_unconfirmed(img, wrong, mpp, None)[0] == VIEW_WHY_LEANING


def test_a_column_read_from_the_wrong_end_leaning_40_degrees_is_refused():
    """Session 56: all-family 1450002 (generator 14545), turned a quarter and flexed, so that its column runs
    from C7 at the top left to C2 at the bottom right, 129 degrees from upright. The network, on the frame
    as given at a searched size, labelled C5, C4, C3 as C2, C3, C4 (read from the wrong end, each outline
    turned half round), their chord leaning 43 degrees: below the 45 degrees from which the leaning check
    asked the network to confirm the levels stood upright, and the C2 template confirmed them (C2 149 px and
    C3-C4 65 px off). From LEANING_CHECK_DEG = 40 it is checked, and refused: the network does not see those
    levels on the view that stands them upright. Nothing within 3 px is lost, nothing beyond 3 px reported."""
    from dmx.detect import LEANING_CHECK_DEG, VIEW_WHY_LEANING, _lean_deg, _leaning_unconfirmed

    ph, ref, img, mpp = _all_family(14545, 1450000, 2)
    truth = ph.landmarks.corners_px
    half_turn = [2, 3, 0, 1]  # superior and inferior, anterior and posterior swapped
    wrong = {
        Vertebra.C2: truth[Vertebra.C5],
        Vertebra.C3: truth[Vertebra.C4],
        Vertebra.C4: truth[Vertebra.C3],
    }
    wrong = Detection(Landmarks(frame=ref, corners_px={v: c[half_turn] for v, c in wrong.items()}), {}, ())
    assert LEANING_CHECK_DEG < _lean_deg(wrong) < 45.0
    assert _leaning_unconfirmed(img, wrong, (mpp, mpp), None)[0] == VIEW_WHY_LEANING
    det = detect_landmarks(img, mm_per_px=mpp, frame=ref)
    errs = _errors(det, truth)
    assert all(e <= 3.0 for e in errs.values()), errs


def test_a_column_leaning_back_across_a_turned_frame_is_not_reported_upside_down():
    """Phantom 1040018 of generator 10404 (first held out in session 25; acquisition look, the frame turned
    91 degrees, the column leaning back 126 degrees, 407 px): the frame as given reported C2-C5 upside down
    at confidence 1 (C2 on C6, 202 px off), their chord leaning 52 degrees, under the 65 at which a column
    lies across. The network does not confirm them stood upright, so they are refused and the views
    searched: turned a quarter clockwise, C3-C7 are found and mapped back within 2.5 px (C3, added by the
    network, 1.8 px before session 48's outline with the mean shape, 2.2 since; the others 0.3-0.4)."""
    from dmx.detect import VIEW_WHY_LEANING

    ph, det = _acquisition_phantom(10404, 1040000, 18)
    errs = _errors(det, ph.landmarks.corners_px)
    assert set(BODIES[1:5]) <= set(errs), det.missing
    assert max(errs.values()) <= 2.5, errs
    (view,) = [w for w in det.warnings if w.startswith("the bodies were found on the frame")]
    assert "turned a quarter" in view and VIEW_WHY_LEANING in view, view


def test_a_column_lying_across_the_frame_is_refused_and_searched_turned(phantom, monkeypatch):
    """A frame turned a quarter where the frame as given reports a column (labelled upside down, C2 on C6,
    as a 1584 x 1873 acquisition phantom's did at full confidence): it lies across the frame, so it is
    refused and the turned views searched, which find the column upright."""
    import dmx.detect as detect_mod
    from dmx.detect import VIEW_WHY_ACROSS, _lies_across

    img = np.ascontiguousarray(np.rot90(_display(phantom, 3), 1))
    w = _display(phantom, 3).shape[1]
    # np.rot90(a, 1)[i, j] = a[j, w - 1 - i]
    truth = {v: np.stack([c[:, 1], w - 1 - c[:, 0]], 1) for v, c in phantom.landmarks.corners_px.items()}
    upright = Detection(Landmarks(frame=3, corners_px=dict(phantom.landmarks.corners_px)), {}, ())
    assert not _lies_across(upright)
    reversed_labels = dict(zip(BODIES, [truth[v] for v in reversed(BODIES)], strict=True))
    wrong = Detection(
        Landmarks(frame=3, corners_px=reversed_labels, confidence=dict.fromkeys(BODIES, 1.0)), {}, ()
    )
    assert _lies_across(wrong)
    real = detect_mod._detect_once
    calls = []

    def first_pass_wrong(image, **kw):
        calls.append(image.shape)
        return wrong if len(calls) == 1 else real(image, **kw)

    monkeypatch.setattr(detect_mod, "_detect_once", first_pass_wrong)
    det = detect_landmarks(img, mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    errs = _errors(det, truth)
    assert len(errs) >= 5 and max(errs.values()) <= 2.0, (errs, det.missing)
    (view,) = [x for x in det.warnings if x.startswith("the bodies were found on the frame")]
    assert "turned" in view and VIEW_WHY_ACROSS in view, view


def test_where_nothing_is_found_the_views_passed_over_for_their_evidence_are_searched(phantom, monkeypatch):
    """Session 56: all-family 1420018 (generator 14242) lies across its frame, and the learned network saw
    1.19 times more of a column on the view turned a quarter clockwise than upright (TURNED_EVIDENCE asks
    1.25), so that view was not searched and nothing was reported, although C2-C5 are found and confirmed
    there. Where every view searched reports fewer than two bodies, the views passed over for their evidence
    are searched too. Here the network's evidence is made equal on every view, so the turned views fail the
    gate; the column turned a quarter is still found."""
    import dmx.detect as detect_mod

    img = np.ascontiguousarray(np.rot90(_display(phantom, 3), 1))
    w = _display(phantom, 3).shape[1]
    truth = {v: np.stack([c[:, 1], w - 1 - c[:, 0]], 1) for v, c in phantom.landmarks.corners_px.items()}
    monkeypatch.setattr(detect_mod, "_column_evidence", lambda *a, **k: 1.0)
    det = detect_landmarks(img, mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    errs = _errors(det, truth)
    assert len(errs) >= 5 and max(errs.values()) <= 2.0, (errs, det.missing)
    (view,) = [x for x in det.warnings if x.startswith("the bodies were found on the frame")]
    assert "turned a quarter" in view, view


def test_a_column_read_upside_down_on_a_quarter_view_is_refused_where_the_opposite_view_reads_it_reversed(
    phantom, monkeypatch
):
    """Session 58: a network trained on crops turned 30 degrees at most (models/candidates/heatmap-s57.onnx)
    read this phantom turned a quarter anticlockwise, on the view turned a quarter anticlockwise again (the
    column upside down), as upright: C2 on C7, C2-C5 45-307 px off. The view turned the other way shows the
    same column from its other end; where the network there labels the column's bodies in reverse order,
    the column is refused and the search goes on (here to that view, which finds it right)."""
    import dmx.detect as detect_mod
    from dmx.detect import VIEWS, _lies_across, _opposite_reads_reversed

    frame = _display(phantom, 3)
    h, w = frame.shape
    img = np.ascontiguousarray(np.rot90(frame, 1))
    spacing = tuple(phantom.truth["mm_per_px"])
    anticlockwise = VIEWS[1]
    assert anticlockwise.turns == 1 and not anticlockwise.inverted
    # on the view turned anticlockwise (the frame turned a half turn) the column stands upside down
    upside_down = {
        v: np.stack([w - 1 - c[:, 0], h - 1 - c[:, 1]], 1) for v, c in phantom.landmarks.corners_px.items()
    }
    read_upright = dict(zip(BODIES, [upside_down[v] for v in reversed(BODIES)], strict=True))
    wrong = Detection(
        Landmarks(frame=3, corners_px=read_upright, confidence=dict.fromkeys(BODIES, 1.0)), {}, ()
    )
    right = Detection(
        Landmarks(frame=3, corners_px=upside_down, confidence=dict.fromkeys(BODIES, 1.0)), {}, ()
    )
    assert not _lies_across(wrong)  # upright in its view: only the opposite view tells
    assert _opposite_reads_reversed(img, anticlockwise, wrong, anticlockwise.spacing(spacing), None)
    assert not _opposite_reads_reversed(img, anticlockwise, right, anticlockwise.spacing(spacing), None)

    real = detect_mod._detect_once

    def upside_down_read_upright(image, **kw):
        # the view turned anticlockwise: the frame turned a half turn
        if image.shape == (h, w) and np.array_equal(image, np.rot90(frame, 2)):
            return wrong
        return real(image, **kw)

    monkeypatch.setattr(detect_mod, "_detect_once", upside_down_read_upright)
    # that network confirmed the levels it read on the view itself (the shipped one does not)
    monkeypatch.setattr(detect_mod, "_network_confirms", lambda *a, **k: True)
    det = detect_landmarks(img, mm_per_px=spacing, frame=3)
    truth = {v: np.stack([c[:, 1], w - 1 - c[:, 0]], 1) for v, c in phantom.landmarks.corners_px.items()}
    errs = _errors(det, truth)
    assert len(errs) >= 5 and max(errs.values()) <= 2.0, (errs, det.missing)
    (view,) = [x for x in det.warnings if x.startswith("the bodies were found on the frame")]
    assert "turned a quarter clockwise" in view, view


def test_a_column_the_opposite_view_reads_reversed_but_less_fully_is_kept():
    """All-family 1470017 (generator 14747, session 56's held-out set) lies across its frame, bone dark: the
    shipped network outlines C2-C6 right on the view inverted and turned a quarter anticlockwise, and on
    the opposite view reads two of them the other way round (2 bodies reported against 5). Refusing every
    column the opposite view reads reversed lost it (session 58's first version of the check); the view
    that reads more bodies shows the column as the network was trained on, so it is kept."""
    ph, ref, img, mpp = _all_family(14747, 1470000, 17)
    det = detect_landmarks(img, mm_per_px=mpp, frame=ref)
    errs = _errors(det, ph.landmarks.corners_px)
    assert set(BODIES[:5]) <= set(errs) and max(errs.values()) <= 3.0, (errs, det.missing)
    (view,) = [x for x in det.warnings if x.startswith("the bodies were found on the frame")]
    assert "turned a quarter anticlockwise" in view, view


def test_bodies_outlined_upside_down_or_facing_the_other_way_against_the_network_are_told():
    """_outlined_otherwise: the same body with superior and inferior swapped, or anterior and posterior, is
    outlined otherwise than the network's; the same corners, or a body elsewhere, are not."""
    from dmx.detect import _outlined_otherwise

    body = np.array(
        [[10.0, 0.0], [0.0, 0.0], [0.0, 8.0], [10.0, 8.0]]
    )  # ant_sup, post_sup, post_inf, ant_inf
    det = Detection(Landmarks(frame=0, corners_px={Vertebra.C4: body}), {}, ())
    assert not _outlined_otherwise(det, [(2, body)], 0.3)
    assert _outlined_otherwise(det, [(2, body[[3, 2, 1, 0]])], 0.3)  # upside down
    assert _outlined_otherwise(det, [(2, body[[1, 0, 3, 2]])], 0.3)  # facing the other way
    assert not _outlined_otherwise(det, [(2, body[[1, 0, 3, 2]] + 40.0)], 0.3)  # another body (12 mm away)


def test_a_view_whose_column_faces_the_other_way_than_the_network_outlines_it_is_not_kept(
    phantom, monkeypatch
):
    """All-family 1510013 (session 58, with a network trained on crops turned any way): on the view where
    its column stood upright, C4 and C5 at their own places with anterior and posterior swapped, their
    levels confirmed by the network, whose outlines there faced them right. Played here on this phantom
    turned a quarter: the view turned back gives a column facing the other way, and it is not kept."""
    import dmx.detect as detect_mod

    frame = _display(phantom, 3)
    w = frame.shape[1]
    img = np.ascontiguousarray(np.rot90(frame, 1))
    real = detect_mod._detect_once
    swapped = {v: np.asarray(c, float)[[1, 0, 3, 2]] for v, c in phantom.landmarks.corners_px.items()}
    facing_away = Detection(
        Landmarks(frame=3, corners_px=swapped, confidence=dict.fromkeys(BODIES, 1.0)), {}, ()
    )

    def upright_view_faces_away(image, **kw):
        return facing_away if np.array_equal(image, frame) else real(image, **kw)

    monkeypatch.setattr(detect_mod, "_detect_once", upright_view_faces_away)
    monkeypatch.setattr(
        detect_mod, "_refused", lambda *a, **k: None
    )  # its facing not told by its surroundings
    det = detect_landmarks(img, mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    truth = {v: np.stack([c[:, 1], w - 1 - c[:, 0]], 1) for v, c in phantom.landmarks.corners_px.items()}
    errs = _errors(det, truth)
    assert not errs or max(errs.values()) <= 3.0, errs


@pytest.mark.parametrize("flip", ["upside down", "turned a half turn"])
def test_a_frame_stored_upside_down_is_searched_turned_a_half_turn(phantom, flip):
    """Session 58: a frame stored flipped top to bottom (or turned a half turn) showed its column upside
    down, and nothing was reported (the network placed the one body found at another level). It is searched
    turned a half turn, where the column stands upright, its corners mapped back."""
    frame = _display(phantom, 3)
    h, w = frame.shape
    if flip == "upside down":
        img = frame[::-1]
        truth = {v: np.stack([c[:, 0], h - 1 - c[:, 1]], 1) for v, c in phantom.landmarks.corners_px.items()}
    else:
        img = np.rot90(frame, 2)
        truth = {
            v: np.stack([w - 1 - c[:, 0], h - 1 - c[:, 1]], 1)
            for v, c in phantom.landmarks.corners_px.items()
        }
    det = detect_landmarks(np.ascontiguousarray(img), mm_per_px=tuple(phantom.truth["mm_per_px"]), frame=3)
    errs = _errors(det, truth)
    assert len(errs) >= 5 and max(errs.values()) <= 2.0, (errs, det.missing)
    (view,) = [x for x in det.warnings if x.startswith("the bodies were found on the frame")]
    assert "turned a half turn" in view, view


def test_an_upright_frame_is_not_searched_in_other_views(detection):
    assert not any("found on the frame" in w for w in detection.warnings)


def test_another_view_asks_the_cine_mean_in_the_frames_own_coordinates():
    """A body looked for on the cine's mean from another view: the tracker gets the corners on the frame as
    given, and the mean comes back in the view (inverted and turned like the frame searched)."""
    from dmx.detect import VIEWS

    frame = np.arange(12 * 20, dtype=np.float32).reshape(12, 20)
    asked = {}

    def mean_of(corners, vertebra):
        asked.update(corners)
        return frame, "frames 0-9"

    view = VIEWS[3]  # inverted and turned a quarter anticlockwise
    assert view.inverted and view.turns == 1
    seen = view.image(frame)
    # a point of the view and the same pixel of the frame as given
    yx = (3, 5)
    point = np.array([[yx[1], yx[0]]], float)  # (x, y) in the view
    back = view.back(point, frame.shape)[0]
    assert frame[int(back[1]), int(back[0])] == frame.max() + frame.min() - seen[yx]
    mean, words = view.mean_of(mean_of, frame.shape)({Vertebra.C4: point}, Vertebra.C4)
    np.testing.assert_array_equal(asked[Vertebra.C4], back[None])
    np.testing.assert_array_equal(mean, seen)
    assert words == "frames 0-9"
    assert view.spacing((0.2, 0.3)) == (0.3, 0.2) and VIEWS[0].spacing((0.2, 0.3)) == (0.2, 0.3)


def test_the_c2_column_benchmark_tells_right_columns_from_columns_a_level_off():
    """benchmarks/c2_columns.py's truth (the tally session 29's C2 test change rests on): a column whose
    bodies sit on their own true bodies is right, one whose every body sits a level below its label
    (the network's miscount under the shoulders) off-1, a level above off+1, one of each mixed, and a
    body on no true body is None and does not count (the class is that of the levels)."""
    import importlib.util
    from pathlib import Path

    from dmx.detect.detector import BodyResult

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "c2_columns.py"
    spec = importlib.util.spec_from_file_location("c2_columns", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def box(y: float) -> np.ndarray:
        return np.array([[0.0, y], [16.0, y], [16.0, y + 12], [0.0, y + 12]])

    truth = {v: box(20.0 * k) for k, v in enumerate(BODIES)}  # C2 at y 0, C3 at 20, ...

    def column(labels_and_true: list[tuple[int, float]]) -> list[BodyResult]:
        return [BodyResult(BODIES[k], box(y), np.zeros(1), 1.0, None) for k, y in labels_and_true]

    assert module.column_class(column([(1, 20.0), (2, 40.0)]), truth) == ("right", [0, 0])
    # labelled C4, C5 but lying on C3, C4: every body a level below its label
    assert module.column_class(column([(2, 20.0), (3, 40.0)]), truth) == ("off-1", [-1, -1])
    assert module.column_class(column([(1, 40.0), (2, 60.0)]), truth) == ("off+1", [1, 1])
    assert module.column_class(column([(1, 20.0), (2, 60.0)]), truth) == ("mixed", [0, 1])
    assert module.column_class(column([(1, 20.0), (2, 31.0)]), truth) == ("right", [0, None])
    assert module.column_class(column([(2, 9.0), (3, 31.0)]), truth) == ("mixed", [None, None])


def test_the_view_ceiling_benchmark_counts_right_outlines_per_view(phantom):
    """benchmarks/view_ceiling.py (session 56): each of the twelve views is counted: the outlines within 3 px
    of their own levels, those at confidence 0.5 or more, those at that confidence beyond 3 px, and, without
    the truth, the bodies at that confidence and their summed confidence. On the upright test phantom the
    network shipped since session 60 (trained on crops turned any way and either polarity, C7 a target under
    the shoulders) outlines C3-C6 right at that confidence as given (five of C2-C7 sure; session 59's six),
    turned an eighth either way and turned a quarter clockwise, the column across the frame (the network
    before session 59, trained upright: as given only); turned a quarter anticlockwise and a half turn (the
    column upside down) one to three right at low confidence and some wrong at that confidence (the
    opposite-view check stands for those; how many depends on the machine's rounding of the network's
    outputs: session 63); inverted (bone shown dark, the phantom's bone bright) none right and three or four
    wrong at that confidence, or none at all (the detector refuses bodies darker than around them)."""
    import importlib.util
    from pathlib import Path

    from dmx.detect import LEANING_VIEWS, VIEWS, _net_and_model

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "view_ceiling.py"
    spec = importlib.util.spec_from_file_location("view_ceiling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net, model = _net_and_model(None)
    mpp = float(np.mean(phantom.truth["mm_per_px"]))
    views = module.right_per_view(_display(phantom, 3), phantom.landmarks.corners_px, mpp, net, model)
    assert len(views) == 1 + len(VIEWS) + len(LEANING_VIEWS)
    assert views["as given"][:4] == (4, 4, 0, 5), views  # five of C2-C7 at confidence >= 0.5 as given
    for view in LEANING_VIEWS:
        assert views[view.words][:4] == ((0, 0, 4, 5) if view.inverted else (4, 4, 0, 6)), (view.words, views)
    quarters = {
        view.words: tuple(views[view.words][:3]) for view in VIEWS if view.turns % 2 and not view.inverted
    }
    assert sorted(quarters.values())[1] == (4, 4, 0), quarters
    (half,) = [view.words for view in VIEWS if view.turns == 2 and not view.inverted]
    for right, sure, wrong in (sorted(quarters.values())[0], views[half][:3]):
        # read wrong at confidence >= 0.5, some right below it (how many: the machine's rounding, session 63)
        assert 1 <= right <= 3 and sure == 0 and wrong >= 1, (quarters, views[half])
    for view in VIEWS:
        if view.inverted:
            right, right_sure, wrong_sure = views[view.words][:3]
            assert right == right_sure == 0 and wrong_sure in (0, 3), (view.words, views)


def test_a_lone_template_body_is_left_out_with_its_reason(monkeypatch):
    """All-family 1160004 (session 35): the template detector's chain reported one body (a "C6" 61-74 px
    off, its corners permuted, every other level refused), and it was the final output. A lone body from
    the chain is left out with LONE_BODY as its reason, and with it a level searched next to it (1220009,
    session 36: its level is the lone body's); two template bodies are kept, and so is a lone body the
    network reported (1160002's right C3 was one)."""
    import dmx.detect as detect_mod
    from dmx.detect import LONE_BODY, detector
    from dmx.detect.detector import BodyResult, ColumnResult, Combined

    square = np.array([[10.0, 10.0], [40.0, 10.0], [40.0, 30.0], [10.0, 30.0]])
    found: dict[str, str] = {}

    def combined(*_a, **_k):
        bodies = tuple(
            (BodyResult(v, square + 40 * k, np.zeros(1), 0.95, None), found[v.value], True)
            if v.value in found
            else (BodyResult(v, None, np.zeros(1), 0.0, "absent"), "template", False)
            for k, v in enumerate(BODIES)
        )
        column = ColumnResult(tuple(b for b, _s, _r in bodies), 1.0, "right", 0.3, True)
        searched = tuple(v for v in BODIES if found.get(v.value) == "neighbour")
        return Combined(bodies, column, None, None, None, (), neighbours=searched)

    monkeypatch.setattr(detector, "run_combined", combined)

    def detect():
        return detect_mod._detect_once(
            np.zeros((300, 300)),
            mm_per_px=(0.3, 0.3),
            frame=0,
            model_path=None,
            method="template",
            mean_of=None,
        )

    found.update({"C6": "template"})
    det = detect()
    assert det.landmarks.corners_px == {}
    assert det.missing[Vertebra.C6] == f"left out: {LONE_BODY}"
    assert f"no body reported: {LONE_BODY}" in det.warnings
    found.update({"C5": "template"})
    assert set(detect().landmarks.corners_px) == {Vertebra.C5, Vertebra.C6}
    # 1220009 (session 36): a lone "C5" and the C4 searched next to it
    found.clear()
    found.update({"C5": "template", "C4": "neighbour"})
    det = detect()
    assert det.landmarks.corners_px == {}
    assert det.missing[Vertebra.C4] == det.missing[Vertebra.C5] == f"left out: {LONE_BODY}"
    assert not any("found next to the reported bodies" in w for w in det.warnings)
    found.update({"C6": "template"})
    assert set(detect().landmarks.corners_px) == {Vertebra.C4, Vertebra.C5, Vertebra.C6}
    found.clear()
    found.update({"C3": "network"})
    det = detect()
    assert set(det.landmarks.corners_px) == {Vertebra.C3}
    assert LONE_BODY not in " ".join(det.warnings)
