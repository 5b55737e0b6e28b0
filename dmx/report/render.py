"""The per-patient HTML report: one self-contained file (no external reference of any kind)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from dmx.analysis import LOW_CONFIDENCE, Analysis
from dmx.anatomy import CORNERS, Flag, LandmarkSource
from dmx.files import write_text_atomic
from dmx.measure.text_summary import level_measured
from dmx.report import images, plots, wording
from dmx.report.templating import dicom_date, environment, person_name, script_json, template_text
from dmx.tracking.tracker import TRUSTED_QUALITY

#: Below this tracking confidence a frame is not used (the tracker leaves it out, as lost); the
#: report's quality control explains this one threshold (:data:`dmx.tracking.TRUSTED_QUALITY`).
LOW_QUALITY = TRUSTED_QUALITY

#: Tracking confidence from which a frame is shown as "confident" (between the two: "fair").
GOOD_QUALITY = 0.8
#: The flags of a level (the ADI flag is the study's, not a level's).
_LEVEL_FLAGS = {f.value for f in Flag} - {Flag.ADI_GT_3MM.value}


def _array(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in (values or [])], dtype=float)


def _ranges(indices: np.ndarray) -> str:
    """``[3, 4, 5, 9]`` as ``"3–5, 9"``."""
    if indices.size == 0:
        return ""
    runs, start, prev = [], int(indices[0]), int(indices[0])
    for i in indices[1:]:
        i = int(i)
        if i != prev + 1:
            runs.append((start, prev))
            start = i
        prev = i
    runs.append((start, prev))
    return ", ".join(f"{a}" if a == b else f"{a}\u2013{b}" for a, b in runs)


def _key_index(m: dict[str, Any], key: str, n: int) -> int | None:
    v = (m.get("frames") or {}).get(key)
    return int(v) if isinstance(v, int) and 0 <= v < n else None


def _time_axis(analysis: Analysis, n: int) -> tuple[np.ndarray, str]:
    t = _array((analysis.measurements.get("frames") or {}).get("time_ms"))
    if t.size != n or not np.all(np.isfinite(t)):
        seq_t = analysis.sequence.time_ms
        t = np.asarray(seq_t, float) if seq_t is not None and len(seq_t) == n else None
    if t is None:
        return np.arange(n, dtype=float), "frame"
    return (t - t[0]) / 1000.0, "time (s)"


def _keyframes(
    analysis: Analysis, window: tuple[float, float], verdict: wording.Verdict, *, max_side_px: int
) -> list[dict[str, Any]]:
    m = analysis.measurements
    tracks = analysis.tracks
    frames = analysis.sequence.frames
    names = [v.value for v in tracks.vertebrae]
    level_labels = []
    for name in m.get("levels") or {}:
        u, lo = name.split("-")
        if u in names and lo in names:
            state = (
                "flagged"
                if name in verdict.flagged_levels
                else "insufficient"
                if name in verdict.insufficient
                else "ok"
            )
            level_labels.append((name, names.index(u), names.index(lo), state))
    curves = {c.key: c for c in verdict.curves}
    out = []
    keys = {key: _key_index(m, key, frames.shape[0]) for key in ("neutral", "flexion", "extension")}
    present = [i for i in keys.values() if i is not None]
    # one crop for the three frames, so that they compare at the same scale
    x0, y0, x1, y1 = images.crop_box(tracks.corners_px[present], analysis.sequence.shape)
    for key, i in keys.items():
        if i is None:
            out.append({"key": key, "frame": None, "svg": None, "curve": curves.get(key)})
            continue
        crop = images.to_uint8(frames[i, y0:y1, x0:x1], window)
        scale = min(1.0, max_side_px / max(crop.shape))
        small = images.resize(crop, scale)
        uri = images.data_uri(images.jpeg_bytes(small, quality=82))
        corners = (tracks.corners_px[i] - np.array([x0, y0])) * np.array(
            [small.shape[1] / crop.shape[1], small.shape[0] / crop.shape[0]]
        )
        svg = plots.keyframe_svg(
            uri,
            width_px=small.shape[1],
            height_px=small.shape[0],
            corners_px=corners,
            vertebra_labels=names,
            level_labels=level_labels,
            title=key,
        )
        out.append({"key": key, "frame": i, "svg": Markup(svg), "curve": curves.get(key)})
    return out


def _auto_landmarks(
    analysis: Analysis, window: tuple[float, float], *, max_side_px: int
) -> dict[str, Any] | None:
    """The "found automatically: review" block: confidence, missing bodies, corners on the reference frame."""
    m = analysis.measurements
    if m.get("landmarks_source") != LandmarkSource.AUTO:
        return None
    from dmx.anatomy import BODIES

    det = m.get("landmarks_detection") or {}
    confidence = det.get("confidence") or {}
    missing = det.get("missing") or {}
    lm = analysis.landmarks
    rows = []
    for v in BODIES:
        name = v.value
        if v in lm.corners_px:
            c = confidence.get(name)
            low = isinstance(c, (int, float)) and c < LOW_CONFIDENCE
            rows.append(
                {
                    "name": name,
                    "confidence": "\u2014" if c is None else wording.fmt(float(c), 2),
                    "state": "low confidence: check" if low else "found",
                    "cls": "auto-low" if low else "",
                }
            )
        elif name in missing:
            rows.append(
                {
                    "name": name,
                    "confidence": "\u2014",
                    "state": f"not found: {missing[name]}",
                    "cls": "auto-missing",
                }
            )
    svg = None
    frames = analysis.sequence.frames
    if lm.corners_px and 0 <= lm.frame < frames.shape[0]:
        names = list(lm.vertebrae)
        corners = np.stack([lm.corners_px[v] for v in names]).astype(float)
        x0, y0, x1, y1 = images.crop_box(corners[None], analysis.sequence.shape)
        crop = images.to_uint8(frames[lm.frame, y0:y1, x0:x1], window)
        scale = min(1.0, max_side_px / max(crop.shape))
        small = images.resize(crop, scale)
        uri = images.data_uri(images.jpeg_bytes(small, quality=82))
        shown = (corners - np.array([x0, y0])) * np.array(
            [small.shape[1] / crop.shape[1], small.shape[0] / crop.shape[0]]
        )
        low_names = {r["name"] for r in rows if r["cls"] == "auto-low"}
        labels = [v.value + ("?" if v.value in low_names else "") for v in names]
        svg = Markup(
            plots.keyframe_svg(
                uri,
                width_px=small.shape[1],
                height_px=small.shape[0],
                corners_px=shown,
                vertebra_labels=labels,
                level_labels=[],
                title="reference (automatic landmarks)",
            )
        )
    return {
        "frame": lm.frame,
        "rows": rows,
        "missing": missing,
        "low": [r["name"] for r in rows if r["cls"] == "auto-low"],
        "low_confidence": LOW_CONFIDENCE,
        "svg": svg,
        "warnings": [str(w) for w in det.get("warnings") or []],
    }


def _level_rows(analysis: Analysis, th: dict[str, wording.Threshold]) -> list[dict[str, Any]]:
    m = analysis.measurements
    tracks = analysis.tracks
    names = [v.value for v in tracks.vertebrae]
    tracked = np.all(np.isfinite(tracks.corners_px), axis=(2, 3))
    neutral = _key_index(m, "neutral", tracks.n_frames)

    def cell(
        value: Any,
        quantity: str,
        *,
        digits: int = 1,
        signed: bool = False,
        limit: float | None = None,
        below: bool = False,
        uncertainty: Any = None,
    ) -> dict[str, Any]:
        if value is None:
            return {"text": "\u2014", "reason": wording.null_reason(m, quantity), "exceeds": False}
        exceeds = False
        if limit is not None:
            exceeds = abs(value) < limit if below else abs(value) > limit
        text = wording.fmt(value, digits, signed=signed)
        if isinstance(uncertainty, (int, float)) and np.isfinite(uncertainty):
            text += f" \u00b1 {wording.fmt_uncertainty(uncertainty, digits)}"
        return {"text": text, "reason": None, "exceeds": exceeds}

    def lim(flag: str) -> float | None:
        t = th.get(flag)
        return t.value if t else None

    rows = []
    for name, lvl in (m.get("levels") or {}).items():
        u, lo = name.split("-")
        q_text, pct_text = "\u2014", "\u2014"
        if u in names and lo in names:
            iu, il = names.index(u), names.index(lo)
            both = tracked[:, iu] & tracked[:, il]
            q = np.fmin(tracks.quality[:, iu], tracks.quality[:, il])[both]
            q = q[np.isfinite(q)]
            q_text = wording.fmt(float(np.median(q)), 2) if q.size else "\u2014"
            pct_text = f"{100 * both.mean():.0f} %"
        exc = wording.excursion_from_neutral(lvl, neutral)
        t35 = lim(Flag.TRANSLATION_GT_3_5MM.value)
        rows.append(
            {
                "name": name,
                "measured": level_measured(lvl),
                "flags": [f for f in (lvl.get("flags") or [])],
                # no flag evaluated at all (e.g. one uncalibrated image): "not evaluated", not "none"
                "none_word": "none"
                if not _LEVEL_FLAGS <= set(lvl.get("flags_not_evaluated") or [])
                else "not evaluated",
                "rom": cell(
                    lvl.get("rotation_rom_deg"),
                    "rotation_rom_deg",
                    signed=True,
                    limit=lim(Flag.INSUFFICIENT_MOTION.value),
                    below=True,
                    uncertainty=lvl.get("rotation_rom_uncertainty_deg"),
                ),
                "rot_range": cell(lvl.get("rotation_range_deg"), "rotation_range_deg"),
                "trans_mm": cell(
                    lvl.get("translation_mm"),
                    "translation_mm",
                    signed=True,
                    limit=t35,
                    uncertainty=lvl.get("translation_uncertainty_mm"),
                ),
                "trans_pct": cell(
                    lvl.get("translation_pct"),
                    "translation_pct",
                    signed=True,
                    limit=lim(Flag.TRANSLATION_GT_20PCT.value),
                    uncertainty=lvl.get("translation_uncertainty_pct"),
                ),
                "off_range": cell(lvl.get("offset_range_mm"), "offset_range_mm", limit=t35),
                "excursion": cell(exc, "excursion_mm", limit=lim(Flag.TRANSLATION_GT_2MM.value))
                if exc is not None or (m.get("calibration") or {}).get("mm_per_px") is None
                else {"text": "\u2014", "reason": "not tracked at neutral", "exceeds": False},
                "quality": q_text,
                "tracked": pct_text,
            }
        )
    return rows


#: The measures shown against the normative reference, with their label, unit and flag threshold.
_NORMATIVE_MEASURES: tuple[tuple[str, str, str, str | None], ...] = (
    ("rotation_rom_deg", "Rotation ROM", "°", None),
    ("translation_mm", "Translation", "mm", Flag.TRANSLATION_GT_3_5MM.value),
    ("translation_pct", "Translation", "% depth", Flag.TRANSLATION_GT_20PCT.value),
)


def _normative_rows(m: dict[str, Any], th: dict[str, wording.Threshold]) -> dict[str, Any] | None:
    """Each level's values against its normative reference: bars, numbers and numbered sources."""
    levels = m.get("levels") or {}
    if not any("normative" in lvl for lvl in levels.values()):
        return None  # a measurements.json from before the normative block
    sources: list[str] = []
    rows = []
    for name, lvl in levels.items():
        block = lvl.get("normative") or {}
        cells = []
        for key, _label, unit, flag in _NORMATIVE_MEASURES:
            ref = block.get(key)
            value = lvl.get(key)
            if ref is None:
                cells.append(None)
                continue
            if ref["source"] not in sources:
                sources.append(ref["source"])
            limit = th[flag].value if flag in th else None
            ref_text = f"{wording.fmt(ref['mean'], 1)}"
            if ref.get("sd") is not None:
                ref_text += f" ± {wording.fmt(ref['sd'], 1)} SD"
            cells.append(
                {
                    "svg": Markup(
                        plots.reference_bar(value, mean=ref["mean"], sd=ref.get("sd"), limit=limit, unit=unit)
                    ),
                    "value": "—" if value is None else wording.fmt(value, 1),
                    "reference": ref_text,
                    "statistic": ref.get("statistic") or "mean",
                    "n": ref.get("n"),
                    "z": None if ref.get("z") is None else wording.fmt(ref["z"], 1, signed=True),
                    "sd": ref.get("sd"),
                    "source_no": sources.index(ref["source"]) + 1,
                }
            )
        rows.append({"name": name, "cells": cells})
    first = next((lvl["normative"] for lvl in levels.values() if "normative" in lvl), {})
    return {
        "measures": [(label, unit) for _, label, unit, _ in _NORMATIVE_MEASURES],
        "rows": rows,
        "sources": sources,
        "table": first.get("table") or "",
        "origin": first.get("table_origin") or "",
    }


