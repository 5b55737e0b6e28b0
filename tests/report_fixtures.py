"""A synthetic but realistic :class:`dmx.analysis.Analysis` for the report tests and benchmark.

Six bright quadrilateral "bodies" C2..C7 move through neutral -> flexion ->
neutral -> extension as a kinematic chain on a noisy background. The tracks are
the true corners (C7 is lost near the end), and ``measurements`` is a
``measurements.json`` document (spec section 8) computed from those corners with
the spec's formulas, so every number in the report agrees with the pictures.
C4-C5 is unstable (translation and angulation flags); C2-C3 barely moves
(``insufficient_motion``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dmx.analysis import Analysis
from dmx.anatomy import BODIES, CORNERS, LEVELS, CalibrationSource, Vertebra
from dmx.io.sequence import Sequence, StudyInfo
from dmx.landmarks import Landmarks
from dmx.tracking.types import Tracks

HOSTILE_NAME = '<script>alert(1)</script>"><img src=x onerror=alert(1)></script>'
HOSTILE_DESCRIPTION = '</script><script>alert("desc")</script>"><img src=x onerror=alert(2)>'

#: Segmental angle amplitude (deg) at full flexion/extension, per level C2-C3 .. C6-C7.
_ANGLE_AMPLITUDE_DEG = (1.4, 4.5, 11.0, 7.0, 5.0)
#: Anterior translation (mm) of the upper vertebra at full flexion, per level.
_TRANSLATION_MM = (0.2, 0.3, 1.0, 0.3, 0.2)
#: Neutral lordosis per level (deg).
_NEUTRAL_ANGLE_DEG = (2.0, 3.0, 3.0, 2.5, 2.0)

DEFAULT_THRESHOLDS: dict[str, dict[str, Any]] = {
    "translation_gt_3_5mm": {"value": 3.5, "source": "AMA Guides 5th ed. (AOMSI)", "origin": "default"},
    "translation_gt_20pct": {"value": 20.0, "source": "White & Panjabi", "origin": "default"},
    "translation_gt_2mm": {
        "value": 2.0,
        "source": "Freeman et al. 2020 (videofluoroscopy)",
        "origin": "default",
    },
    "angulation_gt_11deg_vs_adjacent": {
        "value": 11.0,
        "source": "AMA Guides 5th ed. (AOMSI)",
        "origin": "default",
    },
    "insufficient_motion": {"value": 5.0, "source": "Hipp et al. 2026", "origin": "default"},
    "adi_gt_3mm": {"value": 3.0, "source": "standard radiology", "origin": "default"},
}


def _rot(angle_deg: float, centre: np.ndarray) -> np.ndarray:
    """3x3 rotation by ``angle_deg`` (standard matrix in image coordinates) about ``centre``."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    t1 = np.eye(3)
    t1[:2, 2] = -centre
    t2 = np.eye(3)
    t2[:2, 2] = centre
    return t2 @ m @ t1


def _shift(dx: float, dy: float) -> np.ndarray:
    m = np.eye(3)
    m[0, 2], m[1, 2] = dx, dy
    return m


def _phase(n_frames: int) -> np.ndarray:
    """Motion phase in -1 (full flexion) .. +1 (full extension); 0 at frame 0."""
    u = np.linspace(0.0, 1.0, n_frames)
    return np.where(u < 0.5, -np.sin(np.pi * u / 0.5), np.sin(np.pi * (u - 0.5) / 0.5))


