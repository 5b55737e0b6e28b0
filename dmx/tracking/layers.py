"""Separate a body's image into the layer that moves with it and the layer that stays still (issue #13).

X-ray images add in log attenuation: around a vertebral body, a frame is the body's own layer (the bone
and whatever moves rigidly with it) plus a layer that does not follow it (the shoulders, fixed to the
thorax, while C7 moves under them). A template cut from the reference frame holds both, so the rigid
fit is a compromise between following the body and keeping the still layer in place: a bias at the
optimum that no restart removes. Given the body's poses from a first tracking pass,
:func:`static_layer` estimates the still layer ``S`` (image coordinates) jointly with the body layer
``B`` (reference coordinates) by linear least squares::

    frame_t(y) = B(A_t^-1 y) + S(y)        for every pixel y of the region and every tracked frame t

(bilinear ``B``; a small ridge on ``S`` leaves to the body what the poses cannot tell apart, e.g. a
constant). The frames minus ``S`` are then registered against a template cut from ``B`` (the mean of the
frames moved back to the reference pose), see ``dmx.tracking.tracker._Tracker.refine_still_layers``,
which also decides where the still layer is real: where the motion is too small to tell the layers
apart, the estimate puts part of the body in ``S`` (its edges at their mean place).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dmx.tracking.register import Template

#: At most this many frames (evenly spread over the tracked ones) enter the least-squares estimate.
MAX_LAYER_FRAMES = 40

#: OpenCV interpolation of the images between the region and the body grid.
IMAGE_INTERPOLATION = 1  # cv2.INTER_LINEAR


@dataclass(frozen=True)
class Layers:
    """A region split into the layer that stays still and the layer that moves with a body.

    Attributes
    ----------
    still : numpy.ndarray
        ``(y1 - y0, x1 - x0)`` float32 still layer over ``box`` (image coordinates; mean level 0).
    box : tuple of int
        ``(x0, y0, x1, y1)`` region of the frames.
    body : numpy.ndarray
        Float32 body layer in reference coordinates (the frames' level), on a grid whose pixel (0, 0)
        is reference pixel ``body_origin``: the mean over the frames of each frame minus the still
        layer, moved back to the reference pose.
    body_origin : tuple of int
        Reference coordinates (x, y) of ``body[0, 0]``.
    body_frames : numpy.ndarray
        How many frames saw each pixel of ``body`` (float32, same shape).
    n_frames : int
        Frames used.
    """

    still: np.ndarray
    box: tuple[int, int, int, int]
    body: np.ndarray
    body_origin: tuple[int, int]
    body_frames: np.ndarray
    n_frames: int

    def remove_still(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` (any real dtype; not modified) as float32 with the still layer taken out."""
        out = np.array(frame, dtype=np.float32)
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] -= self.still
        return out

    def body_reference(self, reference: np.ndarray) -> np.ndarray:
        """The reference frame with the body layer in place of the region (float32; a new array).

        Where fewer than half the frames saw a pixel of the body layer, the reference minus the still
        layer is kept.
        """
        out = self.remove_still(reference)
        h_img, w_img = out.shape
        bx, by = self.body_origin
        hb, wb = self.body.shape
        cx0, cy0 = max(bx, 0), max(by, 0)
        cx1, cy1 = min(bx + wb, w_img), min(by + hb, h_img)
        if cx1 <= cx0 or cy1 <= cy0:
            return out
        part = self.body[cy0 - by : cy1 - by, cx0 - bx : cx1 - bx]
        seen = self.body_frames[cy0 - by : cy1 - by, cx0 - bx : cx1 - bx] >= 0.5 * self.n_frames
        view = out[cy0:cy1, cx0:cx1]
        view[seen] = part[seen]
        return out


