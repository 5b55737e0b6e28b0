"""The measurement part of ``measurements.json`` (spec sections 3-8), computed from tracks.

:func:`measure` is the one entry point: tracks and calibration in, a
JSON-ready ``dict`` out (Python floats, ints, strings, lists and ``None``
only; no NaN). The pipeline adds the study, input, calibration, tracks and
quality blocks around it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from dmx.anatomy import CORNERS, LEVELS, Flag, KeyFrame, Level, UpperCervicalPoint, Vertebra
from dmx.errors import UsageError
from dmx.measure.config import Thresholds
from dmx.measure.curve import ISHIHARA_VERTEBRAE, cobb_c2c7_deg, curve_shape
from dmx.measure.flags import adi_flags, level_flags
from dmx.measure.geometry import norm, spine_facing, to_mm
from dmx.measure.keyframes import KeyFrames, key_frames
from dmx.measure.segmental import LevelSeries, LevelSummary, level_series, level_summary, value_at
from dmx.measure.uncertainty import (
    angle_uncertainty_deg,
    offset_uncertainty,
    position_model_frac,
    quadrature,
    rotation_model_sd_deg,
)

if TYPE_CHECKING:  # measure sits above tracking; imported for the type only (dmx.tracking loads OpenCV)
    from dmx.tracking.types import Tracks

#: Flags that need mm and cannot be evaluated without calibration.
MM_FLAGS: tuple[Flag, ...] = (Flag.TRANSLATION_GT_3_5MM, Flag.TRANSLATION_GT_2MM, Flag.ADI_GT_3MM)

#: ``frames.key_frame_basis`` of a static study: the views labelled flexion and extension are the key frames.
BASIS_VIEWS = "views"


def _num(x: Any) -> float | None:
    """A finite float, or ``None`` for None/NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _list(a: np.ndarray | None, n: int) -> list[float | None]:
    if a is None:
        return [None] * n
    return [_num(v) for v in np.asarray(a, dtype=float)]


def _check_mm_per_px(mm_per_px: Any) -> tuple[float, float] | None:
    if mm_per_px is None:
        return None
    if isinstance(mm_per_px, (int, float)) and not isinstance(mm_per_px, bool):
        pair: Sequence[Any] = (mm_per_px, mm_per_px)
    else:
        pair = tuple(mm_per_px)
    try:
        row, col = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise UsageError(f"mm_per_px must be (row_mm, col_mm) or one number, got {mm_per_px!r}") from None
    if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
        raise UsageError(f"mm_per_px must be positive, got {mm_per_px!r}")
    return row, col


def _lost_to_nan(corners: np.ndarray) -> np.ndarray:
    """Copy of ``(T, V, 4, 2)`` corners with a whole vertebra-frame NaN when any coordinate is NaN."""
    c = np.array(corners, dtype=float, copy=True)
    lost = ~np.all(np.isfinite(c), axis=(-2, -1))
    c[lost] = np.nan
    return c


def _adi_series(
    adi_points_px: Mapping[Any, Any], n_frames: int, mm_per_px: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray | None]:
    pts: dict[UpperCervicalPoint, np.ndarray] = {}
    for key, value in adi_points_px.items():
        try:
            name = UpperCervicalPoint(key)
        except ValueError:
            raise UsageError(
                f"unknown ADI point {key!r} (expected {', '.join(p.value for p in UpperCervicalPoint)})"
            ) from None
        arr = np.asarray(value, dtype=float)
        if arr.shape != (n_frames, 2):
            raise UsageError(f"ADI point {name.value} must have shape ({n_frames}, 2), got {arr.shape}")
        pts[name] = arr
    missing = [p.value for p in UpperCervicalPoint if p not in pts]
    if missing:
        raise UsageError(f"ADI needs both upper-cervical points; missing {', '.join(missing)}")
    a, b = pts[UpperCervicalPoint.C1_ARCH_POST], pts[UpperCervicalPoint.C2_DENS_ANT]
    adi_px = norm(b - a)
    adi_mm = None if mm_per_px is None else norm(to_mm(b, mm_per_px) - to_mm(a, mm_per_px))
    return adi_px, adi_mm


