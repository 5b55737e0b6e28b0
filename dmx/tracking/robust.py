"""Guards of the tracker against occluders that do not move with the bone (issue #13).

Two failure modes let a body be followed with a high quality while it is wrong:

* a static structure burned into every frame, such as a collimator blade, lies in a body's template:
  its edge matches itself in every frame, so the fit slides along it while the correlation stays
  high. :func:`static_mask` finds such structures on the reference frame (saturated, perfectly flat
  regions: no X-ray image of tissue is free of quantum noise) so that the templates leave them out;
* an occluder (the mandible, a blade) drags a body away from its neighbours. :func:`inconsistent`
  checks each body's pose against its tracked neighbours': the cervical spine is a chain, so a body
  cannot move far from where its neighbours carry it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: Smallest share of the reference frame a flat saturated region must cover to be treated as static.
MIN_STATIC_SHARE = 0.002


def flat_saturated(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` True on the pixels at ``image``'s lowest or highest value whose 5 x 5 neighbourhood all
    has that value: saturated, perfectly flat (a collimator blade, a burned-out background), less a
    2-pixel rim. A single pixel clipped in the noise is not such a region. ``image``: float32."""
    lo, hi = float(image.min()), float(image.max())
    kernel = np.ones((5, 5), np.uint8)
    flat = cv2.dilate(image, kernel) == cv2.erode(image, kernel)
    return flat & ((image == lo) | (image == hi))


