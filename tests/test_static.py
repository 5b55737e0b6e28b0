"""Static flexion/extension studies (issue #18): still images, views, registration, analysis, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from dmx.anatomy import BODIES, CORNERS, CalibrationSource, Vertebra
from dmx.cli import main
from dmx.errors import InputError
from dmx.io.load import load_sequence
from dmx.io.static import Posture, PostureSource, load_static, posture_in_text, static_files
from dmx.io.still import read_still
from dmx.landmarks import Landmarks
from dmx.measure import measure
from dmx.measure.validation import validate_measurements
from dmx.phantom import make_phantom
from dmx.phantom.static import static_truth, view_frames, write_static_views
from dmx.static import analyze_static
from dmx.tracking.types import Tracks
from dmx.tracking.views import register_views


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(frames=40, curve="lordotic", seed=1)


@pytest.fixture(scope="module")
def frames(phantom) -> dict[str, int]:
    return {"neutral": 0, **view_frames(phantom)}


@pytest.fixture(scope="module")
def truth(phantom, frames):
    return static_truth(phantom, frames)


def _points(corners: dict) -> dict:
    return {
        v.value: {c.value: [float(x) for x in xy] for c, xy in zip(CORNERS, k, strict=True)}
        for v, k in corners.items()
        if v in BODIES
    }


def _landmark_file(path: Path, corners: dict, frame: int = 0) -> Path:
    path.write_text(json.dumps({"schema": "dmx.landmarks/1", "frame": frame, "points": _points(corners)}))
    return path


def _truth_levels(truth: dict, postures: list[str], mm_per_px) -> dict:
    vs = tuple(v for v in BODIES if all(v in truth[p] for p in postures))
    c = np.array([[truth[p][v] for v in vs] for p in postures])
    n = len(postures)
    tracks = Tracks(vs, c, np.ones((n, len(vs))), tuple((None,) * len(vs) for _ in range(n)), 0)
    fe = (postures.index("flexion"), postures.index("extension"))
    return measure(tracks, mm_per_px=mm_per_px, view_key_frames=fe)["levels"]


def _errors(measured: dict, truth: dict) -> tuple[float, float]:
    rot = [
        abs(measured[k]["rotation_rom_deg"] - t["rotation_rom_deg"])
        for k, t in truth.items()
        if t["rotation_rom_deg"] is not None
    ]
    trans = [
        abs(measured[k]["translation_mm"] - t["translation_mm"])
        for k, t in truth.items()
        if t["translation_mm"] is not None
    ]
    return max(rot), max(trans)


# --------------------------------------------------------------------------- still images


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_still_png_loads_as_one_uncalibrated_frame(tmp_path, dtype):
    img = (np.arange(60 * 80).reshape(60, 80) % np.iinfo(dtype).max).astype(dtype)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), img)
    seq = read_still(path)
    assert seq.frames.shape == (1, 60, 80)
    assert seq.frames.dtype == dtype
    assert np.array_equal(seq.frames[0], img)
    assert seq.kind == "still" and seq.frame_time_ms is None
    assert seq.mm_per_px is None and seq.calibration_source is CalibrationSource.NONE
    assert any("no patient identity" in w for w in seq.warnings)
    assert any("--mm-per-px" in w for w in seq.warnings)


def test_still_tiff_with_user_calibration_through_load_sequence(tmp_path):
    img = np.random.default_rng(0).integers(0, 4000, (40, 30), dtype=np.uint16)
    path = tmp_path / "x.tif"
    cv2.imwrite(str(path), img)
    seq = load_sequence(path, mm_per_px=0.2)
    assert np.array_equal(seq.frames[0], img)
    assert seq.mm_per_px == (0.2, 0.2) and seq.calibration_source is CalibrationSource.USER


def test_still_that_is_no_image_is_one_error_naming_it(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(InputError, match="broken.jpg.*cannot be decoded"):
        read_still(path)


# --------------------------------------------------------------------------- postures


@pytest.mark.parametrize(
    ("text", "posture"),
    [
        ("C-SPINE LAT FLEXION", Posture.FLEXION),
        ("lateral_ext", Posture.EXTENSION),
        ("Neutral lateral", Posture.NEUTRAL),
        ("flexed", Posture.FLEXION),
        ("C-SPINE LAT", None),
        ("flexion and extension", None),
        ("exterior", None),
        (None, None),
    ],
)
def test_posture_in_text(text, posture):
    assert posture_in_text(text) is posture


def test_views_ordered_by_tags_whatever_the_order_given(phantom, frames, tmp_path):
    files = write_static_views(phantom, tmp_path, frames=frames)
    study = load_static([files["extension"], files["neutral"], files["flexion"]])
    assert [v.posture for v in study.views] == [Posture.NEUTRAL, Posture.FLEXION, Posture.EXTENSION]
    assert all(v.posture_source is PostureSource.TAG for v in study.views)
    assert static_files(tmp_path) == sorted(files.values())


def test_options_win_over_tags(phantom, frames, tmp_path):
    files = write_static_views(phantom, tmp_path, frames=frames)
    study = load_static(
        [files["neutral"], files["flexion"], files["extension"]],
        flexion=files["neutral"],
        neutral=files["flexion"],
    )
    assert [v.path for v in study.views] == [files["flexion"], files["neutral"], files["extension"]]
    assert [v.posture_source for v in study.views] == [
        PostureSource.OPTION,
        PostureSource.OPTION,
        PostureSource.TAG,
    ]


def test_views_of_two_patients_are_refused(phantom, frames, tmp_path):
    files = write_static_views(phantom, tmp_path, frames=frames)
    ds = pydicom.dcmread(files["extension"])
    ds.PatientID = "SOMEONE-ELSE"
    ds.save_as(files["extension"])
    with pytest.raises(InputError, match="different patients"):
        load_static(list(files.values()))


# --------------------------------------------------------------------------- registration


@pytest.mark.parametrize("posture", ["flexion", "extension"])
def test_register_views_follows_the_large_motion(phantom, frames, truth, posture):
    lm = Landmarks(frame=0, corners_px={v: c for v, c in truth["neutral"].items() if v in BODIES})
    fit = register_views(phantom.frames[frames["neutral"]], lm, phantom.frames[frames[posture]])
    assert fit.reason == (None,) * 6
    for i, v in enumerate(fit.vertebrae):
        err = np.linalg.norm(fit.corners_px[i] - truth[posture][v], axis=1)
        assert err.max() < 0.5, (v, err)
    assert fit.scale == pytest.approx(1.0, abs=0.002)
    # the motion really is large: C2 turns by tens of degrees and moves by more than a body
    c2 = fit.transforms[fit.vertebrae.index(Vertebra.C2)]
    assert abs(np.degrees(np.arctan2(c2[1, 0], c2[0, 0]))) > 15
    shift = np.linalg.norm(truth[posture][Vertebra.C2].mean(0) - truth["neutral"][Vertebra.C2].mean(0))
    assert shift > 40


@pytest.mark.parametrize(("magnification", "expected"), [(1.08, 1.08), (1.05, None)])
def test_register_views_across_magnification(phantom, frames, magnification, expected):
    """Known from the calibration (search centred on it) or not (uncalibrated exports): the scale is found."""
    from dmx.phantom.static import _magnify

    t = static_truth(phantom, frames, magnification={"extension": magnification})
    view, _ = _magnify(np.asarray(phantom.frames[frames["extension"]]), magnification)
    lm = Landmarks(frame=0, corners_px={v: c for v, c in t["flexion"].items() if v in BODIES})
    fit = register_views(phantom.frames[frames["flexion"]], lm, view, expected_scale=expected)
    assert fit.scale == pytest.approx(magnification, abs=0.005)
    assert fit.reason == (None,) * 6
    for i, v in enumerate(fit.vertebrae):
        err = np.linalg.norm(fit.corners_px[i] - t["extension"][v], axis=1)
        assert err.max() < 0.5, (v, err)


def test_a_body_that_is_not_on_the_view_is_null_with_a_reason(phantom, frames, truth):
    lm = Landmarks(frame=0, corners_px={v: c for v, c in truth["neutral"].items() if v in BODIES})
    blank = np.full_like(phantom.frames[0], int(np.median(phantom.frames[0])))
    fit = register_views(phantom.frames[0], lm, blank)
    assert all(r is not None for r in fit.reason)
    assert np.isnan(fit.corners_px).all()


# --------------------------------------------------------------------------- analysis


def test_dicom_pair_landmarks_on_flexion_only_meets_the_target(phantom, frames, truth, tmp_path):
    fe = {k: frames[k] for k in ("flexion", "extension")}
    files = write_static_views(phantom, tmp_path, frames=fe)
    lm = _landmark_file(tmp_path / "lm.json", truth["flexion"])
    a = analyze_static([files["extension"], files["flexion"]], landmarks_path=lm)
    m = a.measurements
    validate_measurements(m)
    assert m["frames"]["count"] == 2
    assert (m["frames"]["neutral"], m["frames"]["flexion"], m["frames"]["extension"]) == (0, 0, 1)
    assert m["frames"]["key_frame_basis"] == "views" and m["frames"]["time_ms"] is None
    assert [v["posture"] for v in m["static"]["views"]] == ["flexion", "extension"]
    assert [v["landmarks"] for v in m["static"]["views"]] == ["reference", "registered"]
    assert any("no neutral view" in w for w in m["warnings"])
    assert m["tracking"]["grid_lines"] is None
    rot, trans = _errors(
        m["levels"], _truth_levels(truth, ["flexion", "extension"], tuple(phantom.truth["mm_per_px"]))
    )
    assert rot < 0.3
    assert trans < 0.15


def test_grid_lines_on_the_views_are_found_taken_out_and_named(phantom, frames, truth, tmp_path):
    fe = {k: frames[k] for k in ("flexion", "extension")}
    files = write_static_views(phantom, tmp_path, frames=fe, fmt="png")
    for path in files.values():  # the same stationary grid on both exposures: lines every 4.6 px
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64)
        lines = 0.02 * float(img.max()) * np.cos(2 * np.pi * np.arange(img.shape[1]) / 4.6)
        cv2.imwrite(str(path), np.clip(img + lines[None, :], 0, np.iinfo(np.uint16).max).astype(np.uint16))
    lm = _landmark_file(tmp_path / "lm.json", truth["flexion"])
    mm = float(phantom.truth["mm_per_px"][0])
    m = analyze_static([files["flexion"], files["extension"]], landmarks_path=lm, mm_per_px=mm).measurements
    said = m["tracking"]["grid_lines"]
    assert said.count("running up and down, every 4.60 px") == 2
    assert files["flexion"].name in said and files["extension"].name in said
    rot, trans = _errors(m["levels"], _truth_levels(truth, ["flexion", "extension"], (mm, mm)))
    assert rot < 0.3 and trans < 0.15


def test_png_trio_with_mm_per_px_through_the_cli(phantom, frames, truth, tmp_path):
    files = write_static_views(phantom, tmp_path / "in", frames=frames, fmt="png")
    lm = _landmark_file(tmp_path / "lm.json", truth["neutral"])
    mm = float(phantom.truth["mm_per_px"][0])
    out = tmp_path / "out"
    args = ["analyze", *(str(files[p]) for p in ("extension", "flexion", "neutral"))]
    code = main([*args, "--landmarks", str(lm), "--mm-per-px", str(mm), "--out", str(out)])
    assert code == 0
    m = json.loads((out / "measurements.json").read_text())
    assert m["calibration"] == {"mm_per_px": [mm, mm], "source": "user"}
    assert [v["posture_source"] for v in m["static"]["views"]] == ["file name"] * 3
    assert sum("no patient identity" in w for w in m["warnings"]) == 3
    rot, trans = _errors(m["levels"], _truth_levels(truth, ["neutral", "flexion", "extension"], (mm, mm)))
    assert rot < 0.3 and trans < 0.15
    html = (out / "report.html").read_text()
    assert 'id="cine"' not in html  # no cine player: the views side by side as the key frames
    assert 'id="keyframes"' in html and html.count("data:image/") >= 3
    assert "found on the other views of this static study by registering each body" in html


def test_posture_from_content_and_per_view_calibration(phantom, frames, tmp_path):
    mag = {"extension": 1.08}
    files = write_static_views(phantom, tmp_path / "in", frames=frames, magnification=mag, label=False)
    t = static_truth(phantom, frames, magnification=mag)
    lm = _landmark_file(tmp_path / "lm.json", t["neutral"], frame=0)  # view1 = neutral, in the order given
    a = analyze_static(sorted(files.values()), landmarks_path=lm)
    m = a.measurements
    assert [v["posture"] for v in m["static"]["views"]] == ["neutral", "flexion", "extension"]
    assert [Path(v["path"]).name for v in m["static"]["views"]] == ["view1.dcm", "view2.dcm", "view3.dcm"]
    assert all(v["posture_source"] == "content" for v in m["static"]["views"])
    assert m["static"]["views"][2]["mm_per_px"] == pytest.approx([0.3 / 1.08] * 2, rel=1e-4)
    assert any("pixel sizes differ" in w for w in m["warnings"])
    # truth in mm: each view's corners with its own pixel size
    mm_true = {p: {v: c * (0.3 / mag.get(p, 1.0)) for v, c in t[p].items()} for p in t}
    rot, trans = _errors(m["levels"], _truth_levels(mm_true, ["neutral", "flexion", "extension"], (1.0, 1.0)))
    assert rot < 0.3 and trans < 0.15


def test_landmarks_on_every_view_skip_the_registration(phantom, frames, truth, tmp_path):
    files = write_static_views(phantom, tmp_path, frames=frames)
    doc = {
        "schema": "dmx.landmarks/1",
        "frames": {
            "neutral": {"points": _points(truth["neutral"])},
            "flexion.dcm": _points(truth["flexion"]),
            "2": {"points": _points(truth["extension"])},
        },
    }
    lm = tmp_path / "lm.json"
    lm.write_text(json.dumps(doc))
    a = analyze_static(list(files.values()), landmarks_path=lm)
    assert [v["landmarks"] for v in a.measurements["static"]["views"]] == ["reference", "given", "given"]
    truth_lv = _truth_levels(truth, ["neutral", "flexion", "extension"], tuple(phantom.truth["mm_per_px"]))
    rot, trans = _errors(a.measurements["levels"], truth_lv)
    assert rot < 1e-9 and trans < 1e-9


def test_views_without_landmarks_are_detected_and_say_so(phantom, frames, tmp_path):
    files = write_static_views(phantom, tmp_path, frames=frames)
    a = analyze_static(list(files.values()), landmarks_path=None)
    m = a.measurements
    assert m["landmarks_source"] == "auto"
    origins = [v["landmarks"] for v in m["static"]["views"]]
    assert origins.count("reference") == 1
    assert set(origins) <= {"reference", "detected", "registered"} and "given" not in origins
    assert "detected" in origins  # the default phantom's bodies are found on every view


def test_cine_options_are_refused_for_a_static_study(phantom, frames, tmp_path, capsys):
    files = write_static_views(phantom, tmp_path, frames=frames)
    code = main(["analyze", *map(str, files.values()), "--smooth-frames", "5", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--smooth-frames do not apply to a static study" in capsys.readouterr().err


# --------------------------------------------------------------------------- folders and batch


def test_a_folder_of_labelled_views_is_a_static_study_for_dmx_analyze(phantom, frames, truth, tmp_path):
    files = write_static_views(phantom, tmp_path / "views", frames=frames)
    lm = _landmark_file(tmp_path / "lm.json", truth["neutral"])
    out = tmp_path / "out"
    assert (
        main(["analyze", str(tmp_path / "views"), "--landmarks", str(lm), "--out", str(out), "--no-report"])
        == 0
    )
    m = json.loads((out / "measurements.json").read_text())
    assert m["input"]["paths"] == [str(files[p]) for p in ("neutral", "flexion", "extension")]
    assert m["static"]["description"] == "static F/E, 3 views"


def test_batch_groups_the_views_of_one_patient_and_date(phantom, frames, tmp_path):
    from dmx.batch.discovery import discover_inputs

    write_static_views(phantom, tmp_path / "inbox" / "a", frames=frames)
    other = make_phantom(frames=20, seed=9)  # another patient's single DX beside them is its own study
    write_static_views(other, tmp_path / "inbox" / "a", frames={"lateral": 0})
    jobs, unusable = discover_inputs(tmp_path / "inbox")
    assert not unusable
    kinds = sorted(j.kind for j in jobs)
    assert kinds == ["dicom-series", "static F/E, 3 views"], kinds
    static = next(j for j in jobs if j.kind.startswith("static"))
    assert sorted(p.name for p in static.paths) == ["extension.dcm", "flexion.dcm", "neutral.dcm"]


def test_dmx_info_on_a_still_image(tmp_path, capsys):
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), np.zeros((20, 30), np.uint8))
    assert main(["info", str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["kind"], d["frames"], d["rows"], d["columns"]) == ("still", 1, 20, 30)
    assert d["calibration"] == {"mm_per_px": None, "source": "none"}


def test_the_schema_refuses_a_static_block_with_an_unknown_posture(phantom, frames, truth, tmp_path):
    from dmx.measure.validation import MeasurementsSchemaError

    fe = {k: frames[k] for k in ("flexion", "extension")}
    files = write_static_views(phantom, tmp_path, frames=fe)
    lm = _landmark_file(tmp_path / "lm.json", truth["flexion"])
    doc = analyze_static(list(files.values()), landmarks_path=lm).measurements
    validate_measurements(doc)
    doc["static"]["views"][0]["posture"] = "sideways"
    with pytest.raises(MeasurementsSchemaError):
        validate_measurements(doc)


@pytest.mark.parametrize("exposure", ["gain", "gamma"])
def test_register_views_across_exposures(phantom, frames, truth, exposure):
    img = np.asarray(phantom.frames[frames["extension"]], dtype=float)
    other = np.clip(0.6 * img + 40, 0, 255) if exposure == "gain" else 255 * (img / 255) ** 0.7
    lm = Landmarks(frame=0, corners_px={v: c for v, c in truth["neutral"].items() if v in BODIES})
    fit = register_views(phantom.frames[frames["neutral"]], lm, other.astype(np.uint8))
    assert fit.reason == (None,) * 6
    for i, v in enumerate(fit.vertebrae):
        assert np.linalg.norm(fit.corners_px[i] - truth["extension"][v], axis=1).max() < 0.5, v


def _view(name: str, posture: Posture | None = None):
    from dmx.io.sequence import Sequence
    from dmx.io.static import View

    seq = Sequence(
        frames=np.zeros((1, 4, 4), np.uint8), mm_per_px=None, calibration_source=CalibrationSource.NONE
    )
    return View(seq, Path(name), posture, PostureSource.TAG if posture else None)


@pytest.mark.parametrize(
    ("views", "curves", "expected"),
    [
        # two unlabelled views: a flexion/extension pair, smallest Cobb = flexion
        ([("a", None), ("b", None)], [30.0, -10.0], [("b", "flexion"), ("a", "extension")]),
        # a neutral view and one unlabelled: flexion when its Cobb is below the neutral one's
        ([("n", Posture.NEUTRAL), ("x", None)], [20.0, -5.0], [("n", "neutral"), ("x", "flexion")]),
        ([("n", Posture.NEUTRAL), ("x", None)], [20.0, 45.0], [("n", "neutral"), ("x", "extension")]),
        # three, one labelled flexion: the other two by rank
        (
            [("e", None), ("f", Posture.FLEXION), ("n", None)],
            [44.0, -9.0, 21.0],
            [("n", "neutral"), ("f", "flexion"), ("e", "extension")],
        ),
    ],
)
def test_order_by_curve(views, curves, expected):
    from dmx.io.static import StaticStudy, order_by_curve

    study, index = order_by_curve(StaticStudy(tuple(_view(n, p) for n, p in views)), curves)
    assert [(str(v.path), v.posture.value) for v in study.views] == expected
    assert [views[i][0] for i in index] == [n for n, _ in expected]


def test_order_by_curve_without_an_angle_names_the_view():
    from dmx.io.static import StaticStudy, order_by_curve

    with pytest.raises(InputError, match="b.*--neutral, --flexion or --extension"):
        order_by_curve(StaticStudy((_view("a"), _view("b"))), [10.0, None])


def test_views_of_different_sizes_keep_their_pixels(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(10, 200, (50, 60), dtype=np.uint8)
    b = rng.integers(10, 200, (40, 70), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "flexion.png"), a)
    cv2.imwrite(str(tmp_path / "extension.png"), b)
    study = load_static([tmp_path])
    assert [v.posture for v in study.views] == [Posture.FLEXION, Posture.EXTENSION]
    seq = study.sequence()
    assert seq.frames.shape == (2, 50, 70) and seq.kind == "static" and seq.frame_time_ms is None
    assert np.array_equal(seq.frames[0, :50, :60], a) and np.array_equal(seq.frames[1, :40, :70], b)
    assert (seq.frames[0, :, 60:] == a.min()).all()  # padding: the view's own lowest value


# --- small acquisition-look views: the shoulders over C7, the view's scale, bodies that look alike ------


def _acquisition_views(generator: int, first: int, index: int):
    """Flexion and extension frames of one acquisition-look phantom (as ``benchmarks/heldout.py static``
    draws them), the true corners on both, and the true corners' visibility on extension."""
    from dmx.phantom.appearance import draw_appearance
    from dmx.training.fit import training_specs

    kw = training_specs(index + 1, seed=generator, first_seed=first)[index]
    kw["appearance"] = draw_appearance("acquisition", seed=kw["seed"], max_size_px=768)
    kw["frames"] = 30
    ph = make_phantom(**kw)
    key = ph.truth["key_frames"]
    f, e = int(key["flexion"]), int(key["extension"])
    t = ph.truth["tracks"]
    truth = {
        v: np.array([t[v.value][c.value] for c in CORNERS], dtype=float).transpose(1, 0, 2)
        for v in ph.landmarks.corners_px
    }
    frames = np.asarray(ph.frames)
    lm = Landmarks(frame=0, corners_px={v: c[f] for v, c in truth.items()})
    return frames[f], frames[e], lm, {v: c[e] for v, c in truth.items()}


