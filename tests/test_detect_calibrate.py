"""The reported confidence's calibration (dmx.detect.calibrate): its inputs, its model and how
detect_landmarks applies it."""

from __future__ import annotations

import numpy as np
import pytest

from dmx.analysis import Detection
from dmx.anatomy import BODIES, Vertebra
from dmx.detect import _calibrated, _warned_low, model_file
from dmx.detect.calibrate import MIN_CHANCE, calibrated_confidence, outline_deviation
from dmx.detect.model import load_model
from dmx.landmarks import Landmarks


@pytest.fixture(scope="module")
def mean():
    return load_model(model_file()).mean_shape_mm


def _image_outline(mean_mm: np.ndarray, *, scale: float, turn_deg: float, shift, mirror: bool) -> np.ndarray:
    """A level's mean outline as image corners (y down) at ``scale`` px per mm, turned and shifted."""
    c = mean_mm * np.array([1.0, -1.0]) * scale
    if mirror:
        c = c * np.array([-1.0, 1.0])
    t = np.radians(turn_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return c @ rot.T + np.asarray(shift, float)


def test_the_mean_outline_deviates_by_nothing_at_any_size_turn_and_facing_and_a_sheared_one_by_its_shear(
    mean,
):
    for k, v in enumerate((Vertebra.C2, Vertebra.C4, Vertebra.C7)):
        level = mean[[0, 2, 5][k]]
        for scale, turn, mirror in ((2.5, 0.0, False), (7.0, 40.0, True), (4.0, -75.0, False)):
            c = _image_outline(level, scale=scale, turn_deg=turn, shift=(300, 200), mirror=mirror)
            assert outline_deviation(c, v, mean) < 1e-9
    # the superior endplate slid 2 mm backwards (a sheared outline): the deviation is that shear's share
    c4 = mean[2].copy()
    sheared = c4 + np.array([[-2.0, 0.0], [-2.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    d = outline_deviation(
        _image_outline(sheared, scale=5.0, turn_deg=10.0, shift=(0, 0), mirror=False), Vertebra.C4, mean
    )
    d_big = outline_deviation(
        _image_outline(sheared, scale=11.0, turn_deg=10.0, shift=(0, 0), mirror=True), Vertebra.C4, mean
    )
    assert 0.02 < d < 0.1
    assert d_big == pytest.approx(d, rel=1e-6)  # scale-free and the same facing either way


def test_the_chance_falls_with_the_deviation_and_the_detectors_doubt_and_c2s_is_its_levels_rate(mean):
    c4 = _image_outline(mean[2], scale=5.0, turn_deg=0.0, shift=(0, 0), mirror=False)
    skew = np.array([[-1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])

    def chance(f: float, confidence: float = 1.0, k: int = 2) -> float:
        outline = _image_outline(mean[k] + f * skew, scale=5.0, turn_deg=0.0, shift=(0, 0), mirror=False)
        return calibrated_confidence(confidence, outline, BODIES[k], mean)

    chances = [chance(f) for f in (0.3, 1.0, 2.0)]
    assert chances[0] > 0.9 and chances[0] > chances[1] > chances[2]
    # the shape alone never leaves out a C3-C6 the detector reports (MAX_DEVIATION: unusual anatomy is
    # real): a grossly sheared one is kept below 0.8 ("check its corners"), at the detector's own threshold
    # too; a C7 (wrong more often) with that shape and the detector in doubt is left out
    assert chance(3.0) == chance(6.0)
    assert MIN_CHANCE < chance(6.0, confidence=0.7) < chance(6.0) < 0.8
    assert chance(6.0, confidence=0.75, k=5) < MIN_CHANCE < chance(0.3, confidence=0.75, k=5)
    assert calibrated_confidence(0.75, c4, Vertebra.C4, mean) < calibrated_confidence(
        1.0, c4, Vertebra.C4, mean
    )
    outline = mean[2] + 0.6 * skew
    c2 = _image_outline(outline, scale=5.0, turn_deg=0.0, shift=(0, 0), mirror=False)
    assert calibrated_confidence(1.0, c2, Vertebra.C2, mean) < calibrated_confidence(
        1.0, c2, Vertebra.C4, mean
    )


def test_detection_keeps_a_plain_outline_with_its_chance_and_leaves_out_a_misshapen_one_with_the_reason(mean):
    plain = _image_outline(mean[2], scale=5.0, turn_deg=5.0, shift=(200, 300), mirror=True)
    skew = np.array([[-5.0, 0.0], [-5.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    unlike = _image_outline(mean[5] + skew, scale=5.0, turn_deg=5.0, shift=(200, 380), mirror=True)
    det = Detection(
        Landmarks(
            frame=0,
            corners_px={Vertebra.C4: plain, Vertebra.C7: unlike},
            confidence={Vertebra.C4: 0.75, Vertebra.C7: 0.75},
        ),
        {Vertebra.C2: "not found: x"},
        ("another warning",),
    )
    assert calibrated_confidence(0.75, unlike, Vertebra.C7, mean) < MIN_CHANCE
    out = _calibrated(det, None)
    assert list(out.landmarks.corners_px) == [Vertebra.C4]
    np.testing.assert_array_equal(out.landmarks.corners_px[Vertebra.C4], plain)
    chance = out.landmarks.confidence[Vertebra.C4]
    assert chance == pytest.approx(calibrated_confidence(0.75, plain, Vertebra.C4, mean), abs=1e-4)
    assert out.missing[Vertebra.C2] == "not found: x"
    assert out.missing[Vertebra.C7].startswith("left out: its corners are more likely wrong than right")
    assert out.warnings == (
        "another warning",
    )  # the low-confidence ones are made once, from the final values
    warned = _warned_low(out)
    assert warned.warnings[:1] == ("another warning",)
    assert (f"C4: low confidence {chance:.2f}; check its corners" in warned.warnings) == (chance < 0.8)
    assert len(warned.warnings) == 1 + (chance < 0.8)  # nothing said of C7, left out


def test_low_confidence_warnings_name_only_the_bodies_reported_with_their_final_confidence():
    """Session 62: each body reported below LOW_CONFIDENCE is warned once, with the confidence reported; a
    body left out (by the field-edge cut or the calibration) is not warned "check its corners"."""
    corners = {v: np.zeros((4, 2)) for v in (Vertebra.C3, Vertebra.C4, Vertebra.C5)}
    det = Detection(
        Landmarks(
            frame=0, corners_px=corners, confidence={Vertebra.C3: 0.95, Vertebra.C4: 0.62, Vertebra.C5: 0.8}
        ),
        {Vertebra.C6: "left out: x"},
        ("first",),
    )
    assert _warned_low(det).warnings == ("first", "C4: low confidence 0.62; check its corners")
    high = Detection(Landmarks(frame=0, corners_px=corners, confidence=dict.fromkeys(corners, 0.9)), {}, ())
    assert _warned_low(high) is high


def test_detect_landmarks_reports_the_calibrated_chance_of_each_body_it_found(mean):
    from dmx.detect import detect_landmarks
    from dmx.phantom import make_phantom

    ph = make_phantom(seed=4243, frames=4, photometric="MONOCHROME2", facing="left", curve="lordotic")
    img = ph.frames[ph.truth["params"]["reference_frame"]].astype(np.float32)
    mpp = float(np.mean(ph.truth["mm_per_px"]))
    raw = detect_landmarks(img, mm_per_px=(mpp, mpp), calibrated=False)
    out = detect_landmarks(img, mm_per_px=(mpp, mpp))
    assert len(raw.landmarks.corners_px) >= 4
    for v, c in raw.landmarks.corners_px.items():
        chance = calibrated_confidence(raw.landmarks.confidence[v], c, v, mean)
        if chance >= MIN_CHANCE:
            np.testing.assert_array_equal(out.landmarks.corners_px[v], c)
            assert out.landmarks.confidence[v] == pytest.approx(chance, abs=1e-4)
        else:
            assert v not in out.landmarks.corners_px and "more likely wrong than right" in out.missing[v]
    assert any(out.landmarks.confidence[v] != raw.landmarks.confidence[v] for v in out.landmarks.corners_px)
    for det in (raw, out):  # "check its corners" said once per body reported low, with the value reported
        conf = det.landmarks.confidence
        said = [w for w in det.warnings if "low confidence" in w]
        assert said == [
            f"{v.value}: low confidence {c:.2f}; check its corners" for v, c in conf.items() if c < 0.8
        ]
    assert any("low confidence" in w for w in out.warnings)  # the sample's C2 (its level's rate, 0.76)
