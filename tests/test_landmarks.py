import json

import numpy as np
import pytest

from dmx.anatomy import UpperCervicalPoint, Vertebra
from dmx.errors import LandmarkError
from dmx.landmarks import parse_landmarks, read_landmarks, write_landmarks


def _doc():
    return {
        "schema": "dmx.landmarks/1",
        "frame": 3,
        "points": {
            "C3": {"ant_sup": [10, 20], "post_sup": [40, 21], "post_inf": [41, 45], "ant_inf": [11, 44]},
            "C2": {"dens_ant": [5.5, 2.0]},
            "C1": {"arch_post": [1.0, 2.0]},
        },
    }


def test_parse_and_roundtrip(tmp_path):
    lm = parse_landmarks(_doc())
    assert lm.frame == 3
    assert lm.vertebrae == (Vertebra.C3,)
    np.testing.assert_array_equal(lm.corners_px[Vertebra.C3][2], [41, 45])
    np.testing.assert_array_equal(lm.extra_px[UpperCervicalPoint.C2_DENS_ANT], [5.5, 2.0])
    p = tmp_path / "l.json"
    write_landmarks(lm, p)
    again = read_landmarks(p)
    np.testing.assert_array_equal(again.corners_px[Vertebra.C3], lm.corners_px[Vertebra.C3])
    assert again.extra_px.keys() == lm.extra_px.keys()


def test_vertebra_with_three_corners_is_rejected_by_name():
    doc = _doc()
    del doc["points"]["C3"]["ant_inf"]
    with pytest.raises(LandmarkError, match="C3 has 3 of its 4 corners"):
        parse_landmarks(doc)


@pytest.mark.parametrize("bad", [[1], [1, "a"], [1, float("nan")], "x", [True, 2]])
def test_bad_point_is_rejected(bad):
    doc = _doc()
    doc["points"]["C3"]["ant_sup"] = bad
    with pytest.raises(LandmarkError, match="C3.ant_sup"):
        parse_landmarks(doc)


def test_unreadable_file_names_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(LandmarkError, match="broken.json"):
        read_landmarks(p)
    with pytest.raises(LandmarkError, match="not found"):
        read_landmarks(tmp_path / "missing.json")
    p.write_text(json.dumps({"schema": "other/2", "points": {}}))
    with pytest.raises(LandmarkError, match="unsupported schema"):
        read_landmarks(p)
