"""Follow every vertebral body, and the atlas, through the cine: :func:`track`.

Every frame is registered against the *reference* appearance of each body (the
template cut from the landmark frame), so errors do not accumulate; previous
frames only predict the starting guess (constant velocity of the rigid motion).
When that fails, candidates from the last good pose and from the neighbouring
bodies' motion are tried, with a coarse rotation/translation search
(:func:`cv2.matchTemplate`) on the coarsest pyramid level. A body that an
occluder covers (its robust cost above what it was next to the reference) is
registered a second time from where its neighbours carry it, and the fit of
lower robust cost kept (:meth:`_Tracker.reanchor`): an occluder's edge makes a
second optimum that moves with the occluder. A frame is reported NaN with a
reason rather than drifting silently.

C1 has no corners: when the landmarks give ``C1.arch_post`` it is followed as a rigid body too, from a
template around its anterior arch (:func:`dmx.tracking.atlas.arch_region_px`), by the same registration,
quality and reasons. It has transforms but NaN corners (so that the atlanto-dental interval can be carried
through the frames), and is left out of the anatomy check (it must never cost a body).

Quality (0..1) of a frame is the product of: the share of the template that
still matches the reference within noise (inliers), the share inside the image,
the normalised correlation over the inliers, the expected corner precision from
the fit's Hessian, convergence, and a plausible photometric gain. Frames below
:data:`TRUSTED_QUALITY` (default ``min_quality``) are NaN, with ``reason`` one of
:data:`LEFT_IMAGE`, :data:`NOT_FOUND`, :data:`DIVERGED`, :data:`IMPLAUSIBLE`,
:data:`OVERLAP`, :data:`ORDER`, :data:`REFERENCE_OUTSIDE`, :data:`INCONSISTENT`, :data:`BEHIND_STATIC`,
:data:`CORNER_BEHIND_STATIC`, :data:`UNCONFIRMED`, :data:`DRAGGED`; last, a body whose segments jump on one
frame alone is NaN there with :data:`JUMPED` (:func:`drop_segmental_jumps`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial

import cv2
import numpy as np

from dmx.anatomy import Vertebra
from dmx.errors import LandmarkError
from dmx.landmarks import Landmarks
from dmx.tracking.atlas import arch_region_px
from dmx.tracking.layers import Layers, static_layer, still_strength
from dmx.tracking.register import (
    Fit,
    FrameROI,
    OutsideFiltered,
    Template,
    _level_matrix,
    _level_matrix_inv,
    _rigid_inv,
    cut_radius,
    make_template,
    needed_box,
    needed_boxes,
    register,
    reweighted,
    rigid,
    rigid_params,
)
from dmx.tracking.reliability import (
    moving_otherwise,
    outlier_share,
    residual_variance,
    template_share,
    unreliable_mask,
)
from dmx.tracking.robust import (
    inconsistent,
    reject_inconsistent,
    reject_jumps,
    segmental_jumps,
    segmental_motion,
    static_mask,
)
from dmx.tracking.types import Tracks
from dmx.tracking.workers import ForkedChains, ForkedWorkers, can_fork

_log = logging.getLogger(__name__)

#: Ratio of the actual RMS corner error to the white-noise Cramer-Rao estimate of the fit, measured on
#: the phantom at three dose levels (4.4-4.6): neighbouring pixels' noise is correlated (detector blur,
#: prefilter, compression), so the pixels are not independent samples.
NOISE_CORRELATION = 4.5

#: The same ratio for the rotation of a body (``Tracks.rotation_precision_deg``): the actual RMS error of
#: the segmental angle over the white-noise estimate, measured on phantoms held out from the benchmarks
#: (seeds 11-14: default, 3000 and 1000 photons, JPEG q80; raw tracks, 1180 level-frames): 0.74 of
#: NOISE_CORRELATION. ``benchmarks/measurements.py`` checks it on its own cases.
ROTATION_NOISE_CORRELATION = 3.3

#: Gaussian pre-filter sigma (pixels) of the template the consistency weights' refit registers each body
#: with (:meth:`_Tracker.refine_precise`; ``track(..., precise_blur_px=)``). The passes pre-filter at 1 px
#: (``blur_sigma_px``), which the occlusion steps were developed with and which keeps a body under an
#: occluder from diverging; from their poses, through 0.5 px, the finer detail measures the pose with
#: less of the noise's weight (session 39, docs/tracking.md).
PRECISE_BLUR_PX = 0.5

#: :meth:`_Tracker.refine_precise` leaves a body as the passes left it when its finer-filtered template
#: holds less contrast (standard deviation of its pre-filtered values, weighed as the fit weighs them)
#: than this many times its calibrated expected residual: fainter than its noise there, the finer detail
#: is mostly noise. 1 = as much contrast as noise, not fitted. Seen: C7 under the independent renderer's
#: dense shoulders 0.59 (refined all the same, its per-frame error mean -0.35 deg against -0.29, SD 0.55
#: against 0.51); this project's phantoms' C7 under dense shoulders 1.1-2.4, every other body 2.6 or more;
#: a synthetic C7 in noise of 20 grey levels 0.91 (``tests/test_tracking.py``).
PRECISE_MIN_SNR = 1.0

#: :meth:`_Tracker.refine_precise` also registers every trusted frame with the finer template (True), or
#: only gives it to the consistency weights' refit, which registers each body on key frames (a degree of
#: motion apart) and carries the change to the frames between (False, the default). Every frame costs one
#: more fit per body-frame: on the 600-frame 1024² speed study 8.97 -> 12.30 s (16.8 -> 21.9 CPU-s), for
#: little more accuracy than the key frames give (the default look's C2-C3 median 0.084 deg either way;
#: the mandible case's C6-C7 p95 0.565 against 0.514 deg; docs/tracking.md, session 39).
PRECISE_EVERY_FRAME = False

#: A precise refit that moves a corner further than this (pixels) from the passes' pose is not taken: it
#: refines a pose, it does not find one.
PRECISE_REACH_PX = 1.0

#: A fit from a predicted pose is first run on its frame region filtered only this far (pixels, beyond
#: the filters' reach) around the template at the prediction (usually within 0.2 px); one that moves
#: further is run again on the whole region, so the result is the same (:meth:`_Tracker.fit_at`).
INNER_SLACK_PX = 3.0

#: Quality below which a tracked frame should not be used for measurement.
TRUSTED_QUALITY = 0.6

#: A body whose template holds little contrast above its own noise (C7 under dense shoulders) cannot be
#: matched with a high ZNCC or a gain near 1 even at its true pose: both tend to the share of the
#: template's variance that is signal, not noise (about 0.6 for C7 of the independent renderer's
#: heavy-shoulder study, against 0.97-0.99 for the bodies above it). Where a body's fit on the frames
#: next to the reference reaches less than this, the quality judges its ZNCC and gain against what that
#: fit reached, scaled to this (:func:`match_ceiling`); a body reaching more keeps the plain figures.
MATCH_CEILING = 0.9
#: ... but a body whose good match reaches less than half of that is judged no more leniently than one
#: reaching half: so faint a template (ZNCC below 0.45 at its own pose) is left to the plain figures.
MATCH_CEILING_MIN = 0.5
#: ... and only where that fit's gain agrees with its ZNCC within this, as the template's noise makes
#: them (both tend to the signal's share of the template's variance; C7 above: 0.59 and 0.60, 0.63 and
#: 0.66, 0.57 and 0.55 in three noise draws). Something else that lowers the ZNCC leaves the gain: C3
#: under a rod drifting over it in soft tissue 0.89 and 0.96; C2 of a fast synthetic column, registered
#: from the reference pose short of where it moved, 0.44 and 0.33.
MATCH_AGREEMENT = 0.05
#: ... and only where a neighbour's plainly good fit there carries the body to its fit within this share
#: of its size (C7 above: 0.5-1.2 % from C6 in three noise draws; C3 of a fast synthetic column, registered
#: from the reference pose short of where it moved, 33 % from C4).
MATCH_SUPPORT = 0.05

#: A fit on a frame next to the reference (:meth:`_Tracker._adjacent_fits`) that stops at the iteration limit
#: counts as converged when a fit started again from its result moves no corner more than this (pixels).
STATIONARY_PX = 0.1

#: A body's fit is clear of occluders when its robust cost (``Fit.robust_cost``, 0..1) is at most this
#: above the cost on the frames next to the reference (:meth:`_Tracker.clear`); otherwise it is refitted
#: from its neighbours.
CLEAR_MARGIN = 0.05

#: A refit from the neighbours replaces the fit when its robust cost (``Fit.robust_cost``, 0..1) is lower
#: by at least this.
REANCHOR_GAIN = 0.02

#: No refit when the neighbours carry the body to within this of its fit (corners, pixels): the same optimum.
REANCHOR_NEAR_PX = 0.5

#: A fit that no refit confirms is rejected (:data:`INCONSISTENT`) when its neighbours carry the body
#: further from it than this fraction of the body's size, plus ``DOUBT_STEP_FRAC`` of it per frame since
#: its anchor frame (a motion segment moves its body by well under 0.05 of its size per frame at 15 fps).
DOUBT_FRAC = 0.1
DOUBT_STEP_FRAC = 0.05

#: A body whose robust cost is more than this above its clear cost (``Fit.robust_cost``, 0..1) is *far from
#: clear*: it may be dragged by an occluder that moves with neither it nor its neighbours, and is not followed
#: (:data:`DRAGGED`) when no neighbour near to clear confirms it and one disputes it
#: (:meth:`_Tracker.reanchor`). On the ``occluders`` case of ``benchmarks/measurements.py --appearance`` the
#: fits a tube drags 2-25 px off cost 0.30-0.57 above clear, right fits half under the mandible 0.2-0.5 (a
#: neighbour near to clear confirms those), a noise-free synthetic cine drifting against its background
#: 0.25-0.42 along the whole column (no neighbour near to clear: nothing to dispute).
DRAG_EXCESS = 0.25

#: A refit from where a neighbour carries a body far from clear confirms its fit by landing on it only when
#: it started within this fraction of the body's size of it, plus ``DRAG_LAND_STEP_FRAC`` of it per frame
#: since the body's anchor frame (the neighbour's own motion since then): a dragging occluder makes a wide
#: basin that refits slide into from afar (the tube: from 6-14 px, 0.13-0.30 of C3's size, 5-25 frames
#: after the anchor; right fits next to an opaque block: from 3.2-6.1 px, 0.07-0.13, 17-34 frames after).
DRAG_LAND_FRAC = 0.04
DRAG_LAND_STEP_FRAC = 0.003
#: C2 (the top body, no body above it) far from clear, with C3 lost or as far from clear, is disputed by C4
#: across two segments from C2's last clear frame when a refit carried from there slides into its fit from
#: further than this fraction of its size plus ``DRAG_LAND_STEP_FRAC`` per frame (issue #13: on the
#: ``occluders`` seeds 62-64 such a C2 slid 1.3-4 px in 2-4 frames while 2.5-6.7 px off)
DRAG_TOP_FRAC = 0.02
#: ... only within this many frames of C2's last clear frame (a creeping drag leaves clear in 2-5 frames;
#: carried from further back across two segments, the neighbours' own motion exceeds the allowance)
DRAG_TOP_FRAMES = 8

#: A body whose region holds a layer that stays still while it moves (the shoulders over C7), at least
#: this strong against its template (:func:`dmx.tracking.layers.still_strength`), is registered again with
#: that layer taken out (:meth:`_Tracker.refine_still_layers`); the default phantom's bodies: 0.06-0.17.
STILL_LAYER_MIN = 0.25

#: The same on a quick estimate (16 frames, 8 rounds: about 0.75-0.8 of the full one), below which the
#: full estimate is not made (the shoulders over the mandible case's C6 and C7: 0.22-0.28; the default
#: phantom's bodies: 0.05-0.17).
STILL_LAYER_SCREEN = 0.2

#: ... and when, on this many of its frames, the fit with the still layer taken out has a mean robust
#: cost (``Fit.robust_cost``, 0..1) lower by at least ``STILL_LAYER_GAIN`` than the fit of the same body
#: layer without a still layer (a still band over a synthetic C7: 0.10; the shoulders over the phantom's
#: C6: 0.046; a clean synthetic C7: -0.07; the edge-enhanced phantom's C6: 0.014).
STILL_LAYER_PROBES = 8
STILL_LAYER_GAIN = 0.03

#: Fewest tracked frames from which the still layer is estimated.
STILL_LAYER_FRAMES = 8

#: Fewest trusted frames besides the reference from which the residual variance of a body's template
#: pixels is estimated (:meth:`_Tracker.reweight_inconsistent`); with fewer, the body is left as the
#: passes left it. A variance from n frames is known to sqrt(2 / (n - 1)) of itself: 53 % from 8 frames,
#: 32 % from 20; weights noisier than that cost more precision than the bias they remove.
CONSISTENCY_FRAMES = 20

#: :meth:`_Tracker.reweight_inconsistent` registers a body again on key frames spaced by this change of
#: its rotation (degrees) or of its centre (fraction of its size), and interpolates the change between
#: them: the bias it removes follows the posture (0.03 deg per degree of motion on the independent
#: renderer's C6), so a degree apart leaves it within a few thousandths of a degree.
CONSISTENCY_STEP_DEG = 1.0
CONSISTENCY_STEP_FRAC = 0.05

#: :meth:`_Tracker.reweight_inconsistent` also weighs down, at the finest level, the residual that misfits
#: coherently over a Gaussian of this many pixels (:func:`dmx.tracking.register.coherent_weights`): the
#: soft edge of the mandible or the shoulders, too faint pixel by pixel for the robust weights, pulled C3
#: and C6 (session 53, docs/tracking.md). Not for a faint body (``Template.match_ceiling`` below 1), whose
#: template is mostly the still structure over it: for the independent renderer's C7 under heavy shoulders
#: it made C6-C7's rotation ROM worse (error RMS 0.60 -> 0.74 deg on seeds 301-308), and applied in every
#: fit of the passes it lost that C7 (seed 301). 0: off.
COHERENT_SIGMA_PX = 4.0

#: Fewest confidently tracked frames (trusted, other than the reference) from which the reliability of a
#: body's template pixels is estimated (:meth:`_Tracker.refit_unreliable`); with fewer, the body is left
#: as the passes left it.
RELIABLE_FRAMES = 8

#: A tracked pose is taken to be within this many pixels of the truth when the template pixels' residuals
#: are measured (a pixel matching anywhere within it is no outlier): trusted poses under an occluder are
#: 0.2-1 px off.
RELIABLE_REACH_PX = 1.0

#: The template is cut again without its unreliable pixels only when they hold at least this share of its
#: weight (fewer change nothing worth a refit) and at most ``UNRELIABLE_MAX`` (what is left must still pin
#: the body: the outline over the ``occluders`` case's C2 and C3 and the soft tissue around them take
#: 60-64 % of their templates).
UNRELIABLE_MIN = 0.02
UNRELIABLE_MAX = 0.8

#: A refit with the cleaned template is followed only when its robust cost (``Fit.robust_cost``, 0..1) is at
#: most this above the cleaned template's cost on the confidently tracked frames. The occluder now in the
#: frame but no longer in the template costs there: right refits under a rod crossing the body (the test
#: scene) 0.26-0.53 above; wrong ones cost as much, so the neighbours' checks do the telling
#: (:meth:`_Tracker._refit_checks`), this only bounds how much of the body may be hidden.
REFIT_EXCESS = 0.5

#: A refit with the cleaned template that lands within this (corners, px) of where the template cut from the
#: reference frame lands from the same start, with a trusted quality, is the optimum the passes' guards gave
#: up (the cleaning changed nothing there): not followed.
REFIT_SAME_PX = 1.0

#: A body still lost under an occluder after :meth:`_Tracker.refit_unreliable` is registered again on its
#: fine detail (:meth:`_Tracker.refit_fine`): frames and template high-passed at this fraction of the body's
#: size (the passes use ``highpass_frac``, 0.1), so that an occluder that adds its density over the body
#: (the mandible over C3 in deep flexion) is left as its outline only, which the robust weights reject,
#: instead of an offset over the whole part it covers. On the development mandible case (seed 40) C3
#: there is followed at 0.02-0.03 of its size (within 0.3 px), lost again at 0.05.
FINE_HIGHPASS_FRAC = 0.03

#: Where a neighbour carries a lost body across a long gap in the fine refit's second round, their relative
#: rotation is predicted from the next level's (:meth:`_Tracker._chain_carried`) when that level turned by at
#: least this much (degrees) over the frames all three are tracked on; otherwise the neighbour's pose is
#: carried as it is.
CHAIN_MIN_SPREAD_DEG = 1.0

#: ... and so is a body followed with its robust cost this far above its clear cost (an occluder over a good
#: part of it: C3 and C4 under the mandible's band, 0.2-0.5; C2 under the skull base in extension, 0.15),
#: from its pose, unless a still layer was taken out of it (:meth:`_Tracker.refine_still_layers`). On the
#: development mandible cases (seeds 40, 42) C4-C5's p95 falls from 0.21-0.32 deg to 0.11-0.13 deg; from
#: 0.1, C2 moves by 0.1-0.2 deg on every frame in extension.
COVERED_EXCESS = 0.2

LEFT_IMAGE = "left the image"
NOT_FOUND = "not found (occluded or changed appearance)"
DIVERGED = "registration diverged"
IMPLAUSIBLE = "implausible jump from the previous frame"
OVERLAP = "overlaps a neighbouring body"
ORDER = "out of order with a neighbouring body"
REFERENCE_OUTSIDE = "body outside the reference frame"
INCONSISTENT = "moved inconsistently with its neighbours (occluded?)"
BEHIND_STATIC = "behind a collimator blade (too little of it in view)"
#: A corner behind a blade: the rest of the body, followed alone, misread its rotation by 7-26 degrees on a
#: development phantom of the acquisition look (760005: C2 with 54-75 % of it in view, each frame's stated
#: uncertainty about 0.27 degrees): the body is not followed there, so its levels' angles are null.
CORNER_BEHIND_STATIC = (
    "a corner behind a collimator blade or a saturated flat region, or outside the frame (its outline there "
    "not in view)"
)
UNCONFIRMED = "found again under an occluder, no tracked neighbour to confirm it"
DRAGGED = "under an occluder, and no neighbour clear of it confirms it (dragged?)"

#: Frames lost with these reasons are registered again with the cleaned template (an occluder may be the
#: cause: :meth:`_Tracker.refit_unreliable`); frames where the body left the image, lies behind a blade,
#: or broke the anatomy are not.
REFIT_REASONS = frozenset((NOT_FOUND, DIVERGED, IMPLAUSIBLE, INCONSISTENT, UNCONFIRMED, DRAGGED))


@dataclass
class _State:
    """Per-vertebra tracking state within one pass (forward or backward)."""

    history: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (t, 3x3) good fits
    lost: bool = False
    # the last frame where this body was clear of occluders (robust cost as on the frames next to the
    # reference) or confirmed by a refit, with every body's accepted pose on it: where its neighbours
    # carry it from (see _Tracker.reanchor)
    anchor: tuple[int, list[np.ndarray | None]] | None = None
    # the last frame where it was clear (a confirmation does not count: a drag creeps in confirmed steps)
    clear_anchor: tuple[int, list[np.ndarray | None]] | None = None


def _accepted(fit: Fit, quality: float) -> tuple[np.ndarray, float, float, float, float, float]:
    """A fit accepted for a frame, as the tracker records it (see ``_Accepted``)."""
    return (fit.transform, quality, fit.corner_std_px, fit.rotation_std_rad, fit.inliers, fit.robust_cost)


def _clip01(x: float) -> float:
    """``float(np.clip(x, 0.0, 1.0))`` of a Python float, without numpy's 8 us a call: NaN and -0.0 kept."""
    if x < 0.0:
        return 0.0
    if x > 1.0:
        return 1.0
    return x


