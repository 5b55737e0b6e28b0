"""Coded choices of :func:`dmx.phantom.make_phantom`, as ``StrEnum`` s (the highdicom way).

The values are the strings written to ``truth.json`` ``params`` and taken by ``dmx phantom``;
:func:`make_phantom` accepts a member or its value.
"""

from __future__ import annotations

from enum import StrEnum


class Curve(StrEnum):
    """Neutral sagittal curve of the phantom's C2-C7 (spec section 5's classes, and the two S curves)."""

    LORDOTIC = "lordotic"
    STRAIGHT = "straight"
    KYPHOTIC = "kyphotic"
    S_UPPER_KYPHOTIC = "s_upper_kyphotic"
    S_LOWER_KYPHOTIC = "s_lower_kyphotic"


class Facing(StrEnum):
    """The side of the image the patient faces (anterior)."""

    RIGHT = "right"
    LEFT = "left"


class Photometric(StrEnum):
    """Photometric Interpretation (0028,0004) of the written frames."""

    MONOCHROME2 = "MONOCHROME2"
    MONOCHROME1 = "MONOCHROME1"


class Calibration(StrEnum):
    """Which calibration attributes the study carries (spec section 2)."""

    #: Pixel Spacing (0028,0030): the true spacing at the patient.
    PIXEL_SPACING = "PixelSpacing"
    #: Imager Pixel Spacing (0018,1164) at the detector with the Estimated Radiographic
    #: Magnification Factor (0018,1114).
    IMAGER_PIXEL_SPACING_ERMF = "ImagerPixelSpacing+ERMF"
    #: Imager Pixel Spacing only: mm overstated by the magnification.
    IMAGER_PIXEL_SPACING = "ImagerPixelSpacing"
    #: No calibration attribute.
    NONE = "none"


class TransferSyntax(StrEnum):
    """Encoding of the pixel data."""

    #: Explicit VR Little Endian, uncompressed.
    EXPLICIT = "explicit"
    #: RLE Lossless.
    RLE = "rle"
    #: JPEG Baseline (Process 1), 8-bit lossy.
    JPEG = "jpeg"


class FrameTiming(StrEnum):
    """Which cine attribute Frame Increment Pointer (0028,0009) names."""

    FRAME_TIME = "FrameTime"
    FRAME_TIME_VECTOR = "FrameTimeVector"
    #: Frame Time Vector, with Frame Time written next to it as many vendors do (dciodvfy reports that).
    BOTH = "both"