def static_mask(reference: np.ndarray, *, pad_px: int = 3) -> np.ndarray | None:
    """Pixels of ``reference`` in saturated, perfectly flat regions (collimator blades), dilated.

    Parameters
    ----------
    reference : numpy.ndarray
        ``(H, W)`` reference frame (any real dtype; not modified).
    pad_px : int
        Dilation (pixels) beyond the flat region, so that its edge (which does not move with the
        bone) is left out of the templates too.

    Returns
    -------
    numpy.ndarray or None
        ``(H, W)`` boolean mask, or None when there is no such region (the usual case: then the
        templates are unchanged).
    """
    ref = np.asarray(reference, dtype=np.float32)
    if not float(ref.max()) > float(ref.min()):
        return None
    flat = flat_saturated(ref)
    if flat.sum() < MIN_STATIC_SHARE * ref.size:
        return None
    # the 5x5 test leaves out a 2-pixel rim of the flat region: add it back with the padding
    r = pad_px + 2
    grown = cv2.dilate(flat.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
    return grown > 0


def relative_pose(a_i: np.ndarray, a_j: np.ndarray) -> np.ndarray:
    """Pose of body ``i`` in the moving frame of body ``j``: ``a_j^-1 a_i`` (3x3 rigid matrices)."""
    r_t = a_j[:2, :2].T
    inv = np.eye(3)
    inv[:2, :2] = r_t
    inv[:2, 2] = -r_t @ a_j[:2, 2]
    a = np.eye(3)
    a[:2] = np.asarray(a_i)[:2]
    return inv @ a


def segmental_motion(a_i: np.ndarray, a_j: np.ndarray, centre_i: np.ndarray) -> tuple[float, float]:
    """Rotation (deg) of body ``i`` relative to body ``j`` since the reference frame, and how far
    (px) ``i``'s centre ``centre_i`` (reference coordinates) moved in ``j``'s frame."""
    rel = relative_pose(a_i, a_j)
    theta = math.degrees(math.atan2(rel[1, 0], rel[0, 0]))
    moved = rel[:2, :2] @ centre_i + rel[:2, 2]
    return theta, float(np.hypot(*(moved - centre_i)))


def inconsistent(
    a_i: np.ndarray,
    a_j: np.ndarray,
    centre_i: np.ndarray,
    centre_j: np.ndarray,
    size_px: float,
    *,
    max_rotation_deg: float = 30.0,
    max_translation_frac: float = 0.25,
    segments: int = 1,
) -> bool:
    """Body ``i``'s pose cannot be reached from neighbour ``j``'s by a cervical motion segment (or by
    ``segments`` of them, when the bodies between are not tracked: the limits scale with it).

    Relative to its neighbour, a body rotates by at most ``max_rotation_deg`` over a whole cine (the
    largest segmental ROM is about 20 degrees) about a centre near the disc between them, and slides
    by a few millimetres. In ``j``'s frame, ``i``'s centre may therefore move at most as far as the
    relative rotation carries it about a point within half a body size beyond ``j``'s centre, plus
    ``max_translation_frac`` of the body size (a quarter of the depth, about 4 mm: beyond the largest
    segmental translation a cine shows).
    """
    theta, moved = segmental_motion(a_i, a_j, centre_i)
    if abs(theta) > segments * max_rotation_deg:
        return True
    arm = float(np.hypot(*(centre_i - centre_j))) + 0.5 * size_px
    allowed = 2.0 * arm * abs(math.sin(math.radians(theta) / 2.0)) + segments * max_translation_frac * size_px
    return moved > allowed


def reject_inconsistent(
    poses: list[np.ndarray | None],
    centres: list[np.ndarray],
    sizes: list[float],
    checked: list[bool],
    *,
    max_gap: int = 1,
) -> list[int]:
    """Bodies whose pose no tracked neighbour supports (see :func:`inconsistent`).

    ``poses`` are the accepted 3x3 poses of one frame (None: not tracked), top to bottom; only
    bodies with ``checked`` take part (C1, without corners, is left out: it must never cost a body).
    A body's neighbours are the nearest tracked bodies above and below it, up to ``max_gap`` untracked
    bodies away (a body found again while its neighbour is lost is checked against the next one). A
    body is rejected when at least one neighbour disagrees with it and none agrees: of two neighbours
    that disagree, the one whose other neighbour supports it is kept.
    """
    n = len(poses)
    live = [poses[i] is not None and checked[i] for i in range(n)]

    def neighbours(i: int) -> list[int]:
        out = []
        for step in (-1, 1):
            for j in range(i + step, i + step * (max_gap + 2), step):
                if not 0 <= j < n:
                    break
                if live[j]:
                    out.append(j)
                    break
        return out

    def votes(i: int) -> tuple[int, int]:
        agree = disagree = 0
        for j in neighbours(i):
            size = min(sizes[i], sizes[j])
            segments = abs(i - j)
            if inconsistent(poses[i], poses[j], centres[i], centres[j], size, segments=segments):  # type: ignore[arg-type]
                disagree += 1
            else:
                agree += 1
        return agree, disagree

    return sorted(_voted_out(live, votes, lambda i: neighbours(i)[0]))


def segmental_jumps(transforms: np.ndarray, centres: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """How far each adjacent pair's segmental position on a frame departs from the mean of the frames either
    side (px).

    ``transforms`` ``(T, V, 2, 3)`` (reference -> frame, NaN where lost), ``centres`` ``(V, 2)`` (reference
    px), ``trusted`` ``(T, V)`` bool. For bodies ``v`` (above) and ``v + 1`` (below), tracked on frames
    ``t - 1``, ``t`` and ``t + 1``: how far ``v``'s centre in ``v + 1``'s moving frame (as
    :func:`segmental_motion` places it, for every frame and pair at once) lies from the mean of the frames
    either side. Returns ``(T, V - 1)``, NaN where not all three frames are tracked for both bodies. A
    segment moves smoothly from frame to frame; a body registered on a look-alike beside it on one frame
    moves both its segments at once.
    """
    tf = np.asarray(transforms, float)
    n_t, n_v = tf.shape[:2]
    jump_px = np.full((n_t, max(n_v - 1, 0)), np.nan)
    if n_t < 3 or n_v < 2:
        return jump_px
    r_i, t_i = tf[:, :-1, :, :2], tf[:, :-1, :, 2]
    r_jt, t_j = np.swapaxes(tf[:, 1:, :, :2], -1, -2), tf[:, 1:, :, 2]
    c = np.asarray(centres, float)[:-1]
    moved = np.einsum("tvij,tvj->tvi", r_jt, np.einsum("tvij,vj->tvi", r_i, c) + t_i - t_j)
    ok = np.asarray(trusted, bool)
    both = ok[:, :-1] & ok[:, 1:]
    three = both[1:-1] & both[:-2] & both[2:]
    dev_px = np.linalg.norm(moved[1:-1] - 0.5 * (moved[:-2] + moved[2:]), axis=-1)
    jump_px[1:-1] = np.where(three, dev_px, np.nan)
    return jump_px


def reject_jumps(jump_frac: np.ndarray, limit: float) -> list[int]:
    """Bodies of one frame whose segments both jump (see :func:`segmental_jumps`).

    ``jump_frac`` ``(V - 1,)``: each adjacent pair's jump on the frame as a share of the pair's smaller body
    (NaN: not checked). A pair jumps beyond ``limit``. As :func:`reject_inconsistent` votes: first a body
    whose two pairs jump (one at a time); then a body whose one checked pair jumps where the other body of
    the pair has a pair that does not (or jumps alone too: nothing tells which of the two is wrong).
    """
    frac = np.asarray(jump_frac, float)
    n = frac.size + 1
    live = [True] * n

    def pairs(i: int) -> list[tuple[int, int]]:
        return [
            (p, j)
            for p, j in ((i - 1, i - 1), (i, i + 1))
            if 0 <= p < n - 1 and live[j] and np.isfinite(frac[p])
        ]

    def votes(i: int) -> tuple[int, int]:
        checked = pairs(i)
        agree = sum(frac[p] <= limit for p, _ in checked)
        return agree, len(checked) - agree

    return sorted(_voted_out(live, votes, lambda i: pairs(i)[0][1]))


def _voted_out(live: list[bool], votes, neighbour) -> list[int]:
    """The bodies ``votes(i)`` (``(agree, disagree)`` of its checked neighbours) leaves without support:
    first those both neighbours disagree with, one at a time (``live`` updated: each may clear its
    neighbours); then a body its one checked neighbour (``neighbour(i)``) disagrees with, when that
    neighbour is supported (or an isolated disagreeing pair: both, as nothing tells which is right)."""
    out: list[int] = []
    while True:
        worst = [i for i in range(len(live)) if live[i] and votes(i) == (0, 2)]
        if not worst:
            break
        live[worst[0]] = False
        out.append(worst[0])
    lone = [i for i in range(len(live)) if live[i] and votes(i) == (0, 1)]
    for i in lone:
        j = neighbour(i)
        if votes(j)[0] >= 1 or j in lone:
            out.append(i)
    return out
