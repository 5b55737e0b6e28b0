"""What the report says, in words: the verdict, thresholds with sources, and why a value is missing.

Plain functions over the ``measurements.json`` document (spec section 8); no HTML here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dmx.anatomy import Flag


@dataclass(frozen=True)
class Threshold:
    """A flag's threshold as used for this study."""

    flag: str
    title: str
    rule: str
    value: float | None
    unit: str
    source: str
    origin: str


#: Spec section 7 defaults: (title, rule with {v}, value, unit, source).
DEFAULT_THRESHOLDS: dict[str, tuple[str, str, float, str, str]] = {
    Flag.TRANSLATION_GT_3_5MM.value: (
        "Translation",
        "|translation| > {v} mm, or |offset range over the motion| > {v} mm",
        3.5,
        "mm",
        "AMA Guides 5th ed. (AOMSI)",
    ),
    Flag.TRANSLATION_GT_20PCT.value: (
        "Translation, % of depth",
        "|translation| > {v} % of the depth of the lower vertebra",
        20.0,
        "%",
        "White & Panjabi",
    ),
    Flag.TRANSLATION_GT_2MM.value: (
        "Excursion from neutral",
        "the offset moves more than {v} mm from its neutral value, either way, in any frame",
        2.0,
        "mm",
        "Freeman et al. 2020 (videofluoroscopy)",
    ),
    Flag.ANGULATION_GT_11DEG_VS_ADJACENT.value: (
        "Angulation vs adjacent level",
        "rotation ROM exceeds that of an adjacent level by more than {v}\u00b0",
        11.0,
        "\u00b0",
        "AMA Guides 5th ed. (AOMSI)",
    ),
    Flag.INSUFFICIENT_MOTION.value: (
        "Insufficient motion",
        "|rotation ROM| < {v}\u00b0: the level was not stressed and its flags are unreliable",
        5.0,
        "\u00b0",
        "Hipp et al. 2026",
    ),
    Flag.ADI_GT_3MM.value: (
        "Atlanto-dental interval",
        "atlanto-dental interval > {v} mm in any frame (adults)",
        3.0,
        "mm",
        "standard radiology",
    ),
}

#: Thresholds that drive no flag of their own, or a flag already listed: (title, rule with {v}, unit).
OTHER_THRESHOLDS: dict[str, tuple[str, str, str]] = {
    "offset_range_mm": (
        "Offset range",
        "|offset range over the motion| > {v} mm (a second way to raise the translation flag)",
        "mm",
    ),
    "curve_tolerance_mm": (
        "Curve tolerance",
        "a C3\u2013C6 posterior-inferior corner within {v} mm of the C2\u2013C7 chord counts as on it "
        "(curve class, calibrated studies)",
        "mm",
    ),
    "curve_tolerance_pct_depth": (
        "Curve tolerance, % of depth",
        "a C3\u2013C6 posterior-inferior corner within {v} % of the mean C3\u2013C6 depth of the "
        "C2\u2013C7 chord counts as on it (curve class, studies without calibration)",
        "%",
    ),
}

#: measurements.json units as shown to a reader.
UNIT_WORDS = {"deg": "\u00b0", "mm": "mm", "%": "%", "px": "px"}

CURVE_WORDS = {
    "lordotic": "lordotic",
    "straight": "straight",
    "kyphotic": "kyphotic",
    "s_curve": "S-curve",
    "undetermined": "undetermined",
}
S_TYPE_WORDS = {"upper_kyphotic": "upper part kyphotic", "lower_kyphotic": "lower part kyphotic"}

MINUS = "\u2212"