def _curve_json(shape: Any, frame: int | None, *, calibrated: bool) -> dict[str, Any]:
    d_work = {v.value: _num(shape.d[v]) for v in ISHIHARA_VERTEBRAE}
    return {
        "frame": frame,
        "class": shape.curve_class.value,
        "s_type": None if shape.s_type is None else shape.s_type.value,
        "cobb_c2c7_deg": _num(shape.cobb_c2c7_deg),
        "ara_c2c7_deg": _num(shape.ara_c2c7_deg),
        "cci": _num(shape.cci),
        "d_mm": d_work if calibrated else {k: None for k in d_work},
        "d_px": None if calibrated else d_work,
        "tolerance": {"value": _num(shape.tolerance), "unit": "mm" if calibrated else "px"},
    }


def _frames_text(frames: np.ndarray) -> str:
    """``"3, 4, 9"`` (at most 8 listed, then ``"..."``)."""
    listed = ", ".join(str(int(f)) for f in frames[:8])
    return listed + (", ..." if len(frames) > 8 else "")


def _per_vertebra(tracks: Tracks, name: str, vertebrae: tuple[Vertebra, ...], n: int) -> dict | None:
    """``{Vertebra: (T,)}`` of a per-frame tracks array (``precision_px``...), or None when absent."""
    arr = getattr(tracks, name, None)
    if arr is None:
        return None
    a = np.asarray(arr, dtype=float)
    if a.shape != (n, len(vertebrae)):
        return None
    return {v: a[:, i] for i, v in enumerate(vertebrae)}


def _lost_reason(tracks: Tracks, vertebrae: tuple[Vertebra, ...], level: Level, frame: int) -> str:
    """Why a level is not measured in ``frame``: the tracker's reasons for its two vertebrae."""
    reasons = getattr(tracks, "reason", None)
    parts = []
    for v in (level.upper, level.lower):
        if v not in vertebrae:
            parts.append(f"{v.value} not in the tracks")
            continue
        r = None
        if reasons is not None and frame < len(reasons):
            r = reasons[frame][vertebrae.index(v)]
        if r:
            parts.append(f"{v.value} {r}")
    return "; ".join(parts) if parts else "not tracked"


@dataclass(frozen=True)
class _LevelUncertainty:
    """Per-frame 1 SD of one level's values, NaN where the value is not measured."""

    angle_deg: np.ndarray
    offset: np.ndarray
    offset_pct: np.ndarray


def _checked_corners(tracks: Tracks) -> tuple[np.ndarray, tuple[Vertebra, ...]]:
    """``tracks.corners_px`` as a ``(T, V, 4, 2)`` float array and the vertebrae it names."""
    corners_px = np.asarray(tracks.corners_px, dtype=float)
    if corners_px.ndim != 4 or corners_px.shape[2:] != (len(CORNERS), 2):
        raise UsageError(f"tracks.corners_px must have shape (T, V, 4, 2), got {corners_px.shape}")
    vertebrae = tuple(Vertebra(v) for v in tracks.vertebrae)
    if len(vertebrae) != corners_px.shape[1]:
        raise UsageError(f"tracks name {len(vertebrae)} vertebrae but corners_px has {corners_px.shape[1]}")
    return corners_px, vertebrae


def _coverage_warnings(by_vertebra: Mapping[Vertebra, np.ndarray], *, calibrated: bool) -> list[str]:
    """Study warnings about what cannot be measured: no calibration, C2-C7 absent or never tracked."""
    warnings = []
    if not calibrated:
        warnings.append(
            "no calibration: every mm value is null; angles and percentages are computed in pixels; "
            f"flags {', '.join(f.value for f in MM_FLAGS)} were not evaluated"
        )
    for v in (Vertebra.C2, Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6, Vertebra.C7):
        if v not in by_vertebra:
            warnings.append(f"{v.value} is not in the tracks: its levels and the curve are not measured")
        elif not np.isfinite(by_vertebra[v]).any():
            warnings.append(
                f"{v.value} is not tracked in any frame: its levels and the curve are not measured"
            )
    return warnings


