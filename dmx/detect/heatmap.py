"""Learned corner heatmaps (issue #12): a small fully-convolutional network read with OpenCV's ``cv2.dnn``.

The network (fitted offline by :mod:`dmx.training.heatmap`, shipped as ONNX in ``models/``)
sees the frame resampled to :data:`NET_MM_PER_PX` and normalised by :func:`net_input`; it
gives 24 heatmaps, one per corner of C2..C7 (:data:`dmx.anatomy.CORNERS` order within each
body), at the input's resolution. Its peaks are the corners' coarse positions (about one
network pixel); the detector then refines them on the full-resolution image
(:mod:`dmx.detect.refine`).

Inference needs only OpenCV (already a dependency) and numpy: no deep-learning runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: File name of the heatmap network in the models folder.
NET_NAME = "heatmap.onnx"
#: Pixel size (mm) the network works at.
NET_MM_PER_PX = 0.8
#: Input sides are padded to a multiple of this (the network's total down-sampling).
NET_STRIDE = 16
#: Heatmap channels: 6 bodies x 4 corners.
N_BODIES = 6
N_CORNERS = 4
#: Gaussian width (network pixels) of the fitted target peaks.
PEAK_SIGMA_PX = 1.5
#: Pixel sizes tried when the image is not calibrated (mm): a body 12-22 mm deep at 0.1-0.5 mm/px.
UNCALIBRATED_SWEEP_MM = (0.1, 0.14, 0.19, 0.26, 0.35, 0.5)


def net_input(image: np.ndarray, mm_per_px: float) -> tuple[np.ndarray, float]:
    """The network's input for one display-polarity frame, and the factor image px -> input px.

    The frame is resampled to :data:`NET_MM_PER_PX` (area averaging when shrinking), its
    0.5th..99.5th percentiles mapped to 0..1, and padded (with the median) to a multiple of
    :data:`NET_STRIDE`.
    """
    im = np.asarray(image, dtype=np.float32)
    factor = float(mm_per_px) / NET_MM_PER_PX
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
class Peaks:
    """Per corner of C2..C7: position (image px, (6, 4, 2)) and peak height (0..~1, (6, 4))."""

    corners_px: np.ndarray
    height: np.ndarray
    mm_per_px: float


class HeatmapNet:
    """The ONNX network, read once with ``cv2.dnn``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._net = cv2.dnn.readNetFromONNX(str(self.path))

    def heatmaps(self, x: np.ndarray) -> np.ndarray:
        """Raw network output (24, H, W) for one prepared input (H, W)."""
        self._net.setInput(x[None, None].astype(np.float32))
        out = self._net.forward()
        return np.asarray(out[0], dtype=np.float32)

    def peaks(self, image: np.ndarray, mm_per_px: float) -> Peaks:
        """Corner positions from the heatmaps' maxima, with sub-pixel centroids."""
        x, factor = net_input(image, mm_per_px)
        hm = self.heatmaps(x)
        return Peaks(*decode(hm, factor), mm_per_px=float(mm_per_px))


def decode(hm: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of each heatmap refined by a log-parabola through its neighbours; positions in image px.

    The fitted peaks are Gaussian, for which the parabola through the logarithms of the maximum
    and its two neighbours (per axis) gives the exact centre.
    """
    n, h, w = hm.shape
    pos = np.zeros((n, 2))
    height = np.zeros(n)
    for c in range(n):
        m = hm[c]
        i = int(np.argmax(m))
        y, x = divmod(i, w)
        height[c] = float(m[y, x])
        pos[c] = (
            x + _vertex(m[y, x - 1 : x + 2]) if 0 < x < w - 1 else x,
            y + _vertex(m[y - 1 : y + 2, x]) if 0 < y < h - 1 else y,
        )
    # input pixel centres -> image pixel centres (resize maps centres linearly)
    img = (pos + 0.5) / factor - 0.5
    return img.reshape(N_BODIES, N_CORNERS, 2), height.reshape(N_BODIES, N_CORNERS)


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


__all__ = ["NET_MM_PER_PX", "NET_NAME", "HeatmapNet", "Peaks", "decode", "load_net", "net_input"]
