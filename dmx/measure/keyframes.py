"""Key frames of spec section 6: neutral, flexion (smallest Cobb), extension (largest Cobb)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dmx.anatomy import Level
from dmx.errors import ParameterError, UsageError

#: ``KeyFrames.basis`` when the C2-C7 Cobb angle chose flexion and extension.
BASIS_COBB = "cobb_c2c7_deg"
#: ``KeyFrames.basis`` when the sum of segmental angles stood in for it.
BASIS_SUM = "sum_angle_deg"


@dataclass(frozen=True)
class KeyFrames:
    """The three key frames and how flexion/extension were chosen.

    Attributes
    ----------
    neutral : int
    flexion, extension : int or None
        ``None`` when no frame has a usable curve angle.
    basis : str or None
        ``"cobb_c2c7_deg"`` or ``"sum_angle_deg"`` (fallback), ``None`` when nothing was usable.
    levels_summed : tuple of Level
        The levels whose ``angle_deg`` were summed in the fallback.
    n_frames_used : int
        Frames in which the chosen curve angle could be computed.
    warnings : tuple of str
    """

    neutral: int
    flexion: int | None
    extension: int | None
    basis: str | None
    levels_summed: tuple[Level, ...] = ()
    n_frames_used: int = 0
    warnings: tuple[str, ...] = ()


def check_neutral_frame(neutral_frame: int | None, n_frames: int) -> int:
    """The neutral frame index: ``neutral_frame`` validated, or 0 (the first frame)."""
    if neutral_frame is None:
        if n_frames < 1:
            raise UsageError("no frames to measure")
        return 0
    if isinstance(neutral_frame, bool) or not isinstance(neutral_frame, (int, np.integer)):
        raise ParameterError("neutral_frame", f"must be a frame index, got {neutral_frame!r}")
    if not 0 <= int(neutral_frame) < n_frames:
        raise ParameterError(
            "neutral_frame", f"{neutral_frame} is outside the study's frames 0..{n_frames - 1}"
        )
    return int(neutral_frame)


def _angle_sum(angles: Mapping[Level, np.ndarray], n_frames: int) -> tuple[np.ndarray, tuple[Level, ...]]:
    """Per-frame sum of the available angle_deg over a fixed set of levels.

    The set starts with every level measured in at least one frame; a frame
    counts only when all levels of the set are measured in it. While no frame
    qualifies, the level measured in the fewest frames is dropped (on a tie,
    the lowest level).
    """
    present = {lv: np.isfinite(np.asarray(a, dtype=float)) for lv, a in angles.items()}
    chosen = [lv for lv in angles if present[lv].any()]
    while chosen:
        ok = np.all([present[lv] for lv in chosen], axis=0)
        if ok.any():
            total = np.sum([np.asarray(angles[lv], dtype=float) for lv in chosen], axis=0)
            return np.where(ok, total, np.nan), tuple(chosen)
        drop = min(reversed(chosen), key=lambda lv: int(present[lv].sum()))
        chosen.remove(drop)
    return np.full(n_frames, np.nan), ()


def key_frames(
    cobb_deg: np.ndarray,
    angles_deg: Mapping[Level, np.ndarray],
    *,
    neutral_frame: int | None = None,
) -> KeyFrames:
    """Choose neutral, flexion and extension.

    Parameters
    ----------
    cobb_deg : numpy.ndarray
        ``(T,)`` C2-C7 Cobb angle per frame, NaN where C2 or C7 is lost.
    angles_deg : mapping
        ``{Level: (T,) angle_deg}`` segmental angles, NaN where not measured.
    neutral_frame : int, optional
        Neutral frame given by the user; default the first frame.

    Returns
    -------
    KeyFrames
        Flexion is the frame with the smallest curve angle, extension the
        largest (earliest frame on a tie). Frames where the curve angle
        cannot be computed are skipped. When C2 and C7 are never tracked
        together, the sum of the available ``angle_deg`` stands in for the
        Cobb angle and a warning says so.
    """
    cobb = np.asarray(cobb_deg, dtype=float)
    n = int(cobb.shape[0])
    neutral = check_neutral_frame(neutral_frame, n)
    warnings: list[str] = []
    ok = np.isfinite(cobb)
    levels_summed: tuple[Level, ...] = ()
    if ok.any():
        basis, curve = BASIS_COBB, cobb
        if not ok.all():
            warnings.append(
                f"cobb_c2c7_deg could not be computed in {int(n - ok.sum())} of {n} frames "
                "(C2 or C7 not tracked): flexion and extension were chosen among the other frames"
            )
    else:
        curve, levels_summed = _angle_sum(angles_deg, n)
        ok = np.isfinite(curve)
        if not ok.any():
            warnings.append(
                "no frame has a Cobb angle or a segmental angle: flexion and extension are not determined"
            )
            return KeyFrames(neutral, None, None, None, (), 0, tuple(warnings))
        basis = BASIS_SUM
        names = ", ".join(lv.value for lv in levels_summed)
        skipped = int(n - ok.sum())
        extra = f"; {skipped} of {n} frames without all of them were skipped" if skipped else ""
        warnings.append(
            "C2 and C7 are not tracked together in any frame: the sum of angle_deg over "
            f"{names} stands in for the C2-C7 Cobb angle to choose flexion and extension{extra}"
        )
    masked_min = np.where(ok, curve, np.inf)
    masked_max = np.where(ok, curve, -np.inf)
    flexion = int(np.argmin(masked_min))
    extension = int(np.argmax(masked_max))
    if flexion == extension:
        warnings.append(f"flexion and extension are the same frame ({flexion}): no motion could be measured")
    return KeyFrames(neutral, flexion, extension, basis, levels_summed, int(ok.sum()), tuple(warnings))
