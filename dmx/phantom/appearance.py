"""Appearance families: randomised looks of the phantom, grouped so that whole groups can be held out.

The phantom's default look is one appearance. Real lateral radiographs differ from it in many
ways at once (cortical rims, trabecular grain, articular pillars over the posterior bodies, the
airway, the mandible and shoulders, the processor's edge enhancement, collimators, burned-in
text ...). Each :class:`Family` is a coherent group of such variations; a study draws every
parameter of the families it is given from its seed, each family from its own random stream,
so a family looks the same whichever other families it is combined with.

Appearance never moves a body corner: the ground truth of a study depends on its anatomy and
motion only (the ``acquisition`` family changes the image size, pixel size, rotation and flip,
and the truth is computed through exactly that geometry).

>>> from dmx.phantom import make_phantom
>>> ph = make_phantom(seed=3, appearance="cortical,posterior")  # doctest: +SKIP
>>> ph.truth["params"]["appearance"]["families"]  # doctest: +SKIP
['cortical', 'posterior']
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from dmx.errors import ParameterError, UsageError

#: Child index of the study's SeedSequence that seeds the appearance (children 0-5 are the default
#: phantom's streams, left untouched so that the default study stays byte-identical).
APPEARANCE_SEED_CHILD = 6


class Family(StrEnum):
    """A group of appearance variations that is drawn, and held out, as a whole."""

    #: Cortical rim thickness and density, trabecular grain and contrast, rounded corners, deeper
    #: endplate concavity, anterior osteophyte lips.
    CORTICAL = "cortical"
    #: Articular pillars and facet joints overlapping the posterior third of the bodies (with a
    #: double contour when the two sides do not superimpose), pedicles, laminae, spinous processes
    #: of any length.
    POSTERIOR = "posterior"
    #: Airway air column (width, distance from the spine, darkness), pharynx, hyoid, thyroid
    #: cartilage, muscle and fat layers.
    SOFT_TISSUE = "soft_tissue"
    #: Heavier skull base, a mandible lower and further back (over C2-C3 in flexion), shoulders and
    #: clavicles raised over C6-T1.
    OCCLUDERS = "occluders"
    #: Exposure, gamma, unsharp-mask edge enhancement, vignetting, noise families (electronic,
    #: correlated, line noise).
    PROCESSING = "processing"
    #: Image size 256-2048 px, pixel size 0.1-0.5 mm, rotation and flip, inverted polarity (bone
    #: dark), collimator edges, anti-scatter grid lines, burned-in text and a ruler.
    ACQUISITION = "acquisition"


def parse_families(value: str | Iterable[str | Family] | None) -> tuple[Family, ...]:
    """Families named by ``value``, in :class:`Family` order, each once.

    ``value`` is a comma-separated string (``"cortical,posterior"``), an iterable of names or
    :class:`Family` members, ``"all"`` for every family, or ``None``/``""``/``"none"`` for none.

    Raises
    ------
    UsageError
        For an unknown name, with one line listing the valid ones.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = {str(x).strip().lower() for x in items} - {"", "none", "default"}
    if "all" in names:
        return tuple(Family)
    known = {f.value for f in Family}
    bad = sorted(names - known)
    if bad:
        raise ParameterError(
            "appearance",
            f"names an unknown family {bad[0]!r} (expected all or a comma-separated list of "
            f"{', '.join(f.value for f in Family)})",
        )
    return tuple(f for f in Family if f.value in names)


# --------------------------------------------------------------------------- the looks


@dataclass(frozen=True)
class CorticalLook:
    """Bone of the vertebral bodies. Lengths in mm, gains relative to the default phantom."""

    rim_mm: float
    rim_gain: float
    trabecular_gain: float
    grain_mm: float
    texture_contrast: float
    round_mm: float
    extra_sag_mm: float
    #: Anterior osteophyte lip length per body C2..T1 (superior, inferior), 0 for none.
    osteophyte_mm: tuple[tuple[float, float], ...]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> CorticalLook:
        lips = []
        lipped = rng.random() < 0.5  # an older patient: lips on some bodies
        for _ in range(7):
            sup = float(rng.uniform(0.8, 3.0)) if lipped and rng.random() < 0.4 else 0.0
            inf = float(rng.uniform(0.8, 3.0)) if lipped and rng.random() < 0.4 else 0.0
            lips.append((round(sup, 2), round(inf, 2)))
        return cls(
            rim_mm=round(float(rng.uniform(0.5, 2.2)), 2),
            rim_gain=round(float(rng.uniform(0.7, 2.6)), 2),
            trabecular_gain=round(float(rng.uniform(0.5, 1.7)), 2),
            grain_mm=round(float(rng.uniform(0.25, 0.9)), 2),
            texture_contrast=round(float(rng.uniform(0.15, 0.8)), 2),
            round_mm=round(float(rng.uniform(0.0, 2.0)), 2),
            extra_sag_mm=round(float(rng.uniform(0.0, 1.5)), 2),
            osteophyte_mm=tuple(lips),
        )


