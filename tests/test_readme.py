"""The README's two Quick-start commands are what CI and users really run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_readme_has_exactly_two_quick_start_commands():
    cmds = _quick_start_commands()
    assert len(cmds) == 2, cmds
    assert "dmx " in cmds[0] and "sample_data/" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _quick_start_commands()[1] in ci.splitlines()


def test_readme_main_command_names_existing_sample_data():
    cmd = _quick_start_commands()[0]
    paths = re.findall(r"sample_data/\S*", cmd)
    assert paths
    for p in paths:
        assert (ROOT / p).exists(), p


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The "From Python" example, run as written (sample paths resolved from the repository)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.+?)\n```", section, flags=re.S)
    assert len(code.splitlines()) == 6  # import, blank line, and the five-line example
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace('"sample_data/', f'"{ROOT}/sample_data/'), "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == str(
        ["translation_gt_3_5mm", "translation_gt_20pct", "translation_gt_2mm"]
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "landmarks.csv",
        "measurements.json",
        "report.html",
    ]
