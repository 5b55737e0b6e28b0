"""Tests of dmx.aggregate: long and summary tables, nulls, pseudonymisation, Parquet."""

from __future__ import annotations

import csv
import json
import math
from datetime import date
from pathlib import Path

import pytest

from dmx.aggregate import (
    COLUMNS,
    SUMMARY_COLUMNS,
    Pseudonymizer,
    aggregate,
    parse_study_date,
    study_rows,
    summarize,
)
from dmx.cli import main

PATIENTS = {
    # folder: (patient_id, name, study_uid, series_uid, date, translation_mm at C4-C5)
    "s1": (
        "PAT-0001",
        "DOE^JANE",
        "1.2.826.0.1.3680043.8.498.101",
        "1.2.826.0.1.3680043.8.498.102",
        "20240315",
        1.0,
    ),
    "s2": (
        "PAT-0001",
        "DOE^JANE",
        "1.2.826.0.1.3680043.8.498.201",
        "1.2.826.0.1.3680043.8.498.202",
        "20250101",
        2.0,
    ),
    "s3": (
        "PAT-0002",
        "ROE^RICH",
        "1.2.826.0.1.3680043.8.498.301",
        "1.2.826.0.1.3680043.8.498.302",
        "2023-07-04",
        4.0,
    ),
}


def measurements(pid, name, study_uid, series_uid, study_date, translation_mm):
    """A spec section 8 document with 3 frames: neutral 0, flexion 1, extension 2."""

    def level(angles, offsets, *, flags=()):
        return {
            "angle_deg": angles,
            "offset_mm": offsets,
            "offset_pct": [None if o is None else 10 * o for o in offsets],
            "rotation_rom_deg": angles[2] - angles[1],
            "rotation_range_deg": max(angles) - min(angles),
            "translation_mm": translation_mm,
            "translation_pct": 10 * translation_mm,
            "offset_range_mm": None,
            "flags": list(flags),
        }

    return {
        "schema": "dmx.measurements/1",
        "software": {"name": "dmx", "version": "0.1.0"},
        "input": {"paths": [f"/data/{name}/cine.dcm"], "sha256": "ab" * 32},
        "study": {
            "patient_id": pid,
            "patient_name": name,
            "study_uid": study_uid,
            "series_uid": series_uid,
            "study_date": study_date,
        },
        "calibration": {"mm_per_px": [0.2, 0.2], "source": "PixelSpacing"},
        "frames": {
            "count": 3,
            "reference": 0,
            "neutral": 0,
            "flexion": 1,
            "extension": 2,
            "time_ms": [0, 33, 66],
        },
        "landmarks_source": "file",
        "levels": {
            "C4-C5": level([5.0, -3.0, 9.5], [0.5, 1.5, None], flags=["translation_gt_2mm"]),
            "C3-C4": level([2.0, 1.0, 4.0], [0.0, 0.2, -0.1]),
        },
        "curve": {
            "neutral": {
                "class": "lordotic",
                "s_type": None,
                "cobb_c2c7_deg": 15.5,
                "ara_c2c7_deg": 14.0,
                "cci": 12.0,
                "d_mm": {"C3": 1.0, "C4": 2.5, "C5": 2.0, "C6": None},
            },
            "flexion": {
                "class": "kyphotic",
                "s_type": None,
                "cobb_c2c7_deg": -20.0,
                "ara_c2c7_deg": None,
                "cci": -8.0,
                "d_mm": {"C3": None, "C4": None, "C5": None, "C6": None},
            },
            "extension": {
                "class": "undetermined",
                "s_type": None,
                "cobb_c2c7_deg": None,
                "ara_c2c7_deg": None,
                "cci": None,
                "d_mm": {"C3": None, "C4": None, "C5": None, "C6": None},
            },
        },
        "warnings": [f"free text about {name}"],
    }