@dataclass(frozen=True)
class PosteriorLook:
    """Posterior elements. ``overlap_frac``: how far the articular pillars reach over the body
    (share of its depth); ``double_mm``: offset of the far side's pillar (double contour)."""

    overlap_frac: float
    pillar_gain: float
    pillar_rise_mm: float
    facet_gap_mm: float
    facet_slope: float
    double_mm: tuple[float, float]
    pedicle_gain: float
    lamina_gain: float
    spinous_scale: float
    spinous_gain: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> PosteriorLook:
        return cls(
            overlap_frac=round(float(rng.uniform(0.12, 0.4)), 3),
            pillar_gain=round(float(rng.uniform(0.25, 0.7)), 3),
            pillar_rise_mm=round(float(rng.uniform(0.0, 3.0)), 2),
            facet_gap_mm=round(float(rng.uniform(0.6, 1.8)), 2),
            facet_slope=round(float(rng.uniform(0.3, 0.9)), 2),
            double_mm=(round(float(rng.uniform(-3.0, 3.0)), 2), round(float(rng.uniform(-2.0, 2.0)), 2)),
            pedicle_gain=round(float(rng.uniform(0.2, 0.6)), 3),
            lamina_gain=round(float(rng.uniform(0.5, 1.8)), 2),
            spinous_scale=round(float(rng.uniform(0.4, 1.8)), 2),
            spinous_gain=round(float(rng.uniform(0.6, 1.8)), 2),
        )


@dataclass(frozen=True)
class SoftTissueLook:
    """Soft tissue and air of the neck (gains relative to the default phantom)."""

    airway_scale: float
    airway_shift_mm: float
    air_gain: float
    pharynx_gain: float
    muscle_contrast: float
    muscle_period_mm: float
    hyoid_gain: float
    hyoid_mm: tuple[float, float]
    thyroid_gain: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> SoftTissueLook:
        return cls(
            airway_scale=round(float(rng.uniform(0.6, 1.7)), 2),
            airway_shift_mm=round(float(rng.uniform(-2.5, 6.0)), 2),
            air_gain=round(float(rng.uniform(1.0, 2.6)), 2),
            pharynx_gain=round(float(rng.uniform(0.8, 2.0)), 2),
            muscle_contrast=round(float(rng.uniform(0.03, 0.14)), 3),
            muscle_period_mm=round(float(rng.uniform(5.0, 14.0)), 2),
            hyoid_gain=round(float(rng.uniform(0.2, 0.6)), 3),
            hyoid_mm=(round(float(rng.uniform(24.0, 36.0)), 2), round(float(rng.uniform(-14.0, -4.0)), 2)),
            thyroid_gain=round(float(rng.uniform(0.03, 0.3)), 3),
        )


@dataclass(frozen=True)
class OccluderLook:
    """Skull base, mandible and shoulders. Shifts in mm of the structure's own frame (u anterior,
    v superior)."""

    skull_gain: float
    mandible_gain: float
    mandible_shift_mm: tuple[float, float]
    shoulder_gain: float
    shoulder_shift_mm: tuple[float, float]

    @classmethod
    def draw(cls, rng: np.random.Generator) -> OccluderLook:
        return cls(
            skull_gain=round(float(rng.uniform(1.0, 1.8)), 2),
            mandible_gain=round(float(rng.uniform(1.2, 2.5)), 2),
            mandible_shift_mm=(
                round(float(rng.uniform(-14.0, -3.0)), 2),
                round(float(rng.uniform(-16.0, -4.0)), 2),
            ),
            shoulder_gain=round(float(rng.uniform(1.0, 2.0)), 2),
            shoulder_shift_mm=(
                round(float(rng.uniform(-10.0, 10.0)), 2),
                round(float(rng.uniform(6.0, 30.0)), 2),
            ),
        )