def thresholds(measurements: dict[str, Any]) -> dict[str, Threshold]:
    """The thresholds used, from ``measurements["thresholds"]`` where recorded, else the spec defaults.

    ``origin`` says where the value came from (as recorded, or ``"dmx default (not recorded)"``).
    """
    recorded = measurements.get("thresholds") or {}
    # dmx.measure keys thresholds by their own name and names the flag each one drives; the
    # first recorded threshold of a flag is its primary value.
    by_flag: dict[str, Any] = {}
    used: set[str] = set()
    for name, rec in recorded.items():
        if isinstance(rec, dict) and isinstance(rec.get("flag"), str) and rec["flag"] not in by_flag:
            by_flag[rec["flag"]] = rec
            used.add(name)
    out: dict[str, Threshold] = {}
    for flag, (title, rule, value, unit, source) in DEFAULT_THRESHOLDS.items():
        rec = recorded.get(flag, by_flag.get(flag))
        if isinstance(rec, dict):
            v = rec.get("value", value)
            v = float(v) if isinstance(v, (int, float)) else None
            out[flag] = Threshold(
                flag,
                title,
                rule.format(v=fmt(v)),
                v,
                unit,
                str(rec.get("source") or source),
                str(rec.get("origin") or "recorded"),
            )
        elif isinstance(rec, (int, float)):
            out[flag] = Threshold(flag, title, rule.format(v=fmt(rec)), float(rec), unit, source, "recorded")
        else:
            out[flag] = Threshold(
                flag, title, rule.format(v=fmt(value)), value, unit, source, "dmx default (not recorded)"
            )
    for flag, rec in recorded.items():  # the other thresholds: in words, with their unit
        if flag not in out and flag not in used and isinstance(rec, dict):
            v = rec.get("value")
            v = float(v) if isinstance(v, (int, float)) else None
            title, rule, unit = OTHER_THRESHOLDS.get(
                flag, (flag.replace("_", " "), str(rec.get("rule") or "as recorded"), "")
            )
            unit = UNIT_WORDS.get(str(rec.get("unit") or unit), str(rec.get("unit") or unit))
            out[flag] = Threshold(
                flag,
                title,
                rule.format(v=fmt(v)),
                v,
                unit,
                str(rec.get("source") or "not stated"),
                str(rec.get("origin") or "recorded"),
            )
    return out


def fmt(value: Any, digits: int = 1, *, signed: bool = False) -> str:
    """A number for display: fixed digits, a true minus sign; ``"—"`` for a missing value."""
    if value is None or not isinstance(value, (int, float)) or not np.isfinite(value):
        return "\u2014"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", MINUS)


def fmt_uncertainty(value: float, digits: int = 1) -> str:
    """An uncertainty (SD) for display after "±": ``digits`` decimals, more (up to two) when it would
    otherwise read 0, so that a small uncertainty is never shown as none."""
    d = digits
    while d < digits + 2 and round(value, d) == 0:
        d += 1
    return fmt(value, d)


def _array(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in (values or [])], dtype=float)


def excursion_from_neutral(
    level: dict[str, Any], neutral: int | None, *, key: str = "offset_mm"
) -> float | None:
    """``max |offset[f] - offset[neutral]|`` over the frames (the ``translation_gt_2mm`` quantity)."""
    off = _array(level.get(key))
    if neutral is None or not (0 <= neutral < off.size) or not np.isfinite(off[neutral]):
        return None
    dev = np.abs(off - off[neutral])
    return float(np.nanmax(dev)) if np.any(np.isfinite(dev)) else None


@dataclass(frozen=True)
class Finding:
    """One threshold a level exceeds."""

    level: str
    flag: str
    text: str
    source: str


@dataclass(frozen=True)
class CurveLine:
    key: str
    frame: int | None
    words: str
    cobb: str
    state: str


@dataclass(frozen=True)
class Verdict:
    """The summary a clinician reads first."""

    state: str  # "flagged" | "clear" | "incomplete"
    headline: str
    findings: tuple[Finding, ...]
    flagged_levels: tuple[str, ...]
    insufficient: tuple[str, ...]
    motion_text: str
    curves: tuple[CurveLine, ...]
    not_evaluated: tuple[str, ...]
    motion_measured: bool = True  # False: no level's rotation was measured (nothing to call sufficient)