def _facing_warnings(h: int | None, n_agree: int, n_total: int) -> list[str]:
    """Study warnings about the facing direction: none found, or vertebra-frames disagreeing."""
    if h is None:
        return ["no vertebra is tracked in any frame: nothing could be measured"]
    if n_agree < n_total:
        return [
            f"facing direction: {n_total - n_agree} of {n_total} tracked vertebra-frames disagree with the "
            "majority (check that anterior and posterior corners are not swapped)"
        ]
    return []


def _all_level_series(
    by_vertebra: Mapping[Vertebra, np.ndarray], *, h: int | None
) -> dict[Level, LevelSeries | None]:
    """Per-frame series of every level; ``None`` for a level whose vertebrae are not in the tracks."""
    series: dict[Level, LevelSeries | None] = {}
    for level in LEVELS:
        up, lo = by_vertebra.get(level.upper), by_vertebra.get(level.lower)
        if h is None or up is None or lo is None:
            series[level] = None
        else:
            series[level] = level_series(up, lo, h=h, lower_vertebra=level.lower)
    return series


def _model_error(
    term: Callable[[np.ndarray], np.ndarray],
    excess: dict[Vertebra, np.ndarray] | None,
    rot_sd: dict[Vertebra, np.ndarray],
    v: Vertebra,
    n: int,
) -> np.ndarray:
    """``(T,)`` model error of body ``v``'s fits (``term`` of its cost excess: rotation or corners): none
    on the reference frame (the pose is the landmarks themselves), none for tracks without a cost
    (only their noise is known)."""
    if excess is None:
        return np.zeros(n)
    return np.where(rot_sd[v] == 0, 0.0, term(excess[v]))


