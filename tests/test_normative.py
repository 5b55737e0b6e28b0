"""The normative reference: the packaged table, a clinic's own table, z-scores and the report bar."""

from __future__ import annotations

import json

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


def test_default_table_covers_every_level_with_citations_and_no_invented_sd():
    table = default_normative()
    assert set(table.levels) == {"C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7"}
    for lv in table.levels:
        refs = table.levels[lv]
        assert set(refs) == {"rotation_rom_deg", "translation_pct"}
        for ref in refs.values():
            assert table.citation(ref["source"])
            # no SD could be verified for any default value: none may be present
            assert ref["sd"] is None
    assert table.levels["C4-C5"]["translation_pct"]["mean"] == 16.6  # Wu et al. 2007, abstract
    assert table.levels["C4-C5"]["translation_pct"]["n"] == 56
    assert "Eur Spine J. 2007;16(9):1435" in table.citation("wu2007")


def test_block_has_every_measure_and_no_z_without_sd():
    block = normative_block(
        "C4-C5",
        {"rotation_rom_deg": 14.0, "translation_mm": 5.0, "translation_pct": 30.0},
        default_normative(),
    )
    assert set(block) == {"table", "table_origin", *NORMATIVE_MEASURES}
    assert block["translation_mm"] is None  # no published value in the default table
    assert block["translation_pct"]["mean"] == 16.6 and block["translation_pct"]["z"] is None
    assert block["rotation_rom_deg"]["statistic"] == "representative value"
    assert block["rotation_rom_deg"]["source"].startswith("White AA, Panjabi MM")


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
    assert doc["levels"]["C6-C7"]["normative"]["rotation_rom_deg"]["mean"] == 17.0


def test_report_section_shows_each_level_against_the_reference():
    from report_fixtures import make_analysis

    from dmx.report import render_report

    analysis = make_analysis(n_frames=16, size_px=192)
    assert "normative" not in next(iter(analysis.measurements["levels"].values()))
    assert 'id="normative"' not in render_report(analysis, cine=False)  # an older file: no section

    add_normative(analysis.measurements)
    html = render_report(analysis, cine=False)
    section = html.split('<section id="normative"', 1)[1].split("</section>", 1)[0]
    n_levels = len(analysis.measurements["levels"])
    assert section.count('<tr><th scope="row">') == n_levels
    assert section.count('<svg class="refbar"') == 2 * n_levels  # rotation and % depth; no mm reference
    assert 'class="ref-band"' not in section and section.count("no z (no SD)") == 2 * n_levels
    assert "Eur Spine J. 2007;16(9):1435-1444" in section and "White AA, Panjabi MM" in section

    add_normative(analysis.measurements, parse_normative(CLINIC, origin="clinic.json"))
    section = (
        render_report(analysis, cine=False).split('<section id="normative"', 1)[1].split("</section>")[0]
    )
    t = analysis.measurements["levels"]["C4-C5"]["translation_mm"]
    assert section.count('class="ref-band"') == 2  # C4-C5 translation_mm and rotation_rom_deg
    assert f"z {(t - 2.0) / 0.5:+.1f}".replace("-", "\u2212") in section
    assert "Clinic X, 40 volunteers" in section
