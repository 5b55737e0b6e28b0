"""dmx aggregate's longitudinal table: one row per patient, level and metric, visits in date order."""

from __future__ import annotations

import json
from datetime import date

import pytest
from test_aggregate import PATIENTS, measurements, pick, read_csv

from dmx.aggregate import LONGITUDINAL_COLUMNS, aggregate, longitudinal_path, parse_study_date
from dmx.cli import main


@pytest.fixture()
def results(tmp_path):
    root = tmp_path / "results"
    # s2 (2025) is written before s1 (2024): the table must still be in date order
    for folder in ("s2", "s3", "s1"):
        d = root / folder
        d.mkdir(parents=True)
        (d / "measurements.json").write_text(json.dumps(measurements(*PATIENTS[folder])))
    nopid = measurements(*PATIENTS["s3"])
    nopid["study"]["patient_id"] = None
    (root / "s4").mkdir()
    (root / "s4" / "measurements.json").write_text(json.dumps(nopid))
    return root


def test_one_row_per_patient_level_metric_with_visits_in_date_order(results, tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["aggregate", str(results), "--out", str(out)]) == 0
    path = longitudinal_path(out)
    assert path == tmp_path / "t_longitudinal.csv"
    assert capsys.readouterr().out.splitlines()[-1] == str(path)
    rows = read_csv(path)
    header = list(rows[0])
    assert tuple(header[: len(LONGITUDINAL_COLUMNS)]) == LONGITUDINAL_COLUMNS
    assert header[len(LONGITUDINAL_COLUMNS) :] == [
        f"{c}_{k}" for k in (1, 2) for c in ("date", "days", "value", "study_key")
    ]
    r = pick(rows, patient_id="PAT-0001", level="C4-C5", metric="translation_mm")
    assert r["n_visits"] == "2" and r["unit"] == "mm"
    assert (r["date_1"], r["value_1"], r["days_1"]) == ("2024-03-15", "1.0", "0")
    assert (r["date_2"], r["value_2"]) == ("2025-01-01", "2.0")
    assert int(r["days_2"]) == (date(2025, 1, 1) - date(2024, 3, 15)).days
    single = pick(rows, patient_id="PAT-0002", level="C4-C5", metric="translation_mm")
    assert single["n_visits"] == "1" and single["value_1"] == "4.0" and single["date_2"] == ""
    # a null stays an empty cell, never 0
    assert pick(rows, patient_id="PAT-0001", level="C3-C4", metric="offset_range_mm")["value_1"] == ""
    # the study without a patient ID cannot be linked: left out (2 patients x 2 levels x 6 metrics)
    assert len(rows) == 2 * 2 * 6


def test_pseudonymised_longitudinal_table_keeps_the_interval_and_no_identifier(results, tmp_path):
    out = tmp_path / "p.csv"
    res = aggregate(results, out, secret="s3cret")
    text = res.longitudinal.read_text()
    for pid, name, st, se, when, _ in PATIENTS.values():
        iso = parse_study_date(when).isoformat()
        for value in (pid, name, st, se, when, iso):
            assert value not in text, value
    rows = read_csv(res.longitudinal)
    two = [
        r for r in rows if r["n_visits"] == "2" and r["level"] == "C4-C5" and r["metric"] == "translation_mm"
    ]
    assert len(two) == 1
    d1, d2 = date.fromisoformat(two[0]["date_1"]), date.fromisoformat(two[0]["date_2"])
    assert (d2 - d1).days == int(two[0]["days_2"]) == (date(2025, 1, 1) - date(2024, 3, 15)).days
    assert (two[0]["value_1"], two[0]["value_2"]) == ("1.0", "2.0")


def test_parquet_longitudinal_types(results, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs the dmx[parquet] extra")
    res = aggregate(results, tmp_path / "t.parquet")
    table = pq.read_table(res.longitudinal)
    assert str(table.schema.field("value_2").type) == "double"
    assert str(table.schema.field("days_2").type) == "int64"
    row = next(
        r
        for r in table.to_pylist()
        if r["patient_id"] == "PAT-0001" and r["level"] == "C4-C5" and r["metric"] == "translation_mm"
    )
    assert (row["value_1"], row["value_2"], row["n_visits"]) == (1.0, 2.0, 2)