def _drop_uncertain_frames(
    series: Mapping[Level, LevelSeries | None],
    tracks: Tracks,
    vertebrae: tuple[Vertebra, ...],
    by_vertebra: Mapping[Vertebra, np.ndarray],
    *,
    mm_per_px: tuple[float, float] | None,
    max_angle_uncertainty_deg: float,
) -> tuple[
    dict[Level, LevelSeries | None],
    dict[Level, _LevelUncertainty],
    dict[Level, np.ndarray],
    dict[Level, list[str]],
]:
    """Per-frame uncertainty (1 SD) of every level from the tracker's registration precision and the
    model error its cost excess says (:mod:`dmx.measure.uncertainty`).

    Frames whose angle uncertainty is above ``max_angle_uncertainty_deg`` are not measured (NaN).

    Returns
    -------
    series : dict
        ``series`` with those frames NaN.
    uncertainty : dict
        Per level with the tracker's precision; absent without it.
    dropped : dict
        ``(T,)`` bool of the frames dropped, per level with any.
    level_warnings : dict
        Per level, the warning saying which frames were dropped.
    """
    n = len(tracks.corners_px)
    rot_sd = _per_vertebra(tracks, "rotation_precision_deg", vertebrae, n)
    pos_sd = _per_vertebra(tracks, "precision_px", vertebrae, n)
    excess = _per_vertebra(tracks, "cost_excess", vertebrae, n)
    out_series = dict(series)
    uncertainty: dict[Level, _LevelUncertainty] = {}
    dropped: dict[Level, np.ndarray] = {}
    level_warnings: dict[Level, list[str]] = {lv: [] for lv in LEVELS}
    limit = max_angle_uncertainty_deg
    for level, s in series.items():
        if s is None or rot_sd is None or pos_sd is None:
            continue
        up, lo = level.upper, level.lower
        m_up, m_lo = (_model_error(rotation_model_sd_deg, excess, rot_sd, v, n) for v in (up, lo))
        f_up, f_lo = (_model_error(position_model_frac, excess, rot_sd, v, n) for v in (up, lo))
        ua = angle_uncertainty_deg(rot_sd[up], rot_sd[lo], m_up, m_lo)
        uo, up_ = offset_uncertainty(
            by_vertebra[up],
            by_vertebra[lo],
            precision_upper_px=pos_sd[up],
            precision_lower_px=pos_sd[lo],
            rotation_sd_lower_deg=rot_sd[lo],
            mm_per_px=mm_per_px,
            lower_vertebra=lo,
            upper_vertebra=up,
            model_frac_upper=f_up,
            model_frac_lower=f_lo,
            model_sd_lower_deg=m_lo,
        )
        with np.errstate(invalid="ignore"):
            too_uncertain = np.isfinite(s.angle_deg) & (ua > limit)
        if too_uncertain.any():
            frames_out = np.flatnonzero(too_uncertain)
            dropped[level] = too_uncertain
            largest = float(ua[too_uncertain].max())
            level_warnings[level].append(
                f"not measured in {len(frames_out)} frame(s) ({_frames_text(frames_out)}): angle uncertainty "
                f"above max_angle_uncertainty_deg {limit:g} deg (largest {largest:.2f})"
            )
            s = LevelSeries(
                angle_deg=np.where(too_uncertain, np.nan, s.angle_deg),
                offset=np.where(too_uncertain, np.nan, s.offset),
                offset_pct=np.where(too_uncertain, np.nan, s.offset_pct),
            )
            out_series[level] = s
        uncertainty[level] = _LevelUncertainty(
            angle_deg=np.where(np.isfinite(s.angle_deg), ua, np.nan),
            offset=np.where(np.isfinite(s.offset), uo, np.nan),
            offset_pct=np.where(np.isfinite(s.offset_pct), up_, np.nan),
        )
    return out_series, uncertainty, dropped, level_warnings


def _study_key_frames(
    by_vertebra: Mapping[Vertebra, np.ndarray],
    series: Mapping[Level, LevelSeries | None],
    *,
    h: int | None,
    n_frames: int,
    neutral_frame: int | None,
    view_key_frames: tuple[int | None, int | None] | None,
) -> KeyFrames:
    """Neutral, flexion and extension frames: the C2-C7 Cobb angle's extremes, or the static views."""
    if h is not None and Vertebra.C2 in by_vertebra and Vertebra.C7 in by_vertebra:
        cobb = cobb_c2c7_deg(by_vertebra[Vertebra.C2], by_vertebra[Vertebra.C7], h=h)
    else:
        cobb = np.full(n_frames, np.nan)
    angles = {lv: s.angle_deg for lv, s in series.items() if s is not None}
    kf = key_frames(cobb, angles, neutral_frame=neutral_frame)
    if view_key_frames is not None:
        flexion_view, extension_view = view_key_frames
        kf = replace(kf, flexion=flexion_view, extension=extension_view, basis=BASIS_VIEWS)
        kf = replace(kf, levels_summed=(), warnings=())
    return kf


def _faint_warnings(tracks: Tracks) -> list[str]:
    """A warning per body the tracker found faint against its noise (``Tracks.faint``), naming its levels."""
    out = []
    windows = dict(tracks.smoothing_windows)
    for v, rho in tracks.faint:
        levels = [lv.value for lv in LEVELS if v in (lv.upper, lv.lower)]
        smoothed = f" and smoothed over {windows[v]} frames" if v in windows else ""
        out.append(
            f"{v.value} is faint against its noise (a good match of it correlates at only {rho:.2f}, "
            "where a clear body reaches 0.97 or more): followed with its uncertainty widened"
            f"{smoothed}; where a still structure lies over it (the shoulders over C7) it may be pulled "
            "towards its reference pose, "
            f"which the uncertainty does not cover: read the rotation range of {' and '.join(levels)} with "
            "care (at C6-C7 under dense shoulders it has been found up to 1.4 deg off, too large or too "
            "small)"
        )
    return out