#: Noise families of :class:`ProcessingLook` (added to the log signal on top of quantum noise).
NOISE_KINDS: tuple[str, ...] = ("quantum", "electronic", "correlated", "lines")


@dataclass(frozen=True)
class ProcessingLook:
    """Exposure and the image processor (unsharp mask sigma in mm at the patient)."""

    exposure: float
    gamma: float
    unsharp_sigma_mm: float
    unsharp_amount: float
    vignetting: float
    noise: str
    noise_sd: float
    window_low_pct: float
    window_high_pct: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> ProcessingLook:
        return cls(
            exposure=round(float(np.exp(rng.uniform(np.log(0.2), np.log(4.0)))), 3),
            gamma=round(float(np.exp(rng.uniform(np.log(0.55), np.log(1.8)))), 3),
            unsharp_sigma_mm=round(float(rng.uniform(0.8, 6.0)), 2),
            unsharp_amount=round(float(rng.uniform(0.0, 2.0)), 2),
            vignetting=round(float(rng.uniform(0.0, 0.55)), 3),
            noise=str(rng.choice(NOISE_KINDS)),
            noise_sd=round(float(rng.uniform(0.005, 0.04)), 4),
            window_low_pct=round(float(rng.uniform(0.0, 8.0)), 2),
            window_high_pct=round(float(rng.uniform(97.0, 100.0)), 2),
        )


#: The acquisition look's anti-scatter grid lines: period (px) and strength (log attenuation) are drawn
#: uniformly from these ranges.
GRID_PERIOD_PX = (2.2, 6.0)
GRID_AMPLITUDE = (0.01, 0.06)


@dataclass(frozen=True)
class AcquisitionLook:
    """The acquisition and what is burned into the image.

    ``collimator`` is the covered share of the (top, bottom, left, right) edges; ``grid_period_px``
    0 means no grid lines; ``inverted`` displays bone dark.
    """

    rows: int
    cols: int
    mm_per_px: float
    rotation_deg: float
    flip: bool
    inverted: bool
    collimator: tuple[float, float, float, float]
    collimator_white: bool
    grid_period_px: float
    grid_amplitude: float
    grid_vertical: bool
    text: bool
    ruler: bool

    @classmethod
    def plain(
        cls, *, rows: int, cols: int, mm_per_px: float, rotation_deg: float = 0.0, flip: bool = False
    ) -> AcquisitionLook:
        """An image size, pixel size and orientation with nothing else: no collimator, grid, text or ruler."""
        return cls(
            rows=rows,
            cols=cols,
            mm_per_px=mm_per_px,
            rotation_deg=rotation_deg,
            flip=flip,
            inverted=False,
            collimator=(0.0, 0.0, 0.0, 0.0),
            collimator_white=True,
            grid_period_px=0.0,
            grid_amplitude=0.0,
            grid_vertical=True,
            text=False,
            ruler=False,
        )

    @classmethod
    def draw(cls, rng: np.random.Generator, *, max_size_px: int = 2048) -> AcquisitionLook:
        lo_size = min(256, max_size_px)
        mpp = float(np.exp(rng.uniform(np.log(0.1), np.log(0.5))))
        fov_mm = float(rng.uniform(115.0, 260.0))
        side = int(np.clip(round(fov_mm / mpp), lo_size, max_size_px))
        mpp = max(mpp, 115.0 / side)  # the column must fit
        aspect = float(rng.uniform(0.75, 1.33)) if rng.random() < 0.5 else 1.0
        rows = side
        cols = int(np.clip(round(side * aspect), lo_size, max_size_px))
        if rng.random() < 0.15:
            rotation = float(rng.choice([-90.0, 90.0])) + float(rng.uniform(-5, 5))
        else:
            rotation = float(rng.uniform(-15.0, 15.0))
        coll = tuple(round(float(rng.uniform(0.0, 0.16)), 3) if rng.random() < 0.6 else 0.0 for _ in range(4))
        grid = rng.random() < 0.5
        return cls(
            rows=rows,
            cols=cols,
            mm_per_px=round(mpp, 4),
            rotation_deg=round(rotation, 2),
            flip=bool(rng.random() < 0.5),
            inverted=bool(rng.random() < 0.3),
            collimator=coll,  # type: ignore[arg-type]
            collimator_white=bool(rng.random() < 0.7),
            grid_period_px=round(float(rng.uniform(*GRID_PERIOD_PX)), 3) if grid else 0.0,
            grid_amplitude=round(float(rng.uniform(*GRID_AMPLITUDE)), 4),
            grid_vertical=bool(rng.random() < 0.5),
            text=bool(rng.random() < 0.8),
            ruler=bool(rng.random() < 0.5),
        )