def _view_errors(fit, truth) -> dict:
    return {
        v: float(np.linalg.norm(fit.corners_px[i] - truth[v], axis=1).max())
        for i, v in enumerate(fit.vertebrae)
    }


def test_register_views_leaves_the_still_shoulders_out_of_c7():
    """C7 half under the shoulders (a 382 px view, 0.45 mm/px): its template's strongest structure is the
    shoulders' edge, at the same place on both views; matched, it put C7 6.7 px and 6.6 deg off at
    quality 0.99. Left out (what is still between the views), C7 is found where it is."""
    from dmx.tracking.views import still_structure

    flex, ext, lm, truth = _acquisition_views(9393, 920000, 2)
    still = still_structure(flex, ext, 35.0)
    c7 = lm.corners_px[Vertebra.C7]
    mask = np.zeros(flex.shape, np.uint8)
    cv2.fillConvexPoly(mask, np.round(c7).astype(np.int32), 1)
    assert still[mask > 0].mean() > 0.1  # the shoulders' edge crosses C7's reference template
    c5 = np.zeros(flex.shape, np.uint8)
    cv2.fillConvexPoly(c5, np.round(lm.corners_px[Vertebra.C5]).astype(np.int32), 1)
    assert still[c5 > 0].mean() < 0.02  # a body that moves keeps its own pixels
    kept = _view_errors(register_views(flex, lm, ext, leave_out_still=False), truth)
    assert kept[Vertebra.C7] > 4.0  # what the test guards against
    left_out = register_views(flex, lm, ext)
    err = _view_errors(left_out, truth)
    assert err[Vertebra.C7] < 1.5
    for v in (Vertebra.C4, Vertebra.C5, Vertebra.C6):
        assert err[v] < 0.5, (v, err)
    assert still_structure(flex, ext[:-1], 35.0) is None  # no common pixel grid


