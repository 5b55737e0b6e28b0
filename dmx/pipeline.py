"""The analysis pipeline: sequence -> landmarks -> tracks -> measurements -> files.

:func:`analyze` is the one function the command line (``dmx analyze``) and the
batch runner call; :func:`write_outputs` writes what it produced.

Landmarks come from a file (``--landmarks``; ``landmarks_source: "file"``) or, without
one, from the automatic detector :func:`dmx.detect.find_landmarks` on frame 0
(``landmarks_source: "auto"``): a vertebra it does not find is left out with its
reason, never guessed, and the levels it bounds are ``null``. The proposal is written
as ``landmarks.auto.json`` with a review page (``review.html``) to correct it and
re-run with ``--landmarks``; :func:`propose_landmarks` serves ``dmx landmarks``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dmx.analysis import (
    AUTO_LANDMARKS_NAME,
    LANDMARKS_CSV_NAME,
    LOW_CONFIDENCE,
    MEASUREMENTS_NAME,
    REPORT_NAME,
    REVIEW_NAME,
    Analysis,
    Detection,
)
from dmx.anatomy import BODIES, CORNERS, OPTIONAL_BODIES, LandmarkSource, UpperCervicalPoint, Vertebra
from dmx.errors import (
    DetectionFailedError,
    DetectionUnavailableError,
    LandmarkError,
    ModelFileError,
    ParameterError,
)
from dmx.files import write_text_atomic
from dmx.io.sequence import Sequence
from dmx.landmarks import Landmarks, write_landmarks
from dmx.measure.config import Thresholds
from dmx.tracking.types import Tracks

if TYPE_CHECKING:
    from dmx.tracking.workers import ForkedCall

MEASUREMENTS_SCHEMA = "dmx.measurements/1"
SMOOTHING_METHOD = "local quadratic (Savitzky-Golay), quality-weighted"
BODY_NAMES = frozenset(v.value for v in BODIES + OPTIONAL_BODIES)

_log = logging.getLogger(__name__)

#: The first warning of every study whose landmarks were found automatically.
AUTO_WARNING = (
    "landmarks found automatically: review them (review.html, or dmx landmarks STUDY --out L.json), "
    "then re-run dmx analyze STUDY --landmarks L.json"
)


def check_landmarks(landmarks: Landmarks, sequence: Sequence, *, path: str | Path) -> None:
    """Check that ``landmarks`` fit ``sequence``: reference frame exists, points inside the image.

    Raises
    ------
    LandmarkError
        Naming the landmark file and the problem.
    """
    if landmarks.frame >= sequence.n_frames:
        raise LandmarkError(
            path, f"reference frame {landmarks.frame} does not exist (the study has {sequence.n_frames})"
        )
    rows, cols = sequence.shape
    pts = {v.value: c for v, c in landmarks.corners_px.items()}
    pts.update({p.value: xy[None] for p, xy in landmarks.extra_px.items()})
    for name, xy in pts.items():
        x, y = np.asarray(xy)[:, 0], np.asarray(xy)[:, 1]
        if np.any(x < -0.5) or np.any(y < -0.5) or np.any(x > cols - 0.5) or np.any(y > rows - 0.5):
            raise LandmarkError(path, f"{name} lies outside the {cols}x{rows} image")


def _point_track(tracks: Tracks, vertebra: Vertebra, xy_ref: np.ndarray) -> np.ndarray | None:
    """Carry a point fixed to ``vertebra`` through the frames with its rigid transforms."""
    if tracks.transforms is None or vertebra not in tracks.vertebrae:
        return None
    a = tracks.transforms[:, tracks.vertebrae.index(vertebra)]  # (T, 2, 3)
    return a[:, :, :2] @ np.asarray(xy_ref, dtype=float) + a[:, :, 2]


def _adi_points(tracks: Tracks, landmarks: Landmarks) -> dict[str, np.ndarray] | None:
    """Per-frame C1.arch_post and C2.dens_ant, when both were given and both can be followed."""
    if not {UpperCervicalPoint.C1_ARCH_POST, UpperCervicalPoint.C2_DENS_ANT} <= landmarks.extra_px.keys():
        return None
    dens = _point_track(tracks, Vertebra.C2, landmarks.extra_px[UpperCervicalPoint.C2_DENS_ANT])
    arch = _point_track(tracks, Vertebra.C1, landmarks.extra_px[UpperCervicalPoint.C1_ARCH_POST])
    if dens is None or arch is None:
        return None
    return {UpperCervicalPoint.C1_ARCH_POST.value: arch, UpperCervicalPoint.C2_DENS_ANT.value: dens}


#: Frames of a cine the automatic detector may average (:func:`cine_mean`): 16 around the reference
#: frame, at least 8 followed. Under dense shoulders C7's cortical edges lie within one frame's quantum
#: noise; on the mean of 16 frames moved back with it they stand out (issue #12, session 17: on seven
#: development studies of the independent renderer with heavy shoulders, 60-frame cines, C7 found on
#: six, 2.1-3.5 px from its corners; on the mean of 8 frames on four, of 24 on six).
MEAN_FRAMES = 16
#: Fewest frames followed for a mean (:data:`MEAN_FRAMES`); a shorter cine gets no mean.
MIN_MEAN_FRAMES = 8


def cine_mean(frames: np.ndarray, frame: int):
    """The cine around ``frame`` as the detector reads it (:data:`dmx.detect.detector.MeanOf`), or None
    for fewer than :data:`MIN_MEAN_FRAMES` frames.

    Given corners on ``frame`` (the bodies found, and a start for the one looked for) and that body,
    the body and its neighbours among them are tracked over :data:`MEAN_FRAMES` frames around
    ``frame`` (:func:`dmx.tracking.track`, its first pass only), each frame where the body is followed
    is moved back with it, and their mean is returned with the frames in words; None when fewer than
    :data:`MIN_MEAN_FRAMES` are followed.
    """
    n = len(frames)
    if n < MIN_MEAN_FRAMES:
        return None
    first = int(np.clip(frame - MEAN_FRAMES // 2, 0, max(0, n - MEAN_FRAMES)))
    last = min(n, first + MEAN_FRAMES)

    def mean_of(corners: dict[Vertebra, np.ndarray], vertebra: Vertebra):
        from dmx.tracking import track
        from dmx.tracking.temporal import moved_mean, poses_of

        order = [v for v in BODIES if v in corners]
        i = order.index(vertebra)
        near = order[max(0, i - 1) : i + 2]
        tracks = track(
            frames[first:last],
            Landmarks(frame=frame - first, corners_px={v: np.asarray(corners[v], float) for v in near}),
            consistency_weights=False,
            still_layers=False,
            refit_unreliable=False,
            refit_fine=False,
            average_noisy=False,
        )
        poses = poses_of(tracks.transforms[:, tracks.vertebrae.index(vertebra)])
        h, w = frames.shape[1:3]
        total, used = moved_mean(frames[first:last], poses, np.eye(3), range(last - first), (0, 0, w, h))
        if used < MIN_MEAN_FRAMES:
            return None
        return (total / used).astype(np.float32), f"{used} frames ({first}-{last - 1})"

    return mean_of


#: Where no two adjacent bodies, or not all of C3-C6, are reported on a cine's first frame (and no reference
#: frame was asked for), up to this many other frames, spread evenly over the cine, are searched
#: (:func:`detect_on_sequence`): a mandible or shoulder lying over the column in one posture leaves it in
#: another (independent renderer, heavy shoulders, seeds 309 and 318: nothing on frame 0, C2-C7 on frames
#: 10-50; session 42: where frame 0 gives some bodies, all-family phantom cines 1270000+ C3-C6 55 -> 63 of
#: 80, reported beyond 3 px 12 -> 8, held out).
OTHER_FRAMES = 6
#: A frame reporting this many bodies ends the search of the others (each costs a detection).
OTHER_FRAMES_ENOUGH = 4
#: Warning of a cine whose bodies were found on a frame other than the first (:func:`detect_on_sequence`).
OTHER_FRAME_FOUND = (
    "the bodies were found on frame {frame}, which is the reference frame (on frame 0 {shortfall}; "
    "frames searched: {searched})"
)


#: The bodies whose absence on frame 0 sends the search to other frames of the cine (:func:`_other_frame`):
#: C3-C6, which every study has in view.
CORE_BODIES = BODIES[1:5]


def other_frames(n_frames: int) -> list[int]:
    """The frames searched after the first where it falls short (no two adjacent bodies, or not all of
    C3-C6: :func:`_other_frame`): :data:`OTHER_FRAMES` spread evenly over the cine (every other frame of a
    shorter one), in order."""
    if n_frames <= OTHER_FRAMES + 1:
        return list(range(1, n_frames))
    picks = np.round(np.linspace(0, n_frames - 1, OTHER_FRAMES + 2)[1:-1]).astype(int)
    return sorted({int(k) for k in picks} - {0})


def detect_on_sequence(
    sequence: Sequence,
    *,
    study_path: str | Path,
    frame: int | None = None,
    model_path: str | Path | None = None,
) -> Detection:
    """Find the corners of C2-C7 on ``sequence.frames[frame]`` with :func:`dmx.detect.find_landmarks`.

    The detector is looked up on the module at call time, so a replacement
    (a newer model, a test double) is used wherever it is installed.

    Parameters
    ----------
    sequence : Sequence
        The loaded study.
    study_path : path
        Named in error messages.
    frame : int, optional
        Reference frame to detect on. None (default): the first frame, and where it reports no two
        adjacent bodies, or not all of C3-C6 (:data:`CORE_BODIES`), up to :data:`OTHER_FRAMES` other
        frames of the cine (:func:`other_frames`), each as given only (frame 0's search of turned and
        inverted views is not repeated: it costs about six detections a frame); a frame reporting two
        adjacent bodies at least and more than frame 0 becomes the reference frame, with a warning
        (:data:`OTHER_FRAME_FOUND`). Which frame, and when the search stops: :func:`_other_frame`.
    model_path : path, optional
        Detector parameters (default :func:`dmx.detect.model_file`).

    Returns
    -------
    dmx.detect.Detection
        At least one body found; every vertebra not found has a reason.

    Raises
    ------
    DetectionUnavailableError
        When automatic detection is not available (not built, no model file, or one that
        cannot be used):
        the message tells the user to pass ``--landmarks``.
    DetectionFailedError
        When the detector found no vertebral body at all.
    """
    import dmx.detect

    def detect(k: int, views: bool = True) -> Detection:
        try:
            return dmx.detect.find_landmarks(
                sequence, frame=k, model_path=model_path, mean_of=cine_mean(sequence.frames, k), views=views
            )
        except (NotImplementedError, FileNotFoundError, ModelFileError) as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            unavailable = DetectionUnavailableError(study_path, why)
            unavailable.sequence = sequence
            raise unavailable from None

    detection = detect(0 if frame is None else frame)
    if frame is None and sequence.n_frames > 1:
        detection = _other_frame(detection, detect, sequence.n_frames)
    if not detection.landmarks.corners_px:
        failed = DetectionFailedError(
            study_path,
            f"{detection_shortfall(detection)}; place the landmarks by hand and pass --landmarks L.json",
        )
        failed.sequence, failed.detection = sequence, detection
        raise failed
    check_landmarks(detection.landmarks, sequence, path=f"{study_path} (automatic landmarks)")
    return detection


def _core(detection: Detection) -> int:
    """How many of C3-C6 ``detection`` reports."""
    return sum(v in detection.landmarks.corners_px for v in CORE_BODIES)


def _other_frame(detection: Detection, detect: Callable[..., Detection], n_frames: int) -> Detection:
    """``detection`` (frame 0's), or where it falls short another frame's (:func:`detect_on_sequence`).

    Frame 0 short of two adjacent bodies: the other frames (:func:`other_frames`) reporting two adjacent
    bodies at least, the one with the most bodies, the search ending at :data:`OTHER_FRAMES_ENOUGH`; none,
    frame 0's with the frames searched. Frame 0 with two adjacent bodies but not all of C3-C6: a frame
    reporting two adjacent bodies and more of C3-C6 (then more bodies), the search ending where all four
    are found. ``detect(k, views=False)`` detects on frame k as given.
    """
    some = bool(adjacent_pairs(detection.landmarks))
    if some and _core(detection) == len(CORE_BODIES):
        return detection

    def rank(d: Detection) -> tuple[int, ...]:
        total = len(d.landmarks.corners_px)
        return (_core(d), total) if some else (total,)

    def enough(d: Detection) -> bool:
        return _core(d) == len(CORE_BODIES) if some else len(d.landmarks.corners_px) >= OTHER_FRAMES_ENOUGH

    best, searched = (detection if some else None), []
    _log.info(
        "%s on frame 0: searching other frames of the cine",
        "not all of C3-C6 found" if some else "no two adjacent bodies found",
    )
    for k in other_frames(n_frames):
        found = detect(k, views=False)  # other views searched on frame 0; a column across it still refused
        searched.append(k)
        if adjacent_pairs(found.landmarks) and (best is None or rank(found) > rank(best)):
            best = found
            if enough(found):
                break
    if best is None:
        return dataclasses.replace(detection, frames_searched=tuple(searched))
    if best is detection:
        return detection
    if some:
        shortfall = f"found {', '.join(v.value for v in detection.landmarks.vertebrae)}, not all of C3-C6"
    else:
        shortfall = detection_shortfall(detection).removeprefix("automatic landmark detection ")
    said = OTHER_FRAME_FOUND.format(
        frame=best.landmarks.frame, shortfall=shortfall, searched=", ".join(map(str, searched))
    )
    return dataclasses.replace(best, warnings=(said, *best.warnings))


def detection_shortfall(detection: Detection) -> str:
    """What automatic detection fell short of, in words: no body at all, or no two adjacent ones.

    When bodies were found but all left out, why is said (from ``detection.missing``): that their levels
    are uncertain (:data:`dmx.detect.detector.LEVELS_DISPUTED`) first, else the reason most of them were
    left out for (the two detectors facing opposite ways, ...). The other frames of the cine searched too
    (``detection.frames_searched``) are named at the end.
    """
    searched = detection.frames_searched
    also = (
        f" (on frame {detection.landmarks.frame}; frames {', '.join(map(str, searched))} of the cine "
        "searched too)"
        if searched
        else ""
    )
    return _shortfall(detection.landmarks, detection.missing) + also


def _shortfall(landmarks: Landmarks, missing: Mapping[Any, str]) -> str:
    """:func:`detection_shortfall` on one frame."""
    if not landmarks.corners_px:
        from collections import Counter

        from dmx.detect.detector import LEVEL_UNCERTAIN

        left = [r.removeprefix("left out: ") for r in missing.values() if r.startswith("left out: ")]
        disputed = [r for r in left if r.startswith(LEVEL_UNCERTAIN)]
        if disputed:  # "its level is uncertain: the learned network places ..."
            return f"automatic landmark detection reported no vertebral body: {disputed[0]}"
        if left:  # bodies were found, none reported: not "found no body"
            why = Counter(left).most_common(1)[0][0]
            return f"automatic landmark detection reported no vertebral body ({len(left)} left out): {why}"
        return "automatic landmark detection found no vertebral body"
    found = ", ".join(v.value for v in landmarks.vertebrae)
    return f"automatic landmark detection found no two adjacent vertebral bodies (found only {found})"


def write_manual_review(
    sequence: Sequence,
    path: str | Path,
    *,
    detection: Any = None,
    frame: int = 0,
    why: str = "automatic detection found no body",
) -> Path:
    """The review page for a study whose automatic detection found too little (or could not run).

    It shows the bodies that were found (``detection``, when there is one) and lists every other
    body of C2-C7 with ``why``, each with a way to place it from scratch (click its four corners in
    a guided order, or drop an outline and adjust it), then "Download corrected landmarks". No
    landmark file is written: nothing here pretends there are landmarks.
    """
    from dmx.report.review import write_review

    if detection is not None:
        summary = detection_summary(detection)
        return write_review(
            sequence, detection.landmarks, path, missing=summary["missing"], warnings=summary["warnings"]
        )
    nothing = Landmarks(frame=frame, corners_px={})
    return write_review(sequence, nothing, path, missing={v.value: why for v in BODIES})


def adjacent_pairs(landmarks: Landmarks) -> list[tuple[Vertebra, Vertebra]]:
    """Pairs of vertically adjacent bodies present in ``landmarks`` (C2-C3 ... C7-T1)."""
    order = BODIES + OPTIONAL_BODIES
    return [
        (u, lo) for u, lo in zip(order, order[1:], strict=False) if {u, lo} <= landmarks.corners_px.keys()
    ]


def detection_summary(detection: Detection) -> dict[str, Any]:
    """The ``landmarks_detection`` block of measurements.json.

    ``{"frame": r, "confidence": {"C3": 0.91, ...}, "missing": {"C7": "reason", ...},
    "warnings": [...]}``: confidence in 0..1 for each body found (``null`` where the
    detector gave none), and the reason for each of C2-C7 it did not find.
    """
    lm = detection.landmarks
    confidence: dict[str, float | None] = {}
    for v in lm.vertebrae:
        c = lm.confidence.get(v)
        confidence[v.value] = None if c is None or not np.isfinite(c) else round(float(c), 4)
    bodies = BODIES + OPTIONAL_BODIES
    missing = {
        Vertebra(v).value: " ".join(str(r).split()) or "not found"
        for v, r in sorted(detection.missing.items(), key=lambda kv: Vertebra(kv[0]).index)
        if Vertebra(v) in bodies and Vertebra(v) not in lm.corners_px
    }
    for v in BODIES:  # a body neither found nor explained is still reported as missing
        if v not in lm.corners_px and v.value not in missing:
            missing[v.value] = "not found"
    return {
        "frame": int(lm.frame),
        "confidence": confidence,
        "missing": missing,
        "warnings": [str(w) for w in detection.warnings],
    }


def detection_warnings(summary: dict[str, Any]) -> list[str]:
    """Warnings for measurements.json: review the landmarks, and what was not found."""
    out = [AUTO_WARNING]
    for name, why in summary["missing"].items():
        out.append(f"{name} not found automatically ({why}): the levels it bounds are not measured")
    out += [f"landmark detection: {w}" for w in summary["warnings"]]
    return out


def propose_landmarks(
    study_path: str | Path,
    *,
    series: str | None = None,
    mm_per_px: float | None = None,
    frame: int | None = None,
    model_path: str | Path | None = None,
) -> tuple[Sequence, Detection]:
    """Load a study and find its landmarks automatically, for review (``dmx landmarks``).

    Unlike :func:`analyze`, this does not need two adjacent bodies: whatever was
    found is proposed, to be corrected by hand.

    Returns
    -------
    (Sequence, dmx.detect.Detection)

    Raises
    ------
    dmx.errors.DmxError
        Unusable input, a frame outside the study, detection not available, or no body found.
    """
    from dmx.io.load import load_sequence

    sequence = load_sequence(study_path, series=series, mm_per_px=mm_per_px)
    if frame is not None and not 0 <= frame < sequence.n_frames:
        raise ParameterError("frame", f"{frame} is outside 0..{sequence.n_frames - 1}")
    return sequence, detect_on_sequence(sequence, study_path=study_path, frame=frame, model_path=model_path)


def format_detection(summary: dict[str, Any]) -> str:
    """One line per vertebra C2-C7 (and T1 when found): found with its confidence, or missing and why."""
    lines = []
    for v in BODIES + OPTIONAL_BODIES:
        name = v.value
        if name in summary["confidence"]:
            c = summary["confidence"][name]
            conf = "confidence —" if c is None else f"confidence {c:.2f}"
            low = c is not None and c < LOW_CONFIDENCE
            lines.append(f"{name}  found    {conf}{'  (low: check it)' if low else ''}")
        elif name in summary["missing"]:
            lines.append(f"{name}  missing  {summary['missing'][name]}")
    return "\n".join(lines)


def build_measurements(
    sequence: Sequence,
    landmarks: Landmarks,
    tracks: Tracks,
    measured: dict[str, Any],
    *,
    detection: Detection | None = None,
    smooth_frames: int = 0,
    input_sha256: str | None = None,
) -> dict[str, Any]:
    """Assemble the measurements.json document (spec section 8) from its parts.

    ``smooth_frames`` is the window of the temporal smoothing the tracks went through
    (:func:`dmx.tracking.smooth_tracks`; 0 for raw tracks), recorded under ``tracking``.

    ``detection`` (automatic landmarks only; None: from a file) sets ``landmarks_source``;
    its summary (:func:`detection_summary`) is recorded as ``landmarks_detection`` and its
    warnings lead the warnings.

    ``input_sha256``, when already computed (:func:`dmx.io.checksum.sha256_files` of
    ``sequence.paths``), is used as is instead of reading the input again.
    """
    from dmx import __version__
    from dmx.io.checksum import sha256_files
    from dmx.measure import quality_json, tracks_json

    summary = None if detection is None else detection_summary(detection)
    source = LandmarkSource.FILE if detection is None else LandmarkSource.AUTO
    # C1 may be followed (for the atlanto-dental interval) but has no body corners.
    trk = {k: v for k, v in tracks_json(tracks).items() if k in BODY_NAMES}
    qual = {k: v for k, v in quality_json(tracks).items() if k in BODY_NAMES}
    time_ms = sequence.time_ms
    s = sequence.study
    frames = {
        "count": sequence.n_frames,
        "reference": int(landmarks.frame),
        **measured.get("frames", {}),
        "time_ms": None if time_ms is None else [float(t) for t in time_ms],
    }
    lost = {
        v.value: sorted({r for r in (row[i] for row in tracks.reason) if r})
        for i, v in enumerate(tracks.vertebrae)
        if any(row[i] for row in tracks.reason)
    }
    doc: dict[str, Any] = {
        "schema": MEASUREMENTS_SCHEMA,
        "software": {"name": "dmx", "version": __version__},
        "input": {
            "paths": [str(p) for p in sequence.paths],
            "sha256": (input_sha256 or sha256_files(sequence.paths)) if sequence.paths else None,
        },
        "study": {
            "patient_id": s.patient_id,
            "patient_name": s.patient_name,
            "study_uid": s.study_uid,
            "series_uid": s.series_uid,
            "study_date": s.study_date,
            "modality": s.modality,
            "manufacturer": s.manufacturer,
            "study_description": s.study_description,
            "series_description": s.series_description,
        },
        "calibration": {
            "mm_per_px": None if sequence.mm_per_px is None else [float(x) for x in sequence.mm_per_px],
            "source": sequence.calibration_source.value,
        },
        "frames": frames,
        "landmarks_source": source.value,
        **({"landmarks_detection": summary} if summary is not None else {}),
        "tracks": trk,
        "quality": qual,
        "tracking_lost": lost,
        "tracking": {
            "smoothing": SMOOTHING_METHOD if smooth_frames else None,
            "window_frames": int(smooth_frames),
            "body_window_frames": {v.value: int(w) for v, w in tracks.smoothing_windows},
            "grid_lines": tracks.grid_lines,
        },
    }
    for key, value in measured.items():
        if key not in ("frames", "warnings"):
            doc[key] = value
    auto = detection_warnings(summary) if summary is not None else []
    doc["warnings"] = auto + list(sequence.warnings) + list(measured.get("warnings", []))
    return doc


def analyze(
    study_path: str | Path,
    *,
    landmarks_path: str | Path | None = None,
    series: str | None = None,
    mm_per_px: float | None = None,
    neutral_frame: int | None = None,
    thresholds: Thresholds | None = None,
    model_path: str | Path | None = None,
    smooth_frames: int | None = None,
    normative: Any = None,
    threads: int = 1,
    processes: int = 1,
    encode_cine: bool = False,
) -> Analysis:
    """Load, find or read the landmarks, track and measure one study.

    Parameters
    ----------
    study_path : path
        A DICOM file, a folder of frames, a DICOMDIR or a video.
    landmarks_path : path, optional
        Landmark file (``dmx.landmarks/1``) for the reference frame. Without it the
        corners of C2-C7 are found automatically on frame 0 (:func:`detect_on_sequence`);
        ``landmarks_source`` is then ``"auto"``, the per-vertebra confidence and the
        vertebrae not found are recorded as ``landmarks_detection``, and the levels
        next to a vertebra not found are ``null`` (never guessed).
    series : str, optional
        Series Instance UID to choose in a folder holding several.
    mm_per_px : float, optional
        User calibration, overriding every DICOM value.
    neutral_frame : int, optional
        Frame to use as neutral instead of the first.
    thresholds : dmx.measure.config.Thresholds, optional
        Flag thresholds (defaults per spec section 7).
    model_path : path, optional
        Detector parameters for automatic landmarks (default :func:`dmx.detect.model_file`).
    smooth_frames : int, optional
        Window (odd, >= 5) of the temporal smoothing of the tracks before measuring
        (:func:`dmx.tracking.smooth_tracks`, default :data:`dmx.tracking.smoothing.WINDOW_FRAMES`);
        0 measures the raw tracks.
    normative : dmx.normative.NormativeTable, optional
        Reference table for each level's ``normative`` block (default: the packaged
        table, :func:`dmx.normative.default_normative`).
    threads : int
        Threads registering the bodies of a frame in parallel (the tracks are identical whatever
        the number). They share the GIL, so they barely shorten the wall time: ``processes`` does.
    processes : int
        Processes registering the bodies of a frame: this one and ``processes - 1`` workers forked
        for the tracking, which share its decoded frames (``track(processes=...)``; the tracks are
        identical whatever the number). ``dmx analyze`` uses :func:`dmx.threads.default_threads`,
        ``dmx batch`` (one process per study) keeps 1.
    encode_cine : bool
        With ``processes`` > 1, where processes can be forked: encode the report's cine frames
        (:func:`dmx.report.images.encode_study_cine`, which do not depend on the tracks) in a process
        forked once the frames are tracked, while this one smooths and measures the tracks; they are
        ``Analysis.report_cine``, which :func:`write_outputs` uses (the report is the same). Call
        :func:`write_outputs` (or ``report_cine()``) then, or the forked process waits until this one
        ends.

    Raises
    ------
    dmx.errors.DmxError
        For unusable input; the message names the file and the problem. Automatic
        detection that is not available, or that finds no two adjacent bodies, is
        one such error (pass ``--landmarks``).
    """
    from dmx.io.load import load_sequence
    from dmx.landmarks import read_landmarks
    from dmx.measure import measure
    from dmx.normative import add_normative
    from dmx.tracking import smooth_tracks, track
    from dmx.tracking.smoothing import WINDOW_FRAMES, valid_window

    smooth = WINDOW_FRAMES if smooth_frames is None else int(smooth_frames)
    if not valid_window(smooth):
        raise ParameterError("smooth_frames", f"must be 0 or an odd number >= 5, got {smooth}")
    detection = None
    if landmarks_path is not None:
        landmarks = read_landmarks(landmarks_path)
    sequence = load_sequence(study_path, series=series, mm_per_px=mm_per_px)
    if landmarks_path is not None:
        check_landmarks(landmarks, sequence, path=landmarks_path)
    else:
        detection = detect_on_sequence(sequence, study_path=study_path, model_path=model_path)
        landmarks = detection.landmarks
        if not adjacent_pairs(landmarks):
            failed = DetectionFailedError(
                study_path,
                f"{detection_shortfall(detection)}; "
                "correct them (dmx landmarks STUDY --out L.json) and pass --landmarks L.json",
            )
            failed.sequence, failed.detection = sequence, detection
            raise failed
    if neutral_frame is not None and not 0 <= neutral_frame < sequence.n_frames:
        raise ParameterError("neutral_frame", f"{neutral_frame} is outside 0..{sequence.n_frames - 1}")
    from concurrent.futures import ThreadPoolExecutor

    from dmx.io.checksum import sha256_files

    # the input's checksum is read while the frames are tracked (hashlib releases the GIL)
    cine = None
    try:
        with ThreadPoolExecutor(max_workers=1) as background:
            checksum = background.submit(sha256_files, sequence.paths) if sequence.paths else None
            raw = track(
                sequence.frames,
                landmarks,
                threads=max(1, int(threads)),
                processes=max(1, int(processes)),
            )
            cine = _start_cine(sequence) if encode_cine and processes > 1 else None
            tracks = smooth_tracks(raw, window_frames=smooth)
            input_sha256 = checksum.result() if checksum is not None else None
        measured = measure(
            tracks,
            mm_per_px=sequence.mm_per_px,
            neutral_frame=neutral_frame,
            thresholds=thresholds,
            adi_points_px=_adi_points(tracks, landmarks),
        )
        doc = build_measurements(
            sequence,
            landmarks,
            tracks,
            measured,
            detection=detection,
            smooth_frames=smooth,
            input_sha256=input_sha256,
        )
        add_normative(doc, normative)
    except BaseException:
        if cine is not None:
            cine.join()  # its result is not wanted: the forked process ends
        raise
    return Analysis(
        sequence=sequence,
        landmarks=landmarks,
        tracks=tracks,
        measurements=doc,
        detection=detection,
        report_cine=None if cine is None else cine.result,
    )


def _start_cine(sequence: Sequence) -> ForkedCall | None:
    """The report's cine frames of ``sequence`` being encoded in a forked process (None where processes
    cannot be forked, or the study has no cine)."""
    from dmx.report.images import encode_study_cine
    from dmx.tracking.workers import ForkedCall, can_fork

    if sequence.kind == "static" or sequence.n_frames < 2 or not can_fork():
        return None
    return ForkedCall(partial(encode_study_cine, sequence.frames))


def landmarks_csv(tracks: Tracks) -> str:
    """Long-form corner table: frame, vertebra, corner, x_px, y_px, quality (empty where lost)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", "vertebra", "corner", "x_px", "y_px", "quality"])
    for t in range(tracks.n_frames):
        for v_idx, v in enumerate(tracks.vertebrae):
            if v not in tracks.bodies:  # C1: followed for the ADI, has no corners
                continue
            q = tracks.quality[t, v_idx]
            qs = f"{q:.4f}" if np.isfinite(q) else ""
            for k, corner in enumerate(CORNERS):
                x, y = tracks.corners_px[t, v_idx, k]
                if np.isfinite(x) and np.isfinite(y):
                    w.writerow([t, v.value, corner.value, f"{x:.3f}", f"{y:.3f}", qs])
                else:
                    w.writerow([t, v.value, corner.value, "", "", qs])
    return buf.getvalue()


