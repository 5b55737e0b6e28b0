"""The normative reference: the packaged table, a clinic's own table, z-scores and the report bar."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
from followup_support import make_visit

from dmx.cli import main
from dmx.errors import InputError
from dmx.normative import (
    NORMATIVE_MEASURES,
    add_normative,
    default_normative,
    load_normative,
    normative_block,
    normative_path_from_config,
    parse_normative,
)
from dmx.report.plots import reference_bar
from dmx.schema import measurements_schema

CLINIC = {
    "schema": "dmx.normative/1",
    "title": "Clinic X volunteers",
    "sources": {"x": {"citation": "Clinic X, 40 volunteers, 2026 (internal)"}},
    "levels": {
        "C4-C5": {
            "translation_mm": {"mean": 2.0, "sd": 0.5, "n": 40, "source": "x"},
            "rotation_rom_deg": {"mean": 16.0, "sd": 4.0, "n": 40, "source": "x"},
        }
    },
}


@pytest.fixture(scope="module")
def visit(tmp_path_factory):
    return make_visit(tmp_path_factory.mktemp("visit"), seed=3, extra_mm=3.25, study_date="20260415")


@pytest.fixture(scope="module")
def phantom_dir(visit):
    return visit.parent / "input"


@pytest.fixture(scope="module")
def analysis_doc(visit):
    return json.loads((visit / "measurements.json").read_text())


def _packaged_doc() -> dict:
    """The packaged table as written on disk (read independently of dmx.normative)."""
    from importlib import resources

    return json.loads(resources.files("dmx.data").joinpath("normative.json").read_text(encoding="utf-8"))


def test_default_table_values_each_carry_their_provenance():
    doc = _packaged_doc()
    table = default_normative()
    assert set(table.levels) == {"C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7"}
    for key, src in doc["sources"].items():
        for field in ("citation", "population", "imaging", "definition", "mapping", "read_from"):
            assert src[field].strip(), (key, field)
    for lv, refs in doc["levels"].items():
        for name, ref in refs.items():
            parsed = table.levels[lv][name]
            assert (parsed["mean"], parsed["sd"], parsed["n"]) == (ref["mean"], ref["sd"], ref["n"])
            assert ref["read_from"] and ref["source"] in doc["sources"]
            read = doc["sources"][ref["source"]]["read_from"]
            if "derivation" in ref:
                # a sum of two numbers that were read: both are in the source's record, and add up
                a, b = (float(x) for x in re.findall(r"(\d+\.\d) mm", ref["derivation"])[:2])
                assert a + b == pytest.approx(ref["mean"]) and f"{a}" in read and f"{b}" in read
            else:
                assert f"{ref['mean']}" in read, (lv, name)  # the value is in the quoted source text
            if ref["sd"] is not None:
                assert f"{ref['sd']}" in read, (lv, name)


def test_default_table_holds_the_published_values_and_no_unread_sd():
    table = default_normative()
    # Anderst et al. 2015, abstract: the only SDs that could be read
    rot = {lv: table.levels[lv]["rotation_rom_deg"] for lv in ("C2-C3", "C5-C6")}
    assert [(r["mean"], r["sd"], r["source"]) for r in rot.values()] == [
        (12.7, 2.6, "anderst2015"),
        (19.7, 3.7, "anderst2015"),
    ]
    assert table.levels["C5-C6"]["rotation_rom_deg"]["n"] == 29
    assert "J Biomech. 2015;48(7):1286" in table.citation("anderst2015")
    # Wu et al. 2007, abstract: means only
    assert [table.levels[lv]["translation_pct"]["mean"] for lv in sorted(table.levels)] == [
        9.5,
        13.7,
        16.6,
        15.0,
        8.6,
    ]
    assert "Eur Spine J. 2007;16(9):1435" in table.citation("wu2007")
    with_sd = {(lv, m) for lv, refs in table.levels.items() for m, r in refs.items() if r["sd"] is not None}
    assert with_sd == {("C2-C3", "rotation_rom_deg"), ("C5-C6", "rotation_rom_deg")}
    assert "translation_mm" not in table.levels["C2-C3"]  # no posterior translation for C2/3 in the abstract
    assert "white_panjabi1990" not in table.sources  # representative values that could not be re-read


def test_wu_mm_and_percent_describe_the_same_motion():
    """Wu et al.'s mm totals over their % totals give one vertebral AP dimension (~15 mm) at every level."""
    table = default_normative()
    depths = [
        100 * refs["translation_mm"]["mean"] / refs["translation_pct"]["mean"]
        for refs in table.levels.values()
        if "translation_mm" in refs
    ]
    assert len(depths) == 4
    assert max(depths) - min(depths) < 0.5 and 14.0 < min(depths) and max(depths) < 17.0