def test_register_views_scale_is_not_chosen_by_one_wrong_body():
    """The view's scale was the mean residual over the bodies: one body matched to the wrong place (residual
    a hundred times the others') put it at 0.98, every body 1.3-1.6 px off. The bodies trusted at some
    scale vote by the median of their relative residuals."""
    flex, ext, lm, truth = _acquisition_views(5252, 860000, 5)
    fit = register_views(flex, lm, ext)
    assert fit.scale == pytest.approx(1.0, abs=0.004)
    err = _view_errors(fit, truth)
    for v in (Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6):
        assert err[v] < 0.5, (v, err)


def test_register_views_verifies_candidates_bodies_that_look_alike():
    """Bodies turning 18-60 degrees between the views: at the coarse search's 16 px they look alike and
    the chain took each body's lower neighbour (C3 on C4's place ...), which the refinement rejected:
    nothing found. Every candidate is now refined and scored before the chain; C2, not among its coarse
    candidates, is refined from where C3 puts it."""
    flex, ext, lm, truth = _acquisition_views(5252, 860000, 12)
    fit = register_views(flex, lm, ext)
    err = _view_errors(fit, truth)
    for v in (Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6):
        assert err[v] < 0.5, (v, err)
    for v in fit.vertebrae:  # nothing reported far from its place
        assert not np.isfinite(err[v]) or err[v] < 1.0, (v, err)
    assert fit.reason[fit.vertebrae.index(Vertebra.C7)] is not None  # 36 % visible: honestly not found


