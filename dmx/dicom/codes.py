"""Coded concepts of the dmx DICOM results: standard codes where they exist, else dmx's own.

Standard concepts come from pydicom's code dictionary (SNOMED CT for anatomy and
qualifiers, DCM for the report structure, UCUM for units). What has no standard
code (intervertebral translation, segmental rotation range of motion, the dmx
flags and curve classes) uses the private coding scheme :data:`DMX_SCHEME`,
whose designator starts with ``99`` as PS3.16 section 8.2 asks for local schemes;
the table is in the README ("Hospital network") and in every SR's Coding
Scheme Identification Sequence.

This module imports only pydicom (not highdicom), so the table can be listed
without the ``dicom`` extra.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from dmx.anatomy import Flag

#: Designator of dmx's private coding scheme (PS3.16 8.2: local schemes start with "99").
DMX_SCHEME = "99DMX"
#: Name and version of that scheme, as written in the Coding Scheme Identification Sequence.
DMX_SCHEME_NAME = "dmx cervical motion measurements"
DMX_SCHEME_VERSION = "1"


def _dmx(value: str, meaning: str) -> Code:
    return Code(value, DMX_SCHEME, meaning)


# --- units (UCUM)
DEGREE = codes.UCUM.Degree
MILLIMETER = codes.UCUM.Millimeter
PERCENT = codes.UCUM.Percent

# --- standard concepts
COBB_ANGLE = codes.SCT.CobbAngle  # SCT 285285000
ATLANTOAXIAL_JOINT = codes.SCT.AtlantalAxialJoint  # SCT 62555009, finding site of the ADI
CERVICAL_SPINE = codes.SCT.CervicalSpine  # SCT 122494005
FLUOROSCOPY = codes.SCT.Fluoroscopy  # SCT 44491008, the procedure reported
STANDARD_DEVIATION = codes.SCT.StandardDeviation
PRESENT = codes.SCT.Present
ABSENT = codes.SCT.Absent
FINDING = codes.DCM.Finding
KEY_IMAGES = codes.DCM.KeyImages
DEVICE = codes.DCM.Device  # observer type of the report

# --- dmx concepts without a standard code
ROTATION_ROM = _dmx("ROT-ROM", "Segmental rotation range of motion (flexion to extension)")
ROTATION_RANGE = _dmx("ROT-RANGE", "Segmental rotation range over all frames")
TRANSLATION_MM = _dmx("TRANS", "Intervertebral translation (flexion to extension)")
TRANSLATION_PCT = _dmx("TRANS-PCT", "Intervertebral translation relative to vertebral depth")
OFFSET_RANGE = _dmx("OFFSET-RANGE", "Intervertebral offset range over all frames")
EXCURSION = _dmx("EXCURSION", "Intervertebral translation excursion from neutral")
ARA = _dmx("ARA", "Posterior tangent absolute rotation angle C2-C7")
CCI = _dmx("CCI", "Cervical curvature index (Ishihara)")
CURVE_CLASS = _dmx("CURVE-CLASS", "Cervical curve class")
KEY_FRAME = _dmx("KEY-FRAME", "Key frame of the motion")
ADI_MAX = _dmx("ADI-MAX", "Atlanto-dental interval, largest over the motion")
ALGORITHM_FAMILY = _dmx("DMX", "Cervical motion analysis from digital motion X-ray")

#: Curve classes (measurements.json ``curve.<key>.class`` and ``s_type``) as coded values.
CURVE_CLASSES: dict[str, Code] = {
    "lordotic": _dmx("CURVE-LORDOTIC", "Lordotic cervical curve"),
    "kyphotic": _dmx("CURVE-KYPHOTIC", "Kyphotic cervical curve"),
    "straight": _dmx("CURVE-STRAIGHT", "Straight cervical curve"),
    "s_curve/upper_kyphotic": _dmx("CURVE-S-UPPER", "S-shaped cervical curve, upper part kyphotic"),
    "s_curve/lower_kyphotic": _dmx("CURVE-S-LOWER", "S-shaped cervical curve, lower part kyphotic"),
    "s_curve": _dmx("CURVE-S", "S-shaped cervical curve"),
    "undetermined": _dmx("CURVE-UNDET", "Cervical curve class undetermined"),
}

#: Key frames (measurements.json ``frames.neutral`` ...) as coded values.
KEY_FRAMES: dict[str, Code] = {
    "neutral": _dmx("FRAME-NEUTRAL", "Neutral posture"),
    "flexion": codes.SCT.Flexion,
    "extension": codes.SCT.Extension,
}

#: The level flags (spec section 7) as coded concepts of qualitative evaluations.
FLAGS: dict[str, Code] = {
    Flag.TRANSLATION_GT_3_5MM.value: _dmx("FLAG-TRANS-MM", "Translation above threshold (AMA Guides)"),
    Flag.TRANSLATION_GT_20PCT.value: _dmx("FLAG-TRANS-PCT", "Translation above percent of depth threshold"),
    Flag.TRANSLATION_GT_2MM.value: _dmx("FLAG-EXCURSION", "Translation excursion above threshold"),
    Flag.ANGULATION_GT_11DEG_VS_ADJACENT.value: _dmx(
        "FLAG-ANGULATION", "Angulation above adjacent level by more than threshold"
    ),
    Flag.INSUFFICIENT_MOTION.value: _dmx("FLAG-INSUFF", "Insufficient segmental motion"),
}

#: The atlanto-dental interval flag (spec section 7), a qualitative evaluation of the ADI group.
ADI_FLAGS: dict[str, Code] = {
    Flag.ADI_GT_3MM.value: _dmx("FLAG-ADI", "Atlanto-dental interval above threshold"),
}

#: Finding site of each level: the intervertebral disc (SNOMED CT).
LEVEL_SITES: dict[str, Code] = {
    "C2-C3": codes.SCT.C2C3Disc,
    "C3-C4": codes.SCT.C3C4Disc,
    "C4-C5": codes.SCT.C4C5Disc,
    "C5-C6": codes.SCT.C5C6Disc,
    "C6-C7": codes.SCT.C6C7Disc,
    "C7-T1": codes.SCT.C7T1Disc,
}


def private_codes() -> list[Code]:
    """Every code of :data:`DMX_SCHEME` used by dmx, in a stable order (for the README table)."""
    out = [
        ROTATION_ROM,
        ROTATION_RANGE,
        TRANSLATION_MM,
        TRANSLATION_PCT,
        OFFSET_RANGE,
        EXCURSION,
        ARA,
        CCI,
        CURVE_CLASS,
        KEY_FRAME,
        ADI_MAX,
        ALGORITHM_FAMILY,
        *CURVE_CLASSES.values(),
        *(c for c in KEY_FRAMES.values() if c.scheme_designator == DMX_SCHEME),
        *FLAGS.values(),
        *ADI_FLAGS.values(),
    ]
    return out


def coding_scheme_table() -> str:
    """The private scheme as a Markdown table (code value | meaning)."""
    rows = ["| code value (`99DMX`) | meaning |", "|---|---|"]
    rows += [f"| `{c.value}` | {c.meaning} |" for c in private_codes()]
    return "\n".join(rows)
