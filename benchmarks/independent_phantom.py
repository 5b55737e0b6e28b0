"""An independent lateral cervical-spine cine renderer with exact ground truth.

Written from general knowledge of lateral cervical radiographs, without reading or
importing ``dmx/phantom``, ``dmx/training``, ``dmx/detect`` or the other benchmarks,
so that dmx can be tested on images it was not developed on.  Only the landmark file
format and the angle definition (``docs``/spec sections 1 and 3-4) are shared.

What it models
    * Anatomy in millimetres, in a sagittal frame (u anterior, v superior).  Each
      vertebra C2..C7 and T1 is one rigid body: a vertebral body (concave endplates,
      rounded corners, slight anterior waist, small anterior-inferior lip) drawn as a
      projected bone density -- a dense cortical rim (exponential shell), a chord-
      weighted trabecular interior with vertically streaked texture -- plus pedicles,
      two slightly offset articular pillars (left and right) whose facet surfaces slope
      down posteriorly and overlap the back of the body, lamina and a spinous process
      (C2 big, C3-C5 short, C6-T1 long).  C2 carries the dens; C1 (anterior arch,
      lateral masses, posterior arch), the occiput, skull base (mastoid/petrous),
      hard palate and the mandible (two offset halves with teeth) move rigidly with
      C2 ("the head").  The hyoid moves with C3.
    * Soft tissue as water-equivalent path length: a neck/head silhouette defined
      along the (moving) spinal curve, an elliptical lateral cross-section, a pharynx /
      trachea air column in front of the prevertebral soft tissue, discs slightly
      denser than fat, and static shoulders (two offset edges, large extra tissue,
      clavicles and humeral heads) over C6-T1.
    * Motion: neutral -> flexion -> neutral -> extension.  Each level C2-C3 .. C7-T1
      rotates about a centre just below the lower body's superior endplate, with a
      coupled anterior translation in flexion and a small per-level phase lag.  The
      chain is composed from a still T1 upward, so every body pose is exact.
    * Image formation: line integrals -> exp attenuation -> added scatter -> Poisson
      photon noise -> detector blur -> log -> optional unsharp mask -> fixed window and
      gamma -> 8 or 12 bit, MONOCHROME2 or MONOCHROME1, facing left or right.
    * Truth: the four corners of C2..C7 (and T1) per frame, transformed from the
      rigid bodies' local corner points (the points on the rounded outer cortex along
      the corner bisector; C2's upper corners where the body meets the dens base), and
      per-level angle_deg computed from those corners with the spec's formula.

What it does not model: true 3D projection (no divergent beam, no magnification
difference or rotation out of plane beyond the offset pillars and mandible halves),
axial rotation, degenerative change (osteophytes, disc narrowing), motion blur,
image-intensifier distortion, lag or grid lines, and soft tissue that deforms
realistically (the neck silhouette simply follows the spine).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

BODIES = ["C2", "C3", "C4", "C5", "C6", "C7", "T1"]  # bottom of the chain is T1
CORNERS = ["ant_sup", "post_sup", "post_inf", "ant_inf"]
LEVELS = ["C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7", "C7-T1"]
MU_WATER = 0.020  # 1/mm, effective at ~65 keV
MU_BONE = 0.010  # 1/mm, trabecular bone in excess of water
DEFAULTS = dict(
    frames=60, size=512, mm_per_px=0.3, facing="right", photometric="MONOCHROME2",
    photons=1.0e5, mandible=True, shoulders=True, mandible_low=False,
    heavy_shoulders=False, bits=8, fps=15.0, edge_enhance=True, noise_seed=None,
)  # fmt: skip


# ---------------------------------------------------------------- 2D rigid transforms
def rot(deg: float, c=(0.0, 0.0)) -> np.ndarray:
    """3x3 rotation by ``deg`` (counter-clockwise in u-v, i.e. extension) about ``c``."""
    a = math.radians(deg)
    r = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0, 0, 1.0]])
    return trans(*c) @ r @ trans(-c[0], -c[1])


def trans(du: float, dv: float) -> np.ndarray:
    return np.array([[1.0, 0, du], [0, 1.0, dv], [0, 0, 1.0]])


def apply(m: np.ndarray, pts) -> np.ndarray:
    pts = np.asarray(pts, float).reshape(-1, 2)
    return pts @ m[:2, :2].T + m[:2, 2]


# ---------------------------------------------------------------- sprites (bone density)
class Sprite:
    """A projected-density image in a rigid body's local frame (mm), ``s`` mm per pixel."""

    def __init__(self, u0, u1, v0, v1, s):
        self.u0, self.v1, self.s = u0, v1, s
        self.img = np.zeros((int((v1 - v0) / s) + 1, int((u1 - u0) / s) + 1), np.float32)
        jj, ii = np.meshgrid(np.arange(self.img.shape[1]), np.arange(self.img.shape[0]))
        self.u, self.v = u0 + jj * s, v1 - ii * s

    def to_px(self, pts):
        pts = np.asarray(pts, float)
        return np.stack([(pts[:, 0] - self.u0) / self.s, (self.v1 - pts[:, 1]) / self.s], 1)

    def mask(self, poly, round_mm=0.0):
        m = np.zeros(self.img.shape, np.uint8)
        cv2.fillPoly(m, [np.round(self.to_px(poly) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
        if round_mm > 0:
            k = 2 * int(round(round_mm / self.s)) + 1
            m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        return m

    def add(self, m, interior, rim=0.25, rim_w=0.7, texture=None):
        """Add bone: ``interior`` (array or scalar, attenuation) inside mask ``m`` plus a cortical rim."""
        dist = cv2.distanceTransform(m, cv2.DIST_L2, 5) * self.s
        inside = m > 0
        dens = np.asarray(interior, np.float32) * (1 + (0 if texture is None else 0.25 * texture))
        self.img += np.where(inside, dens + rim * np.exp(-dist / rim_w), 0).astype(np.float32)

    def pixel_to_local(self) -> np.ndarray:
        return np.array([[self.s, 0, self.u0], [0, -self.s, self.v1], [0, 0, 1.0]])


def texture(shape, s, rng) -> np.ndarray:
    """Trabecular texture: band-limited noise streaked vertically (struts), unit std."""
    t = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 0.35 / s, sigmaY=1.1 / s)
    t += 0.5 * cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.2 / s)
    return (t - t.mean()) / (t.std() + 1e-6)


def curve(p, q, bulge, n=12):
    """Points from p to q (q excluded) bowed by ``bulge`` mm to the left of p->q."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    nrm = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    return p + t * d + bulge * np.sin(np.pi * t) * nrm


def rounded_corner(prev, v, nxt, r):
    """Where a corner of radius ``r`` (morphological opening) crosses the corner bisector."""
    e1, e2 = prev - v, nxt - v
    e1, e2 = e1 / np.linalg.norm(e1), e2 / np.linalg.norm(e2)
    phi = math.acos(float(np.clip(e1 @ e2, -1, 1)))
    b = (e1 + e2) / (np.linalg.norm(e1 + e2) + 1e-12)
    return v + b * (r / math.sin(phi / 2) - r)


def ellipse(c, a, b, ang=0.0, n=48):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    p = np.stack([a * np.cos(t), b * np.sin(t)], 1)
    return apply(rot(ang), p) + np.asarray(c)


# ---------------------------------------------------------------- anatomy
def vertebra_params(rng) -> dict:
    """Per-body dimensions (mm) and per-level neutral angles / motion, jittered by the seed."""
    j = lambda x, sd: float(x + rng.normal(0, sd))  # noqa: E731
    base = {  # depth, post height, ant height, disc below, spinous length
        "C2": (16.0, 17.0, 17.5, 4.5, 24), "C3": (15.5, 13.5, 13.0, 5.0, 14),
        "C4": (15.5, 13.5, 13.0, 5.5, 15), "C5": (16.0, 13.5, 13.0, 5.5, 17),
        "C6": (16.5, 14.0, 13.5, 5.0, 23), "C7": (17.0, 15.0, 14.5, 4.5, 31),
        "T1": (18.0, 17.0, 16.5, 4.0, 32),
    }  # fmt: skip
    out = {}
    for name, (d, hp, ha, disc, sp) in base.items():
        sc = j(1.0, 0.04)
        out[name] = dict(
            D=d * sc, Hp=j(hp, 0.5) * sc, Ha=j(ha, 0.5) * sc, disc=j(disc, 0.4), spin=j(sp, 2),
            c_inf=j(1.1, 0.3), c_sup=j(0.4, 0.15), waist=j(0.5, 0.2), lip=max(0.0, j(0.6, 0.5)),
            r=j(1.0, 0.2), overlap=j(3.0, 1.0), pillar_off=(j(1.0, 0.5), j(0.8, 0.4)),
            spin_ang=j(25 if name in ("C7", "T1") else 18, 4),
        )  # fmt: skip
    return out


def body_outline(p: dict, c2: bool):
    """(contour points, {corner: index}) of a body's outer cortex in its local frame."""
    d, hp, ha = p["D"], p["Hp"], p["Ha"]
    pi, ai, as_, ps = (-d / 2, 0.0), (d / 2, 0.0), (d / 2 - (1.5 if c2 else 0.0), ha), (-d / 2 + 0.3, hp)
    parts, idx = [], {}

    def seg(a, b, bulge, name=None):
        if name:
            idx[name] = sum(len(x) for x in parts)
        parts.append(curve(a, b, bulge))

    seg(pi, ai, -p["c_inf"], "post_inf")  # inferior endplate, concave (centre raised)
    seg(ai, as_, -p["waist"], "ant_inf")  # anterior wall with a waist
    if c2:  # body -> base of the dens -> dens -> back down
        ua, up, top = d / 2 - 4.5, d / 2 - 14.5, ha + 15.0
        idx["ant_sup"] = sum(len(x) for x in parts)
        parts.append(np.array([as_, (ua, ha + 1.5), (ua + 0.3, top - 4)]))
        parts.append(curve((ua + 0.3, top - 4), (up, top - 4), -5.0, 16))
        parts.append(np.array([(up, top - 4), (up - 0.5, hp + 1.5)]))
        seg(ps, pi, -0.4, "post_sup")
    else:
        seg(as_, ps, p["c_sup"], "ant_sup")  # superior endplate, mildly concave
        seg(ps, pi, -0.4, "post_sup")  # posterior wall
    return np.concatenate(parts), idx


def body_corners(p: dict, c2: bool) -> np.ndarray:
    cont, idx = body_outline(p, c2)
    n = len(cont)
    return np.array(
        [
            rounded_corner(cont[(idx[k] - 1) % n], cont[idx[k]], cont[(idx[k] + 1) % n], p["r"])
            for k in CORNERS
        ]
    )


def body_vertices(p: dict, c2: bool) -> np.ndarray:
    """The outline's vertices at the corners (where its sides meet before the rounding): the corners
    as a detector that intersects fitted sides places them, ``r (1 / sin(phi / 2) - 1)`` (about
    0.4 mm) outside the rounded cortex along the bisector."""
    cont, idx = body_outline(p, c2)
    return np.array([cont[idx[k]] for k in CORNERS])


def vertebra_sprite(name: str, p: dict, above: dict | None, s: float, rng) -> Sprite:
    d, hp, c2 = p["D"], p["Hp"], name == "C2"
    sp = Sprite(-d / 2 - 30 - p["spin"], d / 2 + 5, -p["spin"] - 8, hp + (20 if c2 else 8), s)
    tex = texture(sp.img.shape, s, rng)
    cont, _ = body_outline(p, c2)
    m = sp.mask(cont, p["r"])
    lip = np.array([(d / 2 - 3.5, 0.2), (d / 2, 0.2), (d / 2 - 0.4, -p["lip"] - (1.0 if c2 else 0))])
    m = np.maximum(m, sp.mask(lip))
    chord = 0.55 + 0.45 * np.sqrt(np.clip(1 - (sp.u / (d / 2 + 0.5)) ** 2, 0, 1))
    sp.add(m, MU_BONE * 21 * chord, rim=0.40, rim_w=0.6, texture=tex)
    # posterior elements: pedicle, two articular pillars (left/right), lamina + spinous process
    ua = -d / 2 + p["overlap"]  # anterior edge of the pillars overlaps the back of the body
    top = hp + (3.0 if c2 else above["disc"] / 2 + 1.3)  # superior facet, at the anterior edge
    bot = -p["disc"] / 2 + 2.7
    sl = 0.7  # facet surfaces fall 0.7 mm per mm posteriorly (~35 deg)
    ped = np.array(
        [(-d / 2 + 2, 0.45 * hp), (-d / 2 + 2, 0.85 * hp), (ua - 7, 0.85 * hp), (ua - 7, 0.45 * hp)]
    )
    sp.add(sp.mask(ped, 1.0), MU_BONE * 12, rim=0.10)
    w = 11.0 if not c2 else 14.0
    for k, (du, dv) in enumerate([(0.0, 0.0), p["pillar_off"]]):
        pil = np.array([(ua, top), (ua - w, top - sl * w), (ua - w, bot - sl * w), (ua, bot)]) + (du, dv)
        if c2:
            pil[0, 1] = pil[1, 1] = top + dv
        sp.add(sp.mask(pil, 1.2), MU_BONE * 9 * (1 + 0.2 * k), rim=0.16, rim_w=0.6, texture=tex)
    up_, vm = ua - w, (top + bot) / 2 - sl * w
    a = math.radians(p["spin_ang"])
    base = np.array([up_ - 6, vm - 1.0])
    tip = base + p["spin"] * np.array([-math.cos(a), -math.sin(a)])
    hb = 5.5 if c2 else 4.0  # half-height of the spinous base
    lam = np.array(
        [
            (up_ + 4, vm + 6),
            base + (0, hb),
            tip + (0, 2.2),
            tip + (-2.2, 0),
            tip + (0, -2.2),
            base + (0, -hb),
            (up_ + 4, vm - 5),
        ]
    )
    sp.add(sp.mask(lam, 1.5), MU_BONE * (9 if c2 else 6), rim=0.16, rim_w=0.6, texture=tex)
    return sp


def head_sprite(p2: dict, opt: dict, s: float, rng) -> Sprite:
    """Everything rigid with C2: C1, occiput, skull base, palate, mandible (in C2's frame)."""
    d, h = p2["D"], p2["Ha"]
    sp = Sprite(-110, 120, -60, h + 120, s)
    tex = texture(sp.img.shape, s, rng)
    dens_ant = d / 2 - 4.5
    arch = ellipse((dens_ant + 2.0 + 3.5, h + 9.5), 3.5, 5.5)  # C1 anterior arch, ADI ~2 mm
    sp.add(sp.mask(arch), MU_BONE * 8, rim=0.30, rim_w=0.6, texture=tex)
    sp.add(
        sp.mask(np.array([(-12, h + 4), (3, h + 5), (2, h + 16), (-13, h + 15)]), 2),
        MU_BONE * 14,
        0.15,
        0.8,
        tex,
    )
    post = np.concatenate([curve((-14, h + 13), (-45, h + 12), 1.5), curve((-45, h + 5), (-14, h + 6), 1.5)])
    m = np.maximum(sp.mask(post, 1.5), sp.mask(ellipse((-46, h + 8.5), 4.5, 5.5)))
    sp.add(m, MU_BONE * 6, rim=0.22, rim_w=0.6, texture=tex)
    # occiput: thick curved band from opisthion back and up; skull base masses above C1
    occ = np.concatenate(
        [curve((-33, h + 25), (-105, h + 95), 12, 24), curve((-97, h + 102), (-27, h + 31), -10, 24)]
    )
    sp.add(sp.mask(occ, 2), MU_BONE * 40, rim=0.35, rim_w=1.2, texture=tex)
    sp.add(sp.mask(ellipse((-22, h + 36), 16, 11, 15), 3), MU_BONE * 35, rim=0.2, rim_w=2, texture=tex)
    sp.add(sp.mask(np.array([(-40, h + 48), (10, h + 62), (-30, h + 70)]), 3), MU_BONE * 60, rim=0.3, rim_w=2)
    clivus = np.array([(-3, h + 26), (2, h + 24), (25, h + 60), (18, h + 63)])
    sp.add(sp.mask(clivus, 1), MU_BONE * 25, rim=0.25, rim_w=1.0, texture=tex)
    sp.add(
        sp.mask(np.array([(22, h + 26), (85, h + 29), (85, h + 35), (22, h + 31)]), 1.5), MU_BONE * 18, 0.25
    )
    if opt["mandible"]:
        gu, gv = (3.0, -7.0) if opt["mandible_low"] else (24.0, 6.0)  # gonion in C2's frame
        for k, off in enumerate([(0.0, 0.0), (rng.uniform(2, 5), rng.uniform(1, 4))]):
            g = np.array([gu, gv]) + off
            mand = g + np.array([
                (0, 0), (-3, 20), (-2, 40), (-3, 47), (4, 50), (7, 44), (14, 38), (20, 41), (25, 50),
                (29, 46), (30, 20), (36, 10), (80, 5), (88, 8), (92, -5), (90, -18), (80, -24), (40, -18),
                (10, -8),
            ])  # fmt: skip
            sp.add(sp.mask(mand, 3), MU_BONE * 8, rim=0.35, rim_w=1.5, texture=tex)
            for t in range(7):
                sp.add(
                    sp.mask(ellipse(g + (40 + 7.5 * t, 12 - 0.4 * t), 3.2, 6)),
                    MU_BONE * 30 * (1 - 0.3 * k),
                    0.2,
                )
    return sp


# ---------------------------------------------------------------- motion
def motion(n: int, rng) -> tuple[dict, dict]:
    """Per-level rotation (deg, + = extension) and translation (mm) for every frame."""
    rotd, trn = {}, {}
    t = np.linspace(0, 1, n)
    for lv in LEVELS:
        rom = rng.uniform(6, 15) if lv != "C7-T1" else rng.uniform(3, 6)
        fl = rng.uniform(0.45, 0.65)
        lag = rng.uniform(-0.04, 0.04)
        g = -np.sin(1.5 * np.pi * np.clip(t - lag, 0, 1))  # 0 -> -1 (flexion) -> 0 -> +1 (extension)
        g = np.where(np.abs(g) < 1e-9, 0.0, g)
        rotd[lv] = np.where(g < 0, g * rom * fl, g * rom * (1 - fl))
        trn[lv] = -rotd[lv] * rng.uniform(0.07, 0.14) + rng.normal(0, 0.03, n)
    return rotd, trn


def poses(params: dict, rotd: dict, trn: dict, alpha: dict, t1_tilt: float, f: int) -> dict:
    """World pose (3x3, local -> world mm) of every body in frame ``f``, composed from T1 up."""
    out = {"T1": rot(t1_tilt)}
    for lv in reversed(LEVELS):
        up, lo = lv.split("-")
        pl = params[lo]
        sup = np.array([(pl["D"] / 2, pl["Ha"]), (-pl["D"] / 2 + 0.3, pl["Hp"])])  # ant, post
        mid, e = sup.mean(0), sup[0] - sup[1]
        s_frame = trans(*mid) @ rot(math.degrees(math.atan2(e[1], e[0])))
        centre = (-0.15 * pl["D"], -2.0)  # rotation centre in the superior-endplate frame
        m = trans(trn[lv][f], 0) @ rot(rotd[lv][f], centre)
        out[up] = out[lo] @ s_frame @ m @ trans(0, pl["disc"]) @ rot(alpha[lv])
    return out


# ---------------------------------------------------------------- soft tissue
def soft_tissue(
    nodes: np.ndarray, normals: np.ndarray, prof: dict, u: np.ndarray, v: np.ndarray
) -> np.ndarray:
    """Water-equivalent path (mm) of the neck/head at world points (u, v), built along the spine."""
    p = np.stack([u.ravel(), v.ravel()], 1)
    best, sd, ss = np.full(len(p), np.inf), np.zeros(len(p)), np.zeros(len(p))
    arc = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(nodes, axis=0).T))])
    for k in range(len(nodes) - 1):
        a, b = nodes[k], nodes[k + 1]
        L = np.hypot(*(b - a))
        tk = (b - a) / L
        q = np.clip((p - a) @ tk, 0, L)
        foot = a + q[:, None] * tk
        dist = np.hypot(*(p - foot).T)
        nk = normals[k] * (1 - q / L)[:, None] + normals[k + 1] * (q / L)[:, None]
        sgn = np.einsum("ij,ij->i", p - foot, nk)
        upd = dist < best
        best[upd], sd[upd], ss[upd] = dist[upd], np.where(sgn >= 0, 1, -1)[upd] * dist[upd], (arc[k] + q)[upd]
    ant, post, wid = (np.interp(ss, prof["s"], prof[k]) for k in ("ant", "post", "width"))
    half, c = (ant + post) / 2, (ant - post) / 2
    x = (sd - c) / half
    t = wid * np.sqrt(np.clip(1 - x**2, 0, 1))
    a0, a1, aw = (np.interp(ss, prof["s"], prof[k]) for k in ("air0", "air1", "airw"))
    edge = lambda z: 1 / (1 + np.exp(-z / 0.8))  # noqa: E731
    t -= aw * edge(sd - a0) * edge(a1 - sd)
    return np.clip(t, 0, None).reshape(u.shape)