def static_layer(
    frames: np.ndarray,
    poses: list[tuple[int, np.ndarray]],
    box: tuple[int, int, int, int],
    *,
    ridge: float = 1.0,
    max_frames: int = MAX_LAYER_FRAMES,
    iterations: int = 30,
    mask: np.ndarray | None = None,
    body_box: tuple[int, int, int, int] | None = None,
    footprint_only: bool = False,
) -> Layers:
    """The layer of region ``box`` that stays still while a body moves with ``poses`` (least squares).

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` frames (any real dtype; not modified).
    poses : list of (int, numpy.ndarray)
        ``(t, A_t)``: the body's 3x3 rigid pose (reference -> frame ``t``, pixels) on its tracked frames.
    box : tuple of int
        ``(x0, y0, x1, y1)`` region of the frames (exclusive ends), holding the body at every pose.
    ridge : float
        Weight of the ridge on the still layer (in frames: the layer costs as much as this many frames'
        residual of the same size), so that what the motion cannot separate stays with the body.
    max_frames : int
        Frames used at most (evenly spread over ``poses``).
    iterations : int
        Alternating least-squares rounds (body layer given the still one, then the still one given the
        body); what the motion separates well (edges) converges first.

    mask : numpy.ndarray or None
        ``(H, W)`` boolean mask of the body's own region on the reference frame (its template's pixels:
        the body and its rim, not its neighbours, which move otherwise); only the pixels it covers at
        each pose enter the estimate. None: the whole region.
    body_box : tuple of int or None
        ``(x0, y0, x1, y1)`` of the body layer's grid in reference coordinates (the body's template box);
        None: the region grown by the largest displacement (every pixel the frames show).
    footprint_only : bool
        Move the body layer into each frame's region only over its footprint there (the body grid's
        box at that pose, plus 2 px) instead of over the whole region, which holds the body at every
        pose (on a 600-frame cine, up to 9 times the footprint). The still layer is the same estimate
        but for the interpolation's fixed-point rounding of the shifted warps (about 1e-4 of the
        levels): cheaper, not identical to the bit. Used for the quick look of
        :meth:`dmx.tracking.tracker._Tracker.refine_still_layers`, not for the estimate it refits from.

    Returns
    -------
    Layers
        The still layer over ``box`` and the body layer around it (reference coordinates).
    """
    import cv2

    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if len(poses) > max_frames:
        pick = np.unique(np.round(np.linspace(0, len(poses) - 1, max_frames)).astype(int))
        poses = [poses[k] for k in pick]
    crops = [np.asarray(frames[t][y0:y1, x0:x1], dtype=np.float32) for t, _ in poses]
    offset = float(np.median([np.median(c) for c in crops]))
    crops = [c - np.float32(offset) for c in crops]
    if body_box is None:  # the region in reference coordinates, grown by the largest displacement
        corners = np.array([[x0, y0, 1.0], [x1, y0, 1.0], [x1, y1, 1.0], [x0, y1, 1.0]])
        reach = max(
            float(np.abs((np.linalg.inv(a) @ corners.T).T[:, :2] - corners[:, :2]).max()) for _, a in poses
        )
        g = int(math.ceil(reach)) + 1
        body_box = (x0 - g, y0 - g, x1 + g, y1 + g)
    bx0, by0, bx1, by1 = body_box
    bw, bh = bx1 - bx0, by1 - by0
    # region pixel (c, r) -> frame (x0 + c, y0 + r); body grid pixel (c, r) -> reference (bx0 + c, by0 + r)
    shift_b = np.array([[1.0, 0.0, bx0], [0.0, 1.0, by0], [0.0, 0.0, 1.0]])
    shift_r = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    to_frame = [(shift_r @ a @ shift_b)[:2].astype(np.float64) for _, a in poses]  # body grid -> region

    # images with IMAGE_INTERPOLATION, replicated borders; weights bilinear with zero borders
    def to_body(img: np.ndarray, m: np.ndarray, flags: int = IMAGE_INTERPOLATION) -> np.ndarray:
        return cv2.warpAffine(
            img, m, (bw, bh), flags=flags | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )

    def to_region(img: np.ndarray, m: np.ndarray, flags: int = IMAGE_INTERPOLATION) -> np.ndarray:
        return cv2.warpAffine(img, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)

    linear = cv2.INTER_LINEAR
    own = np.ones((bh, bw), np.float32)
    if mask is not None:  # the body's own region, cut to the body grid (zero outside the image)
        own[:] = 0.0
        mh, mw = mask.shape
        cx0, cy0 = max(bx0, 0), max(by0, 0)
        cx1, cy1 = min(bx1, mw), min(by1, mh)
        if cx1 > cx0 and cy1 > cy0:
            own[cy0 - by0 : cy1 - by0, cx0 - bx0 : cx1 - bx0] = mask[cy0:cy1, cx0:cx1]
    # body grid pixels inside the region on each frame, and the region pixels the body's own part covers
    zeros = cv2.BORDER_CONSTANT
    inside = [
        cv2.warpAffine(
            np.ones((h, w), np.float32), m, (bw, bh), flags=linear | cv2.WARP_INVERSE_MAP, borderMode=zeros
        )
        for m in to_frame
    ]
    seen = sum(inside)
    seen_b = np.maximum(seen, 1e-3)
    still = np.zeros((h, w), np.float32)

    def body_layer() -> np.ndarray:
        return (
            sum(v * to_body(c - still, m) for c, m, v in zip(crops, to_frame, inside, strict=True)) / seen_b
        )

    if footprint_only:
        # never empty: the region holds the body at every pose
        windows = [_footprint(m, (bw, bh), (w, h)) for m in to_frame]
        # the same warps into each window: the window's origin taken out of the translation
        shifted = [
            m - np.array([[0.0, 0.0, wx0], [0.0, 0.0, wy0]])
            for m, (wx0, wy0, _, _) in zip(to_frame, windows, strict=True)
        ]
        covered = [
            cv2.warpAffine(own, m, (wx1 - wx0, wy1 - wy0), flags=linear, borderMode=zeros)
            for m, (wx0, wy0, wx1, wy1) in zip(shifted, windows, strict=True)
        ]
        n_cov = np.full((h, w), np.float32(ridge))
        for cov, (wx0, wy0, wx1, wy1) in zip(covered, windows, strict=True):
            n_cov[wy0:wy1, wx0:wx1] += cov
        for _ in range(iterations):
            body = body_layer()
            still = np.zeros((h, w), np.float32)
            for c, m, cov, (wx0, wy0, wx1, wy1) in zip(crops, shifted, covered, windows, strict=True):
                moved = cv2.warpAffine(
                    body,
                    m,
                    (wx1 - wx0, wy1 - wy0),
                    flags=IMAGE_INTERPOLATION,
                    borderMode=cv2.BORDER_REPLICATE,
                )
                still[wy0:wy1, wx0:wx1] += cov * (c[wy0:wy1, wx0:wx1] - moved)
            still /= n_cov
    else:
        covered = [cv2.warpAffine(own, m, (w, h), flags=linear, borderMode=zeros) for m in to_frame]
        n_cov = sum(covered) + np.float32(ridge)
        for _ in range(iterations):
            body = body_layer()
            still = (
                sum(
                    cov * (c - to_region(body, m)) for c, m, cov in zip(crops, to_frame, covered, strict=True)
                )
                / n_cov
            )
    body = body_layer()
    return Layers(
        still=still.astype(np.float32),
        box=box,
        body=(body + np.float32(offset)).astype(np.float32),
        body_origin=(bx0, by0),
        body_frames=seen.astype(np.float32),
        n_frames=len(poses),
    )


