"""Which way a found column faces, from what repeats at every level behind its bodies (issue #12).

The detectors tell anterior from posterior by the image beside the column (the learned network: the side
more like bone; the body template: its mean body's surroundings). A bright mandible, airway wall or
shoulder along the front of the column can outweigh that, and a column outlined on its own bodies with
anterior and posterior swapped is wrong at every corner by a body's depth while every outline fits its
body (all-family phantom 1150017: C2-C6 at confidence 1.0, 106-114 px off).

What tells the sides apart on any lateral view is that the posterior elements (pedicles, articular pillars
and facet joints, laminae, spinous processes) repeat at every level, each in the same place beside its own
body, while what lies in front (prevertebral soft tissue, the airway, the pharynx) runs along the column
and does not repeat level by level. :func:`side_coherence` measures it: beside each body, in the body's own
frame, a band from :data:`REPEAT_BAND` body depths beyond the wall, one level spacing long along the
column, with each line's linear trend along the column removed (shading, a soft-tissue edge running along
the column); the coherence of a side is the energy of the bodies' mean band over their mean energy (1 when
every body's band is the same, about 1/n when they are unrelated).
"""

from __future__ import annotations

import cv2
import numpy as np

from dmx.anatomy import BODIES, Vertebra

#: The band beside each body whose repetition is measured, in body depths beyond the wall (anterior or
#: posterior), and its sampling (lines across the column, samples along it over one level spacing).
REPEAT_BAND = (0.3, 1.5)
REPEAT_LINES, REPEAT_SAMPLES = 16, 24
#: The levels measured: C2's and C7's surroundings differ from the rest (the dens and atlas above C2; the
#: shoulders over C7, the first rib), and on the independent renderer's studies (sets A-G, true corners)
#: adding them put the posterior side behind on 16 of 300 columns against 1 of 300 without them.
REPEAT_LEVELS = (Vertebra.C3, Vertebra.C4, Vertebra.C5, Vertebra.C6)
#: At least this many of :data:`REPEAT_LEVELS`, with their bands inside the image, are needed.
MIN_REPEAT_BODIES = 3
#: A band with less than this share of its samples inside the image is not used.
MIN_INSIDE = 0.8
#: A column is taken to face the wrong way when the coherence of the side it calls anterior exceeds that of
#: the side it calls posterior by more than this. On true corners (C3-C6) the posterior side led on all 120
#: of this project's all-family phantoms (sets 1080000+, 1110000+-1150000+; median by 0.44, least 0.07) and
#: on 299 of 300 of the independent renderer's studies (sets A-G; median 0.23, 5 % below 0.10), the one
#: behind by 0.13 (B 311: heavy shoulders over C5-C6 hiding the posterior elements). First 0.2 (session 32);
#: 0.15 since session 33, where the chain search reported all-family phantom 1170009's C3-C6 (a flexed,
#: kyphotic neck at 0.31 mm per pixel) on their bodies with the sides swapped at confidence 0.73-1.0 and its
#: anterior side led by 0.18. Every true column above still passes, B 311 by 0.02.
FACING_REPEAT_MARGIN = 0.15


def side_coherence(image: np.ndarray, corners: dict[Vertebra, np.ndarray]) -> tuple[float, float] | None:
    """The coherence (0..1) of what lies beyond the posterior and beyond the anterior walls of the bodies
    ``corners`` (image corners per level, in the order ant-sup, post-sup, post-inf, ant-inf) of
    :data:`REPEAT_LEVELS`, as ``(posterior, anterior)``; None when fewer than :data:`MIN_REPEAT_BODIES` of
    them have both bands inside the image. ``image``: any polarity and range."""
    img = np.asarray(image, np.float32)
    lo, hi = np.percentile(img, [1, 99])
    img = ((img - lo) / max(float(hi - lo), 1e-6)).astype(np.float32)
    levels = [v for v in REPEAT_LEVELS if v in corners]
    if len(levels) < MIN_REPEAT_BODIES:
        return None
    index = [BODIES.index(v) for v in levels]
    quads = [np.asarray(corners[v], float) for v in levels]
    centres = np.array([q.mean(axis=0) for q in quads])
    h, w = img.shape
    t = np.linspace(*REPEAT_BAND, REPEAT_LINES)
    s = np.linspace(-0.5, 0.5, REPEAT_SAMPLES, endpoint=False)
    trend = np.vstack([np.ones(REPEAT_SAMPLES), np.linspace(-1.0, 1.0, REPEAT_SAMPLES)]).T
    bands: dict[int, list[np.ndarray]] = {1: [], -1: []}
    for k, q in enumerate(quads):
        anterior, posterior = 0.5 * (q[0] + q[3]), 0.5 * (q[1] + q[2])
        depth = float(np.hypot(*(posterior - anterior)))
        up = 0.5 * (q[0] + q[1]) - 0.5 * (q[3] + q[2])
        if depth <= 0 or not np.any(up):
            return None
        ap, up = (posterior - anterior) / depth, up / float(np.hypot(*up))
        gaps = [
            float(np.hypot(*(centres[k] - centres[j]))) / abs(index[k] - index[j])
            for j in (k - 1, k + 1)
            if 0 <= j < len(quads)
        ]
        spacing = float(np.mean(gaps))
        pair = {}
        for side, wall in ((1, posterior), (-1, anterior)):
            pts = wall + side * (t * depth)[:, None, None] * ap + (s * spacing)[None, :, None] * up
            x, y = pts[..., 0].astype(np.float32), pts[..., 1].astype(np.float32)
            if np.mean((x >= 0) & (x < w - 1) & (y >= 0) & (y < h - 1)) < MIN_INSIDE:
                break
            band = cv2.remap(img, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(float)
            coef, *_ = np.linalg.lstsq(trend, band.T, rcond=None)
            pair[side] = band - (trend @ coef).T
        else:
            for side in pair:
                bands[side].append(pair[side])
    if len(bands[1]) < MIN_REPEAT_BODIES:
        return None
    out = []
    for side in (1, -1):
        d = np.array(bands[side])
        energy = float(np.mean(np.sum(d**2, axis=(1, 2))))
        out.append(float(np.sum(d.mean(axis=0) ** 2)) / max(energy, 1e-12))
    return out[0], out[1]


def facing_contradicted(image: np.ndarray, corners: dict[Vertebra, np.ndarray]) -> bool:
    """Whether the bodies ``corners`` (as :func:`side_coherence` takes them) face the wrong way: the side
    their corners call anterior repeats level by level more than the side they call posterior, by more than
    :data:`FACING_REPEAT_MARGIN`."""
    c = side_coherence(image, corners)
    return c is not None and c[1] - c[0] > FACING_REPEAT_MARGIN