def test_register_views_never_reports_a_body_with_no_neighbour_found(phantom, frames, truth, monkeypatch):
    """A body found with neither neighbour found has had no anatomical check of its place (held out: a
    lone C6 241 px off, that even registered back onto itself); it is NaN with its reason. (The bundled
    phantom's bodies look alike, so the level check alone already refuses a lone body here: it is turned
    off to test this rule on its own.)"""
    import dmx.tracking.views as views
    from dmx.tracking.views import ISOLATED, NOT_IN_VIEW

    monkeypatch.setattr(views, "_ambiguous", lambda cands, *a, **k: [False] * len(cands))

    view = np.array(phantom.frames[frames["extension"]], dtype=np.float32)
    fill = float(np.median(view))
    for v, quad in truth["extension"].items():
        if v in BODIES and v is not Vertebra.C5:
            c = quad.mean(axis=0)
            cv2.fillConvexPoly(view, np.round(c + 1.4 * (quad - c)).astype(np.int32), fill)
    lm = Landmarks(frame=0, corners_px={v: c for v, c in truth["flexion"].items() if v in BODIES})
    fit = register_views(phantom.frames[frames["flexion"]], lm, view)
    i = fit.vertebrae.index(Vertebra.C5)
    # with OpenCV 5.1 (its warp differs from 5.0 in the fifth decimal) the lone C5 is not found at all
    assert fit.reason[i] in (ISOLATED, NOT_IN_VIEW)
    assert np.isnan(fit.corners_px[i]).all()
    assert all(np.isnan(fit.corners_px[k]).all() for k in range(len(fit.vertebrae)))
    # without the blanking every body is reported where it is (the rule does not remove found columns)
    full = register_views(phantom.frames[frames["flexion"]], lm, phantom.frames[frames["extension"]])
    err = np.linalg.norm(full.corners_px[i] - truth["extension"][Vertebra.C5], axis=1).max()
    assert err < 0.5, full.reason


