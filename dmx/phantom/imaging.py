"""X-ray image formation for the phantom: place each structure, integrate, expose, detect, window.

Pixel coordinates follow spec section 1: ``(x, y)`` = (column, row), the
centre of the top-left pixel is ``(0, 0)``. OpenCV's ``warpAffine`` uses the
same convention for both source and destination, so a structure's map is
placed with the exact affine that also carries its landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dmx.phantom.shapes import Structure


@dataclass(frozen=True)
class Exposure:
    """Image-formation settings.

    Attributes
    ----------
    photons : float
        Mean detected quanta per pixel without attenuation; 0 gives a noise-free image.
    blur_px : float
        Detector point-spread function (Gaussian sigma, output pixels); 0 for none.
    flicker : float
        Relative standard deviation of the per-frame tube output.
    bits : int
        Stored bits (8 or 12).
    """

    photons: float = 8000.0
    blur_px: float = 0.8
    flicker: float = 0.03
    bits: int = 8


def world_to_image(*, shape: tuple[int, int], mm_per_px: tuple[float, float], origin_px: tuple[float, float]):
    """3 x 3 affine from world mm (u anterior, v superior) to pixels of a right-facing image."""
    sr, sc = mm_per_px
    return np.array([[1.0 / sc, 0.0, origin_px[0]], [0.0, -1.0 / sr, origin_px[1]], [0.0, 0.0, 1.0]])


def place(canvas: np.ndarray, structure: Structure, local_to_image: np.ndarray, *, mode: str = "add") -> None:
    """Warp ``structure``'s map into ``canvas`` (in place) with the affine ``local_to_image``."""
    src = structure.density
    to_src = structure.local_to_source() @ np.linalg.inv(local_to_image)
    to_out = np.linalg.inv(to_src)
    h, w = src.shape
    box = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [w - 0.5, h - 0.5, 1], [-0.5, h - 0.5, 1]]).T
    pts = (to_out @ box)[:2]
    x0 = max(int(np.floor(pts[0].min())), 0)
    y0 = max(int(np.floor(pts[1].min())), 0)
    x1 = min(int(np.ceil(pts[0].max())) + 1, canvas.shape[1])
    y1 = min(int(np.ceil(pts[1].max())) + 1, canvas.shape[0])
    if x1 <= x0 or y1 <= y0:
        return
    m = to_src @ np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
    roi = cv2.warpAffine(
        src,
        m[:2],
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    view = canvas[y0:y1, x0:x1]
    if mode == "max":
        np.maximum(view, roi, out=view)
    else:
        view += roi


def attenuation(
    structures: list[Structure],
    local_to_image: dict[str, np.ndarray],
    shape: tuple[int, int],
    *,
    soft_blur_px: float = 0.0,
) -> np.ndarray:
    """Total line integral ``mu * path`` per pixel (float32) for one frame's poses.

    Soft tissue and air (combined by maximum over the per-vertebra slabs) are
    smoothed with ``soft_blur_px`` so the slabs blend into one neck.
    """
    names = ("add", "soft", "soft_w", "air", "air_w", "soft_max", "air_max")
    canvas = {n: np.zeros(shape, np.float32) for n in names}
    for s in structures:
        a = local_to_image[s.frame]
        if s.group in ("soft", "air"):
            place(canvas[s.group], s, a)
            weight = Structure(s.name, s.frame, s.group, s.weight, s.u0_mm, s.v0_mm, s.ds_mm)
            place(canvas[s.group + "_w"], weight, a)
        else:
            place(canvas[s.group], s, a, mode="max" if s.group.endswith("_max") else "add")
    soft, air = (
        np.maximum(
            canvas[g] / np.maximum(canvas[g + "_w"], 1e-3) * np.minimum(canvas[g + "_w"], 1.0),
            canvas[g + "_max"],
        )
        for g in ("soft", "air")
    )
    add = canvas["add"]
    if soft_blur_px > 0:
        soft = cv2.GaussianBlur(soft, (0, 0), soft_blur_px, borderType=cv2.BORDER_REPLICATE)
        air = cv2.GaussianBlur(air, (0, 0), 0.5 * soft_blur_px, borderType=cv2.BORDER_REPLICATE)
    total = add + soft - np.minimum(air, soft)
    return np.maximum(total, 0.0)


def detect(
    mu: np.ndarray, *, exposure: Exposure, gain: float | np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Detector signal ``-log(I / I0)`` of one frame (float32): exposure, quantum noise, blur.

    ``gain`` is the frame's relative tube output, a number or a map of the image's shape.
    """
    if exposure.photons > 0:
        expected = exposure.photons * gain * np.exp(-mu.astype(np.float64))
        counts = rng.poisson(expected).astype(np.float32)
        i0 = exposure.photons
    else:
        counts = (gain * np.exp(-mu.astype(np.float64))).astype(np.float32)
        i0 = 1.0
    if exposure.blur_px > 0:
        counts = cv2.GaussianBlur(counts, (0, 0), exposure.blur_px, borderType=cv2.BORDER_REFLECT)
    floor = 0.5 if exposure.photons > 0 else 1e-6
    return (-np.log(np.maximum(counts, floor) / i0)).astype(np.float32)


def window(signal: np.ndarray, *, low: float, high: float, bits: int) -> np.ndarray:
    """Map the log signal to stored values: more attenuation brighter (MONOCHROME2 sense)."""
    top = (1 << bits) - 1
    v = np.clip((signal - low) / max(high - low, 1e-6), 0.0, 1.0) * top
    return np.rint(v).astype(np.uint8 if bits <= 8 else np.uint16)