def measurements_text(doc: dict[str, Any]) -> str:
    """measurements.json text: strict JSON (no NaN), stable key order."""
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def write_outputs(
    analysis: Analysis,
    out_dir: str | Path,
    *,
    report: bool = True,
    pdf: bool = False,
    dicom: bool = False,
    processes: int = 1,
) -> dict[str, Path]:
    """Write ``measurements.json``, ``landmarks.csv`` and ``report.html`` into ``out_dir``.

    When the landmarks were found automatically (``landmarks_source == "auto"``) also
    ``landmarks.auto.json`` (the proposed corners, ``dmx.landmarks/1`` with the
    confidence map: correct it and pass it back with ``--landmarks``) and, with the
    report, ``review.html`` (the page to correct them by dragging).

    With ``dicom`` also the DICOM results under ``out_dir/dicom/`` (:func:`dmx.dicom.write_dicom_outputs`:
    SR, key-frame images, and the PDF report as Encapsulated PDF when ``pdf`` wrote one), written
    after everything else so that a DICOM problem loses none of the other files.

    With ``processes`` > 1 the report is written by a process forked for it
    (:class:`dmx.tracking.workers.ForkedCall`, sharing the frames) while this one writes the
    other files; the files are the same (should that process fail, the report is written here).

    Each file is written atomically. Returns the paths written by name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    static = analysis.sequence.kind == "static"  # views side by side (key frames), no cine
    report_options: dict[str, Any] = {"pdf": pdf, **({"cine": False} if static else {})}
    background = None
    if report and not static and analysis.report_cine is not None:
        # encoded while the study was measured (analyze(..., encode_cine=True)): here before the report
        # process is forked, so that it has them
        report_options["encoded_cine"] = analysis.report_cine()
    if report and processes > 1:
        from dmx.report import write_report
        from dmx.tracking.workers import ForkedCall

        background = ForkedCall(partial(write_report, analysis, out / REPORT_NAME, **report_options))
    try:
        text = measurements_text(analysis.measurements)
        write_text_atomic(out / MEASUREMENTS_NAME, text)
        written["measurements"] = out / MEASUREMENTS_NAME
        write_text_atomic(out / LANDMARKS_CSV_NAME, landmarks_csv(analysis.tracks))
        written["landmarks"] = out / LANDMARKS_CSV_NAME
        auto = analysis.landmarks_source == LandmarkSource.AUTO
        if auto:
            write_landmarks(analysis.landmarks, out / AUTO_LANDMARKS_NAME)
            written["landmarks_auto"] = out / AUTO_LANDMARKS_NAME
        if report:
            from dmx.report import write_report

            if auto:
                from dmx.report.review import write_review

                det = analysis.measurements.get("landmarks_detection") or {}
                write_review(
                    analysis.sequence,
                    analysis.landmarks,
                    out / REVIEW_NAME,
                    missing=det.get("missing") or {},
                    warnings=det.get("warnings") or [],
                )
                written["review"] = out / REVIEW_NAME
            if background is not None:
                background.result()
            else:
                write_report(analysis, out / REPORT_NAME, **report_options)
            written["report"] = out / REPORT_NAME
            if pdf and (out / "report.pdf").exists():
                written["pdf"] = out / "report.pdf"
    except BaseException:
        if background is not None:
            background.join()  # the report being written is finished, not cut off
        raise
    if dicom:
        from dmx.dicom import DICOM_DIR, write_dicom_outputs

        dcm = write_dicom_outputs(
            analysis, out / DICOM_DIR, measurements_text=text, pdf_path=written.get("pdf")
        )
        written.update({f"dicom_{k}": v for k, v in dcm.items()})
    return written


def write_comparison(
    baseline: str | Path,
    followup: str | Path,
    out_dir: str | Path,
    *,
    force: bool = False,
    mdc_path: str | Path | None = None,
    html: bool = True,
    images: bool = True,
) -> dict[str, Path]:
    """Read two studies, compare them (:func:`dmx.compare.compare`) and write the comparison.

    ``comparison.json`` (and ``comparison.html``) go to ``out_dir``.

    Returns the paths written by name (``"json"``, ``"html"``). Each file is written atomically;
    nothing is written when the comparison is refused. With ``images`` the page shows each
    study's key frames re-read from its input files (when still there and unchanged).
    """
    from dmx.compare import compare, comparison_text, load_mdc, read_study

    b, f = read_study(baseline), read_study(followup)
    doc = compare(b, f, force=force, mdc_table=load_mdc(mdc_path))
    out = Path(out_dir)
    written = {"json": out / "comparison.json"}
    write_text_atomic(written["json"], comparison_text(doc))
    if html:
        from dmx.report.comparison import write_comparison_html

        docs = {str(s.path): s.doc for s in (b, f)}
        written["html"] = write_comparison_html(
            doc,
            docs[doc["baseline"]["path"]],
            docs[doc["followup"]["path"]],
            out / "comparison.html",
            images=images,
        )
    return written