def test_block_has_every_measure_and_z_only_with_sd():
    table = default_normative()
    values = {"rotation_rom_deg": 25.0, "translation_mm": 5.0, "translation_pct": 30.0}
    block = normative_block("C5-C6", values, table)
    assert set(block) == {"table", "table_origin", *NORMATIVE_MEASURES}
    ref = table.levels["C5-C6"]["rotation_rom_deg"]
    assert block["rotation_rom_deg"]["z"] == pytest.approx((25.0 - ref["mean"]) / ref["sd"])
    assert block["rotation_rom_deg"]["source"].startswith("Anderst WJ")
    assert block["translation_mm"]["mean"] == table.levels["C5-C6"]["translation_mm"]["mean"]
    assert block["translation_mm"]["z"] is None and block["translation_pct"]["z"] is None  # no SD
    other = normative_block("C4-C5", values, table)
    assert other["rotation_rom_deg"] is None  # no readable published value for C4-C5
    assert (
        normative_block("C5-C6", {**values, "rotation_rom_deg": None}, table)["rotation_rom_deg"]["z"] is None
    )


def test_z_from_a_clinic_table_with_sd():
    table = parse_normative(CLINIC, origin="clinic.json")
    block = normative_block("C4-C5", {"translation_mm": 5.3, "rotation_rom_deg": None}, table)
    assert block["translation_mm"]["z"] == pytest.approx((5.3 - 2.0) / 0.5)
    assert block["rotation_rom_deg"]["z"] is None  # the patient's value is missing: no z
    assert block["translation_pct"] is None
    assert normative_block("C2-C3", {"translation_mm": 1.0}, table)["translation_mm"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"schema": "other"}, "not a normative table"),
        ({"levels": {"C9-C10": {}}}, "unknown level 'C9-C10'"),
        ({"levels": {"C4-C5": {"angle": {"mean": 1, "sd": 1, "source": "x"}}}}, "unknown measure"),
        ({"levels": {"C4-C5": {"translation_mm": {"mean": 1, "sd": 0, "source": "x"}}}}, "must be positive"),
        ({"levels": {"C4-C5": {"translation_mm": {"mean": 1, "sd": None, "source": "y"}}}}, "is not a key"),
    ],
)
def test_bad_tables_are_refused_naming_the_file(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**CLINIC, **change}))
    with pytest.raises(InputError, match=message) as exc:
        load_normative(path)
    assert str(path) in str(exc.value)


def test_config_file_names_the_table_relative_to_itself(tmp_path):
    (tmp_path / "ref.json").write_text(json.dumps(CLINIC))
    cfg = tmp_path / "dmx.toml"
    cfg.write_text('[thresholds]\ntranslation_mm = 3.0\n\n[normative]\nfile = "ref.json"\n')
    assert normative_path_from_config(cfg) == tmp_path / "ref.json"
    assert load_normative(normative_path_from_config(cfg)).title == "Clinic X volunteers"
    cfg.write_text("[thresholds]\ntranslation_mm = 3.0\n")
    assert normative_path_from_config(cfg) is None


def test_every_level_of_an_analysis_carries_the_block_and_validates(analysis_doc):
    for lv, entry in analysis_doc["levels"].items():
        assert entry["normative"]["translation_pct"]["source"].startswith("Wu SK"), lv
    jsonschema.validate(analysis_doc, measurements_schema())


def test_analyze_with_a_clinic_table(tmp_path, phantom_dir, capsys):
    ref = tmp_path / "clinic.json"
    ref.write_text(json.dumps(CLINIC))
    out = tmp_path / "out"
    code = main(
        [
            "analyze",
            str(phantom_dir / "study.dcm"),
            "--landmarks",
            str(phantom_dir / "landmarks.json"),
            "--out",
            str(out),
            "--no-report",
            "--normative",
            str(ref),
        ]
    )
    assert code == 0
    doc = json.loads((out / "measurements.json").read_text())
    block = doc["levels"]["C4-C5"]["normative"]
    assert block["table_origin"] == str(ref)
    t = doc["levels"]["C4-C5"]["translation_mm"]
    assert block["translation_mm"]["z"] == pytest.approx((t - 2.0) / 0.5)
    assert doc["levels"]["C2-C3"]["normative"]["translation_mm"] is None