def _finding_text(flag: str, name: str, lvl: dict[str, Any], m: dict[str, Any], th: Threshold) -> str:
    v = fmt(th.value)
    if flag == Flag.TRANSLATION_GT_3_5MM.value:
        return (
            f"translation {fmt(lvl.get('translation_mm'), signed=True)} mm (flexion \u2212 extension), "
            f"range over the motion {fmt(lvl.get('offset_range_mm'))} mm; threshold {v} mm"
        )
    if flag == Flag.TRANSLATION_GT_20PCT.value:
        pct = fmt(lvl.get("translation_pct"), signed=True)
        return f"translation {pct} % of vertebral depth; threshold {v} %"
    if flag == Flag.TRANSLATION_GT_2MM.value:
        exc = excursion_from_neutral(lvl, (m.get("frames") or {}).get("neutral"))
        return f"moves up to {fmt(exc)} mm from its neutral position; threshold {v} mm"
    if flag == Flag.ANGULATION_GT_11DEG_VS_ADJACENT.value:
        levels = list((m.get("levels") or {}).keys())
        i = levels.index(name)
        rom = lvl.get("rotation_rom_deg")
        parts = []
        for j in (i - 1, i + 1):
            if 0 <= j < len(levels):
                other = m["levels"][levels[j]].get("rotation_rom_deg")
                if isinstance(rom, (int, float)) and isinstance(other, (int, float)):
                    parts.append(f"{levels[j]} {fmt(other)}\u00b0 (difference {fmt(rom - other)}\u00b0)")
        return f"rotation {fmt(rom)}\u00b0 against " + ", ".join(parts) + f"; threshold {v}\u00b0"
    if flag == Flag.ADI_GT_3MM.value:
        return f"atlanto-dental interval above {v} mm"
    return flag.replace("_", " ")


def verdict(measurements: dict[str, Any]) -> Verdict:
    """Which levels exceed which threshold, the curve at the key frames, and whether motion sufficed."""
    m = measurements
    th = thresholds(m)
    levels: dict[str, Any] = m.get("levels") or {}
    findings: list[Finding] = []
    insufficient: list[str] = []
    for name, lvl in levels.items():
        for flag in lvl.get("flags") or []:
            if flag == Flag.INSUFFICIENT_MOTION.value:
                insufficient.append(name)
                continue
            t = th.get(flag)
            findings.append(
                Finding(
                    name, flag, _finding_text(flag, name, lvl, m, t) if t else flag, t.source if t else ""
                )
            )
    for flag in m.get("flags") or []:  # study-level flags (e.g. the atlanto-dental interval)
        t = th.get(flag)
        findings.append(
            Finding(
                "C1-C2", flag, _finding_text(flag, "C1-C2", {}, m, t) if t else flag, t.source if t else ""
            )
        )
    flagged = tuple(dict.fromkeys(f.level for f in findings))
    not_evaluated = tuple(str(f) for f in (m.get("flags_not_evaluated") or []))

    unmeasured = [
        n
        for n, lvl in levels.items()
        if all(lvl.get(k) is None for k in ("rotation_rom_deg", "translation_pct"))
    ]
    if findings:
        state = "flagged"
        headline = f"Exceeds a threshold at {', '.join(flagged)}"
    elif len(unmeasured) == len(levels):
        state = "incomplete"
        headline = "No level could be measured"
    elif unmeasured:
        state = "incomplete"
        headline = f"No measured level exceeds a threshold; {', '.join(unmeasured)} could not be measured"
    else:
        state = "clear"
        headline = "No level exceeds a threshold"
    if insufficient:
        t = th[Flag.INSUFFICIENT_MOTION.value]
        details = ", ".join(f"{n} ({fmt(levels[n].get('rotation_rom_deg'))}\u00b0)" for n in insufficient)
        motion_text = (
            f"Insufficient motion at {details}: rotation below {fmt(t.value)}\u00b0, so the level was not "
            f"stressed and its flags are unreliable ({t.source})."
        )
        if state != "flagged":
            headline += f"; {', '.join(insufficient)} moved too little to be judged"
    else:
        missing = [n for n, lvl in levels.items() if lvl.get("rotation_rom_deg") is None]
        if len(missing) == len(levels):  # none measured (or no level at all): nothing to call sufficient
            motion_text = "Motion not measured: no level's rotation could be measured."
        else:
            motion_text = "Motion sufficient at every measured level"
            if missing:
                motion_text += f"; rotation not measured at {', '.join(missing)}"
            motion_text += "."

    frames = m.get("frames") or {}
    curves = []
    for key in ("neutral", "flexion", "extension"):
        c = (m.get("curve") or {}).get(key) or {}
        cls = c.get("class") or "undetermined"
        words = CURVE_WORDS.get(cls, str(cls))
        if c.get("s_type"):
            words += f" ({S_TYPE_WORDS.get(c['s_type'], c['s_type'])})"
        cobb = c.get("cobb_c2c7_deg")
        curves.append(CurveLine(key, frames.get(key), words, fmt(cobb, signed=True), cls))
    return Verdict(
        state,
        headline,
        tuple(findings),
        flagged,
        tuple(insufficient),
        motion_text,
        tuple(curves),
        not_evaluated,
        motion_measured=any(lvl.get("rotation_rom_deg") is not None for lvl in levels.values()),
    )