@pytest.fixture()
def results(tmp_path):
    root = tmp_path / "results"
    for folder, values in PATIENTS.items():
        d = root / folder
        d.mkdir(parents=True)
        (d / "measurements.json").write_text(json.dumps(measurements(*values)))
        (d / "report.html").write_text("<html>not read</html>")
    (root / ".tmp-unfinished").mkdir()
    (root / ".tmp-unfinished" / "measurements.json").write_text("{half")
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def pick(rows, **where):
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def test_long_table_values_units_and_nulls(results, tmp_path):
    table = tmp_path / "t" / "table.csv"
    res = aggregate(results, table)
    assert res.n_studies == 3 and res.exit_code == 0
    rows = read_csv(table)
    assert tuple(rows[0]) == COLUMNS
    # per study: 2 levels x (6 motion + 3 metrics x 3 key frames) + 3 key frames x (3 + 2 + 4 d_mm)
    assert len(rows) == res.n_rows == 3 * (2 * 15 + 3 * 9)
    s1 = [r for r in rows if r["patient_id"] == "PAT-0001" and r["study_date"] == "2024-03-15"]
    r = pick(s1, level="C4-C5", metric="rotation_rom_deg", key_frame="motion")
    assert (float(r["value"]), r["unit"], r["flags"]) == (12.5, "deg", "translation_gt_2mm")
    assert float(pick(s1, level="C4-C5", metric="angle_deg", key_frame="flexion")["value"]) == -3.0
    assert float(pick(s1, level="C4-C5", metric="offset_pct", key_frame="flexion")["value"]) == 15.0
    assert pick(s1, level="C4-C5", metric="offset_pct", key_frame="flexion")["unit"] == "%"
    # null stays an empty cell, never 0
    assert pick(s1, level="C4-C5", metric="offset_mm", key_frame="extension")["value"] == ""
    assert pick(s1, level="C4-C5", metric="offset_range_mm", key_frame="motion")["value"] == ""
    assert pick(s1, level="C2-C7", metric="ara_c2c7_deg", key_frame="flexion")["value"] == ""
    assert pick(s1, level="C2-C7", metric="cci", key_frame="extension")["value"] == ""
    assert pick(s1, level="C6", metric="d_mm", key_frame="neutral")["value"] == ""
    assert float(pick(s1, level="C4", metric="d_mm", key_frame="neutral")["value"]) == 2.5
    c = pick(s1, level="C2-C7", metric="class", key_frame="flexion")
    assert (c["value"], c["category"], c["unit"]) == ("", "kyphotic", "")
    cobb = pick(s1, level="C2-C7", metric="cobb_c2c7_deg", key_frame="neutral")
    assert (float(cobb["value"]), cobb["unit"], cobb["calibration_source"]) == (15.5, "deg", "PixelSpacing")
    assert cobb["source"] == "s1" and cobb["study_uid"].endswith(".101") and len(cobb["study_key"]) == 16
    # the ISO date of the DICOM-format date, and no name, ever
    text = table.read_text()
    assert "DOE" not in text and "ROE" not in text
    assert {r["study_date"] for r in rows} == {"2024-03-15", "2025-01-01", "2023-07-04"}


def test_summary_statistics(results, tmp_path):
    res = aggregate(results, tmp_path / "table.csv")
    assert res.summary == tmp_path / "table_summary.csv"
    rows = read_csv(res.summary)
    assert tuple(rows[0]) == SUMMARY_COLUMNS
    t = pick(rows, level="C4-C5", metric="translation_mm", key_frame="motion")
    assert int(t["n"]) == 3 and int(t["n_missing"]) == 0 and t["unit"] == "mm"
    assert math.isclose(float(t["mean"]), 7 / 3)
    assert math.isclose(float(t["sd"]), math.sqrt(21 / 9))
    assert float(t["median"]) == 2.0
    # linear interpolation between order statistics (numpy's default)
    assert [float(t[k]) for k in ("p5", "p25", "p75", "p95")] == pytest.approx([1.1, 1.5, 3.0, 3.8])
    missing = pick(rows, level="C4-C5", metric="offset_range_mm", key_frame="motion")
    assert (missing["n"], missing["n_missing"], missing["mean"], missing["sd"]) == ("0", "3", "", "")
    ext = pick(rows, level="C4-C5", metric="offset_mm", key_frame="extension")
    assert (ext["n"], ext["n_missing"]) == ("0", "3")
    cls = pick(rows, level="C2-C7", metric="class", key_frame="flexion", category="kyphotic")
    assert (cls["n"], cls["mean"]) == ("3", "")
    # rows come in anatomical order: C3-C4 before C4-C5 before the curve
    levels = [r["level"] for r in rows]
    assert levels.index("C3-C4") < levels.index("C4-C5") < levels.index("C2-C7") < levels.index("C3")