def _unmeasured_warnings(
    level: Level,
    s: LevelSeries | None,
    kf: KeyFrames,
    tracks: Tracks,
    vertebrae: tuple[Vertebra, ...],
    *,
    dropped: np.ndarray | None,
    max_angle_uncertainty_deg: float,
) -> list[str]:
    """Why a level's values are null: a vertebra not in the tracks, or not measured at a key frame."""
    if s is None:
        absent = [v.value for v in (level.upper, level.lower) if v not in vertebrae]
        return [f"{', '.join(absent)} not in the tracks: not measured"] if absent else []
    warnings = []
    for key, frame in ((KeyFrame.FLEXION, kf.flexion), (KeyFrame.EXTENSION, kf.extension)):
        if frame is None or np.isfinite(s.angle_deg[frame]):
            continue
        why = (
            f"angle uncertainty above max_angle_uncertainty_deg {max_angle_uncertainty_deg:g} deg"
            if dropped is not None and dropped[frame]
            else _lost_reason(tracks, vertebrae, level, frame)
        )
        n_measured = int(np.isfinite(s.angle_deg).sum())
        warnings.append(
            f"not measured at the {key.value} key frame (frame {frame}: {why}): rotation_rom_deg, "
            f"translation_mm and translation_pct are null; the ranges are over the {n_measured} "
            "frames where it is measured"
        )
    return warnings


def _end_range_uncertainty(
    sm: LevelSummary, u: _LevelUncertainty, kf: KeyFrames
) -> tuple[float | None, float | None, float | None]:
    """1 SD of ROM, translation and translation percentage: the key frames' values in quadrature."""
    f, e = kf.flexion, kf.extension
    rom_u = tr_u = pct_u = None
    if sm.rotation_rom_deg is not None:
        rom_u = quadrature(value_at(u.angle_deg, e), value_at(u.angle_deg, f))
    if sm.translation is not None:
        tr_u = quadrature(value_at(u.offset, f), value_at(u.offset, e))
    if sm.translation_pct is not None:
        pct_u = quadrature(value_at(u.offset_pct, f), value_at(u.offset_pct, e))
    return rom_u, tr_u, pct_u


def _level_block(
    s: LevelSeries | None,
    sm: LevelSummary | None,
    u: _LevelUncertainty | None,
    kf: KeyFrames,
    *,
    n_frames: int,
    calibrated: bool,
    adjacent_rom_deg: Sequence[float | None],
    thresholds: Thresholds,
    warnings: list[str],
) -> dict[str, Any]:
    """One entry of ``levels``: per-frame series, end-range values with their uncertainty, flags."""
    n = n_frames

    def mm(x: Any) -> float | None:
        return _num(x) if calibrated else None

    entry: dict[str, Any] = {
        "angle_deg": _list(None if s is None else s.angle_deg, n),
        "angle_uncertainty_deg": _list(None if u is None else u.angle_deg, n),
        "offset_mm": _list(None if s is None or not calibrated else s.offset, n),
        "offset_pct": _list(None if s is None else s.offset_pct, n),
        "rotation_rom_deg": None if sm is None else _num(sm.rotation_rom_deg),
        "rotation_range_deg": None if sm is None else _num(sm.rotation_range_deg),
        "translation_mm": None if sm is None else mm(sm.translation),
        "translation_pct": None if sm is None else _num(sm.translation_pct),
        "offset_range_mm": None if sm is None else mm(sm.offset_range),
        "excursion_mm": None if sm is None else mm(sm.excursion),
    }
    rom_u, tr_u, pct_u = (None, None, None) if sm is None or u is None else _end_range_uncertainty(sm, u, kf)
    entry["rotation_rom_uncertainty_deg"] = _num(rom_u)
    entry["translation_uncertainty_mm"] = mm(tr_u)
    entry["translation_uncertainty_pct"] = _num(pct_u)
    result = level_flags(
        translation_mm=entry["translation_mm"],
        offset_range_mm=entry["offset_range_mm"],
        translation_pct=entry["translation_pct"],
        excursion_mm=entry["excursion_mm"],
        rotation_rom_deg=entry["rotation_rom_deg"],
        adjacent_rom_deg=adjacent_rom_deg,
        thresholds=thresholds,
    )
    entry["flags"] = [f.value for f in result.raised]
    entry["flags_not_evaluated"] = [f.value for f in result.not_evaluated]
    entry["warnings"] = warnings
    return entry


