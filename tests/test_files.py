"""Tests of dmx.files: atomic text writes."""

from __future__ import annotations

import os
import stat

import pytest

from dmx.files import write_text_atomic
from dmx.landmarks import Landmarks, read_landmarks, write_landmarks


def test_writes_whole_readable_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "new" / "out.json"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "second\n", fsync=True)
    assert path.read_text() == "second\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "bad \ud800 surrogate")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_landmark_files_are_written_through_it(tmp_path):
    import numpy as np

    from dmx.anatomy import Vertebra

    lm = Landmarks(2, {Vertebra.C3: np.array([[4.0, 1.0], [1.0, 1.0], [1.0, 4.0], [4.0, 4.0]])})
    write_landmarks(lm, tmp_path / "sub" / "L.json")
    back = read_landmarks(tmp_path / "sub" / "L.json")
    assert back.frame == 2 and np.array_equal(back.corners_px[Vertebra.C3], lm.corners_px[Vertebra.C3])
    assert stat.S_IMODE(os.stat(tmp_path / "sub" / "L.json").st_mode) == 0o644


def test_prepare_output_dir_creates_it_and_refuses_a_file_in_the_way(tmp_path):
    from dmx.errors import OutputError
    from dmx.files import prepare_output_dir, prepare_output_file

    made = prepare_output_dir(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []  # the write check leaves nothing behind
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="it is a file, not a folder"):
        prepare_output_dir(tmp_path / "f")
    with pytest.raises(OutputError, match=f"{tmp_path / 'f'} is a file, not a folder"):
        prepare_output_dir(tmp_path / "f" / "g" / "h")
    assert prepare_output_file(tmp_path / "c" / "t.csv") == tmp_path / "c" / "t.csv"
    assert (tmp_path / "c").is_dir() and not (tmp_path / "c" / "t.csv").exists()
    with pytest.raises(OutputError, match="it is a folder"):
        prepare_output_file(tmp_path / "c")


def test_read_json_names_the_file_and_the_problem(tmp_path):
    from dmx.errors import InputError, LandmarkError
    from dmx.files import read_json

    good = tmp_path / "t.json"
    good.write_text('{"a": 1}', encoding="utf-8")
    assert read_json(good, what="table") == {"a": 1}
    bad = tmp_path / "bad.json"
    bad.write_text("{half", encoding="utf-8")
    cases = {
        tmp_path / "nope.json": "table not found (give X)",
        tmp_path: "table expected, found a folder",
        bad: "table is not valid JSON (",
    }
    for path, message in cases.items():
        with pytest.raises(InputError) as exc:
            read_json(path, what="table", not_found="give X")
        assert str(exc.value).startswith(f"{path}: {message}")
    with pytest.raises(LandmarkError, match="landmark file not found"):
        read_json(tmp_path / "nope.json", what="landmark file", error=LandmarkError)
