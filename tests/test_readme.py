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


def test_the_measurement_contract_is_in_the_repository_and_linked():
    doc = ROOT / "docs" / "measurements.md"
    text = doc.read_text(encoding="utf-8")
    for n in range(1, 10):  # the contract's sections 1-8, and how dmx settles what they leave open
        assert re.search(rf"^## {n}\. ", text, flags=re.M), n
    assert "12.5 %" in text and "flags_not_evaluated" in text and "majority" in text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/measurements.md)" in readme
    for link in re.findall(r"\]\(([^)#:]+)\)", readme):  # every relative link resolves
        assert (ROOT / link).exists(), link


def test_nothing_points_to_a_spec_file_outside_the_repository():
    files = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("dmx/**/*.py"),
        *ROOT.glob("dmx/**/*.json"),
        *ROOT.glob("dmx/**/*.html"),
    ]
    stale = [
        str(p.relative_to(ROOT)) for p in files if "spec/measurements.md" in p.read_text(encoding="utf-8")
    ]
    assert stale == []


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    """The "From Python" example, run as written (sample paths resolved from the repository)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.+?)\n```", section, flags=re.S)
    assert len(code.splitlines()) == 8  # import, blank line, and the example (formatted as ruff formats it)
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
