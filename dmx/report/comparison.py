"""The follow-up comparison page: one self-contained HTML file (no external reference of any kind).

Verdict first (the changes beyond the minimal detectable change, flags resolved
and new), then the per-level table, both studies' curves over the motion
overlaid per level, the key frames of both studies side by side (the tracked
vertebral outlines, drawn at one scale), and the method with its sources.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from dmx.anatomy import CORNERS
from dmx.files import write_text_atomic
from dmx.report import images, plots, wording
from dmx.report.templating import environment, person_name, template_text

#: Colours of the two studies (Okabe-Ito blue and vermillion: colour-blind safe).
BASELINE_COLOUR = "#0072B2"
FOLLOWUP_COLOUR = "#D55E00"
_MEASURE_TITLES = {
    "rotation_rom_deg": "Rotation ROM (°)",
    "translation_mm": "Translation (mm)",
    "translation_pct": "Translation (% depth)",
    "rotation_range_deg": "Rotation range (°)",
    "offset_range_mm": "Offset range (mm)",
    "excursion_mm": "From neutral (mm)",
}


def _array(values: Any) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in (values or [])], dtype=float)


def _time_axis(doc: dict[str, Any], n: int) -> tuple[np.ndarray, bool]:
    t = _array((doc.get("frames") or {}).get("time_ms"))
    if t.size == n and n and np.all(np.isfinite(t)):
        return (t - t[0]) / 1000.0, True
    return np.arange(n, dtype=float), False


def _curve_charts(cmp: dict[str, Any], doc_b: dict[str, Any], doc_f: dict[str, Any]) -> list[dict[str, Any]]:
    """Per level: angle and offset over the motion, baseline and follow-up overlaid."""
    calibrated = all((d.get("calibration") or {}).get("mm_per_px") is not None for d in (doc_b, doc_f))
    off_key, off_label = ("offset_mm", "offset (mm)") if calibrated else ("offset_pct", "offset (% depth)")
    out = []
    for level in cmp["levels"]:
        lb, lf = doc_b["levels"][level], doc_f["levels"][level]
        ab, af = _array(lb.get("angle_deg")), _array(lf.get("angle_deg"))
        tb, timed_b = _time_axis(doc_b, ab.size)
        tf, timed_f = _time_axis(doc_f, af.size)
        x_label = "time (s)" if timed_b and timed_f else "frame"
        if x_label == "frame":
            tb, tf = np.arange(ab.size, dtype=float), np.arange(af.size, dtype=float)
        charts = {}
        for key, label, b, f in (
            ("angle", "angle (°, + extension)", ab, af),
            ("offset", f"{off_label}, + anterior", _array(lb.get(off_key)), _array(lf.get(off_key))),
        ):
            series = [
                plots.Series("baseline", BASELINE_COLOUR, tb, b),
                plots.Series("follow-up", FOLLOWUP_COLOUR, tf, f),
            ]
            if not (np.isfinite(b).any() or np.isfinite(f).any()):
                charts[key] = None
                continue
            charts[key] = Markup(
                plots.time_chart(
                    series,
                    x_label=x_label,
                    y_label=label,
                    key_times={},
                    plot_id=f"cmp-{key}-{level}",
                    width=460,
                    height=200,
                )
            )
        out.append({"level": level, "angle": charts["angle"], "offset": charts["offset"]})
    return out


def _outline_points(doc: dict[str, Any], frame: int | None) -> dict[str, np.ndarray]:
    """Corners (mm when calibrated, else px) of each tracked body at ``frame``: name -> (4, 2)."""
    if frame is None:
        return {}
    mm = (doc.get("calibration") or {}).get("mm_per_px")
    scale = np.array([mm[1], mm[0]], dtype=float) if mm else np.ones(2)
    out = {}
    for name, corners in (doc.get("tracks") or {}).items():
        pts = []
        for c in CORNERS:
            series = corners.get(c.value) or []
            xy = series[frame] if 0 <= frame < len(series) else None
            if xy is None:
                break
            pts.append(np.asarray(xy, dtype=float) * scale)
        if len(pts) == len(CORNERS):
            out[name] = np.array(pts)
    return out


def _corners_at(doc: dict[str, Any], frame: int | None) -> tuple[list[str], np.ndarray]:
    """Vertebra names and their ``(V, 4, 2)`` corners in pixels at ``frame`` (NaN where not tracked)."""
    names = list((doc.get("tracks") or {}).keys())
    out = np.full((len(names), len(CORNERS), 2), np.nan)
    if frame is None:
        return names, out
    for v, name in enumerate(names):
        corners = doc["tracks"][name]
        for k, c in enumerate(CORNERS):
            series = corners.get(c.value) or []
            xy = series[frame] if 0 <= frame < len(series) else None
            if xy is not None:
                out[v, k] = xy
    return names, out


def study_frames(doc: dict[str, Any]) -> tuple[np.ndarray | None, str | None]:
    """The study's frames, re-read from ``input.paths`` when they are there and unchanged.

    Returns ``(frames, None)``, or ``(None, why)`` when the images cannot be shown.
    """
    from dmx.errors import DmxError
    from dmx.io.checksum import sha256_files
    from dmx.io.load import load_sequence

    inp = doc.get("input") or {}
    paths = [Path(p) for p in inp.get("paths") or []]
    if not paths or not all(p.is_file() for p in paths):
        return None, "the study's input files are not at the paths recorded in its measurements.json"
    if inp.get("sha256") and sha256_files(paths) != inp["sha256"]:
        return None, "the study's input files changed since the analysis"
    series = (doc.get("study") or {}).get("series_uid") if len(paths) > 1 else None
    try:
        seq = load_sequence(paths[0] if len(paths) == 1 else paths[0].parent, series=series)
    except DmxError as exc:
        return None, f"the study's input could not be read again ({exc})"
    return seq.frames, None


def _keyframe_figures(
    doc_b: dict[str, Any],
    doc_f: dict[str, Any],
    frames: dict[str, np.ndarray | None],
    *,
    max_side_px: int = 300,
) -> list[dict[str, Any]]:
    """Per key frame, both studies side by side: the image with the tracked corners, or the outlines.

    Without the images (input not found), each study's tracked outlines are drawn at one
    common scale (mm when calibrated).
    """
    keys = ("neutral", "flexion", "extension")
    docs = {"baseline": doc_b, "followup": doc_f}
    colours = {"baseline": BASELINE_COLOUR, "followup": FOLLOWUP_COLOUR}
    pts = {
        (side, k): _outline_points(doc, (doc.get("frames") or {}).get(k))
        for side, doc in docs.items()
        for k in keys
    }
    extents = [float(np.ptp(np.concatenate(list(p.values())), axis=0).max()) for p in pts.values() if p]
    span = max(extents) * 1.1 if extents else 1.0
    crops: dict[str, tuple[int, int, int, int]] = {}
    windows: dict[str, tuple[float, float]] = {}
    for side, doc in docs.items():
        f = frames.get(side)
        if f is None:
            continue
        present = [_corners_at(doc, (doc.get("frames") or {}).get(k))[1] for k in keys]
        crops[side] = images.crop_box(np.stack(present), f.shape[1:])
        windows[side] = images.display_window(f)
    rows = []
    for k in keys:
        cells = []
        for side, doc in docs.items():
            frame = (doc.get("frames") or {}).get(k)
            f = frames.get(side)
            if f is not None and isinstance(frame, int) and 0 <= frame < f.shape[0]:
                x0, y0, x1, y1 = crops[side]
                crop = images.to_uint8(f[frame, y0:y1, x0:x1], windows[side])
                small = images.resize(crop, min(1.0, max_side_px / max(crop.shape)))
                names, corners = _corners_at(doc, frame)
                corners = (corners - np.array([x0, y0])) * np.array(
                    [small.shape[1] / crop.shape[1], small.shape[0] / crop.shape[0]]
                )
                svg = plots.keyframe_svg(
                    images.data_uri(images.jpeg_bytes(small, quality=82)),
                    width_px=small.shape[1],
                    height_px=small.shape[0],
                    corners_px=corners,
                    vertebra_labels=names,
                    level_labels=[],
                    title=f"{side} {k}",
                )
                cells.append({"side": side, "svg": Markup(svg), "frame": frame})
                continue
            p = pts[(side, k)]
            if not p:
                cells.append({"side": side, "svg": None, "frame": frame})
                continue
            cells.append(
                {"side": side, "svg": Markup(_outline_svg(p, side, k, span, colours[side])), "frame": frame}
            )
        rows.append({"key": k, "cells": cells})
    return rows


def _outline_svg(p: dict[str, np.ndarray], side: str, key: str, span: float, colour: str) -> str:
    size = 220.0
    allp = np.concatenate(list(p.values()))
    centre = (allp.min(axis=0) + allp.max(axis=0)) / 2
    parts = [
        f'<svg class="outline" viewBox="0 0 {size:.0f} {size:.0f}" width="{size:.0f}" '
        f'height="{size:.0f}" role="img" aria-label="{escape(side)} {escape(key)} vertebral outlines">'
    ]
    for name, quad in p.items():
        q = (quad - centre) / span * size + size / 2
        # corners in CORNERS order: ant_sup, post_sup, post_inf, ant_inf: a closed outline
        d = " ".join(f"{x:.1f},{y:.1f}" for x, y in q)
        parts.append(f'<polygon points="{d}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        cx, cy = q.mean(axis=0)
        parts.append(
            f'<text x="{cx:.1f}" y="{cy + 3:.1f}" text-anchor="middle" class="outline-label">'
            f"{escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _patient_facts(baseline_doc: dict[str, Any], followup_doc: dict[str, Any]) -> list[tuple[str, str]]:
    """Patient name and ID; both studies' when they differ (a comparison made with ``--force``)."""

    def who(doc: dict[str, Any]) -> tuple[str, str]:
        study = doc.get("study") or {}
        return person_name(study.get("patient_name")) or "—", str(study.get("patient_id") or "—")

    (name_b, id_b), (name_f, id_f) = who(baseline_doc), who(followup_doc)
    if (name_b, id_b) == (name_f, id_f):
        return [("Patient", name_b), ("Patient ID", id_b)]
    return [
        ("Patient (baseline)", name_b),
        ("Patient ID (baseline)", id_b),
        ("Patient (follow-up)", name_f),
        ("Patient ID (follow-up)", id_f),
    ]