def _quality(fit: Fit, *, min_visible: float, template: Template | None = None) -> float:
    """Confidence in 0..1 from inlier fraction, visibility, precision, convergence and gain.

    With ``template``, its ZNCC and gain are judged against the template's ``match_ceiling`` (see
    :data:`MATCH_CEILING`; 1.0 for every template whose fits next to the reference reach 0.9).
    """
    if not np.isfinite(fit.gain) or fit.gain <= 0:
        return 0.0
    zncc, gain = fit.zncc, fit.gain
    if template is not None and template.match_ceiling < 1.0:
        zncc, gain = zncc / template.match_ceiling, gain / template.match_ceiling
    q_in = _clip01((fit.inliers - 0.25) / 0.35)
    q_vis = _clip01((fit.visible - min_visible) / (1.0 - min_visible + 1e-9) * 2)
    q_prec = 1.0 / (1.0 + (fit.corner_std_px / 0.25) ** 2)
    q_corr = _clip01((zncc - 0.2) / 0.5)
    q_conv = 1.0 if fit.converged else 0.6
    q_gain = _clip01((gain - 0.3) / 0.3) * _clip01((3.0 - gain) / 1.5)
    return q_in * q_vis * q_prec * q_corr * q_conv * q_gain


def _noise_limited_factor(template: Template) -> float:
    """How much a fit's stated precision is widened for a template whose own noise limits its match:
    ``1 / sqrt(rho)``, ``rho`` the ZNCC its good match reaches (``match_ceiling * MATCH_CEILING``; see
    :data:`MATCH_CEILING`); 1 for every other template."""
    if template.match_ceiling >= 1.0:
        return 1.0
    return 1.0 / math.sqrt(template.match_ceiling * MATCH_CEILING)


def _plainly_good(fit: Fit) -> bool:
    """A fit next to the reference that is good by the plain figures: converged at a ZNCC of at least
    :data:`MATCH_CEILING` (a clear body's; it tells nothing of a faint template's ceiling)."""
    return fit.converged and fit.zncc >= MATCH_CEILING


def match_ceiling(fits: list[Fit]) -> float:
    """The ``match_ceiling`` of a template from its fits on the frames next to the reference
    (:data:`MATCH_CEILING`): the best converged fit's ZNCC over ``MATCH_CEILING``, at most 1 and at least
    :data:`MATCH_CEILING_MIN`, where its gain agrees (:data:`MATCH_AGREEMENT`); 1.0 when no fit converged
    with most of the body in view and its gain agreeing."""
    good = [
        f
        for f in fits
        if f.converged
        and f.visible > 0.9
        and np.isfinite(f.gain)
        and np.isfinite(f.zncc)
        and abs(f.gain - f.zncc) <= MATCH_AGREEMENT
    ]
    if not good:
        return 1.0
    return min(1.0, max(MATCH_CEILING_MIN, max(f.zncc for f in good) / MATCH_CEILING))


def _predict(state: _State, t: int) -> np.ndarray | None:
    """Initial guess for frame ``t`` from the last good poses (None before any)."""
    if not state.history:
        return None
    t1, a1 = state.history[-1]
    if len(state.history) < 2:
        return a1
    t0, a0 = state.history[-2]
    if abs(t1 - t0) > 3 or abs(t - t1) > 3:
        return a1
    # constant velocity: repeat the last inter-frame rigid motion, scaled to the frame gap
    rel = a1 @ _rigid_inv(a0)
    step = (t - t1) / (t1 - t0)
    theta = math.atan2(rel[1, 0], rel[0, 0])
    # fractional power of a rigid motion: rotate by step*theta about its fixed point
    if abs(theta) > 1e-6:
        m = np.eye(2) - rel[:2, :2]
        c = np.linalg.solve(m, rel[:2, 2])
        pred = rigid(step * theta, 0.0, 0.0, c)
    else:
        pred = np.eye(3)
        pred[:2, 2] = step * rel[:2, 2]
    return pred @ a1


def _same_call(a: tuple, b: tuple) -> bool:
    """Two registrations ``(body, frame, start pose, first level)`` are the same, the pose to the bit."""
    return a[:2] == b[:2] and a[3] == b[3] and a[2].dtype == b[2].dtype and a[2].tobytes() == b[2].tobytes()


def _visible(template: Template, a: np.ndarray | None, shape: tuple[int, int]) -> float:
    """Share of the body quadrilateral (or region polygon) inside the frame at pose ``a`` (sampled)."""
    if a is None:
        return 0.0
    return float(_in_frame(_samples(template, a), shape).mean())


def _in_frame(p: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which points ``p`` ``(n, 2)`` (x, y) lie within a frame of ``shape`` (rows, columns)."""
    h, w = shape
    return (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)


def _corner_behind(template: Template, a: np.ndarray, static: np.ndarray) -> bool:
    """Whether a corner of the body quadrilateral at pose ``a`` lies behind the static mask ``static`` (a
    collimator blade, its edge included) or outside the frame."""
    q = np.round(_corners(a, template.quad_px)).astype(np.int64)
    return bool(not _in_frame(q, static.shape).all() or static[q[:, 1], q[:, 0]].any())


def _clear(template: Template, a: np.ndarray, static: np.ndarray) -> float:
    """Share of the body quadrilateral (or region polygon) at pose ``a`` inside the frame and clear of the
    static mask ``static`` (a collimator blade: :func:`dmx.tracking.robust.static_mask`)."""
    p = np.round(_samples(template, a)).astype(np.int64)
    inside = _in_frame(p, static.shape)
    clear = np.zeros(len(p), bool)
    clear[inside] = ~static[p[inside, 1], p[inside, 0]]
    return float(clear.mean())


#: The 7x7 grid of :func:`_samples` over a quadrilateral: (49, 1) column and row fractions.
_GRID_U, _GRID_V = (
    g.ravel()[:, None] for g in np.meshgrid(np.linspace(0.0, 1.0, 7), np.linspace(0.0, 1.0, 7))
)


def _samples(template: Template, a: np.ndarray) -> np.ndarray:
    """Points sampling the body quadrilateral (or region polygon) at pose ``a``."""
    q = _corners(a, template.quad_px)
    if len(q) == 4:  # a 7x7 grid over the quadrilateral
        u, v = _GRID_U, _GRID_V
        top = q[0] + (q[1] - q[0]) * u
        bottom = q[3] + (q[2] - q[3]) * u
        p = top + (bottom - top) * v
    else:  # a star-shaped polygon: its vertices drawn towards the centre
        c = q.mean(axis=0)
        p = np.concatenate([c + f * (q - c) for f in (0.2, 0.45, 0.7, 0.95)] + [c[None]])
    return p


def _corner_gap(a: np.ndarray, b: np.ndarray, quad: np.ndarray) -> float:
    """The largest distance, along x or y (px), between ``quad``'s corners at poses ``a`` and ``b``."""
    return float(np.abs(_corners(a, quad) - _corners(b, quad)).max())


def _size(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return math.sqrt(0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))))


def _corners(a: np.ndarray, quad: np.ndarray) -> np.ndarray:
    return quad @ a[:2, :2].T + a[:2, 2]


