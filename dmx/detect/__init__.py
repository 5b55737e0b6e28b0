"""Automatic detection of the vertebral-body corners C2-C7 on one frame (issue #7).

Public interface (stable; the implementation behind it may change):

- :class:`Detection` (defined in :mod:`dmx.analysis`) what the detector found: landmarks for the vertebrae it
  found (with per-vertebra confidence in 0..1), and for every vertebra it did
  not find, the reason. A vertebra it cannot find is left out, never guessed.
- :func:`detect_landmarks` runs the detector on one image.
- :func:`find_landmarks` runs it on a loaded :class:`dmx.io.sequence.Sequence`
  (reference frame, calibration as a scale prior).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from dmx.analysis import LOW_CONFIDENCE, Detection
from dmx.anatomy import BODIES, Vertebra
from dmx.detect.field import exposed_field as _exposed_field
from dmx.io.sequence import Sequence
from dmx.landmarks import Landmarks

__all__ = [
    "BODY_SIZE_SEARCH",
    "BODY_SIZE_SPREAD",
    "C2_WALLS",
    "DETECTORS",
    "FACING_FEWER",
    "FACING_LEFT_OUT",
    "LEVELS_CONFIRMED",
    "LEVELS_AGREED",
    "LEVELS_FROM_OWN_C2",
    "LONE_BODY",
    "MEAN_ADDED",
    "MIN_SIDE_PX",
    "MODEL_NAME",
    "NEIGHBOUR_ADDED",
    "NETWORK_ADDED",
    "NETWORK_MARK",
    "NOTHING_FOUND",
    "Detection",
    "detect_landmarks",
    "detector_method",
    "find_landmarks",
    "model_file",
]

#: File name of the fitted detector parameters in the models folder.
MODEL_NAME = "detector.npz"


def model_file(name: str = MODEL_NAME) -> Path:
    """Where a fitted model file is: ``$DMX_MODEL_DIR``, the source tree's ``models/``, or the install.

    A source checkout (or editable install) reads ``<repo>/models``; ``pip install .``
    puts the files in ``<prefix>/share/dmx/models`` (see pyproject's data-files).

    Raises
    ------
    FileNotFoundError
        Naming every place looked in.
    """
    import os
    import site
    import sys

    places = []
    if os.environ.get("DMX_MODEL_DIR"):
        places.append(Path(os.environ["DMX_MODEL_DIR"]))
    places.append(Path(__file__).resolve().parents[2] / "models")
    places += [Path(p) / "share" / "dmx" / "models" for p in (sys.prefix, sys.base_prefix, site.USER_BASE)]
    for place in places:
        if (place / name).is_file():
            return place / name
    raise FileNotFoundError(f"model file {name} not found in: {', '.join(str(p) for p in places)}")


#: The detectors: ``template`` (the default: template chain search, dmx.detector/2) and ``heatmap``
#: (the learned corner heatmaps of :mod:`dmx.detect.heatmap`, issue #12), chosen by ``method`` or
#: the environment variable ``DMX_DETECTOR``.
DETECTORS = ("template", "heatmap")


def detector_method(method: str | None = None) -> str:
    """The detector to use: ``method``, else ``$DMX_DETECTOR``, else ``template``.

    Raises
    ------
    dmx.errors.UsageError
        If the name is not one of :data:`DETECTORS`.
    """
    import os

    from dmx.errors import UsageError

    name = (method or os.environ.get("DMX_DETECTOR") or "template").strip().lower()
    if name not in DETECTORS:
        raise UsageError(
            f"unknown detector {name!r} (DMX_DETECTOR or method): use one of {', '.join(DETECTORS)}"
        )
    return name


#: Smallest frame side (px) the detector works on; a smaller frame gives no vertebra, with the reason.
MIN_SIDE_PX = 64


def detect_landmarks(
    image: np.ndarray,
    *,
    mm_per_px: tuple[float, float] | None = None,
    frame: int = 0,
    model_path: str | Path | None = None,
    method: str | None = None,
    mean_of=None,
    views: bool = True,
    calibrated: bool = True,
) -> Detection:
    """Find the corners of C2-C7 on one display-polarity frame (higher = brighter = bone).

    A body with a corner at the edge of the exposed field (the image's edge, or a flat band along it: a
    collimator blade) is left out: its outline there is the field's edge, not bone
    (:func:`_cut_by_field_edge`). Bodies darker than what lies just outside them are refused, on the
    frame as given and on every view (:func:`_darker_than_around`, :data:`DARKER_THAN_AROUND`), and so
    is a column lying across the image (:func:`_lies_across`, :data:`LIES_ACROSS`), and one on the frame as
    given leaning half-way across it whose levels the learned network does not confirm with the column
    stood upright (:func:`_leaning_unconfirmed`, :data:`LEANING_UNCONFIRMED`).
    Where the frame as given reports fewer than two bodies, it is searched again inverted (bone dark,
    as fluoroscopy shows it), turned a quarter either way (the column across the image) and a half turn
    (upside down), each view's column refused where the network reads it the other way round on the
    view turned a half turn from it (:func:`_opposite_reads_reversed`), and, where
    still fewer than :data:`VIEW_ENOUGH` are found, turned an eighth (a column leaning half-way across:
    :data:`LEANING_VIEWS`, the polarity where the network sees more of a column first); the view reporting
    the most bodies is kept where the learned network confirms their levels in it and outlines none of them
    the other way round, at the calibrated size and, for bodies the search over sizes found, over its sizes
    (:func:`_confirmed_at_its_sizes`), its corners mapped back to this frame, with a warning saying how it
    was found (:data:`VIEWS`, :data:`VIEW_FOUND`).

    Parameters
    ----------
    image : numpy.ndarray
        ``H x W`` frame in display polarity (as in :attr:`Sequence.frames`).
    mm_per_px : (float, float), optional
        Row and column spacing, used only as a prior on body size; without it the
        detector searches over scales. Where nothing is found at the calibrated size, the search
        over scales is tried too, its bodies kept when their size is within
        :data:`BODY_SIZE_SPREAD` of the model's at the calibration (with a warning).
    frame : int
        Index recorded as the landmarks' reference frame.
    model_path : path, optional
        Fitted parameters (default :func:`model_file`).
    method : str, optional
        ``template`` or ``heatmap`` (see :data:`DETECTORS`; default ``$DMX_DETECTOR`` or
        ``template``). ``template``: the template detector, its levels checked by the learned
        network ``heatmap.onnx`` next to the model file, which also adds its own bodies where the
        template detector reports fewer than six and the two agree
        (:func:`dmx.detect.detector.run_combined`; without the network file, the template detector
        alone, with a warning). ``heatmap``: the network alone, reported only when two or more of its
        bodies pass the C2 test (:func:`dmx.detect.detector.network_disagrees`).

    mean_of : callable, optional
        The cine around ``image`` (:data:`dmx.detect.detector.MeanOf`; ``template`` only): a level
        still empty next to a body found is looked for again on the mean of frames moved back with it
        (:data:`MEAN_ADDED`). :func:`dmx.pipeline.detect_on_sequence` gives it from the tracker.
    views : bool
        False: the frame as given only, the other views not searched (:func:`dmx.pipeline.detect_on_sequence`
        on a cine's other frames, where frame 0 was searched in every view). A column found there is still
        refused where the network sees it far more clearly turned a quarter (:func:`_turned_column`).
    calibrated : bool
        ``template`` only. True (the default): each body's confidence is the chance that its corners are
        right (:func:`dmx.detect.calibrate.calibrated_confidence`, from the detector's confidence and the
        outline's shape), a body below :data:`dmx.detect.calibrate.MIN_CHANCE` left out with the reason.
        False: the detector's own confidence (the calibration's data:
        ``benchmarks/confidence_calibration.py dump``).

    Returns
    -------
    Detection
        Corners and confidence (0..1) of every vertebra found; each of C2-C7 not found
        (or below the model's confidence threshold) is in ``missing`` with the reason,
        never guessed. Unequal row/column spacing is averaged for the size prior.

    Raises
    ------
    ValueError
        If ``image`` is not a 2-D array.
    dmx.errors.ModelFileError
        If the model file is not a usable dmx detector file (e.g. an older format).
    FileNotFoundError
        If no model file is found (see :func:`model_file`).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"detect_landmarks needs one 2-D frame, got shape {img.shape}")
    found = _detect_in_views(
        img,
        mm_per_px=mm_per_px,
        frame=frame,
        model_path=model_path,
        method=method,
        mean_of=mean_of,
        views=views,
    )
    found = _cut_by_field_edge(img, found)
    if calibrated and detector_method(method) == "template":
        found = _calibrated(found, model_path)
    return _warned_low(found)


def _warned_low(det: Detection) -> Detection:
    """``det`` with a "check its corners" warning for each body reported below
    :data:`dmx.analysis.LOW_CONFIDENCE`, made once from the confidences finally reported (after the view
    chosen, the field-edge cut and the calibration)."""
    conf = det.landmarks.confidence
    low = [_low_confidence(v, conf[v]) for v in det.landmarks.corners_px if conf[v] < LOW_CONFIDENCE]
    return replace(det, warnings=(*det.warnings, *low)) if low else det


def _low_confidence(v: Vertebra, c: float) -> str:
    return f"{v.value}: low confidence {c:.2f}; check its corners"


def _calibrated(det: Detection, model_path) -> Detection:
    """``det`` with each reported body's confidence replaced by the calibrated chance that its corners are
    right (:mod:`dmx.detect.calibrate`), those below :data:`dmx.detect.calibrate.MIN_CHANCE` left out with
    the reason."""
    from dmx.detect.calibrate import MIN_CHANCE, MORE_LIKELY_WRONG, calibrated_confidence

    lm = det.landmarks
    if not lm.corners_px:
        return det
    mean = _cached_model(model_path).mean_shape_mm
    corners, confidence, missing = {}, {}, dict(det.missing)
    for v, c in lm.corners_px.items():
        chance = calibrated_confidence(lm.confidence[v], c, v, mean)
        if chance < MIN_CHANCE:
            missing[v] = MORE_LIKELY_WRONG.format(chance=100 * chance)
        else:
            corners[v], confidence[v] = c, round(chance, 4)
    warnings = list(det.warnings)
    if not corners:
        warnings.append("no body reported: every outline found is more likely wrong than right")
    return replace(
        det,
        landmarks=replace(lm, corners_px=corners, confidence=confidence),
        missing=missing,
        warnings=tuple(warnings),
    )


def _detect_in_views(
    img: np.ndarray, *, mm_per_px, frame: int, model_path, method, mean_of, views: bool = True
) -> Detection:
    """:func:`detect_landmarks` before the field-edge check: the frame as given, then the other views."""
    kw = dict(frame=frame, model_path=model_path, method=method)
    best = _detect_once(img, mm_per_px=mm_per_px, mean_of=mean_of, **kw)
    why = VIEW_WHY_FEW
    evidence: dict[int, float] = {}  # the network's evidence for a column per view (VIEWS index; -1 as given)

    def evidence_in(k: int) -> float:
        if k not in evidence:
            view = _View(False, 0, "") if k < 0 else VIEWS[k]
            evidence[k] = _column_evidence(view.image(img), view.spacing(mm_per_px), model_path)
        return evidence[k]

    refused = (
        _refused(img, best, mm_per_px)
        # a column the network sees far more clearly turned a quarter is refused as such before its lean is
        # weighed (1290005: read from the wrong end, its chord leaning 40-45 degrees: both refuse it)
        or (_turned_column(best, evidence_in) if min(img.shape) >= MIN_SIDE_PX else None)
        or _leaning_unconfirmed(img, best, mm_per_px, model_path)
    )
    if refused is not None:
        # refused here, searched for again in the other views (an inverted and turned ones among them)
        why, words = refused
        best = Detection(
            Landmarks(frame=frame, corners_px={}),
            {v: f"left out: {words}" for v in BODIES},
            (f"no body reported on the frame as given: {words}",),
        )
    if len(best.landmarks.corners_px) >= MIN_VIEW_BODIES or min(img.shape) < MIN_SIDE_PX or not views:
        return best
    best_view = None
    # the network's evidence for an upright column, as given and inverted (the polarity it sees bone in)
    upright_as_given, upright_inverted = evidence_in(-1), evidence_in(0)
    upright = max(upright_as_given, upright_inverted)

    def search(view: _View, seen: np.ndarray) -> bool:
        """Detect on ``view`` (its image ``seen``) and keep it if it beats the best so far; whether it did."""
        nonlocal best, best_view
        spacing = view.spacing(mm_per_px)
        det = _detect_once(seen, mm_per_px=spacing, mean_of=view.mean_of(mean_of, img.shape), **kw)
        # bodies found by the search over sizes may be confirmed by the network as that search ran it too
        sized = any(BODY_SIZE_MARK in w for w in det.warnings)
        if (
            len(det.landmarks.corners_px) > len(best.landmarks.corners_px)
            and (not view.degrees or _lean_deg(det) <= LEANING_UPRIGHT_DEG)
            and _confirmed_at_its_sizes(seen, det, spacing, sized, model_path)
            and _refused(seen, det, spacing) is None
            and not (view.turns and _opposite_reads_reversed(img, view, det, spacing, model_path))
        ):
            best, best_view = det, view
            return True
        return False

    gated = []  # the views turned a quarter not searched for their evidence
    for k, view in enumerate(VIEWS):
        if view.turns and evidence_in(k) < TURNED_EVIDENCE * upright:
            gated.append(view)  # the column is not clearly more upright there: not searched yet (a detection)
            continue
        seen = view.image(img)
        if search(view, seen) and len(best.landmarks.corners_px) >= VIEW_ENOUGH:
            break
    if len(best.landmarks.corners_px) < VIEW_ENOUGH:
        # a column leaning half-way across the frame (a flexed neck, a tilted detector) stands upright in
        # a view turned an eighth: in the polarity where the network sees more of an upright column, the
        # way it sees more of one turned is searched (its column must stand upright there: search())
        inverted = upright_inverted > upright_as_given

        def ranked(polarity: bool) -> list[tuple[_View, np.ndarray]]:
            """The views turned an eighth of one polarity (``inverted``) and their images, most network
            evidence first; of a tie the first, as np.argmax chose before session 56."""
            views = [(view, view.image(img)) for view in LEANING_VIEWS if view.inverted == polarity]
            evidence = [_column_evidence(seen, view.spacing(mm_per_px), model_path) for view, seen in views]
            return [views[j] for j in np.argsort(-np.asarray(evidence), kind="stable")]

        first, *rest = ranked(inverted)
        search(*first)
        # still nothing: the views passed over for their evidence are searched too, the other way turned an
        # eighth first (session 56: the network's evidence did not point to the view its column was found in),
        # then those of the other polarity, most evidence first (session 59: a network trained on both
        # polarities sees about as much of a column either way; acquisition 800000 of generator 7171, bone
        # dark, had more of it as given; its bodies refused there as darker than around them)
        if len(best.landmarks.corners_px) < MIN_VIEW_BODIES:
            for view, seen in rest:
                search(view, seen)
            for view in gated:
                if len(best.landmarks.corners_px) >= VIEW_ENOUGH:
                    break
                search(view, view.image(img))
        if len(best.landmarks.corners_px) < MIN_VIEW_BODIES:
            for view, seen in ranked(not inverted):
                if len(best.landmarks.corners_px) >= MIN_VIEW_BODIES:
                    break
                search(view, seen)
    if best_view is None:
        return best
    corners = {v: best_view.back(c, img.shape) for v, c in best.landmarks.corners_px.items()}
    return Detection(
        Landmarks(frame=frame, corners_px=corners, confidence=dict(best.landmarks.confidence)),
        dict(best.missing),
        (VIEW_FOUND.format(view=best_view.words, why=why), *best.warnings),
    )


def _turned_column(det: Detection, evidence_in: Callable[[int], float]) -> tuple[str, str] | None:
    """Why the column ``det`` found on the frame as given is refused as read on a turned frame (as
    :func:`_refused` gives it), or None: where the learned network sees :data:`TURNED_REFUSE` times more of
    a column on a view turned a quarter than on the frame as given, both in the frame's polarity (bone
    bright: a column found as given that shows bone dark is refused by :func:`_darker_than_around`)
    (``evidence_in``: the evidence per :data:`VIEWS` index, -1 the frame as given), the column lies across
    the frame and the template detector, whose levels assume an upright column, may have read it from the
    wrong end."""
    if len(det.landmarks.corners_px) < MIN_VIEW_BODIES:
        return None
    turned = max(evidence_in(k) for k, view in enumerate(VIEWS) if view.turns % 2 and not view.inverted)
    if turned <= 0.0 or turned < TURNED_REFUSE * evidence_in(-1):
        return None
    return VIEW_WHY_TURNED, TURNED_COLUMN


#: A column found on the frame as given is refused where the learned network sees this many times more of a
#: column on a view turned a quarter (:func:`_turned_column`). All-family phantom 1290005 (issue #12, session
#: 42; the acquisition look's 90-degree turn and a 24-degree tilt, C2 at the column's lower end): the template
#: detector reported C2-C4 on C6-C4, read from the wrong end, at confidence 1.0; the network saw 7.2 times
#: more of a column turned a quarter. On 60 phantoms of every family (1250000+, 1260000+, 1290000+; frames
#: as given, bone bright) frames whose column stands upright gave at most 1.76 times, those turned a
#: quarter 1.2-9.2 times (the turn is searched anyway where the frame as given gives no column).
TURNED_REFUSE = 3.0
#: The reason :data:`VIEW_FOUND` gives for a column refused on the frame as given by :func:`_turned_column`.
VIEW_WHY_TURNED = "the column found there lies across it"
#: Why a column found on the frame as given was refused as lying across it (:func:`_turned_column`).
TURNED_COLUMN = (
    "the learned network sees a column far more clearly on the frame turned a quarter: the column lies "
    "across the frame, and the detectors' levels assume an upright column (they may be read from the wrong "
    "end)"
)


def _refused(image: np.ndarray, det: Detection, mm_per_px) -> tuple[str, str] | None:
    """Why the bodies ``det`` found on ``image`` (the frame as given, or a view of it) are refused, as
    (the :data:`VIEW_FOUND` reason, the reason given for each body), or None: bodies darker than what lies
    just outside them (the frame shows bone dark, or they are not bodies: :func:`_darker_than_around`), or
    a column lying across the image (the detectors' levels assume an upright one: :func:`_lies_across`), or
    a column whose anterior side repeats level by level more than its posterior side (anterior and posterior
    swapped: :func:`dmx.detect.facing.facing_contradicted`)."""
    from dmx.detect.facing import facing_contradicted

    if not det.landmarks.corners_px:
        return None
    if _darker_than_around(image, det, mm_per_px):
        return VIEW_WHY_DARK, DARKER_THAN_AROUND
    if facing_contradicted(image, det.landmarks.corners_px):
        return VIEW_WHY_FACING, FACING_CONTRADICTED
    if _lies_across(det):
        return VIEW_WHY_ACROSS, LIES_ACROSS
    return None


def _leaning_unconfirmed(image: np.ndarray, det: Detection, mm_per_px, model_path) -> tuple[str, str] | None:
    """Why the column ``det`` found on the frame as given is refused as leaning unconfirmed (as
    :func:`_refused` gives it), or None: a column whose chord leans more than :data:`LEANING_CHECK_DEG` is
    kept only where the learned network confirms its levels (:func:`_network_confirms`) on the view turned
    an eighth (:data:`LEANING_VIEWS`, the frame's polarity) in which that chord stands most upright: within
    20 degrees there, as the network's training columns did. The template detector's levels assume an upright
    column: on a frame turned a quarter whose column leant back 126 degrees it reported C2-C5 upside down at
    confidence 1 (their chord leaning 52 degrees), and in the view where that chord stands upright the
    network saw no such column."""
    if len(det.landmarks.corners_px) < 2 or _lean_deg(det) <= LEANING_CHECK_DEG:
        return None

    def stood(view: _View) -> Detection:  # the column as the view turned an eighth shows it
        corners = {v: view.forward(c, image.shape) for v, c in det.landmarks.corners_px.items()}
        return Detection(Landmarks(frame=det.landmarks.frame, corners_px=corners), dict(det.missing), ())

    seen, view = min(((stood(v), v) for v in LEANING_VIEWS if not v.inverted), key=lambda s: _lean_deg(s[0]))
    if _network_confirms(view.image(image), seen, view.spacing(mm_per_px), model_path):
        return None
    return VIEW_WHY_LEANING, LEANING_UNCONFIRMED


#: A column on the frame as given whose chord leans more than this (degrees) is kept only where the learned
#: network confirms its levels on a view turned an eighth (:func:`_leaning_unconfirmed`); between this and
#: :data:`ACROSS_DEG` it stands within 20 degrees of upright in one of them.
LEANING_CHECK_DEG = 40.0
#: The reason :data:`VIEW_FOUND` gives for a leaning column refused on the frame as given.
VIEW_WHY_LEANING = "those found leaned half-way across the frame, their levels unconfirmed"
#: Why a leaning column on the frame as given was refused (:func:`_leaning_unconfirmed`).
LEANING_UNCONFIRMED = (
    "the column found leans half-way across the frame (its chord more than 40 degrees from upright) and the "
    "learned network, on the frame turned an eighth to stand it upright, does not confirm its levels"
)
#: Warning of a template detector's chain kept below its minimum score because the learned network's
#: bodies agree with it (:func:`dmx.detect.detector._weak_chain_agrees`).
WEAK_CHAIN_KEPT = (
    "the template detector's column scored below its minimum and was kept because the learned network "
    "found the same bodies at the same levels ({levels}); check the levels"
)
#: Fewer bodies than this on the frame as given: the other views (:data:`VIEWS`) are searched too.
MIN_VIEW_BODIES = 2
#: A turned view is searched only where the learned network sees this many times more of a column in it
#: (:func:`_column_evidence`) than in the frame as given, inverted or not: the network was trained on
#: upright columns, and a frame turned a quarter gave it 2-6 times the evidence of the frame as given on
#: this project's acquisition phantoms, while on upright frames the turned views gave it less (one
#: 1.1 times); each view searched costs a detection (3-8 s).
TURNED_EVIDENCE = 1.25
#: A view turned an eighth is kept only where the column found in it stands within this many degrees of
#: upright (its chord, :func:`_lean_deg`): the network was trained on columns within 20 degrees, and on a
#: column lying across the frame (turned a quarter), seen turned an eighth (leaning 35 degrees) with the
#: frame's edge repeated into the new corners (before they were filled with its median grey), it labelled
#: every body one level off and the template detector agreed.
LEANING_UPRIGHT_DEG = 25.0
#: A view reporting this many bodies ends the search of the others (each costs a detection).
VIEW_ENOUGH = 4
#: Warning of a detection on another view of the frame (:data:`VIEWS`).
VIEW_FOUND = (
    "the bodies were found on the frame {view} (on the frame as given {why}); their "
    "corners are mapped back to the frame as given (check the levels)"
)
#: The reasons :data:`VIEW_FOUND` gives for searching the other views.
VIEW_WHY_FEW = "fewer than two were found"
VIEW_WHY_DARK = "those found were darker than what lies just outside them"
VIEW_WHY_ACROSS = "those found lay across the frame"
VIEW_WHY_FACING = "those found had anterior and posterior swapped"
#: Why a column whose facing its surroundings contradict was refused (:func:`_refused`).
FACING_CONTRADICTED = (
    "which way the patient faces is uncertain: what lies in front of the bodies found repeats level by level "
    "more than what lies behind them (the posterior elements do), so anterior and posterior may be swapped"
)
#: A column whose C2-to-C7 chord (the reported bodies' first to last centre) leans more than this from
#: upright (degrees) is refused (:func:`_lies_across`): no training column leaned that far; on this
#: project's phantoms upright frames reach 59 degrees, frames turned a quarter 46-106 (160 frames of the
#: acquisition and all-family sets, seeds 700000+ to 800000+, from their true corners; 65 was chosen on
#: them, held-out sets included).
ACROSS_DEG = 65.0
#: Why a column lying across the frame was refused.
LIES_ACROSS = (
    "the column found lies across the frame (its chord more than 65 degrees from upright): the detectors' "
    "levels assume an upright column (a frame turned a quarter gave one labelled upside down)"
)


def _lies_across(det: Detection) -> bool:
    """Whether the bodies of ``det`` (two or more) form a column whose chord, from the highest level's
    centre to the lowest's, leans more than :data:`ACROSS_DEG` from straight down the image."""
    return _lean_deg(det) > ACROSS_DEG


def _lean_deg(det: Detection) -> float:
    """How far (degrees, 0-180) the chord of ``det``'s bodies, from the highest level's centre to the
    lowest's, leans from straight down the image; 0 with fewer than two bodies."""
    found = [v for v in BODIES if v in det.landmarks.corners_px]
    if len(found) < 2:
        return 0.0
    top = np.asarray(det.landmarks.corners_px[found[0]], float).mean(axis=0)
    bottom = np.asarray(det.landmarks.corners_px[found[-1]], float).mean(axis=0)
    dx, dy = bottom - top
    return float(np.degrees(np.arctan2(abs(dx), dy)))


#: A view's bodies are kept only where the learned network, run on that view, reports at least this many
#: of them at their own levels (centres within ``dmx.detect.detector.SAME_BODY_MM``) and none of them at
#: another level (:func:`_network_confirms`).
VIEW_CONFIRMED = 2
#: Where the network's outlines on a view are too few to confirm its bodies' levels, they are confirmed when
#: the network's segmentation at the calibrated size puts at least this many of their centres on their own
#: level and at least this many times as many there as on another (:func:`_segmentation_confirms`).
SEGMENTATION_CONFIRMED = (3, 3.0)


def _net_and_model(model_path):
    from dmx.detect.heatmap import NET_NAME, load_net

    net_path = (Path(model_path) if model_path is not None else model_file()).with_name(NET_NAME)
    if not net_path.is_file():
        return None, None
    return load_net(net_path), _cached_model(model_path)


def _mean_spacing(mm_per_px) -> float | None:
    """The mean of the row and column spacing (the detector's size prior), None without a usable one."""
    if mm_per_px is None:
        return None
    vals = [float(v) for v in np.ravel(mm_per_px)]
    return float(np.mean(vals)) if all(np.isfinite(v) and v > 0 for v in vals) else None


def _column_evidence(image: np.ndarray, mm_per_px, model_path) -> float:
    """The learned network's evidence for a column on ``image`` (a view of the frame): the summed region
    probability x outline overlap of its bodies (:meth:`dmx.detect.heatmap.Bodies.score`), at the pixel
    size, or the best over its sweep of sizes without one; 0 without the network."""
    from dmx.detect.heatmap import UNCALIBRATED_SWEEP_MM

    net, _ = _net_and_model(model_path)
    if net is None:
        return 0.0
    mpp = _mean_spacing(mm_per_px)
    sizes = (mpp,) if mpp is not None else UNCALIBRATED_SWEEP_MM
    return max(net.bodies_in_windows(image, size).score() for size in sizes)


def _confirmed_at_its_sizes(seen: np.ndarray, det: Detection, spacing, sized: bool, model_path) -> bool:
    """Whether the learned network confirms the column ``det`` found on a view (its image ``seen``) at the
    calibrated size ``spacing`` or, for bodies the search over sizes found (``sized``), over its sizes too,
    and outlines none of them the other way round at either (:func:`_network_reads`). A network trained on
    crops flipped and turned any way (session 58's candidate) may face a column the wrong way at one size
    and the right way at another: all-family 1380013 (the development set), inverted and found by the search
    over sizes, C3-C7 at their own places with anterior and posterior swapped (77-86 px), the network at the
    calibrated size facing them the same wrong way, over its sizes the right way. Such a view is not kept."""
    reads = [_network_reads(seen, det, spacing, model_path)]
    if sized:
        reads.append(_network_reads(seen, det, None, model_path))
    return READ_CONFIRMED in reads and READ_OTHERWISE not in reads


#: What the learned network makes of a column (:func:`_network_reads`): its levels confirmed; not
#: confirmed; a body outlined the other way round (:func:`_outlined_otherwise`).
READ_CONFIRMED, READ_UNCONFIRMED, READ_OTHERWISE = "confirmed", "unconfirmed", "otherwise"


def _network_confirms(image: np.ndarray, det: Detection, mm_per_px, model_path) -> bool:
    """Whether the learned network confirms the levels of ``det``'s bodies on ``image``
    (:func:`_network_reads`)."""
    return _network_reads(image, det, mm_per_px, model_path) == READ_CONFIRMED


def _network_reads(image: np.ndarray, det: Detection, mm_per_px, model_path) -> str:
    """What the learned network, on ``image`` (a view of the frame), makes of ``det``'s bodies: whether it
    confirms their levels (:data:`VIEW_CONFIRMED`; :data:`READ_CONFIRMED`, else :data:`READ_UNCONFIRMED`).
    The template detector's levels assume an upright column: on a frame turned a quarter (the column across
    it) it found the bodies of phantoms of this project's cortical and posterior families but labelled them
    in reverse (C2 on C7), with its own checks passed; the network shipped until session 59, trained on
    upright columns (within 20 degrees), labelled the levels of a view only where the column stood upright
    in it (the one shipped since, trained on crops turned any way, labels them on any view; the checks on
    its facing and on the opposite view, :func:`_outlined_otherwise` and :func:`_opposite_reads_reversed`,
    stand for that). ``mm_per_px`` None: the network run over its sizes as without calibration
    (:func:`dmx.detect.detector.run_heatmap`), for bodies the search over sizes found. Where its outlines do
    not confirm them (too few, or one at another level), its segmentation may (:func:`_segmentation_confirms`:
    its outlines on a view can be fewer than its regions; session 55). Never confirmed where one of its
    outlines has a body of ``det`` upside down or facing the other way (:func:`_outlined_otherwise`;
    :data:`READ_OTHERWISE`)."""
    from dmx.detect.detector import (
        HEATMAP_THRESHOLD,
        SAME_BODY_MM,
        _centre_distance_mm,
        reported_bodies,
        run_heatmap,
    )

    net, model = _net_and_model(model_path)
    if net is None:
        return READ_UNCONFIRMED
    mpp = _mean_spacing(mm_per_px)
    # the network run once at the calibrated size: its outlines, then its segmentation where they fail
    found = net.bodies_in_windows(np.asarray(image, dtype=np.float32), mpp) if mpp is not None else None
    network = run_heatmap(image, model, net, mm_per_px=mpp, found=found)
    labels = [(b.vertebra, b.corners_px) for b in reported_bodies(network, HEATMAP_THRESHOLD)]
    if _outlined_otherwise(det, labels, network.mm_per_px):
        return READ_OTHERWISE
    agree, other_level = 0, False
    for v, c in det.landmarks.corners_px.items():
        c = np.asarray(c, float)
        near = [u for u, p in labels if _centre_distance_mm(p, c, network.mm_per_px) <= SAME_BODY_MM]
        other_level = any(u != v for u in near)
        if other_level:
            break
        agree += v in near
    confirmed = (not other_level and agree >= VIEW_CONFIRMED) or _segmentation_confirms(det, found)
    return READ_CONFIRMED if confirmed else READ_UNCONFIRMED


def _opposite_reads_reversed(img: np.ndarray, view: _View, det: Detection, mm_per_px, model_path) -> bool:
    """Whether the column ``det`` found on ``view`` (a view turned a quarter or a half turn) is read the other
    way round on the opposite view (turned a half turn from it, same polarity: the other quarter, or the frame
    as given; the same column seen from its other end, one of the two showing it upside down) at least as
    fully as the learned network reads any column on ``view`` itself: the network there labels ``det``'s
    bodies in reverse order (compared on the frame as given: its outlines at or above its threshold whose
    centres lie within ``dmx.detect.detector.SAME_BODY_MM`` of ``det``'s; at least :data:`OPPOSITE_MATCHED`
    matched and, ordered by ``det``'s levels, the network's levels falling at every step), and it reports at
    least as many bodies there as on ``view``. A network trained on upright columns may read an upside-down
    one as upright; where it does so on both views, the view on which it reads more bodies is the one that
    shows the column as it was trained on. False without the network.

    Session 58: a network fine-tuned on crops turned 30 degrees at most (models/candidates/heatmap-s57.onnx)
    read this project's test phantom turned a quarter, on the view where the column stands upside down, as
    upright (3 bodies reported; on the opposite view 5): C2-C5 45-307 px off; all-family 1470015 likewise
    (4 against 5). The shipped network reads 1470017's column right on one view (5 bodies) and two of its
    bodies reversed on the other (2): kept."""
    from dmx.detect.detector import (
        HEATMAP_THRESHOLD,
        SAME_BODY_MM,
        _centre_distance_mm,
        reported_bodies,
        run_heatmap,
    )

    net, model = _net_and_model(model_path)
    if net is None:
        return False
    mpp = _mean_spacing(mm_per_px)

    def read(v: _View) -> tuple[list[tuple[int, np.ndarray]], float]:
        """The network's reported bodies on view ``v`` (level index, corners on the frame), its mm/px."""
        column = run_heatmap(v.image(img), model, net, mm_per_px=mpp)
        bodies = [
            (BODIES.index(b.vertebra), v.back(b.corners_px, img.shape))
            for b in reported_bodies(column, HEATMAP_THRESHOLD)
        ]
        return bodies, column.mm_per_px

    there, size = read(_View(view.inverted, view.turns + 2, ""))
    pairs = []
    for v, c in det.landmarks.corners_px.items():
        c = view.back(c, img.shape)
        near = [u for u, p in there if _centre_distance_mm(p, c, size) <= SAME_BODY_MM]
        if len(near) == 1:
            pairs.append((BODIES.index(v), near[0]))
    seen = [u for _, u in sorted(pairs)]
    if len(seen) < OPPOSITE_MATCHED or any(b >= a for a, b in zip(seen, seen[1:], strict=False)):
        return False
    return len(there) >= len(read(view)[0])


#: Bodies of a column found on a turned view that the network, on the opposite view, must label
#: in reverse order for the column to be refused (:func:`_opposite_reads_reversed`).
OPPOSITE_MATCHED = 2


def _outlined_otherwise(det: Detection, labels, mm_per_px: float) -> bool:
    """Whether a body of ``det`` is outlined the other way round than the learned network outlines the same
    body (``labels``: its reported bodies as (level, corners) on the same image; centres within
    ``dmx.detect.detector.SAME_BODY_MM``): upside down (its superior endplate's midpoint where the network
    has the inferior one) or facing the other way (anterior and posterior swapped), the directions more
    than 90 degrees apart. The template detector's corners assume an upright column and choose the facing
    by what lies around it; a network trained on crops turned any way and flipped (session 58's candidate)
    outlines each body by its own anatomy, and its levels alone no longer tell. All-family 1510013
    (generator 15151; the frame turned 94 degrees and flipped, bone dark): on the view inverted and turned a
    quarter clockwise, C4 and C5 at their own places with anterior and posterior swapped (corners 47 px off),
    the network there facing them right."""
    from dmx.detect.detector import SAME_BODY_MM, _centre_distance_mm
    from dmx.detect.pose import directions

    for c in det.landmarks.corners_px.values():
        c = np.asarray(c, float)
        for _, p in labels:
            p = np.asarray(p, float)
            if _centre_distance_mm(p, c, mm_per_px) > SAME_BODY_MM:
                continue
            if any(float(np.dot(a, b)) < 0.0 for a, b in zip(directions(c), directions(p), strict=True)):
                return True
    return False


def _segmentation_confirms(det: Detection, found) -> bool:
    """Whether the learned network's segmentation ``found`` (its bodies on a view of the frame at the
    calibrated size, :meth:`dmx.detect.heatmap.HeatmapNet.bodies_in_windows`) puts most of ``det``'s body
    centres on their own levels (:data:`SEGMENTATION_CONFIRMED`): the levels confirmed where the network's
    own outlines are too few to (:func:`_network_confirms`). False without a calibrated size (``found``
    None)."""
    if found is None:
        return False
    levels = [
        (BODIES.index(v), found.level_at(np.asarray(c, float).mean(axis=0)))
        for v, c in det.landmarks.corners_px.items()
    ]
    agree = sum(own == seen for own, seen in levels)
    other = sum(seen >= 0 and seen != own for own, seen in levels)
    need, ratio = SEGMENTATION_CONFIRMED
    return agree >= need and agree >= ratio * other


#: Bands along each side's outward normal (mm from the outline; negative inside) compared by
#: :func:`_darker_than_around`.
INSIDE_BAND_MM = (-2.0, -0.6)
OUTSIDE_BAND_MM = (1.0, 3.0)


def _darker_than_around(view_image: np.ndarray, det: Detection, mm_per_px) -> bool:
    """Whether the bodies ``det`` found on ``view_image`` (the frame as given, or a view of it) are darker
    there than what lies just outside them. The detectors look for bone shown bright: a body is
    brighter than the soft tissue and discs just outside it. Decided per side (1-3 mm outside against
    0.6-2 mm inside), a body on three sides of four, the detection on most of its bodies.

    Two ways it goes wrong, each seen: on an inverted view of a bone-bright frame, the inner edge of the
    bright cortical rim is a step like a body's outline, and outlines were found there, a rim's width
    too small, with the levels confirmed (7 px on a phantom of this project's acquisition family turned
    a quarter, whose upright view the C2 test could not check); on a bone-dark frame as given, the size
    search and the network's level move put three bodies at full confidence 110-140 px from the true
    ones (acquisition phantoms 760013 inverted, 780009)."""
    from dmx.detect.pose import smoothed
    from dmx.detect.refine import SIDES, _outward_normal

    mpp = _mean_spacing(mm_per_px) or 0.3
    sm, _ = smoothed(view_image, mpp)
    ppm = 1.0 / mpp
    offsets = np.arange(INSIDE_BAND_MM[0], OUTSIDE_BAND_MM[1] + 1e-9, 0.1) * ppm
    inside = offsets <= INSIDE_BAND_MM[1] * ppm
    outside = offsets >= OUTSIDE_BAND_MM[0] * ppm
    votes = []
    for c in det.landmarks.corners_px.values():
        c = np.asarray(c, float)
        centre = c.mean(axis=0)
        darker = 0
        for i, j in SIDES:
            n = _outward_normal(c[i], c[j], centre)
            pts = c[i][None] + np.linspace(0.2, 0.8, 13)[:, None] * (c[j] - c[i])[None]
            xy = pts[:, None, :] + offsets[None, :, None] * n[None, None, :]
            prof = cv2.remap(
                sm, xy[..., 0].astype(np.float32), xy[..., 1].astype(np.float32), cv2.INTER_LINEAR
            )
            prof = prof.mean(axis=0)
            darker += float(prof[inside].mean()) < float(prof[outside].mean())
        votes.append(darker >= 3)
    return bool(votes) and sum(votes) > len(votes) / 2


#: A reported body with a corner nearer than this share of its depth (about 1 mm) to the exposed field's
#: edge is left out (:func:`_cut_by_field_edge`).
FIELD_MARGIN = 0.07
#: Why a body at the field's edge is left out.
CUT_BY_FIELD_EDGE = (
    "left out: a corner lies at the edge of the exposed field (the image's edge or a collimator blade), "
    "so the outline there is the field's edge, not the body's"
)


def _cut_by_field_edge(image: np.ndarray, det: Detection) -> Detection:
    """``det`` less the bodies with a corner within :data:`FIELD_MARGIN` of their depth of the exposed
    field's edge (:func:`_exposed_field`), each with :data:`CUT_BY_FIELD_EDGE` and a warning. A body the
    field's edge crosses is found with its side on that edge (C7 under a collimator blade, 26 px from its
    true corner at confidence 0.73: development phantom 780009 of the acquisition family; 800018 too)."""
    if not det.landmarks.corners_px:
        return det
    y0, y1, x0, x1 = _exposed_field(image)
    cut = []
    for v, c in det.landmarks.corners_px.items():
        c = np.asarray(c, float)
        depth = 0.5 * (np.hypot(*(c[0] - c[1])) + np.hypot(*(c[3] - c[2])))
        inside = np.minimum.reduce([c[:, 1] - y0, (y1 - 1) - c[:, 1], c[:, 0] - x0, (x1 - 1) - c[:, 0]])
        if float(inside.min()) < FIELD_MARGIN * depth:
            cut.append(v)
    if not cut:
        return det
    corners = {v: c for v, c in det.landmarks.corners_px.items() if v not in cut}
    confidence = {v: c for v, c in det.landmarks.confidence.items() if v not in cut}
    missing = {**det.missing, **{v: CUT_BY_FIELD_EDGE for v in cut}}
    missing = {v: missing[v] for v in BODIES if v in missing}
    words = f"{', '.join(v.value for v in cut)} {CUT_BY_FIELD_EDGE}"
    return Detection(
        Landmarks(frame=det.landmarks.frame, corners_px=corners, confidence=confidence),
        missing,
        (*det.warnings, words),
    )


#: Why the bodies found on the frame as given were refused (:func:`_darker_than_around`).
DARKER_THAN_AROUND = (
    "the bodies found are darker than what lies just outside them (a vertebral body is brighter than "
    "the discs and soft tissue around it where bone is shown bright): the frame shows bone dark, or "
    "they are not bodies"
)


class _View:
    """The frame inverted and/or turned by quarter turns (``np.rot90``'s ``turns``), or by ``degrees``
    (anticlockwise as displayed; an eighth turn for a leaning column), for detection."""

    def __init__(self, inverted: bool, turns: int, words: str, degrees: float = 0.0) -> None:
        self.inverted, self.turns, self.words, self.degrees = inverted, turns % 4, words, float(degrees)

    def _matrix(self, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        """The 2x3 map from the frame as given to this view turned by ``degrees`` (its canvas enlarged to
        hold the whole frame), and the canvas's size (width, height)."""
        h, w = shape
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), self.degrees, 1.0)
        c, s = abs(m[0, 0]), abs(m[0, 1])
        cw, ch = int(np.ceil(h * s + w * c)), int(np.ceil(h * c + w * s))
        m[0, 2] += (cw - w) / 2.0
        m[1, 2] += (ch - h) / 2.0
        return m, (cw, ch)

    def image(self, img: np.ndarray) -> np.ndarray:
        out = img.astype(np.float32)
        if self.inverted:
            out = float(np.max(out)) + float(np.min(out)) - out
        if self.degrees:
            # the corners the turn brings in are the frame's median grey (its edge repeated outwards drew
            # streaks the network took for structure: on a column leaning 50 degrees it saw half as much)
            m, size = self._matrix(out.shape)
            fill = float(np.median(out))
            return cv2.warpAffine(out, m, size, flags=cv2.INTER_LINEAR, borderValue=fill)
        return np.ascontiguousarray(np.rot90(out, self.turns))

    def spacing(self, mm_per_px):
        if mm_per_px is None or (self.turns % 2 == 0 and not self.degrees):
            return mm_per_px
        vals = [float(v) for v in np.ravel(mm_per_px)]
        if self.degrees:
            return (float(np.mean(vals)),) * 2  # rows and columns mixed: the detector's size prior, the mean
        return (vals[-1], vals[0])  # rows and columns swap

    def forward(self, pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Points ``(x, y)`` on the frame as given (``shape``) where this view, turned by ``degrees``,
        shows them (the inverse of :meth:`back`)."""
        if not self.degrees:
            raise ValueError("forward() maps points into views turned by degrees only")
        m, _ = self._matrix(shape)
        return np.asarray(pts, float) @ m[:, :2].T + m[:, 2]

    def back(self, pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        h, w = shape
        p = np.asarray(pts, float)
        if self.degrees:
            inv = cv2.invertAffineTransform(self._matrix(shape)[0])
            return p @ inv[:, :2].T + inv[:, 2]
        if self.turns == 1:
            return np.stack([w - 1 - p[:, 1], p[:, 0]], axis=1)
        if self.turns == 3:
            return np.stack([p[:, 1], h - 1 - p[:, 0]], axis=1)
        if self.turns == 2:
            return np.stack([w - 1 - p[:, 0], h - 1 - p[:, 1]], axis=1)
        return p.copy()

    def mean_of(self, mean_of, shape: tuple[int, int]):
        """The cine's mean (:data:`dmx.detect.detector.MeanOf`) seen in this view."""
        if mean_of is None:
            return None

        def viewed(corners, vertebra):
            got = mean_of({v: self.back(c, shape) for v, c in corners.items()}, vertebra)
            if got is None:
                return None
            mean, words = got
            return self.image(mean), words

        return viewed


#: The other views of a frame searched where it reports fewer than :data:`MIN_VIEW_BODIES` bodies, in
#: order (a later view is kept only where it reports more bodies than every earlier one; the search stops at
#: one reporting :data:`VIEW_ENOUGH`): bone dark (as
#: fluoroscopy displays it, or a MONOCHROME2 file stored inverted), the column lying across the
#: image (a landscape frame stored turned), either polarity, and upside down (a frame stored flipped top to
#: bottom, or turned a half turn: session 58), either polarity.
VIEWS = (
    _View(True, 0, "inverted (bone dark in it)"),
    _View(False, 1, "turned a quarter anticlockwise (the column across it)"),
    _View(False, 3, "turned a quarter clockwise (the column across it)"),
    _View(True, 1, "inverted and turned a quarter anticlockwise (bone dark, the column across it)"),
    _View(True, 3, "inverted and turned a quarter clockwise (bone dark, the column across it)"),
    _View(False, 2, "turned a half turn (the column upside down on it)"),
    _View(True, 2, "inverted and turned a half turn (bone dark, the column upside down on it)"),
)

#: Views turned an eighth, either way and either polarity: the network and the template detector look for
#: upright columns (the network was trained on columns within 20 degrees of upright); a column leaning
#: 40-60 degrees across the frame stands within 15 degrees of upright in one of them.
LEANING_VIEWS = (
    _View(False, 0, "turned an eighth anticlockwise (the column leaning in it)", 45.0),
    _View(False, 0, "turned an eighth clockwise (the column leaning in it)", -45.0),
    _View(True, 0, "inverted and turned an eighth anticlockwise (bone dark, the column leaning in it)", 45.0),
    _View(True, 0, "inverted and turned an eighth clockwise (bone dark, the column leaning in it)", -45.0),
)


def _detect_once(
    image: np.ndarray,
    *,
    mm_per_px,
    frame: int,
    model_path,
    method,
    mean_of,
) -> Detection:
    """:func:`detect_landmarks` on the frame as given (no other view)."""
    from dmx.detect.detector import (
        C2_MOVE_MARGIN,
        FACING_AGAINST,
        HEATMAP_THRESHOLD,
        bodies_mm_per_px,
        counted_from_own_c2,
        network_disagrees,
        reported_bodies,
        reported_count,
        run_combined,
        run_heatmap,
    )
    from dmx.detect.heatmap import NET_NAME, load_net

    method = detector_method(method)
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"detect_landmarks needs one 2-D frame, got shape {img.shape}")
    if min(img.shape) < MIN_SIDE_PX:
        reason = f"image too small for automatic detection ({img.shape[1]} x {img.shape[0]} px)"
        return Detection(Landmarks(frame=frame, corners_px={}), {v: reason for v in BODIES}, ())
    model = _cached_model(model_path)
    mpp = _mean_spacing(mm_per_px)
    warnings: list[str] = []
    searched_again: float | None = None  # without calibration: the size the bodies found were searched at
    body_size: float | None = None  # calibrated, nothing found at its size: the bodies' size found instead
    body_size_why = ""  # why the search over sizes was used (BODY_SIZE_SEARCH)
    if method == "heatmap":
        net_path = Path(model_path).with_name(NET_NAME) if model_path is not None else model_file(NET_NAME)
        result = run_heatmap(img, model, load_net(net_path), mm_per_px=mpp)
        if not any(b.confidence >= HEATMAP_THRESHOLD for b in result.bodies):
            reason = "no cervical column found on this frame"
            return Detection(Landmarks(frame=frame, corners_px={}), {v: reason for v in BODIES}, ())
        # the network's levels, as where it joins the template detector: two bodies or more, the C2
        # test (issue #12: a level off at full confidence on images unlike its training data)
        unconfirmed = network_disagrees(img, result, {}, model)
        bodies = [
            (b, HEATMAP_THRESHOLD, unconfirmed is None and b.confidence >= HEATMAP_THRESHOLD)
            for b in result.bodies
        ]
        disputed = None
        added: tuple[Vertebra, ...] = ()
        c2_walls = False
        neighbours: tuple[Vertebra, ...] = ()
        moved: float | None = None
        sources = {b.vertebra: "network" for b in result.bodies}
        on_mean: tuple = ()
        facing_out: tuple[Vertebra, ...] = ()
    else:
        net_path = (Path(model_path) if model_path is not None else model_file()).with_name(NET_NAME)
        net = load_net(net_path) if net_path.is_file() else None
        comb = run_combined(img, model, net, mm_per_px=mpp, mean_of=mean_of)
        if mpp is None:
            comb, searched_again = _searched_again(img, model, net, comb, mean_of)
        elif net is not None and (reported_count(comb) == 0 or comb.facing_out):
            # nothing at the calibrated size, or bodies left out there for facing against the rest: searched
            # as without calibration (the network at other sizes can label a column it labelled out of order
            # here), kept when it reports more and the bodies' size agrees
            wide, _ = _searched_again(
                img, model, net, run_combined(img, model, net, mm_per_px=None, mean_of=mean_of), mean_of
            )
            size = bodies_mm_per_px(wide, model)
            if (
                reported_count(wide) > reported_count(comb)
                and size is not None
                and abs(np.log(size / mpp)) <= np.log(BODY_SIZE_SPREAD)
            ):
                body_size_why = NOTHING_FOUND if reported_count(comb) == 0 else FACING_FEWER
                comb, body_size = wide, size
        result = comb.template or comb.network
        disputed, unconfirmed, added, c2_walls = comb.disputed, comb.unconfirmed, comb.added, comb.c2_walls
        neighbours, moved, on_mean = comb.neighbours, comb.moved, comb.on_mean
        facing_out = comb.facing_out
        if comb.weak_agreed:
            warnings.append(WEAK_CHAIN_KEPT.format(levels=", ".join(v.value for v in comb.weak_agreed)))
        sources = {b.vertebra: source for b, source, _ in comb.bodies}
        if comb.template is None and not added:
            if unconfirmed:
                return Detection(
                    Landmarks(frame=frame, corners_px={}),
                    {v: f"left out: {unconfirmed}" for v in BODIES},
                    (f"no body reported: {unconfirmed}",),
                )
            reason = "no cervical column found on this frame"
            return Detection(Landmarks(frame=frame, corners_px={}), {v: reason for v in BODIES}, ())
        if net is None and any(b.confidence >= model.conf_threshold for b in comb.template.bodies):
            warnings.append(
                f"levels not checked: the network {NET_NAME} was not found next to the detector model"
            )
        bodies = [(b, model.conf_threshold, reported) for b, _source, reported in comb.bodies]
        if comb.network is not None and not any(
            reported and source == "template" for _b, source, reported in comb.bodies
        ):
            # every body reported came from the network's column (and the searches next to it): its
            # body size is the one that fits them (the template detector's chain, which reported none,
            # may have settled on another size along the airway)
            result = comb.network
    if body_size is not None:
        warnings.append(
            BODY_SIZE_SEARCH.format(why=body_size_why, mpp=mpp, ratio=100 * (mpp / body_size - 1))
        )
    if mpp is None and searched_again is not None:
        warnings.append(
            "no calibration: body size searched over scales, then again at the size of the bodies found "
            f"({searched_again:.3f} mm per pixel; a search size, not a calibration)"
        )
    elif mpp is None:
        warnings.append(
            f"no calibration: body size searched over scales (best fit {result.mm_per_px:.3f} mm per pixel)"
        )
    corners: dict[Vertebra, np.ndarray] = {}
    confidence: dict[Vertebra, float] = {}
    missing: dict[Vertebra, str] = {}
    for b, threshold, reported in bodies:
        if reported:
            corners[b.vertebra] = b.corners_px
            confidence[b.vertebra] = round(float(b.confidence), 4)
        elif b.corners_px is None:
            missing[b.vertebra] = f"not found: {b.problem}"
        elif b.vertebra in facing_out:
            missing[b.vertebra] = f"left out: {FACING_AGAINST}"
        elif disputed and b.confidence >= threshold:
            missing[b.vertebra] = f"left out: {disputed}"
        else:
            missing[b.vertebra] = (
                f"left out: confidence {b.confidence:.2f} below {threshold:.2f} "
                "(outline weak, hidden or implausible)"
            )
    found_alone = [v for v in corners if sources.get(v) not in DERIVED_SOURCES]
    if len(found_alone) == 1 and sources.get(found_alone[0]) != "network":
        # one body, and at most the levels searched next to it: nothing checks its level or facing (the
        # network's column needs two), and the searched levels take theirs from it
        for v in corners:
            missing[v] = f"left out: {LONE_BODY}"
        warnings.append(f"no body reported: {LONE_BODY}")
        corners, confidence, neighbours, on_mean = {}, {}, (), ()
    if disputed:
        warnings.append(
            ("no body reported: " if not corners else "the template detector's bodies left out: ") + disputed
        )
    if facing_out and corners:
        warnings.append(FACING_LEFT_OUT.format(levels=", ".join(v.value for v in facing_out)))
    if unconfirmed and not corners:
        for v in BODIES:
            missing[v] = f"left out: {unconfirmed}"
        warnings.append(f"no body reported: {unconfirmed}")
    if moved is not None:
        warnings.append(NETWORK_MOVED.format(margin=moved, limit=C2_MOVE_MARGIN))
    if added:
        both = [v for v in corners if sources.get(v) == "template"]
        if comb.weak_agreed:  # kept by the two detectors' agreement, where the C2 test may not run
            how = LEVELS_AGREED
        elif comb.c2_untested:  # C2's place outside the field: the network's count alone
            how = LEVELS_UNTESTED
        elif comb.network is not None and counted_from_own_c2(
            reported_bodies(comb.network, HEATMAP_THRESHOLD)
        ):
            how = LEVELS_FROM_OWN_C2  # the C2 test took the levels from the network's own C2
        else:
            how = LEVELS_CONFIRMED
        warnings.append(
            NETWORK_ADDED.format(
                levels=", ".join(v.value for v in added),
                how=how,
                also=f" and by the bodies both found ({', '.join(v.value for v in both)})" if both else "",
            )
        )
    if c2_walls and Vertebra.C2 in corners:
        warnings.append(C2_WALLS)
    if neighbours:
        warnings.append(NEIGHBOUR_ADDED.format(levels=", ".join(v.value for v in neighbours)))
    for v, words in on_mean:
        warnings.append(MEAN_ADDED.format(level=v.value, frames=words))
    return Detection(
        Landmarks(frame=frame, corners_px=corners, confidence=confidence), missing, tuple(warnings)
    )


def _searched_again(img: np.ndarray, model, net, comb, mean_of=None) -> tuple:
    """``comb`` (a :class:`dmx.detect.detector.Combined` found without the pixel size) searched again at
    the size of its bodies (:func:`dmx.detect.detector.bodies_mm_per_px`), unless that reports fewer:
    the result kept and the size searched at (None: ``comb`` kept)."""
    from dmx.detect.detector import bodies_mm_per_px, reported_count, run_combined

    size = bodies_mm_per_px(comb, model)
    again = run_combined(img, model, net, mm_per_px=size, mean_of=mean_of) if size is not None else None
    if again is not None and reported_count(again) >= reported_count(comb):
        return again, size
    return comb, None


#: A calibrated study where nothing is found is searched again as one without calibration (the network
#: run at every size of its sweep, then both detectors at the size of the bodies found); what that finds
#: is kept when the bodies' size is within this factor of the model's mean body at the calibration
#: (adult C3-C7 bodies differ by about 10 % in depth). On the independent renderer's development studies
#: the network labelled columns out of order or a level off at the calibrated size and right at another
#: size of its sweep (issue #12, session 16).
BODY_SIZE_SPREAD = 1.3
#: Why the search over sizes was used on a calibrated study (:data:`BODY_SIZE_SEARCH`): nothing was reported
#: at the calibrated size, or fewer bodies than there, some left out for facing against the rest
#: (:data:`dmx.detect.detector.FACING_AGAINST`), and the search found more.
NOTHING_FOUND = "nothing was found"
FACING_FEWER = "some bodies found faced against the rest and were left out"
#: Warning of a calibrated study whose bodies were found by the search over sizes (:data:`BODY_SIZE_SPREAD`).
BODY_SIZE_SEARCH = (
    "{why} at the calibrated size; the bodies were found by the search over sizes used "
    "without calibration, and measure {ratio:+.0f} % against the model's mean body at the calibration "
    "({mpp:.3f} mm per pixel, which every mm value uses)"
)
#: The part of :data:`BODY_SIZE_SEARCH` that marks a detection made by the search over sizes.
BODY_SIZE_MARK = BODY_SIZE_SEARCH.split("{why}")[1].split("{ratio")[0]
#: Warning naming the bodies left out for facing against the rest of the column (:func:`dmx.detect.detector.
#: facing_by_repeat`).
FACING_LEFT_OUT = (
    "{levels} left out: the two detectors' bodies faced opposite ways, and what repeats level by level "
    "behind the bodies says these face the wrong way (anterior and posterior swapped); check the levels "
    "reported against the image"
)
#: Warning naming the bodies the learned network added at levels the template detector left empty.
NETWORK_ADDED = (
    "{levels} found by the learned network (heatmap.onnx), not by the template detector; "
    "their levels {how}{also}"
)
#: How :data:`NETWORK_ADDED` says the levels were checked: by the C2 test, or (a column reporting its own
#: C2 and at least :data:`dmx.detect.detector.MIN_REPORTED_WITH_C2` bodies, which the C2 test does not
#: weigh against other levels: :func:`dmx.detect.detector.counted_from_own_c2`) counted from that C2.
LEVELS_CONFIRMED = "confirmed by the C2 template"
LEVELS_FROM_OWN_C2 = (
    "counted from the C2 it outlined, not weighed against other levels (check them against C2)"
)
#: ... or, where the network's levels put C2 outside the exposed field (too near its edge to test) and it
#: reports at least :data:`dmx.detect.detector.MIN_REPORTED_C2_UNTESTED` bodies, its own count alone.
LEVELS_UNTESTED = (
    "counted by the learned network alone: where they put C2 is outside the image or too near its edge for "
    "the C2 template to test (check them against C2)"
)
#: ... or, where the template detector's weak column was kept because the network agrees with it
#: (:data:`WEAK_CHAIN_KEPT`), by that agreement: the C2 test may not have run there (C2 near the edge).
LEVELS_AGREED = (
    "kept because the template detector's weak column agrees with the network there (not tested on C2)"
)
#: Warning of a learned network's column that the C2 test moved one level higher
#: (:func:`dmx.detect.detector.c2_moved`).
NETWORK_MOVED = (
    "the learned network's levels moved one level higher: C2 (its dens) and the two bodies below it fit "
    "the templates clearly better there than at the network's own levels (by {margin:.2f}; a move needs "
    "{limit:.2f}); the network can count one level off, e.g. when heavy shoulders hide C7 (check the "
    "levels against C2)"
)
#: Warning of a C2 found from its walls (:func:`dmx.detect.detector.c2_from_walls`).
C2_WALLS = (
    "C2 found from its walls and inferior endplate (no shoulders beside the dens base): its inferior "
    "corners and posterior wall are measured; its superior corners are placed where the anterior wall "
    "ends and level with it on the posterior wall (check them; no disc angle uses them)"
)
#: Warning naming the bodies found next to a reported one
#: (:func:`dmx.detect.detector._extend_from_neighbours`).
NEIGHBOUR_ADDED = (
    "{levels} found next to the reported bodies, where the chain prior puts them (neither detector's "
    "column reached them; outline and confidence from the template detector's edge search)"
)
#: Warning naming a body found on the mean of the cine's frames moved with it
#: (:func:`dmx.detect.detector._extend_from_neighbours` with ``mean_of``).
MEAN_ADDED = (
    "{level} found on the mean of {frames}, each moved back with it by the tracker: too faint on the "
    "reference frame alone (e.g. under dense shoulders); its corners are those of the mean (check them)"
)
#: Why a body the template detector's chain reported alone is left out (every other level refused). A
#: lone body has no neighbour to check its level or facing by (the learned network's column already needs
#: two bodies) and gives no level value (a level needs two adjacent bodies). Issue #12, session 35: the
#: final output was one template body twice, both wrong (all-family 1160004, a C6 on a leaning bone-dark
#: column with its corners permuted, 61-74 px off; the independent renderer's held-out set A, seed 41, C7
#: reported as C6 on the machine of session 34); a lone body from the network was right once (1160002).
LONE_BODY = (
    "the template detector found one body alone, every other level refused: with no neighbour its level "
    "and facing cannot be checked, and one body gives no level value (place the landmarks by hand)"
)
#: Sources of bodies searched for next to a reported one
#: (:func:`dmx.detect.detector._extend_from_neighbours`): their level is counted from that body's, so
#: they do not count as its neighbour for :data:`LONE_BODY`. Issue #12, session 36: all-family 1220009,
#: the chain's lone "C5" (its posterior wall on the edge of the articular pillars over the body, 19 px
#: inside the true wall, confidence 0.95) and the C4 searched next to it were the final output.
DERIVED_SOURCES = ("neighbour", "mean")
#: The part of :data:`NETWORK_ADDED` that marks a detection the network took part in.
NETWORK_MARK = "found by the learned network"


_MODELS: dict[tuple[Path, int], object] = {}


def _cached_model(path: str | Path | None = None):
    """The detector model at ``path`` (None: :func:`model_file`), loaded once per file version."""
    from dmx.detect.model import load_model

    key = (Path(path) if path is not None else model_file()).resolve()
    stamp = (key, key.stat().st_mtime_ns)
    if stamp not in _MODELS:
        _MODELS[stamp] = load_model(key)
    return _MODELS[stamp]


def find_landmarks(
    sequence: Sequence,
    *,
    frame: int = 0,
    model_path: str | Path | None = None,
    method: str | None = None,
    mean_of=None,
    views: bool = True,
) -> Detection:
    """Run :func:`detect_landmarks` on ``sequence.frames[frame]`` with the sequence's calibration
    (``mean_of``: the cine around that frame, ``views``: the other views searched, as there)."""
    return detect_landmarks(
        sequence.frames[frame],
        mm_per_px=sequence.mm_per_px,
        frame=frame,
        model_path=model_path,
        method=method,
        mean_of=mean_of,
        views=views,
    )
