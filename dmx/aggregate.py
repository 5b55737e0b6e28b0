"""Pool many studies' ``measurements.json`` files into tables for research.

Reads nothing but ``measurements.json`` (spec section 8), one file at a time,
and writes as it goes, so memory stays bounded with thousands of studies:

- a tidy **long table**: one row per study x level x metric x key frame, with
  units (:data:`COLUMNS`); ``null`` stays an empty cell, never 0;
- a **summary** (``<table>_summary.<ext>``): per level x metric x key frame the
  count and distribution (n, mean, SD, median, p5, p25, p75, p95) of the
  numeric values, and the count of each category (curve class, S type);
- a **longitudinal table** (``<table>_longitudinal.<ext>``): one row per patient,
  level and motion metric with every visit's date, days since the first visit and
  value, in date order (:data:`LONGITUDINAL_COLUMNS` then ``date_k``, ``days_k``,
  ``value_k``, ``study_key_k`` for k = 1..the most visits of any patient), to study
  change over a course of treatment. Studies without a patient ID cannot be linked
  and are left out of it.

With a secret, patient ID and UIDs become keyed hashes (HMAC-SHA256) and
dates are shifted by a per-patient offset, so no identifying value remains
in either table while a patient's studies stay linked and their intervals
preserved.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from dmx.anatomy import LEVEL_MOTION_VALUES, LEVELS, KeyFrame
from dmx.errors import InputError, ParameterError, UsageError
from dmx.measure.validation import MeasurementsSchemaError, validate_measurements

log = logging.getLogger("dmx.aggregate")

SCHEMA_PREFIX = "dmx.measurements/1"

#: Columns of the long table, in order.
COLUMNS: tuple[str, ...] = (
    "study_key",
    "patient_id",
    "study_uid",
    "series_uid",
    "study_date",
    "level",
    "metric",
    "key_frame",
    "value",
    "category",
    "unit",
    "flags",
    "flags_not_evaluated",
    "calibration_source",
    "landmarks_source",
    "source",
)

#: Columns of the summary table, in order.
SUMMARY_COLUMNS: tuple[str, ...] = (
    "level",
    "metric",
    "key_frame",
    "unit",
    "category",
    "n",
    "n_missing",
    "mean",
    "sd",
    "median",
    "p5",
    "p25",
    "p75",
    "p95",
)

#: Leading columns of the longitudinal table; per visit k follow date_k, days_k, value_k, study_key_k.
LONGITUDINAL_COLUMNS: tuple[str, ...] = ("patient_id", "level", "metric", "unit", "n_visits")
LONGITUDINAL_VISIT_COLUMNS: tuple[str, ...] = ("date", "days", "value", "study_key")

#: Key frame label of metrics computed over the whole motion (ROM, ranges).
MOTION = "motion"
CURVE_LEVEL = "C2-C7"
KEY_FRAMES: tuple[str, ...] = tuple(k.value for k in KeyFrame)

#: Per-level metrics over the motion (spec section 4).
LEVEL_MOTION_METRICS: tuple[str, ...] = LEVEL_MOTION_VALUES
#: Per-level per-frame metrics, reported at the key frames.
LEVEL_FRAME_METRICS: tuple[str, ...] = ("angle_deg", "offset_mm", "offset_pct")
#: Curve metrics at each key frame (spec section 5), level ``C2-C7``.
CURVE_METRICS: tuple[str, ...] = ("cobb_c2c7_deg", "ara_c2c7_deg", "cci")
CURVE_CATEGORIES: tuple[str, ...] = ("class", "s_type")
ISHIHARA_VERTEBRAE: tuple[str, ...] = ("C3", "C4", "C5", "C6")
#: Level of the atlanto-dental interval rows (``adi`` block, when present).
ADI_LEVEL = "C1-C2"

UNITS: dict[str, str] = {
    "rotation_rom_deg": "deg",
    "rotation_range_deg": "deg",
    "translation_mm": "mm",
    "translation_pct": "%",
    "offset_range_mm": "mm",
    "excursion_mm": "mm",
    "angle_deg": "deg",
    "offset_mm": "mm",
    "offset_pct": "%",
    "cobb_c2c7_deg": "deg",
    "ara_c2c7_deg": "deg",
    "cci": "%",
    "d_mm": "mm",
    "class": "",
    "s_type": "",
    "adi_mm": "mm",
    "adi_max_mm": "mm",
}

_METRIC_ORDER = {
    m: i
    for i, m in enumerate(
        LEVEL_MOTION_METRICS
        + LEVEL_FRAME_METRICS
        + CURVE_METRICS
        + CURVE_CATEGORIES
        + ("d_mm", "adi_max_mm", "adi_mm")
    )
}
_LEVEL_ORDER = {
    lv: i
    for i, lv in enumerate(
        [ADI_LEVEL] + [lv.value for lv in LEVELS] + [CURVE_LEVEL] + list(ISHIHARA_VERTEBRAE)
    )
}
_FRAME_ORDER = {k: i for i, k in enumerate((MOTION,) + KEY_FRAMES)}
_PARQUET_BATCH = 5000


@dataclass(frozen=True)
class AggregateResult:
    """What :func:`aggregate` wrote."""

    table: Path
    summary: Path
    n_studies: int
    n_rows: int
    skipped: tuple[tuple[Path, str], ...] = ()
    longitudinal: Path | None = None

    @property
    def exit_code(self) -> int:
        """0 when every file was read, 1 when some were skipped as malformed."""
        return 1 if self.skipped else 0


# --------------------------------------------------------------------------- pseudonymisation


class Pseudonymizer:
    """Keyed, stable replacements for identifying values.

    Parameters
    ----------
    secret : str
        The key. The same secret gives the same pseudonyms and date shifts on
        every run; without it they cannot be reversed or recomputed.

    Notes
    -----
    Identifiers become the first 16 hex digits of HMAC-SHA256(secret, kind +
    value). Dates move by a per-patient offset of 1..365 days either way
    (never 0), derived from HMAC-SHA256(secret, patient id), so every study of
    a patient moves together and intervals are preserved.
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ParameterError("secret", "needs a non-empty secret")
        self._key = secret.encode("utf-8")

    def _mac(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    def identifier(self, value: str | None, *, kind: str) -> str | None:
        """Pseudonym of ``value`` (None stays None)."""
        return None if value is None else self._mac(kind, value).hex()[:16]

    def date_offset_days(self, patient: str) -> int:
        """Per-patient date shift in days, in -365..-1 or 1..365."""
        n = int.from_bytes(self._mac("date-offset", patient)[:8], "big") % 730
        return n - 365 if n < 365 else n - 364


def resolve_secret(secret: str) -> str:
    """The secret itself, or the first line of a file when given as ``@path``."""
    if secret.startswith("@"):
        path = Path(secret[1:])
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(path, f"cannot read the secret file: {exc.strerror}") from None
        secret = lines[0].strip() if lines else ""
    if not secret:
        raise ParameterError("secret", "needs a non-empty secret")
    return secret


def parse_study_date(value: Any) -> date | None:
    """A DICOM (``YYYYMMDD``) or ISO (``YYYY-MM-DD``) date, or None."""
    if not isinstance(value, str):
        return None
    text = value.strip().replace("-", "")
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


# --------------------------------------------------------------------------- one document -> rows


#: The top-level blocks of measurements.json that the tables read (validated against the schema).
TABLE_PARTS = (
    "schema",
    "study",
    "input",
    "calibration",
    "frames",
    "landmarks_source",
    "levels",
    "curve",
    "adi",
)


def _key_frame_index(frames: Any) -> dict[str, int | None]:
    """``{key frame: index}`` from a ``frames`` block (None where absent or not a frame index)."""
    frames = frames if isinstance(frames, dict) else {}
    out: dict[str, int | None] = {}
    for kf in KEY_FRAMES:
        idx = frames.get(kf)
        out[kf] = idx if isinstance(idx, int) and not isinstance(idx, bool) and idx >= 0 else None
    return out


def _at(series: Any, index: int | None) -> Any:
    """``series[index]``, or None when there is no such entry."""
    return series[index] if isinstance(series, list) and index is not None and index < len(series) else None


def _table_view(doc: dict[str, Any], key_index: dict[str, int | None]) -> dict[str, Any]:
    """The blocks the tables read, each per-frame series cut to its entries at the key frames.

    Validating this view checks every value the tables take from the document, at a cost that does not
    grow with the number of frames (a whole 600-frame document takes seconds).
    """
    index = [i for i in key_index.values() if i is not None]

    def cut(series: Any) -> Any:
        return [series[i] for i in index if i < len(series)] if isinstance(series, list) else series

    view = {k: doc[k] for k in TABLE_PARTS if k in doc}
    if isinstance(view.get("frames"), dict):
        view["frames"] = {**view["frames"], "time_ms": cut(view["frames"].get("time_ms"))}
    if isinstance(view.get("levels"), dict):
        view["levels"] = {
            lv: {k: cut(v) if k in LEVEL_FRAME_METRICS else v for k, v in data.items()}
            if isinstance(data, dict)
            else data
            for lv, data in view["levels"].items()
        }
    if isinstance(view.get("adi"), dict):
        view["adi"] = {k: cut(v) if k in ("adi_mm", "adi_px") else v for k, v in view["adi"].items()}
    return view


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def study_rows(
    doc: Any, *, source: str = "", pseudonymizer: Pseudonymizer | None = None
) -> list[dict[str, Any]]:
    """The long-table rows of one ``measurements.json`` document.

    Parameters
    ----------
    doc : object
        The parsed JSON document.
    source : str
        Where it came from (the ``source`` column; left empty when pseudonymising).
    pseudonymizer : Pseudonymizer, optional
        Replace identifying values.

    Returns
    -------
    list of dict
        One dict per row, keys :data:`COLUMNS`; unmeasurable values are None.

    Raises
    ------
    MeasurementsSchemaError
        The document does not follow ``dmx.measurements/1`` where the tables read it (the message
        says where; :func:`dmx.measure.validate_measurements` with ``parts=TABLE_PARTS``).
    """
    if not isinstance(doc, dict):
        raise MeasurementsSchemaError(["<document>: not a measurements file: expected a JSON object"])
    key_index = _key_frame_index(doc.get("frames"))
    validate_measurements(_table_view(doc, key_index), parts=TABLE_PARTS)
    study = doc["study"]
    levels = doc["levels"]
    curve = doc["curve"]
    inp = doc["input"]
    calibration = doc["calibration"]

    patient_id = study["patient_id"]
    study_uid = study["study_uid"]
    series_uid = study["series_uid"]
    raw_date = study["study_date"]
    input_sha = inp["sha256"] or ""
    parsed_date = parse_study_date(raw_date)

    key_text = "\x00".join([study_uid or "", series_uid or "", input_sha])
    if pseudonymizer is not None:
        basis = patient_id or study_uid or input_sha
        study_key = pseudonymizer.identifier(key_text, kind="study-key")
        shifted = parsed_date + timedelta(days=pseudonymizer.date_offset_days(basis)) if parsed_date else None
        ident = {
            "patient_id": pseudonymizer.identifier(patient_id, kind="patient_id"),
            "study_uid": pseudonymizer.identifier(study_uid, kind="uid"),
            "series_uid": pseudonymizer.identifier(series_uid, kind="uid"),
            "study_date": shifted.isoformat() if shifted else None,
        }
        source = ""
    else:
        study_key = hashlib.sha256(f"study-key\x00{key_text}".encode()).hexdigest()[:16]
        ident = {
            "patient_id": patient_id,
            "study_uid": study_uid,
            "series_uid": series_uid,
            "study_date": parsed_date.isoformat() if parsed_date else raw_date,
        }
    common = {
        "study_key": study_key,
        **ident,
        "calibration_source": calibration["source"],
        "landmarks_source": doc["landmarks_source"],
        "source": source,
    }

    rows: list[dict[str, Any]] = []

    def add(
        level: str,
        metric: str,
        key_frame: str,
        value: float | None,
        category: str | None,
        flags: tuple[str, str] = ("", ""),
    ) -> None:
        rows.append(
            {
                **common,
                "level": level,
                "metric": metric,
                "key_frame": key_frame,
                "value": value,
                "category": category,
                "unit": UNITS[metric],
                "flags": flags[0],
                "flags_not_evaluated": flags[1],
            }
        )

    def at_key_frames(level: str, metric: str, series: list[Any] | None, flags: tuple[str, str]) -> None:
        for kf in KEY_FRAMES:
            add(level, metric, kf, _number(_at(series, key_index[kf])), None, flags)

    def flag_lists(block: dict[str, Any]) -> tuple[str, str]:
        return ";".join(block.get("flags") or []), ";".join(block.get("flags_not_evaluated") or [])

    adi = doc.get("adi")
    if adi is not None:
        flags = flag_lists(adi)
        add(ADI_LEVEL, "adi_max_mm", MOTION, _number(adi.get("max_mm")), None, flags)
        at_key_frames(ADI_LEVEL, "adi_mm", adi["adi_mm"], flags)

    for level in sorted(levels, key=lambda lv: (_LEVEL_ORDER.get(lv, 99), lv)):
        data = levels[level]
        flags = flag_lists(data)
        for metric in LEVEL_MOTION_METRICS:
            add(level, metric, MOTION, _number(data.get(metric)), None, flags)
        for metric in LEVEL_FRAME_METRICS:
            at_key_frames(level, metric, data.get(metric), flags)

    for kf in KEY_FRAMES:
        shape = curve[kf]
        for metric in CURVE_METRICS:
            add(CURVE_LEVEL, metric, kf, _number(shape.get(metric)), None)
        for metric in CURVE_CATEGORIES:
            add(CURVE_LEVEL, metric, kf, None, shape.get(metric))
        d_mm = shape["d_mm"]
        for vert in ISHIHARA_VERTEBRAE:
            add(vert, "d_mm", kf, _number(d_mm.get(vert)), None)
    return rows


# --------------------------------------------------------------------------- summary


def summarize(values: Any) -> dict[str, float | int | None]:
    """n, mean, SD (n-1), median, p5, p25, p75, p95 of the finite values (None where undefined)."""
    a = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    out: dict[str, float | int | None] = {"n": int(a.size)}
    if a.size == 0:
        out.update(dict.fromkeys(("mean", "sd", "median", "p5", "p25", "p75", "p95")))
        return out
    p5, p25, p50, p75, p95 = np.percentile(a, [5, 25, 50, 75, 95])
    out.update(
        mean=float(a.mean()),
        sd=float(a.std(ddof=1)) if a.size > 1 else None,
        median=float(p50),
        p5=float(p5),
        p25=float(p25),
        p75=float(p75),
        p95=float(p95),
    )
    return out


class _Summary:
    """Accumulates per (level, metric, key frame) values: bounded by studies x levels."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str], list[float]] = {}
        self.missing: dict[tuple[str, str, str], int] = {}
        self.categories: dict[tuple[str, str, str, str], int] = {}

    def add(self, row: dict[str, Any]) -> None:
        key = (row["level"], row["metric"], row["key_frame"])
        if row["metric"] in CURVE_CATEGORIES:
            if row["category"] is not None:
                ckey = (*key, row["category"])
                self.categories[ckey] = self.categories.get(ckey, 0) + 1
            return
        self.values.setdefault(key, [])
        if row["value"] is None:
            self.missing[key] = self.missing.get(key, 0) + 1
        else:
            self.values[key].append(row["value"])

    def rows(self) -> Iterator[dict[str, Any]]:
        def order(key: tuple[str, ...]) -> tuple[Any, ...]:
            level, metric, kf = key[:3]
            return (
                _LEVEL_ORDER.get(level, 99),
                level,
                _METRIC_ORDER.get(metric, 99),
                _FRAME_ORDER.get(kf, 9),
                *key[3:],
            )

        for key in sorted(self.values, key=order):
            yield {
                "level": key[0],
                "metric": key[1],
                "key_frame": key[2],
                "unit": UNITS.get(key[1], ""),
                "category": None,
                "n_missing": self.missing.get(key, 0),
                **summarize(self.values[key]),
            }
        for ckey in sorted(self.categories, key=order):
            yield {
                "level": ckey[0],
                "metric": ckey[1],
                "key_frame": ckey[2],
                "unit": "",
                "category": ckey[3],
                "n": self.categories[ckey],
                "n_missing": None,
                **dict.fromkeys(("mean", "sd", "median", "p5", "p25", "p75", "p95")),
            }


class _Longitudinal:
    """Per patient, level and motion metric: every visit's (date, study key, value), for the wide table."""

    def __init__(self) -> None:
        self.visits: dict[tuple[str, str, str], list[tuple[str | None, str, float | None]]] = {}
        self.unlinked: set[str] = set()

    def add(self, row: dict[str, Any]) -> None:
        if row["key_frame"] != MOTION or row["metric"] not in LEVEL_MOTION_METRICS:
            return
        if not row["patient_id"]:
            self.unlinked.add(row["study_key"])
            return
        key = (row["patient_id"], row["level"], row["metric"])
        self.visits.setdefault(key, []).append((row["study_date"], row["study_key"], row["value"]))

    def columns(self) -> tuple[str, ...]:
        k = max((len(v) for v in self.visits.values()), default=0)
        visit_cols = tuple(f"{c}_{i}" for i in range(1, k + 1) for c in LONGITUDINAL_VISIT_COLUMNS)
        return LONGITUDINAL_COLUMNS + visit_cols

    def rows(self) -> Iterator[dict[str, Any]]:
        columns = self.columns()
        order = sorted(
            self.visits, key=lambda key: (key[0], _LEVEL_ORDER.get(key[1], 99), key[1], _METRIC_ORDER[key[2]])
        )
        for key in order:
            # date order; a study without a readable date goes last (then by study key, for stability)
            visits = sorted(
                self.visits[key], key=lambda v: (parse_study_date(v[0]) is None, v[0] or "", v[1])
            )
            first = parse_study_date(visits[0][0])
            row: dict[str, Any] = dict.fromkeys(columns)
            row.update(
                patient_id=key[0], level=key[1], metric=key[2], unit=UNITS[key[2]], n_visits=len(visits)
            )
            for i, (day, study_key, value) in enumerate(visits, start=1):
                parsed = parse_study_date(day)
                row[f"date_{i}"] = day
                row[f"days_{i}"] = None if parsed is None or first is None else (parsed - first).days
                row[f"value_{i}"] = value
                row[f"study_key_{i}"] = study_key
            yield row


# --------------------------------------------------------------------------- writers


class _CsvTable:
    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self._fh = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self._w = csv.writer(self._fh, lineterminator="\n")
        self._w.writerow(columns)

    def write(self, row: dict[str, Any]) -> None:
        self._w.writerow(["" if row[c] is None else row[c] for c in self.columns])

    def close(self) -> None:
        self._fh.close()


def _require_pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UsageError("Parquet output needs pyarrow: pip install 'dmx[parquet]' (or write .csv)") from None
    return pyarrow


class _ParquetTable:
    _FLOAT = {"value", "mean", "sd", "median", "p5", "p25", "p75", "p95"}
    _INT = {"n", "n_missing", "n_visits"}

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        pa = _require_pyarrow()
        self.pa = pa
        self.columns = columns
        fields = []
        for c in columns:
            base = c.rsplit("_", 1)[0] if c.rsplit("_", 1)[-1].isdigit() else c  # value_3 -> value
            t = (
                pa.float64()
                if base in self._FLOAT
                else pa.int64()
                if base in self._INT | {"days"}
                else pa.string()
            )
            fields.append(pa.field(c, t))
        self.schema = pa.schema(fields)
        self._writer = pa.parquet.ParquetWriter(str(path), self.schema)
        self._buffer: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        self._buffer.append({c: row[c] for c in self.columns})
        if len(self._buffer) >= _PARQUET_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(self.pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def _open_table(path: Path, columns: tuple[str, ...], *, parquet: bool) -> _CsvTable | _ParquetTable:
    return _ParquetTable(path, columns) if parquet else _CsvTable(path, columns)


def find_measurements(results: Path) -> Iterator[Path]:
    """Every ``measurements.json`` under ``results`` in sorted order (hidden folders skipped)."""
    for dirpath, dirnames, filenames in os.walk(results):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "measurements.json" in filenames:
            yield Path(dirpath) / "measurements.json"


def _check_writable(folder: Path) -> None:
    probe = folder / f".dmx-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def summary_path(table: str | Path) -> Path:
    """``TABLE_summary.<ext>`` beside ``TABLE.<ext>``."""
    table = Path(table)
    return table.with_name(f"{table.stem}_summary{table.suffix}")


def longitudinal_path(table: str | Path) -> Path:
    """``TABLE_longitudinal.<ext>`` beside ``TABLE.<ext>``."""
    table = Path(table)
    return table.with_name(f"{table.stem}_longitudinal{table.suffix}")


def aggregate(results: str | Path, table: str | Path, *, secret: str | None = None) -> AggregateResult:
    """Write the long table and its summary from every ``measurements.json`` under ``results``.

    Parameters
    ----------
    results : path
        A batch output folder (searched recursively).
    table : path
        ``.csv`` or ``.parquet`` (Parquet needs the ``dmx[parquet]`` extra). The
        summary goes to :func:`summary_path` and the longitudinal table (one row per
        patient, level and metric, visits in date order) to :func:`longitudinal_path`,
        in the same format.
    secret : str, optional
        Pseudonymise with this key (``@path`` reads it from a file); see :class:`Pseudonymizer`.

    Returns
    -------
    AggregateResult
        Paths, counts and the files skipped as malformed (each also logged as a
        warning naming the file).

    Raises
    ------
    InputError
        ``results`` is not a folder or holds no ``measurements.json``.
    UsageError
        Unsupported table format, empty secret, Parquet without pyarrow.
    """
    results, table = Path(results), Path(table)
    if not results.is_dir():
        raise InputError(results, "results folder not found" if not results.exists() else "not a folder")
    if table.suffix.lower() not in (".csv", ".parquet"):
        raise ParameterError("table", f"must end in .csv or .parquet, got {table.name!r}")
    if table.suffix.lower() == ".parquet":
        _require_pyarrow()
    pseudonymizer = Pseudonymizer(resolve_secret(secret)) if secret is not None else None
    summary_file = summary_path(table)
    try:
        table.parent.mkdir(parents=True, exist_ok=True)
        _check_writable(table.parent)
    except OSError as exc:
        raise InputError(table, f"cannot write the table: {exc.strerror or exc}") from None
    tmp_table = table.with_name(f".{table.name}.{os.getpid()}.tmp")
    tmp_summary = summary_file.with_name(f".{summary_file.name}.{os.getpid()}.tmp")
    long_file = longitudinal_path(table)
    tmp_long = long_file.with_name(f".{long_file.name}.{os.getpid()}.tmp")

    summary = _Summary()
    longitudinal = _Longitudinal()
    skipped: list[tuple[Path, str]] = []
    n_studies = n_rows = 0
    found = False
    parquet = table.suffix.lower() == ".parquet"
    writer = _open_table(tmp_table, COLUMNS, parquet=parquet)
    try:
        for path in find_measurements(results):
            found = True
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                rows = study_rows(
                    doc, source=path.parent.relative_to(results).as_posix(), pseudonymizer=pseudonymizer
                )
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                problem = exc.strerror if isinstance(exc, OSError) else str(exc).splitlines()[0][:200]
                log.warning("warning: %s: %s; skipped", path, problem)
                skipped.append((path, problem))
                continue
            for row in rows:
                writer.write(row)
                summary.add(row)
                longitudinal.add(row)
            n_studies += 1
            n_rows += len(rows)
        writer.close()
        if not found:
            raise InputError(results, "no measurements.json found (run 'dmx batch' first)")
        summary_writer = _open_table(tmp_summary, SUMMARY_COLUMNS, parquet=parquet)
        for row in summary.rows():
            summary_writer.write(row)
        summary_writer.close()
        long_writer = _open_table(tmp_long, longitudinal.columns(), parquet=parquet)
        for row in longitudinal.rows():
            long_writer.write(row)
        long_writer.close()
        os.replace(tmp_table, table)
        os.replace(tmp_summary, summary_file)
        os.replace(tmp_long, long_file)
    finally:
        for tmp in (tmp_table, tmp_summary, tmp_long):
            if tmp.exists():
                tmp.unlink()
    log.info(
        "%d stud%s, %d rows -> %s (+ %s, %s)%s",
        n_studies,
        "y" if n_studies == 1 else "ies",
        n_rows,
        table,
        summary_file.name,
        long_file.name,
        f"; {len(skipped)} file(s) skipped" if skipped else "",
    )
    if longitudinal.unlinked:
        log.info(
            "%d stud%s without a patient ID left out of the longitudinal table",
            len(longitudinal.unlinked),
            "y" if len(longitudinal.unlinked) == 1 else "ies",
        )
    return AggregateResult(table, summary_file, n_studies, n_rows, tuple(skipped), long_file)
