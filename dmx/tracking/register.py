"""Robust rigid registration of one vertebral body template to one frame.

The core of the tracker: an inverse-compositional Lucas-Kanade fit over the
Euclidean group (rotation + translation, 3 parameters) with a per-iteration
gain/bias photometric normalisation and iteratively re-weighted least squares
(Huber, then Tukey) so that an occluder over part of the body (mandible,
shoulder, skull base) is rejected instead of pulling the fit. Coarse to fine
over a small Gaussian pyramid built on a region of interest only.

All transforms are 3x3 matrices in full-resolution pixel coordinates
(x = column, y = row, centre of the top-left pixel = (0, 0)) mapping
reference-frame coordinates to the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_TUKEY_C = 4.685
_HUBER_C = 1.345


def rigid(theta_rad: float, tx_px: float, ty_px: float, centre_px: np.ndarray) -> np.ndarray:
    """3x3 rotation by ``theta_rad`` about ``centre_px`` followed by a translation."""
    c, s = math.cos(theta_rad), math.sin(theta_rad)
    cx, cy = float(centre_px[0]), float(centre_px[1])
    return np.array(
        [[c, -s, cx - c * cx + s * cy + tx_px], [s, c, cy - s * cx - c * cy + ty_px], [0.0, 0.0, 1.0]]
    )


def rigid_params(a: np.ndarray, centre_px: np.ndarray) -> np.ndarray:
    """``(theta_rad, tx_px, ty_px)`` of rigid ``a``: rotation, and displacement of ``centre_px``."""
    theta = math.atan2(a[1, 0], a[0, 0])
    moved = a[:2, :2] @ centre_px + a[:2, 2]
    return np.array([theta, moved[0] - centre_px[0], moved[1] - centre_px[1]])


def _level_matrix(scale: float) -> np.ndarray:
    """Full-resolution coordinates -> pyramid level coordinates (cv2.pyrDown pixel-centre convention)."""
    off = 0.5 / scale - 0.5
    return np.array([[1.0 / scale, 0.0, off], [0.0, 1.0 / scale, off], [0.0, 0.0, 1.0]])


def _pyramid(image: np.ndarray, n_levels: int) -> list[np.ndarray]:
    levels = [image]
    for _ in range(1, n_levels):
        levels.append(cv2.pyrDown(levels[-1]))
    return levels


@dataclass(frozen=True)
class _Level:
    scale: float
    shape: tuple[int, int]  # (h, w) of the dense template grid
    origin: tuple[float, float]  # level coordinates of grid pixel (0, 0)
    centre: np.ndarray  # rotation centre, level coordinates
    idx: np.ndarray  # flat indices of the pixels used
    u: np.ndarray  # grid columns of used pixels
    v: np.ndarray  # grid rows of used pixels
    values: np.ndarray  # template values (N,)
    weight: np.ndarray  # static weights (N,)
    sd: np.ndarray  # steepest-descent images (N, 3)


@dataclass(frozen=True)
class Template:
    """Reference appearance of one vertebral body, precomputed for every pyramid level.

    Build with :func:`make_template`.
    """

    quad_px: np.ndarray  # (4, 2) reference corners
    centre_px: np.ndarray  # (2,) rotation centre (quad centroid)
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the padded template, full resolution
    levels: tuple[_Level, ...]  # finest first
    blur_sigma_px: float
    highpass_sigma_px: float | None
    size_px: float  # sqrt(quad area)
    weight_total: float  # sum of static weights at the finest level


def _prefilter(img: np.ndarray, sigma: float, highpass_sigma: float | None) -> np.ndarray:
    """Gaussian low-pass (noise, JPEG) minus a wide Gaussian (smooth overlapping soft tissue)."""
    out = cv2.GaussianBlur(img, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma > 0 else img
    if highpass_sigma:
        out = out - cv2.GaussianBlur(img, (0, 0), highpass_sigma, borderType=cv2.BORDER_REFLECT)
    return out


def _sobel(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    return gx, gy


def make_template(
    reference: np.ndarray,
    quad_px: np.ndarray,
    *,
    exclude_quads_px: tuple[np.ndarray, ...] = (),
    margin_frac: float = 0.15,
    blur_sigma_px: float = 1.0,
    highpass_sigma_px: float | None = None,
    n_levels: int | None = None,
) -> Template:
    """Precompute the template of one body from the reference frame.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(H, W)`` reference frame (any real dtype; not modified).
    quad_px : numpy.ndarray
        ``(4, 2)`` corners of the body on the reference frame.
    exclude_quads_px : tuple of numpy.ndarray
        Corners of the neighbouring bodies; their pixels (dilated by 2 px) are left out of the template.
    margin_frac : float
        The template covers the body dilated by this fraction of its size (sqrt of area), so that its
        cortical edges and a rim of context are in it.
    blur_sigma_px : float
        Gaussian pre-filter applied to template and frames alike (noise, JPEG blocks).
    highpass_sigma_px : float or None
        If given, subtract a Gaussian blur of this sigma (high-pass), for template and frames alike.
    n_levels : int or None
        Pyramid levels; by default as many as keep the coarsest template about 16 px across (max 4).
    """
    quad = np.asarray(quad_px, dtype=np.float64)
    h_img, w_img = reference.shape
    x = quad[:, 0]
    y = quad[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    size = max(math.sqrt(area), 4.0)
    margin = max(4.0, margin_frac * size)
    if n_levels is None:
        n_levels = 1
        while n_levels < 4 and size / 2**n_levels >= 16:
            n_levels += 1
    pad = int(math.ceil(margin + 3 * max(blur_sigma_px, highpass_sigma_px or 0) + 2 ** (n_levels + 1)))
    x0 = int(math.floor(x.min())) - pad
    y0 = int(math.floor(y.min())) - pad
    x1 = int(math.ceil(x.max())) + pad + 1
    y1 = int(math.ceil(y.max())) + pad + 1
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w_img), min(y1, h_img)
    if cx1 - cx0 < 8 or cy1 - cy0 < 8:
        raise ValueError("vertebral body lies outside the reference frame")
    roi = _prefilter(
        np.asarray(reference[cy0:cy1, cx0:cx1], dtype=np.float32), blur_sigma_px, highpass_sigma_px
    )

    # static weight mask: dilated body minus the neighbours' bodies
    shift = 4
    mul = 1 << shift
    mask = np.zeros(roi.shape, np.uint8)
    pts = np.round((quad - [cx0, cy0]) * mul).astype(np.int32)
    cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_8, shift=shift)
    r = int(round(margin))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    mask = cv2.dilate(mask, kernel)
    if exclude_quads_px:
        other = np.zeros(roi.shape, np.uint8)
        for q in exclude_quads_px:
            p = np.round((np.asarray(q, dtype=np.float64) - [cx0, cy0]) * mul).astype(np.int32)
            cv2.fillPoly(other, [p], 255, lineType=cv2.LINE_8, shift=shift)
        other = cv2.dilate(other, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
        mask[other > 0] = 0
    maskf = mask.astype(np.float32) / 255.0

    centre = quad.mean(axis=0)
    images = _pyramid(roi, n_levels)
    masks = _pyramid(maskf, n_levels)
    levels = []
    for lvl, (img, msk) in enumerate(zip(images, masks, strict=True)):
        scale = float(2**lvl)
        gx, gy = _sobel(img)
        h, w = img.shape
        m = msk.copy()
        m[:1, :] = 0
        m[-1:, :] = 0
        m[:, :1] = 0
        m[:, -1:] = 0
        m[m < 0.5] = 0
        idx = np.flatnonzero(m.ravel() > 0)
        vv, uu = np.divmod(idx, w)
        origin = (cx0 / scale, cy0 / scale)
        c_l = (_level_matrix(scale) @ np.array([centre[0], centre[1], 1.0]))[:2]
        xs = uu + origin[0] - c_l[0]
        ys = vv + origin[1] - c_l[1]
        gxs = gx.ravel()[idx].astype(np.float64)
        gys = gy.ravel()[idx].astype(np.float64)
        sd = np.stack([gys * xs - gxs * ys, gxs, gys], axis=1)
        levels.append(
            _Level(
                scale=scale,
                shape=(h, w),
                origin=origin,
                centre=c_l,
                idx=idx,
                u=uu.astype(np.float64),
                v=vv.astype(np.float64),
                values=img.ravel()[idx].astype(np.float64),
                weight=m.ravel()[idx].astype(np.float64),
                sd=sd,
            )
        )
    return Template(
        quad_px=quad,
        centre_px=centre,
        bbox=(cx0, cy0, cx1, cy1),
        levels=tuple(levels),
        blur_sigma_px=blur_sigma_px,
        highpass_sigma_px=highpass_sigma_px,
        size_px=size,
        weight_total=float(levels[0].weight.sum()),
    )


@dataclass(frozen=True)
class Fit:
    """Result of registering a template to a frame.

    Attributes
    ----------
    transform : numpy.ndarray
        3x3 rigid transform reference -> frame.
    converged : bool
        The last update moved no corner by more than the tolerance.
    visible : float
        Fraction of the template (weighted) that falls inside the frame.
    inliers : float
        Fraction of the template (weighted, invisible parts count as outliers) whose residual is
        within 3.5 reference noise scales.
    residual_scale : float
        Robust (MAD) scale of the residual, in template intensity units.
    gain : float
        Photometric gain frame/template.
    zncc : float
        Normalised correlation of template and warped frame over the inliers.
    corner_std_px : float
        Expected corner standard deviation from the inverse Hessian (precision, not accuracy).
    iterations : int
        Iterations used at the finest level.
    """

    transform: np.ndarray
    converged: bool
    visible: float
    inliers: float
    residual_scale: float
    gain: float
    zncc: float
    corner_std_px: float
    iterations: int


class FrameROI:
    """A blurred pyramid of one region of a frame (built lazily, reused across fits)."""

    def __init__(self, frame: np.ndarray, box: tuple[int, int, int, int], template: Template):
        x0, y0, x1, y1 = box
        n_levels = len(template.levels)
        img = _prefilter(
            np.asarray(frame[y0:y1, x0:x1], dtype=np.float32),
            template.blur_sigma_px,
            template.highpass_sigma_px,
        )
        self.box = box
        self.images = _pyramid(img, n_levels)
        self.frame_shape = frame.shape

    def covers(self, box: tuple[int, int, int, int]) -> bool:
        fx1, fy1 = self.frame_shape[1], self.frame_shape[0]
        bx0, by0, bx1, by1 = box
        x0, y0, x1, y1 = self.box
        return (
            (bx0 >= x0 or x0 == 0)
            and (by0 >= y0 or y0 == 0)
            and (bx1 <= x1 or x1 == fx1)
            and (by1 <= y1 or y1 == fy1)
        )


def needed_box(
    template: Template, transform: np.ndarray, frame_shape: tuple[int, int], slack_px: float
) -> tuple[int, int, int, int]:
    """Frame region (x0, y0, x1, y1) holding the template warped by ``transform`` plus ``slack_px``."""
    x0, y0, x1, y1 = template.bbox
    c = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=np.float64)
    p = (transform[:2] @ c.T).T
    h, w = frame_shape
    bx0 = max(int(math.floor(p[:, 0].min() - slack_px)), 0)
    by0 = max(int(math.floor(p[:, 1].min() - slack_px)), 0)
    bx1 = min(int(math.ceil(p[:, 0].max() + slack_px)) + 1, w)
    by1 = min(int(math.ceil(p[:, 1].max() + slack_px)) + 1, h)
    return bx0, by0, max(bx1, bx0), max(by1, by0)


def _warp(level: _Level, image: np.ndarray, roi_origin: tuple[float, float], a_l: np.ndarray):
    """Sample ``image`` (level coordinates offset by ``roi_origin``) at the warped template pixels."""
    m = a_l.copy()
    # grid (u, v) -> level ref coords: + origin ; -> level frame coords: a_l ; -> roi: - roi_origin
    g = np.array([[1.0, 0.0, level.origin[0]], [0.0, 1.0, level.origin[1]], [0.0, 0.0, 1.0]])
    m = m @ g
    m[0, 2] -= roi_origin[0]
    m[1, 2] -= roi_origin[1]
    h, w = level.shape
    warped = cv2.warpAffine(
        image,
        m[:2].astype(np.float64),
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    vals = warped.ravel()[level.idx].astype(np.float64)
    xs = m[0, 0] * level.u + m[0, 1] * level.v + m[0, 2]
    ys = m[1, 0] * level.u + m[1, 1] * level.v + m[1, 2]
    ih, iw = image.shape
    valid = (xs >= 0) & (xs <= iw - 1) & (ys >= 0) & (ys <= ih - 1)
    return vals, valid


def _gain_bias(t: np.ndarray, i: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    sw = w.sum()
    if sw <= 0:
        return 1.0, 0.0
    mt = (w * t).sum() / sw
    mi = (w * i).sum() / sw
    dt = t - mt
    var_t = (w * dt * dt).sum()
    if var_t <= 0:
        return 1.0, mi - mt
    gain = (w * dt * (i - mi)).sum() / var_t
    return float(gain), float(mi - gain * mt)


def register(
    template: Template,
    roi: FrameROI,
    initial: np.ndarray,
    *,
    max_iterations: int = 15,
    tolerance_px: float = 0.01,
    noise_scale: float | None = None,
    first_level: int | None = None,
) -> Fit:
    """Robustly register ``template`` to the frame region ``roi``, starting from ``initial``.

    Parameters
    ----------
    template : Template
        From :func:`make_template`.
    roi : FrameROI
        Region of the frame, as a blurred pyramid with as many levels as the template.
    initial : numpy.ndarray
        3x3 initial guess reference -> frame.
    max_iterations : int
        Per pyramid level.
    tolerance_px : float
        Stop a level when an update moves no corner more than this (full-resolution pixels; scaled up on
        coarse levels).
    noise_scale : float or None
        Residual scale of a good match (template intensity units), used to count inliers; by default
        the robust scale of this fit.
    first_level : int or None
        Coarsest level to start at (default: the coarsest).
    """
    n = len(template.levels)
    start = n - 1 if first_level is None else min(first_level, n - 1)
    a = np.array(initial, dtype=np.float64)
    radius = 0.5 * template.size_px * math.sqrt(2)
    iters = 0
    converged = False
    last = None
    for lvl in range(start, -1, -1):
        level = template.levels[lvl]
        if level.idx.size < 12:
            continue
        s = _level_matrix(level.scale)
        s_inv = np.linalg.inv(s)
        a_l = s @ a @ s_inv
        image = roi.images[lvl]
        roi_origin = (roi.box[0] / level.scale, roi.box[1] / level.scale)
        tol = tolerance_px / level.scale * (1 if lvl == 0 else 4)
        rad_l = radius / level.scale
        robust_w = np.ones_like(level.values)
        converged = False
        for it in range(max_iterations):
            vals, valid = _warp(level, image, roi_origin, a_l)
            w0 = level.weight * valid
            if w0.sum() < 0.2 * level.weight.sum():
                break
            gain, bias = _gain_bias(level.values, vals, w0 * robust_w)
            if not gain > 1e-6:
                break
            e = (vals - bias) / gain - level.values
            ae = np.abs(e[w0 > 0])
            sigma = 1.4826 * float(np.median(ae)) + 1e-9
            use_tukey = lvl == 0 and it >= 2
            if use_tukey:
                r = e / (_TUKEY_C * sigma)
                robust_w = np.where(np.abs(r) < 1, (1 - r * r) ** 2, 0.0)
            else:
                ar = np.abs(e) / (_HUBER_C * sigma)
                robust_w = np.where(ar <= 1, 1.0, 1.0 / np.maximum(ar, 1e-12))
            w = w0 * robust_w
            sdw = level.sd * w[:, None]
            h_mat = sdw.T @ level.sd
            b = sdw.T @ e
            try:
                dp = np.linalg.solve(h_mat, b)
            except np.linalg.LinAlgError:
                break
            dtheta, dx, dy = float(dp[0]), float(dp[1]), float(dp[2])
            dw = rigid(dtheta, dx, dy, level.centre)
            a_l = a_l @ np.linalg.inv(dw)
            last = (e, w0, robust_w, sigma, gain, vals, h_mat)
            if lvl == 0:
                iters = it + 1
            if math.hypot(dx, dy) + abs(dtheta) * rad_l < tol:
                converged = True
                break
        a = s_inv @ a_l @ s
    if last is None:
        return Fit(a, False, 0.0, 0.0, float("nan"), float("nan"), 0.0, float("inf"), iters)
    # final statistics at the finest level, at the final estimate
    level = template.levels[0]
    vals, valid = _warp(level, roi.images[0], (roi.box[0], roi.box[1]), a)
    w0 = level.weight * valid
    visible = float(w0.sum() / max(template.weight_total, 1e-12))
    if w0.sum() <= 0:
        return Fit(a, False, visible, 0.0, float("nan"), float("nan"), 0.0, float("inf"), iters)
    robust_w = last[2] if last[2].shape == vals.shape else np.ones_like(vals)
    gain, bias = _gain_bias(level.values, vals, w0 * robust_w)
    if not gain > 1e-6:
        return Fit(a, False, visible, 0.0, float("nan"), gain, 0.0, float("inf"), iters)
    e = (vals - bias) / gain - level.values
    sigma = 1.4826 * float(np.median(np.abs(e[w0 > 0]))) + 1e-9
    ref = sigma if noise_scale is None else noise_scale
    inl = (np.abs(e) < 3.5 * ref) & (w0 > 0)
    inliers = float((level.weight * inl).sum() / max(template.weight_total, 1e-12))
    wi = level.weight * inl
    if wi.sum() > 0:
        mt = (wi * level.values).sum() / wi.sum()
        mi = (wi * vals).sum() / wi.sum()
        dt = level.values - mt
        di = vals - mi
        den = math.sqrt(float((wi * dt * dt).sum() * (wi * di * di).sum()))
        zncc = float((wi * dt * di).sum() / den) if den > 0 else 0.0
    else:
        zncc = 0.0
    sdw = level.sd * wi[:, None]
    h_mat = sdw.T @ level.sd
    try:
        cov = np.linalg.inv(h_mat) * ref**2
        corner_std = math.sqrt(max(cov[1, 1] + cov[2, 2] + cov[0, 0] * radius**2, 0.0))
    except np.linalg.LinAlgError:
        corner_std = float("inf")
    return Fit(a, converged, visible, inliers, sigma, gain, zncc, corner_std, iters)