def _levels_block(
    series: Mapping[Level, LevelSeries | None],
    uncertainty: Mapping[Level, _LevelUncertainty],
    level_warnings: Mapping[Level, list[str]],
    kf: KeyFrames,
    *,
    n_frames: int,
    calibrated: bool,
    thresholds: Thresholds,
) -> dict[str, Any]:
    """The ``levels`` block: :func:`_level_block` of every level, with its neighbours' ROM for the flags."""
    summaries = {
        lv: None
        if s is None
        else level_summary(s, neutral=kf.neutral, flexion=kf.flexion, extension=kf.extension)
        for lv, s in series.items()
    }
    levels_out: dict[str, Any] = {}
    for i, level in enumerate(LEVELS):
        adjacent = [LEVELS[j] for j in (i - 1, i + 1) if 0 <= j < len(LEVELS)]
        levels_out[level.value] = _level_block(
            series[level],
            summaries[level],
            uncertainty.get(level),
            kf,
            n_frames=n_frames,
            calibrated=calibrated,
            adjacent_rom_deg=[
                None if summaries[a] is None else summaries[a].rotation_rom_deg for a in adjacent
            ],
            thresholds=thresholds,
            warnings=level_warnings[level],
        )
    return levels_out


def _insufficient_motion_warnings(levels_out: Mapping[str, Any], thresholds: Thresholds) -> list[str]:
    """The study warning naming the levels flagged ``insufficient_motion``, if any."""
    stressed = [k for k, e in levels_out.items() if Flag.INSUFFICIENT_MOTION.value in e["flags"]]
    if not stressed:
        return []
    return [
        f"insufficient motion at {', '.join(stressed)} (|rotation_rom_deg| < "
        f"{thresholds.min_rotation_deg:g} deg): the flags of these levels are unreliable"
    ]


def _curve_blocks(
    by_vertebra: Mapping[Vertebra, np.ndarray],
    kf: KeyFrames,
    *,
    h: int | None,
    calibrated: bool,
    thresholds: Thresholds,
) -> dict[str, Any]:
    """The ``curve`` block: the curve shape at each key frame."""
    curve_out: dict[str, Any] = {}
    frame_of = {KeyFrame.NEUTRAL: kf.neutral, KeyFrame.FLEXION: kf.flexion, KeyFrame.EXTENSION: kf.extension}
    for key, frame in frame_of.items():
        corners_f = {} if frame is None else {v: c[frame] for v, c in by_vertebra.items()}
        shape = curve_shape(
            corners_f,
            h=h,
            tolerance=thresholds.curve_tolerance_mm if calibrated else None,
            tolerance_pct_depth=None if calibrated else thresholds.curve_tolerance_pct_depth,
        )
        curve_out[key.value] = _curve_json(shape, frame, calibrated=calibrated)
    return curve_out


def _frames_block(kf: KeyFrames, *, n_frames: int, reference_frame: int) -> dict[str, Any]:
    """The ``frames`` block: frame count, reference and key frames, and how they were chosen."""
    return {
        "count": n_frames,
        "reference": reference_frame,
        "neutral": kf.neutral,
        "flexion": kf.flexion,
        "extension": kf.extension,
        "key_frame_basis": kf.basis,
        "key_frame_levels": [lv.value for lv in kf.levels_summed],
    }


