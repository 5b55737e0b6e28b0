"""dmx compare: change against the minimal detectable change, flags, order, refusals, end to end."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from followup_support import BASELINE_EXTRA_MM, FOLLOWUP_EXTRA_MM, make_visit

from dmx.cli import main
from dmx.compare import MEASURES, Study, compare, default_mdc, load_mdc, read_study
from dmx.errors import InputError, UsageError
from dmx.schema import comparison_schema

SEM_ROT = default_mdc().measures["rotation_rom_deg"]["sem_visit"]  # dmx/data/mdc.json
SEM_MM = default_mdc().measures["translation_mm"]["sem_visit"]  # dmx/data/mdc.json


def _doc(*, pid="P1", date="20260101", t45=5.3, flags45=("translation_gt_3_5mm",), u=None, sha="a"):
    levels = {}
    for lv in ("C3-C4", "C4-C5"):
        t = t45 if lv == "C4-C5" else 1.5
        entry = {
            "angle_deg": [0.0, 5.0],
            "offset_mm": [0.0, t],
            "offset_pct": [0.0, None if t is None else t / 16.0 * 100],
            "rotation_rom_deg": 14.0,
            "rotation_range_deg": 14.0,
            "translation_mm": t,
            "translation_pct": None if t is None else t / 16.0 * 100,
            "offset_range_mm": t,
            "excursion_mm": None if t is None else t / 2,
            "flags": list(flags45) if lv == "C4-C5" else [],
            "flags_not_evaluated": [],
        }
        if u is not None:
            entry |= {
                "rotation_rom_uncertainty_deg": u[0],
                "translation_uncertainty_mm": u[1],
                "translation_uncertainty_pct": u[2],
            }
        levels[lv] = entry
    return {
        "schema": "dmx.measurements/1",
        "study": {"patient_id": pid, "study_date": date, "study_uid": f"1.2.{date}"},
        "input": {"sha256": sha},
        "calibration": {"mm_per_px": [0.3, 0.3], "source": "PixelSpacing"},
        "levels": levels,
        "curve": {k: {"class": "lordotic", "s_type": None} for k in ("neutral", "flexion", "extension")},
    }


def _study(doc, name):
    from pathlib import Path

    return Study(doc=doc, path=Path(name))


def test_mdc_without_uncertainty_is_between_visit_only_and_says_so():
    cmp = compare(_study(_doc(), "b"), _study(_doc(date="20260301", t45=3.0, flags45=(), sha="b"), "f"))
    e = cmp["levels"]["C4-C5"]["translation_mm"]
    assert e["baseline"] == 5.3 and e["followup"] == 3.0
    assert e["change"] == pytest.approx(-2.3)
    assert e["mdc"] == pytest.approx(1.96 * math.sqrt(2) * SEM_MM)
    assert e["significant"] is True
    assert e["mdc_parts"]["u_baseline"] is None and e["mdc_parts"]["sem_visit"] == SEM_MM
    assert e["mdc_parts"]["measurement"].startswith("unknown for the baseline and follow-up")
    same = cmp["levels"]["C3-C4"]["translation_mm"]
    assert same["change"] == 0.0 and same["significant"] is False
    rot = cmp["levels"]["C4-C5"]["rotation_rom_deg"]
    assert rot["mdc"] == pytest.approx(1.96 * math.sqrt(2) * SEM_ROT) and rot["significant"] is False
    assert any("measurement uncertainty" in w for w in cmp["warnings"])
    assert cmp["flags"]["resolved"] == [{"level": "C4-C5", "flag": "translation_gt_3_5mm"}]
    assert cmp["flags"]["new"] == []
    assert cmp["verdict"][0] == (
        "C4-C5 translation fell from 5.3 to 3.0 mm, beyond the 0.5 mm detectable change; "
        "flag translation_gt_3_5mm resolved."
    )


def test_mdc_with_both_uncertainties_uses_the_formula():
    b = _doc(u=(0.4, 0.3, 2.0))
    f = _doc(date="20260301", t45=4.9, u=(0.5, 0.2, 1.0), sha="b")
    e = compare(_study(b, "b"), _study(f, "f"))["levels"]["C4-C5"]["translation_mm"]
    expected = 1.96 * math.sqrt(0.3**2 + 0.2**2 + 2 * SEM_MM**2)
    assert e["mdc"] == pytest.approx(expected)
    assert e["significant"] is False  # |−0.4| < 0.83
    assert e["mdc_parts"]["measurement"] == "both studies' tracking uncertainty included"
    pct = compare(_study(b, "b"), _study(f, "f"))["levels"]["C4-C5"]["translation_pct"]
    sem_pct = 100 * SEM_MM / 16.0  # depth from the studies' offset_mm / offset_pct
    assert pct["mdc_parts"]["sem_visit"] == pytest.approx(sem_pct)
    assert pct["mdc"] == pytest.approx(1.96 * math.sqrt(2.0**2 + 1.0**2 + 2 * sem_pct**2))


def test_missing_value_gives_null_significance():
    f = _doc(date="20260301", t45=None, flags45=(), sha="b")
    cmp = compare(_study(_doc(), "b"), _study(f, "f"))
    e = cmp["levels"]["C4-C5"]["translation_mm"]
    assert e["followup"] is None and e["change"] is None and e["significant"] is None
    assert e["mdc"] is not None


def test_new_flag_and_order_by_study_date():
    early = _doc(date="20260101", t45=2.0, flags45=())
    late = _doc(date="20260301", t45=4.5, flags45=("translation_gt_3_5mm",), sha="b")
    cmp = compare(_study(late, "late"), _study(early, "early"))  # given in the wrong order
    assert cmp["order"].startswith("swapped")
    assert cmp["baseline"]["path"] == "early" and cmp["interval_days"] == 59
    assert cmp["levels"]["C4-C5"]["translation_mm"]["change"] == pytest.approx(2.5)
    assert cmp["flags"]["new"] == [{"level": "C4-C5", "flag": "translation_gt_3_5mm"}]
    assert (
        "rose from 2.0 to 4.5 mm" in cmp["verdict"][0]
        and "new flag translation_gt_3_5mm" in cmp["verdict"][0]
    )


def test_different_patients_are_refused_unless_forced():
    b, f = _study(_doc(pid="P1"), "b"), _study(_doc(pid="P2", date="20260301", sha="b"), "f")
    with pytest.raises(UsageError, match="different patients.*--force") as exc:
        compare(b, f)
    assert "P1" not in str(exc.value) and "P2" not in str(exc.value)  # no identifiers in the message
    cmp = compare(b, f, force=True)
    assert cmp["patient_match"] == "forced" and any("--force" in w for w in cmp["warnings"])
    with pytest.raises(UsageError, match="patient ID is missing"):
        compare(_study(_doc(pid=""), "b"), f)


def test_no_significant_change_says_so():
    cmp = compare(_study(_doc(), "b"), _study(_doc(date="20260301", sha="b"), "f"))
    jsonschema.validate(cmp, comparison_schema())
    assert cmp["verdict"] == ["No level changed by more than its minimal detectable change."]
    assert all(e["significant"] is False for m in cmp["levels"].values() for e in m.values())


def test_mdc_table_provenance_and_a_clinic_table(tmp_path):
    table = default_mdc()
    for name in MEASURES:
        entry = table.measures[name]
        assert entry["source"] in table.sources and entry["derivation"] and entry["kind"]
    # what each figure is: a measurement repeatability, and a model derived from it (neither between-visit)
    assert table.measures["rotation_rom_deg"]["kind"].startswith("measurement repeatability")
    assert "not measured" in table.measures["translation_mm"]["kind"]
    rot = table.measures["rotation_rom_deg"]["sem_visit"]
    assert f"highest SEM {rot} deg" in table.sources["branney_breen2014"]["what"]
    lever_mm = 10.0  # the derivation's lever arm
    assert table.measures["translation_mm"]["sem_visit"] == pytest.approx(
        lever_mm * math.radians(rot), abs=0.005
    )
    custom = {
        "schema": "dmx.mdc/1",
        "sources": {"c": {"citation": "Clinic test-retest 2026"}},
        "measures": {"translation_mm": {"sem_visit": 2.0, "source": "c"}},
    }
    path = tmp_path / "mdc.json"
    path.write_text(json.dumps(custom))
    cmp = compare(
        _study(_doc(), "b"), _study(_doc(date="20260301", t45=3.0, sha="b"), "f"), mdc_table=load_mdc(path)
    )
    assert cmp["levels"]["C4-C5"]["translation_mm"]["significant"] is False  # 2.3 < 5.5 mm
    assert cmp["levels"]["C4-C5"]["rotation_rom_deg"]["mdc"] is None  # not in that table: unknown
    assert cmp["levels"]["C4-C5"]["rotation_rom_deg"]["significant"] is None
    path.write_text(json.dumps({**custom, "measures": {"translation_mm": {"sem_visit": -1, "source": "c"}}}))
    with pytest.raises(InputError, match="sem_visit must be a non-negative number"):
        load_mdc(path)


def test_read_study_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_study(tmp_path)
    (tmp_path / "measurements.json").write_text('{"schema": "x"}')
    with pytest.raises(InputError, match="not a dmx measurements.json") as exc:
        read_study(tmp_path)
    assert str(tmp_path / "measurements.json") in str(exc.value)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def visits(tmp_path_factory):
    root = tmp_path_factory.mktemp("visits")
    base = make_visit(root / "v1", seed=3, extra_mm=BASELINE_EXTRA_MM, study_date="20260415")
    follow = make_visit(root / "v2", seed=4, extra_mm=FOLLOWUP_EXTRA_MM, study_date="20260601")
    return base, follow


def test_done_when_c4c5_from_5_3_to_3_0_mm(visits, tmp_path, capsys):
    base, follow = visits
    out = tmp_path / "cmp"
    # given follow-up first: dmx orders them by study date
    assert main(["compare", str(follow), str(base), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    cmp = json.loads((out / "comparison.json").read_text())
    assert cmp["schema"] == "dmx.comparison/1" and cmp["order"].startswith("swapped")
    assert cmp["baseline"]["study_date"] == "2026-04-15" and cmp["interval_days"] == 47
    t = cmp["levels"]["C4-C5"]["translation_mm"]
    assert t["baseline"] == pytest.approx(5.3, abs=0.1) and t["followup"] == pytest.approx(3.0, abs=0.1)
    assert t["significant"] is True and abs(t["change"]) > t["mdc"]
    assert cmp["levels"]["C4-C5"]["translation_pct"]["significant"] is True
    resolved = {(r["level"], r["flag"]) for r in cmp["flags"]["resolved"]}
    assert {("C4-C5", "translation_gt_3_5mm"), ("C4-C5", "translation_gt_20pct")} <= resolved
    assert cmp["flags"]["new"] == []
    for level in ("C2-C3", "C3-C4", "C5-C6", "C6-C7"):
        for measure, e in cmp["levels"][level].items():
            assert e["significant"] is False, (level, measure, e)
    assert cmp["levels"]["C4-C5"]["rotation_rom_deg"]["significant"] is False
    assert printed.splitlines()[0].startswith("C4-C5 translation fell from 5.3 to 3.0 mm, beyond the 0.5 mm")
    assert "translation_gt_3_5mm" in printed.splitlines()[0] and "resolved" in printed.splitlines()[0]
    assert {c["baseline"] for c in cmp["curve"].values()} <= {"lordotic", "kyphotic", "straight", "s_curve"}
    jsonschema.validate(cmp, comparison_schema())
    html = (out / "comparison.html").read_text()
    assert "C4-C5 translation fell from 5.3 to 3.0 mm" in html


def test_cli_refuses_two_patients_in_one_line(visits, tmp_path, capsys):
    base, _ = visits
    other = make_visit(tmp_path / "other", seed=5, extra_mm=0.0, study_date="20260701", patient_id="FU-0002")
    code = main(["compare", str(base), str(other), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("dmx: error: ") and "--force" in err[0] and "FU-000" not in err[0]
    assert not (tmp_path / "c").exists()  # nothing written
    argv = ["compare", str(base), str(other / "measurements.json"), "--out", str(tmp_path / "c"), "--force"]
    assert main(argv) == 0
    assert (tmp_path / "c" / "comparison.json").is_file()
    html = (tmp_path / "c" / "comparison.html").read_text()
    baseline_id = json.loads((base / "measurements.json").read_text())["study"]["patient_id"]
    assert baseline_id != "FU-0002"
    for fact in ("Patient ID (baseline)", baseline_id, "Patient ID (follow-up)", "FU-0002"):
        assert fact in html  # both patients shown, not the baseline's alone


def test_key_frames_fall_back_to_outlines_with_the_reason(visits, tmp_path):
    base, follow = visits
    from dmx.pipeline import write_comparison

    html = write_comparison(base, follow, tmp_path / "a", images=False)["html"].read_text()
    assert html.count('<svg class="outline"') == 6 and '<svg class="keyframe-img"' not in html
    assert "not requested (--no-images)" in html
    moved = tmp_path / "moved"
    moved.mkdir()
    doc = json.loads((follow / "measurements.json").read_text())
    doc["input"]["paths"] = [str(tmp_path / "gone" / "study.dcm")]
    (moved / "measurements.json").write_text(json.dumps(doc))
    html = write_comparison(base, moved, tmp_path / "b")["html"].read_text()
    assert html.count('<svg class="keyframe-img"') == 3 and html.count('<svg class="outline"') == 3
    assert "follow-up: the study&#39;s input files are not at the paths recorded" in html
