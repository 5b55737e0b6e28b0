"""Inline SVG figures for the report: curves over the motion, loops, quality strip, key frames.

Every function returns SVG markup (a string) without any URL or namespace
attribute (inline ``<svg>`` in HTML5 needs none). Text placed in the SVG is
escaped here; numbers are formatted here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

#: Okabe-Ito colours, one per motion segment C2-C3 .. C6-C7 (colour-blind safe).
LEVEL_COLOURS: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9")

KEY_MARKS: tuple[tuple[str, str], ...] = (("neutral", "N"), ("flexion", "F"), ("extension", "E"))


@dataclass(frozen=True)
class Series:
    """One line of a chart: ``y`` against ``x`` with NaN where not measured."""

    label: str
    colour: str
    x: np.ndarray
    y: np.ndarray


def nice_ticks(lo: float, hi: float, *, count: int = 5) -> list[float]:
    """Round tick values covering ``lo``..``hi`` (1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks and ticks[0] > lo:
        ticks.insert(0, ticks[0] - step)
    if ticks[-1] < hi:
        ticks.append(ticks[-1] + step)
    return ticks


def _fmt_tick(v: float) -> str:
    if abs(v) < 1e-9:
        return "0"
    if abs(v - round(v)) < 1e-9:
        return f"{v:.0f}".replace("-", "\u2212")
    return f"{v:g}".replace("-", "\u2212")


def _path(xs: np.ndarray, ys: np.ndarray) -> str:
    """SVG path data through finite points; a NaN breaks the line."""
    parts: list[str] = []
    pen_down = False
    for x, y in zip(xs, ys, strict=True):
        if not (np.isfinite(x) and np.isfinite(y)):
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
        pen_down = True
    return "".join(parts)


class _Axes:
    """Linear mapping of data coordinates to an SVG box."""

    def __init__(
        self, x0: float, y0: float, w: float, h: float, xlim: tuple[float, float], ylim: tuple[float, float]
    ) -> None:
        self.x0, self.y0, self.w, self.h = x0, y0, w, h
        self.xlim, self.ylim = xlim, ylim

    def x(self, v: np.ndarray | float) -> np.ndarray | float:
        a, b = self.xlim
        return self.x0 + (np.asarray(v, float) - a) / (b - a) * self.w

    def y(self, v: np.ndarray | float) -> np.ndarray | float:
        a, b = self.ylim
        return self.y0 + self.h - (np.asarray(v, float) - a) / (b - a) * self.h


def _limits(
    values: Sequence[np.ndarray], *, pad: float = 0.05, include_zero: bool = False
) -> tuple[list[float], tuple[float, float]]:
    finite = np.concatenate([np.asarray(v, float)[np.isfinite(v)] for v in values] or [np.array([])])
    if finite.size == 0:
        lo, hi = -1.0, 1.0
    else:
        lo, hi = float(finite.min()), float(finite.max())
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo or 1.0
    ticks = nice_ticks(lo - pad * span, hi + pad * span)
    return ticks, (ticks[0], ticks[-1])


def _frame(ax: _Axes, xticks: list[float], yticks: list[float], x_label: str, y_label: str) -> list[str]:
    out = [f'<rect class="plot-bg" x="{ax.x0:.1f}" y="{ax.y0:.1f}" width="{ax.w:.1f}" height="{ax.h:.1f}"/>']
    for t in yticks:
        y = ax.y(t)
        cls = "grid zero" if abs(t) < 1e-12 else "grid"
        out.append(
            f'<line class="{cls}" x1="{ax.x0:.1f}" x2="{ax.x0 + ax.w:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        out.append(
            f'<text class="tick" x="{ax.x0 - 5:.1f}" y="{y + 3.5:.1f}" text-anchor="end">'
            f"{_fmt_tick(t)}</text>"
        )
    for t in xticks:
        x = ax.x(t)
        out.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{ax.y0:.1f}" y2="{ax.y0 + ax.h:.1f}"/>')
        out.append(
            f'<text class="tick" x="{x:.1f}" y="{ax.y0 + ax.h + 13:.1f}" text-anchor="middle">'
            f"{_fmt_tick(t)}</text>"
        )
    out.append(
        f'<text class="axis-label" x="{ax.x0 + ax.w / 2:.1f}" y="{ax.y0 + ax.h + 28:.1f}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text class="axis-label" transform="translate({ax.x0 - 36:.1f} {ax.y0 + ax.h / 2:.1f}) '
        f'rotate(-90)" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return out


def time_chart(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    key_times: dict[str, float],
    plot_id: str,
    width: int = 560,
    height: int = 230,
) -> str:
    """A line chart of per-level values against time, with key-frame markers and a cine cursor.

    ``key_times`` maps ``neutral``/``flexion``/``extension`` to their time (x units).
    The cursor line (class ``cursor``) carries ``data-x0``/``data-x1``: the SVG x of the
    first and last time, so the page script can follow the cine.
    """
    margin_l, margin_r, margin_t, margin_b = 48, 10, 22, 36
    xs_all = [s.x for s in series]
    xlo = min(float(np.nanmin(x)) for x in xs_all) if xs_all else 0.0
    xhi = max(float(np.nanmax(x)) for x in xs_all) if xs_all else 1.0
    if xhi <= xlo:
        xhi = xlo + 1.0
    yticks, ylim = _limits([s.y for s in series], include_zero=True)
    ax = _Axes(
        margin_l, margin_t, width - margin_l - margin_r, height - margin_t - margin_b, (xlo, xhi), ylim
    )
    xticks = [t for t in nice_ticks(xlo, xhi, count=6) if xlo - 1e-9 <= t <= xhi + 1e-9]
    out = [
        f'<svg class="plot" id="{escape(plot_id)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(y_label)} against {escape(x_label)}">'
    ]
    out += _frame(ax, xticks, yticks, x_label, y_label)
    for key, mark in KEY_MARKS:
        if key in key_times and key_times[key] is not None and math.isfinite(key_times[key]):
            x = ax.x(key_times[key])
            out.append(
                f'<line class="key-line" x1="{x:.1f}" x2="{x:.1f}" y1="{ax.y0:.1f}" y2="{ax.y0 + ax.h:.1f}"/>'
            )
            out.append(
                f'<text class="key-mark" x="{x:.1f}" y="{ax.y0 - 6:.1f}" text-anchor="middle">{mark}</text>'
            )
    for s in series:
        d = _path(ax.x(s.x), ax.y(s.y))
        if d:
            out.append(
                f'<path class="series" stroke="{s.colour}" d="{d}"><title>{escape(s.label)}</title></path>'
            )
    out.append(
        f'<line class="cursor" data-x0="{ax.x(xlo):.1f}" data-x1="{ax.x(xhi):.1f}" '
        f'x1="{ax.x(xlo):.1f}" x2="{ax.x(xlo):.1f}" y1="{ax.y0:.1f}" y2="{ax.y0 + ax.h:.1f}"/>'
    )
    out.append("</svg>")
    return "".join(out)


def loop_chart(
    angle_deg: np.ndarray,
    offset: np.ndarray,
    *,
    title: str,
    colour: str,
    offset_label: str,
    keys: dict[str, int],
    plot_id: str,
    angle_lim: tuple[float, float],
    offset_lim: tuple[float, float],
    size: int = 190,
) -> tuple[str, list[list[float] | None]]:
    """Translation against rotation of one level over the motion (a loop), with N/F/E marked.

    Returns the SVG and the SVG coordinates of every frame (``None`` where not
    measured) so the page script can move a dot with the cine.
    """
    margin_l, margin_r, margin_t, margin_b = 44, 8, 22, 36
    xticks = nice_ticks(*angle_lim, count=4)
    yticks = nice_ticks(*offset_lim, count=4)
    ax = _Axes(
        margin_l,
        margin_t,
        size - margin_l - margin_r,
        size - margin_t - margin_b,
        (xticks[0], xticks[-1]),
        (yticks[0], yticks[-1]),
    )
    out = [
        f'<svg class="plot loop" id="{escape(plot_id)}" viewBox="0 0 {size} {size}" role="img" '
        f'aria-label="{escape(title)}: translation against rotation">'
    ]
    out += _frame(ax, xticks, yticks, "angle (\u00b0)", offset_label)
    out.append(f'<text class="panel-title" x="{margin_l}" y="14">{escape(title)}</text>')
    px, py = ax.x(angle_deg), ax.y(offset)
    d = _path(px, py)
    if d:
        out.append(f'<path class="series" stroke="{colour}" d="{d}"/>')
    for key, mark in KEY_MARKS:
        i = keys.get(key)
        if i is not None and 0 <= i < len(px) and np.isfinite(px[i]) and np.isfinite(py[i]):
            out.append(f'<circle class="key-dot" cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="3.2"/>')
            out.append(f'<text class="key-mark" x="{px[i] + 5:.1f}" y="{py[i] - 4:.1f}">{mark}</text>')
    out.append('<circle class="cursor-dot" r="4" cx="-10" cy="-10"/>')
    out.append("</svg>")
    coords = [
        [round(float(x), 1), round(float(y), 1)] if np.isfinite(x) and np.isfinite(y) else None
        for x, y in zip(px, py, strict=True)
    ]
    return "".join(out), coords


def quality_strip(
    quality: np.ndarray,
    tracked: np.ndarray,
    *,
    labels: Sequence[str],
    threshold: float,
    good: float = 0.8,
    width: int = 1200,
) -> str:
    """Tracking confidence per vertebra (rows) and frame (columns).

    Colour: dark grey where lost, amber below ``threshold``, light green up to ``good``, green above.
    """
    n_frames, n_vert = quality.shape
    label_w, row_h = 34, 13
    plot_w = width - label_w - 4
    cell_w = plot_w / max(n_frames, 1)
    height = n_vert * row_h + 18
    out = [
        f'<svg class="plot quality-strip" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="tracking confidence per vertebra and frame">'
    ]
    for v in range(n_vert):
        y = v * row_h
        out.append(
            f'<text class="tick" x="{label_w - 5}" y="{y + row_h - 3.5}" text-anchor="end">'
            f"{escape(labels[v])}</text>"
        )
        # run-length encode equal classes to keep the SVG small
        t = 0
        while t < n_frames:
            cls = _quality_class(quality[t, v], tracked[t, v], threshold, good)
            t1 = t
            while (
                t1 + 1 < n_frames
                and _quality_class(quality[t1 + 1, v], tracked[t1 + 1, v], threshold, good) == cls
            ):
                t1 += 1
            x = label_w + t * cell_w
            out.append(
                f'<rect class="q-{cls}" x="{x:.2f}" y="{y + 1}" width="{(t1 - t + 1) * cell_w:.2f}" '
                f'height="{row_h - 2}"/>'
            )
            t = t1 + 1
    for t in nice_ticks(0, n_frames - 1, count=8):
        if 0 <= t <= n_frames - 1:
            x = label_w + (t + 0.5) * cell_w
            out.append(
                f'<text class="tick" x="{x:.1f}" y="{height - 3}" text-anchor="middle">{int(t)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _quality_class(q: float, tracked: bool, threshold: float, good: float = 0.8) -> str:
    if not tracked:
        return "lost"
    if not np.isfinite(q):
        return "unknown"
    if q < threshold:
        return "low"
    return "good" if q >= good else "fair"


def keyframe_svg(
    image_uri: str,
    *,
    width_px: int,
    height_px: int,
    corners_px: np.ndarray,
    vertebra_labels: Sequence[str],
    level_labels: Sequence[tuple[str, int, int, str]],
    title: str,
) -> str:
    """A key frame with corners, endplate lines, posterior tangents and labels drawn over it.

    Parameters
    ----------
    image_uri : str
        ``data:image/jpeg;base64,...`` of the (cropped, scaled) frame.
    width_px, height_px : int
        Size of that image; ``corners_px`` is in its pixel coordinates.
    corners_px : numpy.ndarray
        ``(V, 4, 2)`` corners in CORNERS order, NaN where not tracked.
    vertebra_labels : sequence of str
        Name of each of the V vertebrae.
    level_labels : sequence of (str, int, int, str)
        ``(level name, upper index, lower index, state)`` with state ``flagged``,
        ``insufficient`` or ``ok``.
    """
    out = [
        f'<svg class="keyframe-img" viewBox="0 0 {width_px} {height_px}" role="img" '
        f'aria-label="{escape(title)} key frame">',
        f'<image href="{image_uri}" x="0" y="0" width="{width_px}" height="{height_px}"/>',
    ]
    scale = max(width_px, height_px) / 400
    sw = 1.6 * scale
    font = 15 * scale
    ok = np.all(np.isfinite(corners_px), axis=(1, 2))
    for v, good in enumerate(ok):
        if not good:
            continue
        c = corners_px[v]
        # posterior tangent, extended by 35% beyond both corners
        ps, pi = c[1], c[2]
        ext = (ps - pi) * 0.35
        a, b = ps + ext, pi - ext
        out.append(
            f'<line class="kf-tangent" x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{b[0]:.1f}" y2="{b[1]:.1f}" '
            f'stroke-width="{sw:.2f}"/>'
        )
        for i, j in ((0, 1), (3, 2)):  # superior and inferior endplates
            out.append(
                f'<line class="kf-endplate" x1="{c[i, 0]:.1f}" y1="{c[i, 1]:.1f}" x2="{c[j, 0]:.1f}" '
                f'y2="{c[j, 1]:.1f}" stroke-width="{sw:.2f}"/>'
            )
        for p in c:
            out.append(f'<circle class="kf-corner" cx="{p[0]:.1f}" cy="{p[1]:.1f}" r="{2.2 * scale:.2f}"/>')
        centre = c.mean(axis=0)
        vfont = min(font, 0.5 * float(np.hypot(*(c[1] - c[2]))))  # fits inside the body
        out.append(
            f'<text class="kf-vlabel" x="{centre[0]:.1f}" y="{centre[1] + vfont * 0.35:.1f}" '
            f'font-size="{vfont:.1f}" text-anchor="middle">{escape(vertebra_labels[v])}</text>'
        )
    for name, u, lo, state in level_labels:
        if not (ok[u] and ok[lo]):
            continue
        cu, cl = corners_px[u], corners_px[lo]
        anterior = (cl[0] + cu[3]) / 2
        posterior = (cl[1] + cu[2]) / 2
        direction = anterior - posterior
        norm = float(np.hypot(*direction)) or 1.0
        pos = anterior + direction / norm * 6 * scale
        anchor = "end" if direction[0] < 0 else "start"
        out.append(
            f'<text class="kf-level kf-{state}" x="{pos[0]:.1f}" y="{pos[1] + font * 0.35:.1f}" '
            f'font-size="{font:.1f}" text-anchor="{anchor}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def reference_bar(
    value: float | None,
    *,
    mean: float,
    sd: float | None,
    limit: float | None = None,
    unit: str = "",
    width_px: int = 220,
    height_px: int = 34,
) -> str:
    """A horizontal bar: the patient's ``value`` against a reference ``mean`` (and ``mean ± 2 sd``).

    The normal band (mean ± 2 SD, shaded) is drawn only when ``sd`` is given; the
    reference mean is a tick; the patient's value a dot (absent when ``None``); a flag
    threshold ``limit``, when given, a dashed red line. The axis starts at 0 (or below
    the smallest value) and covers every mark.
    """
    marks = [mean, 0.0] + ([value] if value is not None else []) + ([limit] if limit is not None else [])
    if sd is not None:
        marks += [mean - 2 * sd, mean + 2 * sd]
    lo, hi = min(marks), max(marks)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.06 * span, hi + 0.06 * span
    pad = 6.0
    y0, y1 = 6.0, height_px - 14.0

    def x(v: float) -> float:
        return pad + (v - lo) / (hi - lo) * (width_px - 2 * pad)

    parts = [
        f'<svg class="refbar" viewBox="0 0 {width_px} {height_px}" width="{width_px}" height="{height_px}" '
        f'role="img" aria-label="{escape(_bar_label(value, mean, sd, unit))}">',
        f'<line x1="{pad}" y1="{y1:.1f}" x2="{width_px - pad}" y2="{y1:.1f}" class="ref-axis"/>',
    ]
    if sd is not None:
        a, b = x(mean - 2 * sd), x(mean + 2 * sd)
        parts.append(
            f'<rect class="ref-band" x="{a:.1f}" y="{y0:.1f}" width="{b - a:.1f}" height="{y1 - y0:.1f}"/>'
        )
    if limit is not None:
        xl = x(limit)
        parts.append(f'<line class="ref-limit" x1="{xl:.1f}" y1="{y0 - 3:.1f}" x2="{xl:.1f}" y2="{y1:.1f}"/>')
    xm = x(mean)
    parts.append(f'<line class="ref-mean" x1="{xm:.1f}" y1="{y0:.1f}" x2="{xm:.1f}" y2="{y1:.1f}"/>')
    if value is not None:
        parts.append(f'<circle class="ref-value" cx="{x(value):.1f}" cy="{(y0 + y1) / 2:.1f}" r="4.5"/>')
    for v in (0.0, mean):
        parts.append(
            f'<text x="{x(v):.1f}" y="{height_px - 2}" text-anchor="middle" class="ref-tick">'
            f"{_fmt_tick(v)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _bar_label(value: float | None, mean: float, sd: float | None, unit: str) -> str:
    v = "not measured" if value is None else f"{value:.1f} {unit}".strip()
    ref = f"reference {mean:.1f}" + ("" if sd is None else f" ± {sd:.1f} SD") + f" {unit}"
    return f"patient {v}; {ref.strip()}"
