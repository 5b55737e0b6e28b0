"""Follow-up comparison: one patient's two studies, level by level, against the minimal detectable change.

:func:`compare` takes two ``measurements.json`` documents of the same patient (the
baseline and the follow-up, put in study-date order) and returns the
``comparison.json`` document (``dmx.comparison/1``): per level and measure the
baseline and follow-up values, their ``change`` (follow-up − baseline), the
minimal detectable change at 95 % (``mdc``) and whether the change exceeds it
(``significant``: ``True``/``False``, ``None`` when either value or the MDC is
missing); the flags that resolved or are new; the curve class at each key frame
before and after; and verdict sentences.

The MDC combines both studies' own measurement uncertainty with the
between-visit variability of the measure (patient effort and positioning differ
between visits) from the literature (``dmx/data/mdc.json``, replaceable)::

    MDC95 = 1.96 * sqrt(u_baseline**2 + u_followup**2 + 2 * SEM_visit**2)

``u`` is a study's 1-SD uncertainty of the value from the tracking
(``levels[lv].rotation_rom_uncertainty_deg``, ``translation_uncertainty_mm``,
``translation_uncertainty_pct``). When a study does not carry it (older files)
the MDC holds the between-visit part only and ``mdc_parts.measurement`` says so;
it is never taken as 0 silently.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from dmx.errors import InputError, UsageError
from dmx.files import read_json

COMPARISON_SCHEMA = "dmx.comparison/1"
MDC_SCHEMA = "dmx.mdc/1"
#: z of a two-sided 95 % interval.
Z95 = 1.96

#: Measures compared per level (spec section 4, plus the excursion from neutral), with their unit.
MEASURES: dict[str, str] = {
    "rotation_rom_deg": "deg",
    "translation_mm": "mm",
    "translation_pct": "%",
    "rotation_range_deg": "deg",
    "offset_range_mm": "mm",
    "excursion_mm": "mm",
}
#: The measurement-uncertainty key (1 SD) of a study for each measure that has one.
UNCERTAINTY_KEYS: dict[str, str] = {
    "rotation_rom_deg": "rotation_rom_uncertainty_deg",
    "translation_mm": "translation_uncertainty_mm",
    "translation_pct": "translation_uncertainty_pct",
}
#: Words for the verdict sentences.
_WORDS: dict[str, str] = {
    "rotation_rom_deg": "rotation",
    "translation_mm": "translation",
    "translation_pct": "translation (% depth)",
    "rotation_range_deg": "rotation range",
    "offset_range_mm": "offset range",
    "excursion_mm": "excursion from neutral",
}
_UNIT_TEXT = {"deg": "°", "mm": " mm", "%": " %"}
#: Flags each measure bears on (for "flag resolved" in a verdict sentence).
_MEASURE_FLAGS: dict[str, tuple[str, ...]] = {
    "translation_mm": ("translation_gt_3_5mm", "translation_gt_2mm"),
    "translation_pct": ("translation_gt_20pct",),
    "offset_range_mm": ("translation_gt_3_5mm",),
    "excursion_mm": ("translation_gt_2mm",),
    "rotation_rom_deg": ("angulation_gt_11deg_vs_adjacent", "insufficient_motion"),
}


@dataclass(frozen=True)
class Study:
    """One side of a comparison: the ``measurements.json`` document and where it was read."""

    doc: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class MdcTable:
    """Between-visit SEM per measure (``dmx.mdc/1``): ``measures[name]`` = ``{"sem_visit", "source"}``."""

    formula: str
    origin: str
    sources: dict[str, dict[str, Any]]
    measures: dict[str, dict[str, Any]]


# --------------------------------------------------------------------------- reading


def read_study(path: str | Path) -> Study:
    """Read an analysis output folder (its ``measurements.json``) or a ``measurements.json``.

    Raises
    ------
    dmx.errors.InputError
        Naming the path: not found, not JSON, or not a ``dmx.measurements/1`` document.
    """
    p = Path(path)
    f = p / "measurements.json" if p.is_dir() else p
    doc = read_json(
        f, what="measurements.json", not_found="give an analysis output folder or its measurements.json"
    )
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith("dmx.measurements/1"):
        raise InputError(f, "not a dmx measurements.json (schema dmx.measurements/1)")
    if not isinstance(doc.get("levels"), dict):
        raise InputError(f, "measurements.json has no 'levels'")
    return Study(doc=doc, path=f)


def parse_mdc(doc: Any, *, origin: str, path: str | Path = "") -> MdcTable:
    """Check a ``dmx.mdc/1`` document and return it as an :class:`MdcTable`.

    Raises
    ------
    dmx.errors.InputError
        Naming ``path`` and the problem.
    """
    path = path or origin
    if not isinstance(doc, dict) or doc.get("schema") != MDC_SCHEMA:
        raise InputError(path, f'not a between-visit variability table (expected "schema": "{MDC_SCHEMA}")')
    sources = doc.get("sources") or {}
    measures = doc.get("measures")
    if not isinstance(measures, dict):
        raise InputError(path, "'measures' must map each measure to {sem_visit, source}")
    for name, m in measures.items():
        if name not in MEASURES:
            raise InputError(path, f"measures.{name}: unknown measure (known: {', '.join(MEASURES)})")
        sem = m.get("sem_visit") if isinstance(m, dict) else None
        if not isinstance(m, dict) or (
            sem is not None
            and (
                isinstance(sem, bool)
                or not isinstance(sem, (int, float))
                or not math.isfinite(sem)
                or sem < 0
            )
        ):
            raise InputError(path, f"measures.{name}.sem_visit must be a non-negative number or null")
        if sem is None and m.get("from_mm") is None:
            continue
        if m.get("source") not in sources:
            raise InputError(path, f"measures.{name}.source {m.get('source')!r} is not a key of 'sources'")
    return MdcTable(
        formula=str(doc.get("formula") or ""), origin=origin, sources=dict(sources), measures=dict(measures)
    )


@cache
def default_mdc() -> MdcTable:
    """The packaged between-visit table (``dmx/data/mdc.json``)."""
    text = resources.files("dmx.data").joinpath("mdc.json").read_text(encoding="utf-8")
    return parse_mdc(json.loads(text), origin="default", path="dmx/data/mdc.json")


def load_mdc(path: str | Path | None = None) -> MdcTable:
    """The table in ``path`` (``dmx.mdc/1`` JSON) or the default one."""
    if path is None:
        return default_mdc()
    p = Path(path)
    return parse_mdc(read_json(p, what="between-visit variability table"), origin=str(p), path=p)


# --------------------------------------------------------------------------- the comparison


def study_date(doc: dict[str, Any]) -> date | None:
    """The study date (DICOM ``YYYYMMDD`` or ISO ``YYYY-MM-DD``), or ``None``."""
    text = str((doc.get("study") or {}).get("study_date") or "").strip()
    m = re.fullmatch(r"(\d{4})-?(\d{2})-?(\d{2})", text)
    if not m:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _depth_mm(level: dict[str, Any]) -> float | None:
    """The lower vertebra's depth (mm) from the study: median of 100 * offset_mm / offset_pct."""
    ratios = []
    for mm, pct in zip(level.get("offset_mm") or [], level.get("offset_pct") or [], strict=False):
        mm, pct = _number(mm), _number(pct)
        if mm is not None and pct is not None and abs(pct) > 1.0:
            ratios.append(100.0 * mm / pct)
    if not ratios:
        return None
    ratios.sort()
    return ratios[len(ratios) // 2]


def _sem_visit(
    measure: str, lv_b: dict[str, Any], lv_f: dict[str, Any], table: MdcTable
) -> tuple[float | None, str]:
    """Between-visit SEM of ``measure`` and how it was obtained."""
    entry = table.measures.get(measure)
    if entry is None:
        return None, "no between-visit SEM in the table for this measure"
    if entry.get("sem_visit") is not None:
        src = table.sources.get(entry.get("source"), {}).get("citation", entry.get("source"))
        return float(entry["sem_visit"]), f"{entry.get('derivation', '')} Source: {src}".strip()
    base = entry.get("from_mm")
    if base:
        sem_mm, how = _sem_visit(base, lv_b, lv_f, table)
        depths = [d for d in (_depth_mm(lv_b), _depth_mm(lv_f)) if d is not None]
        if sem_mm is None or not depths:
            return None, f"{base} SEM in % of depth needs calibrated studies (depth unknown)"
        depth = sum(depths) / len(depths)
        return (
            100.0 * sem_mm / depth,
            f"{base} SEM_visit / lower-body depth {depth:.1f} mm from the studies. {how}",
        )
    return None, "no between-visit SEM in the table for this measure"


def _measure_entry(
    measure: str, lv_b: dict[str, Any], lv_f: dict[str, Any], table: MdcTable
) -> dict[str, Any]:
    b, f = _number(lv_b.get(measure)), _number(lv_f.get(measure))
    change = None if b is None or f is None else f - b
    sem, sem_how = _sem_visit(measure, lv_b, lv_f, table)
    ukey = UNCERTAINTY_KEYS.get(measure)
    u_b = _number(lv_b.get(ukey)) if ukey else None
    u_f = _number(lv_f.get(ukey)) if ukey else None
    if u_b is not None and u_f is not None:
        measurement = "both studies' tracking uncertainty included"
    elif ukey is None:
        measurement = (
            "unknown: dmx reports no measurement uncertainty for this measure; "
            "the MDC holds the between-visit variability only"
        )
    else:
        missing = [name for name, u in (("baseline", u_b), ("follow-up", u_f)) if u is None]
        measurement = (
            f"unknown for the {' and '.join(missing)} ({ukey} absent: older measurements.json); "
            "the MDC holds the between-visit variability"
            + (" and the other study's uncertainty" if len(missing) == 1 else "")
            + " only"
        )
    mdc = None
    if sem is not None:
        mdc = Z95 * math.sqrt((u_b or 0.0) ** 2 + (u_f or 0.0) ** 2 + 2.0 * sem**2)
    significant = None if change is None or mdc is None else abs(change) > mdc
    return {
        "baseline": b,
        "followup": f,
        "change": change,
        "mdc": mdc,
        "significant": significant,
        "unit": MEASURES[measure],
        "mdc_parts": {
            "u_baseline": u_b,
            "u_followup": u_f,
            "sem_visit": sem,
            "measurement": measurement,
            "sem_visit_from": sem_how,
        },
    }


def _flag_changes(doc_b: dict[str, Any], doc_f: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {"resolved": [], "new": [], "persisting": [], "not_comparable": []}
    lv_b_all, lv_f_all = doc_b.get("levels") or {}, doc_f.get("levels") or {}
    for level in sorted(set(lv_b_all) | set(lv_f_all)):
        b, f = lv_b_all.get(level) or {}, lv_f_all.get(level) or {}
        fb, ff = set(b.get("flags") or []), set(f.get("flags") or [])
        ne_b, ne_f = set(b.get("flags_not_evaluated") or []), set(f.get("flags_not_evaluated") or [])
        measured_b = any(_number(b.get(k)) is not None for k in MEASURES)
        measured_f = any(_number(f.get(k)) is not None for k in MEASURES)
        for flag in sorted(fb | ff):
            item = {"level": level, "flag": flag}
            if flag in fb and flag in ff:
                out["persisting"].append(item)
            elif flag in fb and measured_f and flag not in ne_f:
                out["resolved"].append(item)
            elif flag in ff and measured_b and flag not in ne_b:
                out["new"].append(item)
            else:
                out["not_comparable"].append(item)
    return out


def _curve_changes(doc_b: dict[str, Any], doc_f: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in ("neutral", "flexion", "extension"):
        cb = (doc_b.get("curve") or {}).get(key) or {}
        cf = (doc_f.get("curve") or {}).get(key) or {}
        out[key] = {
            "baseline": cb.get("class"),
            "followup": cf.get("class"),
            "baseline_s_type": cb.get("s_type"),
            "followup_s_type": cf.get("s_type"),
            "baseline_cobb_c2c7_deg": _number(cb.get("cobb_c2c7_deg")),
            "followup_cobb_c2c7_deg": _number(cf.get("cobb_c2c7_deg")),
            "changed": None
            if not cb.get("class") or not cf.get("class")
            else cb.get("class") != cf.get("class"),
        }
    return out


def _fmt(v: float, unit: str) -> str:
    return f"{v:.1f}{_UNIT_TEXT.get(unit, ' ' + unit)}"


def verdict_sentences(levels: dict[str, Any], flags: dict[str, list[dict[str, str]]]) -> list[str]:
    """One sentence per level and measure whose change exceeds the MDC, then new flags; or "no change"."""
    resolved = {(r["level"], r["flag"]) for r in flags["resolved"]}
    new = {(r["level"], r["flag"]) for r in flags["new"]}
    out: list[str] = []
    said: set[tuple[str, str]] = set()
    for level, measures in levels.items():
        for measure, e in measures.items():
            if not e["significant"]:
                continue
            unit = e["unit"]
            verb = "rose" if e["change"] > 0 else "fell"
            text = (
                f"{level} {_WORDS[measure]} {verb} from {e['baseline']:.1f} to "
                f"{_fmt(e['followup'], unit)}, beyond the {_fmt(e['mdc'], unit)} detectable change"
            )
            gone = [f for f in _MEASURE_FLAGS.get(measure, ()) if (level, f) in resolved]
            came = [f for f in _MEASURE_FLAGS.get(measure, ()) if (level, f) in new]
            if gone:
                text += f"; {'flag' if len(gone) == 1 else 'flags'} {', '.join(gone)} resolved"
            if came:
                text += f"; new {'flag' if len(came) == 1 else 'flags'} {', '.join(came)}"
            said.update((level, f) for f in gone + came)
            out.append(text + ".")
    for r in flags["new"]:
        if (r["level"], r["flag"]) not in said:
            out.append(
                f"New at {r['level']}: {r['flag']} (the change behind it is within the detectable change)."
            )
    for r in flags["resolved"]:
        if (r["level"], r["flag"]) not in said:
            out.append(
                f"Resolved at {r['level']}: {r['flag']} "
                "(the change behind it is within the detectable change)."
            )
    if not any(e["significant"] for m in levels.values() for e in m.values()):
        out.insert(0, "No level changed by more than its minimal detectable change.")
    return out


def compare(
    baseline: Study,
    followup: Study,
    *,
    force: bool = False,
    mdc_table: MdcTable | None = None,
) -> dict[str, Any]:
    """The ``comparison.json`` document of two studies of one patient.

    Parameters
    ----------
    baseline, followup : Study
        As given on the command line; they are put in study-date order (an earlier
        "follow-up" becomes the baseline; ``order`` records it).
    force : bool
        Compare even when the patient IDs differ (or one is missing).
    mdc_table : MdcTable, optional
        Between-visit SEM per measure (default :func:`default_mdc`).

    Raises
    ------
    dmx.errors.UsageError
        The two studies are of different patients (or a patient ID is missing) and
        ``force`` is false; or both are the same study.
    """
    table = default_mdc() if mdc_table is None else mdc_table
    warnings: list[str] = []
    pid_b = str((baseline.doc.get("study") or {}).get("patient_id") or "").strip()
    pid_f = str((followup.doc.get("study") or {}).get("patient_id") or "").strip()
    if not pid_b or not pid_f or pid_b != pid_f:
        why = (
            "the patient IDs differ"
            if pid_b and pid_f
            else "a patient ID is missing, so they cannot be matched"
        )
        if not force:
            raise UsageError(
                f"{baseline.path} and {followup.path} may be different patients ({why}); "
                "pass --force to compare them anyway"
            )
        warnings.append(f"compared with --force although {why}")
        patient = "forced"
    else:
        patient = "same patient ID"
    sha_b = (baseline.doc.get("input") or {}).get("sha256")
    if sha_b and sha_b == (followup.doc.get("input") or {}).get("sha256"):
        warnings.append(
            "both measurements come from the same input files: the change measures only dmx itself"
        )
    d_b, d_f = study_date(baseline.doc), study_date(followup.doc)
    order = "as given"
    if d_b is not None and d_f is not None and d_f < d_b:
        baseline, followup = followup, baseline
        d_b, d_f = d_f, d_b
        order = "swapped: the second study given is the earlier one"
    elif d_b is None or d_f is None:
        warnings.append("a study date is missing: the studies are compared in the order given")
    elif d_b == d_f:
        warnings.append("both studies have the same date: compared in the order given")

    lv_b_all, lv_f_all = baseline.doc.get("levels") or {}, followup.doc.get("levels") or {}
    levels: dict[str, Any] = {}
    for level in [lv for lv in lv_b_all if lv in lv_f_all]:
        levels[level] = {
            m: _measure_entry(m, lv_b_all[level] or {}, lv_f_all[level] or {}, table) for m in MEASURES
        }
    flags = _flag_changes(baseline.doc, followup.doc)
    any_u = any(
        e["mdc_parts"]["u_baseline"] is not None or e["mdc_parts"]["u_followup"] is not None
        for m in levels.values()
        for e in m.values()
    )
    if not any_u:
        warnings.append(
            "neither study carries a measurement uncertainty (older measurements.json): every MDC holds the "
            "between-visit variability only"
        )

    def side(study: Study, d: date | None) -> dict[str, Any]:
        s = study.doc.get("study") or {}
        return {
            "path": str(study.path),
            "study_date": None if d is None else d.isoformat(),
            "study_uid": s.get("study_uid"),
            "series_uid": s.get("series_uid"),
            "sha256": (study.doc.get("input") or {}).get("sha256"),
            "calibration_source": (study.doc.get("calibration") or {}).get("source"),
            "landmarks_source": study.doc.get("landmarks_source"),
        }

    from dmx import __version__

    return {
        "schema": COMPARISON_SCHEMA,
        "software": {"name": "dmx", "version": __version__},
        "patient_match": patient,
        "order": order,
        "interval_days": None if d_b is None or d_f is None else (d_f - d_b).days,
        "baseline": side(baseline, d_b),
        "followup": side(followup, d_f),
        "mdc_method": {
            "formula": table.formula or "MDC95 = 1.96 * sqrt(u_baseline^2 + u_followup^2 + 2 * SEM_visit^2)",
            "table_origin": table.origin,
            "sources": {k: v.get("citation") for k, v in table.sources.items()},
            "significant": "true when |change| > mdc; null when either value or the MDC is unknown",
        },
        "levels": levels,
        "flags": flags,
        "curve": _curve_changes(baseline.doc, followup.doc),
        "verdict": verdict_sentences(levels, flags),
        "warnings": warnings,
    }


def comparison_text(doc: dict[str, Any]) -> str:
    """comparison.json text: strict JSON (no NaN)."""
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"
