import csv
import io
import json
import re
from pathlib import Path

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
    doc = build_measurements(seq, lm, _tracks(), measured)
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


# --- automatic landmarks (issue #7): the detector replaced by the phantom's true corners ------------

import jsonschema  # noqa: E402
from landmark_fakes import (  # noqa: E402
    PHANTOM_FRAMES,
    PHANTOM_SIZE_PX,
    fake_detector,
    unavailable,
    write_phantom_study,
)

from dmx import pipeline  # noqa: E402
from dmx.cli import main  # noqa: E402
from dmx.errors import DmxError, UsageError  # noqa: E402
from dmx.landmarks import read_landmarks, write_landmarks  # noqa: E402
from dmx.schema import measurements_schema  # noqa: E402


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """(study.dcm, landmarks.json, the analysis with the file's landmarks)."""
    study, lm = write_phantom_study(tmp_path_factory.mktemp("phantom"))
    return study, lm, pipeline.analyze(study, landmarks_path=lm)


def _levels(doc, key="rotation_rom_deg"):
    return {name: lvl[key] for name, lvl in doc["levels"].items()}


def test_auto_landmarks_measure_like_the_same_corners_from_a_file(phantom, monkeypatch, tmp_path):
    study, lm, _ = phantom
    # the detector gives body corners only: compare with a file holding just those (with the
    # C1/dens points C1 would be tracked too, and C2's template would leave the arch out)
    corners_only = tmp_path / "corners.json"
    write_landmarks(Landmarks(0, read_landmarks(lm).corners_px), corners_only)
    by_file = pipeline.analyze(study, landmarks_path=corners_only)
    calls = []
    monkeypatch.setattr(
        "dmx.detect.find_landmarks",
        fake_detector(lm, confidence={"C4": 0.42}, warnings=("scale prior unused",), calls=calls),
    )
    auto = pipeline.analyze(study)
    # once, on the reference frame, offered the cine around it (12 frames: a mean of 8 or more)
    assert calls == [{"n_frames": 12, "frame": 0, "model_path": None, "mean_of": True}]
    doc = auto.measurements
    assert (doc["landmarks_source"], by_file.measurements["landmarks_source"]) == ("auto", "file")
    assert auto.landmarks_source == "auto" and auto.detection is not None
    assert doc["landmarks_detection"] == {
        "frame": 0,
        "confidence": {"C2": 0.9, "C3": 0.9, "C4": 0.42, "C5": 0.9, "C6": 0.9, "C7": 0.9},
        "missing": {},
        "warnings": ["scale prior unused"],
    }
    assert doc["warnings"][0] == pipeline.AUTO_WARNING
    assert "landmark detection: scale prior unused" in doc["warnings"]
    # same corners, same tracking, same numbers
    for key in ("rotation_rom_deg", "translation_mm", "offset_range_mm"):
        assert _levels(doc, key) == _levels(by_file.measurements, key)
    assert _levels(doc, "warnings") == _levels(by_file.measurements, "warnings")
    # every body is tracked in every frame of this small phantom (since session 9: C2 and C3, too fast here
    # for their own residual calibration, take the other bodies'), so C2-C7's Cobb chose the key frames
    # and every level is measured there
    assert doc["frames"]["key_frame_basis"] == by_file.measurements["frames"]["key_frame_basis"]
    assert all(rom is not None for rom in _levels(doc).values())
    assert "landmarks_detection" not in by_file.measurements
    jsonschema.validate(json.loads(pipeline.measurements_text(doc)), measurements_schema())