def test_summarize_small_samples():
    assert summarize([]) == {
        "n": 0,
        **dict.fromkeys(("mean", "sd", "median", "p5", "p25", "p75", "p95")),
    }
    one = summarize([2.5, None])
    assert one["n"] == 1 and one["sd"] is None and one["mean"] == one["p95"] == 2.5


def test_malformed_file_is_named_skipped_and_exit_1(results, tmp_path, caplog):
    bad = results / "s4"
    bad.mkdir()
    (bad / "measurements.json").write_text("{not json")
    worse = results / "s5"
    worse.mkdir()
    doc = measurements(*PATIENTS["s1"])
    doc["levels"]["C4-C5"]["translation_mm"] = "3.5 mm"
    (worse / "measurements.json").write_text(json.dumps(doc))
    table = tmp_path / "table.csv"
    code = main(["aggregate", str(results), "--out", str(table)])
    assert code == 1
    assert str(bad / "measurements.json") in caplog.text
    assert "levels/C4-C5/translation_mm: '3.5 mm' is not of type 'number', 'null'" in caplog.text
    assert len({r["study_key"] for r in read_csv(table)}) == 3  # the good ones are all there


def test_usage_and_input_errors_exit_2(tmp_path, results):
    assert main(["aggregate", str(tmp_path / "missing"), "--out", str(tmp_path / "t.csv")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["aggregate", str(tmp_path / "empty"), "--out", str(tmp_path / "t.csv")]) == 2
    assert main(["aggregate", str(results), "--out", str(tmp_path / "t.xlsx")]) == 2
    assert main(["aggregate", str(results), "--out", str(tmp_path / "t.csv"), "--pseudonymize", ""]) == 2
    assert not (tmp_path / "t.csv").exists()
    (tmp_path / "afile").write_text("x")
    assert main(["aggregate", str(results), "--out", str(tmp_path / "afile" / "t.csv")]) == 2


def test_pseudonymized_tables_hold_no_identifying_value(results, tmp_path):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    assert main(["aggregate", str(results), "--out", str(a), "--pseudonymize", "s3cret"]) == 0
    assert main(["aggregate", str(results), "--out", str(b), "--pseudonymize", "s3cret"]) == 0
    assert main(["aggregate", str(results), "--out", str(c), "--pseudonymize", "other"]) == 0
    assert a.read_bytes() == b.read_bytes()  # stable with the same secret
    rows_a, rows_c = read_csv(a), read_csv(c)
    assert {r["patient_id"] for r in rows_a}.isdisjoint({r["patient_id"] for r in rows_c})
    text = a.read_text() + (tmp_path / "a_summary.csv").read_text()
    for pid, name, st, se, when, _ in PATIENTS.values():
        iso = parse_study_date(when).isoformat()
        for value in (pid, name, name.split("^")[0], st, se, when, iso, iso.replace("-", "")):
            assert value not in text, value
    assert "/data/" not in text and "s1" not in {r["source"] for r in rows_a}
    # one patient's studies stay linked, and the interval between them is kept
    by_patient: dict[str, set[str]] = {}
    for r in rows_a:
        by_patient.setdefault(r["patient_id"], set()).add(r["study_date"])
    assert sorted(len(v) for v in by_patient.values()) == [1, 2]
    d1, d2 = sorted(date.fromisoformat(d) for d in next(v for v in by_patient.values() if len(v) == 2))
    assert (d2 - d1).days == (date(2025, 1, 1) - date(2024, 3, 15)).days
    # the measurements themselves are unchanged
    translations = sorted(float(r["value"]) for r in rows_a if r["metric"] == "translation_mm")
    assert translations == [1.0, 1.0, 2.0, 2.0, 4.0, 4.0]  # two levels per study


def test_date_offsets_cover_both_directions_never_zero():
    p = Pseudonymizer("k")
    offsets = [p.date_offset_days(f"patient-{i}") for i in range(500)]
    assert all(1 <= abs(o) <= 365 for o in offsets)
    assert min(offsets) < -300 and max(offsets) > 300
    assert p.date_offset_days("patient-1") == Pseudonymizer("k").date_offset_days("patient-1")


def test_study_rows_pure_and_secret_from_file(tmp_path):
    doc = measurements(*PATIENTS["s1"])
    before = json.dumps(doc, sort_keys=True)
    rows = study_rows(doc, source="x")
    assert json.dumps(doc, sort_keys=True) == before  # input never modified
    assert all(set(r) == set(COLUMNS) for r in rows)
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    results = tmp_path / "r" / "one"
    results.mkdir(parents=True)
    (results / "measurements.json").write_text(json.dumps(doc))
    assert (
        main(
            [
                "aggregate",
                str(results.parent),
                "--out",
                str(tmp_path / "f.csv"),
                "--pseudonymize",
                f"@{secret}",
            ]
        )
        == 0
    )
    assert (
        main(["aggregate", str(results.parent), "--out", str(tmp_path / "g.csv"), "--pseudonymize", "s3cret"])
        == 0
    )
    assert (tmp_path / "f.csv").read_bytes() == (tmp_path / "g.csv").read_bytes()


def test_parquet_round_trip(results, tmp_path):
    pq = pytest.importorskip(
        "pyarrow.parquet", reason="Parquet is an optional extra: pip install 'dmx[parquet]'"
    )
    aggregate(results, tmp_path / "t.csv")
    res = aggregate(results, tmp_path / "t.parquet")
    assert res.summary == tmp_path / "t_summary.parquet"
    table = pq.read_table(res.table)
    assert table.column_names == list(COLUMNS)
    assert str(table.schema.field("value").type) == "double"
    got = table.to_pylist()
    want = read_csv(tmp_path / "t.csv")
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert ("" if g["value"] is None else g["value"]) == ("" if w["value"] == "" else float(w["value"]))
        assert (g["metric"], g["level"], g["key_frame"], g["category"] or "") == (
            w["metric"],
            w["level"],
            w["key_frame"],
            w["category"],
        )
    summary = pq.read_table(res.summary).to_pylist()
    t = next(r for r in summary if r["level"] == "C4-C5" and r["metric"] == "translation_mm")
    assert t["n"] == 3 and math.isclose(t["mean"], 7 / 3) and t["p95"] == pytest.approx(3.8)


def test_reads_a_document_written_by_dmx_measure(tmp_path):
    """A real measure() document (the schema test's): values at the key frames, ADI rows, flags."""
    from test_schema import full_doc

    doc = full_doc()
    folder = tmp_path / "r" / "study"
    folder.mkdir(parents=True)
    (folder / "measurements.json").write_text(json.dumps(doc))
    res = aggregate(tmp_path / "r", tmp_path / "t.csv")
    assert res.exit_code == 0
    rows = read_csv(tmp_path / "t.csv")
    frames = doc["frames"]
    for level, data in doc["levels"].items():
        for kf in ("neutral", "flexion", "extension"):
            want = data["angle_deg"][frames[kf]] if frames[kf] is not None else None
            got = pick(rows, level=level, metric="angle_deg", key_frame=kf)["value"]
            assert (float(got) if got else None) == pytest.approx(want)
        r = pick(rows, level=level, metric="rotation_rom_deg", key_frame="motion")
        assert r["flags"] == ";".join(data["flags"])
        assert r["flags_not_evaluated"] == ";".join(data.get("flags_not_evaluated", []))
        want = data["rotation_rom_deg"]
        assert (float(r["value"]) if r["value"] else None) == pytest.approx(want)
    adi = pick(rows, level="C1-C2", metric="adi_max_mm", key_frame="motion")
    assert float(adi["value"]) == pytest.approx(doc["adi"]["max_mm"]) and adi["unit"] == "mm"
    cls = pick(rows, level="C2-C7", metric="class", key_frame="neutral")
    assert cls["category"] == doc["curve"]["neutral"]["class"]
