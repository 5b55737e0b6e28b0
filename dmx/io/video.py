"""Video files (.mp4, .avi ...) read through OpenCV and converted to grey.

A video carries no calibration: it is uncalibrated (source ``none``) unless
the user gives mm per pixel. Frame time comes from the container's frame rate.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dmx.errors import InputError
from dmx.io.calibration import resolve_calibration
from dmx.io.dicom import MAX_FRAMES, MAX_ROWS_COLS, check_size
from dmx.io.sequence import Sequence, StudyInfo


def _open(path: Path):  # noqa: ANN202 - cv2.VideoCapture
    import cv2

    if not path.is_file():
        raise InputError(path, "file not found")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError(path, "cannot be opened as a video (not a video, or an unsupported codec)")
    return cap


def video_properties(path: str | Path) -> dict:
    """Frame count, size and frame rate as the container reports them (no decoding)."""
    import cv2

    path = Path(path)
    cap = _open(path)
    try:
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
        codec = "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") or None
        return {
            "frames": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "rows": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "columns": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "fps": float(cap.get(cv2.CAP_PROP_FPS)),
            "codec": codec,
        }
    finally:
        cap.release()


def read_video(
    path: str | Path, *, mm_per_px: float | tuple[float, float] | None = None, max_frames: int | None = None
) -> Sequence:
    """Read a video file into a grey :class:`~dmx.io.sequence.Sequence` (uint8, T x H x W).

    Parameters
    ----------
    path : str or Path
        The video file.
    mm_per_px : float or (float, float), optional
        Calibration given by the user (source ``user``); otherwise ``none``.
    max_frames : int, optional
        Stop after this many frames (used to describe a video cheaply).

    Raises
    ------
    dmx.errors.InputError
        The file cannot be opened or decoded, holds no frame, or claims absurd dimensions.
    """
    import cv2

    path = Path(path)
    cap = _open(path)
    try:
        rows = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        cols = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        if rows > MAX_ROWS_COLS or cols > MAX_ROWS_COLS:
            raise InputError(
                path, f"video claims {rows} x {cols} pixels per frame (limit {MAX_ROWS_COLS}): refused"
            )
        if claimed > MAX_FRAMES:
            raise InputError(path, f"video claims {claimed} frames (limit {MAX_FRAMES}): refused")
        limit = MAX_FRAMES if max_frames is None else min(max_frames, MAX_FRAMES)
        capacity = max(1, min(claimed, limit)) if claimed > 0 else 64
        if rows > 0 and cols > 0:
            check_size(path, capacity, rows, cols, bytes_per_px=1)
        frames: np.ndarray | None = None
        n = 0
        while n < limit:
            ok, frame = cap.read()
            if not ok:
                break
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
            if frames is None:
                frames = np.empty((capacity, *grey.shape), dtype=np.uint8)
            elif n >= frames.shape[0]:
                check_size(path, 2 * n, grey.shape[0], grey.shape[1], bytes_per_px=1)
                grown = np.empty((min(2 * n, limit), *grey.shape), dtype=np.uint8)
                grown[:n] = frames[:n]
                frames = grown
            frames[n] = grey
            n += 1
    except cv2.error as exc:
        raise InputError(
            path, f"cannot decode the video ({str(exc).strip().splitlines()[-1][:120]})"
        ) from None
    finally:
        cap.release()
    if frames is None or n == 0:
        raise InputError(path, "no frame could be decoded from the video")
    frames = frames[:n] if n == frames.shape[0] else frames[:n].copy()
    warnings: list[str] = []
    if math.isfinite(fps) and fps > 0:
        frame_time = np.full(n, 1000.0 / fps)
    else:
        frame_time = None
        warnings.append("the video reports no frame rate: frame times unknown")
    if mm_per_px is None:
        warnings.append("video input: no calibration (give --mm-per-px): mm values are null")
    cal = resolve_calibration(None, user_mm_per_px=mm_per_px)
    return Sequence(
        frames=frames,
        mm_per_px=cal.mm_per_px,
        calibration_source=cal.source,
        frame_time_ms=frame_time,
        study=StudyInfo(),
        paths=(path,),
        photometric_interpretation=None,
        transfer_syntax=None,
        bits_stored=8,
        warnings=tuple(warnings),
        kind="video",
    )
