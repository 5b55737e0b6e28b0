from pathlib import Path

import pytest
from cli_support import run_dmx

from dmx.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "lordotic_stable"


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "analyze" in capsys.readouterr().out


def test_unknown_command_is_usage_error(capsys):
    assert main(["frobnicate"]) == 2


def test_missing_argument_is_usage_error(capsys):
    assert main(["info"]) == 2


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["info"], "dmx: error: Missing argument 'path'. (dmx info --help)"),
        (
            ["analyze", "x.dcm", "--bogus"],
            "dmx: error: No such option: --bogus (Possible options: --out) (dmx analyze --help)",
        ),
        (["frobnicate"], "dmx: error: No such command 'frobnicate'. (dmx --help)"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, line):
    """Click's own usage errors are one stderr line like every other dmx error (no box, no usage dump)."""
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [line]


def test_bad_option_value_is_one_line_naming_the_option(capsys):
    assert main(["batch", "inbox", "--jobs", "abc"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("dmx: error: Invalid value for '--jobs': ") and line.endswith("(dmx batch --help)")


def test_bare_dmx_prints_the_help_exit_2(capsys):
    assert main([]) == 2
    captured = capsys.readouterr()
    assert "analyze" in captured.out and captured.err.strip() == ""


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    p = tmp_path / "afile"
    p.write_text("not a folder")
    return p


def _no_work(*args, **kwargs):
    raise AssertionError("the output location must be checked before any work")


@pytest.mark.parametrize(
    ("out", "problem"),
    [
        ("afile/out", "cannot create the output folder: {afile} is a file, not a folder"),
        ("afile", "cannot be used as the output folder: it is a file, not a folder"),
        ("/proc/x", "cannot create the output folder (No such file or directory)"),
    ],
)
def test_analyze_unusable_out_is_one_line_exit_2_before_any_work(
    out, problem, afile, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("dmx.pipeline.analyze", _no_work)
    monkeypatch.setattr("dmx.io.load.load_sequence", _no_work)
    target = Path(out) if out.startswith("/") else tmp_path / out
    code = main(["analyze", str(SAMPLE / "study.dcm"), "--out", str(target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"dmx: error: {target}: {problem.format(afile=afile)}"]


def test_analyze_out_under_a_file_real_process_no_traceback(afile):
    proc = run_dmx("analyze", str(SAMPLE / "study.dcm"), "--out", str(afile / "out"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"dmx: error: {afile / 'out'}: cannot create the output folder: {afile} is a file, not a folder"
    ]
    assert afile.read_text() == "not a folder"


def test_aggregate_and_landmarks_under_a_file_name_the_file_in_the_way(afile, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("dmx.aggregate.aggregate", _no_work)
    monkeypatch.setattr("dmx.pipeline.propose_landmarks", _no_work)
    results = tmp_path / "results"
    results.mkdir()
    assert main(["aggregate", str(results), "--out", str(afile / "t.csv")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"dmx: error: {afile / 't.csv'}: cannot write the table: {afile} is a file, not a folder"
    ]
    assert main(["aggregate", str(results), "--out", str(tmp_path)]) == 2
    assert "it is a folder" in capsys.readouterr().err
    study = str(SAMPLE / "study.dcm")
    assert main(["landmarks", study, "--out", str(afile / "L.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"dmx: error: {afile / 'L.json'}: cannot write the landmark file: {afile} is a file, not a folder"
    ]
    review = ["--review", str(afile / "r.html")]
    assert main(["landmarks", study, "--out", str(tmp_path / "L.json"), *review]) == 2
    err = capsys.readouterr().err
    assert "File exists" not in err and f"{afile} is a file, not a folder" in err
    assert not (tmp_path / "L.json").exists()