def _chain(n_frames: int, size_px: int, px_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """True corners (T, 6, 4, 2) and 3x3 chain transforms (T, 6, 3, 3) from a straight stack."""
    depth, height, disc = 16.0 / px_mm, 13.0 / px_mm, 5.0 / px_mm
    x0 = size_px * 0.5
    y_top = size_px * 0.5 - 3 * (height + disc)
    straight = np.zeros((6, 4, 2))
    for i in range(6):
        yt = y_top + i * (height + disc)
        # patient faces left: anterior is -x
        straight[i] = [
            [x0 - depth / 2, yt],
            [x0 + depth / 2, yt],
            [x0 + depth / 2, yt + height],
            [x0 - depth / 2, yt + height],
        ]
    phase = _phase(n_frames)
    mats = np.zeros((n_frames, 6, 3, 3))
    for t in range(n_frames):
        p = phase[t]
        # C7 itself tilts a little with the motion, about its centre
        mats[t, 5] = _rot(-3.0 * p if p < 0 else 2.0 * p, straight[5].mean(axis=0)) @ _shift(0, 0)
        for lvl in range(4, -1, -1):  # level lvl joins vertebra lvl (upper) on lvl+1 (lower)
            alpha = _NEUTRAL_ANGLE_DEG[lvl] + _ANGLE_AMPLITUDE_DEG[lvl] * p
            trans_px = -(_TRANSLATION_MM[lvl] * (-p)) / px_mm  # anterior (-x) in flexion (p < 0)
            centre = straight[lvl + 1, 1]  # posterior-superior corner of the lower body
            rel = _rot(alpha, centre) @ _shift(trans_px, 0.0)
            mats[t, lvl] = mats[t, lvl + 1] @ rel
    corners = np.einsum("tvij,vkj->tvki", mats[:, :, :2, :2], straight) + mats[:, :, None, :2, 2]
    return corners, mats


def _render(corners: np.ndarray, size_px: int, rng: np.random.Generator, dtype: str) -> np.ndarray:
    n = corners.shape[0]
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    background = 40 + 30 * np.exp(-(((xx - size_px * 0.55) / (size_px * 0.22)) ** 2))  # soft tissue
    frames = np.empty((n, size_px, size_px), np.float32)
    for t in range(n):
        img = background.copy()
        for v in range(corners.shape[1]):
            poly = np.round(corners[t, v] * 4).astype(np.int32)
            layer = np.zeros((size_px, size_px), np.float32)
            cv2.fillPoly(layer, [poly], 150.0, lineType=cv2.LINE_AA, shift=2)
            img += layer
        img = cv2.GaussianBlur(img, (0, 0), max(0.8, size_px / 400))
        img += rng.normal(0, 6, img.shape).astype(np.float32)
        frames[t] = img
    frames = np.clip(frames, 0, 255)
    if dtype == "uint16":
        return (frames * 16).astype(np.uint16)
    return frames.astype(np.uint8)


def _ang(p: np.ndarray, q: np.ndarray, h: float) -> np.ndarray:
    cross = p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]
    dot = (p * q).sum(axis=-1)
    return h * np.degrees(np.arctan2(cross, dot))


def _nulls(a: np.ndarray, digits: int = 3) -> list[float | None]:
    return [None if not np.isfinite(x) else round(float(x), digits) for x in a]


