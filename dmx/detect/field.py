"""The exposed field of a frame: the image less the flat bands along its edges (collimator blades, a
featureless background), where nothing of a body is seen (issue #12). Used by the detector to leave out a
body the field's edge cuts (:func:`dmx.detect._cut_by_field_edge`) and by the C2 test not to weigh a C2
the field's edge cuts (:func:`dmx.detect.detector.c2_parts`)."""

from __future__ import annotations

import numpy as np

#: The exposed field (:func:`exposed_field`): lines (rows or columns) from the image's edge inward belong to
#: a flat band along it (a collimator blade; nothing imaged) where :data:`FIELD_FLAT_SHARE` of the first
#: line's pixels lie within :data:`FIELD_FLAT_TOL` of the image's 1-99 % range of its median, and of each
#: later line :data:`FIELD_PART_SHARE` within it of that value (burned-in text and ruler ticks on a blade);
#: up to :data:`FIELD_GAP_PX` lines that are not (a ruler's line) are passed over. On this project's
#: acquisition phantoms (20, seeds 760000+) the edge found lay 0-3 px outside the blade's (its penumbra).
FIELD_FLAT_TOL = 0.03
FIELD_FLAT_SHARE = 0.9
FIELD_PART_SHARE = 0.8
FIELD_GAP_PX = 4


def exposed_field(image: np.ndarray) -> tuple[int, int, int, int]:
    """The exposed field of ``image`` as (first row, end row, first column, end column): the image less
    the flat bands along its edges (:data:`FIELD_FLAT_TOL`). A band may be a collimator blade or a
    featureless background (air, saturation); either way nothing of a body is seen in it."""
    img = np.asarray(image, np.float32)
    lo, hi = np.percentile(img, (1, 99))
    tol = FIELD_FLAT_TOL * max(float(hi - lo), 1e-6)

    def band(lines) -> int:  # lines from the edge inward: how many belong to a flat band
        value: float | None = None
        n = gap = 0
        for i, line in enumerate(lines):
            if value is None:
                med = float(np.median(line))
                if np.mean(np.abs(line - med) <= tol) < FIELD_FLAT_SHARE:
                    break
                value = med
            if np.mean(np.abs(line - value) <= tol) >= FIELD_PART_SHARE:
                n, gap = i + 1, 0
            else:
                gap += 1
                if gap > FIELD_GAP_PX:
                    break
        return n

    h, w = img.shape
    top = band(img[i] for i in range(h // 2))
    bottom = band(img[h - 1 - i] for i in range(h // 2))
    left = band(img[:, j] for j in range(w // 2))
    right = band(img[:, w - 1 - j] for j in range(w // 2))
    return top, h - bottom, left, w - right
