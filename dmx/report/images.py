"""Frames as small JPEG data URIs: display window, downsampling and a size budget for the cine."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CinePlan:
    """How the cine is encoded: which frames, at what scale and JPEG quality."""

    frame_indices: tuple[int, ...]
    scale: float
    jpeg_quality: int
    estimated_bytes: int


def display_window(
    frames: np.ndarray, *, low_pct: float = 0.5, high_pct: float = 99.5
) -> tuple[float, float]:
    """One grey-level window (low, high) for the whole study, from percentiles of sampled frames.

    A single window keeps the brightness of the cine steady from frame to frame.
    """
    n = frames.shape[0]
    sample = frames[np.unique(np.linspace(0, n - 1, min(n, 12)).astype(int))]
    sample = sample[:, ::4, ::4] if sample.shape[1] > 256 else sample
    lo, hi = np.nanpercentile(sample, [low_pct, high_pct]) if np.isfinite(sample).any() else (0.0, 1.0)
    if not hi > lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def to_uint8(frame: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Map ``frame`` to 0..255 through ``window`` (a new array; ``frame`` is not modified).

    8- and 16-bit unsigned frames go through a lookup table of the same mapping (identical
    result, several times faster than the float arithmetic on a 1024² frame).
    """
    if frame.dtype == np.uint8 and frame.size > 256:
        return cv2.LUT(np.ascontiguousarray(frame), _window_lut(np.uint8, window))
    if frame.dtype == np.uint16 and frame.size > 65536:
        return _window_lut(np.uint16, window)[frame]
    return _window_map(frame, window)


def _window_map(frame: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    scaled = (frame.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).astype(np.uint8)


def _window_lut(dtype: type, window: tuple[float, float]) -> np.ndarray:
    """:func:`to_uint8` of every value of an unsigned integer ``dtype`` (its lookup table)."""
    return _window_map(np.arange(np.iinfo(dtype).max + 1, dtype=dtype), window)


def resize(image_u8: np.ndarray, scale: float) -> np.ndarray:
    """Downsample by ``scale`` (<= 1) with area averaging."""
    if scale >= 1.0:
        return image_u8
    h, w = image_u8.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image_u8, size, interpolation=cv2.INTER_AREA)


def jpeg_bytes(image_u8: np.ndarray, *, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 always encodes a uint8 image
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def plan_cine(
    frames: np.ndarray,
    window: tuple[float, float],
    *,
    max_side_px: int = 512,
    budget_bytes: int = 12_000_000,
    jpeg_quality: int = 70,
) -> CinePlan:
    """Choose scale, JPEG quality and frame step so the encoded cine fits ``budget_bytes``.

    Encodes a few sample frames at each candidate setting (largest and best first) and
    keeps the first whose estimate (base64 included) fits. Every frame is kept when
    possible; frames are skipped (every 2nd, 3rd ...) only as a last resort.
    """
    n, h, w = frames.shape
    sample_idx = np.unique(np.linspace(0, n - 1, min(n, 6)).astype(int))
    base_scale = min(1.0, max_side_px / max(h, w))
    candidates = []
    for side_factor in (1.0, 0.85, 0.7):
        for q in (jpeg_quality, max(40, jpeg_quality - 15)):
            candidates.append((base_scale * side_factor, q))
    cache: dict[tuple[float, int], float] = {}

    def mean_size(scale: float, q: int) -> float:
        if (scale, q) not in cache:
            sizes = [
                len(jpeg_bytes(resize(to_uint8(frames[i], window), scale), quality=q)) for i in sample_idx
            ]
            cache[(scale, q)] = float(np.mean(sizes)) * 4 / 3 + 4  # base64 and JSON quoting
        return cache[(scale, q)]

    for step in range(1, n + 1):
        kept = len(range(0, n, step))
        for scale, q in candidates:
            est = mean_size(scale, q) * kept
            if est <= budget_bytes:
                return CinePlan(tuple(range(0, n, step)), scale, q, int(est))
    scale, q = candidates[-1]
    return CinePlan((0,), scale, q, int(mean_size(scale, q)))


def encode_cine(
    frames: np.ndarray, window: tuple[float, float], plan: CinePlan, *, threads: int | None = None
) -> list[str]:
    """JPEG data URIs of the planned frames.

    ``threads`` (default: the CPU count, at most 4) encode frames in parallel (OpenCV releases
    the GIL); the result is the same, frame for frame.
    """

    from dmx.threads import default_threads

    def one(i: int) -> str:
        small = resize(to_uint8(frames[i], window), plan.scale)
        return data_uri(jpeg_bytes(small, quality=plan.jpeg_quality))

    n_threads = default_threads() if threads is None else max(1, int(threads))
    if n_threads == 1 or len(plan.frame_indices) < 8:
        return [one(i) for i in plan.frame_indices]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        return list(pool.map(one, plan.frame_indices))


@dataclass(frozen=True)
class EncodedCine:
    """A study's cine frames encoded ahead of its report (:func:`encode_study_cine`), with the options
    they were encoded for; the report uses them when its own options and window are the same."""

    window: tuple[float, float]
    max_side_px: int
    budget_bytes: int
    jpeg_quality: int
    frames_shape: tuple[int, ...]
    plan: CinePlan
    uris: tuple[str, ...]

    def fits(
        self,
        frames: np.ndarray,
        window: tuple[float, float],
        *,
        max_side_px: int,
        budget_bytes: int,
        jpeg_quality: int,
    ) -> bool:
        """Whether these are the frames :func:`encode_cine` would give for these arguments."""
        return (self.window, self.max_side_px, self.budget_bytes, self.jpeg_quality, self.frames_shape) == (
            window,
            max_side_px,
            budget_bytes,
            jpeg_quality,
            tuple(frames.shape),
        )


def encode_study_cine(
    frames: np.ndarray,
    *,
    max_side_px: int = 512,
    budget_bytes: int = 12_000_000,
    jpeg_quality: int = 70,
    threads: int | None = None,
) -> EncodedCine:
    """The report's cine frames (:func:`display_window`, :func:`plan_cine`, :func:`encode_cine`), which do
    not depend on the tracks: :func:`dmx.pipeline.analyze` encodes them while the study is measured."""
    window = display_window(frames)
    plan = plan_cine(
        frames, window, max_side_px=max_side_px, budget_bytes=budget_bytes, jpeg_quality=jpeg_quality
    )
    uris = tuple(encode_cine(frames, window, plan, threads=threads))
    return EncodedCine(window, max_side_px, budget_bytes, jpeg_quality, tuple(frames.shape), plan, uris)


def crop_box(
    corners_px: np.ndarray, shape: tuple[int, int], *, margin: float = 0.12, aspect: float = 0.8
) -> tuple[int, int, int, int]:
    """A box ``(x0, y0, x1, y1)`` around the tracked corners with a margin, clipped to the image.

    ``aspect`` is the wanted width/height; the whole frame when nothing is tracked.
    """
    h, w = shape
    pts = corners_px.reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    if pts.size == 0:
        return 0, 0, w, h
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    bh = (y1 - y0) * (1 + 2 * margin)
    bw = max((x1 - x0) + 2 * margin * bh, bh * aspect)
    bh = max(bh, bw / aspect)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw, bh = min(bw, w), min(bh, h)
    left = int(round(min(max(cx - bw / 2, 0), w - bw)))
    top = int(round(min(max(cy - bh / 2, 0), h - bh)))
    return left, top, int(round(left + bw)), int(round(top + bh))