def _quality_control(analysis: Analysis) -> dict[str, Any]:
    tracks = analysis.tracks
    tracked = tracks.tracked  # C1 (followed for the ADI) has a motion but no corners
    names = [v.value for v in tracks.vertebrae]
    rows = []
    for v, name in enumerate(names):
        q = tracks.quality[:, v]
        lost = np.flatnonzero(~tracked[:, v])
        low = np.flatnonzero(tracked[:, v] & (np.nan_to_num(q, nan=0.0) < LOW_QUALITY))
        reasons = sorted({r for r in (tracks.reason[t][v] for t in lost) if r})
        qq = q[tracked[:, v] & np.isfinite(q)]
        rows.append(
            {
                "name": name,
                "median": wording.fmt(float(np.median(qq)), 2) if qq.size else "\u2014",
                "minimum": wording.fmt(float(np.min(qq)), 2) if qq.size else "\u2014",
                "tracked_pct": f"{100 * tracked[:, v].mean():.0f} %",
                "lost": _ranges(lost),
                "low": _ranges(low),
                "reasons": "; ".join(reasons),
                "problem": bool(lost.size or low.size),
            }
        )
    strip = plots.quality_strip(
        tracks.quality, tracked, labels=names, threshold=LOW_QUALITY, good=GOOD_QUALITY
    )
    return {"rows": rows, "strip": Markup(strip), "any_problem": any(r["problem"] for r in rows)}