def _num(x: float | None, digits: int = 3) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def compute_measurements(
    corners_px: np.ndarray,
    quality: np.ndarray,
    *,
    mm_per_px: tuple[float, float] | None,
    source: str,
    time_ms: np.ndarray,
    warnings: list[str],
) -> dict[str, Any]:
    """A spec section 8 document from corner tracks (the spec's formulas, kept short)."""
    n = corners_px.shape[0]
    scale = np.array([mm_per_px[1], mm_per_px[0]]) if mm_per_px else np.array([1.0, 1.0])
    c = corners_px * scale  # mm (or px without calibration)
    sup = c[:, :, 0] - c[:, :, 1]
    inf = c[:, :, 3] - c[:, :, 2]
    pw = c[:, :, 1] - c[:, :, 2]
    h = 1.0
    depth = np.linalg.norm(sup, axis=-1)
    levels: dict[str, Any] = {}
    cobb = _ang(inf[:, 5], inf[:, 0], h)
    ara = _ang(pw[:, 5], pw[:, 0], h)
    neutral, flexion, extension = 0, int(np.nanargmin(cobb)), int(np.nanargmax(cobb))
    th = DEFAULT_THRESHOLDS
    roms = []
    for i, lvl in enumerate(LEVELS):
        u, lo = i, i + 1
        angle = _ang(sup[:, lo], inf[:, u], h)
        unit = sup[:, lo] / depth[:, lo, None]
        offset = ((c[:, u, 2] - c[:, lo, 1]) * unit).sum(axis=-1)
        pct = 100 * offset / depth[:, lo]
        rom = angle[extension] - angle[flexion]
        roms.append(rom)
        entry = {
            "angle_deg": _nulls(angle),
            "offset_mm": _nulls(offset) if mm_per_px else [None] * n,
            "offset_pct": _nulls(pct),
            "rotation_rom_deg": _num(rom),
            "rotation_range_deg": _num(np.nanmax(angle) - np.nanmin(angle)),
            "translation_mm": _num(offset[flexion] - offset[extension]) if mm_per_px else None,
            "translation_pct": _num(pct[flexion] - pct[extension]),
            "offset_range_mm": _num(np.nanmax(offset) - np.nanmin(offset)) if mm_per_px else None,
            "flags": [],
        }
        flags = entry["flags"]
        if mm_per_px:
            if (
                abs(entry["translation_mm"] or 0) > th["translation_gt_3_5mm"]["value"]
                or abs(entry["offset_range_mm"] or 0) > th["translation_gt_3_5mm"]["value"]
            ):
                flags.append("translation_gt_3_5mm")
            if np.nanmax(np.abs(offset - offset[neutral])) > th["translation_gt_2mm"]["value"]:
                flags.append("translation_gt_2mm")
        if entry["translation_pct"] is not None and abs(entry["translation_pct"]) > 20:
            flags.append("translation_gt_20pct")
        if entry["rotation_rom_deg"] is not None and abs(entry["rotation_rom_deg"]) < 5:
            flags.append("insufficient_motion")
        levels[lvl.value] = entry
    for i, lvl in enumerate(LEVELS):
        adjacent = [roms[j] for j in (i - 1, i + 1) if 0 <= j < len(roms)]
        if any(roms[i] - r > 11 for r in adjacent):
            levels[lvl.value]["flags"].append("angulation_gt_11deg_vs_adjacent")

    mean_depth = float(np.nanmean(depth[:, 1:5]))
    tau = 2.0 if mm_per_px else 0.125 * mean_depth

    def curve(f: int) -> dict[str, Any]:
        pts = c[f, :, 2]
        if not np.all(np.isfinite(pts)):
            return {
                "class": "undetermined",
                "s_type": None,
                "cobb_c2c7_deg": None,
                "ara_c2c7_deg": None,
                "cci": None,
                "d_mm": {v.value: None for v in BODIES[1:5]},
            }
        chord = pts[5] - pts[0]
        length = float(np.linalg.norm(chord))
        # anterior is -x here: cross(chord, p - p0) / |chord| is positive anterior of the chord
        d = [float(chord[0] * (p[1] - pts[0][1]) - chord[1] * (p[0] - pts[0][0])) / length for p in pts[1:5]]
        pos, neg = any(x > tau for x in d), any(x < -tau for x in d)
        cls = "s_curve" if pos and neg else "lordotic" if pos else "kyphotic" if neg else "straight"
        s_type = None
        if cls == "s_curve":
            s_type = "upper_kyphotic" if int(np.argmin(d)) < int(np.argmax(d)) else "lower_kyphotic"
        return {
            "class": cls,
            "s_type": s_type,
            "cobb_c2c7_deg": _num(cobb[f]),
            "ara_c2c7_deg": _num(ara[f]),
            "cci": _num(100 * sum(d) / length),
            "d_mm": {v.value: (_num(x) if mm_per_px else None) for v, x in zip(BODIES[1:5], d, strict=True)},
        }

    tracks: dict[str, Any] = {}
    qual: dict[str, Any] = {}
    for v, vert in enumerate(BODIES):
        tracks[vert.value] = {
            k.value: [
                None if not np.all(np.isfinite(p)) else [round(float(p[0]), 2), round(float(p[1]), 2)]
                for p in corners_px[:, v, j]
            ]
            for j, k in enumerate(CORNERS)
        }
        qual[vert.value] = _nulls(quality[:, v])
    flags_not_evaluated = [] if mm_per_px else ["translation_gt_3_5mm", "translation_gt_2mm", "adi_gt_3mm"]
    return {
        "schema": "dmx.measurements/1",
        "software": {"name": "dmx", "version": "0.1.0"},
        "input": {"paths": ["/data/in/study-0001/IM0001.dcm"], "sha256": "9f2c" + "ab" * 30},
        "study": {
            "patient_id": "PID-0042",
            "study_uid": "1.2.826.0.1.3680043.8.498.1",
            "series_uid": "1.2.826.0.1.3680043.8.498.2",
            "study_date": "20260315",
        },
        "calibration": {"mm_per_px": list(mm_per_px) if mm_per_px else None, "source": source},
        "frames": {
            "count": n,
            "reference": 0,
            "neutral": neutral,
            "flexion": flexion,
            "extension": extension,
            "time_ms": [round(float(x), 2) for x in time_ms],
        },
        "landmarks_source": "file",
        "tracks": tracks,
        "quality": qual,
        "levels": levels,
        "curve": {"neutral": curve(neutral), "flexion": curve(flexion), "extension": curve(extension)},
        "thresholds": DEFAULT_THRESHOLDS,
        "flags_not_evaluated": flags_not_evaluated,
        "warnings": list(warnings),
    }


