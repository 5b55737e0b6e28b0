"""Key frames of spec section 6: neutral, flexion (smallest Cobb) and extension (largest), over all frames."""

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
        ``None`` when neither the Cobb angle nor any level's angle is known in every frame.
    basis : str or None
        ``"cobb_c2c7_deg"``, ``"sum_angle_deg"`` (C2 or C7 not tracked in every frame), ``None`` when
        nothing was usable.
    levels_summed : tuple of Level
        The levels measured in every frame whose ``angle_deg`` were summed for ``"sum_angle_deg"``.
    n_frames_used : int
        Frames among which flexion and extension were chosen: all of them, or 0.
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
    """Per-frame sum of ``angle_deg`` over the levels measured in every frame (spec section 6).

    Returns the sum (NaN in every frame when no level is measured in every frame) and those levels,
    in the order of ``angles``.
    """
    chosen = tuple(
        lv for lv, a in angles.items() if np.asarray(a).shape == (n_frames,) and np.isfinite(a).all()
    )
    if not chosen or n_frames == 0:
        return np.full(n_frames, np.nan), ()
    return np.sum([np.asarray(angles[lv], dtype=float) for lv in chosen], axis=0), chosen


def key_frames(
    cobb_deg: np.ndarray,
    angles_deg: Mapping[Level, np.ndarray],
    *,
    neutral_frame: int | None = None,
) -> KeyFrames:
    """Choose neutral, flexion and extension over all frames (spec section 6).

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
        largest (earliest frame on a tie), always over **all** frames. The
        curve angle is the Cobb angle when it is known in every frame; when C2
        or C7 is not tracked in some frame, it is the sum of ``angle_deg`` over
        the levels measured in every frame (basis :data:`BASIS_SUM`, with a
        warning). When no level is measured in every frame either, flexion and
        extension are ``None``: choosing them among the frames where the
        vertebrae happen to be visible could miss the end range. A single frame
        shows no motion: flexion and extension are ``None``, with a warning.
    """
    cobb = np.asarray(cobb_deg, dtype=float)
    n = int(cobb.shape[0])
    neutral = check_neutral_frame(neutral_frame, n)
    warnings: list[str] = []
    if n == 1:  # a single image shows no motion: its end range is not measured (null, not 0)
        warnings.append(
            "one frame (a single image): no motion, so flexion and extension and the end-range values "
            "are not measured; give a cine, or the flexion and extension views as a static study"
        )
        return KeyFrames(neutral, None, None, None, (), 0, tuple(warnings))
    ok = np.isfinite(cobb)
    levels_summed: tuple[Level, ...] = ()
    if ok.all():
        basis, curve = BASIS_COBB, cobb
    else:
        missing = f"C2 or C7 is not tracked in {int(n - ok.sum())} of {n} frames"
        curve, levels_summed = _angle_sum(angles_deg, n)
        if not levels_summed:
            warnings.append(
                f"{missing} and no level is measured in every frame: flexion and extension are not "
                "determined (choosing them among the frames where the vertebrae are visible could miss "
                "the end range)"
            )
            return KeyFrames(neutral, None, None, None, (), 0, tuple(warnings))
        basis = BASIS_SUM
        names = ", ".join(lv.value for lv in levels_summed)
        warnings.append(
            f"{missing}: flexion and extension were chosen over all frames by the sum of angle_deg over "
            f"{names} (the levels measured in every frame) instead of cobb_c2c7_deg"
        )
    flexion = int(np.argmin(curve))
    extension = int(np.argmax(curve))
    if flexion == extension:
        warnings.append(f"flexion and extension are the same frame ({flexion}): no motion could be measured")
    return KeyFrames(neutral, flexion, extension, basis, levels_summed, n, tuple(warnings))