def test_a_vertebra_not_found_is_left_out_and_its_levels_are_null(phantom, monkeypatch):
    study, lm, by_file = phantom
    monkeypatch.setattr(
        "dmx.detect.find_landmarks", fake_detector(lm, leave_out={"C7": "covered by the shoulders"})
    )
    doc = pipeline.analyze(study).measurements
    assert doc["landmarks_detection"]["missing"] == {"C7": "covered by the shoulders"}
    assert "C7" not in doc["landmarks_detection"]["confidence"] and "C7" not in doc["tracks"]
    lvl = doc["levels"]["C6-C7"]
    assert lvl["rotation_rom_deg"] is None and lvl["translation_mm"] is None
    assert set(lvl["angle_deg"]) == {None}
    assert doc["curve"]["neutral"]["class"] == "undetermined"  # C7 needed for the curve: never guessed
    assert any(w.startswith("C7 not found automatically (covered by the shoulders)") for w in doc["warnings"])
    # the levels between bodies that were found keep their per-frame values (the key frames may
    # move: without C7 they are chosen from the sum of the segmental angles, spec section 6)
    ref = by_file.measurements["levels"]["C3-C4"]["angle_deg"]
    assert doc["levels"]["C3-C4"]["angle_deg"] == pytest.approx(ref, abs=0.05)
    # without C7 the levels tracked in every frame choose the key frames (C2 and C3 are: since session 9
    # they take the other bodies' residual calibration, too fast for their own in this 12-frame phantom;
    # before, they were lost on frames 2-4). A level not tracked at a key frame has no ROM:
    # tests/test_measure_keyframes.py checks that
    assert doc["frames"]["key_frame_levels"] == ["C2-C3", "C3-C4", "C4-C5", "C5-C6"]
    assert doc["levels"]["C4-C5"]["rotation_rom_deg"] > 5.0
    from dmx.phantom import make_phantom

    truth = make_phantom(seed=1, frames=PHANTOM_FRAMES, rows=PHANTOM_SIZE_PX, cols=PHANTOM_SIZE_PX).truth
    fl, ex = doc["frames"]["flexion"], doc["frames"]["extension"]
    for level in ("C2-C3", "C3-C4"):
        true_angle = truth["levels"][level]["angle_deg"]
        rom = doc["levels"][level]["rotation_rom_deg"]
        # within what a level tracked in every frame reaches in this 12-frame 256 px phantom (C5-C6: 0.70;
        # measured C2-C3 0.45, C3-C4 0.53)
        assert rom == pytest.approx(true_angle[ex] - true_angle[fl], abs=0.75), level
    jsonschema.validate(json.loads(pipeline.measurements_text(doc)), measurements_schema())


def test_a_middle_vertebra_not_found_nulls_both_its_levels(phantom, monkeypatch):
    study, lm, _ = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(lm, leave_out={"C4": "low contrast"}))
    doc = pipeline.analyze(study).measurements
    roms = _levels(doc)
    assert roms["C3-C4"] is None and roms["C4-C5"] is None
    assert doc["levels"]["C4-C5"]["warnings"] == ["C4 not in the tracks: not measured"]
    assert roms["C5-C6"] is not None and roms["C6-C7"] is not None
    # C2 and C3 are tracked in every frame (see above): C2-C3 is measured, within what a level reaches in
    # this 12-frame 256 px phantom
    from dmx.phantom import make_phantom

    true_angle = make_phantom(
        seed=1, frames=PHANTOM_FRAMES, rows=PHANTOM_SIZE_PX, cols=PHANTOM_SIZE_PX
    ).truth["levels"]["C2-C3"]["angle_deg"]
    fl, ex = doc["frames"]["flexion"], doc["frames"]["extension"]
    assert roms["C2-C3"] == pytest.approx(true_angle[ex] - true_angle[fl], abs=0.75)