def make_analysis(
    *,
    n_frames: int = 48,
    size_px: int = 320,
    calibrated: bool = True,
    hostile: bool = False,
    dtype: str = "uint8",
    lose_c7: bool = True,
    seed: int = 0,
) -> Analysis:
    """A synthetic study moving through flexion and extension, with tracks and measurements.

    Parameters
    ----------
    n_frames, size_px : int
        Number of frames and the side of the square frames in pixels.
    calibrated : bool
        With ``ImagerPixelSpacing`` calibration (and its warning), or none at all.
    hostile : bool
        Patient name and descriptions hold HTML and script.
    """
    rng = np.random.default_rng(seed)
    px_mm = 180.0 / size_px  # true mm per pixel: a 180 mm field of view
    corners, mats = _chain(n_frames, size_px, px_mm)
    frames = _render(corners, size_px, rng, dtype)
    vertebrae = tuple(BODIES)
    quality = np.clip(
        0.93 - 0.12 * np.abs(_phase(n_frames))[:, None] + rng.normal(0, 0.02, (n_frames, 6)), 0, 1
    )
    reason: list[list[str | None]] = [[None] * 6 for _ in range(n_frames)]
    tracked = corners.copy()
    # transforms from the reference (frame 0) pose to frame t
    ref_inv = np.linalg.inv(mats[0])
    rel = mats @ ref_inv[None]
    transforms = rel[:, :, :2, :].copy()
    if lose_c7:
        lost = range(int(n_frames * 0.88), n_frames)
        for t in lost:
            tracked[t, 5] = np.nan
            transforms[t, 5] = np.nan
            quality[t, 5] = 0.12
            reason[t][5] = "lost: shoulders cover the body"
    frame_time = np.full(n_frames, 1000.0 / 15)
    time_ms = np.concatenate([[0.0], np.cumsum(frame_time[:-1])])
    warnings: list[str] = []
    if calibrated:
        mm = (px_mm * 1.1, px_mm * 1.1)
        source = CalibrationSource.IMAGER_PIXEL_SPACING
        warnings.append(
            "calibration from ImagerPixelSpacing: mm measured at the detector, "
            "not corrected for magnification (values overstated by about 10%)"
        )
    else:
        mm = None
        source = CalibrationSource.NONE
        warnings.append("no calibration: mm values not available")
    if lose_c7:
        warnings.append("C7 lost in the last frames; flexion/extension found from the available frames")
    study = StudyInfo(
        patient_id="PID-0042",
        patient_name=HOSTILE_NAME if hostile else "DOE^JANE",
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.2",
        study_date="20260315",
        study_description=HOSTILE_DESCRIPTION if hostile else "DMX CERVICAL SPINE FLEX/EXT",
        series_description=HOSTILE_DESCRIPTION if hostile else "Lateral cine 15 fps",
        modality="XA",
        manufacturer="Synthetic & Sons <Imaging>",
        model="Phantom-1",
        institution="Example Spine Clinic",
    )
    sequence = Sequence(
        frames=frames,
        mm_per_px=mm,
        calibration_source=source,
        frame_time_ms=frame_time,
        study=study,
        paths=(Path("/data/in/study-0001/IM0001.dcm"),),
        photometric_interpretation="MONOCHROME2",
        transfer_syntax="1.2.840.10008.1.2.1",
        bits_stored=8 if dtype == "uint8" else 12,
        warnings=tuple(warnings),
    )
    landmarks = Landmarks(frame=0, corners_px={v: corners[0, i].copy() for i, v in enumerate(vertebrae)})
    tracks = Tracks(
        vertebrae=vertebrae,
        corners_px=tracked,
        quality=quality,
        reason=tuple(tuple(r) for r in reason),
        reference_frame=0,
        transforms=transforms,
    )
    measurements = compute_measurements(
        tracked,
        quality,
        mm_per_px=mm,
        source=source.value,
        time_ms=time_ms,
        warnings=warnings,
    )
    return Analysis(sequence=sequence, landmarks=landmarks, tracks=tracks, measurements=measurements)


__all__ = ["HOSTILE_DESCRIPTION", "HOSTILE_NAME", "Vertebra", "make_analysis"]
