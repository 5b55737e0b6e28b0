"""Which pixels of a body's template move with the body (issue #13).

A template is cut from the reference frame, so it holds whatever lay over the body there: an occluder's
bright outline (the mandible over C2-C3), soft tissue. Where that moves otherwise than the body, it drags
the rigid fit, and from the true pose it costs more than the dragged fit: a model problem that no better
search removes. Over the frames where the body was tracked confidently, each frame moved back into the
template's grid shows which template pixels match the body and which do not: a pixel of the body matches
in every frame (within noise), a pixel of an occluder that moves otherwise only while the occluder stays
where it was on the reference frame. :func:`outlier_share` measures, per pixel, on how many of those
frames it is an outlier and :func:`unreliable_mask` marks those that are on too many. That needs frames
on which the occluder lay elsewhere than on the reference frame; where the body was followed only while
it lay there (the ``occluders`` case of ``benchmarks/measurements.py --appearance``), nothing tells, so
:func:`moving_otherwise` also looks at the frames it was lost on, from where a neighbour carries it (a few
pixels off): patches of the reference found again there that move otherwise than most of them.
``dmx.tracking.tracker._Tracker.refit_unreliable`` cuts the template again without those pixels and
registers the body again where it was lost under an occluder.

A structure fainter than the noise is an outlier on no frame, yet it pulls the fit with the posture;
:func:`residual_variance` finds it by how much each pixel's residual varies over the frames (the body's
varies by the frame's noise alone), and ``_Tracker.reweight_inconsistent`` weighs the template's pixels by
the inverse of that variance and registers every body again.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import cv2
import numpy as np

from dmx.tracking.register import _TUKEY_C, Template, _prefilter, needed_box
from dmx.tracking.types import rigid_fit

#: A template pixel whose residual is beyond this many expected residuals (``Template.residual_scale``)
#: is an outlier on that frame (``Fit.inliers`` counts 3.5; at 3.5 the edges of a rod drifting over the
#: test scene's C3, 80 grey levels in a calibrated residual of 6.5, stayed below it).
OUTLIER_RESIDUALS = 2.5

#: A template pixel that is an outlier on at least this share of the confidently tracked frames does not
#: move with the body.
UNRELIABLE_SHARE = 0.3

#: At most this many frames (evenly spread over the confident ones) are looked at.
MAX_RELIABILITY_FRAMES = 40

#: :func:`residual_variance` smooths the per-pixel variance by a Gaussian of this sigma (pixels): over 40
#: frames one pixel's variance is known to about 20 %, a neighbourhood's far better.
VARIANCE_SMOOTH_PX = 1.5

#: :func:`residual_variance` reports 0 for a pixel fewer frames than this showed.
MIN_VARIANCE_FRAMES = 4


def outlier_share(
    frames: np.ndarray,
    poses: list[tuple[int, np.ndarray, float]],
    template: Template,
    reference: np.ndarray,
    *,
    max_frames: int = MAX_RELIABILITY_FRAMES,
) -> tuple[np.ndarray, int]:
    """Share of ``poses``' frames on which each pixel of ``template``'s finest grid is an outlier.

    Parameters
    ----------
    frames : numpy.ndarray
        ``(T, H, W)`` frames (any real dtype; not modified).
    poses : list of (int, numpy.ndarray, float)
        ``(t, A_t, reach_px)``: the body's 3x3 rigid pose (reference -> frame ``t``, pixels) on the frames
        where it was tracked confidently, and how far off it may be (pixels): a template pixel whose
        value the frame shows anywhere within that distance is no outlier there.
    template : Template
        The body's template (its grid box ``bbox``, filters, pixels and expected residual).
    reference : numpy.ndarray
        ``(H, W)`` reference frame the template was cut from.
    max_frames : int
        Frames looked at, at most (evenly spread over ``poses``).

    Returns
    -------
    share : numpy.ndarray
        ``(y1 - y0, x1 - x0)`` float32 over ``template.bbox`` (reference coordinates): the share of the
        frames on which the pixel's residual, after the gain and bias plane of the frame's robust
        photometric fit, is beyond :data:`OUTLIER_RESIDUALS` expected residuals (``Template.residual_scale``,
        as the tracker calibrated it) everywhere within the pose's reach (0 where no frame saw it).
    n_frames : int
        Frames that entered the share.
    """
    gx0, gy0, gx1, gy1 = template.bbox
    gw, gh = gx1 - gx0, gy1 - gy0
    ref_vals = _filtered_grid(reference, np.eye(3), template, template.filter_pad_px)
    limit = OUTLIER_RESIDUALS * template.residual_scale
    count = np.zeros((gh, gw), np.float32)
    seen = np.zeros((gh, gw), np.float32)
    for (_t, _a, reach), frame_vals, inside in _moved_back(frames, poses, template, ref_vals, max_frames):
        r = int(math.ceil(reach))
        if r > 0:  # the pose is known to within ``reach``: the pixel matches anywhere within it
            k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)
            hi, lo = cv2.dilate(frame_vals, k), cv2.erode(frame_vals, k)
            out = (ref_vals > hi + limit) | (ref_vals < lo - limit)
        else:
            out = np.abs(frame_vals - ref_vals) > limit
        count += out & inside
        seen += inside
    share = np.where(seen > 0, count / np.maximum(seen, 1.0), 0.0).astype(np.float32)
    return share, int(seen.max()) if seen.size else 0


def _moved_back(
    frames: np.ndarray,
    poses: list[tuple],
    template: Template,
    ref_vals: np.ndarray,
    max_frames: int,
) -> Iterator[tuple[tuple, np.ndarray, np.ndarray]]:
    """Each of ``poses``' frames (``(t, A_t, ...)``; at most ``max_frames``, evenly spread) filtered as the
    registration filters it and moved back into ``template``'s finest grid by ``A_t``, after the gain and
    bias plane of its robust photometric fit against ``ref_vals`` (the filtered reference on that grid):
    ``(pose, values, inside)`` per frame, ``inside`` the grid pixels the frame shows. Frames that show less
    than half of the template, or whose photometric fit is degenerate, are skipped."""
    if len(poses) > max_frames:
        pick = np.unique(np.round(np.linspace(0, len(poses) - 1, max_frames)).astype(int))
        poses = [poses[k] for k in pick]
    gx0, gy0, gx1, gy1 = template.bbox
    gw, gh = gx1 - gx0, gy1 - gy0
    pad = template.filter_pad_px
    level = template.levels[0]
    # the template's pixels on the dense grid (level 0: the grid is template.bbox)
    u = np.round(level.u).astype(np.int64)
    v = np.round(level.v).astype(np.int64)
    x = (u + gx0 - template.centre_px[0]) / template.size_px
    y = (v + gy0 - template.centre_px[1]) / template.size_px
    design = np.stack([ref_vals[v, u], np.ones(u.size), x, y]).astype(np.float64)  # (4, N)
    yy, xx = np.mgrid[0:gh, 0:gw]
    plane_x = (xx + gx0 - template.centre_px[0]) / template.size_px
    plane_y = (yy + gy0 - template.centre_px[1]) / template.size_px
    for pose in poses:
        vals, inside = _filtered_grid(frames[pose[0]], pose[1], template, pad, with_inside=True)
        w = level.weight.astype(np.float64) * inside[v, u]
        if w.sum() < 0.5 * level.weight.sum():
            continue
        coef = _robust_photometric(design, vals[v, u].astype(np.float64), w, template.residual_scale)
        if coef is None:
            continue
        gain, b0, bx, by = coef
        yield pose, ((vals - (b0 + bx * plane_x + by * plane_y)) / gain).astype(np.float32), inside


def residual_variance(
    frames: np.ndarray,
    poses: list[tuple[int, np.ndarray]],
    template: Template,
    reference: np.ndarray,
    *,
    max_frames: int = MAX_RELIABILITY_FRAMES,
    smooth_px: float = VARIANCE_SMOOTH_PX,
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of ``template``'s finest grid, how much its residual varies over ``poses``' frames.

    Each frame is moved back into the grid with its pose (``(t, A_t)``, reference -> frame ``t``) after its
    robust photometric fit; a pixel of the body then differs from the reference by the same amount on
    every frame (the reference's own noise there) plus the frame's noise, while a pixel of something that
    moves otherwise (a neighbour's articular process, an occluder's edge, soft tissue) changes with the
    posture. The variance over the frames of the residual, not its size, tells them apart: the reference's
    noise, a constant, does not enter it, so that a structure as faint as the noise (which the
    registration's robust weights keep as an inlier on every frame) shows once enough frames are pooled.

    Returns
    -------
    variance : numpy.ndarray
        ``(y1 - y0, x1 - x0)`` float32 over ``template.bbox``: the variance in units of the expected
        residual squared (``Template.residual_scale``), smoothed by a Gaussian of ``smooth_px``; 0 where
        fewer than :data:`MIN_VARIANCE_FRAMES` frames showed the pixel.
    seen : numpy.ndarray
        Frames that showed each pixel (float32, same shape).
    """
    gx0, gy0, gx1, gy1 = template.bbox
    gw, gh = gx1 - gx0, gy1 - gy0
    ref_vals = _filtered_grid(reference, np.eye(3), template, template.filter_pad_px)
    s1 = np.zeros((gh, gw), np.float64)
    s2 = np.zeros((gh, gw), np.float64)
    seen = np.zeros((gh, gw), np.float32)
    for _pose, frame_vals, inside in _moved_back(frames, poses, template, ref_vals, max_frames):
        d = (frame_vals - ref_vals).astype(np.float64) * inside
        s1 += d
        s2 += d * d
        seen += inside
    n = np.maximum(seen, 1.0)
    var = np.maximum(s2 / n - (s1 / n) ** 2, 0.0) / template.residual_scale**2
    if smooth_px > 0:
        var = cv2.GaussianBlur(var.astype(np.float32), (0, 0), smooth_px)
    return np.where(seen >= MIN_VARIANCE_FRAMES, var, 0.0).astype(np.float32), seen


