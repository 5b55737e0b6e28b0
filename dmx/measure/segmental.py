"""Per-level (segmental) measurements of spec section 4.

A level ``U-L`` has an upper vertebra ``U`` and a lower vertebra ``L``. Per
frame: the disc angle, the sagittal offset of ``U`` on ``L`` and that offset
as a percentage of the depth of ``L``. Over the motion: rotation ROM and
translation between the key frames, and the ranges over all tracked frames.

Arrays are per frame, NaN where either vertebra is not tracked; summaries
are ``float`` or ``None`` (never 0 for a value that cannot be measured).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmx.anatomy import Vertebra
from dmx.measure.geometry import (
    POST_INF,
    POST_SUP,
    depth,
    dot,
    inferior_endplate,
    norm,
    signed_angle_deg,
    superior_endplate,
)


@dataclass(frozen=True)
class LevelSeries:
    """Per-frame measurements of one level, in working units (mm with calibration, px without).

    Attributes
    ----------
    angle_deg : numpy.ndarray
        ``(T,)`` disc angle ``ang(sup(L), inf(U))``; positive when the disc is wider anteriorly.
    offset : numpy.ndarray
        ``(T,)`` ``(post_inf(U) - post_sup(L)) . unit(sup(L))``; positive when U lies anterior to L.
    offset_pct : numpy.ndarray
        ``(T,)`` ``100 * offset / depth(L)``.
    """

    angle_deg: np.ndarray
    offset: np.ndarray
    offset_pct: np.ndarray


def level_series(
    upper: np.ndarray, lower: np.ndarray, *, h: int, lower_vertebra: Vertebra | str | None = None
) -> LevelSeries:
    """Per-frame angle, offset and offset percentage of level ``U-L``.

    Parameters
    ----------
    upper, lower : numpy.ndarray
        ``(T, 4, 2)`` corners of U and L in mm (or px without calibration), NaN where lost.
    h : int
        Facing sign of the spine (:func:`dmx.measure.geometry.spine_facing`).
    lower_vertebra : Vertebra, optional
        Name of L, for its depth rule (C7 uses ``|inf(C7)|``).

    Returns
    -------
    LevelSeries
    """
    sup_l = superior_endplate(lower)
    inf_u = inferior_endplate(upper)
    angle = signed_angle_deg(sup_l, inf_u, h=h)
    length = norm(sup_l)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = sup_l / length[..., None]
        up, lo = np.asarray(upper, dtype=float), np.asarray(lower, dtype=float)
        rel = up[..., POST_INF, :] - lo[..., POST_SUP, :]
        offset = dot(rel, unit)
        dep = depth(lower, vertebra=lower_vertebra)
        pct = 100.0 * offset / dep
    bad = ~(length > 0)
    offset = np.where(bad, np.nan, offset)
    pct = np.where(bad | ~(dep > 0), np.nan, pct)
    angle = np.where(bad | ~(norm(inf_u) > 0), np.nan, angle)
    return LevelSeries(angle_deg=angle, offset=offset, offset_pct=pct)


def value_at(series: np.ndarray, frame: int | None) -> float | None:
    """``series[frame]`` as a float, or ``None`` when the frame is unknown or the value is NaN."""
    if frame is None:
        return None
    v = float(series[frame])
    return v if np.isfinite(v) else None


def difference(a: float | None, b: float | None) -> float | None:
    """``a - b``, or ``None`` when either is ``None``."""
    if a is None or b is None:
        return None
    return a - b


def value_range(series: np.ndarray) -> float | None:
    """``max - min`` over the finite values, or ``None`` when fewer than two are finite.

    A range needs motion to be seen: one measured frame (a single image, or a
    level tracked in one frame only) shows none, so its range is not measured
    (``None``), never 0.
    """
    s = np.asarray(series, dtype=float)
    s = s[np.isfinite(s)]
    if s.size < 2:
        return None
    return float(s.max() - s.min())


def excursion(series: np.ndarray, *, neutral: int | None) -> float | None:
    """``max over frames of abs(series[f] - series[neutral])``; ``None`` when neutral is not measured."""
    ref = value_at(series, neutral)
    if ref is None:
        return None
    s = np.asarray(series, dtype=float)
    s = s[np.isfinite(s)]
    return float(np.max(np.abs(s - ref)))


@dataclass(frozen=True)
class LevelSummary:
    """Motion summary of one level, in working units; ``None`` where not measurable."""

    rotation_rom_deg: float | None
    rotation_range_deg: float | None
    translation: float | None
    translation_pct: float | None
    offset_range: float | None
    excursion: float | None


def level_summary(
    series: LevelSeries, *, neutral: int | None, flexion: int | None, extension: int | None
) -> LevelSummary:
    """ROM, translation and ranges of one level (spec section 4).

    ``rotation_rom_deg = angle_deg[extension] - angle_deg[flexion]``,
    ``translation = offset[flexion] - offset[extension]`` (same for the
    percentage), ranges ``max - min`` over all tracked frames, and the
    excursion ``max abs(offset[f] - offset[neutral])`` used by the 2 mm flag.
    """
    angle = series.angle_deg
    return LevelSummary(
        rotation_rom_deg=difference(value_at(angle, extension), value_at(angle, flexion)),
        rotation_range_deg=value_range(series.angle_deg),
        translation=difference(value_at(series.offset, flexion), value_at(series.offset, extension)),
        translation_pct=difference(
            value_at(series.offset_pct, flexion), value_at(series.offset_pct, extension)
        ),
        offset_range=value_range(series.offset),
        excursion=excursion(series.offset, neutral=neutral),
    )
