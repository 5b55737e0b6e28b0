"""Learned vertebral-body segmentation (issue #12): a small fully-convolutional network read with ``cv2.dnn``.

The network (fitted offline by :mod:`dmx.training.heatmap`, shipped as ONNX in ``models/``)
sees the frame resampled to :data:`NET_MM_PER_PX` and normalised by :func:`net_input`; it
gives, at the input's resolution, the logits of a segmentation into background and the bodies
C2..C7 and four corner-type logit maps (:data:`dmx.anatomy.CORNERS` order, class-agnostic).
:func:`decode` turns them into each body's region, facing and coarse corners (about one network
pixel, 1.2 mm, at best); the detector then refines them on the full-resolution image
(:func:`dmx.detect.detector.run_heatmap`, :mod:`dmx.detect.refine`).

Inference needs only OpenCV (already a dependency) and numpy: no deep-learning runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

#: File name of the heatmap network in the models folder.
NET_NAME = "heatmap.onnx"
#: Pixel size (mm) the network works at.
NET_MM_PER_PX = 1.2
#: Input sides are padded to a multiple of this (the network's total down-sampling).
NET_STRIDE = 16
#: Bodies (C2..C7) and corners per body.
N_BODIES = 6
N_CORNERS = 4
#: Segmentation classes (background, C2..C7): the network's first channels (logits).
N_CLASSES = N_BODIES + 1
#: Output channels: the segmentation logits, then one corner-type logit map per corner of
#: :data:`dmx.anatomy.CORNERS` (class-agnostic: the body comes from the segmentation).
N_OUT = N_CLASSES + N_CORNERS
#: Gaussian width (network pixels) of the fitted corner peaks.
PEAK_SIGMA_PX = 1.5
#: Pixel sizes tried when the image is not calibrated (mm): a body 12-22 mm deep at 0.1-0.5 mm/px.
UNCALIBRATED_SWEEP_MM = (0.1, 0.14, 0.19, 0.26, 0.35, 0.5)


def net_input(
    image: np.ndarray, mm_per_px: float, *, net_mm_per_px: float = NET_MM_PER_PX
) -> tuple[np.ndarray, float]:
    """The network's input for one display-polarity frame, and the factor image px -> input px.

    The frame is resampled to :data:`NET_MM_PER_PX` (area averaging when shrinking), its
    0.5th..99.5th percentiles mapped to 0..1, and padded (with the median) to a multiple of
    :data:`NET_STRIDE`.
    """
    im = np.asarray(image, dtype=np.float32)
    factor = float(mm_per_px) / net_mm_per_px
    h, w = im.shape
    size = (max(NET_STRIDE, int(round(w * factor))), max(NET_STRIDE, int(round(h * factor))))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    small = cv2.resize(im, size, interpolation=interp)
    lo, hi = np.percentile(small, [0.5, 99.5])
    small = np.clip((small - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)
    ph = -small.shape[0] % NET_STRIDE
    pw = -small.shape[1] % NET_STRIDE
    if ph or pw:
        small = np.pad(small, ((0, ph), (0, pw)), constant_values=float(np.median(small)))
    return small, factor


@dataclass(frozen=True)
class Bodies:
    """What the network found of each of C2..C7 (arrays over the six bodies, C2 first).

    ``corners_px`` are image pixels ((6, 4, 2), :data:`dmx.anatomy.CORNERS` order; NaN where the
    body has no region); ``region_prob`` the mean class probability over the body's region (0:
    no region); ``corner_peak`` the corner-map peak of each corner inside the region ((6, 4));
    ``overlap`` the intersection over union of the region with the quadrilateral of its corners
    (a clean body outline: about 0.8-0.95); ``area_mm2`` the region's area; ``facing`` the side
    the anterior corners are on; ``labels`` the network's level map (0 background, 1..6 C2..C7;
    regions off the column cleared) and ``factor`` image px -> its px; ``class_prob`` the mean
    probability of each body class over each body's region ((6, 6), row: the region's level);
    ``facing_vote`` the signed evidence for the facing taken (``facing_maps`` where that is clear,
    else :func:`_facing_vote_from_image`: the difference between the two sides of the column on the 0..1
    input; its size says how clear the facing is); ``facing_maps`` the corner maps' mean anterior-against-
    posterior difference near the bodies (:data:`FACING_MAPS_MIN`); ``origin`` the image pixel (x, y) where
    the window the network saw begins (:meth:`HeatmapNet.bodies_in_windows`; ``labels`` cover that window
    only).
    """

    corners_px: np.ndarray
    region_prob: np.ndarray
    corner_peak: np.ndarray
    overlap: np.ndarray
    area_mm2: np.ndarray
    mm_per_px: float
    facing: str = "right"
    labels: np.ndarray | None = None
    factor: float = 1.0
    class_prob: np.ndarray | None = None
    facing_vote: float = float("nan")
    origin: tuple[int, int] = (0, 0)
    facing_maps: float = float("nan")

    def level_at(self, point_px: np.ndarray) -> int:
        """The level (0..5 for C2..C7, -1 background) the network gave the image point."""
        if self.labels is None:
            return -1
        x, y = (np.asarray(point_px, dtype=float) - self.origin + 0.5) * self.factor - 0.5
        h, w = self.labels.shape
        i, j = int(round(y)), int(round(x))
        return int(self.labels[i, j]) - 1 if 0 <= i < h and 0 <= j < w else -1

    @property
    def has_column_end(self) -> bool:
        """Whether the network found C2's or C7's region: the levels are counted from an end of
        the column. Without either, the bodies' levels are the network's guess from their look
        alone, and that guess was one level off on whole columns (held out from the posterior
        elements, every region one level too high)."""
        return bool(self.region_prob[0] > 0 or self.region_prob[N_BODIES - 1] > 0)

    def score(self) -> float:
        """Evidence for a column at this pixel size: summed region probability x overlap."""
        return float(np.sum(self.region_prob * self.overlap))


#: Side (mm) of the windows :meth:`HeatmapNet.bodies_in_windows` also runs the network on: a little
#: more than the 134-mm crops it was trained on.
WINDOW_MM = 160.0
#: Windows are used only for fields wider than this many times :data:`WINDOW_MM`.
WINDOW_OVER = 1.25


class HeatmapNet:
    """The ONNX network, read once with ``cv2.dnn``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._net = cv2.dnn.readNetFromONNX(str(self.path))
        self._last: tuple[tuple, Bodies] | None = None

    def heatmaps(self, x: np.ndarray) -> np.ndarray:
        """Raw network output (:data:`N_OUT`, H, W) for one prepared input (H, W)."""
        self._net.setInput(x[None, None].astype(np.float32))
        out = self._net.forward()
        return np.asarray(out[0], dtype=np.float32)

    def bodies(self, image: np.ndarray, mm_per_px: float) -> Bodies:
        """The bodies' regions and corners on one display-polarity frame at ``mm_per_px``.

        The last frame's result is kept (keyed by the frame's bytes and the pixel size): the
        detector's level check (:func:`dmx.detect.detector.level_votes`) and the network's own
        column (:meth:`bodies_in_windows`) read the same whole frame at the same pixel size.
        """
        import hashlib

        frame = np.ascontiguousarray(image)
        key = (
            frame.shape,
            frame.dtype.str,
            float(mm_per_px),
            hashlib.blake2b(frame.data, digest_size=16).digest(),
        )
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        found = self._bodies(frame, mm_per_px)
        self._last = (key, found)
        return found

    def _bodies(self, image: np.ndarray, mm_per_px: float) -> Bodies:
        x, factor = net_input(image, mm_per_px)
        return decode(self.heatmaps(x), factor, mm_per_px, image=x)

    def bodies_in_windows(self, image: np.ndarray, mm_per_px: float, window_mm: float = WINDOW_MM) -> Bodies:
        """:meth:`bodies` on the whole frame and, when the field is wider than ``window_mm`` by more
        than :data:`WINDOW_OVER`, on overlapping square windows of that side (half a window apart,
        the last flush with the edge); the view with the most body evidence (:meth:`Bodies.score`) wins.

        The network was trained on 134-mm crops of phantoms whose fields were 112-240 mm: on a
        300-mm field (skull, shoulders and chest in view) it missed bodies or put the column a level
        off where a window around the neck gives every body (issue #12, independent renderer).
        """
        best = self.bodies(image, mm_per_px)
        h, w = image.shape
        side = int(round(window_mm / mm_per_px))
        if max(h, w) <= WINDOW_OVER * side:
            return best
        for y0 in _window_starts(h, side):
            for x0 in _window_starts(w, side):
                found = self._bodies(image[y0 : y0 + side, x0 : x0 + side], mm_per_px)
                if found.score() > best.score():
                    corners = found.corners_px + np.array([x0, y0], dtype=float)
                    best = replace(found, corners_px=corners, origin=(x0, y0))
        return best