@dataclass(frozen=True)
class Appearance:
    """One study's drawn appearance: the look of each family it uses (``None`` for the others)."""

    families: tuple[Family, ...] = ()
    cortical: CorticalLook | None = None
    posterior: PosteriorLook | None = None
    soft_tissue: SoftTissueLook | None = None
    occluders: OccluderLook | None = None
    processing: ProcessingLook | None = None
    acquisition: AcquisitionLook | None = None

    def __post_init__(self) -> None:
        present = {f for f in Family if getattr(self, f.value) is not None}
        if present != set(self.families):
            raise UsageError(
                f"Appearance: families {sorted(f.value for f in self.families)} do not match the looks "
                f"given ({sorted(f.value for f in present)})"
            )
        object.__setattr__(self, "families", tuple(f for f in Family if f in present))

    def to_json(self) -> dict[str, Any]:
        """Families and drawn parameters as plain JSON (written to ``truth.json`` ``params``)."""
        out: dict[str, Any] = {"families": [f.value for f in self.families]}
        for f in self.families:
            out[f.value] = asdict(getattr(self, f.value))
        return json.loads(json.dumps(out))  # tuples as lists, as read back from truth.json


def draw_appearance(
    families: str | Iterable[str | Family] | None, *, seed: int, max_size_px: int = 2048
) -> Appearance:
    """Draw the look of every family in ``families`` from ``seed`` (deterministic).

    Each family has its own random stream (child of the study seed's appearance stream), so
    adding a family to a study never changes how the others look. ``max_size_px`` caps the
    image size the ``acquisition`` family draws (e.g. 768 for quick benchmarks).
    """
    fams = parse_families(families)
    root = np.random.SeedSequence(int(seed)).spawn(APPEARANCE_SEED_CHILD + 1)[APPEARANCE_SEED_CHILD]
    streams = dict(zip(Family, root.spawn(len(Family)), strict=True))
    looks: dict[str, Any] = {}
    for f in fams:
        rng = np.random.default_rng(streams[f])
        if f is Family.ACQUISITION:
            looks[f.value] = AcquisitionLook.draw(rng, max_size_px=max_size_px)
        else:
            looks[f.value] = _LOOKS[f].draw(rng)
    return Appearance(families=fams, **looks)


_LOOKS = {
    Family.CORTICAL: CorticalLook,
    Family.POSTERIOR: PosteriorLook,
    Family.SOFT_TISSUE: SoftTissueLook,
    Family.OCCLUDERS: OccluderLook,
    Family.PROCESSING: ProcessingLook,
}


# --------------------------------------------------------------------------- image stages


def frame_rng(seed: int) -> np.random.Generator:
    """Random stream of the per-frame appearance noise of a study (independent of the default's)."""
    root = np.random.SeedSequence(int(seed)).spawn(APPEARANCE_SEED_CHILD + 1)[APPEARANCE_SEED_CHILD]
    return np.random.default_rng(root.spawn(len(Family) + 1)[len(Family)])


def gain_map(shape: tuple[int, int], look: ProcessingLook | None) -> np.ndarray | float:
    """Relative exposure per pixel: the processing family's exposure and vignetting (1 without)."""
    if look is None:
        return 1.0
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    r2 = ((x - (cols - 1) / 2) / (cols / 2)) ** 2 + ((y - (rows - 1) / 2) / (rows / 2)) ** 2
    return look.exposure * np.clip(1.0 - look.vignetting * r2 / 2.0, 0.05, 1.0)


def signal_noise(
    signal: np.ndarray, look: ProcessingLook | None, rng: np.random.Generator, *, mm_per_px: float
) -> np.ndarray:
    """Add the processing family's noise kind to one frame's log signal (returns a new array)."""
    if look is None or look.noise == "quantum":
        return signal
    shape = signal.shape
    if look.noise == "electronic":
        n = rng.standard_normal(shape)
    elif look.noise == "correlated":
        n = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), max(1.0, 1.2 / mm_per_px))
        n = n / max(float(n.std()), 1e-9)
    else:  # lines: per-row offsets (readout) plus a little white noise
        rows = rng.standard_normal((shape[0], 1))
        n = 0.4 * np.repeat(rows, shape[1], axis=1) + 0.5 * rng.standard_normal(shape)
    return (signal + 1.5 * look.noise_sd * n).astype(np.float32)


