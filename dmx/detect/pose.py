"""Body poses and patch sampling shared by the detector's fitting and inference.

A body pose is ``(centre_px, theta_deg, px_per_mm)`` in an image where the patient
faces right (anterior = +x). ``theta_deg`` is the tilt of the body's superior
direction from image-up, positive when the top leans anterior. The body's local
frame has ``u`` anterior and ``v`` superior, in millimetres.
"""

from __future__ import annotations

import cv2
import numpy as np


def axes(theta_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (image x, y) of the local anterior ``u`` and superior ``v`` axes."""
    t = np.deg2rad(theta_deg)
    e_v = np.array([np.sin(t), -np.cos(t)])
    e_u = np.array([-e_v[1], e_v[0]])
    return e_u, e_v


def directions(corners_px: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A body's anterior and superior directions on the image (px, not unit): from the midpoint of its
    posterior corners to that of its anterior ones, and from its inferior corners' midpoint to its superior
    ones' (CORNERS order)."""
    c = np.asarray(corners_px, dtype=float)
    return 0.5 * (c[0] + c[3]) - 0.5 * (c[1] + c[2]), 0.5 * (c[0] + c[1]) - 0.5 * (c[2] + c[3])


def pose_from_corners(corners_px: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (px) and tilt (deg) of a body from its four corners (CORNERS order, facing right)."""
    c = np.asarray(corners_px, dtype=float)
    _, up = directions(c)
    theta = float(np.degrees(np.arctan2(up[0], -up[1])))
    return c.mean(axis=0), theta


def to_local_mm(
    points_px: np.ndarray, centre_px: np.ndarray, theta_deg: float, px_per_mm: float
) -> np.ndarray:
    """Image points to the body's local (u, v) millimetres."""
    e_u, e_v = axes(theta_deg)
    d = np.asarray(points_px, dtype=float) - centre_px
    return np.stack([d @ e_u, d @ e_v], axis=-1) / px_per_mm


def to_image_px(
    local_mm: np.ndarray, centre_px: np.ndarray, theta_deg: float, px_per_mm: float
) -> np.ndarray:
    """Local (u, v) millimetres to image points."""
    e_u, e_v = axes(theta_deg)
    loc = np.asarray(local_mm, dtype=float)
    return centre_px + px_per_mm * (loc[..., :1] * e_u + loc[..., 1:2] * e_v)


def sample_patch(
    image: np.ndarray,
    centre_px: np.ndarray,
    theta_deg: float,
    px_per_mm: float,
    *,
    size_px: tuple[int, int],
    res_mm: float,
    offset_mm: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Upright patch (rows, cols) at ``res_mm`` per pixel around local point ``offset_mm`` of a pose."""
    rows, cols = size_px
    e_u, e_v = axes(theta_deg)
    # patch pixel (j, i) -> local u = off_u + (j - cx) * res, v = off_v - (i - cy) * res
    cx, cy = (cols - 1) / 2, (rows - 1) / 2
    a = px_per_mm * res_mm
    origin = (
        np.asarray(centre_px, float)
        + px_per_mm * (offset_mm[0] * e_u + offset_mm[1] * e_v)
        - a * cx * e_u
        + a * cy * e_v
    )
    m = np.array([[a * e_u[0], -a * e_v[0], origin[0]], [a * e_u[1], -a * e_v[1], origin[1]]])
    return cv2.warpAffine(
        image.astype(np.float32),
        m,
        (cols, rows),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )


def normalise(image: np.ndarray) -> np.ndarray:
    """Float32 copy scaled so the 1st..99.5th percentiles map to 0..1 (input unchanged)."""
    im = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(im[:: max(1, im.shape[0] // 256), :: max(1, im.shape[1] // 256)], [1.0, 99.5])
    if not np.isfinite(hi - lo) or hi - lo <= 0:
        return np.zeros_like(im)
    return ((im - lo) / (hi - lo)).astype(np.float32)


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """Resize by ``factor`` (area averaging when shrinking)."""
    h, w = image.shape
    size = (max(8, int(round(w * factor))), max(8, int(round(h * factor))))
    interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


def smoothed(image: np.ndarray, mm_per_px: float) -> tuple[np.ndarray, float]:
    """Display-normalised image smoothed for edge search, and the noise level of its edge steps."""
    im = normalise(image)
    sigma = max(0.7, 0.12 / mm_per_px)
    sm = cv2.GaussianBlur(im, (0, 0), sigma)
    resid = im - cv2.GaussianBlur(im, (0, 0), 2.0)
    noise = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) / (2.0 * sigma)
    return sm, max(noise, 1e-4)
