"""The short human summary ``dmx analyze`` prints on stdout."""

from __future__ import annotations

from typing import Any

from dmx.anatomy import BODIES, LEVEL_MOTION_VALUES, LEVELS, OPTIONAL_BODIES, Flag, KeyFrame

#: The flags of a level (the ADI flag is the study's, not a level's).
_LEVEL_FLAGS = {f.value for f in Flag} - {Flag.ADI_GT_3MM.value}


def _fmt(value: Any, spec: str = ".1f", *, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:{spec}}"
    if text.startswith("-") and float(text) == 0:  # no "-0.0" for a value that rounds to zero
        text = text[1:]
    return text + unit


#: The per-level values of measurements.json; a level none of them could be measured for is "not measured".
LEVEL_VALUES = LEVEL_MOTION_VALUES


def level_measured(entry: dict[str, Any] | None) -> bool:
    """Whether at least one value of a ``levels`` entry was measured (not ``null``)."""
    return bool(entry) and any(entry.get(k) is not None for k in LEVEL_VALUES)


def no_measurement_reason(doc: dict[str, Any]) -> str | None:
    """Why a study produced no measurement at all, or ``None`` when some level (or the ADI) was measured.

    A study like that finished but gave nothing to read: ``dmx analyze`` exits 1 with this
    reason and a batch records the study as failed with it.
    """
    levels = doc.get("levels") or {}
    if any(level_measured(e) for e in levels.values()):
        return None
    adi = doc.get("adi") or {}
    if any(v is not None for v in (adi.get("adi_mm") or []) + (adi.get("adi_px") or [])):
        return None
    bodies = [v.value for v in BODIES + OPTIONAL_BODIES if v.value in (doc.get("tracks") or {})]
    adjacent = any(f"{u}-{lo}" in levels for u, lo in zip(bodies, bodies[1:], strict=False))
    if not bodies:
        why = "no vertebral body has its four corners"
    elif not adjacent:
        only = ", ".join(bodies)
        why = f"the landmarks hold only {only}: a level needs both of its vertebrae"
    else:
        why = "no level could be followed through the frames (every adjacent pair was lost)"
    return f"no level could be measured ({why})"


def format_summary(doc: dict[str, Any]) -> str:
    """A few lines for a terminal: per level ROM, translation and flags; curve class per key frame; warnings.

    Parameters
    ----------
    doc : dict
        The output of :func:`dmx.measure.measure` or a whole ``measurements.json``.

    Returns
    -------
    str
        Plain text without a trailing newline; ``-`` marks a value that could not be measured.
    """
    lines: list[str] = []
    frames = doc.get("frames", {})
    key = ", ".join(f"{k} {_fmt(frames.get(k), 'd')}" for k in ("neutral", "flexion", "extension"))
    count = frames.get("count")
    lines.append(f"Frames: {count if count is not None else '?'} ({key})")
    cal = doc.get("calibration")
    if isinstance(cal, dict):
        mm = cal.get("mm_per_px")
        cal_text = "none (mm values not measured)" if mm is None else f"{mm[0]:g} x {mm[1]:g} mm/px"
        lines.append(f"Calibration: {cal_text} [{cal.get('source', '?')}]")
    grid = (doc.get("tracking") or {}).get("grid_lines")
    if grid:
        lines.append(f"Tracking: {grid} taken out of the frames first")
    header = (
        f"{'level':<7}{'ROM deg':>9}{'range deg':>11}{'transl mm':>11}{'transl %':>10}"
        f"{'range mm':>10}{'excurs mm':>11}  flags"
    )
    lines += ["", header]
    levels = doc.get("levels", {})
    for level in LEVELS:
        e = levels.get(level.value)
        if e is None:
            continue
        flags = ", ".join(e.get("flags", [])) or ("none" if level_measured(e) else "not measured")
        not_eval = e.get("flags_not_evaluated", [])
        if not_eval and level_measured(e):
            if flags == "none" and _LEVEL_FLAGS <= set(not_eval):  # no flag evaluated: not "none"
                flags = f"not evaluated: {', '.join(not_eval)}"
            else:
                flags += f" (not evaluated: {', '.join(not_eval)})"
        lines.append(
            f"{level.value:<7}{_fmt(e.get('rotation_rom_deg')):>9}{_fmt(e.get('rotation_range_deg')):>11}"
            f"{_fmt(e.get('translation_mm')):>11}{_fmt(e.get('translation_pct')):>10}"
            f"{_fmt(e.get('offset_range_mm')):>10}{_fmt(e.get('excursion_mm')):>11}  {flags}"
        )
    curve = doc.get("curve", {})
    if curve:
        lines += ["", "Curve (C2-C7):"]
        for kf in KeyFrame:
            c = curve.get(kf.value)
            if not c:
                continue
            cls = c.get("class", "?")
            if c.get("s_type"):
                cls += f" ({c['s_type']})"
            frame = f"(frame {c['frame']})" if c.get("frame") is not None else "(no frame)"
            lines.append(
                f"  {kf.value:<10} {frame:<12} {cls:<28} Cobb {_fmt(c.get('cobb_c2c7_deg'), unit=' deg'):>10}"
                f"  ARA {_fmt(c.get('ara_c2c7_deg'), unit=' deg'):>10}  CCI {_fmt(c.get('cci')):>6}"
            )
    adi = doc.get("adi")
    if isinstance(adi, dict):
        flags = ", ".join(adi.get("flags", [])) or (
            "not evaluated" if adi.get("flags_not_evaluated") else "none"
        )
        lines += ["", f"ADI max: {_fmt(adi.get('max_mm'), unit=' mm')}  flags: {flags}"]
    warnings = list(doc.get("warnings", []))
    for level in LEVELS:
        warnings += [f"{level.value}: {w}" for w in (levels.get(level.value) or {}).get("warnings", [])]
    if warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in warnings]
    return "\n".join(lines)