# ---------------------------------------------------------------- spec angle
def spec_angles(c: dict) -> dict:
    """angle_deg per level from corners (px), exactly as spec section 3-4."""
    cross = lambda p, q: p[0] * q[1] - p[1] * q[0]  # noqa: E731
    hs = []
    for k in c.values():
        a = (k[0] + k[3]) / 2 - (k[1] + k[2]) / 2
        sv = (k[0] + k[1]) / 2 - (k[2] + k[3]) / 2
        hs.append(np.sign(cross(a, sv)))
    h = 1.0 if sum(hs) >= 0 else -1.0
    out = {}
    for lv in LEVELS[:-1]:
        up, lo = lv.split("-")
        p, q = c[lo][0] - c[lo][1], c[up][3] - c[up][2]
        out[lv] = float(h * math.degrees(math.atan2(cross(p, q), p @ q)))
    return out


# ---------------------------------------------------------------- rendering
def render(seed: int, **options):
    """Render a study; returns (frames uint8/uint16 array, truth dict, options)."""
    opt = {**DEFAULTS, **options}
    rng = np.random.default_rng(seed)
    # the quantum noise from its own generator when asked: the same anatomy and motion, another noise
    noise = rng if opt["noise_seed"] is None else np.random.default_rng(int(opt["noise_seed"]))
    n, size, mpp = int(opt["frames"]), int(opt["size"]), float(opt["mm_per_px"])
    fsign = 1.0 if opt["facing"] == "right" else -1.0
    params = vertebra_params(rng)
    alpha = {lv: rng.normal(m, 1.2) for lv, m in zip(LEVELS, [2.0, 3.0, 4.0, 4.0, 3.5, 2.5], strict=True)}
    t1_tilt = -sum(alpha.values()) + rng.normal(4, 3)
    rotd, trn = motion(n, rng)
    s = min(0.12, mpp / 2)
    names = BODIES
    sprites = {
        nm: vertebra_sprite(nm, params[nm], params.get(names[i - 1]) if i else None, s, rng)
        for i, nm in enumerate(names)
    }
    head = head_sprite(params["C2"], opt, max(s, 0.2), rng)
    hy = Sprite(-10, 60, -20, 20, s)
    hyo = np.array([(28, 6), (38, 4), (40, 9), (30, 11)]) + (params["C3"]["D"] / 2, 0)
    hy.add(hy.mask(hyo, 1.5), MU_BONE * 10, rim=0.3)
    hy.add(
        hy.mask(np.array([(30, 9), (14, 15), (13, 13), (30, 6)]) + (params["C3"]["D"] / 2, 0), 0.8),
        MU_BONE * 5,
        0.2,
    )
    for sp in [*sprites.values(), head, hy]:  # anti-alias before resampling to the image grid
        sp.img = cv2.GaussianBlur(sp.img, (0, 0), max(0.5, 0.5 * mpp / sp.s))
    local_c = {nm: body_corners(params[nm], nm == "C2") for nm in names}
    local_v = {nm: body_vertices(params[nm], nm == "C2") for nm in names}
    p0 = poses(params, rotd, trn, alpha, t1_tilt, 0)
    cen = np.mean([apply(p0[nm], [(0, params[nm]["Hp"] / 2)])[0] for nm in ("C2", "C7")], 0)
    cen = cen + (rng.uniform(-4, 8), rng.uniform(-5, 5))
    # world mm -> image px (pixel centres at integers)
    w2i = np.array(
        [
            [fsign / mpp, 0, (size - 1) / 2 - fsign * cen[0] / mpp],
            [0, -1 / mpp, (size - 1) / 2 + cen[1] / mpp],
            [0, 0, 1],
        ]
    )
    i2w = np.linalg.inv(w2i)
    # static parts (shoulders), world frame = T1 still
    jj, ii = np.meshgrid(np.arange(size, dtype=float), np.arange(size, dtype=float))
    U, V = i2w[0, 0] * jj + i2w[0, 2], i2w[1, 1] * ii + i2w[1, 2]
    static_soft = np.zeros((size, size))
    static_bone = np.zeros((size, size), np.float32)
    t1c = apply(p0["T1"], [(0, params["T1"]["Hp"])])[0]
    if opt["shoulders"]:
        c6 = apply(p0["C6"], [(0, params["C6"]["Hp"] * (0.5 if opt["heavy_shoulders"] else -0.2))])[0]
        tmax = 200.0 if opt["heavy_shoulders"] else 130.0
        for k in range(2):
            top = (
                c6[1]
                - 8 * k
                + rng.normal(0, 2)
                + 0.45 * np.clip(c6[0] - U, -40, None)
                - 0.003 * (U - c6[0] + 10) ** 2
            )
            static_soft += (
                tmax / 2 * (1 - np.exp(-np.clip(top - V, 0, None) / 14)) / (1 + np.exp(-(top - V) / 1.5))
            )
        ss = Sprite(-200, 200, -200, 200, max(s, 0.25))
        for k in range(2):
            o = np.array([t1c[0] + 30, t1c[1] - 25 - 6 * k])
            ss.add(
                ss.mask(np.array([o, o + (-70, 28), o + (-72, 18), o + (2, -9)]), 3), MU_BONE * 12, 0.25, 1.0
            )
            ss.add(ss.mask(ellipse((t1c[0] - 35 + 8 * k, t1c[1] - 45), 24, 24)), MU_BONE * 8, 0.10, 2.0)
        static_bone = cv2.warpAffine(
            ss.img, (w2i @ ss.pixel_to_local())[:2], (size, size), flags=cv2.INTER_LINEAR
        )
    # soft-tissue profile along the spinal curve (arc length from T1 up, filled per frame)
    sub = 4  # soft tissue is smooth: evaluate on a 4x coarser grid aligned with cv2.resize
    cs = np.arange(size // sub) * sub + (sub - 1) / 2
    Us, Vs = np.meshgrid(i2w[0, 0] * cs + i2w[0, 2], i2w[1, 1] * cs + i2w[1, 2])
    frames, corners, angles, vertices = [], [], [], []
    window = None
    n0 = opt["photons"] * mpp**2
    for f in range(n):
        P = poses(params, rotd, trn, alpha, t1_tilt, f)
        P["head"], P["hyoid"] = P["C2"], P["C3"]
        bone = static_bone.copy()
        for key, sp in [*sprites.items(), ("head", head), ("hyoid", hy)]:
            bone += cv2.warpAffine(
                sp.img, (w2i @ P[key] @ sp.pixel_to_local())[:2], (size, size), flags=cv2.INTER_LINEAR
            )
        seq = ["T1", "C7", "C6", "C5", "C4", "C3", "C2"]
        nodes = [apply(P["T1"], [(0, -60)])[0]] + [apply(P[k], [(0, params[k]["Hp"] / 2)])[0] for k in seq]
        nodes += [apply(P["C2"], [(0, 40)])[0], apply(P["C2"], [(0, 100)])[0]]
        nrm = [P["T1"][:2, 0]] + [P[k][:2, 0] for k in seq] + [P["C2"][:2, 0]] * 2
        nodes, nrm = np.array(nodes), np.array(nrm)
        arc = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(nodes, axis=0).T))])
        # skin anterior / posterior, lateral width; air column posterior / anterior wall, lateral width
        prof = dict(
            s=arc,
            ant=[62, 60, 56, 52, 48, 46, 48, 60, 100, 120],
            post=[90, 85, 78, 72, 68, 66, 66, 72, 95, 105],
            width=[130, 125, 115, 108, 105, 105, 105, 112, 140, 150],
            air0=[24, 24, 23, 21, 15, 13, 12, 12, 18, 30], air1=[40, 40, 39, 36, 30, 28, 28, 27, 38, 45],
            airw=[18, 18, 18, 20, 24, 28, 30, 30, 20, 0],
        )  # fmt: skip
        soft_lo = soft_tissue(nodes, nrm, prof, Us, Vs)
        soft = cv2.resize(soft_lo.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        soft = soft + static_soft
        cpx = {nm: apply(w2i @ P[nm], local_c[nm]) for nm in names}
        corners.append(cpx)
        vertices.append({nm: apply(w2i @ P[nm], local_v[nm]) for nm in names})
        angles.append(spec_angles({k: cpx[k] for k in BODIES[:-1]}))
        # discs: slightly denser than the surrounding fat/muscle
        for lv in LEVELS:
            up, lo = lv.split("-")
            q = np.array([cpx[lo][1], cpx[lo][0], cpx[up][3], cpx[up][2]], np.float32)
            dm = np.zeros((size, size), np.uint8)
            cv2.fillPoly(dm, [np.round(q * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
            bone += dm * 0.02
        att = MU_WATER * soft + bone
        prim = n0 * np.exp(-att)
        small = cv2.resize(prim, (size // 8, size // 8), interpolation=cv2.INTER_AREA)
        scat = 0.35 * cv2.resize(cv2.GaussianBlur(small, (0, 0), 25 / mpp / 8), (size, size))
        cnt = noise.poisson(prim + scat).astype(np.float32)
        cnt = cv2.GaussianBlur(cnt, (0, 0), max(0.5, 0.25 / mpp))
        img = np.log(n0 * 1.35 / np.maximum(cnt, 0.5))
        if opt["edge_enhance"]:
            img = img + 0.5 * (img - cv2.GaussianBlur(img, (0, 0), 3.0 / mpp))
        if window is None:
            window = np.percentile(img, [0.5, 99.7])
        x = np.clip((img - window[0]) / (window[1] - window[0]), 0, 1) ** 0.9
        top = 255 if opt["bits"] == 8 else 4095
        if opt["photometric"] == "MONOCHROME1":
            x = 1 - x
        frames.append(np.round(x * top).astype(np.uint8 if opt["bits"] == 8 else np.uint16))
    truth = dict(
        schema="indep.truth/1", seed=seed, options=opt, mm_per_px=mpp, frame_time_ms=1000 / opt["fps"],
        corner_order=CORNERS, corner_definition="outer cortex on the corner bisector (rounded corner); "
        "C2 ant_sup/post_sup at the body/dens-base junction",
        corners=[{k: v.round(4).tolist() for k, v in c.items()} for c in corners],
        corner_vertices=[{k: v.round(4).tolist() for k, v in c.items()} for c in vertices],
        angle_deg={lv: [a[lv] for a in angles] for lv in LEVELS[:-1]},
        applied_rotation_deg={lv: rotd[lv].round(5).tolist() for lv in LEVELS},
        applied_translation_mm={lv: trn[lv].round(5).tolist() for lv in LEVELS},
        neutral_alpha_deg={lv: float(a) for lv, a in alpha.items()},
    )  # fmt: skip
    return np.stack(frames), truth, opt


def write_dicom(path: Path, frames: np.ndarray, opt: dict, seed: int) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    byte = frames.dtype == np.uint8
    sop_class = "1.2.840.10008.5.1.4.1.1.7.2" if byte else "1.2.840.10008.5.1.4.1.1.7.3"
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid(entropy_srcs=[f"indep-{seed}-sop"])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[f"indep-{seed}-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[f"indep-{seed}-series"])
    ds.Modality, ds.ConversionType = "RF", "SYN"
    ds.PatientName, ds.PatientID = "INDEP^PHANTOM", f"INDEP{seed:05d}"
    ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20240101", 1, 1
    ds.SeriesDescription = "independent lateral c-spine phantom"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, opt["photometric"]
    ds.NumberOfFrames, ds.Rows, ds.Columns = frames.shape[0], frames.shape[1], frames.shape[2]
    ds.BitsAllocated = 8 if byte else 16
    ds.BitsStored = 8 if byte else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [f"{opt['mm_per_px']:.6g}", f"{opt['mm_per_px']:.6g}"]
    ds.FrameTime = f"{1000 / opt['fps']:.4f}"
    ds.CineRate = int(round(opt["fps"]))
    ds.FrameIncrementPointer = pydicom.tag.Tag(0x0018, 0x1063)
    ds.PixelData = frames.tobytes()
    ds.save_as(path, enforce_file_format=True)


def render_study(out_dir, seed: int, **options) -> dict:
    """Render one study into ``out_dir`` (study.dcm, landmarks.json, truth.json); returns truth."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames, truth, opt = render(seed, **options)
    write_dicom(out / "study.dcm", frames, opt, seed)
    pts = {k: dict(zip(CORNERS, truth["corners"][0][k], strict=True)) for k in BODIES[:-1]}
    (out / "landmarks.json").write_text(
        json.dumps({"schema": "dmx.landmarks/1", "frame": 0, "points": pts}, indent=2) + "\n"
    )
    (out / "truth.json").write_text(json.dumps(truth) + "\n")
    mid = frames[len(frames) // 4]
    cv2.imwrite(
        str(out / "frame_flexion.png"), (mid >> 4).astype(np.uint8) if mid.dtype == np.uint16 else mid
    )
    return truth


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=DEFAULTS["frames"])
    ap.add_argument("--size", type=int, default=DEFAULTS["size"])
    ap.add_argument("--mm-per-px", type=float, default=DEFAULTS["mm_per_px"])
    ap.add_argument("--facing", choices=["right", "left"], default="right")
    ap.add_argument("--photometric", choices=["MONOCHROME2", "MONOCHROME1"], default="MONOCHROME2")
    ap.add_argument(
        "--photons", type=float, default=DEFAULTS["photons"], help="photons per mm^2 in air, per frame"
    )
    ap.add_argument("--bits", type=int, choices=[8, 12], default=8)
    ap.add_argument("--fps", type=float, default=DEFAULTS["fps"])
    ap.add_argument("--no-mandible", dest="mandible", action="store_false")
    ap.add_argument("--no-shoulders", dest="shoulders", action="store_false")
    ap.add_argument("--mandible-low", action="store_true", help="gonion over C2-C3 (over C3 in flexion)")
    ap.add_argument("--heavy-shoulders", action="store_true", help="shoulders up to C6, denser")
    ap.add_argument("--no-edge-enhance", dest="edge_enhance", action="store_false")
    ap.add_argument(
        "--noise-seed", type=int, default=None, help="draw the quantum noise from this seed (same anatomy)"
    )
    a = vars(ap.parse_args(argv))
    out, seed = a.pop("out_dir"), a.pop("seed")
    t = render_study(out, seed, **a)
    rom = {lv: round(max(v) - min(v), 2) for lv, v in t["angle_deg"].items()}
    print(f"wrote {out}: {len(t['corners'])} frames, angle range per level {rom}")


if __name__ == "__main__":
    main()