def _facing_block(h: int | None, n_agree: int, n_total: int) -> dict[str, Any]:
    """The ``facing`` block: the spine's facing sign and direction, and how many vertebra-frames agree."""
    return {
        "h": h,
        "direction": None if h is None else ("right" if h < 0 else "left"),
        "vertebra_frames_agreeing": n_agree,
        "vertebra_frames_total": n_total,
    }


def _adi_block(
    adi_points_px: Mapping[Any, Any],
    *,
    n_frames: int,
    mm_per_px: tuple[float, float] | None,
    thresholds: Thresholds,
) -> tuple[dict[str, Any], list[str]]:
    """The ``adi`` block (atlanto-dental interval per frame, its maximum and flag) and its warning."""
    calibrated = mm_per_px is not None
    adi_px, adi_mm = _adi_series(adi_points_px, n_frames, mm_per_px)
    res = adi_flags(adi_mm, thresholds=thresholds)
    finite_mm = None if adi_mm is None else adi_mm[np.isfinite(adi_mm)]
    block = {
        "adi_mm": _list(adi_mm, n_frames),
        "adi_px": None if calibrated else _list(adi_px, n_frames),
        "max_mm": None if finite_mm is None or finite_mm.size == 0 else _num(finite_mm.max()),
        "flags": [f.value for f in res.raised],
        "flags_not_evaluated": [f.value for f in res.not_evaluated],
    }
    warnings = []
    if calibrated and Flag.ADI_GT_3MM in res.not_evaluated:
        warnings.append("atlanto-dental interval: no frame has both C1.arch_post and C2.dens_ant")
    return block, warnings


