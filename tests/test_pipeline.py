import csv
import io
import json

import numpy as np
import pytest

from dmx.anatomy import CalibrationSource, UpperCervicalPoint, Vertebra
from dmx.errors import LandmarkError
from dmx.io.sequence import Sequence, StudyInfo
from dmx.landmarks import Landmarks
from dmx.measure import quality_json, tracks_json
from dmx.pipeline import (
    _adi_points,
    build_measurements,
    check_landmarks,
    landmarks_csv,
    measurements_text,
)
from dmx.tracking.types import Tracks

QUAD = np.array([[30.0, 10.0], [10.0, 10.0], [10.0, 25.0], [30.0, 25.0]])


def _tracks(n=3):
    corners = np.stack([QUAD + [t, 0.5 * t] for t in range(n)])[:, None]  # (T, 1, 4, 2)
    corners[1] = np.nan
    quality = np.array([[1.0], [0.1], [0.9]])[:n]
    reason = tuple((None,) if t != 1 else ("occluded",) for t in range(n))
    transforms = np.zeros((n, 1, 2, 3))
    for t in range(n):
        transforms[t, 0] = [[1, 0, t], [0, 1, 0.5 * t]]
    transforms[1] = np.nan
    return Tracks((Vertebra.C3,), corners, quality, reason, 0, transforms)


def _sequence(tmp_path, n=3):
    f = tmp_path / "s.dcm"
    f.write_bytes(b"abc")
    return Sequence(
        frames=np.zeros((n, 40, 50), np.uint8),
        mm_per_px=(0.2, 0.25),
        calibration_source=CalibrationSource.PIXEL_SPACING,
        frame_time_ms=np.full(n, 40.0),
        study=StudyInfo(patient_id="P1", study_uid="1.2", series_uid="1.2.3", study_date="20260101"),
        paths=(f,),
        warnings=("w1",),
    )


def test_tracks_json_nulls_where_lost():
    trk, qual = tracks_json(_tracks()), quality_json(_tracks())
    assert trk["C3"]["post_sup"][0] == [10.0, 10.0]
    assert trk["C3"]["post_sup"][1] is None
    assert trk["C3"]["ant_inf"][2] == [32.0, 26.0]
    assert qual["C3"] == [1.0, 0.1, 0.9]


def test_landmarks_csv_long_form():
    rows = list(csv.DictReader(io.StringIO(landmarks_csv(_tracks()))))
    assert len(rows) == 3 * 4
    r = [r for r in rows if r["frame"] == "2" and r["corner"] == "ant_sup"][0]
    assert (r["vertebra"], float(r["x_px"]), float(r["y_px"]), float(r["quality"])) == ("C3", 32.0, 11.0, 0.9)
    lost = [r for r in rows if r["frame"] == "1"]
    assert all(r["x_px"] == "" and r["y_px"] == "" for r in lost)


def test_build_measurements_required_keys(tmp_path):
    seq = _sequence(tmp_path)
    lm = Landmarks(frame=0, corners_px={Vertebra.C3: QUAD})
    measured = {
        "frames": {"neutral": 0, "flexion": 2, "extension": 0},
        "levels": {},
        "curve": {},
        "warnings": ["m"],
    }
    doc = build_measurements(seq, lm, _tracks(), measured, landmarks_source="file")
    for key in (
        "schema",
        "software",
        "input",
        "study",
        "calibration",
        "frames",
        "landmarks_source",
        "tracks",
        "quality",
        "levels",
        "curve",
        "warnings",
    ):
        assert key in doc
    assert doc["calibration"] == {"mm_per_px": [0.2, 0.25], "source": "PixelSpacing"}
    assert doc["frames"]["time_ms"] == [0.0, 40.0, 80.0]
    assert doc["frames"]["flexion"] == 2 and doc["frames"]["count"] == 3
    assert doc["input"]["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert doc["warnings"] == ["w1", "m"]
    assert doc["tracking_lost"] == {"C3": ["occluded"]}
    json.loads(measurements_text(doc))


def test_measurements_text_refuses_nan():
    with pytest.raises(ValueError):
        measurements_text({"x": float("nan")})


def test_check_landmarks(tmp_path):
    seq = _sequence(tmp_path)
    check_landmarks(Landmarks(frame=2, corners_px={Vertebra.C3: QUAD}), seq, path="l.json")
    with pytest.raises(LandmarkError, match="reference frame 3 does not exist"):
        check_landmarks(Landmarks(frame=3, corners_px={Vertebra.C3: QUAD}), seq, path="l.json")
    with pytest.raises(LandmarkError, match="C3 lies outside"):
        check_landmarks(Landmarks(frame=0, corners_px={Vertebra.C3: QUAD + [40, 0]}), seq, path="l.json")


def test_adi_points_follow_their_bodies():
    tr = _tracks()
    c1 = Tracks(
        (Vertebra.C1, Vertebra.C3),
        np.concatenate([tr.corners_px] * 2, axis=1),
        np.concatenate([tr.quality] * 2, axis=1),
        tuple(r * 2 for r in tr.reason),
        0,
        np.concatenate([tr.transforms] * 2, axis=1),
    )
    lm = Landmarks(
        frame=0,
        corners_px={Vertebra.C3: QUAD},
        extra_px={
            UpperCervicalPoint.C1_ARCH_POST: np.array([5.0, 5.0]),
            UpperCervicalPoint.C2_DENS_ANT: np.array([8.0, 5.0]),
        },
    )
    assert _adi_points(c1, lm) is None  # C2 not tracked: no dens
