"""Analysis of a static flexion/extension study (separate views, not a cine): :func:`analyze_static`.

The views are loaded by :func:`dmx.io.static.load_static` (neutral = frame 0, flexion = 1,
extension = 2; a view not given is skipped). The corners come from a landmark file on one
view (``"frame"``: that view's frame number), registered on the others
(:func:`dmx.tracking.views.static_tracks`); from a landmark file with corners on several views
(``"frames"`` keyed by posture, file name or frame number; the views it covers are not
registered); or, without a file, from automatic detection on every view. The measurements
are the spec's, with the key frames being the views: ``neutral`` the neutral view (frame 0;
without one, the first view), ``flexion`` and ``extension`` the views labelled so
(``frames.key_frame_basis`` ``"views"``); ranges are over the views. Each view is measured
with its own calibration: its corners are scaled to frame 0's pixel size before measuring
(the ``tracks`` written stay in each view's own pixels).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dmx.anatomy import Vertebra
from dmx.errors import InputError, LandmarkError, UsageError
from dmx.io.static import POSTURES, Posture, StaticStudy, load_static, order_by_curve
from dmx.landmarks import Landmarks, parse_landmarks, read_landmark_json
from dmx.tracking.types import Tracks

if TYPE_CHECKING:
    from dmx.pipeline import Analysis

#: ``tracking.method`` of a static study.
REGISTRATION_METHOD = (
    "static views: per-body search over rotation and scale (normalised cross-correlation), "
    "anatomical chain, rigid Lucas-Kanade refinement"
)


def _check_inside(lm: Landmarks, shape: tuple[int, int], *, path: str | Path, view: str) -> None:
    rows, cols = shape
    for v, c in lm.corners_px.items():
        x, y = np.asarray(c)[:, 0], np.asarray(c)[:, 1]
        if np.any(x < -0.5) or np.any(y < -0.5) or np.any(x > cols - 0.5) or np.any(y > rows - 0.5):
            raise LandmarkError(path, f"{v.value} lies outside the {cols}x{rows} image of the {view} view")


def _view_index(key: str, study: StaticStudy, *, path: str | Path) -> int:
    """Frame of the view a ``"frames"`` key names: a posture, a file name, or a frame number."""
    for i, v in enumerate(study.views):
        if v.posture is not None and key == v.posture.value:
            return i
    for i, v in enumerate(study.views):
        if key in (v.path.name, str(v.path)):
            return i
    if key.isdigit() and int(key) < len(study.views):
        return int(key)
    names = ", ".join(v.path.name for v in study.views)
    raise LandmarkError(
        path, f"'frames' key {key!r} names no view (a posture, one of {names}, or a frame number)"
    )


def read_static_landmarks(path: str | Path, study: StaticStudy) -> tuple[Landmarks, dict[int, Landmarks]]:
    """Landmarks of a static study: the reference view's and those given on other views.

    A plain ``dmx.landmarks/1`` file describes view ``"frame"``; a file with ``"frames"``
    (``{"flexion": {"points": {...}}, "extension.png": {...}, ...}``; a value may also be the
    points object itself) gives corners on several views. The reference view is then the
    neutral one when given, else the first in frame order.

    Raises
    ------
    LandmarkError
        Unreadable file, a key naming no view, a frame outside the study, points outside a view.
    """
    path = Path(path)
    data = read_landmark_json(path)
    if not isinstance(data, dict):
        raise LandmarkError(path, "not a landmark file: expected a JSON object")
    per_view: dict[int, Landmarks] = {}
    if "frames" in data:
        frames = data["frames"]
        if not isinstance(frames, dict) or not frames:
            raise LandmarkError(path, "'frames' must be an object of views")
        for key, value in frames.items():
            i = _view_index(str(key), study, path=path)
            points = value.get("points", value) if isinstance(value, dict) else value
            doc = {"schema": data.get("schema", "dmx.landmarks/1"), "frame": i, "points": points}
            if isinstance(value, dict) and "confidence" in value:
                doc["confidence"] = value["confidence"]
            per_view[i] = parse_landmarks(doc, path=path)
    else:
        lm = parse_landmarks(data, path=path)
        if lm.frame >= len(study.views):
            raise LandmarkError(
                path, f"frame {lm.frame} is not a view of this static study ({len(study.views)} views)"
            )
        per_view[lm.frame] = lm
    for i, lm in per_view.items():
        view = study.views[i]
        _check_inside(lm, view.shape, path=path, view=view.posture.value if view.posture else view.path.name)
    ref = min(per_view)  # neutral first when given, else the first view given
    given = {i: lm for i, lm in per_view.items() if i != ref}
    return per_view[ref], given


def _detect_views(
    study: StaticStudy, *, model_path: str | Path | None
) -> tuple[Landmarks, dict[int, Landmarks], Any]:
    """Automatic landmarks on every view; the reference is the view with most bodies (neutral first)."""
    from dmx.pipeline import DetectionFailedError, detect_on_sequence

    found: dict[int, Any] = {}
    problems: list[str] = []
    for i, view in enumerate(study.views):
        try:
            found[i] = detect_on_sequence(view.sequence, study_path=view.path, model_path=model_path)
        except DetectionFailedError as exc:
            problems.append(str(exc))
    if not found:
        raise DetectionFailedError(
            study.views[0].path,
            "automatic landmark detection found no vertebral body on any view; place the landmarks by "
            "hand on one view and pass --landmarks L.json",
        )
    ref = max(found, key=lambda i: (len(found[i].landmarks.corners_px), -i))
    lms = {i: replace(d.landmarks, frame=i) for i, d in found.items()}
    detection = found[ref]
    detection = replace(detection, landmarks=lms[ref])
    return lms[ref], {i: lm for i, lm in lms.items() if i != ref}, detection


def _scaled_for_measurement(tracks: Tracks, spacings: list[tuple[float, float] | None]) -> Tracks:
    """Corners of each view in frame 0's pixel size (so one calibration measures every view in mm)."""
    if any(s is None for s in spacings):
        return tracks
    r0, c0 = spacings[0]
    corners = np.array(tracks.corners_px, dtype=float, copy=True)
    for t, (r, c) in enumerate(spacings):
        corners[t, ..., 0] *= c / c0
        corners[t, ..., 1] *= r / r0
    return replace(tracks, corners_px=corners)