def _search(
    template: Template,
    frame: np.ndarray,
    around: np.ndarray,
    *,
    radius_px: float,
    angles_deg: tuple[float, ...],
    blur: float,
) -> list[np.ndarray]:
    """Coarse search: best translation for each rotation offset of ``around``, on the coarsest level."""
    lvl = len(template.levels) - 1
    level = template.levels[lvl]
    scale = level.scale
    h, w = level.shape
    tmpl = np.zeros(h * w, np.float32)
    tmpl[level.idx] = level.values
    mask = np.zeros(h * w, np.float32)
    mask[level.idx] = level.weight
    tmpl = tmpl.reshape(h, w)
    mask = mask.reshape(h, w)
    if mask.sum() < 20:
        return []
    box = needed_box(template, around, frame.shape, radius_px + template.filter_pad_px + 4)
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        return []
    roi = FrameROI(frame, box, template)
    img = roi.images[lvl]
    out = []
    c_ref = template.centre_px
    s = _level_matrix(scale)
    s_inv = _level_matrix_inv(scale)
    for ang in angles_deg:
        cand = around @ rigid(math.radians(ang), 0.0, 0.0, c_ref)
        # resample the frame so the template is axis aligned: search grid = template grid translated
        n_pad = int(math.ceil(radius_px / scale)) + 1
        a_l = s @ cand @ s_inv
        g = np.array(
            [[1.0, 0.0, level.origin[0] - n_pad], [0.0, 1.0, level.origin[1] - n_pad], [0.0, 0.0, 1.0]]
        )
        m = a_l @ g
        m[0, 2] -= roi.box[0] / scale
        m[1, 2] -= roi.box[1] / scale
        big = cv2.warpAffine(
            img,
            m[:2],
            (w + 2 * n_pad, h + 2 * n_pad),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        res = cv2.matchTemplate(big, tmpl, cv2.TM_CCOEFF_NORMED, mask=mask)
        res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, score, _, loc = cv2.minMaxLoc(res)
        du, dv = loc[0] - n_pad, loc[1] - n_pad
        shift = np.eye(3)
        shift[0, 2] = du
        shift[1, 2] = dv
        # template point x maps to cand(x + shift) at this level
        out.append((score, s_inv @ a_l @ shift @ s))
    out.sort(key=lambda p: -p[0])
    return [a for _, a in out[:3]]


def _poly_overlap(p: np.ndarray, q: np.ndarray) -> float:
    """Intersection area of two quads as a fraction of the smaller one."""
    a = np.asarray(p, np.float32)
    b = np.asarray(q, np.float32)
    ha = cv2.convexHull(a)
    hb = cv2.convexHull(b)
    inter, _ = cv2.intersectConvexConvex(ha, hb)
    small = min(cv2.contourArea(ha), cv2.contourArea(hb))
    return float(inter / small) if small > 0 else 0.0


def track(
    frames: np.ndarray,
    landmarks: Landmarks,
    *,
    vertebrae: tuple[Vertebra, ...] | None = None,
    margin_frac: float = 0.15,
    blur_sigma_px: float = 1.0,
    highpass_frac: float | None = 0.1,
    n_levels: int | None = None,
    max_iterations: int = 12,
    min_quality: float = TRUSTED_QUALITY,
    min_visible: float = 0.6,
    max_rotation_step_deg: float = 20.0,
    max_step_frac: float = 0.6,
    max_overlap: float = 0.1,
    anatomy_check: bool = True,
    reacquire: bool = True,
    threads: int = 1,
    processes: int = 1,
    outlier_spread_px: float = 0.0,
    consistency_weights: bool = True,
    still_layers: bool = True,
    refit_unreliable: bool = True,
    refit_fine: bool = True,
    average_noisy: bool = True,
    grid_lines: bool = True,
    precise_blur_px: float | None = PRECISE_BLUR_PX,
) -> Tracks:
    """Track the four corners of every landmarked vertebral body (and C1, when landmarked) through the cine.

    Each body is a rigid body (rotation + translation). Every frame is registered against the body's
    appearance on the reference frame (``landmarks.frame``) with a robust inverse-compositional
    Lucas-Kanade fit; frames after the reference are tracked forwards, frames before it backwards. When the
    landmarks give ``C1.arch_post``, C1 is followed the same way from its anterior arch: it is in
    ``Tracks.vertebrae`` with transforms and quality, and NaN corners.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` grey frames, any integer or float dtype, display polarity (not modified).
    landmarks : Landmarks
        Corners of the bodies on frame ``landmarks.frame``.
    vertebrae : tuple of Vertebra, optional
        Subset to track (default: every body in ``landmarks``, and C1 when ``C1.arch_post`` is given),
        kept in top-to-bottom order.
    margin_frac : float
        Template = body dilated by this fraction of its size.
    blur_sigma_px : float
        Gaussian pre-filter sigma (pixels) for template and frames.
    highpass_frac : float or None
        Subtract a Gaussian blur of sigma = this fraction of the body size (removes smooth soft-tissue
        shading that does not move with the bone); None to disable.
    n_levels : int, optional
        Pyramid levels (default: chosen from the body size).
    max_iterations : int
        Gauss-Newton iterations per pyramid level.
    min_quality : float
        Frames whose quality falls below this are reported NaN (``reason`` says why).
    min_visible : float
        Fraction of the template that must lie inside the frame.
    max_rotation_step_deg, max_step_frac : float
        Largest plausible change between consecutive tracked frames: rotation in degrees and corner
        displacement as a fraction of the body size (beyond the constant-velocity prediction).
    max_overlap : float
        Largest allowed overlap of neighbouring bodies (fraction of the smaller body).
    anatomy_check : bool
        Check that neighbours keep their top-to-bottom order and do not overlap.
    reacquire : bool
        Search for a lost body in later frames (coarse search) instead of giving it up.
    threads : int
        Register the bodies of a frame on this many threads (OpenCV releases the GIL; results are
        identical to one thread). The fits share the GIL, so threads barely shorten the wall time:
        ``processes`` does.
    processes : int
        Register the bodies of a frame in this many processes: this one and ``processes - 1`` workers
        forked once the templates are made (:class:`dmx.tracking.workers.ForkedChains`; the frames are
        shared copy-on-write, not copied). The workers register bodies from their predicted poses, each
        body frame after frame up to a few frames ahead of this process, as if every fit were accepted
        as it is; this process registers the other bodies (how many: whatever keeps both sides busy),
        judges every fit, and uses a worker's only when it started from the pose this process predicts,
        to the bit. Everything else (acceptance, recovery, refits, checks) runs here, so the tracks
        are identical to the bit whatever the number. Where processes cannot be forked
        (:func:`dmx.tracking.workers.can_fork`), as many threads instead.
    outlier_spread_px : float
        Experimental (issue #13; default 0, off): reject, with every template pixel the robust fit
        rejects, its neighbours within this radius (full-resolution pixels), so that the soft edge of an
        occluder does not pull the pose (:func:`dmx.tracking.register.spread_outliers`). On the mandible
        case of ``benchmarks/tracking.py --appearance all`` 3 px removes most of C2's drift, but the result
        is not stable with the radius (2 px does not) and it changes the default figures; see
        docs/tracking.md.
    consistency_weights : bool
        Last, register every body not refitted with a still layer again on its trusted frames (but those
        ``refit_unreliable`` found again), with its template's pixels weighed by how steadily they follow it
        over those frames (issue #13: :meth:`_Tracker.reweight_inconsistent`): what moves otherwise than
        the body but too faintly for the robust weights (a neighbour's articular process, an occluder's
        edge in noise) no longer pulls the rotation. False: the poses so far.
    still_layers : bool
        After both passes, register again, with the still layer taken out, the bodies whose region holds
        a strong layer that does not move with them (the shoulders over C7; issue #13:
        :meth:`_Tracker.refine_still_layers`). False: the first passes' result.
    refit_unreliable : bool
        Then register again, where they were lost under an occluder, the bodies whose template holds
        pixels that do not move with them over their confidently tracked frames (an occluder's outline on
        the reference frame), with a template cut without those pixels (issue #13:
        :meth:`_Tracker.refit_unreliable`). False: leave them lost.
    refit_fine : bool
        Then register again on the body's fine detail the frames still lost under an occluder, and those
        followed far from clear: frames and template high-passed at :data:`FINE_HIGHPASS_FRAC` of its
        size, so that an occluder adding its density over the body is left as its outline, which the robust
        weights reject (issue #13: :meth:`_Tracker.refit_fine`; C3 and C4 under the mandible's band in deep
        flexion). False: leave them as the passes left them.
    average_noisy : bool
        Last, track again each body whose rotation precision shows it lies in several times the other
        bodies' noise (C7 under dense shoulders), on frames averaged over their neighbours moved with it
        (issue #13: :func:`dmx.tracking.temporal.refit_on_averages`; one fit of a noisy frame is pulled
        towards the still shoulders). False: the poses so far.
    precise_blur_px : float or None
        After the occlusion steps, each body's template is cut again through this finer pre-filter
        (:data:`PRECISE_BLUR_PX`) for the consistency weights' refit (and, with
        :data:`PRECISE_EVERY_FRAME`, every trusted frame is registered once more with it;
        :meth:`_Tracker.refine_precise`); None: the passes' template throughout.
    grid_lines : bool
        First, look for anti-scatter grid lines in the cine (:func:`dmx.tracking.grid.find_grid`: straight,
        evenly spaced, still) and register frames with them taken out (:func:`dmx.tracking.grid.remove_grid`;
        issue #13: a body moved by about a line's period is otherwise pulled to put the lines back in
        place). ``Tracks.grid_lines`` says what was taken out. False: the frames as given.

    Returns
    -------
    Tracks
        Raw (unsmoothed) tracks; see :func:`dmx.tracking.smooth_tracks` for smoothing.

    Raises
    ------
    LandmarkError
        If the landmark frame is not a frame of the cine.
    ValueError
        If ``frames`` is not ``(T, H, W)``.
    """
    frames_arr = np.asarray(frames)
    if frames_arr.ndim != 3:
        raise ValueError(f"frames must be (T, H, W), got shape {frames_arr.shape}")
    n_t = frames_arr.shape[0]
    ref = int(landmarks.frame)
    if not 0 <= ref < n_t:
        raise LandmarkError(None, f"landmark reference frame {ref} is outside the cine (frames 0..{n_t - 1})")
    found_grid = None
    if grid_lines:
        from dmx.tracking.grid import find_grid, without_grid

        found_grid = find_grid(frames_arr)
        if found_grid is not None:
            frames_arr = without_grid(frames_arr, found_grid, threads=max(threads, processes))
    fit_options = dict(
        margin_frac=margin_frac,
        blur_sigma_px=blur_sigma_px,
        highpass_frac=highpass_frac,
        n_levels=n_levels,
        max_iterations=max_iterations,
        min_quality=min_quality,
        min_visible=min_visible,
        max_rotation_step_deg=max_rotation_step_deg,
        max_step_frac=max_step_frac,
        max_overlap=max_overlap,
        anatomy_check=anatomy_check,
        reacquire=reacquire,
        outlier_spread_px=outlier_spread_px,
    )
    options = _Options(**fit_options)
    tracker = _Tracker(frames_arr, landmarks, vertebrae, options)  # templates cut from the reference frame
    tracker.calibrate_residuals()
    forked = processes > 1 and n_t > 1 and can_fork()
    if processes > 1 and not forked:
        threads = max(threads, processes)
    # forked now: the workers see the templates as calibrated, which stay so from here on
    workers = ForkedChains(tracker.chain_step, processes - 1) if forked else None
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 and workers is None else None
    try:
        tracker.run_pass(range(ref + 1, n_t), pool, workers)  # forwards from the reference frame
        tracker.run_pass(range(ref - 1, -1, -1), pool, workers)  # then backwards
    finally:
        if pool is not None:
            pool.shutdown()
        if workers is not None:
            workers.close()
    if still_layers:
        # the bodies' still layers looked for in processes forked now (they see the passes' poses)
        with ForkedWorkers(tracker._still_layer, processes - 1) if forked else nullcontext() as screen:
            tracker.refine_still_layers(screen)
    if refit_unreliable:
        tracker.refit_unreliable()
    if refit_fine:
        tracker.refit_fine()
    if precise_blur_px is not None and precise_blur_px < blur_sigma_px:
        with ForkedWorkers(tracker._precise_refit, processes - 1) if forked else nullcontext() as precise:
            tracker.refine_precise(precise_blur_px, precise)
    if consistency_weights:
        # the bodies refitted in processes forked now (they see the poses so far)
        with ForkedWorkers(tracker._consistent_refit, processes - 1) if forked else nullcontext() as refits:
            tracker.reweight_inconsistent(refits)
    tracks = tracker.tracks()
    if average_noisy:
        from dmx.tracking.temporal import refit_on_averages

        def again(crops: np.ndarray, marks: Landmarks, bodies: tuple[Vertebra, ...]) -> Tracks:
            return track(
                crops,
                marks,
                vertebrae=bodies,
                **fit_options,
                consistency_weights=consistency_weights,
                still_layers=still_layers,
                refit_unreliable=refit_unreliable,
                refit_fine=refit_fine,
                average_noisy=False,
                grid_lines=False,  # the crops are of frames already without them
                precise_blur_px=precise_blur_px,
            )

        tracks = refit_on_averages(frames_arr, tracks, landmarks, again, CLEAR_MARGIN)
    tracks = drop_segmental_jumps(tracks)
    if found_grid is not None:
        tracks = replace(tracks, grid_lines=found_grid.describe())
    return tracks


#: A body's frame is dropped where both its segments (or its one, the other body's other segment not)
#: move on that frame alone by more than this share of the smaller body of the pair
#: (:func:`drop_segmental_jumps`). On the held-out acquisition phantoms (800000+ tracked from their true
#: corners; 1040000+ from the detector's) the largest such move of a frame tracked right was 0.030 of the
#: body (1.0 px); a C3 registered on a look-alike 9.6 px beside it on frames 4 and 6 of 1040014 (its
#: landmarks 0.5 px from the detector), trusted at quality 0.71 and 0.67, moved its segments by about 0.28.
JUMP_FRAC = 0.1
JUMPED = "moved on this frame alone against both neighbours (registered on a look-alike beside it?)"


def drop_segmental_jumps(tracks: Tracks, limit: float = JUMP_FRAC) -> Tracks:
    """``tracks`` without the body-frames whose segments jump on that frame alone (:data:`JUMP_FRAC`,
    :func:`dmx.tracking.robust.segmental_jumps`): NaN with the reason :data:`JUMPED` (quality kept). The
    frame with the largest jump is judged first (:func:`dmx.tracking.robust.reject_jumps`) and the jumps
    computed again without what it drops: a wrong frame makes the frames either side of it seem to jump by
    half as much."""
    if tracks.transforms is None or tracks.centres_px is None or tracks.corners_px.shape[0] < 3:
        return tracks
    corners = tracks.corners_px
    ref = tracks.reference_frame
    sizes = np.array([_size(corners[ref, v]) for v in range(corners.shape[1])])
    pair = np.minimum(sizes[:-1], sizes[1:])
    trusted = np.isfinite(corners).all(axis=(2, 3))
    dropped: list[tuple[int, int]] = []
    judged: set[int] = set()
    while True:
        frac = segmental_jumps(tracks.transforms, tracks.centres_px, trusted) / pair
        frac[list(judged)] = np.nan
        if not np.nanmax(frac, initial=0.0) > limit:
            break
        t = int(np.nanargmax(np.nanmax(np.where(np.isfinite(frac), frac, -1.0), axis=1)))
        judged.add(t)
        for v in reject_jumps(frac[t], limit):
            if t != ref and trusted[t, v]:
                trusted[t, v] = False
                dropped.append((t, v))
    if not dropped:
        return tracks
    _log.debug("segmental jumps dropped (frame, body index): %s", dropped)

    def nan_at(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        a = a.copy()
        for t, v in dropped:
            a[t, v] = np.nan
        return a

    reason = [list(r) for r in tracks.reason]
    for t, v in dropped:
        reason[t][v] = JUMPED
    return replace(
        tracks,
        corners_px=nan_at(corners),
        transforms=nan_at(tracks.transforms),
        precision_px=nan_at(tracks.precision_px),
        rotation_precision_deg=nan_at(tracks.rotation_precision_deg),
        cost_excess=nan_at(tracks.cost_excess),
        reason=tuple(tuple(r) for r in reason),
    )


@dataclass(frozen=True)
class _Options:
    """The options of :func:`track` that the steps below use (see its parameters)."""

    margin_frac: float
    blur_sigma_px: float
    highpass_frac: float | None
    n_levels: int | None
    max_iterations: int
    min_quality: float
    min_visible: float
    max_rotation_step_deg: float
    max_step_frac: float
    max_overlap: float
    anatomy_check: bool
    reacquire: bool
    outlier_spread_px: float = 0.0


#: A body's accepted fit in one frame: (3x3 transform reference -> frame, quality, corner std in px,
#: rotation std in rad, inlier share, robust cost).
_Accepted = tuple[np.ndarray, float, float, float, float, float]


class _Tracker:
    """One :func:`track` call: the bodies' templates, the output arrays, and the steps that fill them.

    The steps, in the order :func:`track` runs them: cut a template of every body from the reference
    frame (:meth:`__init__`); calibrate each template's expected residual on the frames next to the
    reference (:meth:`calibrate_residuals`); then a forward and a backward pass (:meth:`run_pass`), each
    tracking frame after frame (:meth:`track_frame`): register every body from its predicted pose,
    accept the good and plausible fits, recover the others from the last pose, the neighbours' motion
    and a coarse search (:meth:`recover`), judge what was found (:meth:`judge`), refit the bodies an
    occluder covers from where their neighbours carry them (:meth:`reanchor`), check the anatomy, and
    record the accepted poses (:meth:`record`). After both passes, the bodies under a still layer are
    registered again without it (:meth:`refine_still_layers`), those lost under an occluder with a
    template cut without the pixels that do not move with them (:meth:`refit_unreliable`), and, on their
    fine detail, those still lost and those followed far from clear (:meth:`refit_fine`).
    """

    def __init__(
        self,
        frames: np.ndarray,
        landmarks: Landmarks,
        vertebrae: tuple[Vertebra, ...] | None,
        options: _Options,
    ) -> None:
        self.frames = frames
        self.opt = options
        self.ref = int(landmarks.frame)
        n_t = frames.shape[0]
        regions = {v: np.asarray(c, dtype=np.float64) for v, c in landmarks.corners_px.items()}
        arch = arch_region_px(landmarks)
        if arch is not None:
            regions[Vertebra.C1] = arch
        self.verts = tuple(v for v in Vertebra if v in regions and (vertebrae is None or v in vertebrae))
        self.n_v = n_v = len(self.verts)
        self.quads = [regions[v] for v in self.verts]
        self.centres = [q.mean(axis=0) for q in self.quads]
        self.sizes = [_size(q) for q in self.quads]
        # regions without corners (C1): tracked, but their corners stay NaN
        self.has_corners = [v in landmarks.corners_px for v in self.verts]

        self.corners = np.full((n_t, n_v, 4, 2), np.nan)
        self.transforms = np.full((n_t, n_v, 2, 3), np.nan)
        self.quality = np.full((n_t, n_v), np.nan)
        self.precision = np.full((n_t, n_v), np.nan)
        self.rotation_precision = np.full((n_t, n_v), np.nan)
        self.cost_excess = np.full((n_t, n_v), np.nan)  # robust cost above the clear one (Tracks.cost_excess)
        self.reason: list[list[str | None]] = [[None] * n_v for _ in range(n_t)]
        self.templates = self._make_templates()
        self.clear_cost = [math.inf] * n_v  # see calibrate_residuals
        self.faint: dict[int, float] = {}  # body -> the ZNCC its match reached, where below MATCH_CEILING
        self.study_ratio: float | None = None  # the median calibrated / own residual (calibrate_residuals)
        self.precise_refined: set[int] = set()  # bodies refine_precise cut a finer template for
        self.verified: set[int] = set()  # bodies of the current frame whose fit reanchor confirmed
        self.still_refitted: set[int] = set()  # bodies registered again with a still layer taken out
        # (frame, body) found again by refit_unreliable or refit_fine, or refitted there on fine detail
        self.recovered: set[tuple[int, int]] = set()
        self.fine_refitted: set[tuple[int, int]] = set()  # (frame, body) lost, found again by refit_fine
        # body -> the pixels refit_unreliable cut its template without (and the static ones): refit_fine's
        # second round cuts its fine template without them too
        self.unreliable_pixels: dict[int, np.ndarray] = {}
        # bodies of the current frame whose refit from a neighbour near to clear slid into their fit from afar
        self.slid: set[int] = set()
        self.top_dropped: set[int] = set()  # the top body, given up on the current frame by its own checks
        # with worker processes: the position in the pass of the frame being tracked, the bodies this
        # process registers itself (the workers the others), and each chained body's pose on the frame
        # before as the worker's chain took it (see _chain_on)
        self.pos = 0
        self.mine: set[int] = set()
        self.chained: dict[int, np.ndarray] = {}
        self._start_at_reference()

    def _make_templates(self) -> list[Template | None]:
        """Each body's appearance on the reference frame (None when it lies outside the frame)."""
        opt, quads = self.opt, self.quads
        reference = self.frames[self.ref]
        static = static_mask(reference)  # collimator blades: not part of any body
        self.static = static
        return [self._first_template(i, opt.blur_sigma_px) for i in range(len(quads))]

    def _first_template(self, i: int, blur_sigma_px: float) -> Template | None:
        """Body ``i``'s template cut from the reference frame with the passes' options and this pre-filter
        (None when it lies outside the frame)."""
        opt, q = self.opt, self.quads[i]
        try:
            return make_template(
                self.frames[self.ref],
                q,
                exclude_quads_px=tuple(self.quads[j] for j in (i - 1, i + 1) if 0 <= j < self.n_v),
                margin_frac=opt.margin_frac,
                # C1: the region holds its rim already
                margin_px=None if self.has_corners[i] else 0.0,
                blur_sigma_px=blur_sigma_px,
                n_levels=opt.n_levels,
                highpass_sigma_px=None if not opt.highpass_frac else opt.highpass_frac * _size(q),
                exclude_mask=self.static,
            )
        except ValueError:
            return None

    def _start_at_reference(self) -> None:
        """The reference frame: identity poses, landmark corners, quality 1 (or every frame lost)."""
        ref = self.ref
        for i in range(self.n_v):
            if self.templates[i] is None:
                for t in range(self.frames.shape[0]):
                    self.reason[t][i] = REFERENCE_OUTSIDE
                    self.quality[t, i] = 0.0
            else:
                self.transforms[ref, i] = np.eye(3)[:2]
                if self.has_corners[i]:
                    self.corners[ref, i] = self.quads[i]
                self.quality[ref, i] = 1.0
                self.precision[ref, i] = 0.0
                self.rotation_precision[ref, i] = 0.0
                self.cost_excess[ref, i] = 0.0

    def fit_at(
        self,
        i: int,
        frame: np.ndarray,
        guess: np.ndarray,
        first_level: int | None = None,
        template: Template | None = None,
        outlier_spread_px: float | None = None,
        settle: bool = True,
        coherent_sigma_px: float = 0.0,
    ) -> tuple[Fit, float]:
        """Register body ``i`` on ``frame`` from pose ``guess`` against its template (or ``template``, e.g.
        its body layer alone: :meth:`refine_still_layers`); the fit and its quality. ``outlier_spread_px``
        replaces the options' (:func:`dmx.tracking.register.spread_outliers`; :meth:`refit_fine`).

        A body in much noise may step back and forth about its optimum without settling within the
        tolerance. For a template whose own noise limits its match (:data:`MATCH_CEILING`), unless
        ``settle`` is False, a fit that stops at the iteration limit is started again where it stopped, and
        when that fit converges or moves no corner more than :data:`STATIONARY_PX`, it stopped at an
        optimum: the second fit counts as converged (:meth:`_settled`). ``coherent_sigma_px`` > 0 weighs down
        the residual that misfits coherently over an area (:func:`dmx.tracking.register.coherent_weights`;
        :meth:`_consistent_refit`)."""
        tpl = self.templates[i] if template is None else template
        assert tpl is not None
        spread = self.opt.outlier_spread_px if outlier_spread_px is None else outlier_spread_px
        max_iterations = self.opt.max_iterations
        slack = 6.0 + 2.0 ** len(tpl.levels) + tpl.filter_pad_px
        # the whole region, and the part a predicted fit filters (see below)
        cut = cut_radius(tpl.blur_sigma_px, tpl.highpass_sigma_px) + 1
        box, inner = needed_boxes(tpl, guess, frame.shape, (slack, INNER_SLACK_PX + cut))
        fit = None
        if box[2] - box[0] >= 8 and box[3] - box[1] >= 8:
            fit_here = partial(
                register,
                tpl,
                initial=guess,
                max_iterations=max_iterations,
                first_level=first_level,
                outlier_spread_px=spread,
                coherent_sigma_px=coherent_sigma_px,
            )
            if first_level is not None:
                # a prediction: filter only what a fit staying within INNER_SLACK_PX of it samples; the
                # same numbers as on the whole region, filtered only if the fit goes further
                try:
                    roi = FrameROI(frame, box, tpl, inner=inner)
                    fit = fit_here(roi)
                except OutsideFiltered:
                    fit = None
            if fit is None:
                roi = FrameROI(frame, box, tpl)
                fit = fit_here(roi)
            # the estimate moved beyond the region: redo the finest levels on a region around it
            fbox, box2 = needed_boxes(tpl, fit.transform, frame.shape, (2.0 + tpl.filter_pad_px, slack))
            if not roi.covers(fbox) and box2[2] - box2[0] >= 8 and box2[3] - box2[1] >= 8:
                roi = FrameROI(frame, box2, tpl)
                fit = register(
                    tpl,
                    roi,
                    fit.transform,
                    max_iterations=max_iterations,
                    first_level=1,
                    outlier_spread_px=spread,
                    coherent_sigma_px=coherent_sigma_px,
                )
        if fit is None:
            fit = Fit(guess, False, 0.0, 0.0, float("nan"), float("nan"), 0.0, float("inf"), 0)
        if settle and tpl.match_ceiling < 1.0:
            fit = self._settled(i, frame, fit, tpl, outlier_spread_px, coherent_sigma_px)
        return fit, _quality(fit, min_visible=self.opt.min_visible, template=tpl)

    def _settled(
        self,
        i: int,
        frame: np.ndarray,
        fit: Fit,
        template: Template,
        outlier_spread_px: float | None,
        coherent_sigma_px: float = 0.0,
    ) -> Fit:
        """``fit`` of body ``i`` on ``frame``, or where it stopped at the iteration limit with most of the
        body in view, a fit started again from its result that converges or moves no corner more than
        :data:`STATIONARY_PX`, counted as converged (see :meth:`fit_at`)."""
        if fit.converged or fit.visible <= 0.9 or not self.has_corners[i]:
            return fit
        again, _ = self.fit_at(
            i,
            frame,
            fit.transform,
            1,
            template,
            outlier_spread_px,
            settle=False,
            coherent_sigma_px=coherent_sigma_px,
        )
        if again.converged or _corner_gap(again.transform, fit.transform, self.quads[i]) <= STATIONARY_PX:
            return replace(again, converged=True)
        return fit

    def fit_on_frame(
        self, i: int, t: int, guess: np.ndarray, first_level: int | None = None
    ) -> tuple[Fit, float]:
        """:meth:`fit_at` on frame ``t``."""
        return self.fit_at(i, self.frames[t], guess, first_level)

    def chain_step(
        self, i: int, history: list[tuple[int, np.ndarray]], t: int
    ) -> tuple[tuple[tuple, tuple[Fit, float]], list[tuple[int, np.ndarray]] | None]:
        """What a worker process runs (:class:`ForkedChains`): body ``i`` registered on frame ``t`` from the
        pose its ``history`` (as :meth:`record` keeps it) predicts; the call and its fit, and the history
        as it would be were the fit accepted as it is (None when it would not be: the chain ends)."""
        call = (i, t, _predict(_State(history=history), t), 1 if len(history) >= 2 else None)
        fit = self.fit_on_frame(*call)
        if fit[1] < TRUSTED_QUALITY:
            return (call, fit), None
        return (call, fit), [*history, (t, fit[0].transform)][-3:]

    def calibrate_residuals(self) -> None:
        """Calibrate the expected residual of a good match on the frames next to the reference.

        Their noise, compression and blur are the study's, which the template's own noise
        estimate may miss.
        """
        ratios: dict[int, float] = {}  # calibrated / the template's own estimate, per body calibrated
        first = self._adjacent_fits()
        for i in range(self.n_v):
            tpl = self.templates[i]
            if tpl is None:
                continue
            scale = self._calibrated_scale(i, tpl, first[i])
            if scale is not None:
                ratios[i] = scale / tpl.residual_scale
                self.templates[i] = tpl = replace(tpl, residual_scale=scale)
        # a body not registered on the frames next to the reference (it moves further between frames
        # than an unpredicted start reaches: C2 of a fast 1024-px cine) takes the median ratio of the
        # others: noise correlation, compression and blur are the study's, not the body's (issue #13:
        # on the independent renderer's 12-bit study the template's estimate was 7x too small, so C2's
        # right fits counted a third of their pixels as inliers and were all rejected). Not C1's arch:
        # a thin strip the mandible crosses, kept strict it is lost rather than confirming a dragged C2
        # (tests/test_tracking_occlusion.py: with the ratio it followed the mandible and C2 with it)
        if ratios:
            ratio = float(np.median(list(ratios.values())))  # >= 1: a calibration never lowers the scale
            self.study_ratio = ratio
            for i in range(self.n_v):
                tpl = self.templates[i]
                if tpl is not None and i not in ratios and self.has_corners[i]:
                    self.templates[i] = replace(tpl, residual_scale=tpl.residual_scale * ratio)
        fits = self._adjacent_fits()
        further: dict[int, list[Fit]] | None = None
        for i, own in fits.items():
            tpl = self.templates[i]
            assert tpl is not None
            # the ZNCC and gain its template can reach (MATCH_CEILING), where a neighbour's plainly good fit
            # carries it to where its own fit put it
            ceiling = match_ceiling([f for k, f in enumerate(own) if self._supported(i, k, f, fits)])
            if ceiling == 1.0 and not any(_plainly_good(f) for f in own):
                # not plainly clear, yet no fit next to the reference told how faint: one noisy fit (the
                # only one where the reference is the cine's first frame) may miss MATCH_AGREEMENT; the
                # frames one further out are looked at too
                if further is None:
                    further = self._adjacent_fits(step=2)
                more = further.get(i, [])
                ceiling = match_ceiling([f for k, f in enumerate(more) if self._supported(i, k, f, further)])
            if ceiling < 1.0:
                self.templates[i] = tpl = replace(tpl, match_ceiling=ceiling)
                self.faint[i] = round(ceiling * MATCH_CEILING, 3)
                _log.debug("%s: match ceiling %.2f", self.verts[i].value, ceiling)
            # the robust cost of a body clear of occluders, against the calibrated residual
            costs = []
            for fit in own:
                q = _quality(fit, min_visible=self.opt.min_visible, template=tpl)
                if q >= self.opt.min_quality and np.isfinite(fit.robust_cost):
                    costs.append(fit.robust_cost)
            self.clear_cost[i] = min(costs, default=math.inf)

    def _adjacent_fits(self, step: int = 1) -> dict[int, list[Fit]]:
        """Every body registered on the frames next to the reference (``step`` frames from it) from the
        identity with its template as it is. A body in much noise may step back and forth about its
        optimum without settling within the tolerance: where such a fit stops at the iteration limit and
        a neighbour's plainly good fit carries the body to it (:meth:`_supported`), it is settled
        (:meth:`fit_at`): C7 under the independent renderer's dense shoulders did not converge there in
        one noise draw of six, and left uncalibrated, its expected residual was taken from the other
        bodies' ratio, 3.4 times too small. A fit short of a body that moved beyond reach may stop the
        same way: the neighbour's fit tells."""
        ref, n_t = self.ref, self.frames.shape[0]
        adjacent = [t for t in (ref + step, ref - step) if 0 <= t < n_t]
        fits = {
            i: [self.fit_at(i, self.frames[t], np.eye(3))[0] for t in adjacent]
            for i in range(self.n_v)
            if self.templates[i] is not None
        }
        return {
            i: [
                f
                if not self._supported(i, k, f, fits)
                else self._settled(i, self.frames[adjacent[k]], f, self.templates[i], None)
                for k, f in enumerate(own)
            ]
            for i, own in fits.items()
        }

    def _supported(self, i: int, k: int, fit: Fit, fits: dict[int, list[Fit]]) -> bool:
        """Body ``i``'s fit on the ``k``-th frame next to the reference is where a neighbour's fit there,
        plain and good (ZNCC at least :data:`MATCH_CEILING`, converged), carries it: within
        :data:`MATCH_SUPPORT` of its size (see :meth:`calibrate_residuals`)."""
        if not self.has_corners[i]:
            return False
        quad = self.quads[i]
        reach = MATCH_SUPPORT * _size(quad)
        for j in (i - 1, i + 1):
            other = fits.get(j)
            if not other or not self.has_corners[j]:
                continue
            f = other[k]
            if _plainly_good(f) and _corner_gap(f.transform, fit.transform, quad) <= reach:
                return True
        return False

    def _calibrated_scale(self, i: int, tpl: Template, fits: list[Fit] | None = None) -> float | None:
        """Body ``i``'s expected residual with template ``tpl`` calibrated on the frames next to the
        reference, registered from the identity (see :meth:`calibrate_residuals`; ``fits``: those fits,
        made with ``tpl``, when at hand), never below the template's own estimate; None when no fit there
        converged to a plausible residual."""
        if fits is None:
            ref, n_t = self.ref, self.frames.shape[0]
            fits = [
                self.fit_at(i, self.frames[t], np.eye(3), template=tpl)[0]
                for t in (ref + 1, ref - 1)
                if 0 <= t < n_t
            ]
        scales = []
        for fit in fits:
            # a wrong fit (motion beyond reach of an unpredicted start) leaves residuals far above noise
            if (
                fit.converged
                and fit.visible > 0.9
                and np.isfinite(fit.residual_scale)
                and fit.residual_scale < 20.0 * tpl.residual_scale
            ):
                scales.append(fit.residual_scale)
        return max(tpl.residual_scale, float(np.min(scales))) if scales else None

    def refine_precise(self, blur_sigma_px: float, workers: ForkedWorkers | None = None) -> None:
        """Give every body a template cut through a finer pre-filter for the consistency refit, and with
        :data:`PRECISE_EVERY_FRAME` register every trusted frame once more with it (issue #13; session 39).

        The passes pre-filter frames and templates with a 1 px Gaussian (:func:`track`'s
        ``blur_sigma_px``), which keeps a body under an occluder from diverging and which the occlusion
        steps were developed with; it also drops fine detail that measures the pose, and weighs the noise
        it keeps more. Here each body's template is cut again through ``blur_sigma_px``
        (:data:`PRECISE_BLUR_PX`, 0.5 px), its expected residual calibrated as :meth:`calibrate_residuals`
        calibrates the passes' (the study's ratio where the body is not registered next to the
        reference). With :data:`PRECISE_EVERY_FRAME` (off by default: one more fit per body-frame for
        little more accuracy), every trusted frame but the reference is registered with it from the
        body's pose (finest level first), the refit taken when trusted and no corner moves more than
        :data:`PRECISE_REACH_PX`, the frame keeping its quality and its stated precision, the passes' (an
        upper bound: the factors that turn a fit's white-noise precision into the error it makes,
        :data:`NOISE_CORRELATION` and :data:`ROTATION_NOISE_CORRELATION`, were measured through the passes'
        pre-filter). The new template replaces the body's (its clear cost stays the passes', read only by
        their steps) for the consistency weights that follow, whose refits keep the passes' precision too
        (it also tells :func:`dmx.tracking.temporal.noisy_bodies` which body lies in more noise than the
        others: measured through the finer pre-filter, C7 under the phantom's dense shoulders, seed 47, was
        no longer chosen, and C6-C7 read 0.55 deg off at p95 against 0.37).

        Left as the passes left them: a body whose finer template holds less contrast than
        :data:`PRECISE_MIN_SNR` times its noise, a body a still layer was taken out of
        (:meth:`refine_still_layers`: its own template and frames), and the frames the occlusion steps
        found again (``recovered``: refitted with their own templates). With ``workers``, the bodies are
        refitted in them and here together (the same result).
        """
        bodies = [(i, blur_sigma_px) for i in range(self.n_v)]
        done = workers.map(bodies) if workers is not None else [self._precise_refit(*b) for b in bodies]
        for i, result in enumerate(done):
            if result is None:
                continue
            template, refits = result
            # its clear cost stays the passes': only the passes' steps, all done by now, read it
            self.templates[i] = template
            self.precise_refined.add(i)
            for t, a in refits:
                self._set_pose(t, i, a)

    def _precise_refit(
        self, i: int, blur_sigma_px: float
    ) -> tuple[Template, list[tuple[int, np.ndarray]]] | None:
        """Body ``i``'s finer template and its refits ``(t, pose)`` (see :meth:`refine_precise`; none
        unless :data:`PRECISE_EVERY_FRAME`), or None when the body is left as it is."""
        tpl = self.templates[i]
        if tpl is None or not self.has_corners[i] or i in self.still_refitted:
            return None
        fine = self._first_template(i, blur_sigma_px)
        if fine is None:
            return None
        scale = self._calibrated_scale(i, fine)
        if scale is None:
            if self.study_ratio is None:
                return None
            scale = fine.residual_scale * self.study_ratio
        fine = replace(fine, residual_scale=scale)
        level = fine.levels[0]
        if level.weight.sum() <= 0:
            return None
        mean = np.average(level.values, weights=level.weight)
        contrast = float(np.sqrt(np.average((level.values - mean) ** 2, weights=level.weight)))
        if contrast < PRECISE_MIN_SNR * scale:
            _log.debug(
                "%s: contrast %.2f of its noise through the finer pre-filter: left",
                self.verts[i].value,
                contrast / scale,
            )
            return None
        return fine, self._precise_frames(i, fine) if PRECISE_EVERY_FRAME else []

    def _precise_frames(self, i: int, fine: Template) -> list[tuple[int, np.ndarray]]:
        """Body ``i``'s trusted frames (but the reference and those the occlusion steps found again)
        registered with ``fine`` from their poses: ``(t, pose)`` where the refit is trusted and moves no
        corner more than :data:`PRECISE_REACH_PX` (:data:`PRECISE_EVERY_FRAME`)."""
        refits = []
        for t in np.flatnonzero(self._tracked(i)).tolist():
            if t == self.ref or (t, i) in self.recovered:
                continue
            a = self._pose(t, i)
            fit, q = self.fit_at(i, self.frames[t], a, 1, template=fine)
            if q >= self.opt.min_quality and _corner_gap(fit.transform, a, self.quads[i]) <= PRECISE_REACH_PX:
                refits.append((t, fit.transform))
        return refits

    def clear(self, i: int, fit: _Accepted) -> bool:
        """Body ``i``'s accepted fit is clear of occluders: its robust cost is as on the frames next to the
        reference (within :data:`CLEAR_MARGIN`)."""
        return fit[5] <= self.clear_cost[i] + CLEAR_MARGIN

    def plausible(self, i: int, a: np.ndarray, pred: np.ndarray | None, last: np.ndarray | None) -> bool:
        """Pose ``a`` of body ``i`` is within a plausible step of the last pose and of the prediction."""
        tpl = self.templates[i]
        assert tpl is not None
        if last is not None:
            rel = a @ _rigid_inv(last)
            if abs(math.degrees(math.atan2(rel[1, 0], rel[0, 0]))) > self.opt.max_rotation_step_deg:
                return False
        if pred is not None:
            d = _corner_gap(a, pred, self.quads[i])
            if d > self.opt.max_step_frac * tpl.size_px:
                return False
        return True

    def run_pass(
        self, order: range, pool: ThreadPoolExecutor | None, workers: ForkedChains | None = None
    ) -> None:
        """Track frame after frame in ``order``, starting from the reference poses."""
        at_ref: list[np.ndarray | None] = [np.eye(3) if tpl is not None else None for tpl in self.templates]
        states = [
            _State(
                history=[(self.ref, np.eye(3))], anchor=(self.ref, at_ref), clear_anchor=(self.ref, at_ref)
            )
            for _ in range(self.n_v)
        ]
        if workers is not None:
            workers.begin(order)
            self.chained = {}
            if not self.mine:  # this process's share to start with (see _chain_on)
                bodies = [i for i in range(self.n_v) if self.templates[i] is not None]
                self.mine = set(bodies[len(bodies) - max(0, len(bodies) // (len(workers) + 1) - 1) :])
            self._chain_on(0, states, workers)
        for k, t in enumerate(order):
            self.pos = k
            self.track_frame(t, states, pool, workers)
            if workers is not None and k + 1 < len(order):
                self._chain_on(k + 1, states, workers)

    def track_frame(
        self,
        t: int,
        states: list[_State],
        pool: ThreadPoolExecutor | None,
        workers: ForkedChains | None = None,
    ) -> None:
        """Find every body on frame ``t`` (see the class docstring for the steps); with ``workers``, at
        position ``self.pos`` of the pass (:meth:`_chain_on`)."""
        frame = self.frames[t]
        preds = [_predict(states[i], t) for i in range(self.n_v)]
        firsts = self._predicted_fits(t, preds, states, pool, workers)
        fits: list[_Accepted | None] = [None] * self.n_v
        # accept the predicted fits that are good; the others fall back, once their neighbours are known
        pending: list[int] = []
        for i in range(self.n_v):
            if self.templates[i] is None:
                continue
            first = firsts[i]
            if first is not None and first[1] >= TRUSTED_QUALITY:
                last = states[i].history[-1][1] if states[i].history else None
                if self.plausible(i, first[0].transform, preds[i], last):
                    fit0 = first[0]
                    fits[i] = _accepted(fit0, first[1])
                    continue
            pending.append(i)
        # fallbacks next to a tracked neighbour first (bottom-up and top-down chains)
        while pending:
            nxt = [
                k for k in pending if any(0 <= j < self.n_v and fits[j] is not None for j in (k - 1, k + 1))
            ]
            i = nxt[0] if nxt else pending[0]
            pending.remove(i)
            best, why = self.recover(i, t, frame, firsts[i], preds[i], states, fits)
            fits[i] = self.judge(i, t, frame, best, why, preds[i], states[i])
        self.reanchor(t, frame, fits, states)
        for i in range(self.n_v):
            if fits[i] is not None:
                self.quality[t, i] = fits[i][1]
        if self.static is not None:
            self.check_static(t, fits)
        if self.opt.anatomy_check:
            self.check_neighbours(t, fits)
            _check_anatomy(
                fits, self.quads, self.reason, self.quality, t, self.opt.max_overlap, self.has_corners
            )
        self.record(t, fits, states)

    def reanchor(self, t: int, frame: np.ndarray, fits: list[_Accepted | None], states: list[_State]) -> None:
        """Refit the bodies of frame ``t`` that an occluder covers from where their neighbours carry them.

        An occluder's edge over a body makes a second optimum of the registration that moves with the
        occluder; started near it (from the previous frame's pose, already pulled a little), the fit
        follows it with a high quality. A body whose fit is not clear of occluders (:meth:`clear`) is
        registered again from its pose on its anchor frame (``_State.anchor``), moved as its clearest
        tracked neighbour moved since (unless that is within :data:`REANCHOR_NEAR_PX` of the fit); the
        fit with the lower robust cost (``Fit.robust_cost``, by :data:`REANCHOR_GAIN`) is kept, if the
        step from the last pose is plausible and the neighbour agrees with it: pixels the occluder covers
        cost the most at either optimum, the body's own match within noise at the right one only. A
        refit that replaces the fit, or lands on it (within 0.1 px), confirms it: the frame becomes the
        body's anchor (``self.verified``) as a clear one does. A fit that nothing confirms, and that lies
        further from where the neighbours carry the body than the segment could have moved since the
        anchor (:data:`DOUBT_FRAC`, :data:`DOUBT_STEP_FRAC`), is rejected with :data:`INCONSISTENT`.

        Two bodies that an occluder moving with neither drags together (a tube in the soft tissue over
        C2-C3) agree with each other and confirm each other. A fit far from clear (more than
        :data:`DRAG_EXCESS` above its clear cost: :meth:`_far_from_clear`) is therefore not followed
        (:data:`DRAGGED`) when the only neighbour that confirms it is as far from clear (or is C1's arch)
        and the neighbour on its other side, near to clear, disputes it (:meth:`_disputed`), or when
        nothing confirms it and that neighbour disputes it; a body that leant on a neighbour then found
        dragged goes with it. A refit that slid into a fit far from clear from further than
        :meth:`_land_px` confirms nothing (a dragging occluder makes a wide basin).

        C2, the top body, has no body above it, and C1's arch confirms nothing: dragged alone (C3 lost or
        as far from clear beside it), it is disputed by C4 across two segments from its last clear frame
        (:meth:`_disputed`, :data:`DRAG_TOP_FRAC`), and found again far from clear (lost on the frame
        before), in full view, it is not followed (:data:`UNCONFIRMED`).
        """
        self.verified = set()
        self.slid = set()
        self.top_dropped = set()  # the top body given up by the checks that only it gets (issue #13)
        leaning: dict[int, int] = {}  # body -> the neighbour far from clear that alone confirmed it
        for i in range(self.n_v):
            fit, tpl, anchor = fits[i], self.templates[i], states[i].anchor
            if fit is None or tpl is None or anchor is None or self.clear(i, fit):
                continue
            t0, poses0 = anchor
            a_i0 = poses0[i]
            if a_i0 is None:
                continue
            # carriers: the tracked neighbours, bodies before C1's arch, the clearest first; the next one
            # only when the first neither finds the same optimum nor a better one
            carriers = [
                j
                for j in (i - 1, i + 1)
                if 0 <= j < self.n_v and fits[j] is not None and poses0[j] is not None
            ]
            carriers.sort(key=lambda k: (not self.has_corners[k], fits[k][5] - self.clear_cost[k]))  # type: ignore[index]
            apart = math.inf  # how far the neighbours carry the body from its fit (corners, px)
            for j in carriers:
                fit_j = fits[j]
                assert fit_j is not None and poses0[j] is not None
                cand = fit_j[0] @ _rigid_inv(poses0[j]) @ a_i0
                found = self._carried_refit(i, j, frame, fit, fit_j, cand, states[i], t)
                if found is not None:
                    if found is not fit:
                        fits[i] = found
                    elif (
                        self.has_corners[i]
                        and self._far_from_clear(i, fit)
                        and self._far_from_clear(j, fit_j)
                    ):
                        # confirmed only by a neighbour as far from clear as itself: when the neighbour
                        # on its other side, near to clear, does not confirm it, an occluder that moves
                        # with neither (a tube in the soft tissue) drags both together (issue #13)
                        across = self._disputed(i, t, frame, fits, anchor, states[i].clear_anchor)
                        if across:
                            self._reject(t, i, fits, DRAGGED)
                            if across == 2:
                                self.top_dropped.add(i)
                        else:
                            leaning[i] = j
                    break
                apart = min(
                    apart,
                    _corner_gap(cand, fit[0], self.quads[i]),
                )
            else:
                # nothing confirms the fit, and the neighbours put the body further from it than the
                # segment can move in the frames since the anchor: an occluder's optimum, not followed
                # (C1's arch is never rejected this way: it has no corners and is no body)
                allowed = (DOUBT_FRAC + DOUBT_STEP_FRAC * abs(t - t0)) * tpl.size_px
                if self.has_corners[i] and carriers and apart > allowed:
                    self._reject(t, i, fits, INCONSISTENT)
                elif (
                    self.has_corners[i]
                    and self._far_from_clear(i, fit)
                    and (
                        i in self.slid
                        or (across := self._disputed(i, t, frame, fits, anchor, states[i].clear_anchor))
                    )
                ):
                    # far from clear, nothing confirms it, and where a neighbour near to clear carries it
                    # the refit lands elsewhere, or slides from afar into its optimum: an occluder drags
                    # it (issue #13; its neighbour under the same occluder may just have been rejected)
                    self._reject(t, i, fits, DRAGGED)
                    if i not in self.slid and across == 2:
                        self.top_dropped.add(i)
                elif self.has_corners[i] and not carriers and states[i].lost:
                    # found again (lost on the frame before) under an occluder, with no tracked neighbour
                    # to check it against: where the search lands then depends on the occluder's edges
                    self._reject(t, i, fits, UNCONFIRMED)
            fit = fits[i]
            if (
                fit is not None
                and states[i].lost
                and self._top_body(i)
                and self._far_from_clear(i, fit)
                and _visible(tpl, fit[0], frame.shape) >= 1.0
            ):
                # C2 found again far from clear, in full view (not coming back into the image): no body
                # above it can dispute it, and the occluder that made it lost is still over it (issue #13,
                # occluders seeds 63-64: found again 4-7 px off, confirmed by C1's arch or slid into from
                # where C3 carries it)
                self._reject(t, i, fits, UNCONFIRMED)
                self.top_dropped.add(i)
        # a body confirmed only by a neighbour that was then found dragged is dragged with it
        changed = True
        while changed:
            changed = False
            for i, j in list(leaning.items()):
                if fits[i] is not None and fits[j] is None and self.reason[t][j] == DRAGGED:
                    self._reject(t, i, fits, DRAGGED)
                    del leaning[i]
                    changed = True

    def _far_from_clear(self, i: int, fit: _Accepted) -> bool:
        """Body ``i``'s fit costs more than :data:`DRAG_EXCESS` above its clear cost (C1's arch, which has
        no corners and is no body, always counts as far from clear: it confirms no body here)."""
        return not self.has_corners[i] or fit[5] > self.clear_cost[i] + DRAG_EXCESS

    def _disputed(
        self,
        i: int,
        t: int,
        frame: np.ndarray,
        fits: list[_Accepted | None],
        anchor: tuple[int, list[np.ndarray | None]],
        clear_anchor: tuple[int, list[np.ndarray | None]] | None = None,
    ) -> int:
        """A tracked neighbour near to clear (not :meth:`_far_from_clear`; the nearer to clear of the two)
        does not confirm body ``i``'s fit on frame ``t``: registered from where that neighbour carries it
        since the anchor frame, ``i`` does not land on its fit, or lands there only from further than
        :meth:`_land_px` (a dragging occluder makes a wide basin). False when no
        neighbour is near to clear (nothing to tell: a whole column far from clear, e.g. a noise-free cine
        drifting against its background, is not a drag). For the top body (C2) with no neighbour near to
        clear, the body two segments below tells, carried from ``clear_anchor`` (the last frame where C2 was
        clear, at most :data:`DRAG_TOP_FRAMES` back: a drag creeps in confirmed steps, so the anchor moves
        with it), within :data:`DRAG_TOP_FRAC` of its size plus :data:`DRAG_LAND_STEP_FRAC` per frame.
        Returns the segments between ``i`` and the neighbour that disputes it (1 or 2), 0 when none does."""
        fit = fits[i]
        poses0 = anchor[1]
        a_i0 = poses0[i]
        if fit is None or a_i0 is None or not self.has_corners[i]:
            return 0
        near = []
        for segments in (1, 2):
            for k in (i - segments, i + segments):
                fit_k = fits[k] if 0 <= k < self.n_v else None
                if fit_k is not None and self.has_corners[k] and poses0[k] is not None:
                    if not self._far_from_clear(k, fit_k):
                        near.append((fit_k[5] - self.clear_cost[k], k))
            if near or segments == 2 or not self._top_body(i):
                break
            # C2 has no body above it (C1's arch confirms nothing) and C3 is lost or as far from clear:
            # the next body below, near to clear, tells across two segments (issue #13, occluders seeds 62-64)
        if not near:
            return 0
        k = min(near)[1]
        segments = abs(k - i)
        if segments == 2:
            # across two segments, from the last frame where C2 was clear: a drag of the top body creeps
            # in steps that each confirm the next (its anchor moves with it)
            if clear_anchor is None or clear_anchor[1][i] is None or clear_anchor[1][k] is None:
                return 0
            if abs(t - clear_anchor[0]) > DRAG_TOP_FRAMES:
                return 0
            anchor = clear_anchor
            poses0 = anchor[1]
            a_i0 = poses0[i]
        fit_k, a_k0 = fits[k], poses0[k]
        assert fit_k is not None and a_k0 is not None
        quad = self.quads[i]
        cand = fit_k[0] @ _rigid_inv(a_k0) @ a_i0
        start = _corner_gap(cand, fit[0], quad)
        if start < REANCHOR_NEAR_PX:
            return 0
        refit, _q = self.fit_at(i, frame, cand, 1)
        landed = _corner_gap(refit.transform, fit[0], quad) < 0.1
        if segments == 2:
            allowed = (DRAG_TOP_FRAC + DRAG_LAND_STEP_FRAC * abs(t - anchor[0])) * self.sizes[i]
        else:
            allowed = self._land_px(i, t - anchor[0])
        return 0 if landed and start <= allowed else segments

    def _top_body(self, i: int) -> bool:
        """Body ``i`` is the uppermost body with corners (C2): no body above it can dispute its fit."""
        return self.has_corners[i] and not any(self.has_corners[:i])

    def _land_px(self, i: int, age_frames: int) -> float:
        """How far from body ``i``'s fit (far from clear) a refit carried by a neighbour may start and still
        confirm it by landing there, ``age_frames`` after the body's anchor frame (:data:`DRAG_LAND_FRAC`,
        :data:`DRAG_LAND_STEP_FRAC`)."""
        return (DRAG_LAND_FRAC + DRAG_LAND_STEP_FRAC * abs(age_frames)) * self.sizes[i]

    def _reject(self, t: int, i: int, fits: list[_Accepted | None], reason: str) -> None:
        """Body ``i`` is not followed on frame ``t``: ``reason``, its fit's quality capped at 0.2 (the
        checks after :meth:`reanchor` see that quality recorded for the frame)."""
        fit = fits[i]
        self.reason[t][i] = reason
        self.quality[t, i] = min(float(fit[1]) if fit is not None else 0.0, 0.2)
        fits[i] = None

    def _carried_refit(
        self,
        i: int,
        j: int,
        frame: np.ndarray,
        fit: _Accepted,
        fit_j: _Accepted,
        cand: np.ndarray,
        state: _State,
        t: int,
    ) -> _Accepted | None:
        """Body ``i`` registered from ``cand``, where neighbour ``j`` carries it (see :meth:`reanchor`).

        Returns ``fit`` when the start is that fit's optimum (within :data:`REANCHOR_NEAR_PX`, or the refit
        lands on it: then it is confirmed, ``self.verified``; for a fit far from clear, only from a start
        within :data:`DRAG_LAND_FRAC` of the body's size), the refit when it is better, and None when it
        settles nothing.
        """
        tpl = self.templates[i]
        assert tpl is not None
        quad = self.quads[i]
        start = _corner_gap(cand, fit[0], quad)
        if start < REANCHOR_NEAR_PX:
            return fit  # carried to where it is: the same optimum
        refit, q = self.fit_at(i, frame, cand, 1)
        if not refit.converged and refit.robust_cost < fit[5] - REANCHOR_GAIN:
            refit, q = self.fit_at(i, frame, refit.transform, 1)  # slow to converge: carry on
        if _corner_gap(refit.transform, fit[0], quad) < 0.1:
            if (
                self.has_corners[i]
                and self._far_from_clear(i, fit)
                and start > self._land_px(i, t - state.anchor[0] if state.anchor else 0)
            ):
                # far from clear, the refit slid from afar into the fit's optimum: an occluder that drags
                # the body makes a wide basin, so this confirms nothing (issue #13); from a neighbour
                # near to clear, it is the mark of a drag
                if not self._far_from_clear(j, fit_j):
                    self.slid.add(i)
                return None
            self.verified.add(i)  # the chain's start found the same optimum: a new anchor
            return fit
        if q < self.opt.min_quality or not refit.robust_cost < fit[5] - REANCHOR_GAIN:
            return None
        last = state.history[-1][1] if state.history else None
        if not self.plausible(i, refit.transform, None, last):
            return None
        if self.has_corners[j] and self.has_corners[i]:  # the carrier agrees with where it lands
            size = min(tpl.size_px, _size(self.quads[j]))
            if inconsistent(refit.transform, fit_j[0], quad.mean(axis=0), self.quads[j].mean(axis=0), size):
                return None
        self.verified.add(i)
        return _accepted(refit, q)

    def check_static(self, t: int, fits: list[_Accepted | None]) -> None:
        """Reject the bodies of frame ``t`` of which less than ``min_visible`` is clear of a blade, or with a
        corner behind one (:data:`CORNER_BEHIND_STATIC`).

        The templates leave the blade out, so what is left of a body mostly behind one (a strip of it)
        no longer pins its rotation: it is not followed rather than followed wrongly.
        """
        assert self.static is not None
        for i in range(self.n_v):
            fit, tpl = fits[i], self.templates[i]
            if fit is None or tpl is None:
                continue
            if _clear(tpl, fit[0], self.static) < self.opt.min_visible:
                self._reject(t, i, fits, BEHIND_STATIC)
            elif len(tpl.quad_px) == 4 and _corner_behind(tpl, fit[0], self.static):
                self._reject(t, i, fits, CORNER_BEHIND_STATIC)

    def check_neighbours(self, t: int, fits: list[_Accepted | None]) -> None:
        """Reject the bodies of frame ``t`` that no tracked neighbour supports (an occluder dragged them).

        C1's arch takes no part in the bodies' vote (it must never cost a body), but is itself checked
        against C2 alone: an arch that C2's motion cannot carry it to is rejected (a look-alike found by
        the search, or an optimum the mandible drags, would otherwise give an atlanto-dental interval
        tens of millimetres off). Without a tracked C2 there is no interval to measure, so nothing to check.
        """
        poses = [f[0] if f is not None else None for f in fits]
        rejected = reject_inconsistent(poses, self.centres, self.sizes, self.has_corners)
        for i in range(self.n_v - 1):
            below = i + 1
            if self.has_corners[i] or not self.has_corners[below]:
                continue  # only a region without corners (C1) above a body (C2)
            if poses[i] is not None and below in self.top_dropped:
                # C2 given up by the checks only the top body gets (it had been followed, and the arch
                # checked against it, before them): the arch is not followed unchecked (issue #13, the
                # mandible case with seed 41: a look-alike 67 px off on frame 25)
                rejected.append(i)
                continue
            if poses[i] is None or poses[below] is None or below in rejected:
                continue
            size = self.sizes[below]  # the body's size: the arch region is a thin strip
            if inconsistent(poses[i], poses[below], self.centres[i], self.centres[below], size):  # type: ignore[arg-type]
                rejected.append(i)
        for i in rejected:
            self._reject(t, i, fits, INCONSISTENT)

    def _predicted_fits(
        self,
        t: int,
        preds: list[np.ndarray | None],
        states: list[_State],
        pool: ThreadPoolExecutor | None,
        workers: ForkedChains | None,
    ) -> list[tuple[Fit, float] | None]:
        """Every body of frame ``t`` registered from its predicted pose (:meth:`_predicted_fit`).

        With ``workers``, a body whose chain a worker runs (:meth:`_chain_on`) takes the worker's fit when
        the worker started it from the same pose (:func:`_same_call`): the registration is a function of
        the body, the frame and the start pose alone, so the tracks are those of one process. The others
        (this process's share, and the chains that did not start from that pose) are registered here.
        """
        primary = partial(self._predicted_fit, frame=self.frames[t], preds=preds, states=states)
        if workers is None:
            if pool is not None:
                return list(pool.map(primary, range(self.n_v)))
            return [primary(i) for i in range(self.n_v)]
        workers.advance(self.pos)
        chained = workers.keys()
        calls = {
            i: (i, t, preds[i], 1 if len(states[i].history) >= 2 else None)
            for i in range(self.n_v)
            if self.templates[i] is not None and preds[i] is not None and not states[i].lost
        }
        firsts: list[tuple[Fit, float] | None] = [None] * self.n_v
        for i, call in calls.items():  # this process's own first, while the workers finish theirs
            if i not in chained:
                firsts[i] = self.fit_on_frame(*call)
        for i, call in calls.items():
            if i in chained:
                found, answer = workers.get(i, self.pos)
                if found and _same_call(answer[0], call):
                    firsts[i] = answer[1]
                    self.chained[i] = answer[1][0].transform
                    continue
                workers.drop(i)  # restarted from the pose recorded here (_chain_on)
                firsts[i] = self.fit_on_frame(*call)
        return firsts

    def _chain_on(self, pos: int, states: list[_State], workers: ForkedChains) -> None:
        """Before the frame at position ``pos`` of the pass: the workers' chains of bodies (see
        :meth:`_predicted_fits`) go on, or start again from the poses recorded here.

        A chain goes on while its body's recorded pose is the fit the chain took (its next calls start
        from the poses this process will predict); otherwise (the fit not accepted as it was, refitted,
        the body lost) it is dropped, and started again from the body's recorded history when the body is
        followed. Every 8 frames the bodies this process registers itself change by one when it waited
        for the workers, or they for it (:meth:`ForkedChains.shift`): the work is shared as the machine
        runs the processes."""
        if pos % 8 == 0 and pos:
            shift = workers.shift()
            followed = [i for i in range(self.n_v) if self.templates[i] is not None and not states[i].lost]
            if shift > 0 and self.mine:
                self.mine.discard(min(self.mine))
            elif shift < 0:
                free = [i for i in followed if i not in self.mine]
                if free:
                    self.mine.add(max(free))
        chained = workers.keys()
        for i in range(self.n_v):
            st = states[i]
            if self.templates[i] is None or i in self.mine or st.lost or not st.history:
                if i in chained:
                    workers.drop(i)
                continue
            if workers.goes_on(i) and self.chained.get(i) is st.history[-1][1]:
                continue  # goes on
            workers.chain(i, list(st.history), pos)
        self.chained = {}

    def _predicted_fit(
        self, i: int, *, frame: np.ndarray, preds: list[np.ndarray | None], states: list[_State]
    ) -> tuple[Fit, float] | None:
        """Body ``i`` registered from its predicted pose (None when lost or not predictable)."""
        pred = preds[i]
        if self.templates[i] is None or pred is None or states[i].lost:
            return None
        return self.fit_at(i, frame, pred, 1 if len(states[i].history) >= 2 else None)

    def recover(
        self,
        i: int,
        t: int,
        frame: np.ndarray,
        first: tuple[Fit, float] | None,
        pred: np.ndarray | None,
        states: list[_State],
        fits: list[_Accepted | None],
    ) -> tuple[tuple[Fit, float] | None, str]:
        """Body ``i`` whose predicted fit was not accepted: the best plausible fit and the reason if none.

        Candidates: the predicted fit (if plausible), then the last pose, the pose implied by each
        neighbour's motion since then, and a coarse search around the first two of them.
        """
        tpl = self.templates[i]
        assert tpl is not None
        st = states[i]
        last = st.history[-1][1] if st.history else None
        best: tuple[Fit, float] | None = None
        why = NOT_FOUND
        if first is not None:
            fit, q = first
            if self.plausible(i, fit.transform, pred, last):
                best = (fit, q)
            else:
                why = IMPLAUSIBLE
        if not ((self.opt.reacquire or not st.lost) and last is not None):
            return best, why
        last_t = st.history[-1][0]
        cands = self._neighbour_candidates(i, last, last_t, states, fits)
        cands.append(last)
        gap = abs(t - last_t)
        radius = min(0.5 * tpl.size_px * (1 + 0.5 * gap), 2.0 * tpl.size_px)
        searched: list[np.ndarray] = []
        for c in cands[:2]:
            searched += _search(
                tpl,
                frame,
                c,
                radius_px=radius,
                angles_deg=(-10.0, -5.0, 0.0, 5.0, 10.0),
                blur=self.opt.blur_sigma_px,
            )
        for c in cands + searched:
            fit, q = self.fit_at(i, frame, c)
            ok = self.plausible(i, fit.transform, None, last if gap <= 3 else None)
            # never further from the last pose than the search reached (a look-alike elsewhere)
            reach = radius + self.opt.max_step_frac * tpl.size_px
            away = _corner_gap(fit.transform, last, self.quads[i])
            ok = ok and bool(away <= reach)
            if ok and (best is None or q > best[1]):
                best = (fit, q)
                if q >= 0.9:
                    break
        return best, why

    def _neighbour_candidates(
        self, i: int, last: np.ndarray, last_t: int, states: list[_State], fits: list[_Accepted | None]
    ) -> list[np.ndarray]:
        """Body ``i``'s last pose moved as each tracked neighbour moved since frame ``last_t``."""
        cands: list[np.ndarray] = []
        for j in (i + 1, i - 1):
            if 0 <= j < self.n_v and self.templates[j] is not None:
                fit_j = fits[j]
                aj_now = fit_j[0] if fit_j is not None else None
                aj_then = None
                for tt, aa in reversed(states[j].history):
                    if tt == last_t:
                        aj_then = aa
                        break
                if aj_now is not None and aj_then is not None:
                    cands.append(aj_now @ _rigid_inv(aj_then) @ last)
        return cands

    def judge(
        self,
        i: int,
        t: int,
        frame: np.ndarray,
        best: tuple[Fit, float] | None,
        why: str,
        pred: np.ndarray | None,
        state: _State,
    ) -> _Accepted | None:
        """Record the quality of body ``i``'s best fit on frame ``t``; accept it, or say why not."""
        if best is None:
            self.quality[t, i] = 0.0
            self.reason[t][i] = why
            return None
        tpl = self.templates[i]
        assert tpl is not None
        last = state.history[-1][1] if state.history else None
        fit, q = best
        self.quality[t, i] = q
        min_visible = self.opt.min_visible
        if (
            fit.visible < min_visible
            and _visible(tpl, pred if pred is not None else last, frame.shape) < min_visible
        ):
            self.reason[t][i] = LEFT_IMAGE
        elif not np.isfinite(fit.gain) or fit.gain <= 0:
            self.reason[t][i] = DIVERGED
        elif q < self.opt.min_quality:
            self.reason[t][i] = NOT_FOUND
        else:
            return _accepted(fit, q)
        return None

    def record(self, t: int, fits: list[_Accepted | None], states: list[_State]) -> None:
        """Write the accepted poses of frame ``t`` and carry them into the bodies' states."""
        for i in range(self.n_v):
            fit = fits[i]
            if fit is None:
                if self.templates[i] is not None:
                    states[i].lost = True
                continue
            a, _q, std, rot_std = fit[:4]
            self._write_pose(t, i, a, std, rot_std)
            excess = fit[5] - self.clear_cost[i]
            self.cost_excess[t, i] = max(excess, 0.0) if math.isfinite(excess) else math.nan
            st = states[i]
            st.lost = False
            st.history.append((t, a))
            del st.history[:-3]
        poses = [f[0] if f is not None else None for f in fits]
        for i in range(self.n_v):
            fit = fits[i]
            if fit is None:
                continue
            clear = self.clear(i, fit)
            if clear or i in self.verified:
                states[i].anchor = (t, poses)
            if clear:
                states[i].clear_anchor = (t, poses)

    def _write_pose(self, t: int, i: int, a: np.ndarray, std_px: float, rot_std_rad: float) -> None:
        """Body ``i``'s pose ``a`` on frame ``t``, its corners and its precisions (corner and rotation SD
        of the fit, scaled by the noise-correlation factors)."""
        tpl = self.templates[i]
        # a template whose own noise limits its match (MATCH_CEILING) states its precision too low: its
        # noisy gradients count as information the image does not hold (C7 of the independent renderer's
        # heavy-shoulder study: rotation error 1.33x the stated SD, 1 / sqrt(rho) = 1.30; chosen there,
        # checked on heavy-shoulder studies of other seeds, docs/tracking.md, session 40)
        k = 1.0 if tpl is None else _noise_limited_factor(tpl)
        self.precision[t, i] = NOISE_CORRELATION * std_px * k
        self.rotation_precision[t, i] = ROTATION_NOISE_CORRELATION * math.degrees(rot_std_rad) * k
        self._set_pose(t, i, a)

    def _set_pose(self, t: int, i: int, a: np.ndarray) -> None:
        """Body ``i``'s pose ``a`` on frame ``t`` and its corners (its precisions as they are)."""
        self.transforms[t, i] = a[:2]
        if self.has_corners[i]:
            self.corners[t, i] = _corners(a, self.quads[i])

    def reweight_inconsistent(self, workers: ForkedWorkers | None = None) -> None:
        """Register every body again with its template's pixels weighed by how steadily they follow it
        (issue #13).

        The robust weights of a fit reject what lies beyond a few noise levels from the template; a
        structure that moves otherwise than the body but is fainter than that (a neighbour's articular
        process over the posterior corners, the soft edge of the mandible or of soft tissue, in a noisy
        frame) stays an inlier on every frame and pulls the rotation towards its own motion: a bias that
        follows the posture and that no single frame shows. Over the trusted frames, moved back into the
        template's grid with their poses, a pixel of the body differs from the reference by a constant
        plus noise, a pixel of such a structure by an amount that changes with the posture
        (:func:`dmx.tracking.reliability.residual_variance`). Each pixel is weighed by the inverse of its
        variance, relative to the template's median pixel and at most 1
        (:meth:`_consistency_weights`), and the body is registered again, from its pose, on its trusted
        frames but the reference, which stays where its landmarks are (on key frames, the change
        interpolated between them: :meth:`_consistent_refit`). A refit below the trusted quality keeps
        the pose it had. Bodies registered again with a still layer taken out
        (:meth:`refine_still_layers`: a better model of what does not follow them) are left as they are,
        and so are the frames :meth:`refit_unreliable` found again under an occluder (with a template cut
        without it). With ``workers`` (forked after those steps), the bodies are refitted in them and
        here together (the same result).
        """
        bodies = [(i,) for i in range(self.n_v)]
        refits = workers.map(bodies) if workers is not None else [self._consistent_refit(*b) for b in bodies]
        for i, refit in enumerate(refits):
            for t, a, std_px, rot_std_rad, quality in refit or ():
                if std_px is None:  # between key frames: the pose moves, its precision and quality stay
                    self._set_pose(t, i, a)
                    continue
                if i in self.precise_refined:  # its precision stays the passes' (refine_precise)
                    self._set_pose(t, i, a)
                else:
                    self._write_pose(t, i, a, std_px, rot_std_rad)
                self.quality[t, i] = quality

    def _consistency_weights(self, i: int, good: np.ndarray) -> Template | None:
        """Body ``i``'s template weighed by the inverse residual variance of its pixels over frames ``good``
        (see :meth:`reweight_inconsistent`), or None when no pixel's variance was measured."""
        tpl = self.templates[i]
        assert tpl is not None
        poses = [(int(t), self._pose(int(t), i)) for t in good]
        var, _seen = residual_variance(self.frames, poses, tpl, self.frames[self.ref])
        level = tpl.levels[0]
        at = var[np.round(level.v).astype(np.int64), np.round(level.u).astype(np.int64)]
        measured = at[at > 0]
        if measured.size == 0:
            return None
        typical = float(np.median(measured))
        # unmeasured pixels (0) keep their weight; the typical pixel and steadier ones keep theirs
        weights = np.where(var > typical, typical / np.maximum(var, typical), 1.0).astype(np.float32)
        return reweighted(tpl, weights)

    def _consistent_refit(self, i: int) -> list[tuple[int, np.ndarray, float | None, float, float]] | None:
        """Body ``i`` registered again with :meth:`_consistency_weights` on its trusted frames but the
        reference: ``(t, pose, corner SD px, rotation SD rad, quality)`` per frame moved, or None when the
        body is not refitted.

        The bias this removes follows the posture, so the body is registered again on key frames only
        (:meth:`_consistency_keys`: every change of posture of :data:`CONSISTENCY_STEP_DEG` or
        :data:`CONSISTENCY_STEP_FRAC` of its size, and the ends of every run of trusted frames); between
        two key frames of a run, each frame's pose takes the change the refits made there (a small rigid
        motion in the body's own coordinates), interpolated linearly, and keeps its precision and quality
        (corner SD None). Where a key frame's refit falls below the trusted quality, the frames up to the
        next key frames are registered again one by one.
        """
        if self.templates[i] is None or not self.has_corners[i] or i in self.still_refitted:
            return None
        tracked = self._tracked(i)
        tracked[self.ref] = False
        # the frames refit_fine found on the body's fine detail alone (an occluder over much of it) do
        # not tell how steadily its pixels follow it where nothing covers them
        tracked[[t for t, j in self.fine_refitted if j == i]] = False
        good = np.flatnonzero(tracked)
        if len(good) < CONSISTENCY_FRAMES:
            return None
        weighted = self._consistency_weights(i, good)
        if weighted is None:
            return None
        centre = self.centres[i]
        out: list[tuple[int, np.ndarray, float | None, float, float]] = []
        change: dict[int, np.ndarray | None] = {}  # key frame -> (rotation, shift) in body coordinates
        # what misfits coherently over an area is weighed down too, but not for a faint body
        # (COHERENT_SIGMA_PX)
        coherent = COHERENT_SIGMA_PX if weighted.match_ceiling >= 1.0 else 0.0

        def refit(t: int) -> np.ndarray | None:
            fit, quality = self.fit_at(
                i, self.frames[t], self._pose(t, i), 1, template=weighted, coherent_sigma_px=coherent
            )
            if quality < self.opt.min_quality:
                return None
            out.append((t, fit.transform, fit.corner_std_px, fit.rotation_std_rad, quality))
            return _body_change(self._pose(t, i), fit.transform, centre)

        frames = [t for t in good.tolist() if (t, i) not in self.recovered]
        for run in _runs(frames):
            keys = self._consistency_keys(i, run)
            for t in keys:
                change[t] = refit(t)
            for a, b in zip(keys, keys[1:], strict=False):
                inner = [t for t in run if a < t < b]
                ca, cb = change[a], change[b]
                if ca is None or cb is None:
                    for t in inner:
                        refit(t)
                    continue
                for t in inner:
                    f = (t - a) / (b - a)
                    moved = self._pose(t, i) @ _body_motion((1.0 - f) * ca + f * cb, centre)
                    out.append((t, moved, None, math.nan, math.nan))
        return out

    def _consistency_keys(self, i: int, run: list[int]) -> list[int]:
        """The key frames of a run of consecutive trusted frames of body ``i``: its first and last frame and
        every frame whose pose differs from the previous key frame's by more than
        :data:`CONSISTENCY_STEP_DEG` or moves the body's centre by more than :data:`CONSISTENCY_STEP_FRAC`
        of its size."""
        step_px = CONSISTENCY_STEP_FRAC * self.sizes[i]
        keys = [run[0]]
        key = rigid_params(self._pose(run[0], i), self.centres[i])  # (rotation, where the centre moved)
        for t in run[1:-1]:
            p = rigid_params(self._pose(t, i), self.centres[i])
            turn = abs(math.degrees(p[0] - key[0])) % 360.0
            if min(turn, 360.0 - turn) > CONSISTENCY_STEP_DEG or math.hypot(*(p[1:] - key[1:])) > step_px:
                keys.append(t)
                key = p
        if run[-1] != keys[-1]:
            keys.append(run[-1])
        return keys

    def refine_still_layers(self, workers: ForkedWorkers | None = None) -> None:
        """Register again the bodies under a layer that does not move with them (issue #13).

        A body's template holds whatever lay over it on the reference frame; a dense structure that
        stays still while the body moves (the shoulders over C6-C7) pulls the rigid fit towards keeping
        it in place: a bias at the optimum. From the poses of the passes, each body's region is split
        into the still layer and the body layer (:func:`dmx.tracking.layers.static_layer`). A body is
        registered again on every tracked frame but the reference, from its pose, with the frames minus the
        still layer against a template cut from the body layer (the mean of the frames moved back to the
        reference) when its still layer is at least :data:`STILL_LAYER_MIN` as strong as its template
        (:func:`dmx.tracking.layers.still_strength`) and, on :data:`STILL_LAYER_PROBES` of its frames,
        the two-layer fit's mean robust cost (``Fit.robust_cost``) is lower than that of the same body
        layer without a still layer (as little noise in its template) by at least
        :data:`STILL_LAYER_GAIN`: the still layer explains the frames, it is not a by-product of the
        estimate (where the motion is too small to tell the layers apart, the estimate puts some of the
        body in the still layer: its edges at their mean place, which would pull the fit there). A
        neighbour of such a body whose still layer is as strong is refitted too when its cost is not
        higher (the same structure over it, in more noise: the shoulders over C7).

        A refit below the trusted quality keeps the pass's pose; frames not tracked stay as they are.
        With ``workers`` (forked after the passes), the bodies' still layers are looked for in them and
        here together (the same result).
        """
        bodies = [(i,) for i in range(self.n_v)]
        found = dict(
            enumerate(workers.map(bodies) if workers is not None else [self._still_layer(*b) for b in bodies])
        )
        confirmed = {i for i, f in found.items() if f is not None and f[2] >= STILL_LAYER_GAIN}
        for i, f in found.items():
            if f is None or not f[2] >= 0.0:
                continue
            if i in confirmed or any(j in confirmed for j in (i - 1, i + 1)):
                self._refit_without(i, f[0], f[1], f[3])
                self.still_refitted.add(i)

    def _still_layer(self, i: int) -> tuple[Layers, Template, float, list[tuple[int, np.ndarray]]] | None:
        """Body ``i``'s still layer, body-layer template, robust-cost gain and poses, or None when its
        still layer is weaker than :data:`STILL_LAYER_MIN` (see :meth:`refine_still_layers`)."""
        tpl = self.templates[i]
        if tpl is None or not self.has_corners[i]:
            return None
        with np.errstate(invalid="ignore"):
            tracked = self.quality[:, i] >= self.opt.min_quality
        good = np.flatnonzero(tracked & np.isfinite(self.transforms[:, i]).all(axis=(1, 2)))
        if len(good) < STILL_LAYER_FRAMES:
            return None
        poses = [(int(t), self._pose(int(t), i)) for t in good]
        box = needed_box(tpl, self.transforms[good, i], self.frames.shape[1:], 2.0)  # at every pose
        own = self._own_region(i)
        # a quick look first (fewer frames and rounds: a weaker estimate), the full estimate if needed
        quick = static_layer(
            self.frames,
            poses,
            box,
            mask=own,
            max_frames=16,
            iterations=8,
            body_box=tpl.bbox,
            footprint_only=True,
        )
        first_look = still_strength(quick, self.frames[self.ref], tpl)
        _log.debug("%s: still layer %.3f of its template at a first look", self.verts[i].value, first_look)
        if first_look < STILL_LAYER_SCREEN:
            return None
        layers = static_layer(self.frames, poses, box, mask=own, body_box=tpl.bbox)
        strength = still_strength(layers, self.frames[self.ref], tpl)
        if strength < STILL_LAYER_MIN:
            return None
        # the same body layer with nothing still (the mean of the frames moved back): as little noise in
        # its template, so that only the still layer makes the difference
        plain = static_layer(self.frames, poses, box, mask=own, body_box=tpl.bbox, iterations=0)
        body_tpl, plain_tpl = self._body_template(i, layers), self._body_template(i, plain)
        if body_tpl is None or plain_tpl is None:
            return None
        pick = np.unique(np.round(np.linspace(0, len(poses) - 1, STILL_LAYER_PROBES)).astype(int))
        gain = []
        for k in pick:
            t, a = poses[k]
            before, _ = self.fit_at(i, self.frames[t], a, 1, template=plain_tpl)
            after, _ = self.fit_at(i, layers.remove_still(self.frames[t]), a, 1, template=body_tpl)
            gain.append(before.robust_cost - after.robust_cost)
        mean_gain = float(np.mean(gain))
        _log.debug(
            "%s: still layer %.3f of its template, robust cost lower by %.3f without it",
            self.verts[i].value,
            strength,
            mean_gain,
        )
        return layers, body_tpl, mean_gain, poses

    def _own_region(self, i: int) -> np.ndarray:
        """Body ``i``'s template region on the reference frame (body and rim, not its neighbours), (H, W)."""
        h, w = self.frames.shape[1:]
        r = int(round(max(4.0, self.opt.margin_frac * self.sizes[i])))
        # drawn and dilated on a window around the body only, which holds every pixel the dilation
        # reaches (morphology's border adds nothing): the same mask as on the whole frame, much cheaper
        lo = np.floor(self.quads[i].min(axis=0)).astype(int) - r - 8
        hi = np.ceil(self.quads[i].max(axis=0)).astype(int) + r + 9
        x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        x1, y1 = min(int(hi[0]), w), min(int(hi[1]), h)
        full = np.zeros((h, w), bool)
        if x1 <= x0 or y1 <= y0:
            return full
        origin = np.array([x0, y0], np.float64)

        def filled(quad: np.ndarray) -> np.ndarray:
            out = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(out, [np.round((quad - origin) * 16).astype(np.int32)], 1, shift=4)
            return out

        mask = cv2.dilate(
            filled(self.quads[i]), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        )
        for j in (i - 1, i + 1):
            if 0 <= j < self.n_v:
                mask[cv2.dilate(filled(self.quads[j]), np.ones((5, 5), np.uint8)) > 0] = 0
        full[y0:y1, x0:x1] = mask > 0
        return full

    def _body_template(self, i: int, layers: Layers) -> Template | None:
        """Body ``i``'s template cut from its body layer (None when it cannot be cut)."""
        return self._recut(i, layers.body_reference(self.frames[self.ref]), self.static)

    def _recut(self, i: int, reference: np.ndarray, exclude: np.ndarray | None) -> Template | None:
        """Body ``i``'s template cut again from ``reference`` (a reference frame) without the pixels of
        ``exclude``, as the passes cut it otherwise; None when it cannot be cut. Its expected residual
        is the passes' calibrated one (the frames' own noise), never below the new template's estimate."""
        tpl = self.templates[i]
        assert tpl is not None
        new = self._cut(i, reference, exclude, tpl.highpass_sigma_px)
        if new is None:
            return None
        return replace(new, residual_scale=max(new.residual_scale, tpl.residual_scale))

    def _cut(
        self, i: int, reference: np.ndarray, exclude: np.ndarray | None, highpass_sigma_px: float | None
    ) -> Template | None:
        """Body ``i``'s template cut from ``reference`` as the passes cut it (its neighbours left out, the
        passes' margin, pre-filter and pyramid levels), without the pixels of ``exclude`` and high-passed
        at ``highpass_sigma_px``, with its own residual estimate; None when it cannot be cut."""
        tpl = self.templates[i]
        assert tpl is not None
        try:
            return make_template(
                reference,
                self.quads[i],
                exclude_quads_px=tuple(self.quads[j] for j in (i - 1, i + 1) if 0 <= j < self.n_v),
                margin_frac=self.opt.margin_frac,
                blur_sigma_px=self.opt.blur_sigma_px,
                n_levels=len(tpl.levels),
                highpass_sigma_px=highpass_sigma_px,
                exclude_mask=exclude,
            )
        except ValueError:
            return None

    def _refit_without(
        self, i: int, layers: Layers, body_tpl: Template, poses: list[tuple[int, np.ndarray]]
    ) -> None:
        """Body ``i`` registered again on frames ``poses`` (from those poses) with ``layers``' still layer
        taken out, against ``body_tpl`` (see :meth:`refine_still_layers`). The reference frame keeps its
        landmarks: the body layer is the mean of the frames moved back to it, not that frame, so a fit there
        would move the corners every measurement and the smoothing start from."""
        for t, a in poses:
            if t == self.ref:
                continue
            fit, quality = self.fit_at(i, layers.remove_still(self.frames[t]), a, 1, template=body_tpl)
            if quality < self.opt.min_quality:
                continue
            self._write_pose(t, i, fit.transform, fit.corner_std_px, fit.rotation_std_rad)
            self.quality[t, i] = quality

    def refit_unreliable(self) -> None:
        """Register again, with a template cleaned of what does not move with them, the bodies lost under an
        occluder (issue #13).

        A template holds whatever lay over the body on the reference frame; an occluder's outline there
        (the mandible's over C2-C3) that moves otherwise than the body drags the fit, and from the true pose
        costs more than the dragged fit, so the guards give those frames up. For every body lost on some
        frames with a reason in :data:`REFIT_REASONS`, each confidently tracked frame (trusted, other than
        the reference; at least :data:`RELIABLE_FRAMES`) is moved back into the template's grid, and the
        template pixels that are outliers on too many of them
        (:func:`dmx.tracking.reliability.outlier_share`), or whose patch moves otherwise than the body on
        too many of those frames and of the lost ones, moved back from where a neighbour carries it
        (:func:`dmx.tracking.reliability.moving_otherwise`), are left out of a template cut again
        (:meth:`_cleaned_template`). The lost frames, nearest to a tracked one first, are then registered
        with it from the body's pose on the nearest tracked frame and from where each tracked neighbour
        carries it; a refit is followed only when its own checks pass (:meth:`_refit_checks`). Bodies are
        taken bottom-up (occluders come from the skull and mandible), so that a body refitted here can
        carry the one above it.
        """
        for i in range(self.n_v - 1, -1, -1):
            if not self.has_corners[i] or self.templates[i] is None:
                continue
            lost = [
                t for t in range(self.frames.shape[0]) if t != self.ref and self.reason[t][i] in REFIT_REASONS
            ]
            if not lost:
                continue
            cleaned = self._cleaned_template(i, lost)
            if cleaned is not None:
                doubted = self._doubt_dragged(i, cleaned[0])
                self._refit_lost(i, sorted(set(lost) | set(doubted)), *cleaned)

    def _doubt_dragged(self, i: int, cleaned: Template) -> list[int]:
        """The frames where body ``i`` was followed far from clear (cost more than :data:`DRAG_EXCESS`
        above its clear cost) and the ``cleaned`` template, registered from that pose, moves it by more
        than :data:`REFIT_SAME_PX`: given up (:data:`DRAGGED`), and returned to be refitted with the lost
        ones. A body dragged alone by an occluder's outline in its template (C2 under the mandible's,
        issue #13: C3 lost beside it or dragged with it, C1's arch no evidence) is confirmed by no guard of
        the passes; without the outline the fit leaves it. Its dragged frames would also stand as the
        nearest followed frames from which :meth:`_refit_checks` carries the refits of the lost ones."""
        doubted = []
        with np.errstate(invalid="ignore"):
            far = self._tracked(i) & (self.cost_excess[:, i] > DRAG_EXCESS)
        for t in np.flatnonzero(far):
            if t == self.ref:
                continue
            a = self._pose(int(t), i)
            fit, _q = self.fit_at(i, self.frames[t], a, None, template=cleaned)
            if _corner_gap(fit.transform, a, self.quads[i]) > REFIT_SAME_PX:
                doubted.append(int(t))
        for t in doubted:
            self._drop(t, i, DRAGGED)
        return doubted

    def _drop(self, t: int, i: int, reason: str) -> None:
        """Body ``i``'s recorded pose on frame ``t`` given up after the passes: ``reason``, its quality capped
        at 0.2, its pose and precisions NaN (as :meth:`_reject` during them)."""
        self.reason[t][i] = reason
        self.quality[t, i] = min(float(self.quality[t, i]), 0.2)
        for arr in (self.transforms, self.corners, self.precision, self.rotation_precision, self.cost_excess):
            arr[t, i] = np.nan

    def _tracked(self, i: int) -> np.ndarray:
        """Frames where body ``i`` is followed (quality at least ``min_quality``, a pose)."""
        with np.errstate(invalid="ignore"):
            ok = self.quality[:, i] >= self.opt.min_quality
        return ok & np.isfinite(self.transforms[:, i]).all(axis=(1, 2))

    def _pose(self, t: int, i: int) -> np.ndarray:
        return np.vstack([self.transforms[t, i], [0.0, 0.0, 1.0]])

    def _cleaned_template(self, i: int, lost: list[int]) -> tuple[Template, float] | None:
        """Body ``i``'s template cut without the pixels that do not move with it (over its confidently
        tracked frames and the frames ``lost``), and its robust cost on its confidently tracked frames; None
        when too few frames tell, or the pixels to leave out are too few or too many
        (:data:`UNRELIABLE_MIN`, :data:`UNRELIABLE_MAX`)."""
        tpl = self.templates[i]
        assert tpl is not None
        tracked = self._tracked(i)
        tracked[self.ref] = False
        good = np.flatnonzero(tracked)
        name = self.verts[i].value
        if len(good) < RELIABLE_FRAMES:
            _log.debug(
                "%s: %d confidently tracked frames, too few to tell its template's reliable pixels",
                name,
                len(good),
            )
            return None
        poses = [(int(t), self._pose(int(t), i), RELIABLE_REACH_PX) for t in good]
        share, _ = outlier_share(self.frames, poses, tpl, self.frames[self.ref])
        # the frames it was lost on too, from where its neighbours carry it: patches that move otherwise
        rough = [(int(t), self._pose(int(t), i)) for t in good]
        for t in lost:
            for j in (i + 1, i - 1, i + 2, i - 2):
                carried = self._carried(i, j, t)
                if carried is not None:
                    rough.append((t, carried[0]))
                    break
        moved, seen = moving_otherwise(self.frames, rough, tpl, self.frames[self.ref])
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.maximum(share, np.where(seen >= 3, moved / seen, 0.0).astype(np.float32))
        shape = self.frames.shape[1:]
        unreliable = unreliable_mask(share, tpl, shape)
        part = template_share(tpl, unreliable)
        _log.debug("%s: %.3f of its template does not move with it", name, part)
        if not UNRELIABLE_MIN <= part <= UNRELIABLE_MAX:
            return None
        exclude = unreliable if self.static is None else unreliable | self.static
        self.unreliable_pixels[i] = exclude
        cleaned = self._recut(i, self.frames[self.ref], exclude)
        if cleaned is None:
            return None
        pick = np.unique(np.round(np.linspace(0, len(good) - 1, RELIABLE_FRAMES)).astype(int))
        costs = []
        for k in pick:
            t = int(good[k])
            costs.append(self.fit_at(i, self.frames[t], self._pose(t, i), 1, template=cleaned)[0].robust_cost)
        return cleaned, float(np.median(costs))

    def _refit_lost(self, i: int, lost: list[int], cleaned: Template, clear_cost: float) -> None:
        """Body ``i`` registered with ``cleaned`` on the frames ``lost``, nearest to a tracked frame first
        (see :meth:`refit_unreliable`)."""
        for t, s in self._nearest_first(i, lost):
            cands = [self._pose(s, i), *self._neighbour_starts(i, t)]
            best: tuple[Fit, float, np.ndarray] | None = None
            for cand in cands:
                fit, q = self.fit_at(i, self.frames[t], cand, None, template=cleaned)
                if q >= self.opt.min_quality and (best is None or fit.robust_cost < best[0].robust_cost):
                    best = (fit, q, cand)
            if best is None:
                continue
            fit, q, start = best
            if fit.robust_cost > clear_cost + REFIT_EXCESS or not self._refit_checks(i, t, fit.transform, s):
                continue
            # the template with the occluder, from the same start: landing where the refit lands, with a
            # trusted quality, is the optimum the guards of the passes gave up, not a new one
            first, q_first = self.fit_at(i, self.frames[t], start, None)
            same = _corner_gap(first.transform, fit.transform, self.quads[i]) < REFIT_SAME_PX
            if same and q_first >= self.opt.min_quality:
                continue
            self._found_again(t, i, fit, q, clear_cost)  # its cost excess against the cleaned template

    def refit_fine(self) -> None:
        """Register again on their fine detail the bodies still lost under an occluder (issue #13).

        An occluder that adds its density over a body (the mandible's band over C3 in deep flexion) moves
        the grey levels of the whole part it covers; after the passes' high-pass (``highpass_frac`` of
        the body's size) that part stays offset from the template, the robust weights reject it and its
        edges pull the fit, so a right pose counts too few inliers and the frame is lost although the
        body's own edges and texture show through. High-passed at :data:`FINE_HIGHPASS_FRAC` of the
        body's size instead, the occluder is left as its outline, a thin band the robust weights reject,
        and the body's detail matches on both sides of it.

        For every body (bottom-up, as :meth:`refit_unreliable`) lost on frames with a reason in
        :data:`REFIT_REASONS`, a fine template is cut from the reference frame and its expected residual
        and clear cost calibrated on the tracked frames next to the reference (:meth:`_fine_template`).
        The lost frames, nearest to a followed frame first, are registered from the pose the body's two
        nearest followed frames on either side predict (constant velocity; the nearest pose where only
        one is followed) and from where each followed neighbour carries it: with the fine template from
        where the body's own template takes that start (its coarse levels reach as far as the passes'),
        and from the start itself (under the mandible's band, 77-81 % of C2's template does not move with
        it: from the true pose its own template slid 0.8-1.3 px away, the fine one stayed within 0.1 px). The
        fine fit of lowest robust cost with a trusted quality is followed when it passes
        :meth:`_refit_checks` (a plausible step, the neighbours' support and anatomy).

        A fine template can still hold an occluder's outline where it lay on the reference frame (the
        `occluders` family's mandible across C3: from the true pose the fit collapses on most of the frames
        it covers). So the frames still lost after that get a second round, for a body whose template
        :meth:`refit_unreliable` cut again without the pixels that do not move with it: a fine template cut
        without those pixels too, and, since such a gap can be long, neighbours that carry the body with the
        turn the next level predicts (:meth:`_chain_carried`) for the starts and the checks. It only adds
        frames the first round left lost.

        Before those, the frames where the body is followed with its robust cost more than
        :data:`COVERED_EXCESS` above its clear cost (the band's edges pull that fit) are registered with
        the fine template from their pose, which they take when trusted and the same checks pass; not
        for a body a still layer was taken out of (:meth:`refine_still_layers`, the better model there).
        These frames stay in the consistency weights' estimate; the frames found again do not.
        """
        for i in range(self.n_v - 1, -1, -1):
            if not self.has_corners[i] or self.templates[i] is None:
                continue
            lost = {
                t for t in range(self.frames.shape[0]) if t != self.ref and self.reason[t][i] in REFIT_REASONS
            }
            covered = []
            if i not in self.still_refitted:  # there the still layer is the better model of what covers it
                with np.errstate(invalid="ignore"):
                    far_from_clear = self._tracked(i) & (self.cost_excess[:, i] > COVERED_EXCESS)
                covered = [int(t) for t in np.flatnonzero(far_from_clear) if t != self.ref]
            if not lost and not covered:
                continue
            fine = self._fine_template(i)
            if fine is None:
                continue
            template, clear_cost = fine
            spread = template.highpass_sigma_px
            for t in covered:
                fit, q = self.fit_at(
                    i, self.frames[t], self._pose(t, i), 1, template=template, outlier_spread_px=spread
                )
                if q >= self.opt.min_quality and self._refit_checks(i, t, fit.transform, t):
                    self._found_again(t, i, fit, q, clear_cost)
            self._fine_refit_lost(i, lost, template, clear_cost)
            # second round, on the frames still lost: without the pixels that do not move with the body
            still = {t for t in lost if self.reason[t][i] in REFIT_REASONS}
            if still and i in self.unreliable_pixels:
                cleaned = self._fine_template(i, self.unreliable_pixels[i])
                if cleaned is not None:
                    self._fine_refit_lost(i, still, *cleaned, chain=True)

    def _fine_refit_lost(
        self, i: int, lost: set[int], template: Template, clear_cost: float, chain: bool = False
    ) -> None:
        """Body ``i`` registered with the fine ``template`` on the frames ``lost``, nearest to a followed
        frame first (see :meth:`refit_fine`); with ``chain``, its neighbours carry it as
        :meth:`_chain_carried` does, for the starts and the checks."""
        spread = template.highpass_sigma_px
        for t, s in self._nearest_first(i, lost):
            starts = [self._pose(s, i)]
            for step in (-1, 1):
                near, far = t + step, t + 2 * step
                if 0 <= far < self.frames.shape[0] and self._tracked(i)[[near, far]].all():
                    a1, a2 = self._pose(near, i), self._pose(far, i)
                    starts.append(a1 @ _rigid_inv(a2) @ a1)
            starts += self._neighbour_starts(i, t, chain=chain)
            best: tuple[Fit, float] | None = None
            tried = []
            for start in starts:
                coarse, _q = self.fit_at(i, self.frames[t], start, None)
                # from where the own template took the start, and from the start itself (the same fit
                # where the coarse fit left it unmoved)
                moved = not np.array_equal(coarse.transform, start)
                for fine_start in (coarse.transform, start) if moved else (start,):
                    fit, q = self.fit_at(
                        i, self.frames[t], fine_start, 1, template=template, outlier_spread_px=spread
                    )
                    tried.append(q)
                    if q >= self.opt.min_quality and (best is None or fit.robust_cost < best[0].robust_cost):
                        best = (fit, q)
            if best is None:
                _log.debug(
                    "%s frame %d: no trusted fine fit (best quality %.2f)",
                    self.verts[i].value,
                    t,
                    max(tried),
                )
                continue
            fit, q = best
            if not self._refit_checks(i, t, fit.transform, s, chain=chain):
                _log.debug("%s frame %d: the fine fit fails the refit checks", self.verts[i].value, t)
                continue
            self.fine_refitted.add((t, i))
            self._found_again(t, i, fit, q, clear_cost)  # its cost excess against the fine template

    def _fine_template(self, i: int, exclude: np.ndarray | None = None) -> tuple[Template, float] | None:
        """Body ``i``'s template high-passed at :data:`FINE_HIGHPASS_FRAC` of its size (see
        :meth:`refit_fine`), its expected residual calibrated as :meth:`calibrate_residuals` calibrates the
        passes' (the smallest residual of its fits from the tracked poses on the frames next to the
        reference, never below its own estimate), and its robust cost there (its clear cost). Where no fit
        on a frame next to the reference converges (C2 of the mandible case's seed 41: its fine fit on
        frame 1 oscillated to the iteration limit), the frames two from it are used. None when it cannot
        be cut or no fit on those frames converges. ``exclude``: the pixels to cut it without (default: the
        static ones)."""
        sigma = max(self.opt.blur_sigma_px, FINE_HIGHPASS_FRAC * self.sizes[i])
        fine = self._cut(i, self.frames[self.ref], self.static if exclude is None else exclude, sigma)
        if fine is None:
            return None
        tracked = self._tracked(i)

        def fit_near(t: int, template: Template) -> Fit:
            return self.fit_at(
                i, self.frames[t], self._pose(t, i), 1, template=template, outlier_spread_px=sigma
            )[0]

        for step in (1, 2):  # the frames next to the reference; the next ones where no fit there converges
            near = [
                t for t in (self.ref + step, self.ref - step) if 0 <= t < self.frames.shape[0] and tracked[t]
            ]
            fits = [
                fit
                for fit in (fit_near(t, fine) for t in near)
                if fit.converged and np.isfinite(fit.residual_scale)
            ]
            if fits:
                break
        else:
            return None
        fine = replace(fine, residual_scale=max(fine.residual_scale, min(f.residual_scale for f in fits)))
        return fine, float(min(fit_near(t, fine).robust_cost for t in near))

    def _found_again(self, t: int, i: int, fit: Fit, quality: float, clear_cost: float) -> None:
        """Body ``i`` followed on frame ``t`` with the refit ``fit`` of a template whose clear cost is
        ``clear_cost`` (:meth:`refit_unreliable`, :meth:`refit_fine`); C1's arch there checked against it."""
        self._write_pose(t, i, fit.transform, fit.corner_std_px, fit.rotation_std_rad)
        self.cost_excess[t, i] = max(fit.robust_cost - clear_cost, 0.0)
        self.quality[t, i] = quality
        self.reason[t][i] = None
        self.recovered.add((t, i))
        self._check_arch(t, i)

    def _nearest_first(self, i: int, frames: Iterable[int]) -> Iterator[tuple[int, int]]:
        """The ``frames`` body ``i`` was lost on, nearest to a frame where it is followed first, each with
        that followed frame, ``(t, s)``; the nearest is looked up again after every frame (the caller may
        have followed the body there). Stops when the body is followed nowhere."""
        todo = set(frames)
        while todo:
            tracked = np.flatnonzero(self._tracked(i))
            if tracked.size == 0:
                return
            gaps = {t: int(np.abs(tracked - t).min()) for t in todo}
            t = min(todo, key=lambda u: (gaps[u], u))
            todo.discard(t)
            yield t, int(tracked[np.argmin(np.abs(tracked - t))])

    def _neighbour_starts(self, i: int, t: int, chain: bool = False) -> list[np.ndarray]:
        """Body ``i``'s pose on frame ``t`` as each followed neighbour carries it (:meth:`_carried`; with
        ``chain``, :meth:`_chain_carried`)."""
        starts = []
        for j in (i - 1, i + 1):
            carried = self._chain_carried(i, j, t) if chain else self._carried(i, j, t)
            if carried is not None:
                starts.append(carried[0])
        return starts

    def _check_arch(self, t: int, i: int) -> None:
        """C1's arch above body ``i`` (C2), refitted on frame ``t``, checked against it as
        :meth:`check_neighbours` does (it was not, while C2 was lost there), and against where C2 carries
        it from the nearest frame where both were followed (within :data:`DRAG_LAND_FRAC` of C2's size plus
        :data:`DRAG_LAND_STEP_FRAC` per frame between, as :meth:`_refit_checks` a body): an arch that fails
        either is not followed (:data:`INCONSISTENT`), so that no atlanto-dental interval is read from a
        look-alike (the ``occluders`` case: C1 had been followed 15-96 px off on frames where C2 was lost,
        which the passes could not check)."""
        j = i - 1
        if j < 0 or self.has_corners[j] or not self._tracked(j)[t]:
            return
        a_j = self._pose(t, j)
        both = np.flatnonzero(self._tracked(j) & self._tracked(i))
        both = both[both != t]
        far = True
        if both.size:
            # and where C2 carries it from the nearest frame both were followed on (the arch was followed
            # on frame t with nothing to check it against): as close as a body's refit must be
            u = int(both[np.argmin(np.abs(both - t))])
            carried = self._pose(t, i) @ _rigid_inv(self._pose(u, i)) @ self._pose(u, j)
            allowed = (DRAG_LAND_FRAC + DRAG_LAND_STEP_FRAC * abs(t - u)) * self.sizes[i]
            far = _corner_gap(carried, a_j, self.quads[j]) > allowed
        if far or inconsistent(a_j, self._pose(t, i), self.centres[j], self.centres[i], self.sizes[i]):
            self._drop(t, j, INCONSISTENT)

    def _carried(self, i: int, j: int, t: int) -> tuple[np.ndarray, int] | None:
        """Body ``i``'s pose on frame ``t`` as neighbour ``j`` (a body, tracked on ``t``) carries it from the
        nearest frame where both are tracked, and that frame; None when there is none."""
        if not 0 <= j < self.n_v or not self.has_corners[j]:
            return None
        tracked_j = self._tracked(j)
        if not tracked_j[t]:
            return None
        both = np.flatnonzero(tracked_j & self._tracked(i))
        if both.size == 0:
            return None
        s = int(both[np.argmin(np.abs(both - t))])
        return self._pose(t, j) @ _rigid_inv(self._pose(s, j)) @ self._pose(s, i), s

    def _chain_carried(self, i: int, j: int, t: int) -> tuple[np.ndarray, int] | None:
        """Body ``i``'s pose on frame ``t`` as neighbour ``j`` carries it (:meth:`_carried`), turned about the
        disc between them by the change of their relative rotation that the level beyond ``j`` predicts.

        Held fixed from the nearest frame where both are followed, ``j``'s pose carries ``i`` several pixels
        off across a long gap in the motion (C3 lost under the mandible for 15 frames of flexion while C3-C4
        flexes by several degrees). Segmental rotations move together through a flexion-extension sweep,
        so ``i``-``j``'s relative rotation is predicted by a line fitted to it against ``j``-``k``'s (``k``
        the body beyond ``j``) over the frames where all three are followed, and the carried pose is turned by
        the difference about the middle of ``j``'s endplate facing ``i``. Without such frames (at least
        :data:`RELIABLE_FRAMES`, ``j``-``k`` turning by :data:`CHAIN_MIN_SPREAD_DEG` over them) or ``k``
        followed on ``t``, the pose :meth:`_carried` gives."""
        carried = self._carried(i, j, t)
        k = j + (j - i)
        if carried is None or not (0 <= k < self.n_v) or not self.has_corners[k] or not self._tracked(k)[t]:
            return carried
        common = np.flatnonzero(self._tracked(i) & self._tracked(j) & self._tracked(k))
        if common.size < RELIABLE_FRAMES:
            return carried

        def turn(f: int, upper: int, lower: int) -> float:
            """Rotation (deg) of body ``upper`` relative to body ``lower`` on frame ``f``."""
            return segmental_motion(self._pose(f, upper), self._pose(f, lower), self.centres[upper])[0]

        x = np.array([turn(f, j, k) for f in common])
        if np.ptp(x) < CHAIN_MIN_SPREAD_DEG:
            return carried
        slope, intercept = np.polyfit(x, [turn(f, i, j) for f in common], 1)
        cand, s_j = carried
        change = slope * turn(t, j, k) + intercept - turn(s_j, i, j)
        change = (change + 180.0) % 360.0 - 180.0
        facing = _corners(self._pose(t, j), self.quads[j])
        disc = facing[:2].mean(axis=0) if j > i else facing[2:].mean(axis=0)
        return rigid(math.radians(change), 0.0, 0.0, disc) @ cand, s_j

    def _refit_checks(self, i: int, t: int, a: np.ndarray, s: int, chain: bool = False) -> bool:
        """A refit ``a`` of body ``i`` on frame ``t`` may be followed: a plausible step from its pose on the
        nearest tracked frame ``s`` when that is close, and at least one tracked neighbour (the next body
        beyond a lost one, the limits scaled by the segments between), every one of which carries it there
        from the nearest frame where both are tracked (within :data:`DRAG_LAND_FRAC` of its size plus
        :data:`DRAG_LAND_STEP_FRAC` per frame between, per segment: as close as a refit must start to
        confirm a fit far from clear), supports it (:func:`dmx.tracking.robust.inconsistent`) and keeps the
        anatomy. With ``chain``, an adjacent neighbour carries it as :meth:`_chain_carried` does."""
        if abs(t - s) <= 3 and not self.plausible(i, a, None, self._pose(s, i)):
            return False
        size = self.sizes[i]
        checked = 0
        for step in (-1, 1):
            for segments in (1, 2):
                j = i + step * segments
                carried = self._chain_carried(i, j, t) if segments == 1 and chain else self._carried(i, j, t)
                if carried is None:
                    continue
                cand, s_j = carried
                allowed = segments * (DRAG_LAND_FRAC + DRAG_LAND_STEP_FRAC * abs(t - s_j)) * size
                if _corner_gap(cand, a, self.quads[i]) > allowed:
                    return False
                a_j = self._pose(t, j)
                size_ij = min(size, self.sizes[j])
                if inconsistent(a, a_j, self.centres[i], self.centres[j], size_ij, segments=segments):
                    return False
                if segments == 1:
                    ci, cj = _corners(a, self.quads[i]), _corners(a_j, self.quads[j])
                    upper, lower = (ci, cj) if j > i else (cj, ci)
                    if neighbour_violation(upper, lower, max_overlap=self.opt.max_overlap) is not None:
                        return False
                checked += 1
                break
        return checked > 0

    def tracks(self) -> Tracks:
        """The result as :class:`Tracks`."""
        return Tracks(
            vertebrae=self.verts,
            corners_px=self.corners,
            quality=self.quality,
            reason=tuple(tuple(r) for r in self.reason),
            reference_frame=self.ref,
            transforms=self.transforms,
            precision_px=self.precision,
            rotation_precision_deg=self.rotation_precision,
            # a pose rejected after it was recorded (the neighbour checks) has no cost either
            cost_excess=np.where(np.isfinite(self.transforms).all(axis=(2, 3)), self.cost_excess, np.nan),
            centres_px=np.array([q.mean(axis=0) for q in self.quads]).reshape(self.n_v, 2),
            faint=tuple((self.verts[i], rho) for i, rho in sorted(self.faint.items())),
        )


def _runs(frames: list[int]) -> list[list[int]]:
    """Sorted frame numbers split into runs of consecutive ones."""
    runs: list[list[int]] = []
    for t in frames:
        if runs and t == runs[-1][-1] + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


def _body_change(before: np.ndarray, after: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``(rotation rad, dx, dy)``: the rigid motion in the body's own (reference) coordinates, about its
    reference ``centre``, that takes pose ``before`` to pose ``after`` (``after = before @ motion``)."""
    return rigid_params(np.linalg.solve(before, after), centre)


def _body_motion(change: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The 3x3 rigid motion of :func:`_body_change`'s ``(rotation rad, dx, dy)`` about ``centre``."""
    return rigid(float(change[0]), float(change[1]), float(change[2]), centre)


def neighbour_violation(upper: np.ndarray, lower: np.ndarray, *, max_overlap: float) -> str | None:
    """Why two neighbouring bodies' corners ``(4, 2)`` are not anatomical, or None when they are.

    :data:`ORDER` when the lower body does not lie below the upper one (along the upper body's
    inferior direction, from its superior to its inferior endplate midpoints); :data:`OVERLAP` when
    their outlines overlap by more than ``max_overlap`` of the smaller.
    """
    down = 0.5 * (upper[2] + upper[3]) - 0.5 * (upper[0] + upper[1])
    if float(np.dot(lower.mean(axis=0) - upper.mean(axis=0), down)) <= 0:
        return ORDER
    if _poly_overlap(upper, lower) > max_overlap:
        return OVERLAP
    return None


def _check_anatomy(
    fits: list[_Accepted | None],
    quads: list[np.ndarray],
    reason: list[list[str | None]],
    quality: np.ndarray,
    t: int,
    max_overlap: float,
    has_corners: list[bool] | None = None,
) -> None:
    """Neighbours keep their top-to-bottom order and do not overlap; reject the weaker of a bad pair.

    A region without corners (C1) is not checked: it is no body, and must never cost one.
    """
    n_v = len(fits)
    has_corners = [True] * n_v if has_corners is None else has_corners
    for i in range(n_v - 1):
        j = i + 1
        if fits[i] is None or fits[j] is None or not (has_corners[i] and has_corners[j]):
            continue
        ci = _corners(fits[i][0], quads[i])
        cj = _corners(fits[j][0], quads[j])
        bad = neighbour_violation(ci, cj, max_overlap=max_overlap)
        if bad is None:
            continue
        k = i if fits[i][1] < fits[j][1] else j
        reason[t][k] = bad
        quality[t, k] = min(float(quality[t, k]), 0.2)
        fits[k] = None
