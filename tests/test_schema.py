"""The measurements.json schema (spec section 8): a full synthetic document validates, broken ones do not."""

from __future__ import annotations

import copy
import json

import jsonschema
import numpy as np
import pytest
from test_measure_support import column_mm, make_tracks, to_image_px

from dmx import __version__
from dmx.measure import MeasurementsSchemaError, measure, quality_json, tracks_json, validate_measurements
from dmx.schema import measurements_schema

N = 4


def full_doc(*, calibrated: bool = True) -> dict:
    angles = np.array([[3.0] * 5, [-2.0] * 5, [6.0] * 5, [1.0] * 5])
    px = to_image_px(column_mm(angles), mm_per_px=(0.2, 0.2))
    px[1, 2] = np.nan  # C4 lost in frame 1
    tracks = make_tracks(px)
    spacing = (0.2, 0.2) if calibrated else None
    m = measure(
        tracks,
        mm_per_px=spacing,
        adi_points_px={"C1.arch_post": np.zeros((N, 2)), "C2.dens_ant": np.ones((N, 2))},
    )
    doc = {
        "schema": "dmx.measurements/1",
        "software": {"name": "dmx", "version": __version__},
        "input": {"paths": ["study/IM0001.dcm"], "sha256": "0" * 64},
        "study": {"patient_id": "ANON", "study_uid": "1.2.3", "series_uid": "1.2.3.4", "study_date": None},
        "calibration": {
            "mm_per_px": list(spacing) if calibrated else None,
            "source": "PixelSpacing" if calibrated else "none",
        },
        "landmarks_source": "file",
        "tracks": tracks_json(tracks),
        "quality": quality_json(tracks),
        **m,
    }
    doc["frames"] = {**m["frames"], "time_ms": [0.0, 66.7, 133.3, 200.0]}
    return json.loads(json.dumps(doc, allow_nan=False))  # exactly what a file would hold


def test_schema_file_is_valid_draft_2020_12_package_data():
    schema = measurements_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    schema["title"] = "changed"
    assert measurements_schema()["title"] != "changed"  # a fresh copy every time


@pytest.mark.parametrize("calibrated", [True, False])
def test_full_synthetic_document_validates(calibrated):
    doc = full_doc(calibrated=calibrated)
    validate_measurements(doc)
    assert doc["tracks"]["C4"]["ant_sup"][1] is None
    assert doc["quality"]["C2"] == [1.0] * N


def _break(doc, path, value=None, *, delete=False):
    target = doc
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "delete", "match"),
    [
        (["levels"], None, True, "'levels' is a required property"),
        (["curve", "flexion", "d_mm"], None, True, "curve/flexion: 'd_mm' is a required property"),
        (["levels", "C3-C4", "angle_deg", 0], float("nan"), False, "levels/C3-C4/angle_deg/0: nan"),
        (["levels", "C3-C4", "offset_pct"], [0.0], False, "1 entries, expected frames.count = 4"),
        (["levels", "C3-C4", "flags"], ["unstable"], False, "levels/C3-C4/flags/0"),
        (["levels", "C3-C4", "rotation_rom_deg"], "12", False, "levels/C3-C4/rotation_rom_deg"),
        (["levels", "C9-C10"], {}, False, "C9-C10"),
        (["curve", "neutral", "class"], "wavy", False, "curve/neutral/class"),
        (["curve", "neutral", "s_type"], "upper_kyphotic", False, "curve/neutral/s_type"),
        (["calibration", "source"], "none", False, "calibration/mm_per_px"),
        (["calibration", "mm_per_px"], [0.0, 0.2], False, "calibration/mm_per_px"),
        (["quality", "C3", 0], 1.5, False, "quality/C3/0"),
        (["tracks", "C3", "ant_sup", 0], [1.0], False, "tracks/C3/ant_sup/0"),
        (["frames", "flexion"], 7, False, "frames/flexion: 7 is not a frame"),
        (["schema"], "dmx.measurements/2", False, "schema"),
        (["input", "sha256"], "abc", False, "input/sha256"),
        (["landmarks_source"], "guess", False, "landmarks_source"),
        (["warnings"], "none", False, "warnings"),
        (["levels", "C3-C4", "angle_uncertainty_deg"], [0.1], False, "1 entries, expected frames.count = 4"),
        (["levels", "C3-C4", "angle_uncertainty_deg", 1], -0.1, False, "angle_uncertainty_deg/1"),
        (["levels", "C3-C4", "rotation_rom_uncertainty_deg"], -1.0, False, "rotation_rom_uncertainty_deg"),
        (["levels", "C3-C4", "translation_uncertainty_mm"], "0.1", False, "translation_uncertainty_mm"),
        (["levels", "C3-C4", "warnings"], "lost", False, "levels/C3-C4/warnings"),
        (["frames", "key_frame_basis"], "cobb", False, "frames/key_frame_basis"),
        (["frames", "key_frame_levels"], ["C1-C2"], False, "frames/key_frame_levels/0"),
    ],
)
def test_broken_documents_are_rejected_naming_the_place(path, value, delete, match):
    doc = _break(full_doc(), path, value, delete=delete)
    with pytest.raises(MeasurementsSchemaError) as info:
        validate_measurements(doc)
    assert any(match in p for p in info.value.problems), info.value.problems
    assert str(info.value).startswith("measurements do not follow dmx.measurements/1: ")


def test_numpy_values_are_reported_as_not_json():
    doc = full_doc()
    doc["levels"]["C3-C4"]["angle_deg"] = np.array(doc["levels"]["C3-C4"]["angle_deg"])
    with pytest.raises(MeasurementsSchemaError):
        validate_measurements(doc)


def test_extra_keys_are_allowed():
    doc = copy.deepcopy(full_doc())
    doc["report"] = {"path": "report.html"}
    doc["levels"]["C3-C4"]["note"] = "anything"
    validate_measurements(doc)


def test_landmark_sources_are_the_schemas():
    from dmx.anatomy import LandmarkSource

    declared = measurements_schema()["properties"]["landmarks_source"]["enum"]
    assert sorted(declared) == sorted(s.value for s in LandmarkSource) == ["auto", "file"]


def test_every_key_of_the_schema_is_documented():
    """docs/measurements.md (sections 8 and 9.6) names every key measurements.json may hold."""
    import re
    from pathlib import Path

    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                names.update(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(measurements_schema())
    assert {"angle_uncertainty_deg", "normative", "static", "key_frame_basis"} <= names
    doc = (Path(__file__).resolve().parents[1] / "docs" / "measurements.md").read_text()
    documented = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", doc))
    assert sorted(names - documented) == []