def _curve_per_view(tracks: Tracks, spacings: list[tuple[float, float] | None]) -> list[float | None]:
    """C2-C7 Cobb angle of each view (the sum of the segmental angles where C2 or C7 is missing)."""
    from dmx.measure import measure
    from dmx.measure.curve import cobb_c2c7_deg

    scaled = _scaled_for_measurement(tracks, spacings)
    m = measure(scaled, mm_per_px=None)

    h = (m.get("facing") or {}).get("h")
    out: list[float | None] = [None] * tracks.n_frames
    if h is None:
        return out
    if Vertebra.C2 in tracks.vertebrae and Vertebra.C7 in tracks.vertebrae:
        cobb = cobb_c2c7_deg(scaled.corners_of(Vertebra.C2), scaled.corners_of(Vertebra.C7), h=h)
        if np.all(np.isfinite(cobb)):
            return [float(x) for x in cobb]
    angles = [np.asarray([np.nan if a is None else a for a in e["angle_deg"]]) for e in m["levels"].values()]
    usable = [a for a in angles if np.all(np.isfinite(a))]
    if usable:
        return [float(x) for x in np.sum(usable, axis=0)]
    return out


def _permute(tracks: Tracks, index: list[int]) -> Tracks:
    """Tracks with frame ``k`` taken from frame ``index[k]``."""

    def take(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else np.asarray(a)[index]

    return replace(
        tracks,
        corners_px=take(tracks.corners_px),
        quality=take(tracks.quality),
        reason=tuple(tracks.reason[i] for i in index),
        reference_frame=index.index(tracks.reference_frame),
        transforms=take(tracks.transforms),
        precision_px=take(tracks.precision_px),
        rotation_precision_deg=take(tracks.rotation_precision_deg),
        cost_excess=take(tracks.cost_excess),
    )


def _without_grid_lines(images: list[np.ndarray], names: list[str]) -> tuple[list[np.ndarray], str | None]:
    """Each view with its anti-scatter grid lines taken out (:func:`dmx.tracking.grid.find_grid` on the view
    alone, :func:`dmx.tracking.grid.remove_grid`), and the lines taken out in words (None: none found).
    Still lines pull a body registered from one view to the other as they pull a tracked one."""
    from dmx.tracking.grid import find_grid, remove_grid

    out, said = [], []
    for image, name in zip(images, names, strict=True):
        grid = find_grid(image)
        out.append(image if grid is None else remove_grid(image, grid))
        if grid is not None:
            said.append(f"{grid.describe()} ({name})")
    return out, "; ".join(said) or None


def analyze_static(
    paths: list[str | Path] | tuple[str | Path, ...],
    *,
    neutral: str | Path | None = None,
    flexion: str | Path | None = None,
    extension: str | Path | None = None,
    landmarks_path: str | Path | None = None,
    mm_per_px: float | None = None,
    thresholds: Any = None,
    model_path: str | Path | None = None,
    normative: Any = None,
) -> Analysis:
    """Load, landmark, register and measure one static flexion/extension study.

    Parameters
    ----------
    paths : sequence of path
        The views (single-frame DICOM, PNG, JPEG, TIFF) or a folder holding them.
    neutral, flexion, extension : path, optional
        Which file is which posture (otherwise from tags, file names, or the image content).
    landmarks_path : path, optional
        Landmarks on one view (``"frame"``) or several (``"frames"``); without it every view's
        corners are found automatically.
    mm_per_px : float, optional
        User calibration for every view.
    thresholds : dmx.measure.config.Thresholds, optional
    model_path : path, optional
        Detector parameters for automatic landmarks.
    normative : dmx.normative.NormativeTable, optional
        Reference table for each level's ``normative`` block (default: the packaged table).

    Returns
    -------
    dmx.pipeline.Analysis
        ``measurements`` holds the spec's document plus a ``static`` block (the views, their
        postures and how they were known, their calibration and size, the registration).

    Raises
    ------
    dmx.errors.DmxError
        Unusable input (one line naming the file and the problem).
    """
    from dmx.measure import measure
    from dmx.normative import add_normative
    from dmx.pipeline import Analysis, adjacent_pairs, build_measurements
    from dmx.tracking.views import static_tracks

    study = load_static(paths, neutral=neutral, flexion=flexion, extension=extension, mm_per_px=mm_per_px)
    if len(study.views) < 2:
        raise UsageError("a static study needs at least two views (flexion and extension)")
    warnings = list(study.warnings)
    if not study.ordered:
        warnings.append(
            "the posture of "
            + ", ".join(v.path.name for v in study.views if v.posture is None)
            + " was found from the image content (C2-C7 curve angle): check it, or give --neutral, "
            "--flexion, --extension"
        )
    detection = None
    if landmarks_path is not None:
        if not study.ordered:
            warnings.append(
                "landmark file: its frame numbers were read in the order the views were given "
                f"({', '.join(v.path.name for v in study.views)}), since their postures were not known yet"
            )
        ref_lm, given = read_static_landmarks(landmarks_path, study)
    else:
        ref_lm, given, detection = _detect_views(study, model_path=model_path)
        if not adjacent_pairs(ref_lm):
            raise InputError(
                study.views[ref_lm.frame].path,
                "automatic landmark detection found no two adjacent vertebral bodies; place the landmarks "
                "by hand on one view and pass --landmarks L.json",
            )
    images = [v.image for v in study.views]
    spacings = [v.sequence.mm_per_px for v in study.views]
    ref_spacing = spacings[ref_lm.frame]
    expected = [
        None
        if s is None or ref_spacing is None
        else float(np.sqrt((ref_spacing[0] * ref_spacing[1]) / (s[0] * s[1])))
        for s in spacings
    ]
    images, grid_lines = _without_grid_lines(images, [v.path.name for v in study.views])
    tracks, fits = static_tracks(images, ref_lm, given=given, expected_scales=expected)
    tracks = replace(tracks, grid_lines=grid_lines)
    other_source = "given" if detection is None else "detected"  # a landmark file, or detection
    origin = [
        "reference" if t == ref_lm.frame else other_source if t in given else "registered"
        for t in range(len(images))
    ]
    if not study.ordered:
        study, index = order_by_curve(study, _curve_per_view(tracks, spacings))
        tracks = _permute(tracks, index)
        fits = [fits[i] for i in index]
        origin = [origin[i] for i in index]
        spacings = [spacings[i] for i in index]
        ref_lm = replace(ref_lm, frame=tracks.reference_frame)
    n_views = len(study.views)
    f_frame, e_frame = study.frame_of(Posture.FLEXION), study.frame_of(Posture.EXTENSION)
    n_frame = study.frame_of(Posture.NEUTRAL)
    if n_frame is None:
        warnings.append(f"no neutral view: the {study.views[0].posture} view (frame 0) stands as neutral")
    if f_frame is None or e_frame is None:
        missing = "flexion" if f_frame is None else "extension"
        warnings.append(f"no {missing} view: the end-range values (rotation_rom_deg, translation) are null")
    sequence = study.sequence()
    measured = measure(
        _scaled_for_measurement(tracks, spacings),
        mm_per_px=sequence.mm_per_px,
        neutral_frame=0 if n_frame is None else n_frame,
        thresholds=thresholds,
        view_key_frames=(f_frame, e_frame),
    )
    if ref_lm.extra_px:
        warnings.append("static study: the atlanto-dental interval is not measured (C1 is not registered)")
    doc = build_measurements(
        sequence,
        ref_lm,
        tracks,
        measured,
        detection=detection,
        smooth_frames=0,
    )
    doc["frames"]["time_ms"] = None
    doc["tracking"]["method"] = REGISTRATION_METHOD
    doc["static"] = {
        "views": [
            {
                "frame": i,
                "posture": None if v.posture is None else v.posture.value,
                "posture_source": None if v.posture_source is None else v.posture_source.value,
                "path": str(v.path),
                "rows": v.shape[0],
                "columns": v.shape[1],
                "mm_per_px": None
                if v.sequence.mm_per_px is None
                else [float(x) for x in v.sequence.mm_per_px],
                "calibration_source": v.sequence.calibration_source.value,
                "acquisition_time": v.acquisition_time,
                "landmarks": origin[i],
                "scale_to_reference": None if fits[i] is None else round(float(fits[i].scale), 4),
            }
            for i, v in enumerate(study.views)
        ],
        "count": n_views,
        "description": f"static F/E, {n_views} views",
    }
    doc["warnings"] += [w for w in warnings if w not in doc["warnings"]]
    add_normative(doc, normative)
    return Analysis(sequence=sequence, landmarks=ref_lm, tracks=tracks, measurements=doc, detection=detection)


def is_static_request(paths: list[str | Path], *, postures_given: bool) -> bool:
    """Whether ``dmx analyze PATH...`` designates a static study rather than one cine.

    True for several paths, for ``--neutral/--flexion/--extension``, for a still image, and
    for a folder holding two or three single-image series of one patient and date.
    """
    from dmx.io.static import static_files
    from dmx.io.still import is_still_image

    if postures_given or len(paths) > 1:
        return True
    p = Path(paths[0])
    if is_still_image(p):
        return False  # one still image: a one-frame study
    return p.is_dir() and static_files(p) is not None


__all__ = ["POSTURES", "REGISTRATION_METHOD", "analyze_static", "is_static_request", "read_static_landmarks"]
