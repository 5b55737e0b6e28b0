"""Key frames (neutral, flexion, extension) with their overlays as Secondary Capture images.

Each key frame is the full source frame in the report's display window, in
colour, with the corners, endplates, posterior tangents and the vertebra and
level labels burned in (as on the report's key frames), and one line of text
naming the key frame. Any viewer shows them next to the source series.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from dmx.anatomy import CalibrationSource
from dmx.dicom.source import KEY_IMAGES_SERIES_NUMBER, MANUFACTURER, SourceStudy, result_uid

KEY_IMAGES_SERIES_DESCRIPTION = "dmx key frames"

# colours (RGB)
_CORNER = (255, 210, 0)
_ENDPLATE = (0, 220, 255)
_TANGENT = (255, 80, 200)
_TEXT = (255, 255, 255)
_LEVEL = {"flagged": (255, 60, 60), "ok": (120, 230, 120), "insufficient": (200, 200, 200)}


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]) * 16)), int(round(float(p[1]) * 16))  # 4 fractional bits


def draw_key_frame(
    frame_u8: np.ndarray,
    corners_px: np.ndarray,
    *,
    vertebra_labels: list[str],
    level_states: list[tuple[str, int, int, str]],
    title: str,
) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB: ``frame_u8`` with the overlays of one key frame drawn over it.

    Parameters
    ----------
    frame_u8 : numpy.ndarray
        ``(H, W)`` uint8, display polarity.
    corners_px : numpy.ndarray
        ``(V, 4, 2)`` corners in CORNERS order, NaN where not tracked.
    vertebra_labels : list of str
        Names of the V vertebrae.
    level_states : list of (str, int, int, str)
        ``(level, upper index, lower index, state)``; state ``flagged``, ``ok`` or ``insufficient``.
    title : str
        The line written at the top left.
    """
    img = np.repeat(frame_u8[:, :, None], 3, axis=2).copy()
    h, w = frame_u8.shape
    scale = max(h, w) / 512
    thick = max(1, int(round(1.5 * scale)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = 0.45 * scale
    ok = np.all(np.isfinite(corners_px), axis=(1, 2))
    sh = 4  # shift: 4 fractional bits
    for v, good in enumerate(ok):
        if not good:
            continue
        c = corners_px[v]
        ext = (c[1] - c[2]) * 0.35
        cv2.line(img, _pt(c[1] + ext), _pt(c[2] - ext), _TANGENT, thick, cv2.LINE_AA, sh)
        for i, j in ((0, 1), (3, 2)):
            cv2.line(img, _pt(c[i]), _pt(c[j]), _ENDPLATE, thick, cv2.LINE_AA, sh)
        for p in c:
            cv2.circle(img, _pt(p), int(round(2.5 * scale * 16)), _CORNER, -1, cv2.LINE_AA, sh)
        centre = c.mean(axis=0)
        (tw, th), _ = cv2.getTextSize(vertebra_labels[v], font, fs, thick)
        org = (int(centre[0] - tw / 2), int(centre[1] + th / 2))
        cv2.putText(img, vertebra_labels[v], org, font, fs, _TEXT, thick, cv2.LINE_AA)
    for name, u, lo, state in level_states:
        if not (ok[u] and ok[lo]):
            continue
        cu, cl = corners_px[u], corners_px[lo]
        anterior, posterior = (cl[0] + cu[3]) / 2, (cl[1] + cu[2]) / 2
        d = anterior - posterior
        d = d / (float(np.hypot(*d)) or 1.0)
        pos = anterior + d * 8 * scale
        (tw, th), _ = cv2.getTextSize(name, font, fs, thick)
        x = pos[0] - tw if d[0] < 0 else pos[0]
        cv2.putText(img, name, (int(x), int(pos[1] + th / 2)), font, fs, _LEVEL[state], thick, cv2.LINE_AA)
    (tw, th), _ = cv2.getTextSize(title, font, fs * 1.2, thick)
    cv2.rectangle(img, (0, 0), (min(w - 1, tw + 12), th + 14), (0, 0, 0), -1)
    cv2.putText(img, title, (6, th + 7), font, fs * 1.2, _TEXT, thick, cv2.LINE_AA)
    return img


def _level_states(measurements: dict[str, Any], names: list[str]) -> list[tuple[str, int, int, str]]:
    out = []
    for level, e in (measurements.get("levels") or {}).items():
        u, lo = level.split("-")
        if u not in names or lo not in names:
            continue
        flags = set(e.get("flags") or [])
        state = "insufficient" if flags == {"insufficient_motion"} else "flagged" if flags else "ok"
        out.append((level, names.index(u), names.index(lo), state))
    return out


def _orientation(source: SourceStudy, measurements: dict[str, Any]) -> tuple[str, str]:
    po = source.first.get("PatientOrientation")
    if po is not None and len(po) == 2 and all(str(x) for x in po):
        return str(po[0]), str(po[1])
    facing = (measurements.get("facing") or {}).get("direction")
    return ("P" if facing == "left" else "A"), "F"  # lateral view: the face is towards ``facing``


def _pixel_spacing(sc: Any, calibration: dict[str, Any]) -> None:
    """The calibration dmx measured with, on the key image (same pixel grid as the source frame).

    A viewer's ruler on the key image then gives the mm of measurements.json, and
    Image Comments say where they came from (spec section 2); a magnification-
    corrected spacing (ERMF) is marked as a geometric calibration. Uncalibrated:
    no Pixel Spacing (a ruler must not invent mm).
    """
    spacing = calibration.get("mm_per_px")
    if not (isinstance(spacing, list) and len(spacing) == 2 and all(v and v > 0 for v in spacing)):
        return
    source = str(calibration.get("source") or "unknown")
    sc.PixelSpacing = [f"{float(v):.10g}" for v in spacing]
    if source == CalibrationSource.IMAGER_PIXEL_SPACING_ERMF:
        sc.PixelSpacingCalibrationType = "GEOMETRY"
        sc.PixelSpacingCalibrationDescription = "ImagerPixelSpacing / EstimatedRadiographicMagnification"
    sc.ImageComments = f"{sc.ImageComments}; pixel spacing: dmx calibration from {source}"


def build_key_images(analysis: Any, source: SourceStudy, *, measurements_text: str) -> dict[str, Any]:
    """One Secondary Capture image (highdicom ``SCImage``) per key frame, in the source study.

    Parameters
    ----------
    analysis : dmx.pipeline.Analysis
        The analysed study (frames, tracks, measurements).
    source : SourceStudy
        The source study's headers.
    measurements_text : str
        The measurements.json text (the UIDs derive from it).

    Returns
    -------
    dict
        ``{"neutral": SCImage, "flexion": ..., "extension": ...}`` for the key frames that exist.
    """
    from highdicom.sc import SCImage
    from pydicom.dataset import Dataset

    from dmx.report.images import display_window, to_uint8

    m = analysis.measurements
    frames = analysis.sequence.frames
    tracks = analysis.tracks
    names = [v.value for v in tracks.vertebrae]
    states = _level_states(m, names)
    window = display_window(frames)
    orientation = _orientation(source, m)
    series_uid = result_uid(measurements_text, "key images series")
    software = (m.get("software") or {}).get("version") or "unknown"
    out: dict[str, Any] = {}
    for number, key in enumerate(("neutral", "flexion", "extension"), start=1):
        i = (m.get("frames") or {}).get(key)
        if not isinstance(i, int) or not 0 <= i < frames.shape[0]:
            continue
        title = f"dmx {key}: frame {i + 1} of {frames.shape[0]}"
        rgb = draw_key_frame(
            to_uint8(frames[i], window),
            tracks.corners_px[i],
            vertebra_labels=names,
            level_states=states,
            title=title,
        )
        sc = SCImage.from_ref_dataset(
            ref_dataset=source.first,
            pixel_array=rgb,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            series_instance_uid=series_uid,
            series_number=KEY_IMAGES_SERIES_NUMBER,
            sop_instance_uid=result_uid(measurements_text, f"key image {key}"),
            instance_number=number,
            manufacturer=MANUFACTURER,
            patient_orientation=orientation,
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            series_description=KEY_IMAGES_SERIES_DESCRIPTION,
        )
        sc.SoftwareVersions = str(software)
        sc.ManufacturerModelName = "dmx"
        sc.BurnedInAnnotation = "YES"
        if "Laterality" not in sc:
            sc.Laterality = None  # type 2C (General Series): the cervical spine is not paired, empty
        sc.ImageType = ["DERIVED", "SECONDARY"]
        sc.DerivationDescription = f"dmx {key} key frame with landmarks and levels drawn over it"
        sc.ImageComments = title
        ref = source.frames[i]
        item = Dataset()
        item.ReferencedSOPClassUID = ref.sop_class_uid
        item.ReferencedSOPInstanceUID = ref.sop_instance_uid
        if ref.frame_number is not None:
            item.ReferencedFrameNumber = ref.frame_number
        sc.SourceImageSequence = [item]
        _pixel_spacing(sc, m.get("calibration") or {})
        out[key] = sc
    return out