def test_register_views_reports_no_body_that_does_not_register_back_onto_itself(phantom, frames, truth):
    """Only C4 and C5 left on the view (the others blanked): the chain puts C3 and C4 on C4's and C5's
    places (a level off, 64-67 px) and nothing else objects. Registered back onto the reference they do
    not land on themselves, and are NaN with that reason."""
    from dmx.tracking.views import NOT_CONFIRMED

    view = np.array(phantom.frames[frames["extension"]], dtype=np.float32)
    fill = float(np.median(view))
    for v, quad in truth["extension"].items():
        if v in BODIES and v not in (Vertebra.C4, Vertebra.C5):
            c = quad.mean(axis=0)
            cv2.fillConvexPoly(view, np.round(c + 1.4 * (quad - c)).astype(np.int32), fill)
    lm = Landmarks(frame=0, corners_px={v: c for v, c in truth["flexion"].items() if v in BODIES})
    unchecked = register_views(phantom.frames[frames["flexion"]], lm, view, confirm=False)
    err = _view_errors(unchecked, truth["extension"])
    assert err[Vertebra.C3] > 20 and err[Vertebra.C4] > 20  # what the check is for
    fit = register_views(phantom.frames[frames["flexion"]], lm, view)
    assert np.isnan(fit.corners_px).all()
    for v in (Vertebra.C3, Vertebra.C4):
        assert fit.reason[fit.vertebrae.index(v)] == NOT_CONFIRMED