def test_analyze_with_a_missing_table_is_one_line(tmp_path, phantom_dir, capsys):
    code = main(
        ["analyze", str(phantom_dir / "study.dcm"), "--landmarks", str(phantom_dir / "landmarks.json"),
         "--out", str(tmp_path / "o"), "--normative", str(tmp_path / "nope.json")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"dmx: error: {tmp_path / 'nope.json'}: normative table not found"]


def test_reference_bar_draws_band_only_with_sd():
    with_sd = reference_bar(5.3, mean=2.0, sd=0.5, limit=3.5, unit="mm")
    assert 'class="ref-band"' in with_sd and 'class="ref-value"' in with_sd and 'class="ref-limit"' in with_sd
    no_sd = reference_bar(None, mean=16.6, sd=None, unit="%")
    assert 'class="ref-band"' not in no_sd and 'class="ref-value"' not in no_sd
    assert "not measured" in no_sd


def test_add_normative_fills_every_level():
    doc = {"levels": {lv: {"rotation_rom_deg": 10.0} for lv in ("C2-C3", "C6-C7")}}
    add_normative(doc)
    ref = default_normative().levels["C2-C3"]["rotation_rom_deg"]
    assert doc["levels"]["C2-C3"]["normative"]["rotation_rom_deg"]["z"] == pytest.approx(
        (10.0 - ref["mean"]) / ref["sd"]
    )
    assert doc["levels"]["C6-C7"]["normative"]["rotation_rom_deg"] is None
    assert doc["levels"]["C6-C7"]["normative"]["translation_pct"]["mean"] == 8.6


def test_report_section_shows_each_level_against_the_reference():
    from report_fixtures import make_analysis

    from dmx.report import render_report

    analysis = make_analysis(n_frames=16, size_px=192)
    assert "normative" not in next(iter(analysis.measurements["levels"].values()))
    assert 'id="normative"' not in render_report(analysis, cine=False)  # an older file: no section

    add_normative(analysis.measurements)
    html = render_report(analysis, cine=False)
    section = html.split('<section id="normative"', 1)[1].split("</section>", 1)[0]
    levels = analysis.measurements["levels"]
    table = default_normative()
    refs = [(lv, m, r) for lv in levels for m, r in table.levels.get(lv, {}).items()]
    with_z = [(lv, m, r) for lv, m, r in refs if r["sd"] is not None and levels[lv].get(m) is not None]
    assert with_z  # the default table gives a band and a z somewhere
    assert section.count('<tr><th scope="row">') == len(levels)
    assert section.count('<svg class="refbar"') == len(refs)
    assert section.count('class="ref-band"') == sum(r["sd"] is not None for _, _, r in refs)
    assert section.count("no z (no SD)") == sum(r["sd"] is None for _, _, r in refs)
    for lv, m, r in with_z:
        z = (levels[lv][m] - r["mean"]) / r["sd"]
        assert (
            f"{r['mean']:.1f} ± {r['sd']:.1f} SD (n = {r['n']}) · z {z:+.1f}".replace("-", "\u2212")
            in section
        )
    assert "Eur Spine J. 2007;16(9):1435-1444" in section and "J Biomech. 2015;48(7):1286-1293" in section

    add_normative(analysis.measurements, parse_normative(CLINIC, origin="clinic.json"))
    section = (
        render_report(analysis, cine=False).split('<section id="normative"', 1)[1].split("</section>")[0]
    )
    t = analysis.measurements["levels"]["C4-C5"]["translation_mm"]
    assert section.count('class="ref-band"') == 2  # C4-C5 translation_mm and rotation_rom_deg
    assert f"z {(t - 2.0) / 0.5:+.1f}".replace("-", "\u2212") in section
    assert "Clinic X, 40 volunteers" in section

    # a level with a published SD whose value was not measured: no z, and not for want of an SD
    lv, m, _ = with_z[0]
    analysis.measurements["levels"][lv][m] = None
    add_normative(analysis.measurements)
    section = (
        render_report(analysis, cine=False).split('<section id="normative"', 1)[1].split("</section>")[0]
    )
    assert section.count("no z (not measured)") == 1
