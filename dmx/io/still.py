"""Still images (PNG, JPEG, TIFF) read as one-frame studies.

An exported image carries no patient identity, no acquisition details and no
geometry: it is uncalibrated (source ``none``) unless the user gives mm per
pixel, and a warning says so. Grey images of 8 or 16 bits are read as they are;
a colour image is converted to grey (with a warning).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dmx.errors import InputError
from dmx.io.calibration import resolve_calibration
from dmx.io.dicom import MAX_ROWS_COLS
from dmx.io.sequence import Sequence, StudyInfo

#: File name endings read as still images.
STILL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})

#: The warning of every still image.
STILL_WARNING = (
    "still image ({name}): it carries no patient identity, no acquisition details and no pixel size"
)


def is_still_image(path: str | Path) -> bool:
    """True when ``path`` names a PNG, JPEG or TIFF file (by its ending)."""
    return Path(path).suffix.lower() in STILL_SUFFIXES


def read_still(path: str | Path, *, mm_per_px: float | tuple[float, float] | None = None) -> Sequence:
    """Read a PNG, JPEG or TIFF image into a one-frame :class:`~dmx.io.sequence.Sequence`.

    Parameters
    ----------
    path : str or Path
        The image file (8- or 16-bit grey; colour is converted to grey).
    mm_per_px : float or (float, float), optional
        Calibration given by the user (source ``user``); otherwise ``none``.

    Returns
    -------
    Sequence
        ``1 x H x W`` (uint8 or uint16), ``kind="still"``, no frame time.

    Raises
    ------
    dmx.errors.InputError
        The file is missing, cannot be decoded as an image, or claims absurd dimensions.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    data = np.fromfile(path, dtype=np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise InputError(path, "cannot be decoded as a PNG, JPEG or TIFF image")
    warnings = [STILL_WARNING.format(name=path.name)]
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 4:
            image = image[:, :, :3]
        if channels >= 3:
            colour = not (
                np.array_equal(image[:, :, 0], image[:, :, 1])
                and np.array_equal(image[:, :, 1], image[:, :, 2])
            )
            image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)
            if colour:
                warnings.append(f"{path.name} is a colour image: converted to grey")
        else:
            image = image[:, :, 0]
    if image.dtype not in (np.uint8, np.uint16):
        if image.dtype.kind == "f":
            image = image.astype(np.float32)
        else:
            raise InputError(path, f"unsupported pixel type {image.dtype} (8- or 16-bit grey expected)")
    rows, cols = image.shape
    if rows > MAX_ROWS_COLS or cols > MAX_ROWS_COLS:
        raise InputError(path, f"image of {rows} x {cols} pixels (limit {MAX_ROWS_COLS}): refused")
    if mm_per_px is None:
        warnings.append(f"{path.name}: no calibration (give --mm-per-px): mm values are null")
    cal = resolve_calibration(None, user_mm_per_px=mm_per_px)
    bits = 16 if image.dtype == np.uint16 else 8 if image.dtype == np.uint8 else None
    return Sequence(
        frames=np.ascontiguousarray(image)[None],
        mm_per_px=cal.mm_per_px,
        calibration_source=cal.source,
        frame_time_ms=None,
        study=StudyInfo(),
        paths=(path,),
        photometric_interpretation=None,
        transfer_syntax=None,
        bits_stored=bits,
        warnings=tuple(warnings),
        kind="still",
    )
