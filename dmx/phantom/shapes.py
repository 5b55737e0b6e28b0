"""Attenuation maps of the phantom's rigid structures, each built once in its own local frame.

A map holds, per source pixel, the excess X-ray attenuation ``mu * path``
(dimensionless) of the structure over soft tissue, sampled on a grid of
spacing ``ds_mm`` whose pixel ``(c, r)`` sits at local ``(u0 + c*ds, v0 - r*ds)``.
Edges are anti-aliased analytically from signed distances, so an outline
sits exactly where the geometry says it does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from dmx.anatomy import Vertebra
from dmx.phantom import skeleton as sk
from dmx.phantom.appearance import Appearance, CorticalLook, PosteriorLook, SoftTissueLook

MU_SOFT = 0.020  # 1/mm, water-like tissue at ~60 keV effective
MU_TRAB = 0.012  # excess of trabecular bone over soft tissue, 1/mm
MU_CORT = 0.040  # excess of cortical bone over soft tissue, 1/mm
#: Width of the anti-aliasing ramp in source pixels. Two pixels keep the ramp linear between any two
#: samples that straddle an outline, so bilinear warping puts the 0.5 level exactly on the outline.
RAMP = 2.0

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Structure:
    """A rigid structure's attenuation map in its local frame.

    Attributes
    ----------
    name : str
        What it is (``"C4"``, ``"mandible"``, ``"neck:C4"`` ...).
    frame : str
        Key of the pose that carries it (see :func:`dmx.phantom.skeleton.chain_poses`).
    group : str
        ``"add"`` (bone, summed); ``"soft"``/``"air"`` (soft tissue / air
        carried by the vertebrae: ``density`` is premultiplied by ``weight``
        and the slabs are blended as a weighted mean, so the neck bends
        smoothly); ``"soft_max"``/``"air_max"`` (head: combined with the
        neck by maximum). Air is subtracted from soft tissue.
    density : numpy.ndarray
        float32 map, zero on its border.
    u0_mm, v0_mm, ds_mm : float
        Local position of source pixel (0, 0) and the grid spacing.
    occluder : callable or None
        Signed distance (positive inside) used to decide what hides a vertebral body.
    weight : numpy.ndarray or None
        Blending weight map of ``"soft"``/``"air"`` slabs (same grid as ``density``).
    """

    name: str
    frame: str
    group: str
    density: np.ndarray
    u0_mm: float
    v0_mm: float
    ds_mm: float
    occluder: Sdf | None = None
    weight: np.ndarray | None = None

    def local_to_source(self) -> np.ndarray:
        """3 x 3 affine from local mm to source pixel coordinates (column, row)."""
        s = 1.0 / self.ds_mm
        return np.array([[s, 0.0, -self.u0_mm * s], [0.0, -s, self.v0_mm * s], [0.0, 0.0, 1.0]])


# --------------------------------------------------------------------------- signed distances


def coverage(sdf: np.ndarray, width_mm: float) -> np.ndarray:
    """Anti-aliased inside fraction from a signed distance (positive inside)."""
    return np.clip(0.5 + sdf / width_mm, 0.0, 1.0)


def sdf_polygon(u: np.ndarray, v: np.ndarray, verts: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance to a convex polygon (exact near edges, positive inside)."""
    p = np.asarray(verts, dtype=float)
    area = 0.5 * np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1])
    if area < 0:
        p = p[::-1]
    out = np.full(np.broadcast(u, v).shape, np.inf)
    for i in range(len(p)):
        a, b = p[i], p[(i + 1) % len(p)]
        e = b - a
        n = np.hypot(*e)
        out = np.minimum(out, (e[0] * (v - a[1]) - e[1] * (u - a[0])) / n)
    return out