def test_no_two_adjacent_bodies_is_one_clear_error(phantom, monkeypatch, capsys):
    study, lm, _ = phantom
    gone = {v: "not found" for v in ("C2", "C4", "C6", "C7")}
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(lm, leave_out=gone))
    with pytest.raises(pipeline.DetectionFailedError, match="found only C3, C5"):
        pipeline.analyze(study)
    out = study.parent / "none"
    assert main(["analyze", str(study), "--out", str(out)]) == 1  # finished, no measurement
    err = capsys.readouterr().err.strip().splitlines()
    from test_cli_landmarks import _searched_too

    assert err == [
        f"dmx: error: {study}: automatic landmark detection found no two adjacent vertebral bodies "
        f"(found only C3, C5){_searched_too(study)}; "
        "check the bodies found and place the missing ones by hand in the review "
        f"page {out / 'review.html'} (then 'Download corrected landmarks') and run: "
        f"dmx analyze {study} --landmarks <downloaded file>"
    ]
    assert not (out / "measurements.json").exists()
    html = (out / "review.html").read_text(encoding="utf-8")  # the two found, the four to place
    data = json.loads(
        re.search(r'<script type="application/json" id="dmx-review">(.*?)</script>', html).group(1)
    )
    assert [b["name"] for b in data["bodies"]] == ["C3", "C5"]
    assert data["missing"] == {v: "not found" for v in ("C2", "C4", "C6", "C7")}


