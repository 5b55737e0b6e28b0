"""Instability flags of spec section 7, each with a configurable threshold.

A flag is three-valued: *raised* when a measured value passes its threshold,
*not raised* when every value it depends on was measured and none passes,
and *not evaluated* otherwise (e.g. mm flags without calibration, or a key
frame in which the level is not tracked). A flag that was not evaluated is
never reported as "no flag": it is listed in ``flags_not_evaluated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dmx.anatomy import Flag
from dmx.measure.config import Thresholds


@dataclass(frozen=True)
class FlagResult:
    """Flags raised, and flags that could not be evaluated (both in :class:`Flag` order)."""

    raised: tuple[Flag, ...] = ()
    not_evaluated: tuple[Flag, ...] = ()


def _exceeds(tests: Sequence[tuple[float | None, bool]]) -> bool | None:
    """Three-valued OR of ``(value, passes)`` tests: True / False / None (not evaluable)."""
    if any(value is not None and passes for value, passes in tests):
        return True
    if tests and all(value is not None for value, _ in tests):
        return False
    return None


def _gt(value: float | None, limit: float) -> tuple[float | None, bool]:
    return value, value is not None and abs(value) > limit


def level_flags(
    *,
    translation_mm: float | None,
    offset_range_mm: float | None,
    translation_pct: float | None,
    excursion_mm: float | None,
    rotation_rom_deg: float | None,
    adjacent_rom_deg: Sequence[float | None],
    thresholds: Thresholds,
) -> FlagResult:
    """Evaluate the per-level flags.

    Parameters
    ----------
    translation_mm, offset_range_mm, translation_pct : float or None
        Level summaries (spec section 4); mm values are ``None`` without calibration.
    excursion_mm : float or None
        ``max over frames of abs(offset_mm[f] - offset_mm[neutral])``.
    rotation_rom_deg : float or None
        This level's rotation ROM.
    adjacent_rom_deg : sequence of float or None
        ROM of the adjacent levels (one or two; ``None`` where not measured).
    thresholds : Thresholds

    Returns
    -------
    FlagResult
    """
    t = thresholds
    rom = rotation_rom_deg
    decisions: dict[Flag, bool | None] = {
        Flag.TRANSLATION_GT_3_5MM: _exceeds(
            [_gt(translation_mm, t.translation_mm), _gt(offset_range_mm, t.offset_range_mm)]
        ),
        Flag.TRANSLATION_GT_20PCT: _exceeds([_gt(translation_pct, t.translation_pct)]),
        Flag.TRANSLATION_GT_2MM: _exceeds([_gt(excursion_mm, t.excursion_mm)]),
        Flag.ANGULATION_GT_11DEG_VS_ADJACENT: _exceeds(
            [
                (
                    None if rom is None or adj is None else rom - adj,
                    rom is not None and adj is not None and rom - adj > t.angulation_vs_adjacent_deg,
                )
                for adj in adjacent_rom_deg
            ]
        ),
        Flag.INSUFFICIENT_MOTION: None if rom is None else abs(rom) < t.min_rotation_deg,
    }
    return FlagResult(
        raised=tuple(f for f, d in decisions.items() if d is True),
        not_evaluated=tuple(f for f, d in decisions.items() if d is None),
    )


def adi_flags(adi_mm: np.ndarray | None, *, thresholds: Thresholds) -> FlagResult:
    """``adi_gt_3mm``: the atlanto-dental interval exceeds the threshold in any measured frame.

    Parameters
    ----------
    adi_mm : numpy.ndarray or None
        ``(T,)`` ADI in mm, NaN where not measured; ``None`` without calibration.
    """
    if adi_mm is None:
        return FlagResult((), (Flag.ADI_GT_3MM,))
    a = np.asarray(adi_mm, dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return FlagResult((), (Flag.ADI_GT_3MM,))
    if float(a.max()) > thresholds.adi_mm:
        return FlagResult((Flag.ADI_GT_3MM,), ())
    return FlagResult((), ())