def sdf_ellipse(
    u: np.ndarray, v: np.ndarray, centre: tuple[float, float], a: float, b: float, angle_deg: float = 0.0
) -> np.ndarray:
    """First-order signed distance to an ellipse (exactly zero on its outline)."""
    t = np.deg2rad(angle_deg)
    du, dv = u - centre[0], v - centre[1]
    x = du * np.cos(t) + dv * np.sin(t)
    y = -du * np.sin(t) + dv * np.cos(t)
    r = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    g = np.sqrt((x / a**2) ** 2 + (y / b**2) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(g > 0, (1.0 - r) * r / np.maximum(g, 1e-12), min(a, b))
    return d


def sdf_capsule(u: np.ndarray, v: np.ndarray, points: list[tuple[float, float]], radius: float) -> np.ndarray:
    """Signed distance to a thick polyline of ``radius`` mm."""
    p = np.asarray(points, dtype=float)
    dist = np.full(np.broadcast(u, v).shape, np.inf)
    for i in range(len(p) - 1):
        a, b = p[i], p[i + 1]
        e = b - a
        t = np.clip(((u - a[0]) * e[0] + (v - a[1]) * e[1]) / max(e @ e, 1e-12), 0, 1)
        dist = np.minimum(dist, np.hypot(u - a[0] - t * e[0], v - a[1] - t * e[1]))
    return radius - dist


def path_profile(x: np.ndarray, half_mm: float, width_mm: float, power: float = 4.0) -> np.ndarray:
    """X-ray path length (mm) through a super-elliptic cross-section at offset ``x`` from its centre."""
    r = np.clip(np.abs(x) / half_mm, 0.0, 1.0)
    return width_mm * (1.0 - r**power) ** (1.0 / power)


# --------------------------------------------------------------------------- body outline


def superior_side_v_mm(size: sk.BodySize, frac: np.ndarray) -> np.ndarray:
    """Height (mm, body frame) of a body's superior side, straight from corner to corner, at
    ``frac`` = 0 (posterior) .. 1 (anterior) of its depth (the concave sag comes on top)."""
    hp, ha = size.height_post_mm / 2, size.height_ant_mm / 2
    return hp + (ha - hp) * frac


def body_sdf(
    vertebra: Vertebra,
    u: np.ndarray,
    v: np.ndarray,
    *,
    anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY,
    round_mm: float = 0.0,
) -> np.ndarray:
    """Signed distance to a vertebral body's outline (C2 including its dens).

    The walls are slightly waisted and the endplates concave (``anatomy``'s
    waist and sag); all four curves pass exactly through the corners of
    :func:`dmx.phantom.skeleton.body_corners_mm`. ``round_mm`` > 0 rounds the
    outline off at each corner with that radius (the corner, where the sides
    meet, does not move: an appearance, not an anatomy, option).
    """
    b = anatomy.sizes[vertebra]
    d, hp, ha = b.depth_mm / 2, b.height_post_mm / 2, b.height_ant_mm / 2
    sag = 0.0 if vertebra is Vertebra.C2 else anatomy.sag_mm[vertebra]
    waist_ant, waist_post = anatomy.waist_ant_mm[vertebra], anatomy.waist_post_mm[vertebra]
    t_ant = np.clip((v + ha) / (2 * ha), 0, 1)
    t_post = np.clip((v + hp) / (2 * hp), 0, 1)
    s = np.clip((u + d) / (2 * d), 0, 1)
    frac = (u + d) / (2 * d)
    slope = (ha - hp) / (2 * d)
    cos_a = 1.0 / np.sqrt(1.0 + slope**2)
    sdf_ant = d - waist_ant * 4 * t_ant * (1 - t_ant) - u
    sdf_post = u - (-d + waist_post * 4 * t_post * (1 - t_post))
    sup_sag = 0.0 if vertebra is Vertebra.C2 else sag
    y_sup = superior_side_v_mm(b, frac) - sup_sag * 4 * s * (1 - s)
    y_inf = -hp + (hp - ha) * frac + sag * 4 * s * (1 - s)
    body = np.minimum(np.minimum(sdf_ant, sdf_post), np.minimum((y_sup - v) * cos_a, (v - y_inf) * cos_a))
    if round_mm > 0:  # corners rounded off inside the sides' intersection (which stays the corner)
        r = round_mm
        for a, c in (
            (sdf_ant, y_sup - v),
            (sdf_post, y_sup - v),
            (sdf_post, v - y_inf),
            (sdf_ant, v - y_inf),
        ):
            c = c * cos_a
            body = np.minimum(body, r - np.hypot(np.maximum(r - a, 0.0), np.maximum(r - c, 0.0)))
    if vertebra is not Vertebra.C2:
        return body
    g = sk.dens_geometry_mm(anatomy=anatomy)
    trap = sdf_polygon(
        u,
        v,
        [
            (g["post_base_u"], g["base_v"]),
            (g["ant_base_u"], g["base_v"]),
            (g["ant_top_u"], g["top_v"]),
            (g["post_top_u"], g["top_v"]),
        ],
    )
    cap = sdf_ellipse(
        u,
        v,
        (0.5 * (g["ant_top_u"] + g["post_top_u"]), g["top_v"]),
        0.5 * (g["ant_top_u"] - g["post_top_u"]),
        g["tip_v"] - g["top_v"],
    )
    return np.maximum(body, np.maximum(trap, cap))


# --------------------------------------------------------------------------- builders


def _grid(
    box: tuple[float, float, float, float], ds_mm: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    umin, umax, vmin, vmax = box
    cols = int(np.ceil((umax - umin) / ds_mm)) + 1
    rows = int(np.ceil((vmax - vmin) / ds_mm)) + 1
    u = umin + ds_mm * np.arange(cols)
    v = vmax - ds_mm * np.arange(rows)
    uu, vv = np.meshgrid(u, v)
    return uu, vv, umin, vmax


def _finish(density: np.ndarray) -> np.ndarray:
    out = density.astype(np.float32)
    out[0, :] = out[-1, :] = 0
    out[:, 0] = out[:, -1] = 0
    return out


def trabecular_texture(shape: tuple[int, int], ds_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Random trabecular pattern around 1 (vertical struts a little longer than horizontal)."""
    noise = rng.standard_normal(shape)
    fine = ndimage.gaussian_filter(noise, (0.45 / ds_mm, 0.28 / ds_mm))
    coarse = ndimage.gaussian_filter(noise, (1.6 / ds_mm, 1.6 / ds_mm))
    g = fine - coarse
    g /= max(float(g.std()), 1e-12)
    return np.clip(1.0 + 0.4 * g, 0.25, 2.0)


def body_path(vertebra: Vertebra, u: np.ndarray, v: np.ndarray, *, anatomy: sk.Anatomy) -> np.ndarray:
    """X-ray path length through the body across its width; for C2, through the dens above its body."""
    b = anatomy.sizes[vertebra]
    d = b.depth_mm / 2
    path = path_profile(u, d, b.width_mm)
    if vertebra is Vertebra.C2:
        g = sk.dens_geometry_mm(anatomy=anatomy)
        dens_c = 0.5 * (g["ant_base_u"] + g["post_base_u"])
        dens_path = path_profile(u - dens_c, 0.5 * (g["ant_base_u"] - g["post_base_u"]) + 0.5, 10.0)
        # above the body's superior side (less 1 mm, parallel to it, whatever the wedging) the
        # X-ray crosses only the dens
        path = np.where(v > superior_side_v_mm(b, (u + d) / (2 * d)) - 1.0, dens_path, path)
    return path


def vertebra_structure(
    vertebra: Vertebra,
    *,
    ds_mm: float,
    rng: np.random.Generator,
    anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY,
    cortical: CorticalLook | None = None,
    posterior: PosteriorLook | None = None,
    lips_mm: tuple[float, float] = (0.0, 0.0),
) -> Structure:
    """Vertebral body (cortical rim, trabecular texture) with its posterior elements.

    ``cortical``/``posterior`` (appearance families, see :mod:`dmx.phantom.appearance`) change
    the look of the bone and of the posterior elements, never the body's corners; ``lips_mm``
    are the lengths of anterior osteophyte lips (superior, inferior) drawn with ``cortical``.
    """
    if cortical is not None or posterior is not None:
        return _vertebra_with_look(
            vertebra,
            ds_mm=ds_mm,
            rng=rng,
            anatomy=anatomy,
            cortical=cortical,
            posterior=posterior,
            lips_mm=lips_mm,
        )
    b = anatomy.sizes[vertebra]
    d, hp = b.depth_mm / 2, b.height_post_mm / 2
    ls = b.spinous_mm
    top = 26.0 if vertebra is Vertebra.C2 else hp + 8
    box = (-d - 18 - ls, d + 3, -hp - 16, top)
    u, v, u0, v0 = _grid(box, ds_mm)
    sdf = body_sdf(vertebra, u, v, anatomy=anatomy)
    w = RAMP * ds_mm
    cov = coverage(sdf, w)
    inner = coverage(sdf - 0.9, w)
    shell = cov - inner
    path = body_path(vertebra, u, v, anatomy=anatomy)
    tex = trabecular_texture(u.shape, ds_mm, rng)
    dens = cov * MU_CORT * 1.6 + inner * MU_TRAB * path * tex + shell * MU_CORT * 0.7 * path
    # posterior elements (both sides superimpose in the lateral view)
    uc, vc = -d - 10.0, 1.0
    pedicle = [(-d - 0.4, hp - 2.0), (-d - 6.0, hp - 2.5), (-d - 6.0, hp - 8.0), (-d - 0.4, hp - 7.5)]
    pillar = [(uc + 5, vc + 10.5), (uc - 5, vc + 2.5), (uc - 5, vc - 10.5), (uc + 5, vc - 2.5)]
    r_sp = 4.5 if vertebra is Vertebra.C2 else (3.5 if vertebra in (Vertebra.C7, Vertebra.T1) else 3.0)
    tip = (uc - 13 - 0.94 * ls, vc - 6 - 0.34 * ls)
    post = (
        0.25 * coverage(sdf_polygon(u, v, pedicle), w)
        + 0.38 * coverage(sdf_polygon(u, v, pillar), w)
        + 0.30 * coverage(sdf_capsule(u, v, [(uc, vc - 1), (uc - 14, vc - 6)], 2.8), w)
        + 0.30 * coverage(sdf_capsule(u, v, [(uc - 13, vc - 6), tip], r_sp), w)
        + 0.15 * coverage(sdf_ellipse(u, v, tip, r_sp + 1.5, r_sp + 1.0), w)
    )
    if vertebra is Vertebra.C2:  # massive C2 lamina rising to the dens level
        post = post + 0.2 * coverage(sdf_capsule(u, v, [(uc + 2, vc + 8), (uc - 6, vc + 2)], 3.0), w)
    return Structure(vertebra.value, vertebra.value, "add", _finish(dens + post), u0, v0, ds_mm)


def _vertebra_with_look(
    vertebra: Vertebra,
    *,
    ds_mm: float,
    rng: np.random.Generator,
    anatomy: sk.Anatomy,
    cortical: CorticalLook | None,
    posterior: PosteriorLook | None,
    lips_mm: tuple[float, float],
) -> Structure:
    """:func:`vertebra_structure` with an appearance (a separate path: the default stays byte-identical)."""
    b = anatomy.sizes[vertebra]
    d, hp, ha = b.depth_mm / 2, b.height_post_mm / 2, b.height_ant_mm / 2
    sp_scale = 1.0 if posterior is None else posterior.spinous_scale
    ls = b.spinous_mm * sp_scale
    uc, vc = -d - 10.0, 1.0
    r_sp = 4.5 if vertebra is Vertebra.C2 else (3.5 if vertebra in (Vertebra.C7, Vertebra.T1) else 3.0)
    tip = (uc - 13 - 0.94 * ls, vc - 6 - 0.34 * ls)
    top = 26.0 if vertebra is Vertebra.C2 else hp + 8
    lip_max = max(lips_mm) if cortical is not None else 0.0
    box = (min(-d - 18 - ls, tip[0] - r_sp - 4), d + 3 + lip_max, min(-hp - 20, tip[1] - r_sp - 4), top + 2)
    u, v, u0, v0 = _grid(box, ds_mm)
    w = RAMP * ds_mm
    shape_anatomy = anatomy
    if cortical is not None and cortical.extra_sag_mm > 0:
        sag = {k: (s if k is Vertebra.C2 else s + cortical.extra_sag_mm) for k, s in anatomy.sag_mm.items()}
        shape_anatomy = sk.Anatomy(
            anatomy.sizes, anatomy.disc_mm, anatomy.waist_ant_mm, anatomy.waist_post_mm, sag, anatomy.scale
        )
    round_mm = 0.0 if cortical is None else cortical.round_mm
    sdf = body_sdf(vertebra, u, v, anatomy=shape_anatomy, round_mm=round_mm)
    rim_mm = 0.9 if cortical is None else cortical.rim_mm
    cov = coverage(sdf, w)
    inner = coverage(sdf - rim_mm, w)
    shell = cov - inner
    path = body_path(vertebra, u, v, anatomy=anatomy)
    if cortical is None:
        tex = trabecular_texture(u.shape, ds_mm, rng)
        rim_gain = trab_gain = 1.0
    else:
        tex = _texture(u.shape, ds_mm, rng, grain_mm=cortical.grain_mm, contrast=cortical.texture_contrast)
        rim_gain, trab_gain = cortical.rim_gain, cortical.trabecular_gain
    dens = (
        cov * MU_CORT * 1.6 * rim_gain
        + inner * MU_TRAB * path * tex * trab_gain
        + shell * MU_CORT * 0.7 * path * rim_gain
    )
    if cortical is not None:  # anterior osteophyte lips: bone beyond the corner, the corner stays
        for sign, length in zip((1.0, -1.0), lips_mm, strict=True):
            if length <= 0 or (vertebra is Vertebra.C2 and sign > 0):
                continue
            h = ha
            lip = sdf_capsule(
                u, v, [(d - 1.0, sign * (h - 1.2)), (d + 0.5 * length, sign * (h + 0.7 * length))], 0.7
            )
            dens = dens + 0.45 * rim_gain * coverage(lip, w)
    ped_g, lam_g, sp_g = (
        (0.25, 1.0, 1.0)
        if posterior is None
        else (posterior.pedicle_gain, posterior.lamina_gain, posterior.spinous_gain)
    )
    pedicle = [(-d - 0.4, hp - 2.0), (-d - 6.0, hp - 2.5), (-d - 6.0, hp - 8.0), (-d - 0.4, hp - 7.5)]
    post = (
        ped_g * coverage(sdf_polygon(u, v, pedicle), w)
        + 0.30 * lam_g * coverage(sdf_capsule(u, v, [(uc, vc - 1), (uc - 14, vc - 6)], 2.8), w)
        + 0.30 * sp_g * coverage(sdf_capsule(u, v, [(uc - 13, vc - 6), tip], r_sp), w)
        + 0.15 * sp_g * coverage(sdf_ellipse(u, v, tip, r_sp + 1.5, r_sp + 1.0), w)
    )
    if posterior is None:
        pillar = [(uc + 5, vc + 10.5), (uc - 5, vc + 2.5), (uc - 5, vc - 10.5), (uc + 5, vc - 2.5)]
        post = post + 0.38 * coverage(sdf_polygon(u, v, pillar), w)
    else:  # articular pillars over the posterior third of the body, facet joints between them
        ua, up = -d + posterior.overlap_frac * 2 * d, -d - 10.0
        drop = posterior.facet_slope * (ua - up)
        vt = hp + 2.5 - posterior.facet_gap_mm / 2 + posterior.pillar_rise_mm
        vb = -hp - 2.5 + posterior.facet_gap_mm / 2 + posterior.pillar_rise_mm
        for du, dv in ((0.0, 0.0), posterior.double_mm):  # near and far side
            verts = [
                (ua + du, vt + dv),
                (up + du, vt - drop + dv),
                (up + du, vb - drop + dv),
                (ua + du, vb + dv),
            ]
            p_sdf = sdf_polygon(u, v, verts)
            p_cov = coverage(p_sdf, w)
            post = post + 0.5 * posterior.pillar_gain * (p_cov + 0.8 * (p_cov - coverage(p_sdf - 0.8, w)))
    if vertebra is Vertebra.C2:
        post = post + 0.2 * lam_g * coverage(sdf_capsule(u, v, [(uc + 2, vc + 8), (uc - 6, vc + 2)], 3.0), w)
    return Structure(vertebra.value, vertebra.value, "add", _finish(dens + post), u0, v0, ds_mm)


def _texture(
    shape: tuple[int, int], ds_mm: float, rng: np.random.Generator, *, grain_mm: float, contrast: float
) -> np.ndarray:
    """Trabecular pattern of a chosen grain (mm) and contrast, around 1."""
    noise = rng.standard_normal(shape)
    fine = ndimage.gaussian_filter(noise, (grain_mm / ds_mm, 0.62 * grain_mm / ds_mm))
    coarse = ndimage.gaussian_filter(noise, (3.5 * grain_mm / ds_mm, 3.5 * grain_mm / ds_mm))
    g = fine - coarse
    g /= max(float(g.std()), 1e-12)
    return np.clip(1.0 + contrast * g, 0.1, 2.5)


def hyoid_structure(
    *, ds_mm: float, look: SoftTissueLook, anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY
) -> Structure:
    """Hyoid bone (body and greater horn) anterior to C3, carried by C3."""
    d = anatomy.sizes[Vertebra.C3].depth_mm / 2
    cu, cv = d + look.hyoid_mm[0], look.hyoid_mm[1]
    u, v, u0, v0 = _grid((cu - 26.0, cu + 8.0, cv - 8.0, cv + 16.0), ds_mm)
    w = RAMP * ds_mm
    body = sdf_ellipse(u, v, (cu, cv), 5.5, 3.2, 25.0)
    horn = sdf_capsule(u, v, [(cu - 3.0, cv + 1.0), (cu - 14.0, cv + 6.0), (cu - 22.0, cv + 10.0)], 1.4)
    bone = np.maximum(body, horn)
    cov = coverage(bone, w)
    dens = look.hyoid_gain * (0.6 * cov + 0.8 * (cov - coverage(bone - 0.8, w)))
    return Structure("hyoid", "C3", "add", _finish(dens), u0, v0, ds_mm)


def thyroid_structure(
    *, ds_mm: float, look: SoftTissueLook, anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY
) -> Structure:
    """Thyroid cartilage (faint, its rim partly calcified) anterior to C5, carried by C5."""
    d = anatomy.sizes[Vertebra.C5].depth_mm / 2
    a = d + 18.0
    u, v, u0, v0 = _grid((a - 2.0, a + 24.0, -14.0, 18.0), ds_mm)
    w = RAMP * ds_mm
    lamina = sdf_polygon(u, v, [(a, -12.0), (a + 14.0, -10.0), (a + 21.0, 14.0), (a + 4.0, 16.0)])
    cov = coverage(lamina, w)
    dens = look.thyroid_gain * (0.25 * cov + 1.0 * (cov - coverage(lamina - 1.2, w)))
    return Structure("thyroid", "C5", "add", _finish(dens), u0, v0, ds_mm)


def atlas_structure(*, adi_mm: float, ds_mm: float, anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY) -> Structure:
    """C1: anterior arch (behind it the atlanto-dental interval), lateral masses, posterior arch."""
    ap = sk.arch_post_mm(adi_mm, anatomy=anatomy)
    a_arch, b_arch = 3.0, 5.5
    vmin, vmax = min(6.0, ap[1] - b_arch - 1.0), max(30.0, ap[1] + b_arch + 1.0)
    u, v, u0, v0 = _grid((-52.0, max(16.0 + adi_mm, ap[0] + 2 * a_arch + 1.0), vmin, vmax), ds_mm)
    w = RAMP * ds_mm
    arch = sdf_ellipse(u, v, (ap[0] + a_arch, ap[1]), a_arch, b_arch)
    cov = coverage(arch, w)
    shell = cov - coverage(arch - 0.8, w)
    dens = 0.30 * cov + 0.35 * shell
    dens += 0.22 * coverage(sdf_ellipse(u, v, (-6.0, 19.0), 9.0, 6.5), w)
    dens += 0.22 * coverage(sdf_capsule(u, v, [(-14.0, 18.0), (-30.0, 17.0), (-40.0, 16.0)], 3.2), w)
    dens += 0.30 * coverage(sdf_ellipse(u, v, (-42.0, 16.0), 5.0, 5.5), w)
    return Structure("C1", "C1", "add", _finish(dens), u0, v0, ds_mm)


def _skull_occluder(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum.reduce(
        [
            sdf_ellipse(u, v, (-20.0, 112.0), 92.0, 82.0),
            sdf_ellipse(u, v, (-12.0, 44.0), 18.0, 10.0),
            sdf_capsule(u, v, [(-33.0, 30.0), (-55.0, 37.0), (-75.0, 56.0)], 5.0),
            sdf_capsule(u, v, [(2.0, 30.0), (20.0, 55.0)], 4.0),
        ]
    )


def skull_structure(*, ds_mm: float, gain: float = 1.0) -> Structure:
    """Skull base, occiput, calvarium, clivus, hard palate, maxillary teeth (C1 frame at neutral).

    ``gain`` scales its density (the ``occluders`` appearance family)."""
    u, v, u0, v0 = _grid((-115.0, 95.0, 20.0, 200.0), ds_mm)
    w = RAMP * ds_mm
    outer = sdf_ellipse(u, v, (-20.0, 112.0), 92.0, 82.0)
    inner = sdf_ellipse(u, v, (-20.0, 112.0), 85.0, 75.0)
    vault = coverage(outer, w)
    shell = vault - coverage(inner, w)
    dens = 0.40 * vault + MU_CORT * 8.0 * shell  # both parietal walls + the tangential vault
    dens += 0.55 * coverage(sdf_ellipse(u, v, (-12.0, 44.0), 18.0, 10.0), w)  # petrous / mastoid
    dens += 0.35 * coverage(sdf_capsule(u, v, [(-33.0, 30.0), (-55.0, 37.0), (-75.0, 56.0)], 5.0), w)
    dens += 0.30 * coverage(sdf_capsule(u, v, [(2.0, 30.0), (20.0, 55.0)], 4.0), w)  # clivus
    dens += 0.25 * coverage(sdf_capsule(u, v, [(25.0, 38.0), (78.0, 40.0)], 3.0), w)  # hard palate
    dens += 0.20 * coverage(sdf_polygon(u, v, [(25.0, 38.0), (85.0, 40.0), (88.0, 70.0), (30.0, 70.0)]), w)
    dens += 0.80 * coverage(sdf_ellipse(u, v, (68.0, 30.0), 13.0, 7.0), w)  # upper teeth
    if gain != 1.0:
        dens = dens * gain
    return Structure("skull", "skull", "add", _finish(dens), u0, v0, ds_mm, occluder=_skull_occluder)


_MANDIBLE_BODY = [(19.0, -12.0), (48.0, -24.0), (82.0, -25.0)]
_MANDIBLE_RAMUS = [(19.0, -12.0), (18.5, 15.0), (17.0, 38.0)]


def _mandible_occluder(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum.reduce(
        [
            sdf_capsule(u, v, _MANDIBLE_BODY, 6.0),
            sdf_capsule(u, v, _MANDIBLE_RAMUS, 6.0),
            sdf_ellipse(u, v, (82.0, -15.0), 8.0, 14.0),
        ]
    )


def mandible_structure(
    *, ds_mm: float, shift_mm: tuple[float, float] = (0.0, 0.0), gain: float = 1.0
) -> Structure:
    """Mandible (both halves superimposed) with the lower teeth; moves with the skull.

    ``shift_mm`` moves it in the skull frame and ``gain`` scales its density (the ``occluders``
    appearance family); the occluder used for the truth's visibility moves with it."""
    su, sv = shift_mm
    if (su, sv) != (0.0, 0.0) or gain != 1.0:
        u, v, u0, v0 = _grid((10.0 + su, 95.0 + su, -40.0 + sv, 48.0 + sv), ds_mm)
        local = _mandible_density(u - su, v - sv, RAMP * ds_mm) * gain
        return Structure(
            "mandible",
            "skull",
            "add",
            _finish(local),
            u0,
            v0,
            ds_mm,
            occluder=lambda uu, vv: _mandible_occluder(uu - su, vv - sv),
        )
    u, v, u0, v0 = _grid((10.0, 95.0, -40.0, 48.0), ds_mm)
    return Structure(
        "mandible",
        "skull",
        "add",
        _finish(_mandible_density(u, v, RAMP * ds_mm)),
        u0,
        v0,
        ds_mm,
        occluder=_mandible_occluder,
    )


def _mandible_density(u: np.ndarray, v: np.ndarray, w: float) -> np.ndarray:
    body = sdf_capsule(u, v, _MANDIBLE_BODY, 6.0)
    ramus = sdf_capsule(u, v, _MANDIBLE_RAMUS, 6.0)
    bone = np.maximum(body, ramus)
    cov = coverage(bone, w)
    dens = 0.30 * cov + 0.30 * (cov - coverage(bone - 1.5, w))
    dens += 0.35 * coverage(sdf_ellipse(u, v, (82.0, -15.0), 8.0, 14.0), w)
    dens += 0.80 * coverage(sdf_ellipse(u, v, (64.0, 12.0), 14.0, 7.0), w)  # lower teeth
    return dens


def _shoulder_occluder(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return sdf_ellipse(u, v, (-25.0, -80.0), 125.0, 112.0) - 8.0


def shoulder_structure(
    *, ds_mm: float, shift_mm: tuple[float, float] = (0.0, 0.0), gain: float = 1.0
) -> Structure:
    """Both shoulders (soft tissue, humeral heads, clavicles), fixed to the thorax (T1 frame at neutral).

    ``shift_mm`` moves them (raised shoulders: positive v) and ``gain`` scales their density (the
    ``occluders`` appearance family); the occluder moves with them."""
    su, sv = shift_mm
    if (su, sv) != (0.0, 0.0) or gain != 1.0:
        u, v, u0, v0 = _grid((-150.0 + su, 100.0 + su, -95.0 + sv, 40.0 + sv), ds_mm)
        dens = _shoulder_density(u - su, v - sv, RAMP * ds_mm) * gain
        return Structure(
            "shoulders",
            "base",
            "add",
            _finish(dens),
            u0,
            v0,
            ds_mm,
            occluder=lambda uu, vv: _shoulder_occluder(uu - su, vv - sv),
        )
    u, v, u0, v0 = _grid((-150.0, 100.0, -95.0, 40.0), ds_mm)
    dens = _shoulder_density(u, v, RAMP * ds_mm)
    return Structure("shoulders", "base", "add", _finish(dens), u0, v0, ds_mm, occluder=_shoulder_occluder)


def _shoulder_density(u: np.ndarray, v: np.ndarray, w: float) -> np.ndarray:
    e = sdf_ellipse(u, v, (-25.0, -80.0), 125.0, 112.0)
    dens = MU_SOFT * 110.0 * np.clip(e / 25.0, 0.0, 1.0) ** 0.6
    dens += 0.45 * coverage(sdf_ellipse(u, v, (-55.0, -15.0), 24.0, 26.0), w)
    dens += 0.30 * coverage(sdf_capsule(u, v, [(-40.0, 12.0), (20.0, 0.0), (70.0, -18.0)], 5.0), w)
    return dens


_NECK = {  # posterior skin, anterior skin (mm from body centre), lateral width, prevertebral, airway AP
    Vertebra.C2: (-72.0, 62.0, 110.0, 4.0, 14.0),
    Vertebra.C3: (-72.0, 60.0, 110.0, 5.0, 12.0),
    Vertebra.C4: (-74.0, 57.0, 112.0, 6.0, 10.0),
    Vertebra.C5: (-76.0, 55.0, 116.0, 12.0, 9.0),
    Vertebra.C6: (-78.0, 55.0, 120.0, 15.0, 15.0),
    Vertebra.C7: (-80.0, 56.0, 126.0, 16.0, 16.0),
    Vertebra.T1: (-84.0, 58.0, 132.0, 17.0, 16.0),
}


def neck_structures(
    vertebra: Vertebra,
    *,
    ds_mm: float,
    anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY,
    look: SoftTissueLook | None = None,
) -> tuple[Structure, Structure]:
    """Soft tissue slab and air column carried by one vertebra (combined by maximum with the others).

    ``look`` (the ``soft_tissue`` appearance family) changes the airway's width, distance from
    the spine and darkness, and adds muscle and fat layers."""
    post, ant, width, pv, aw = _NECK[vertebra]
    air_gain = 1.0
    if look is not None:
        pv, aw, air_gain = pv + look.airway_shift_mm, aw * look.airway_scale, look.air_gain
    d = anatomy.sizes[vertebra].depth_mm / 2
    u, v, u0, v0 = _grid((post - 2, ant + 2, -28.0, 28.0), ds_mm)
    weight = _finish(_smoothstep((27.0 - np.abs(v)) / 17.0))
    mid, half = 0.5 * (post + ant), 0.5 * (ant - post)
    soft = MU_SOFT * path_profile(u - mid, half, width, 2.5) * weight
    if look is not None:  # muscle bellies and fat planes, parallel to the column
        soft = soft * (1.0 + look.muscle_contrast * np.cos(2 * np.pi * (u - post) / look.muscle_period_mm))
    soft_s = Structure(
        f"neck:{vertebra.value}", vertebra.value, "soft", _finish(soft), u0, v0, ds_mm, weight=weight
    )
    a0, a1 = d + pv, d + pv + aw
    ua, va, ua0, va0 = _grid((a0 - 3, a1 + 3, -28.0, 28.0), ds_mm)
    wa = _finish(_smoothstep((27.0 - np.abs(va)) / 17.0))
    rect = sdf_polygon(ua, va, [(a0, -30.0), (a1, -30.0), (a1, 30.0), (a0, 30.0)])
    air = MU_SOFT * 22.0 * coverage(rect, 1.2) * wa
    if air_gain != 1.0:
        air = air * air_gain
    air_s = Structure(
        f"air:{vertebra.value}", vertebra.value, "air", _finish(air), ua0, va0, ds_mm, weight=wa
    )
    return soft_s, air_s


def _smoothstep(x: np.ndarray) -> np.ndarray:
    t = np.clip(x, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def head_structures(*, ds_mm: float, pharynx_gain: float = 1.0) -> tuple[Structure, Structure]:
    """Soft tissue of head and face, and the naso/oropharynx air (skull frame, ``pharynx_gain`` x)."""
    u, v, u0, v0 = _grid((-120.0, 110.0, -50.0, 200.0), ds_mm)
    head = MU_SOFT * 150.0 * np.clip(sdf_ellipse(u, v, (5.0, 95.0), 105.0, 100.0) / 20.0, 0, 1) ** 0.5
    chin = MU_SOFT * 90.0 * np.clip(sdf_ellipse(u, v, (62.0, 0.0), 34.0, 32.0) / 15.0, 0, 1) ** 0.5
    soft = Structure("head", "skull", "soft_max", _finish(np.maximum(head, chin)), u0, v0, ds_mm)
    ua, va, ua0, va0 = _grid((8.0, 40.0, 0.0, 48.0), ds_mm)
    rect = sdf_polygon(ua, va, [(13.0, 2.0), (28.0, 2.0), (30.0, 44.0), (16.0, 44.0)])
    air = Structure(
        "air:head",
        "skull",
        "air_max",
        _finish(MU_SOFT * 20.0 * pharynx_gain * coverage(rect, 1.5)),
        ua0,
        va0,
        ds_mm,
    )
    return soft, air


def build_structures(
    *,
    ds_mm: float,
    adi_mm: float,
    seed_sequence: np.random.SeedSequence,
    anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY,
    appearance: Appearance | None = None,
) -> list[Structure]:
    """All the phantom's structures for one patient's ``anatomy``, deterministic for ``seed_sequence``.

    ``appearance`` (see :mod:`dmx.phantom.appearance`) changes how they look, never where the
    body corners are; ``None`` gives the default phantom."""
    look = appearance if appearance is not None else Appearance()
    occ, soft = look.occluders, look.soft_tissue
    rngs = [np.random.default_rng(s) for s in seed_sequence.spawn(len(sk.CORNER_BODIES))]
    if occ is None:
        out: list[Structure] = [shoulder_structure(ds_mm=ds_mm)]
    else:
        out = [shoulder_structure(ds_mm=ds_mm, shift_mm=occ.shoulder_shift_mm, gain=occ.shoulder_gain)]
    out += list(head_structures(ds_mm=ds_mm, pharynx_gain=1.0 if soft is None else soft.pharynx_gain))
    out.append(skull_structure(ds_mm=ds_mm, gain=1.0 if occ is None else occ.skull_gain))
    if occ is None:
        out.append(mandible_structure(ds_mm=ds_mm))
    else:
        out.append(mandible_structure(ds_mm=ds_mm, shift_mm=occ.mandible_shift_mm, gain=occ.mandible_gain))
    out.append(atlas_structure(adi_mm=adi_mm, ds_mm=ds_mm, anatomy=anatomy))
    for i, (vert, rng) in enumerate(zip(sk.CORNER_BODIES, rngs, strict=True)):
        lips = (0.0, 0.0) if look.cortical is None else look.cortical.osteophyte_mm[i]
        out.append(
            vertebra_structure(
                vert,
                ds_mm=ds_mm,
                rng=rng,
                anatomy=anatomy,
                cortical=look.cortical,
                posterior=look.posterior,
                lips_mm=lips,
            )
        )
        out += list(neck_structures(vert, ds_mm=ds_mm, anatomy=anatomy, look=soft))
    if soft is not None:
        out.append(hyoid_structure(ds_mm=ds_mm, look=soft, anatomy=anatomy))
        out.append(thyroid_structure(ds_mm=ds_mm, look=soft, anatomy=anatomy))
    return out
