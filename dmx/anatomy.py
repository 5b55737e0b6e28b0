"""Names of the cervical anatomy dmx measures: vertebrae, corners, levels and coded values.

Every coded value in dmx is an :class:`enum.Enum` whose ``value`` is the exact
string used in files (``measurements.json``, landmark files), as defined in
``docs/measurements.md``.
"""

from __future__ import annotations

from enum import StrEnum


class Vertebra(StrEnum):
    """A vertebra of the cervical column (and T1), top to bottom."""

    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    C4 = "C4"
    C5 = "C5"
    C6 = "C6"
    C7 = "C7"
    T1 = "T1"

    @property
    def index(self) -> int:
        """Position from the top (C1 = 0)."""
        return list(Vertebra).index(self)


#: Vertebral bodies that carry four corners and are tracked, top to bottom.
BODIES: tuple[Vertebra, ...] = (
    Vertebra.C2,
    Vertebra.C3,
    Vertebra.C4,
    Vertebra.C5,
    Vertebra.C6,
    Vertebra.C7,
)

#: Bodies that may optionally be given (T1 is optional in the landmark file).
OPTIONAL_BODIES: tuple[Vertebra, ...] = (Vertebra.T1,)


class Corner(StrEnum):
    """A corner of a vertebral body on the lateral view (spec section 1)."""

    ANT_SUP = "ant_sup"
    POST_SUP = "post_sup"
    POST_INF = "post_inf"
    ANT_INF = "ant_inf"


#: Corner order used in every array of shape (..., 4, 2).
CORNERS: tuple[Corner, ...] = (Corner.ANT_SUP, Corner.POST_SUP, Corner.POST_INF, Corner.ANT_INF)


class Level(StrEnum):
    """A motion segment ``U-L`` (U above L)."""

    C2_C3 = "C2-C3"
    C3_C4 = "C3-C4"
    C4_C5 = "C4-C5"
    C5_C6 = "C5-C6"
    C6_C7 = "C6-C7"

    @property
    def upper(self) -> Vertebra:
        return Vertebra(self.value.split("-")[0])

    @property
    def lower(self) -> Vertebra:
        return Vertebra(self.value.split("-")[1])


LEVELS: tuple[Level, ...] = tuple(Level)

#: The per-level values over the motion in measurements.json (spec section 4, and ``excursion_mm``).
LEVEL_MOTION_VALUES: tuple[str, ...] = (
    "rotation_rom_deg",
    "rotation_range_deg",
    "translation_mm",
    "translation_pct",
    "offset_range_mm",
    "excursion_mm",
)


class UpperCervicalPoint(StrEnum):
    """Optional upper-cervical points giving the atlanto-dental interval."""

    C1_ARCH_POST = "C1.arch_post"
    C2_DENS_ANT = "C2.dens_ant"


class KeyFrame(StrEnum):
    NEUTRAL = "neutral"
    FLEXION = "flexion"
    EXTENSION = "extension"


class CurveClass(StrEnum):
    LORDOTIC = "lordotic"
    STRAIGHT = "straight"
    KYPHOTIC = "kyphotic"
    S_CURVE = "s_curve"
    UNDETERMINED = "undetermined"


class SType(StrEnum):
    UPPER_KYPHOTIC = "upper_kyphotic"
    LOWER_KYPHOTIC = "lower_kyphotic"


class CalibrationSource(StrEnum):
    """Where mm per pixel came from, in order of precedence (spec section 2)."""

    USER = "user"
    PIXEL_SPACING = "PixelSpacing"
    IMAGER_PIXEL_SPACING_ERMF = "ImagerPixelSpacing/ERMF"
    IMAGER_PIXEL_SPACING = "ImagerPixelSpacing"
    NONE = "none"


class LandmarkSource(StrEnum):
    """Where the reference-frame landmarks came from (``landmarks_source`` in measurements.json)."""

    FILE = "file"  # a landmark file: given with --landmarks, or a batch study's sidecar
    AUTO = "auto"  # found by the automatic detector, not yet reviewed


class Flag(StrEnum):
    """Instability flags (spec section 7)."""

    TRANSLATION_GT_3_5MM = "translation_gt_3_5mm"
    TRANSLATION_GT_20PCT = "translation_gt_20pct"
    TRANSLATION_GT_2MM = "translation_gt_2mm"
    ANGULATION_GT_11DEG_VS_ADJACENT = "angulation_gt_11deg_vs_adjacent"
    INSUFFICIENT_MOTION = "insufficient_motion"
    ADI_GT_3MM = "adi_gt_3mm"