def _window_starts(size: int, side: int) -> list[int]:
    """Starts of windows of ``side`` px over ``size`` px, half a window apart, the last flush with the end."""
    if size <= side:
        return [0]
    n = int(np.ceil((size - side) / (side / 2))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, size - side, n)})


#: Smallest region (mm^2) taken for a body (a C3-C7 body is about 150-300 mm^2).
MIN_REGION_MM2 = 15.0


#: A corner-map peak at least this high places its corner; a weaker one leaves the corner of
#: the rectangle fitted to the body's region.
CORNER_PEAK_MIN = 0.3
#: (superior, anterior) sign of each corner of :data:`dmx.anatomy.CORNERS`.
_CORNER_SIGNS = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], dtype=float)


def decode(out: np.ndarray, factor: float, mm_per_px: float, image: np.ndarray | None = None) -> Bodies:
    """Regions and corners of C2..C7 from the network's output.

    Each body's region is the largest connected part of the pixels that are more likely a body
    than background and whose most probable body is that one; regions off the column or out of
    their levels' order are dropped (:func:`on_column`). The column's direction at a body
    comes from its neighbours' regions. The facing comes from the corner maps (anterior against posterior
    corner types on either side of the bodies, ``facing_maps``) where they are clear
    (:data:`FACING_MAPS_MIN`) or no ``image`` is given, otherwise from the network's input ``image``
    (:func:`_facing_vote_from_image`: the posterior elements beside the bodies).
    Each corner is the maximum of its
    corner type's map within the region grown by 2 pixels (so the neighbouring bodies' corners,
    across the disc, do not compete), refined by a log-parabola through its neighbours; where
    that maximum is below :data:`CORNER_PEAK_MIN`, or lies nearer another corner of the
    minimum-area rectangle around the region than its own (a network trained in session 27 put
    every corner type's peak on the posterior corners), that rectangle's corner is taken instead.
    Positions are mapped to image pixels.
    """
    logits = out[:N_CLASSES]
    e = np.exp(logits - logits.max(axis=0))
    prob = e / e.sum(axis=0)
    # a body pixel: background less likely than not; its level: the most probable body class
    lab = np.where(prob[0] < 0.5, 1 + np.argmax(prob[1:], axis=0), 0)
    cmap = 1.0 / (1.0 + np.exp(-out[N_CLASSES:]))
    h, w = lab.shape
    corners = np.full((N_BODIES, N_CORNERS, 2), np.nan)
    region_prob = np.zeros(N_BODIES)
    peak = np.zeros((N_BODIES, N_CORNERS))
    overlap = np.zeros(N_BODIES)
    area = np.zeros(N_BODIES)
    class_prob = np.zeros((N_BODIES, N_BODIES))
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    regions: dict[int, np.ndarray] = {}
    centre: dict[int, np.ndarray] = {}
    for b in range(N_BODIES):
        mask = (lab == b + 1).astype(np.uint8)
        n, comp, stats, cent = cv2.connectedComponentsWithStats(mask, connectivity=4)
        if n < 2:
            continue
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        if stats[best, cv2.CC_STAT_AREA] * NET_MM_PER_PX**2 < MIN_REGION_MM2:
            continue
        regions[b] = comp == best
        centre[b] = np.asarray(cent[best], dtype=float)
        region_prob[b] = float(prob[b + 1][regions[b]].mean())
        class_prob[b] = prob[1:, regions[b]].mean(axis=1)
        area[b] = float(regions[b].sum()) * NET_MM_PER_PX**2
    for b in set(regions) - set(on_column(centre)):  # a region off the column: not a body of it
        del regions[b], centre[b]
        region_prob[b], area[b], class_prob[b] = 0.0, 0.0, 0.0
    if not regions:
        return Bodies(corners, region_prob, peak, overlap, area, float(mm_per_px), "right", lab, factor)
    column = np.zeros((h, w), dtype=bool)
    for region in regions.values():
        column |= region
    lab = np.where(column, lab, 0)
    _, axis, _ = column_axis(column, centre)
    up = {b: _column_up(b, centre) for b in regions}
    up = {b: u if np.dot(u, axis) >= 0 else -u for b, u in up.items()}  # a mislabelled neighbour
    near = {b: cv2.dilate(regions[b].astype(np.uint8), grow) > 0 for b in regions}
    yy, xx = np.mgrid[0:h, 0:w]
    side = {}
    for b in regions:
        a = np.array([-up[b][1], up[b][0]])  # the +x side when the head is up (-y)
        side[b] = np.sign((xx - centre[b][0]) * a[0] + (yy - centre[b][1]) * a[1])
    # the corner maps' facing: anterior corner types on the +perpendicular side (facing right) against
    # posterior ones, as a mean over the pixels near the bodies (-2..2)
    ant_minus_post = cmap[0] + cmap[3] - cmap[1] - cmap[2]
    n_near = sum(int(np.sum(near[b])) for b in regions)
    by_maps = sum(float(np.sum(np.where(near[b], ant_minus_post * side[b], 0.0))) for b in regions)
    by_maps /= max(n_near, 1)
    if image is not None and abs(by_maps) < FACING_MAPS_MIN:
        vote = _facing_vote_from_image(image, column, centre)
    else:
        vote = by_maps
    sign = 1.0 if vote >= 0 else -1.0
    for b, region in regions.items():
        u = up[b]
        ant = sign * np.array([-u[1], u[0]])
        rect = _rect_corners(region, centre[b], u, ant)
        pos = rect.copy()
        for k in range(N_CORNERS):
            m = np.where(near[b], cmap[k], 0.0)
            i = int(np.argmax(m))
            y, x = divmod(i, w)
            peak[b, k] = float(m[y, x])
            at = np.array(
                [
                    x + _vertex(cmap[k][y, x - 1 : x + 2]) if 0 < x < w - 1 else x,
                    y + _vertex(cmap[k][y - 1 : y + 2, x]) if 0 < y < h - 1 else y,
                ]
            )
            # a peak nearer another corner of the region's rectangle marks that corner, not this one
            if peak[b, k] >= CORNER_PEAK_MIN and int(np.argmin(np.hypot(*(rect - at).T))) == k:
                pos[k] = at
        quad = np.zeros((h, w), dtype=np.uint8)
        cv2.fillPoly(quad, [np.round(pos * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        inter = float(np.sum(region & (quad > 0)))
        overlap[b] = inter / max(float(np.sum(region | (quad > 0))), 1.0)
        corners[b] = (pos + 0.5) / factor - 0.5  # input pixel centres -> image pixel centres
    facing = "right" if sign * -axis[1] >= 0 else "left"  # anterior +x-ward: sign * perp[0]
    return Bodies(
        corners,
        region_prob,
        peak,
        overlap,
        area,
        float(mm_per_px),
        facing,
        lab,
        factor,
        class_prob=class_prob,
        facing_vote=float(vote),
        facing_maps=float(by_maps),
    )


#: The corner maps tell the facing (:func:`decode`) where their mean anterior-against-posterior difference
#: over the pixels near the bodies is at least this (of -2..2); below it the image beside the column does
#: (:func:`_facing_vote_from_image`). Set in session 59 on development sets only: the network shipped since
#: then (trained on crops flipped and turned any way, its corner maps following the bones) gave 0.061-0.122
#: on all-family 1380000+-1400000+ (60 frames as given; the facing right on all 60, where the image beside
#: the column had two wrong, 1380013 and 1390015, voting 0.025 and 0.005) and 0.078-0.103 on the
#: independent renderer's D-G (240, all right); the network before it at most 0.006, its facing by the maps
#: wrong on 24 of those 60: with it the image decides, as before.
FACING_MAPS_MIN = 0.03

#: Band beside the bodies (network px from the nearest body pixel) compared for the facing.
FACING_BAND_PX = (2.0, 12.0)


def column_axis(bodies: np.ndarray, centre: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre, unit direction towards C2 and along-axis SD (px) of the segmented body pixels."""
    ys, xs = np.nonzero(bodies)
    m = np.array([xs.mean(), ys.mean()])
    evals, evecs = np.linalg.eigh(np.cov(np.stack([xs - m[0], ys - m[1]])))
    axis = evecs[:, 1]
    ks = sorted(centre)
    if len(ks) >= 2:  # towards C2: the majority of the level pairs (one misplaced region cannot turn it)
        pairs = [(i, j) for a, i in enumerate(ks) for j in ks[a + 1 :]]
        vote = sum(np.sign(np.dot(centre[i] - centre[j], axis)) for i, j in pairs)
        if vote < 0 or (vote == 0 and np.dot(centre[ks[0]] - centre[ks[-1]], axis) < 0):
            axis = -axis
    elif axis[1] > 0:
        axis = -axis  # one body: the head up
    return m, axis, float(np.sqrt(max(evals[1], 1.0)))


#: Two regions lie on one column as their levels say when the distance between their centres per
#: level apart, against the median of all pairs, is within this range, and the higher level (C2
#: side) is the one further towards C2 along the column.
COLUMN_SPACING_RANGE = (0.6, 1.6)


def on_column(centre: dict[int, np.ndarray]) -> list[int]:
    """The levels whose region centres (network px, levels 0..5 for C2..C7) lie on one column in
    their levels' order, the most contradicted region left out first.

    A pair contradicts itself when its distance per level apart, against the median over all
    pairs, is outside :data:`COLUMN_SPACING_RANGE`, or when the lower level lies further towards
    C2 along the column (the direction the majority of pairs gives). A region the network placed
    away from the column (a C7 region on the skull) would otherwise turn the column's direction,
    and every body's superior side with it.
    """
    keep = sorted(centre)
    while len(keep) >= 3:
        pairs = [(i, j) for a, i in enumerate(keep) for j in keep[a + 1 :]]
        step = {(i, j): float(np.hypot(*(centre[i] - centre[j]))) / (j - i) for i, j in pairs}
        scale = float(np.median(list(step.values())))
        pts = np.array([centre[k] for k in keep])
        d = pts - pts.mean(axis=0)
        axis = np.linalg.eigh(d.T @ d)[1][:, 1]
        if sum(np.sign(np.dot(centre[i] - centre[j], axis)) for i, j in pairs) < 0:
            axis = -axis
        bad = dict.fromkeys(keep, 0)
        for i, j in pairs:
            r = step[(i, j)] / max(scale, 1e-6)
            upward = np.dot(centre[i] - centre[j], axis) > 0
            if not (COLUMN_SPACING_RANGE[0] <= r <= COLUMN_SPACING_RANGE[1] and upward):
                bad[i] += 1
                bad[j] += 1
        worst = max(keep, key=lambda k: bad[k])
        if bad[worst] <= 1 or bad[worst] * 2 < len(keep) - 1:
            break
        keep.remove(worst)
    return keep


def _facing_vote_from_image(image: np.ndarray, bodies: np.ndarray, centre: dict[int, np.ndarray]) -> float:
    """Positive when the anterior side is on the column's + perpendicular side (axis (ux, uy)
    towards C2, perpendicular (-uy, ux): the +x side when the head is up).

    Along the column (:func:`column_axis`),
    within :data:`FACING_BAND_PX` of the bodies, the posterior side holds bone (pedicles,
    articular pillars, laminae) and the anterior side soft tissue and the airway: the side more
    like the bodies themselves (brighter where bone is bright, darker in an inverted image) is
    posterior.
    """
    m, axis, sd = column_axis(bodies, centre)
    perp = np.array([-axis[1], axis[0]])
    h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w]
    dist = cv2.distanceTransform((~bodies).astype(np.uint8), cv2.DIST_L2, 3)
    along = np.abs((xx - m[0]) * axis[0] + (yy - m[1]) * axis[1]) < 1.5 * sd
    band = (dist > FACING_BAND_PX[0]) & (dist < FACING_BAND_PX[1]) & along
    side = (xx - m[0]) * perp[0] + (yy - m[1]) * perp[1]
    plus, minus = band & (side > 0), band & (side < 0)
    if plus.sum() < 4 or minus.sum() < 4:
        return 0.0
    bone = 1.0 if float(np.mean(image[bodies])) >= float(np.mean(image[band])) else -1.0
    # the + side more bone-like: posterior there, anterior on the - side
    vote = -bone * (float(np.mean(image[plus])) - float(np.mean(image[minus])))
    return vote


def _column_up(b: int, centre: dict[int, np.ndarray]) -> np.ndarray:
    """Unit vector towards the head at body ``b``, from the centres of its nearest found neighbours."""
    above = [j for j in range(b - 1, -1, -1) if j in centre][:1]
    below = [j for j in range(b + 1, N_BODIES) if j in centre][:1]
    top = centre[above[0]] if above else centre[b]
    bottom = centre[below[0]] if below else centre[b]
    d = top - bottom
    n = float(np.hypot(*d))
    return d / n if n > 1e-6 else np.array([0.0, -1.0])


def _rect_corners(region: np.ndarray, centre: np.ndarray, up: np.ndarray, ant: np.ndarray) -> np.ndarray:
    """The minimum-area rectangle around a region (its pixels' outer edges), corners in CORNERS order.

    Each corner is the rectangle's vertex furthest in its (superior, anterior) direction.
    """
    ys, xs = np.nonzero(region)
    (cx, cy), (rw, rh), ang = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
    box = cv2.boxPoints(((cx, cy), (rw + 1.0, rh + 1.0), ang))
    d = box - centre
    score = np.stack([_CORNER_SIGNS[k, 0] * (d @ up) + _CORNER_SIGNS[k, 1] * (d @ ant) for k in range(4)])
    best, best_s = None, -np.inf
    for perm in _PERMS:
        sc = float(sum(score[k, perm[k]] for k in range(4)))
        if sc > best_s:
            best, best_s = perm, sc
    return box[list(best)].astype(float)


_PERMS = [
    (a, b, c, d)
    for a in range(4)
    for b in range(4)
    for c in range(4)
    for d in range(4)
    if len({a, b, c, d}) == 4
]


def _vertex(v: np.ndarray) -> float:
    """Offset (-0.5..0.5) of the maximum of the parabola through log(v[0..2]) from the middle sample."""
    if np.any(v <= 1e-6):
        return 0.0
    a, b, c = np.log(v.astype(float))
    den = a - 2.0 * b + c
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


_NETS: dict[tuple[Path, int], HeatmapNet] = {}


def load_net(path: str | Path) -> HeatmapNet:
    """The network at ``path``, cached while the file is unchanged."""
    key = Path(path).resolve()
    stamp = (key, key.stat().st_mtime_ns)
    if stamp not in _NETS:
        _NETS[stamp] = HeatmapNet(key)
    return _NETS[stamp]


__all__ = [
    "N_CLASSES",
    "N_OUT",
    "NET_MM_PER_PX",
    "NET_NAME",
    "Bodies",
    "HeatmapNet",
    "decode",
    "load_net",
    "net_input",
    "on_column",
]