def grid_pattern(shape: tuple[int, int], look: AcquisitionLook | None) -> np.ndarray | float:
    """Anti-scatter grid lines as extra log attenuation (0 without)."""
    if look is None or look.grid_period_px <= 0:
        return 0.0
    rows, cols = shape
    axis = np.arange(cols if look.grid_vertical else rows, dtype=np.float64)
    lines = look.grid_amplitude * (0.5 + 0.5 * np.cos(2 * np.pi * axis / look.grid_period_px))
    return (lines[None, :] if look.grid_vertical else lines[:, None]).astype(np.float32)


@dataclass(frozen=True)
class Overlay:
    """What the acquisition burns into every frame: collimator mask and value, text/ruler mask."""

    covered: np.ndarray
    covered_value: float
    burned: np.ndarray


def overlay(shape: tuple[int, int], look: AcquisitionLook | None, *, seed: int) -> Overlay | None:
    """Static collimator blades and burned-in text/ruler of a study (``None`` without acquisition)."""
    if look is None:
        return None
    rows, cols = shape
    rng = np.random.default_rng([int(seed), 6, 99])
    top, bottom, left, right = look.collimator
    cover = np.zeros(shape, np.float32)
    cover[: int(top * rows), :] = 1
    cover[rows - int(bottom * rows) :, :] = 1
    cover[:, : int(left * cols)] = 1
    cover[:, cols - int(right * cols) :] = 1
    if cover.any():  # slightly soft blade edges (penumbra)
        cover = cv2.GaussianBlur(cover, (0, 0), 1.5)
    burned = np.zeros(shape, np.uint8)
    scale = max(rows, cols) / 900.0
    if look.text:
        lines = [
            "DMX C-SPINE LAT",
            f"{int(rng.integers(60, 90))} kV  {rng.uniform(0.5, 3.0):.1f} mA",
            f"{int(rng.choice([7, 10, 15, 30]))} fps  SID 100",
        ]
        for i, text in enumerate(lines):
            org = (int(10 * scale) + 2, int((30 + 28 * i) * scale) + 10)
            cv2.putText(burned, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, 255, max(1, int(2 * scale)))
        marker = "L" if rng.random() < 0.5 else "R"
        cv2.putText(
            burned,
            marker,
            (cols - int(60 * scale) - 4, rows - int(30 * scale) - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.6 * scale,
            255,
            max(1, int(3 * scale)),
        )
    if look.ruler:
        step = 10.0 / look.mm_per_px  # a tick every cm
        x0 = int(rows * 0.02) + 4
        y = np.arange(rows * 0.2, rows * 0.8, step)
        cv2.line(burned, (x0, int(y[0])), (x0, int(y[-1])), 255, max(1, int(scale)))
        for k, yy in enumerate(y):
            length = int((14 if k % 5 == 0 else 7) * scale) + 2
            cv2.line(burned, (x0, int(yy)), (x0 + length, int(yy)), 255, max(1, int(scale)))
    return Overlay(cover, 1.0 if look.collimator_white else 0.0, burned > 0)


def finish(
    value: np.ndarray,
    *,
    processing: ProcessingLook | None,
    acquisition: AcquisitionLook | None,
    burn: Overlay | None,
    mm_per_px: float,
) -> np.ndarray:
    """Display stages on a windowed frame ``value`` in 0..1: collimator, gamma, unsharp mask,
    inversion and burned-in marks, in the order a fluoroscopy chain applies them."""
    v = value.astype(np.float32)
    if burn is not None and burn.covered.any():
        v = v * (1 - burn.covered) + burn.covered_value * burn.covered
    if processing is not None:
        v = np.clip(v, 0.0, 1.0) ** processing.gamma
        if processing.unsharp_amount > 0:
            sigma = max(processing.unsharp_sigma_mm / mm_per_px, 0.5)
            blur = cv2.GaussianBlur(v, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
            v = v + processing.unsharp_amount * (v - blur)
    v = np.clip(v, 0.0, 1.0)
    if acquisition is not None and acquisition.inverted:
        v = 1.0 - v
    if burn is not None:
        v = np.where(burn.burned, 1.0, v)
    return v