def _plots(analysis: Analysis, times: np.ndarray, x_label: str) -> dict[str, Any]:
    m = analysis.measurements
    levels = m.get("levels") or {}
    calibrated = (m.get("calibration") or {}).get("mm_per_px") is not None
    off_key, off_label = ("offset_mm", "offset (mm)") if calibrated else ("offset_pct", "offset (% of depth)")
    n = len(times)
    keys = {k: _key_index(m, k, n) for k in ("neutral", "flexion", "extension")}
    key_times = {k: float(times[i]) for k, i in keys.items() if i is not None}
    angle_series, offset_series, legend = [], [], []
    angles, offsets = {}, {}
    for i, (name, lvl) in enumerate(levels.items()):
        colour = plots.LEVEL_COLOURS[i % len(plots.LEVEL_COLOURS)]
        a, o = _array(lvl.get("angle_deg")), _array(lvl.get(off_key))
        if a.size != n:
            a = np.full(n, np.nan)
        if o.size != n:
            o = np.full(n, np.nan)
        angles[name], offsets[name] = a, o
        angle_series.append(plots.Series(name, colour, times, a))
        offset_series.append(plots.Series(name, colour, times, o))
        legend.append({"name": name, "colour": colour})
    angle_chart = plots.time_chart(
        angle_series,
        x_label=x_label,
        y_label="segmental angle (\u00b0)",
        key_times=key_times,
        plot_id="plot-angle",
    )
    offset_chart = plots.time_chart(
        offset_series, x_label=x_label, y_label=off_label, key_times=key_times, plot_id="plot-offset"
    )
    _, alim = plots._limits(list(angles.values()) or [np.array([0.0])])
    _, olim = plots._limits(list(offsets.values()) or [np.array([0.0])], include_zero=True)
    loops, loop_coords = [], {}
    for i, name in enumerate(angles):
        svg, coords = plots.loop_chart(
            angles[name],
            offsets[name],
            title=name,
            colour=plots.LEVEL_COLOURS[i % len(plots.LEVEL_COLOURS)],
            offset_label=off_label,
            keys={k: v for k, v in keys.items() if v is not None},
            plot_id=f"loop-{name}",
            angle_lim=alim,
            offset_lim=olim,
        )
        loops.append(Markup(svg))
        loop_coords[f"loop-{name}"] = coords
    return {
        "angle": Markup(angle_chart),
        "offset": Markup(offset_chart),
        "loops": loops,
        "legend": legend,
        "loop_coords": loop_coords,
        "offset_label": off_label,
    }


