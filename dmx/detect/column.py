"""Coarse search for the cervical column: body candidates by template correlation, chain C2-C7.

The image is rescaled to the model's canonical resolution (``res_mm`` per pixel),
correlated (normalised, so contrast and exposure drop out) with the fitted mean
appearance of a body and of C2 with its dens at a range of tilts, and the chain
C2..C7 is the path through the candidates that maximises correlation plus the
log-likelihood of the fitted spacing and relative tilt between neighbours
(dynamic programming).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from dmx.detect.model import DetectorModel
from dmx.detect.pose import axes, normalise, rescale, smoothed
from dmx.threads import default_threads


@dataclass(frozen=True)
class Candidate:
    """A body candidate in canonical pixels: centre, tilt (deg) and correlation score."""

    x: float
    y: float
    theta_deg: float
    score: float


@dataclass(frozen=True)
class Chain:
    """The best chain C2..C7: one candidate per body (canonical pixels), total and per-body scores."""

    bodies: tuple[Candidate, ...]
    score: float
    scale: float  # canonical pixels per original pixel


def rotate_template(big: np.ndarray, theta_deg: float, size_px: int) -> np.ndarray:
    """The upright template ``big`` as it appears for a body tilted by ``theta_deg``, cropped square."""
    e_u, e_v = axes(theta_deg)
    c_big = (np.array(big.shape[::-1]) - 1) / 2
    c = (size_px - 1) / 2
    # output (x, y) -> big (cx + d.e_u, cy - d.e_v) with d = (x - c, y - c)
    m = np.array(
        [
            [e_u[0], e_u[1], c_big[0] - c * (e_u[0] + e_u[1])],
            [-e_v[0], -e_v[1], c_big[1] + c * (e_v[0] + e_v[1])],
        ]
    )
    return cv2.warpAffine(
        big.astype(np.float32),
        m,
        (size_px, size_px),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _peaks(stack: np.ndarray, angles: np.ndarray, tsize: int, *, min_dist: int, top: int) -> list[Candidate]:
    best = stack.max(axis=0)
    loc = (best == ndimage.maximum_filter(best, size=2 * min_dist + 1)) & (best > 0.05)
    ys, xs = np.nonzero(loc)
    order = np.argsort(-best[ys, xs])[:top]
    out = []
    half = (tsize - 1) / 2
    step = float(angles[1] - angles[0]) if len(angles) > 1 else 0.0
    for k in order:
        y, x = int(ys[k]), int(xs[k])
        a = int(stack[:, y, x].argmax())  # the tilt (numpy's argmax over the whole stack is slow)
        th = float(angles[a])
        if 0 < a < len(angles) - 1:
            y0, y1, y2 = stack[a - 1, y, x], stack[a, y, x], stack[a + 1, y, x]
            den = y0 - 2 * y1 + y2
            if den < 0:
                th += step * float(np.clip(0.5 * (y0 - y2) / den, -0.5, 0.5))
        out.append(Candidate(x + half, y + half, th, float(best[y, x])))
    return out


#: Windows flatter than this (std of the 0..1 normalised image) cannot hold a body: correlation 0.
MIN_WINDOW_STD = 0.01


def correlate(canon: np.ndarray, big: np.ndarray, angles: np.ndarray, size_px: int) -> np.ndarray:
    """Normalised cross-correlation maps ``(A, H', W')`` of the template at every tilt.

    Flat windows (saturated background, collimator) score 0 instead of the arbitrary values
    normalised correlation gives where the image has no variance.
    """
    h, w = canon.shape[0] - size_px + 1, canon.shape[1] - size_px + 1
    maps = np.empty((len(angles), h, w), np.float32)

    def one(k: int) -> None:  # each tilt's map written in place (no stacking copy)
        tilted = rotate_template(big, float(angles[k]), size_px)
        cv2.matchTemplate(canon, tilted, cv2.TM_CCOEFF_NORMED, result=maps[k])

    threads = min(default_threads(), len(angles))
    if threads > 1:  # OpenCV's matching runs on one core and releases the GIL: the tilts on threads
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, range(len(angles))))
    else:
        for k in range(len(angles)):
            one(k)
    ones = np.ones((size_px, size_px), np.float32)
    mean = cv2.matchTemplate(canon, ones, cv2.TM_CCORR) / ones.size
    mean_sq = cv2.matchTemplate(canon * canon, ones, cv2.TM_CCORR) / ones.size
    std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    maps[:, std < MIN_WINDOW_STD] = 0.0
    np.copyto(maps, 0.0, where=~np.isfinite(maps))
    return maps


def _transitions(model: DetectorModel, k: int, upper: list[Candidate], lower: list[Candidate]) -> np.ndarray:
    """(lower, upper) log-likelihoods of each upper body above each lower one for pair k (C2-C3 = 0)."""
    pu = np.array([[c.x, c.y, c.theta_deg] for c in upper])
    pl = np.array([[c.x, c.y, c.theta_deg] for c in lower])
    t = np.deg2rad(pl[:, 2])
    e_v = np.stack([np.sin(t), -np.cos(t)], axis=-1)  # (L, 2)
    e_u = np.stack([-e_v[:, 1], e_v[:, 0]], axis=-1)
    d = (pu[None, :, :2] - pl[:, None, :2]) * model.res_mm  # (L, U, 2)
    rel = np.stack(
        [
            np.einsum("lud,ld->lu", d, e_u),
            np.einsum("lud,ld->lu", d, e_v),
            pu[None, :, 2] - pl[:, None, 2],
        ],
        axis=-1,
    )
    z = (rel - model.trans_mean[k]) / model.trans_std[k]
    return -0.5 * np.sum(z * z, axis=-1)


def _predict(model: DetectorModel, k: int, upper: Candidate, stack: np.ndarray, tsize: int) -> Candidate:
    """The body below ``upper`` where the chain prior expects it, scored on the correlation maps."""
    du, dv, dth = model.trans_mean[k]
    th = upper.theta_deg - dth
    e_u, e_v = axes(th)
    x, y = np.array([upper.x, upper.y]) - (du * e_u + dv * e_v) / model.res_mm
    half = (tsize - 1) / 2
    a = int(np.argmin(np.abs(model.angles - th)))
    r, c = int(round(y - half)), int(round(x - half))
    h, w = stack.shape[1:]
    if not (0 <= r < h and 0 <= c < w):
        return Candidate(float(x), float(y), float(th), -1.0)
    win = stack[max(0, a - 1) : a + 2, max(0, r - 1) : r + 2, max(0, c - 1) : c + 2]
    return Candidate(float(x), float(y), float(th), float(win.max()))


@dataclass
class ScaleMaps:
    """A canonical image and its body and C2 template correlation maps (:func:`correlate`), with the
    candidates the chain search reads from them (computed on first use)."""

    canon: np.ndarray
    body: np.ndarray
    c2: np.ndarray
    _candidates: tuple[list[Candidate], list[Candidate]] | None = None

    @classmethod
    def of(cls, canon: np.ndarray, model: DetectorModel) -> ScaleMaps:
        if min(canon.shape) <= max(model.crop_body, model.crop_c2) + 2:  # too small for a template
            empty = np.zeros((0, 0, 0), np.float32)
            return cls(canon, empty, empty)
        return cls(
            canon,
            correlate(canon, model.tmpl_body, model.angles, model.crop_body),
            correlate(canon, model.tmpl_c2, model.angles, model.crop_c2),
        )

    def candidates(self, model: DetectorModel) -> tuple[list[Candidate], list[Candidate]]:
        """Body candidates and C2 candidates (the latter's centres moved to C2's body centre)."""
        if self._candidates is None:
            angles = model.angles
            min_dist = max(2, int(round(5.0 / model.res_mm)))
            cand = _peaks(self.body, angles, model.crop_body, min_dist=min_dist, top=60)
            c2_raw = _peaks(self.c2, angles, model.crop_c2, min_dist=min_dist, top=15)
            # the C2 template is centred above the body centre: shift to the body centre
            c2c = []
            for c in c2_raw:
                _, e_v = axes(c.theta_deg)
                off = model.c2_offset_mm / model.res_mm
                c2c.append(Candidate(c.x - off * e_v[0], c.y - off * e_v[1], c.theta_deg, c.score))
            self._candidates = (cand, c2c)
        return self._candidates


def find_chain(
    canon: np.ndarray,
    model: DetectorModel,
    *,
    scale: float,
    exclude: tuple[Chain, ...] = (),
    maps: ScaleMaps | None = None,
) -> Chain | None:
    """Best C2..C7 chain on a canonical-resolution, facing-right image.

    ``exclude``: chains found before on the same image (same ``scale``); no candidate within 5 mm of
    one of their bodies is used, so the chain returned is the next best on other structures.
    ``maps``: ``canon``'s :class:`ScaleMaps`, when already computed.
    """
    if min(canon.shape) <= max(model.crop_body, model.crop_c2) + 2:
        return None
    maps = maps or ScaleMaps.of(canon, model)
    body = maps.body
    cand, c2c = maps.candidates(model)
    min_dist = max(2, int(round(5.0 / model.res_mm)))
    if exclude:
        taken = np.array([[b.x, b.y] for ch in exclude for b in ch.bodies])

        def free(c: Candidate) -> bool:
            return bool(np.min(np.hypot(taken[:, 0] - c.x, taken[:, 1] - c.y)) > min_dist)

        cand = [c for c in cand if free(c)]
        c2c = [c for c in c2c if free(c)]
    if not cand or not c2c:
        return None
    w = model.score_weight
    # Viterbi, top (C2) to bottom (C7)
    score = np.array([w * c.score for c in c2c])
    layers: list[list[Candidate]] = [c2c]
    back: list[np.ndarray] = []
    for k in range(5):
        prev = layers[-1]
        cur = cand + [_predict(model, k, p, body, model.crop_body) for p in prev]
        tr = _transitions(model, k, prev, cur)  # (cur, prev)
        tot = tr + score[None, :]
        arg = tot.argmax(axis=1)
        score = tot[np.arange(len(cur)), arg] + np.array([w * q.score for q in cur])
        back.append(arg)
        layers.append(cur)
    end = int(np.argmax(score))
    path = [end]
    for k in range(4, -1, -1):
        path.append(int(back[k][path[-1]]))
    path.reverse()
    bodies = tuple(layers[k][i] for k, i in enumerate(path))
    return Chain(bodies, float(score[end]), scale)


def _canonical(norm: np.ndarray, factor: float) -> np.ndarray:
    """A normalised image at the model's resolution (``factor``: its pixels per original pixel), as the
    chain search correlates it."""
    return cv2.GaussianBlur(rescale(norm, factor), (0, 0), 0.7).astype(np.float32)


class ChainMaps:
    """One facing-right image's canonical versions and template correlation maps, per canonical scale.

    The chain search reads the same maps several times on one image: the next chains after the first
    (:func:`next_chain`, at the first chain's scale) and the checks of the column found
    (:class:`dmx.detect.detector.ColumnView`); computed here once per scale, they are identical to
    what each would compute (the same ``normalise``, ``_canonical`` and :func:`correlate`). The edge
    search's smoothed image (:meth:`smoothed`) is kept the same way, per pixel size.
    """

    def __init__(self, image: np.ndarray, model: DetectorModel) -> None:
        self.image = image
        self.model = model
        self._norm: np.ndarray | None = None
        self._at: dict[float, ScaleMaps] = {}
        self._smoothed: dict[float, tuple[np.ndarray, float]] = {}

    def smoothed(self, mm_per_px: float) -> tuple[np.ndarray, float]:
        """The edge search's smoothed image and noise level at ``mm_per_px``
        (:func:`dmx.detect.pose.smoothed`), computed once per pixel size."""
        if mm_per_px not in self._smoothed:
            self._smoothed[mm_per_px] = smoothed(self.image, mm_per_px)
        return self._smoothed[mm_per_px]

    @property
    def norm(self) -> np.ndarray:
        if self._norm is None:
            self._norm = normalise(self.image)
        return self._norm

    def at(self, factor: float, *, keep: bool = True) -> ScaleMaps:
        """The :class:`ScaleMaps` at ``factor`` canonical px per image px; kept for the next call unless
        ``keep`` is False (a scale swept once)."""
        if factor in self._at:
            return self._at[factor]
        out = ScaleMaps.of(_canonical(self.norm, factor), self.model)
        if keep:
            self._at[factor] = out
        return out

    def keep(self, factor: float, value: ScaleMaps) -> None:
        """Keep ``value`` (from :meth:`at` with ``keep=False``) for ``factor``."""
        self._at[factor] = value


def maps_facing(
    maps: dict[str, ChainMaps], image: np.ndarray, facing: str, model: DetectorModel
) -> ChainMaps:
    """``maps[facing]``: the :class:`ChainMaps` of ``image`` seen facing right (mirrored when
    ``facing`` is ``"left"``), made and kept in ``maps`` the first time."""
    if facing not in maps:
        maps[facing] = ChainMaps(image if facing == "right" else np.ascontiguousarray(image[:, ::-1]), model)
    return maps[facing]


def _chain_at(
    maps: ChainMaps, model: DetectorModel, factor: float, exclude: tuple[Chain, ...] = (), keep: bool = True
) -> tuple[Chain | None, ScaleMaps]:
    value = maps.at(factor, keep=keep)
    return find_chain(value.canon, model, scale=factor, exclude=exclude, maps=value), value


def next_chain(
    image: np.ndarray,
    model: DetectorModel,
    mm_per_px: float,
    exclude: tuple[Chain, ...],
    *,
    maps: ChainMaps | None = None,
) -> Chain | None:
    """The best chain at ``mm_per_px`` (facing-right image) on candidates away from ``exclude``'s;
    ``maps``: ``image``'s :class:`ChainMaps`, when at hand."""
    f = mm_per_px / model.res_mm
    return _chain_at(maps or ChainMaps(image, model), model, f, exclude)[0]


def coarse(
    image: np.ndarray, model: DetectorModel, *, mm_per_px: float | None, maps: ChainMaps | None = None
) -> tuple[Chain | None, float]:
    """Best chain over scales for a facing-right image; returns it and the mm per pixel used.
    ``maps``: ``image``'s :class:`ChainMaps`, when at hand (it keeps the maps of the scale chosen)."""
    maps = maps or ChainMaps(image, model)
    scales = [mm_per_px] if mm_per_px else list(model.scale_sweep_mm)
    best: tuple[Chain | None, float] = (None, scales[0])
    best_value = None
    for mpp in scales:
        f = mpp / model.res_mm
        ch, value = _chain_at(maps, model, f, keep=len(scales) == 1)
        if ch is not None and (best[0] is None or ch.score > best[0].score):
            best = (ch, mpp)
            best_value = value
    if best[0] is not None and best_value is not None:
        maps.keep(best[1] / model.res_mm, best_value)
    return best
