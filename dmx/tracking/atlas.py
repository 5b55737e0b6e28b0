"""The atlas (C1) as a tracked rigid body: the template region around its anterior arch.

C1 has no vertebral body and no corners. What the lateral view shows of it
reliably, and what the atlanto-dental interval (ADI) is measured from, is the
anterior arch: a small oval ring whose posterior cortex at mid-height is the
landmark ``C1.arch_post``. :func:`arch_region_px` draws an oriented box around
that arch on the reference frame, sized from the depth of the C2 body and
oriented by it, so the tracker can follow C1 like a body. Behind the arch lies
the ADI and then the dens, which moves with C2: the box stops half way across
the interval so that no dens pixel enters C1's template.
"""

from __future__ import annotations

import numpy as np

from dmx.anatomy import UpperCervicalPoint, Vertebra
from dmx.landmarks import Landmarks

#: Region around the anterior arch, in units of the C2 body depth: an ellipse reaching this far anterior
#: of ``C1.arch_post`` (the arch itself is about 0.4 deep), this far above and below it (the arch is about
#: 0.35 high on each side), and at most this far posterior of it (never more than
#: :data:`ARCH_POSTERIOR_GAP_SHARE` of the way to the dens).
ARCH_ANTERIOR = 0.45
ARCH_HALF_HEIGHT = 0.45
ARCH_POSTERIOR = 0.06
#: Share of the arch-to-dens distance the region may reach into the interval behind the arch.
ARCH_POSTERIOR_GAP_SHARE = 0.45
#: Vertices of the polygon drawing the ellipse.
ARCH_VERTICES = 24


def _axes(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit anterior and superior directions of a body on the image, and its depth (px)."""
    ant = 0.5 * (quad[0] + quad[3]) - 0.5 * (quad[1] + quad[2])
    sup = 0.5 * (quad[0] + quad[1]) - 0.5 * (quad[2] + quad[3])
    e_ant = ant / np.linalg.norm(ant)
    e_up = np.array([-e_ant[1], e_ant[0]])
    if float(np.dot(e_up, sup)) < 0:
        e_up = -e_up
    depth = 0.5 * (float(np.linalg.norm(quad[0] - quad[1])) + float(np.linalg.norm(quad[3] - quad[2])))
    return e_ant, e_up, depth


def arch_region_px(landmarks: Landmarks) -> np.ndarray | None:
    """Template region of C1 on the reference frame: an ellipse around the anterior arch.

    The arch is an oval ring, so the region is an ellipse aligned with the body of C2 (or, without C2,
    the highest body given): it reaches :data:`ARCH_ANTERIOR` body depths anterior of ``C1.arch_post``,
    :data:`ARCH_HALF_HEIGHT` depths above and below it, and :data:`ARCH_POSTERIOR` depths posterior of
    it, but never more than :data:`ARCH_POSTERIOR_GAP_SHARE` of the way to ``C2.dens_ant`` when that
    point is given. Little beyond the arch is in it: what lies around C1 on a lateral view (the
    mandible, the airway, the dens) does not move with it.

    Parameters
    ----------
    landmarks : Landmarks
        Reference-frame landmarks with ``C1.arch_post`` and at least one body.

    Returns
    -------
    numpy.ndarray or None
        ``(ARCH_VERTICES, 2)`` polygon in pixels; None without ``C1.arch_post``.
    """
    arch = landmarks.extra_px.get(UpperCervicalPoint.C1_ARCH_POST)
    if arch is None or not landmarks.corners_px:
        return None
    body = Vertebra.C2 if Vertebra.C2 in landmarks.corners_px else landmarks.vertebrae[0]
    e_ant, e_up, depth = _axes(np.asarray(landmarks.corners_px[body], dtype=float))
    p = np.asarray(arch, dtype=float)
    posterior = ARCH_POSTERIOR * depth
    dens = landmarks.extra_px.get(UpperCervicalPoint.C2_DENS_ANT)
    if dens is not None:
        gap = float(np.dot(p - np.asarray(dens, dtype=float), e_ant))
        if gap > 0:
            posterior = min(posterior, ARCH_POSTERIOR_GAP_SHARE * gap)
    anterior = ARCH_ANTERIOR * depth
    centre = p + 0.5 * (anterior - posterior) * e_ant
    a, b = 0.5 * (anterior + posterior), ARCH_HALF_HEIGHT * depth
    phi = np.linspace(0.0, 2.0 * np.pi, ARCH_VERTICES, endpoint=False)
    return centre + np.outer(a * np.cos(phi), e_ant) + np.outer(b * np.sin(phi), e_up)