def _cine_payload(
    analysis: Analysis,
    window: tuple[float, float],
    times: np.ndarray,
    *,
    max_side_px: int,
    budget_bytes: int,
    jpeg_quality: int,
    encoded: images.EncodedCine | None = None,
) -> dict[str, Any]:
    frames = analysis.sequence.frames
    tracks = analysis.tracks
    options = {"max_side_px": max_side_px, "budget_bytes": budget_bytes, "jpeg_quality": jpeg_quality}
    if encoded is not None and encoded.fits(frames, window, **options):
        plan, uris = encoded.plan, list(encoded.uris)
    else:
        plan = images.plan_cine(frames, window, **options)
        uris = images.encode_cine(frames, window, plan)
    h, w = analysis.sequence.shape
    s = plan.scale
    transforms = tracks.rigid_transforms()
    corners, quality, mats = [], [], []
    for t in plan.frame_indices:
        c_row, q_row, m_row = [], [], []
        for v in range(len(tracks.vertebrae)):
            c = tracks.corners_px[t, v]
            c_row.append(
                None if not np.all(np.isfinite(c)) else [round(float(x) * s, 1) for x in c.reshape(-1)]
            )
            q = tracks.quality[t, v]
            q_row.append(None if not np.isfinite(q) else round(float(q), 2))
            a = transforms[t, v]
            if np.all(np.isfinite(a)):
                # same rigid motion in cine pixels: linear part unchanged, translation scaled
                m_row.append(
                    [
                        round(float(a[0, 0]), 5),
                        round(float(a[1, 0]), 5),
                        round(float(a[0, 1]), 5),
                        round(float(a[1, 1]), 5),
                        round(float(a[0, 2]) * s, 2),
                        round(float(a[1, 2]) * s, 2),
                    ]
                )
            else:
                m_row.append(None)
        corners.append(c_row)
        quality.append(q_row)
        mats.append(m_row)
    return {
        "frames": uris,
        "indices": list(plan.frame_indices),
        "count": int(frames.shape[0]),
        "width": max(1, round(w * s)),
        "height": max(1, round(h * s)),
        "times": [round(float(times[t]), 4) for t in plan.frame_indices],
        "vertebrae": [v.value for v in tracks.vertebrae],
        "corners": corners,
        "quality": quality,
        "transforms": mats,
        "low_quality": LOW_QUALITY,
        "jpeg_quality": plan.jpeg_quality,
        "scale": round(s, 4),
    }