def _filtered_grid(
    image: np.ndarray,
    a: np.ndarray,
    template: Template,
    pad: int,
    *,
    with_inside: bool = False,
    grow_px: int = 0,
):
    """``image`` prefiltered as the registration filters it, sampled at ``a`` (reference -> image) of every
    pixel of ``template``'s finest grid (bilinear; grown by ``grow_px`` on every side); with
    ``with_inside`` also a boolean mask of the grid pixels that fall inside the image."""
    gx0, gy0, gx1, gy1 = template.bbox
    gx0, gy0, gx1, gy1 = gx0 - grow_px, gy0 - grow_px, gx1 + grow_px, gy1 + grow_px
    gw, gh = gx1 - gx0, gy1 - gy0
    box = needed_box(template, a, image.shape, pad + 2 + 1.5 * grow_px)
    bx0, by0, bx1, by1 = box
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        vals = np.zeros((gh, gw), np.float32)
        return (vals, np.zeros((gh, gw), bool)) if with_inside else vals
    region = _prefilter(image[by0:by1, bx0:bx1], template.blur_sigma_px, template.highpass_sigma_px)
    # grid pixel (c, r) -> reference (gx0 + c, gy0 + r) -> image a(.) -> region (- bx0, - by0)
    m = np.array([[1.0, 0.0, -bx0], [0.0, 1.0, -by0], [0.0, 0.0, 1.0]]) @ a
    m = m @ np.array([[1.0, 0.0, gx0], [0.0, 1.0, gy0], [0.0, 0.0, 1.0]])
    vals = cv2.warpAffine(
        region,
        m[:2],
        (gw, gh),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    if not with_inside:
        return vals
    h, w = image.shape
    yy, xx = np.mgrid[0:gh, 0:gw]
    p = np.asarray(a)[:2] @ np.stack([xx.ravel() + gx0, yy.ravel() + gy0, np.ones(xx.size)])
    inside = ((p[0] >= 0) & (p[0] <= w - 1) & (p[1] >= 0) & (p[1] <= h - 1)).reshape(gh, gw)
    # a pixel whose filtered value depends on the region's cut edge counts as not seen either
    px = p[0].reshape(gh, gw) - bx0
    py = p[1].reshape(gh, gw) - by0
    r = pad
    inner = (
        ((px >= r) | (bx0 == 0))
        & ((py >= r) | (by0 == 0))
        & ((px <= bx1 - bx0 - 1 - r) | (bx1 == w))
        & ((py <= by1 - by0 - 1 - r) | (by1 == h))
    )
    return vals, inside & inner


def _robust_photometric(
    design: np.ndarray, vals: np.ndarray, w: np.ndarray, residual_scale: float
) -> tuple[float, float, float, float] | None:
    """``vals ~ gain * template + bias plane`` by iteratively reweighted least squares (Tukey weights at the
    expected residual or the residual's own robust scale, as the registration weights); None if degenerate."""
    weights = w.copy()
    coef = None
    for _ in range(5):
        cw = design * weights
        try:
            coef = np.linalg.solve(cw @ design.T, cw @ vals)
        except np.linalg.LinAlgError:
            return None
        if not coef[0] > 1e-6:
            return None
        e = (vals - coef[1:] @ design[1:]) / coef[0] - design[0]
        ae = np.abs(e)
        seen = w > 0
        sigma = 1.4826 * float(np.median(ae[seen])) if seen.any() else 0.0
        r = ae / (_TUKEY_C * max(sigma, residual_scale))
        weights = w * np.square(1 - np.square(np.minimum(r, 1.0)))
    assert coef is not None
    return float(coef[0]), float(coef[1]), float(coef[2]), float(coef[3])


def unreliable_mask(
    share: np.ndarray,
    template: Template,
    shape: tuple[int, int],
    *,
    min_share: float = UNRELIABLE_SHARE,
    dilate_px: int = 1,
) -> np.ndarray:
    """``(H, W)`` boolean mask (reference coordinates) of the template pixels that do not move with the body:
    an outlier on at least ``min_share`` of the frames (:func:`outlier_share`), grown by ``dilate_px``."""
    gx0, gy0, gx1, gy1 = template.bbox
    bad = (share >= min_share).astype(np.uint8)
    if dilate_px > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1,) * 2)
        bad = cv2.dilate(bad, k)
    out = np.zeros(shape, bool)
    h, w = shape
    cx0, cy0, cx1, cy1 = max(gx0, 0), max(gy0, 0), min(gx1, w), min(gy1, h)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0:cy1, cx0:cx1] = bad[cy0 - gy0 : cy1 - gy0, cx0 - gx0 : cx1 - gx0] > 0
    return out


