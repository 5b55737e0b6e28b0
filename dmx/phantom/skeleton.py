"""Geometry of the phantom's cervical column: body sizes, neutral curve, motion and rigid poses.

Every rigid structure has a local frame in millimetres with ``u`` pointing
anterior and ``v`` superior (right-handed, so a positive rotation turns the
anterior direction towards superior: extension). A pose is a 3 x 3
homogeneous matrix mapping local millimetres to world millimetres (same axes
as the local frame of the thorax). Nothing here knows about pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import numpy as np

from dmx.anatomy import Vertebra
from dmx.phantom.options import Curve

#: Rigid bodies of the column that carry four corners, top to bottom.
CORNER_BODIES: tuple[Vertebra, ...] = (
    Vertebra.C2,
    Vertebra.C3,
    Vertebra.C4,
    Vertebra.C5,
    Vertebra.C6,
    Vertebra.C7,
    Vertebra.T1,
)

#: Motion segments the phantom moves, top to bottom ("C0" is the occiput).
JOINTS: tuple[str, ...] = ("C0-C1", "C1-C2", "C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7", "C7-T1")

#: Default flexion-to-extension range of motion per joint in degrees (physiologic;
#: C2-C7 sums to 57 degrees).
DEFAULT_ROM_DEG: dict[str, float] = {
    "C0-C1": 16.0,
    "C1-C2": 10.0,
    "C2-C3": 8.0,
    "C3-C4": 11.0,
    "C4-C5": 14.0,
    "C5-C6": 15.0,
    "C6-C7": 9.0,
    "C7-T1": 5.0,
}

#: Neutral rotation of each disc C2-C3 ... C7-T1 in degrees (positive = lordotic), per curve.
#: (Body wedging cancels out of the C2-C7 Cobb angle.) S curves need strong local angles for the
#: Ishihara distances to pass the 2 mm tolerance on both sides.
NEUTRAL_DISC_DEG: dict[Curve, tuple[float, float, float, float, float, float]] = {
    Curve.LORDOTIC: (3.5, 4.0, 4.5, 4.5, 4.0, 2.0),
    Curve.STRAIGHT: (0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    Curve.KYPHOTIC: (-3.5, -4.0, -4.0, -4.0, -3.5, 0.0),
    Curve.S_UPPER_KYPHOTIC: (-14.0, -14.0, -6.0, 10.0, 14.0, 2.0),
    Curve.S_LOWER_KYPHOTIC: (10.0, 12.0, 6.0, -12.0, -12.0, 0.0),
}
#: The curve names, in :class:`Curve` order.
CURVES: tuple[str, ...] = tuple(c.value for c in Curve)


@dataclass(frozen=True)
class BodySize:
    """Size of a vertebral body in millimetres (lateral view).

    ``depth_mm`` is antero-posterior, ``height_post_mm``/``height_ant_mm`` the
    posterior and anterior wall heights, ``width_mm`` the transverse width
    (the X-ray path length through the body), ``spinous_mm`` the length of
    the spinous process.
    """

    depth_mm: float
    height_post_mm: float
    height_ant_mm: float
    width_mm: float
    spinous_mm: float


BODY_SIZES: dict[Vertebra, BodySize] = {
    Vertebra.C2: BodySize(16.0, 15.0, 14.5, 18.0, 20.0),
    Vertebra.C3: BodySize(15.0, 13.5, 13.2, 18.0, 13.0),
    Vertebra.C4: BodySize(15.5, 13.5, 13.2, 19.0, 13.0),
    Vertebra.C5: BodySize(16.0, 13.8, 13.5, 20.0, 15.0),
    Vertebra.C6: BodySize(16.5, 14.0, 13.7, 22.0, 19.0),
    Vertebra.C7: BodySize(17.0, 14.5, 14.2, 24.0, 27.0),
    Vertebra.T1: BodySize(18.0, 16.0, 15.6, 26.0, 28.0),
}

#: Disc height at mid-depth in mm, for the disc below each body (C2 -> C2-C3 ...).
DISC_MM: dict[Vertebra, float] = {
    Vertebra.C2: 4.0,
    Vertebra.C3: 4.5,
    Vertebra.C4: 5.0,
    Vertebra.C5: 5.5,
    Vertebra.C6: 5.5,
    Vertebra.C7: 5.0,
}

#: Height above the C2 body centre (C2 frame, mm) of the C1 anterior arch's mid-height.
C1_ARCH_V_MM = 18.0

#: Default outline shape (mm): inward waist of the anterior and posterior walls at mid-height and
#: concavity of the endplates at mid-depth (C2's endplates are flat).
WAIST_ANT_MM, WAIST_POST_MM, SAG_MM = 0.6, 0.3, 0.9


def _default_sag() -> dict[Vertebra, float]:
    return {v: (0.0 if v is Vertebra.C2 else SAG_MM) for v in BODY_SIZES}


@dataclass(frozen=True)
class Anatomy:
    """One patient's vertebral anatomy: body sizes, disc heights and outline shape.

    The default is the phantom's standard anatomy; :func:`draw_anatomy`
    varies it per patient. The mappings are read-only copies. Every geometric function of this module takes it
    keyword-only, so two phantoms with different anatomy never share state.

    Attributes
    ----------
    sizes : Mapping
        :class:`BodySize` per body of :data:`CORNER_BODIES`.
    disc_mm : Mapping
        Disc height at mid-depth below each body C2..C7 (mm).
    waist_ant_mm, waist_post_mm, sag_mm : Mapping
        Per body: inward waist of the anterior/posterior wall at mid-height and
        concavity of both endplates at mid-depth (mm; C2's endplates stay flat).
    scale : float
        Patient size factor; scales the dens of C2 and the height of the C1 arch.
    """

    sizes: Mapping[Vertebra, BodySize] = field(default_factory=lambda: dict(BODY_SIZES))
    disc_mm: Mapping[Vertebra, float] = field(default_factory=lambda: dict(DISC_MM))
    waist_ant_mm: Mapping[Vertebra, float] = field(
        default_factory=lambda: dict.fromkeys(BODY_SIZES, WAIST_ANT_MM)
    )
    waist_post_mm: Mapping[Vertebra, float] = field(
        default_factory=lambda: dict.fromkeys(BODY_SIZES, WAIST_POST_MM)
    )
    sag_mm: Mapping[Vertebra, float] = field(default_factory=_default_sag)
    scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("sizes", "disc_mm", "waist_ant_mm", "waist_post_mm", "sag_mm"):  # read-only copies
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def __reduce__(self) -> tuple:  # picklable and deep-copyable despite the read-only mappings
        maps = (self.sizes, self.disc_mm, self.waist_ant_mm, self.waist_post_mm, self.sag_mm)
        return (Anatomy, (*(dict(m) for m in maps), self.scale))

    def to_json(self) -> dict:
        """The anatomy as plain JSON (mm), keyed by vertebra name."""
        return {
            "scale": self.scale,
            "bodies": {
                v.value: {
                    "depth_mm": b.depth_mm,
                    "height_post_mm": b.height_post_mm,
                    "height_ant_mm": b.height_ant_mm,
                    "width_mm": b.width_mm,
                    "spinous_mm": b.spinous_mm,
                    "waist_ant_mm": self.waist_ant_mm[v],
                    "waist_post_mm": self.waist_post_mm[v],
                    "endplate_sag_mm": self.sag_mm[v],
                }
                for v, b in self.sizes.items()
            },
            "disc_mm": {v.value: d for v, d in self.disc_mm.items()},
        }


#: The phantom's standard anatomy (what ``anatomy_sd=0`` gives).
DEFAULT_ANATOMY = Anatomy()


def draw_anatomy(sd: float, *, rng: np.random.Generator) -> Anatomy:
    """A random patient's anatomy around :data:`DEFAULT_ANATOMY`.

    Parameters
    ----------
    sd : float
        Relative standard deviation of the patient's overall size factor
        (every length of every body and disc). Each body's depth, posterior
        and anterior heights get their own factor of SD ``sd / 2`` (so aspect
        and wedging vary), each disc one of SD ``sd``, and each body's wall
        waist and endplate concavity one of SD ``3 * sd`` (shape). Every
        factor is clipped to 2.5 SD.
    rng : numpy.random.Generator
        Source of the draw (the same generator state gives the same anatomy).

    Returns
    -------
    Anatomy
        ``DEFAULT_ANATOMY`` when ``sd`` is 0.
    """
    if sd <= 0:
        return DEFAULT_ANATOMY

    def factor(rel_sd: float) -> float:
        return float(1.0 + rel_sd * np.clip(rng.standard_normal(), -2.5, 2.5))

    base = DEFAULT_ANATOMY
    scale = factor(sd)
    sizes, disc, w_ant, w_post, sag = {}, {}, {}, {}, {}
    for v in CORNER_BODIES:
        b = base.sizes[v]
        sizes[v] = replace(
            b,
            depth_mm=b.depth_mm * scale * factor(sd / 2),
            height_post_mm=b.height_post_mm * scale * factor(sd / 2),
            height_ant_mm=b.height_ant_mm * scale * factor(sd / 2),
            width_mm=b.width_mm * scale,
            spinous_mm=b.spinous_mm * scale,
        )
        shape = max(factor(3 * sd), 0.0)
        w_ant[v] = base.waist_ant_mm[v] * scale * shape
        w_post[v] = base.waist_post_mm[v] * scale * shape
        sag[v] = base.sag_mm[v] * scale * max(factor(3 * sd), 0.0)
        if v in base.disc_mm:
            disc[v] = base.disc_mm[v] * scale * factor(sd)
    return Anatomy(sizes, disc, w_ant, w_post, sag, scale)


# --------------------------------------------------------------------------- rigid transforms


def rotation(angle_deg: float) -> np.ndarray:
    """3 x 3 rotation by ``angle_deg`` (positive: anterior towards superior)."""
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def translation(du_mm: float, dv_mm: float) -> np.ndarray:
    """3 x 3 translation."""
    return np.array([[1.0, 0.0, du_mm], [0.0, 1.0, dv_mm], [0.0, 0.0, 1.0]])


def rotation_about(centre_mm: np.ndarray, angle_deg: float) -> np.ndarray:
    """3 x 3 rotation by ``angle_deg`` about the point ``centre_mm``."""
    cu, cv = float(centre_mm[0]), float(centre_mm[1])
    return translation(cu, cv) @ rotation(angle_deg) @ translation(-cu, -cv)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3 x 3 (or 2 x 3) affine to ``(..., 2)`` points."""
    p = np.asarray(points, dtype=float)
    return p @ matrix[:2, :2].T + matrix[:2, 2]


# --------------------------------------------------------------------------- body outline


def body_corners_mm(vertebra: Vertebra, *, anatomy: Anatomy = DEFAULT_ANATOMY) -> np.ndarray:
    """The four corners (CORNERS order) of a body in its local frame, in mm.

    For C2 the superior corners are where the body meets the base of the dens.
    """
    b = anatomy.sizes[vertebra]
    d, hp, ha = b.depth_mm / 2, b.height_post_mm / 2, b.height_ant_mm / 2
    return np.array([[d, ha], [-d, hp], [-d, -hp], [d, -ha]])


def dens_geometry_mm(*, anatomy: Anatomy = DEFAULT_ANATOMY) -> dict[str, float]:
    """The dens of C2 in the C2 frame: base and top of its anterior/posterior walls (mm)."""
    b = anatomy.sizes[Vertebra.C2]
    k = anatomy.scale
    top = b.height_ant_mm / 2
    return {
        "base_v": top - 3.0 * k,
        "top_v": top + 12.5 * k,
        "ant_base_u": b.depth_mm / 2 - 3.5 * k,
        "ant_top_u": b.depth_mm / 2 - 5.0 * k,
        "post_base_u": -b.depth_mm / 2 + 1.8 * k,
        "post_top_u": -b.depth_mm / 2 + 3.2 * k,
        "tip_v": top + 16.5 * k,
    }


def c1_arch_v_mm(*, anatomy: Anatomy = DEFAULT_ANATOMY) -> float:
    """Height of the C1 anterior arch's mid-height above the C2 body centre (C2 frame, mm)."""
    return C1_ARCH_V_MM * anatomy.scale


def dens_ant_mm(height_v_mm: float | None = None, *, anatomy: Anatomy = DEFAULT_ANATOMY) -> np.ndarray:
    """Point of the dens's anterior cortex at height ``height_v_mm`` (C2 frame; default: the C1 arch)."""
    if height_v_mm is None:
        height_v_mm = c1_arch_v_mm(anatomy=anatomy)
    g = dens_geometry_mm(anatomy=anatomy)
    t = (height_v_mm - g["base_v"]) / (g["top_v"] - g["base_v"])
    return np.array([g["ant_base_u"] + t * (g["ant_top_u"] - g["ant_base_u"]), height_v_mm])


def arch_post_mm(adi_mm: float, *, anatomy: Anatomy = DEFAULT_ANATOMY) -> np.ndarray:
    """Posterior cortex of the C1 anterior arch at mid-height, in the C1 (= neutral C2) frame."""
    return dens_ant_mm(anatomy=anatomy) + np.array([adi_mm, 0.0])


# --------------------------------------------------------------------------- motion


@dataclass(frozen=True)
class Motion:
    """How the column moves: per-joint range of motion and the shared time course.

    Attributes
    ----------
    rom_deg : dict
        Flexion-to-extension range per joint (keys of :data:`JOINTS`).
    flexion_fraction : float
        Share of each joint's range spent in flexion (the rest in extension).
    unstable_mm : dict
        Extra sagittal translation per level (``"C4-C5": 4.0``): the upper
        vertebra slides anteriorly by half in full flexion and posteriorly by
        half in full extension, along the lower vertebra's superior endplate.
    key_frames : tuple of int
        Frames at which the motion profile passes its key values.
    key_values : tuple of float
        Profile values at the key frames (-1 full flexion, 0 neutral, +1 full extension).
    """

    rom_deg: dict[str, float]
    flexion_fraction: float
    unstable_mm: dict[str, float]
    key_frames: tuple[int, ...]
    key_values: tuple[float, ...]

    def profile(self, frame: float) -> float:
        """Motion profile at ``frame``: -1 full flexion, 0 neutral, +1 full extension (cosine eased)."""
        k, val = self.key_frames, self.key_values
        if frame <= k[0]:
            return float(val[0])
        for i in range(len(k) - 1):
            if frame <= k[i + 1]:
                span = k[i + 1] - k[i]
                s = 0.0 if span == 0 else (frame - k[i]) / span
                w = 0.5 - 0.5 * np.cos(np.pi * s)
                return float(val[i] + (val[i + 1] - val[i]) * w)
        return float(val[-1])

    def joint_angle_deg(self, joint: str, frame: float) -> float:
        """Rotation of the joint away from neutral (positive = extension) at ``frame``."""
        m = self.profile(frame)
        rom = self.rom_deg.get(joint, 0.0)
        if m < 0:
            return m * rom * self.flexion_fraction
        return m * rom * (1.0 - self.flexion_fraction)

    def slide_mm(self, level: str, frame: float) -> float:
        """Extra anterior slide of the upper vertebra (mm; negative = posterior) at ``frame``."""
        return -0.5 * self.unstable_mm.get(level, 0.0) * self.profile(frame)


def key_frames_for(frames: int, *, return_to_neutral: bool) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Key frames and values of the neutral -> flexion -> neutral -> extension (-> neutral) course."""
    last = frames - 1
    if return_to_neutral:
        fr = (0.0, 0.25, 0.5, 0.75, 1.0)
        values = (0.0, -1.0, 0.0, 1.0, 0.0)
    else:
        fr = (0.0, 1 / 3, 2 / 3, 1.0)
        values = (0.0, -1.0, 0.0, 1.0)
    return tuple(int(round(f * last)) for f in fr), values


# --------------------------------------------------------------------------- the chain


def _mid_height_mm(v: Vertebra, anatomy: Anatomy) -> float:
    b = anatomy.sizes[v]
    return (b.height_post_mm + b.height_ant_mm) / 4


def neutral_joint(
    lower: Vertebra, upper: Vertebra, disc_angle_deg: float, *, anatomy: Anatomy = DEFAULT_ANATOMY
) -> np.ndarray:
    """Pose of ``upper`` in the frame of ``lower`` at neutral (disc wedged symmetrically)."""
    half = disc_angle_deg / 2
    return (
        translation(0.0, _mid_height_mm(lower, anatomy))
        @ rotation(half)
        @ translation(0.0, anatomy.disc_mm[upper])
        @ rotation(half)
        @ translation(0.0, _mid_height_mm(upper, anatomy))
    )


def rotation_centre_mm(lower: Vertebra, *, anatomy: Anatomy = DEFAULT_ANATOMY) -> np.ndarray:
    """Centre of rotation of the segment above ``lower``: upper part of the lower body, slightly posterior."""
    b = anatomy.sizes[lower]
    return np.array([-0.1 * b.depth_mm, 0.2 * b.height_post_mm])


def superior_direction_mm(lower: Vertebra, *, anatomy: Anatomy = DEFAULT_ANATOMY) -> np.ndarray:
    """Unit vector of the superior endplate (post_sup -> ant_sup) in the lower body's frame."""
    c = body_corners_mm(lower, anatomy=anatomy)
    d = c[0] - c[1]
    return d / np.hypot(*d)


SKULL_PIVOT_MM = np.array([-4.0, 27.0])  # occipital condyles, C1 frame


def chain_poses(
    *,
    curve: Curve | str,
    motion: Motion,
    frame: float,
    adi_mm: float,
    base: np.ndarray,
    anatomy: Anatomy = DEFAULT_ANATOMY,
) -> dict[str, np.ndarray]:
    """Pose (local mm -> world mm) of every rigid structure at ``frame``.

    Keys: ``"base"`` (thorax and shoulders), ``"T1"`` ... ``"C2"``, ``"C1"``, ``"skull"``.
    """
    poses: dict[str, np.ndarray] = {"base": base}
    # T1 takes a little of the motion (upper thoracic spine) about its lower part.
    t1_tilt = motion.joint_angle_deg("C7-T1", frame) * 0.4
    poses["T1"] = base @ rotation_about(np.array([0.0, -20.0]), t1_tilt)
    discs = NEUTRAL_DISC_DEG[curve]
    chain = list(reversed(CORNER_BODIES))  # T1, C7, ..., C2
    for i in range(1, len(chain)):
        lower, upper = chain[i - 1], chain[i]
        level = f"{upper.value}-{lower.value}"
        j = neutral_joint(lower, upper, discs[len(chain) - 1 - i], anatomy=anatomy)
        centre = rotation_centre_mm(lower, anatomy=anatomy)
        move = rotation_about(centre, motion.joint_angle_deg(level, frame))
        n = superior_direction_mm(lower, anatomy=anatomy) * motion.slide_mm(level, frame)
        poses[upper.value] = poses[lower.value] @ translation(n[0], n[1]) @ move @ j
    # C1 turns on C2 about the atlanto-dental joint, so the interval stays nearly constant.
    pivot = 0.5 * (dens_ant_mm(anatomy=anatomy) + arch_post_mm(adi_mm, anatomy=anatomy))
    poses["C1"] = poses["C2"] @ rotation_about(pivot, motion.joint_angle_deg("C1-C2", frame))
    poses["skull"] = poses["C1"] @ rotation_about(SKULL_PIVOT_MM, motion.joint_angle_deg("C0-C1", frame))
    return poses


def placement(
    *, curve: Curve | str, adi_mm: float, tilt_deg: float = 12.0, anatomy: Anatomy = DEFAULT_ANATOMY
) -> np.ndarray:
    """Pose of the thorax that puts the neutral column upright (C7->C2 inclined ``tilt_deg`` forward).

    The midpoint of the C2 and C7 body centres lands at the world origin.
    """
    still = Motion({}, 0.5, {}, (0,), (0.0,))
    p = chain_poses(curve=curve, motion=still, frame=0, adi_mm=adi_mm, base=np.eye(3), anatomy=anatomy)
    c2, c7 = p["C2"][:2, 2], p["C7"][:2, 2]
    d = c2 - c7
    current = np.degrees(np.arctan2(d[1], d[0]))  # 90 = straight up
    target = 90.0 - tilt_deg  # leaning anterior (+u)
    r = rotation(target - current)
    mid = apply(r, 0.5 * (c2 + c7))
    return translation(-mid[0], -mid[1]) @ r


def sway(frames: int, *, rng: np.random.Generator, sway_mm: float, sway_deg: float) -> np.ndarray:
    """Smooth whole-body drift: ``(frames, 3)`` of (du_mm, dv_mm, angle_deg), zero mean-free start."""
    t = np.arange(frames) / max(frames - 1, 1)
    out = np.zeros((frames, 3))
    for k, amp in enumerate((sway_mm, sway_mm * 0.5, sway_deg)):
        f = rng.uniform(0.5, 1.5, size=3)
        ph = rng.uniform(0, 2 * np.pi, size=3)
        w = rng.uniform(0.5, 1.0, size=3)
        s = sum(w[i] * (np.sin(2 * np.pi * f[i] * t + ph[i]) - np.sin(ph[i])) for i in range(3))
        peak = np.max(np.abs(s)) if np.max(np.abs(s)) > 0 else 1.0
        out[:, k] = amp * s / peak
    return out