def _footprint(
    to_region: np.ndarray, body_size: tuple[int, int], region_size: tuple[int, int], margin_px: int = 2
) -> tuple[int, int, int, int]:
    """Box ``(x0, y0, x1, y1)`` of the region (exclusive ends, clipped to it) that the body grid of size
    ``body_size`` (w, h) covers when moved by the 2x3 ``to_region``, plus ``margin_px``."""
    bw, bh = body_size
    w, h = region_size
    corners = np.array([[0.0, 0.0, 1.0], [bw, 0.0, 1.0], [bw, bh, 1.0], [0.0, bh, 1.0]])
    p = corners @ to_region.T
    x0 = min(max(int(math.floor(p[:, 0].min())) - margin_px, 0), w - 1)
    y0 = min(max(int(math.floor(p[:, 1].min())) - margin_px, 0), h - 1)
    x1 = max(min(int(math.ceil(p[:, 0].max())) + margin_px + 1, w), x0 + 1)
    y1 = max(min(int(math.ceil(p[:, 1].max())) + margin_px + 1, h), y0 + 1)
    return x0, y0, x1, y1


def still_strength(layers: Layers, reference: np.ndarray, template: Template) -> float:
    """How strongly the still layer shows in a body's template: its filtered std over the filtered
    reference's std, at the template's pixels (0: nothing still; the shoulders over C7: about 0.3).

    Both are filtered as the registration filters them (``template``'s blur and high-pass), so that
    smooth shading, which the registration ignores, does not count.
    """
    from dmx.tracking.register import _prefilter

    x0, y0, x1, y1 = layers.box
    sigma, hp = template.blur_sigma_px, template.highpass_sigma_px
    still = _prefilter(layers.still, sigma, hp)
    ref = _prefilter(np.asarray(reference[y0:y1, x0:x1], dtype=np.float32), sigma, hp)
    level = template.levels[0]
    u = np.round(level.u + level.origin[0] - x0).astype(np.int64)
    v = np.round(level.v + level.origin[1] - y0).astype(np.int64)
    inside = (u >= 0) & (u < x1 - x0) & (v >= 0) & (v < y1 - y0)
    if inside.sum() < 16:
        return 0.0
    ref_std = float(ref[v[inside], u[inside]].std())
    return float(still[v[inside], u[inside]].std()) / ref_std if ref_std > 0 else 0.0