def template_share(template: Template, mask: np.ndarray) -> float:
    """Share of ``template``'s weight (finest level) that ``mask`` (reference coordinates) covers."""
    level = template.levels[0]
    x = np.round(level.u + level.origin[0]).astype(np.int64)
    y = np.round(level.v + level.origin[1]).astype(np.int64)
    h, w = mask.shape
    ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    hit = np.zeros(x.size, bool)
    hit[ok] = mask[y[ok], x[ok]]
    total = float(level.weight.sum())
    return float((level.weight * hit).sum()) / total if total > 0 else 0.0


def moving_otherwise(
    frames: np.ndarray,
    poses: list[tuple[int, np.ndarray]],
    template: Template,
    reference: np.ndarray,
    *,
    search_px: int = 12,
    step_px: int = 4,
    patch_px: int = 9,
    agree_px: float = 1.5,
    differ_px: float = 3.0,
    min_score: float = 0.6,
) -> tuple[np.ndarray, np.ndarray]:
    """Per template pixel, on how many frames the patch around it moved otherwise than the body.

    Each frame is moved back into the template's grid with a rough pose (``poses``: e.g. where a
    neighbour carries the body, a few pixels off). Every textured patch of the reference on a coarse grid
    (``patch_px`` wide, every ``step_px``) is found again in it by normalised cross-correlation within
    ``search_px``; the body's own residual motion is the rigid motion most patches agree with (within
    ``agree_px``: a RANSAC over pairs), and a patch whose displacement differs from it by more than
    ``differ_px`` (along its gradient only, for a patch with one edge direction, which cannot show motion
    along that edge) moved otherwise: an occluder's outline, soft tissue.

    Returns
    -------
    moved, seen : numpy.ndarray
        ``(y1 - y0, x1 - x0)`` float32 over ``template.bbox``: frames on which the patch over the pixel
        moved otherwise, and frames on which it was found (the patch's central ``step_px`` square).
    """
    gx0, gy0, gx1, gy1 = template.bbox
    gw, gh = gx1 - gx0, gy1 - gy0
    pad = template.filter_pad_px
    ref_vals = _filtered_grid(reference, np.eye(3), template, pad)
    level = template.levels[0]
    inside = np.zeros((gh, gw), bool)
    inside[np.round(level.v).astype(int), np.round(level.u).astype(int)] = True
    half = patch_px // 2
    centres = []
    tensors = []
    gyy, gxx = np.gradient(ref_vals.astype(np.float64))
    for r in range(half, gh - half, step_px):
        for c in range(half, gw - half, step_px):
            if not inside[r, c]:
                continue
            p = ref_vals[r - half : r + half + 1, c - half : c + half + 1]
            if p.std() < 2.0 * template.residual_scale:
                continue  # too flat to be found again
            sx = gxx[r - half : r + half + 1, c - half : c + half + 1]
            sy = gyy[r - half : r + half + 1, c - half : c + half + 1]
            j = np.array([[np.sum(sx * sx), np.sum(sx * sy)], [np.sum(sx * sy), np.sum(sy * sy)]])
            w, v = np.linalg.eigh(j)
            centres.append((r, c))
            # one edge direction: only the displacement along the gradient counts
            tensors.append(None if w[0] > 0.2 * w[1] else v[:, 1])
    moved = np.zeros((gh, gw), np.float32)
    seen = np.zeros((gh, gw), np.float32)
    if len(centres) < 6:
        return moved, seen
    xy = np.array([(c + gx0, r + gy0) for r, c in centres], np.float64)
    for t, a in poses:
        window = _filtered_grid(frames[t], a, template, pad, grow_px=search_px)
        disp = np.full((len(centres), 2), np.nan)
        for k, (r, c) in enumerate(centres):
            p = ref_vals[r - half : r + half + 1, c - half : c + half + 1]
            win = window[r : r + patch_px + 2 * search_px, c : c + patch_px + 2 * search_px]
            res = cv2.matchTemplate(win, p, cv2.TM_CCOEFF_NORMED)
            _, score, _, loc = cv2.minMaxLoc(res)
            if score >= min_score:
                disp[k] = (loc[0] - search_px, loc[1] - search_px)
        ok = np.flatnonzero(np.isfinite(disp[:, 0]))
        two_d = [k for k in ok if tensors[k] is None]
        if len(two_d) < 3:
            continue
        best = _rigid_consensus(xy[two_d], disp[two_d], agree_px)
        if best is None:
            continue
        expected = xy @ best[:2, :2].T + best[:2, 2] - xy
        for k in ok:
            d = disp[k] - expected[k]
            n = tensors[k]
            off = abs(float(d @ n)) if n is not None else float(np.hypot(*d))
            r, c = centres[k]
            sl = (
                slice(r - step_px // 2, r + step_px - step_px // 2),
                slice(c - step_px // 2, c + step_px - step_px // 2),
            )
            seen[sl] += 1.0
            if off > differ_px:
                moved[sl] += 1.0
    return moved, seen


def _rigid_consensus(
    xy: np.ndarray, disp: np.ndarray, agree_px: float, *, pairs: int = 300
) -> np.ndarray | None:
    """The 3x3 rigid motion ``xy -> xy + disp`` that most points agree with (within ``agree_px``), refitted
    on them by least squares (RANSAC over ``pairs`` pairs, drawn the same way every time)."""
    dst = xy + disp
    n = len(xy)
    rng = np.random.default_rng(0)
    p = rng.integers(0, n, pairs)
    q = rng.integers(0, n, pairs)
    keep = p != q
    p, q = p[keep], q[keep]
    # rotation from each pair's direction, translation from its midpoint
    v_src = xy[q] - xy[p]
    v_dst = dst[q] - dst[p]
    theta = np.arctan2(v_dst[:, 1], v_dst[:, 0]) - np.arctan2(v_src[:, 1], v_src[:, 0])
    c, s_ = np.cos(theta), np.sin(theta)
    mid_s = 0.5 * (xy[p] + xy[q])
    mid_d = 0.5 * (dst[p] + dst[q])
    # (pairs, n) errors of every point under every pair's motion
    x = xy[None, :, 0] - mid_s[:, None, 0]
    y = xy[None, :, 1] - mid_s[:, None, 1]
    ex = c[:, None] * x - s_[:, None] * y + mid_d[:, None, 0] - dst[None, :, 0]
    ey = s_[:, None] * x + c[:, None] * y + mid_d[:, None, 1] - dst[None, :, 1]
    inl = np.hypot(ex, ey) <= agree_px
    if not inl.size:
        return None
    best_in = inl[int(np.argmax(inl.sum(axis=1)))]
    if best_in.sum() < 3:
        return None
    return np.vstack([rigid_fit(xy[best_in], dst[best_in]), [0.0, 0.0, 1.0]])