@pytest.mark.parametrize(
    "exc", [NotImplementedError("being built"), FileNotFoundError("model file detector.npz not found")]
)
def test_detector_unavailable_is_one_line_telling_to_pass_landmarks(phantom, monkeypatch, capsys, exc):
    study, _, _ = phantom
    monkeypatch.setattr("dmx.detect.find_landmarks", unavailable(exc))
    with pytest.raises(UsageError) as info:
        pipeline.analyze(study)
    assert isinstance(info.value, pipeline.DetectionUnavailableError) and info.value.why == str(exc)
    assert main(["analyze", str(study), "--out", str(study.parent / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"dmx: error: {study}: automatic landmark detection is not available ({exc})")
    assert err[0].endswith("pass --landmarks L.json") and "Traceback" not in err[0]


def test_stale_model_file_is_one_line_naming_it(phantom, monkeypatch, capsys, tmp_path):
    # a model file of the previous format (six confidence features) must not reach a traceback
    study, _, _ = phantom
    np.savez(tmp_path / "detector.npz", format=np.array("dmx.detector/1"), res_mm=np.array(0.6))
    monkeypatch.setenv("DMX_MODEL_DIR", str(tmp_path))
    assert main(["analyze", str(study), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert str(tmp_path / "detector.npz") in err[0]
    assert "not a dmx.detector/2 model file (dmx.detector/1); rebuild it with" in err[0]
    assert not (tmp_path / "out").exists()


def test_detector_finding_nothing_or_points_outside_the_image_is_an_error(phantom, monkeypatch):
    study, lm, _ = phantom
    everything = {v: "not found" for v in ("C2", "C3", "C4", "C5", "C6", "C7")}
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(lm, leave_out=everything))
    with pytest.raises(pipeline.DetectionFailedError, match="found no vertebral body"):
        pipeline.analyze(study)
    far = read_landmarks(lm)
    far = Landmarks(frame=0, corners_px={v: c + [1000.0, 0.0] for v, c in far.corners_px.items()})
    monkeypatch.setattr("dmx.detect.find_landmarks", fake_detector(far))
    with pytest.raises(DmxError, match=r"automatic landmarks\): C2 lies outside the 256x256 image"):
        pipeline.analyze(study)


def test_write_outputs_auto_adds_the_proposal_and_review_page_and_the_loop_closes(
    phantom, monkeypatch, tmp_path
):
    study, lm, by_file = phantom
    monkeypatch.setattr(
        "dmx.detect.find_landmarks", fake_detector(lm, leave_out={"C7": "not found"}, confidence={"C3": 0.3})
    )
    auto = pipeline.analyze(study)
    written = pipeline.write_outputs(auto, tmp_path / "auto")
    assert set(written) == {"measurements", "landmarks", "landmarks_auto", "review", "report"}
    proposal = read_landmarks(written["landmarks_auto"])
    assert proposal.vertebrae == tuple(Vertebra(n) for n in ("C2", "C3", "C4", "C5", "C6"))
    assert proposal.confidence[Vertebra.C3] == pytest.approx(0.3)
    truth = read_landmarks(lm)
    np.testing.assert_allclose(proposal.corners_px[Vertebra.C5], truth.corners_px[Vertebra.C5])
    assert "Landmarks found automatically: review" in written["review"].read_text(encoding="utf-8")
    # the review loop: the proposal goes back in with --landmarks and counts as given by hand
    again = pipeline.analyze(study, landmarks_path=written["landmarks_auto"])
    assert again.measurements["landmarks_source"] == "file"
    assert _levels(again.measurements) == _levels(auto.measurements)
    # file landmarks: neither the proposal nor the review page
    assert set(pipeline.write_outputs(by_file, tmp_path / "file", report=False)) == {
        "measurements",
        "landmarks",
    }


def test_write_outputs_with_the_report_in_a_forked_process_writes_the_same_files(
    phantom, tmp_path, monkeypatch
):
    import os
    from datetime import UTC, datetime

    import dmx.report

    _, _, analysis = phantom
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    real = dmx.report.write_report
    parent = os.getpid()
    writers = []

    def at_a_fixed_time(*args, **kwargs):  # the footer's time fixed; who wrote the report recorded
        writers.append(os.getpid())  # seen here only when written here
        Path(str(args[1]) + ".writer").write_text(str(os.getpid()))
        return real(*args, generated_at=when, **kwargs)

    monkeypatch.setattr(dmx.report, "write_report", at_a_fixed_time)
    here = pipeline.write_outputs(analysis, tmp_path / "here")
    forked = pipeline.write_outputs(analysis, tmp_path / "forked", processes=2)
    assert set(forked) == set(here) == {"measurements", "landmarks", "report"}
    for name, path in here.items():
        assert forked[name].read_bytes() == path.read_bytes(), name
    assert writers == [parent]  # the second report was written by the forked process
    assert int((tmp_path / "forked" / "report.html.writer").read_text()) != parent

    # the forked process fails: the report is written here, the same
    def fails_there(*args, **kwargs):
        if os.getpid() != parent:
            raise RuntimeError("no report there")
        return at_a_fixed_time(*args, **kwargs)

    monkeypatch.setattr(dmx.report, "write_report", fails_there)
    again = pipeline.write_outputs(analysis, tmp_path / "again", processes=2)
    assert again["report"].read_bytes() == here["report"].read_bytes()
    assert writers == [parent, parent]


def test_cine_encoded_while_measuring_gives_the_same_files(phantom, tmp_path, monkeypatch):
    import os
    from datetime import UTC, datetime

    import dmx.report
    import dmx.report.images as images

    study, lm, one = phantom  # analysed without encoding the cine ahead
    assert one.report_cine is None
    parent = os.getpid()
    where = []
    real_encode = images.encode_study_cine

    def encode(*args, **kwargs):  # who encodes the cine ahead, recorded
        Path(tmp_path / "encoder").write_text(str(os.getpid()))
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(images, "encode_study_cine", encode)
    ahead = pipeline.analyze(study, landmarks_path=lm, processes=2, encode_cine=True)
    assert ahead.report_cine is not None
    assert int((tmp_path / "encoder").read_text()) != parent  # in a forked process
    assert pipeline.measurements_text(ahead.measurements) == pipeline.measurements_text(one.measurements)

    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    real = dmx.report.write_report

    def at_a_fixed_time(*args, **kwargs):
        where.append(kwargs.get("encoded_cine") is not None)
        return real(*args, generated_at=when, **kwargs)

    monkeypatch.setattr(dmx.report, "write_report", at_a_fixed_time)
    here = pipeline.write_outputs(one, tmp_path / "here")

    def no_encoding_here(*args, **kwargs):
        raise AssertionError("the cine was encoded ahead: not again")

    monkeypatch.setattr(images, "encode_cine", no_encoding_here)
    forked = pipeline.write_outputs(ahead, tmp_path / "ahead")
    assert where == [False, True]
    assert set(forked) == set(here) == {"measurements", "landmarks", "report"}
    for name, path in here.items():
        assert forked[name].read_bytes() == path.read_bytes(), name


def test_a_failed_analysis_ends_the_cine_encoding(phantom, monkeypatch):
    from dmx.tracking.workers import ForkedCall

    study, lm, _ = phantom
    started = []
    real_init = ForkedCall.__init__

    def recording(self, fn):
        real_init(self, fn)
        started.append(self)

    def fails(*args, **kwargs):
        raise RuntimeError("measure failed")

    monkeypatch.setattr(ForkedCall, "__init__", recording)
    monkeypatch.setattr(pipeline, "build_measurements", fails)
    with pytest.raises(RuntimeError, match="measure failed"):
        pipeline.analyze(study, landmarks_path=lm, processes=2, encode_cine=True)
    assert len(started) == 1 and started[0]._proc is None  # joined: the forked process has ended


def test_detection_summary_and_its_one_line_per_vertebra(phantom, monkeypatch):
    _, lm, _ = phantom
    find = fake_detector(lm, leave_out={"C7": "below  the\nshoulders"}, confidence={"C4": 0.25})
    det = find(_sequence_like(12), frame=0)
    s = pipeline.detection_summary(det)
    assert s["missing"] == {"C7": "below the shoulders"}  # one line
    text = pipeline.format_detection(s).splitlines()
    assert text[0] == "C2  found    confidence 0.90"
    assert text[2] == "C4  found    confidence 0.25  (low: check it)"
    assert text[5] == "C7  missing  below the shoulders"
    assert len(text) == 6
    # a body neither found nor explained by the detector is still reported missing
    bare = type(det)(landmarks=det.landmarks, missing={}, warnings=())
    assert pipeline.detection_summary(bare)["missing"] == {"C7": "not found"}
    assert pipeline.adjacent_pairs(det.landmarks)[-1] == (Vertebra.C5, Vertebra.C6)


def _sequence_like(n_frames: int):
    class _S:
        pass

    s = _S()
    s.n_frames = n_frames
    return s


def test_tracks_are_smoothed_by_default_and_recorded(phantom, tmp_path, capsys):
    study, lm, smoothed = phantom
    assert smoothed.measurements["tracking"] == {
        "smoothing": "local quadratic (Savitzky-Golay), quality-weighted",
        "window_frames": 5,
        "body_window_frames": {},  # no faint body
        "grid_lines": None,  # this phantom has none
    }
    raw = pipeline.analyze(study, landmarks_path=lm, smooth_frames=0)
    assert raw.measurements["tracking"] == {
        "smoothing": None,
        "window_frames": 0,
        "body_window_frames": {},
        "grid_lines": None,
    }
    # this phantom runs the whole flexion-extension in 12 frames: too fast for a 5-frame quadratic,
    # so the gate keeps every raw pose (a slower one is smoothed: tests/test_tracking.py)
    ref = read_landmarks(lm)
    i = smoothed.tracks.vertebrae.index(Vertebra.C4)
    np.testing.assert_allclose(smoothed.tracks.corners_px[0, i], ref.corners_px[Vertebra.C4], atol=1e-9)
    np.testing.assert_allclose(smoothed.tracks.corners_px, raw.tracks.corners_px, atol=1e-9)
    jsonschema.validate(json.loads(pipeline.measurements_text(raw.measurements)), measurements_schema())
    out = tmp_path / "o"
    code = main(["analyze", str(study), "--landmarks", str(lm), "--out", str(out), "--smooth-frames", "4"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dmx: error: --smooth-frames must be 0 or an odd number >= 5, got 4"]


def test_only_c4_landmarks_nothing_measured_nothing_green_exit_1(tmp_path, capsys):
    """A landmark file with only C4: no level can be measured. The files are written and say so;
    no level is "none" (no flag) and nothing is green; dmx analyze exits 1 with one line saying why."""
    import re

    from landmark_fakes import write_phantom_study

    from dmx.cli import main

    study, lm = write_phantom_study(tmp_path / "ph")
    doc = json.loads(lm.read_text())
    doc["points"] = {"C4": doc["points"]["C4"]}
    only_c4 = tmp_path / "only_c4.json"
    only_c4.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["analyze", str(study), "--landmarks", str(only_c4), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines()[-1] == (
        f"dmx: error: {study}: no level could be measured "
        "(the landmarks hold only C4: a level needs both of its vertebrae)"
    )
    table = [line for line in captured.out.splitlines() if re.match(r"C\d-C\d ", line)]
    assert len(table) == 5 and all(line.endswith("  not measured") for line in table)
    m = json.loads((out / "measurements.json").read_text())
    assert all(lvl["rotation_rom_deg"] is None for lvl in m["levels"].values())
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "No level could be measured" in html
    assert 'class="motion motion-ok"' not in html and "Motion sufficient" not in html
    assert "verdict verdict-clear" not in html  # the green verdict
    assert "Motion not measured" in html
    flags = re.findall(r'<td class="flags">(.*?)</td>', html)
    assert len(flags) == 5 and all("not measured" in f for f in flags)
    assert '<span class="none">none</span>' not in html


def test_single_frame_series_input_paths_are_listed_in_frame_order(phantom, tmp_path):
    """measurements.json ``input.paths`` of a series of single frames: frame order, not name order."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    study, lm, whole = phantom
    src = pydicom.dcmread(study)
    frames = src.pixel_array
    n = frames.shape[0]
    names = [f"IM{(7 * i) % n:02d}" for i in range(n)]  # name order differs from frame order
    series_uid = generate_uid()
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(n):
        ds = pydicom.dcmread(study, stop_before_pixels=True)
        for keyword in ("NumberOfFrames", "FrameIncrementPointer", "FrameTimeVector"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = i + 1
        ds.PixelData = frames[i].tobytes()
        ds["PixelData"].VR = "OB" if frames.dtype.itemsize == 1 else "OW"
        ds.save_as(folder / names[i], enforce_file_format=True)
    doc = pipeline.analyze(folder, landmarks_path=lm).measurements
    assert [Path(p).name for p in doc["input"]["paths"]] == names  # file i holds frame i
    assert doc["frames"]["count"] == n
    np.testing.assert_allclose(_levels(doc)["C4-C5"], _levels(whole.measurements)["C4-C5"], atol=1e-6)


@pytest.mark.parametrize("parallel", [{"threads": 3}, {"processes": 2}])
def test_threads_or_processes_give_the_same_tracks_and_measurements(phantom, parallel):
    study, lm, one = phantom  # the fixture's analysis ran in one process, on one thread
    three = pipeline.analyze(study, landmarks_path=lm, **parallel)
    np.testing.assert_array_equal(three.tracks.corners_px, one.tracks.corners_px)
    np.testing.assert_array_equal(three.tracks.quality, one.tracks.quality)
    assert pipeline.measurements_text(three.measurements) == pipeline.measurements_text(one.measurements)
    from dmx.io.checksum import sha256_files

    assert three.measurements["input"]["sha256"] == sha256_files([study])  # computed beside the tracking


def test_low_confidence_marks_bodies_the_detector_reports():
    """The amber "check it" mark must be reachable: the detector leaves out bodies below its threshold
    (0.7) and warns "low confidence" below 0.8, so a body it reports at 0.73 is marked low everywhere."""
    from dmx.analysis import LOW_CONFIDENCE
    from dmx.detect.model import load_model

    threshold = load_model(Path(__file__).resolve().parents[1] / "models" / "detector.npz").conf_threshold
    assert LOW_CONFIDENCE > threshold
    s = {"confidence": {"C4": 0.73, "C5": 0.95}, "missing": {}}
    text = pipeline.format_detection(s).splitlines()
    assert text == ["C4  found    confidence 0.73  (low: check it)", "C5  found    confidence 0.95"]


def test_cine_mean_moves_each_frame_back_with_the_body():
    """The cine the detector is offered (issue #12, session 17): the mean of 16 frames, each moved back
    with C7 as the tracker follows it from its corners, holds C7's frame-0 image with the noise of one
    frame divided by about 4 (sd 12 grey levels: 2.7 against 12.0 on one frame), where the same frames
    averaged unmoved blur it (9.9: C7 moves 3.5 px). A cine shorter than MIN_MEAN_FRAMES gets none."""
    from dmx.phantom.scenes import make_scene

    clean = make_scene(n_frames=16, noise=0, seed=3, amplitude_deg=8)
    noisy = make_scene(n_frames=16, noise=12, seed=3, amplitude_deg=8)  # the same scene, noise added
    assert np.std(noisy.frames[5].astype(float) - clean.frames[5]) == pytest.approx(12, abs=0.5)
    mean_of = pipeline.cine_mean(noisy.frames, 0)
    c7 = noisy.landmarks.corners_px[Vertebra.C7]
    image, words = mean_of(
        {v: noisy.landmarks.corners_px[v] for v in (Vertebra.C6, Vertebra.C7)}, Vertebra.C7
    )
    assert words == "16 frames (0-15)"
    (x0, y0), (x1, y1) = np.floor(c7.min(0)).astype(int), np.ceil(c7.max(0)).astype(int)

    def rms(img) -> float:
        return float(
            np.sqrt(np.mean((np.asarray(img, float)[y0:y1, x0:x1] - clean.frames[0][y0:y1, x0:x1]) ** 2))
        )

    assert rms(image) < 3.5
    assert rms(noisy.frames[0]) > 11 and rms(noisy.frames.astype(float).mean(0)) > 8
    assert pipeline.cine_mean(noisy.frames[: pipeline.MIN_MEAN_FRAMES - 1], 0) is None


def test_the_detection_shortfall_says_why_bodies_found_were_left_out():
    """A study where the detectors found C3-C6 but reported none because they disagreed on the facing
    (independent renderer, heavy shoulders, seed 307): the one-line error said "found no vertebral body"."""
    from dmx.pipeline import detection_shortfall

    facing = (
        "left out: the two detectors' bodies face opposite ways, so which way the patient faces is uncertain"
    )
    missing = {Vertebra.C2: "not found: its outline (four cortical edges) was not found"}
    missing.update({v: facing for v in (Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6)})
    from dmx.analysis import Detection

    empty = Landmarks(frame=0, corners_px={})
    said = detection_shortfall(Detection(empty, missing))
    assert said == (
        "automatic landmark detection reported no vertebral body (4 left out): the two detectors' bodies "
        "face opposite ways, so which way the patient faces is uncertain"
    )
    assert detection_shortfall(Detection(empty, {Vertebra.C3: "not found: x"})) == (
        "automatic landmark detection found no vertebral body"
    )
    assert detection_shortfall(Detection(empty)) == "automatic landmark detection found no vertebral body"


def test_a_cine_missing_one_of_c3_to_c6_on_its_first_frame_is_searched_on_other_frames():
    """Issue #12, session 42: where frame 0 reports two adjacent bodies but not all of C3-C6 (here C4
    covered on frame 0 of the sample), the other frames are searched as where it reports nothing, and
    a frame with all four becomes the reference frame, with a warning naming what frame 0 gave; every
    body is on its own vertebra there."""
    import dataclasses

    from dmx.anatomy import BODIES, CORNERS
    from dmx.io.load import load_sequence

    root = Path(__file__).resolve().parents[1] / "sample_data" / "lordotic_stable"
    seq = load_sequence(root / "study.dcm")
    tracks = json.loads((root / "truth.json").read_text())["tracks"]
    c4 = np.array([tracks["C4"][name][0] for name in CORNERS])
    (x0, y0), (x1, y1) = c4.min(axis=0).astype(int) - 4, c4.max(axis=0).astype(int) + 4
    frames = seq.frames.copy()
    frames[0, y0:y1, x0:x1] = np.median(frames[0])
    covered = dataclasses.replace(seq, frames=frames)
    alone = pipeline.detect_on_sequence(covered, study_path=root / "study.dcm", frame=0)
    assert Vertebra.C4 not in alone.landmarks.corners_px and pipeline.adjacent_pairs(alone.landmarks)
    det = pipeline.detect_on_sequence(covered, study_path=root / "study.dcm")
    k = det.landmarks.frame
    assert k == 8, det.warnings
    assert det.warnings[0].startswith(pipeline.OTHER_FRAME_FOUND.split("{")[0] + "8"), det.warnings
    assert "not all of C3-C6; frames searched: 8)" in det.warnings[0]
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px)
    for v, c in det.landmarks.corners_px.items():
        true = np.array([tracks[v.value][name][k] for name in CORNERS])
        err = np.hypot(*(c - true).T)
        assert (err[2:] if v is Vertebra.C2 else err).max() < 3.0, (v, err)


def test_a_cine_with_nothing_found_on_its_first_frame_is_searched_on_other_frames():
    """Issue #12: where frame 0 reports no two adjacent bodies (a mandible or shoulders over the column in
    that posture; here frame 0 of the sample blanked), dmx analyze and dmx landmarks search other frames
    of the cine (pipeline.other_frames) and take the first reporting enough bodies as the reference frame,
    with a warning saying so; the bodies are on their own vertebrae at that frame. Asked for frame 0 (dmx
    landmarks --frame 0), only frame 0 is searched: nothing, an error; found on no frame, the error line
    names the frames searched."""
    import dataclasses

    from dmx.anatomy import BODIES, CORNERS
    from dmx.errors import DetectionFailedError
    from dmx.io.load import load_sequence

    root = Path(__file__).resolve().parents[1] / "sample_data" / "lordotic_stable"
    seq = load_sequence(root / "study.dcm")
    frames = seq.frames.copy()
    frames[0] = np.median(frames[0])
    blank = dataclasses.replace(seq, frames=frames)
    assert pipeline.other_frames(60) == [8, 17, 25, 34, 42, 51] and pipeline.other_frames(3) == [1, 2]
    det = pipeline.detect_on_sequence(blank, study_path=root / "study.dcm")
    k = det.landmarks.frame
    assert k == 8, det.warnings
    assert det.warnings[0].startswith(pipeline.OTHER_FRAME_FOUND.split("{")[0] + "8"), det.warnings
    tracks = json.loads((root / "truth.json").read_text())["tracks"]
    assert set(BODIES[1:5]) <= set(det.landmarks.corners_px)
    for v, c in det.landmarks.corners_px.items():
        true = np.array([tracks[v.value][name][k] for name in CORNERS])
        err = np.hypot(*(c - true).T)
        assert (err[2:] if v is Vertebra.C2 else err).max() < 3.0, (v, err)
    with pytest.raises(DetectionFailedError) as asked:
        pipeline.detect_on_sequence(blank, study_path=root / "study.dcm", frame=0)
    assert "searched too" not in str(asked.value)
    # found on no frame: the one line names the frames searched
    flat = dataclasses.replace(seq, frames=np.repeat(frames[:1], 4, axis=0))
    with pytest.raises(DetectionFailedError) as nowhere:
        pipeline.detect_on_sequence(flat, study_path=root / "study.dcm")
    assert "found no vertebral body (on frame 0; frames 1, 2, 3 of the cine searched too)" in str(
        nowhere.value
    )