def measure(
    tracks: Tracks,
    *,
    mm_per_px: Sequence[float] | float | None,
    neutral_frame: int | None = None,
    thresholds: Thresholds | None = None,
    adi_points_px: Mapping[str | UpperCervicalPoint, Any] | None = None,
    view_key_frames: tuple[int | None, int | None] | None = None,
) -> dict[str, Any]:
    """Compute the measurements of spec sections 3-7 from corner tracks.

    Parameters
    ----------
    tracks : dmx.tracking.types.Tracks
        ``corners_px`` ``(T, V, 4, 2)`` in :data:`dmx.anatomy.CORNERS` order,
        NaN where lost (a vertebra-frame with any NaN coordinate counts as lost).
    mm_per_px : (float, float), float or None
        ``(row_mm, col_mm)`` calibration (one number = isotropic); ``None``
        without calibration: every mm value is ``None``, angles and
        percentages are computed in pixels (square pixels assumed).
    neutral_frame : int, optional
        Neutral frame; default the first frame.
    thresholds : Thresholds, optional
        Default :class:`~dmx.measure.config.Thresholds`.
    adi_points_px : mapping, optional
        ``{"C1.arch_post": (T, 2), "C2.dens_ant": (T, 2)}`` per-frame points
        in pixels, NaN where not available; gives the ``adi`` block.
    view_key_frames : (int or None, int or None), optional
        ``(flexion, extension)`` frames of a static study (:mod:`dmx.io.static`): the views
        labelled so are the key frames instead of the curve angle's extremes
        (``key_frame_basis`` ``"views"``); ``None`` for a view not given.

    Returns
    -------
    dict
        JSON-ready: ``frames`` (count, reference, neutral, flexion, extension,
        key_frame_basis, key_frame_levels), ``facing``, ``levels``, ``curve``,
        ``thresholds``, ``adi`` (only when points are given) and ``warnings``.
        Each level also holds ``angle_uncertainty_deg`` (1 SD per frame, from
        ``tracks.rotation_precision_deg`` and the model error ``tracks.cost_excess`` says;
        null without the precision), the end-range
        ``rotation_rom_uncertainty_deg``, ``translation_uncertainty_mm`` and
        ``translation_uncertainty_pct`` (:mod:`dmx.measure.uncertainty`), and
        ``warnings`` saying why its values are null (a frame above
        ``thresholds.max_angle_uncertainty_deg``, not tracked at a key frame).

    Raises
    ------
    dmx.errors.UsageError
        Bad ``neutral_frame``, ``mm_per_px``, corner array shape or ADI points.
    """
    thresholds = Thresholds() if thresholds is None else thresholds
    spacing = _check_mm_per_px(mm_per_px)
    calibrated = spacing is not None
    corners_px, vertebrae = _checked_corners(tracks)
    n = int(corners_px.shape[0])
    work = to_mm(_lost_to_nan(corners_px), spacing)
    by_vertebra = {v: work[:, i] for i, v in enumerate(vertebrae)}
    warnings = _coverage_warnings(by_vertebra, calibrated=calibrated)

    ref = int(tracks.reference_frame or 0)
    h, n_agree, n_total = spine_facing(work, reference_frame=ref)
    warnings.extend(_facing_warnings(h, n_agree, n_total))

    limit = thresholds.max_angle_uncertainty_deg
    series, uncertainty, dropped, level_warnings = _drop_uncertain_frames(
        _all_level_series(by_vertebra, h=h),
        tracks,
        vertebrae,
        by_vertebra,
        mm_per_px=spacing,
        max_angle_uncertainty_deg=limit,
    )
    kf = _study_key_frames(
        by_vertebra, series, h=h, n_frames=n, neutral_frame=neutral_frame, view_key_frames=view_key_frames
    )
    warnings.extend(kf.warnings)
    for level in LEVELS:
        level_warnings[level] += _unmeasured_warnings(
            level,
            series[level],
            kf,
            tracks,
            vertebrae,
            dropped=dropped.get(level),
            max_angle_uncertainty_deg=limit,
        )
    warnings.extend(_faint_warnings(tracks))
    levels_out = _levels_block(
        series, uncertainty, level_warnings, kf, n_frames=n, calibrated=calibrated, thresholds=thresholds
    )
    warnings.extend(_insufficient_motion_warnings(levels_out, thresholds))

    out: dict[str, Any] = {
        "frames": _frames_block(kf, n_frames=n, reference_frame=ref),
        "facing": _facing_block(h, n_agree, n_total),
        "levels": levels_out,
        "curve": _curve_blocks(by_vertebra, kf, h=h, calibrated=calibrated, thresholds=thresholds),
        "thresholds": thresholds.to_json(),
    }
    if adi_points_px is not None:
        out["adi"], adi_warnings = _adi_block(
            adi_points_px, n_frames=n, mm_per_px=spacing, thresholds=thresholds
        )
        warnings.extend(adi_warnings)
    out["warnings"] = warnings
    return out


def tracks_json(tracks: Tracks) -> dict[str, dict[str, list[list[float] | None]]]:
    """The ``tracks`` block of ``measurements.json``: per vertebra and corner, ``[x, y]`` or ``None``."""
    corners = _lost_to_nan(np.asarray(tracks.corners_px, dtype=float))
    out: dict[str, dict[str, list[list[float] | None]]] = {}
    for i, v in enumerate(tracks.vertebrae):
        out[Vertebra(v).value] = {
            corner.value: [
                [float(xy[0]), float(xy[1])] if np.all(np.isfinite(xy)) else None for xy in corners[:, i, k]
            ]
            for k, corner in enumerate(CORNERS)
        }
    return out


def quality_json(tracks: Tracks) -> dict[str, list[float | None]]:
    """The ``quality`` block of ``measurements.json``: per vertebra, a score in 0..1 or ``None`` per frame."""
    q = np.asarray(tracks.quality, dtype=float)
    return {Vertebra(v).value: _list(q[:, i], q.shape[0]) for i, v in enumerate(tracks.vertebrae)}