def render_comparison(
    comparison: dict[str, Any],
    baseline_doc: dict[str, Any],
    followup_doc: dict[str, Any],
    *,
    frames: dict[str, np.ndarray | None] | None = None,
    images_note: str | None = None,
    generated_at: datetime | None = None,
) -> str:
    """Render ``comparison.json`` (with both studies' ``measurements.json``) as one HTML document.

    ``frames`` (``{"baseline": (T, H, W), "followup": ...}``, from :func:`study_frames`) gives the
    key-frame images; a study without them shows its tracked outlines instead and
    ``images_note`` says why. Every DICOM string is escaped; the document contains no URL.
    """
    facts = _patient_facts(baseline_doc, followup_doc) + [
        ("Baseline", comparison["baseline"]["study_date"] or "date unknown"),
        ("Follow-up", comparison["followup"]["study_date"] or "date unknown"),
        (
            "Interval",
            "—" if comparison["interval_days"] is None else f"{comparison['interval_days']} days",
        ),
    ]
    rows = []
    for level, measures in comparison["levels"].items():
        for measure, e in measures.items():
            sig = e["significant"]
            rows.append(
                {
                    "level": level,
                    "measure": _MEASURE_TITLES.get(measure, measure),
                    "baseline": wording.fmt(e["baseline"]),
                    "followup": wording.fmt(e["followup"]),
                    "change": wording.fmt(e["change"], signed=True),
                    "mdc": wording.fmt(e["mdc"]),
                    "significant": "—" if sig is None else "yes" if sig else "no",
                    "state": "unknown" if sig is None else "changed" if sig else "same",
                    "why": e["mdc_parts"]["measurement"],
                }
            )
    sources = comparison["mdc_method"]["sources"]
    context = {
        "title": "DMX follow-up comparison",
        "generated": (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        "software": f"dmx {comparison['software']['version']}",
        "facts": facts,
        "cmp": comparison,
        "rows": rows,
        "charts": _curve_charts(comparison, baseline_doc, followup_doc),
        "outlines": _keyframe_figures(baseline_doc, followup_doc, frames or {}),
        "images_note": images_note,
        "sources": sources,
        "baseline_colour": BASELINE_COLOUR,
        "followup_colour": FOLLOWUP_COLOUR,
        "css": Markup(
            template_text("base.css") + template_text("report.css") + template_text("comparison.css")
        ),
    }
    return environment().get_template("comparison.html").render(**context)


def write_comparison_html(
    comparison: dict[str, Any],
    baseline_doc: dict[str, Any],
    followup_doc: dict[str, Any],
    path: str | Path,
    *,
    images: bool = True,
) -> Path:
    """Write :func:`render_comparison` to ``path`` atomically; return the path.

    With ``images`` each study's key frames are re-read from its input files (when they
    are still at the recorded paths and unchanged); otherwise the outlines are drawn.
    """
    path = Path(path)
    frames: dict[str, np.ndarray | None] = {}
    notes = []
    for side, doc in (("baseline", baseline_doc), ("followup", followup_doc)):
        if not images:
            frames[side], why = None, "not requested (--no-images)"
        else:
            frames[side], why = study_frames(doc)
        if why:
            notes.append(f"{'follow-up' if side == 'followup' else side}: {why}")
    note = (
        None
        if not notes
        else "Key-frame images not shown (" + "; ".join(notes) + "): tracked outlines instead."
    )
    write_text_atomic(
        path, render_comparison(comparison, baseline_doc, followup_doc, frames=frames, images_note=note)
    )
    return path