def adi_words(measurements: dict[str, Any]) -> tuple[str, bool]:
    """The atlanto-dental interval in plain words, and whether its flag is raised."""
    adi = measurements.get("adi")
    if not isinstance(adi, dict):
        return (
            "Atlanto-dental interval: not measured (C1.arch_post and C2.dens_ant not in the landmarks).",
            False,
        )
    raised = Flag.ADI_GT_3MM.value in (adi.get("flags") or [])
    mm = [v for v in (adi.get("adi_mm") or []) if v is not None]
    if adi.get("max_mm") is not None:
        limit = ((measurements.get("thresholds") or {}).get("adi_mm") or {}).get("value")
        over = f", above the {fmt(limit)} mm limit" if raised and limit is not None else ""
        return (
            f"Atlanto-dental interval: largest {fmt(adi['max_mm'])} mm{over} "
            f"(smallest {fmt(min(mm))} mm; measured in {len(mm)} of {len(adi['adi_mm'])} frames).",
            raised,
        )
    px = [v for v in (adi.get("adi_px") or []) if v is not None]
    if px:
        return (
            f"Atlanto-dental interval: largest {fmt(max(px))} px (no calibration: not in mm, "
            "the 3 mm limit is not evaluated).",
            False,
        )
    return "Atlanto-dental interval: not measurable (C1 or C2 not followed in any frame).", False


def null_reason(measurements: dict[str, Any], quantity: str) -> str:
    """Why a per-level value is ``null``, in a few words."""
    calibrated = (measurements.get("calibration") or {}).get("mm_per_px") is not None
    if quantity.endswith("_mm") and not calibrated:
        return "no calibration"
    if quantity in ("rotation_rom_deg", "translation_mm", "translation_pct"):
        frames = measurements.get("frames") or {}
        if frames.get("flexion") is None or frames.get("extension") is None:
            return "no flexion/extension frame"
        return "not tracked at a key frame"
    return "not tracked"


def calibration_words(measurements: dict[str, Any]) -> str:
    """The calibration in plain words (spec section 2)."""
    cal = measurements.get("calibration") or {}
    mm = cal.get("mm_per_px")
    source = str(cal.get("source") or "none")
    if mm is None or source == "none":
        return "No calibration: mm values are not available; angles and % of vertebral depth are."
    spacing = f"{fmt(mm[0], 4)} \u00d7 {fmt(mm[1], 4)} mm per pixel (row \u00d7 column)"
    words = {
        "user": "given by the user on the command line",
        "PixelSpacing": "from Pixel Spacing (0028,0030), calibrated at the patient",
        "ImagerPixelSpacing/ERMF": "from Imager Pixel Spacing corrected by the estimated radiographic "
        "magnification factor",
        "ImagerPixelSpacing": "from Imager Pixel Spacing: mm measured at the detector, not corrected for "
        "magnification, so mm values are overstated",
    }.get(source, f"source: {source}")
    return f"{spacing}, {words}."