def _facts(analysis: Analysis, times: np.ndarray, x_label: str) -> list[tuple[str, str]]:
    seq = analysis.sequence
    st = seq.study
    m = analysis.measurements
    mst = m.get("study") or {}
    n = seq.n_frames
    h, w = seq.shape
    facts: list[tuple[str, str | None]] = [
        ("Patient", person_name(st.patient_name)),
        ("Patient ID", st.patient_id or mst.get("patient_id")),
        ("Study date", dicom_date(st.study_date or mst.get("study_date"))),
        ("Study", st.study_description),
        ("Series", st.series_description),
        ("Institution", st.institution),
        ("Equipment", " ".join(x for x in (st.modality, st.manufacturer, st.model) if x) or None),
    ]
    acq = f"{n} frames, {w}\u00d7{h} px"
    if x_label.startswith("time") and n > 1 and times[-1] > 0:
        acq += f", {times[-1]:.1f} s at {(n - 1) / times[-1]:.1f} frames/s"
    facts.append(("Acquisition", acq))
    return [(k, v) for k, v in facts if v]


def render_report(
    analysis: Analysis,
    *,
    title: str | None = None,
    cine: bool = True,
    cine_max_side_px: int = 512,
    cine_budget_bytes: int = 12_000_000,
    cine_jpeg_quality: int = 70,
    keyframe_max_side_px: int = 480,
    generated_at: datetime | None = None,
    encoded_cine: images.EncodedCine | None = None,
) -> str:
    """Render one study's report as a self-contained HTML document.

    Parameters
    ----------
    analysis : dmx.analysis.Analysis
        The sequence, tracks and ``measurements.json`` document of one study.
    title : str, optional
        Document title (default: "DMX cervical spine motion report").
    cine : bool
        Embed the cine player (frames as JPEG data URIs).
    cine_max_side_px : int
        Longest side of a cine frame in the file, in pixels.
    cine_budget_bytes : int
        Size budget for the embedded cine; frames are shrunk, compressed harder,
        and as a last resort skipped to fit.
    cine_jpeg_quality : int
        JPEG quality of the cine frames (lowered when the budget requires it).
    keyframe_max_side_px : int
        Longest side of each (cropped) key-frame image.
    generated_at : datetime, optional
        Time printed in the footer (default: now, UTC).
    encoded_cine : dmx.report.images.EncodedCine, optional
        The cine frames encoded ahead (:func:`dmx.report.images.encode_study_cine`), used when they
        were encoded with the same options and window (the same frames as encoding them here).

    Returns
    -------
    str
        The HTML document. Every DICOM string in it is escaped; it contains no
        URL (images are ``data:`` URIs, styles and scripts inline).
    """
    m = analysis.measurements
    seq = analysis.sequence
    window = images.display_window(seq.frames)
    times, x_label = _time_axis(analysis, seq.n_frames)
    th = wording.thresholds(m)
    verdict = wording.verdict(m)
    plot_ctx = _plots(analysis, times, x_label)
    payload: dict[str, Any] = {
        "loops": plot_ctx.pop("loop_coords"),
        "times": [round(float(t), 4) for t in times],
        "time_known": x_label.startswith("time"),
        "keys": {k: _key_index(m, k, seq.n_frames) for k in ("neutral", "flexion", "extension")},
    }
    if cine:
        payload["cine"] = _cine_payload(
            analysis,
            window,
            times,
            max_side_px=cine_max_side_px,
            budget_bytes=cine_budget_bytes,
            jpeg_quality=cine_jpeg_quality,
            encoded=encoded_cine,
        )
    warnings = list(dict.fromkeys([*seq.warnings, *(m.get("warnings") or [])]))
    software = m.get("software") or {}
    inputs = m.get("input") or {}
    frames_info = m.get("frames") or {}
    context = {
        "title": title or "DMX cervical spine motion report",
        "facts": _facts(analysis, times, x_label),
        "calibration": wording.calibration_words(m),
        "calibrated": (m.get("calibration") or {}).get("mm_per_px") is not None,
        "warnings": warnings,
        "verdict": verdict,
        "adi": wording.adi_words(m),
        "smoothing": ((m.get("tracking") or {}).get("window_frames") or 0),
        "body_windows": ", ".join(
            f"{name} over {w}"
            for name, w in ((m.get("tracking") or {}).get("body_window_frames") or {}).items()
        ),
        "grid_lines": (m.get("tracking") or {}).get("grid_lines"),
        "keyframes": _keyframes(analysis, window, verdict, max_side_px=keyframe_max_side_px),
        "rows": _level_rows(analysis, th),
        "normative": _normative_rows(m, th),
        "thresholds": th,
        "plots": plot_ctx,
        "qc": _quality_control(analysis),
        "cine": cine,
        "low_quality": LOW_QUALITY,
        "good_quality": GOOD_QUALITY,
        "software": f"{software.get('name', 'dmx')} {software.get('version', '')}".strip(),
        "sha256": inputs.get("sha256"),
        "input_count": len(inputs.get("paths") or []),
        "study_uid": (m.get("study") or {}).get("study_uid") or seq.study.study_uid,
        "series_uid": (m.get("study") or {}).get("series_uid") or seq.study.series_uid,
        "landmarks_source": m.get("landmarks_source"),
        "auto_landmarks": _auto_landmarks(analysis, window, max_side_px=keyframe_max_side_px),
        "frames": frames_info,
        "x_label": x_label,
        "schema": m.get("schema"),
        "generated": (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        "corner_names": [c.value for c in CORNERS],
        "css": Markup(template_text("base.css") + template_text("report.css")),
        "js": Markup(template_text("report.js")),
        "data_json": Markup(script_json(payload)),
    }
    return environment().get_template("report.html").render(**context)


def write_report(
    analysis: Analysis, path: str | Path, *, pdf: bool = False, **options: Any
) -> dict[str, Path]:
    """Write the HTML report to ``path`` (and a PDF next to it with ``pdf=True``).

    Parameters
    ----------
    analysis : dmx.analysis.Analysis
        The study to report.
    path : str or Path
        The ``.html`` file to write; its folder must exist.
    pdf : bool
        Also print the report to ``path`` with suffix ``.pdf`` through headless Chromium.
    **options
        Keyword options of :func:`render_report`.

    Returns
    -------
    dict
        ``{"html": Path, "pdf": Path}`` (``pdf`` only when written).

    Raises
    ------
    dmx.errors.DmxError
        With ``pdf=True`` when no Chromium/Chrome is found; the HTML is written first.
    """
    from dmx.report.pdf import print_to_pdf

    path = Path(path)
    html = render_report(analysis, **options)
    write_text_atomic(path, html)
    out = {"html": path}
    if pdf:
        out["pdf"] = print_to_pdf(path, path.with_suffix(".pdf"))
    return out
