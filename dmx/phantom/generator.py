"""make_phantom / write_phantom: a synthetic lateral cervical DMX study with exact ground truth."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydicom.dataset import Dataset

from dmx.anatomy import BODIES, CORNERS, Level, UpperCervicalPoint, Vertebra
from dmx.errors import ParameterError, UsageError
from dmx.landmarks import Landmarks, write_landmarks
from dmx.phantom import appearance as app
from dmx.phantom import dicom as dcm
from dmx.phantom import imaging, shapes, truth
from dmx.phantom import skeleton as sk
from dmx.phantom.options import Calibration, Curve, Facing, FrameTiming, Photometric, TransferSyntax

SCHEMA = "dmx.phantom-truth/1"
#: Field of view along the shorter image side used when ``mm_per_px`` is not given (mm).
DEFAULT_FOV_MM = 153.6
#: Largest relative SD of per-patient anatomical variation (``anatomy_sd``).
MAX_ANATOMY_SD = 0.2
#: With the ``acquisition`` appearance family, pixels finer than this (mm) are rendered from source
#: maps at the output pixel size (``supersample`` 1).
ACQUISITION_SUPERSAMPLE_BELOW_MM = 0.2
#: Levels that may be made unstable.
UNSTABLE_LEVELS = tuple(level.value for level in Level) + ("C7-T1",)


@dataclass(frozen=True)
class PhantomModel:
    """What is needed to re-render any structure of a phantom (used by tests and benchmarks).

    ``local_to_image[name]`` is ``(T, 3, 3)``: local mm of the pose ``name`` to final image pixels;
    ``anatomy`` is the patient's body sizes and outline shape.
    """

    structures: tuple[shapes.Structure, ...]
    local_to_image: dict[str, np.ndarray]
    shape: tuple[int, int]
    ds_mm: float
    anatomy: sk.Anatomy = sk.DEFAULT_ANATOMY


@dataclass(frozen=True)
class Phantom:
    """A generated study.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(T, rows, cols)`` pixel values as stored in the DICOM (uint8 or
        uint16; MONOCHROME1 stored inverted), before any lossy encoding.
    truth : dict
        The ``dmx.phantom-truth/1`` document (see :func:`make_phantom`).
    dataset : pydicom.dataset.Dataset
        The multi-frame RF dataset, pixel data encoded in the requested transfer syntax.
    landmarks : Landmarks
        Exact corners (and ADI points) on the reference frame.
    model : PhantomModel
        Structures and poses, to render masks of single structures.
    """

    frames: np.ndarray
    truth: dict[str, Any]
    dataset: Dataset
    landmarks: Landmarks
    model: PhantomModel = field(repr=False)


# --------------------------------------------------------------------------- validation


def _check_levels(
    mapping: dict[str, float] | None, allowed: tuple[str, ...], parameter: str
) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (mapping or {}).items():
        if key not in allowed:
            raise ParameterError(
                parameter, f"names an unknown level {key!r} (expected one of {', '.join(allowed)})"
            )
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ParameterError(parameter, f"must be a finite number at {key}, got {value!r}")
        out[key] = float(value)
    return out


def _spacing(mm_per_px: float | tuple[float, float] | None, rows: int, cols: int) -> tuple[float, float]:
    if mm_per_px is None:
        s = DEFAULT_FOV_MM / min(rows, cols)
        return (s, s)
    vals = (mm_per_px, mm_per_px) if isinstance(mm_per_px, (int, float)) else tuple(mm_per_px)
    if len(vals) != 2 or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in vals):
        raise ParameterError(
            "mm_per_px", f"must be one or two positive numbers (row, column), got {mm_per_px!r}"
        )
    if not all(0.02 <= v <= 2.0 for v in vals):
        raise ParameterError("mm_per_px", f"must lie in 0.02..2.0 mm, got {mm_per_px!r}")
    return (float(vals[0]), float(vals[1]))


_Choice = TypeVar("_Choice", bound=StrEnum)


def _choice(choices: type[_Choice], parameter: str, value: object) -> _Choice:
    """``value`` as a member of the :class:`StrEnum` ``choices`` (a member or its value)."""
    try:
        return choices(value)
    except ValueError:
        raise ParameterError(parameter, f"must be one of {', '.join(choices)}, got {value!r}") from None


def _validate(p: dict[str, Any]) -> None:
    def num(name: str, lo: float, hi: float, *, integer: bool = False) -> None:
        v = p[name]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if integer:
            ok = ok and float(v).is_integer()
        if not ok or not lo <= v <= hi:
            kind = "an integer" if integer else "a number"
            raise ParameterError(name, f"must be {kind} in {lo:g}..{hi:g}, got {v!r}")

    num("frames", 4, 5000, integer=True)
    num("fps", 1, 120)
    num("rows", 128, 2048, integer=True)
    num("cols", 128, 2048, integer=True)
    num("seed", 0, 2**32 - 1, integer=True)
    num("flexion_fraction", 0.0, 1.0)
    num("adi_mm", 0.5, 10.0)
    num("sway_mm", 0.0, 20.0)
    num("sway_deg", 0.0, 10.0)
    num("photons", 0.0, 1e7)
    num("blur_px", 0.0, 5.0)
    num("flicker", 0.0, 0.3)
    num("magnification", 1.0, 2.0)
    num("jpeg_quality", 1, 100, integer=True)
    num("supersample", 1, 4, integer=True)
    num("tilt_deg", -30.0, 45.0)
    num("anatomy_sd", 0.0, MAX_ANATOMY_SD)
    num("anterior_shift_mm", -100.0, 100.0)
    if p["bits"] not in (8, 12):
        raise ParameterError("bits", f"must be 8 or 12, got {p['bits']!r}")
    if p["transfer_syntax"] == TransferSyntax.JPEG and p["bits"] != 8:
        raise ParameterError("transfer_syntax", "jpeg (baseline) needs bits 8")
    ref = p["reference_frame"]
    if not isinstance(ref, int) or isinstance(ref, bool) or not 0 <= ref < p["frames"]:
        raise ParameterError("reference_frame", f"must be an integer in 0..{p['frames'] - 1}, got {ref!r}")
    for key, rom in p["rom_deg"].items():
        if not 0.0 <= rom <= 40.0:
            raise ParameterError("rom_deg", f"must be 0..40 degrees at {key}, got {rom:g}")
    for key, mm in p["unstable_mm"].items():
        if not 0.0 <= mm <= 15.0:
            raise ParameterError("unstable_mm", f"must be 0..15 mm of translation at {key}, got {mm:g}")


# --------------------------------------------------------------------------- generation


def make_phantom(
    *,
    seed: int = 0,
    frames: int = 60,
    fps: float = 15.0,
    rows: int = 512,
    cols: int = 512,
    mm_per_px: float | tuple[float, float] | None = None,
    curve: Curve | str = Curve.LORDOTIC,
    facing: Facing | str = Facing.RIGHT,
    rom_deg: dict[str, float] | None = None,
    flexion_fraction: float = 0.55,
    unstable_mm: dict[str, float] | None = None,
    adi_mm: float = 1.5,
    sway_mm: float = 1.0,
    sway_deg: float = 0.8,
    tilt_deg: float = 12.0,
    photons: float = 8000.0,
    blur_px: float = 0.8,
    flicker: float = 0.03,
    bits: int = 8,
    photometric: Photometric | str = Photometric.MONOCHROME2,
    calibration: Calibration | str = Calibration.PIXEL_SPACING,
    magnification: float = 1.15,
    transfer_syntax: TransferSyntax | str = TransferSyntax.EXPLICIT,
    jpeg_quality: int = 90,
    frame_timing: FrameTiming | str = FrameTiming.FRAME_TIME,
    reference_frame: int = 0,
    return_to_neutral: bool = True,
    supersample: int = 2,
    anatomy_sd: float = 0.0,
    anterior_shift_mm: float = 0.0,
    appearance: str | Iterable[str] | app.Appearance | None = None,
) -> Phantom:
    """Generate a synthetic lateral cervical flexion-extension study with exact ground truth.

    Parameters
    ----------
    seed : int
        Seeds every random choice (texture, sway, flicker, noise, UIDs); same
        arguments give identical output.
    frames, fps : int, float
        Number of frames and frame rate; the course neutral -> flexion ->
        neutral -> extension (-> neutral when ``return_to_neutral``) spans all frames.
    rows, cols : int
        Image size in pixels (128..2048).
    mm_per_px : float or (float, float) or None
        True spacing at the patient plane (row, column) in mm; default gives a
        153.6 mm field of view on the shorter side (0.3 mm at 512).
    curve : str
        Neutral shape: lordotic, straight, kyphotic, s_upper_kyphotic, s_lower_kyphotic.
    facing : str
        ``"right"``: the patient faces the image's right side (anterior = +x); ``"left"`` mirrors.
    rom_deg : dict
        Flexion-to-extension range per joint (``"C4-C5": 18.0``; joints of
        :data:`dmx.phantom.skeleton.JOINTS`), overriding the physiologic defaults.
    flexion_fraction : float
        Share of each range spent in flexion.
    unstable_mm : dict
        Extra sagittal translation per level (``{"C4-C5": 4.0}``): the upper
        vertebra slides that much in total, anterior in flexion, posterior in extension.
    adi_mm : float
        Atlanto-dental interval.
    sway_mm, sway_deg : float
        Amplitude of the whole-body drift.
    tilt_deg : float
        Forward inclination of the neutral C7->C2 line from vertical.
    photons : float
        Unattenuated quanta per pixel (0: noise-free); ``blur_px`` detector
        blur sigma; ``flicker`` relative per-frame exposure variation.
    bits, photometric : int, str
        8 or 12 stored bits; MONOCHROME2 or MONOCHROME1.
    calibration : str
        PixelSpacing, ImagerPixelSpacing+ERMF, ImagerPixelSpacing or none;
        imager spacing is the true spacing times ``magnification``.
    transfer_syntax : str
        explicit (VR little endian), rle (lossless) or jpeg (baseline, 8 bit, ``jpeg_quality``).
    frame_timing : str
        Cine timing attributes: FrameTime, FrameTimeVector or both.
    reference_frame : int
        Frame of the landmark file.
    supersample : int
        Source maps are sampled this many times finer than the output pixels.
    anatomy_sd : float
        Relative SD (0..0.2) of per-patient anatomical variation, drawn from
        ``seed``: an overall size factor, per-body depth and wall heights
        (aspect, wedging), disc heights, wall waist and endplate concavity
        (see :func:`dmx.phantom.skeleton.draw_anatomy`). The truth follows the
        drawn anatomy exactly and records it in ``params["anatomy"]``. 0 (the
        default) gives the standard anatomy, and the same study as before
        this option existed.
    anterior_shift_mm : float
        Moves the patient this far anteriorly in the field of view (-100..100 mm), so that the
        upper spine can leave the image's anterior edge in deep flexion (C2 lost in the frames
        nearest the end range). 0 (the default) gives the same study as before this option existed.
    appearance : str or iterable of str or Appearance, optional
        Appearance families (:class:`dmx.phantom.appearance.Family`: cortical,
        posterior, soft_tissue, occluders, processing, acquisition; ``"all"``)
        whose looks are drawn from ``seed`` (see
        :func:`dmx.phantom.appearance.draw_appearance`), or an already drawn
        :class:`~dmx.phantom.appearance.Appearance`. They change how the study
        looks, never the anatomy or the motion: the truth corners are those of
        the default look, except that ``acquisition`` replaces ``rows``,
        ``cols`` and ``mm_per_px`` with drawn ones and rotates/flips the image
        (the truth goes through the same geometry). Recorded in
        ``params["appearance"]``. ``None`` (the default): the default look, the
        same study as before this option existed.

    Returns
    -------
    Phantom

    Raises
    ------
    UsageError
        For any invalid option, with one line naming it.
    """
    rom = dict(sk.DEFAULT_ROM_DEG)
    rom.update(_check_levels(rom_deg, sk.JOINTS, "rom_deg"))
    unstable = _check_levels(unstable_mm, UNSTABLE_LEVELS, "unstable_mm")
    spacing = _spacing(mm_per_px, rows, cols) if isinstance(rows, int) and isinstance(cols, int) else (1, 1)
    curve = _choice(Curve, "curve", curve)
    facing = _choice(Facing, "facing", facing)
    photometric = _choice(Photometric, "photometric", photometric)
    calibration = _choice(Calibration, "calibration", calibration)
    transfer_syntax = _choice(TransferSyntax, "transfer_syntax", transfer_syntax)
    frame_timing = _choice(FrameTiming, "frame_timing", frame_timing)
    params: dict[str, Any] = {
        "seed": seed,
        "frames": frames,
        "fps": fps,
        "rows": rows,
        "cols": cols,
        "mm_per_px": list(spacing),
        "curve": curve,
        "facing": facing,
        "rom_deg": rom,
        "flexion_fraction": flexion_fraction,
        "unstable_mm": unstable,
        "adi_mm": adi_mm,
        "sway_mm": sway_mm,
        "sway_deg": sway_deg,
        "tilt_deg": tilt_deg,
        "photons": photons,
        "blur_px": blur_px,
        "flicker": flicker,
        "bits": bits,
        "photometric": photometric,
        "calibration": calibration,
        "magnification": magnification,
        "transfer_syntax": transfer_syntax,
        "jpeg_quality": jpeg_quality,
        "frame_timing": frame_timing,
        "reference_frame": reference_frame,
        "return_to_neutral": bool(return_to_neutral),
        "supersample": supersample,
    }
    if anatomy_sd != 0:  # only then, so that default studies keep their truth and UIDs
        params["anatomy_sd"] = anatomy_sd
    if anterior_shift_mm != 0:  # only then, so that default studies keep their truth and UIDs
        params["anterior_shift_mm"] = anterior_shift_mm
    _validate({**params, "anatomy_sd": anatomy_sd, "anterior_shift_mm": anterior_shift_mm})
    look = (
        appearance if isinstance(appearance, app.Appearance) else app.draw_appearance(appearance, seed=seed)
    )
    acq, proc = look.acquisition, look.processing
    if acq is not None:  # the acquisition draws the image size and pixel size
        rows, cols, spacing = acq.rows, acq.cols, (acq.mm_per_px, acq.mm_per_px)
        # fine pixels need no finer source maps (and would take minutes to render)
        supersample = 1 if acq.mm_per_px < ACQUISITION_SUPERSAMPLE_BELOW_MM else supersample
        params.update(rows=rows, cols=cols, mm_per_px=list(spacing), supersample=supersample)
        _validate({**params, "anatomy_sd": anatomy_sd, "anterior_shift_mm": anterior_shift_mm})
    if look.families:  # only then, so that default studies keep their truth and UIDs
        params["appearance"] = look.to_json()
    frames, rows, cols, seed = int(frames), int(rows), int(cols), int(seed)
    shape = (rows, cols)
    sr, sc = spacing

    # children 0-3: texture, sway, flicker, noise; child 5 (independent of them): anatomy
    seeds = np.random.SeedSequence(seed).spawn(6)
    rng_sway, rng_flicker, rng_noise = (np.random.default_rng(s) for s in seeds[1:4])
    anatomy = sk.draw_anatomy(float(anatomy_sd), rng=np.random.default_rng(seeds[5]))
    if anatomy_sd != 0:
        params["anatomy"] = anatomy.to_json()
    ds_mm = min(spacing) / supersample
    structures = tuple(
        shapes.build_structures(
            ds_mm=ds_mm,
            adi_mm=adi_mm,
            seed_sequence=seeds[0],
            anatomy=anatomy,
            appearance=look if look.families else None,
        )
    )

    keys, values = sk.key_frames_for(frames, return_to_neutral=return_to_neutral)
    motion = sk.Motion(rom, float(flexion_fraction), unstable, keys, values)
    base0 = sk.placement(curve=curve, adi_mm=adi_mm, tilt_deg=tilt_deg, anatomy=anatomy)
    drift = sk.sway(frames, rng=rng_sway, sway_mm=sway_mm, sway_deg=sway_deg)
    gains = 1.0 + flicker * np.clip(rng_flicker.standard_normal(frames), -3, 3)

    origin = ((cols - 1) / 2 + 2.0 / sc, (rows - 1) / 2 + 4.0 / sr)
    if anterior_shift_mm:  # world u is anterior; a left-facing image mirrors it below
        origin = (origin[0] + float(anterior_shift_mm) / sc, origin[1])
    w2i = imaging.world_to_image(shape=shape, mm_per_px=spacing, origin_px=origin)
    if facing == Facing.LEFT:
        w2i = np.array([[-1.0, 0.0, cols - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ w2i
    image_facing = facing
    if acq is not None:
        w2i = _acquisition_geometry(acq, rows, cols) @ w2i
        image_facing = {Facing.RIGHT: Facing.LEFT, Facing.LEFT: Facing.RIGHT}[facing] if acq.flip else facing

    names = ["base", "skull", "C1"] + [v.value for v in sk.CORNER_BODIES]
    l2i = {n: np.zeros((frames, 3, 3)) for n in names}
    world = {n: np.zeros((frames, 3, 3)) for n in names}
    exposure = imaging.Exposure(
        photons=float(photons), blur_px=float(blur_px), flicker=float(flicker), bits=bits
    )
    out = np.zeros((frames, rows, cols), np.uint8 if bits == 8 else np.uint16)
    low = high = 0.0
    burn: app.Overlay | None = None
    for f in range(frames):
        du, dv, ang = drift[f]
        base = sk.translation(du, dv) @ sk.rotation_about(np.array([0.0, -60.0]), ang) @ base0
        poses = sk.chain_poses(curve=curve, motion=motion, frame=f, adi_mm=adi_mm, base=base, anatomy=anatomy)
        for n in names:
            world[n][f] = poses[n]
            l2i[n][f] = w2i @ poses[n]
        mu = imaging.attenuation(
            list(structures), {n: l2i[n][f] for n in names}, shape, soft_blur_px=2.5 / min(spacing)
        )
        if proc is None and acq is None:
            signal = imaging.detect(mu, exposure=exposure, gain=float(gains[f]), rng=rng_noise)
            if f == 0:
                low, high = (float(x) for x in np.percentile(signal, [1.0, 99.7]))
            out[f] = imaging.window(signal, low=low, high=high, bits=bits)
            continue
        if f == 0:
            gain_map = app.gain_map(shape, proc)
            grid = app.grid_pattern(shape, acq)
            burn = app.overlay(shape, acq, seed=seed)
            rng_look = app.frame_rng(seed)
        gain = float(gains[f]) * gain_map  # a map: exposure and vignetting of the processing family
        signal = imaging.detect(mu, exposure=exposure, gain=gain, rng=rng_noise)
        signal = app.signal_noise(signal + grid, proc, rng_look, mm_per_px=min(spacing))
        if f == 0:
            pct = [1.0, 99.7] if proc is None else [proc.window_low_pct, proc.window_high_pct]
            low, high = (float(x) for x in np.percentile(signal, pct))
        value = np.clip((signal - low) / max(high - low, 1e-6), 0.0, 1.0)
        value = app.finish(value, processing=proc, acquisition=acq, burn=burn, mm_per_px=min(spacing))
        out[f] = np.rint(value * ((1 << bits) - 1)).astype(out.dtype)
    if photometric == Photometric.MONOCHROME1:
        out = ((1 << bits) - 1 - out).astype(out.dtype)

    model = PhantomModel(structures, l2i, shape, ds_mm, anatomy)
    covered = burn.covered if burn is not None and burn.covered.any() else None
    truth_doc = _truth(params, model, world, motion, spacing, keys, covered=covered)
    truth_doc["display_window"] = {"low": low, "high": high}
    if image_facing != facing:
        truth_doc["facing"] = image_facing
    landmarks = _landmarks(truth_doc, reference_frame)
    digest = dcm.params_digest(params)
    dataset = dcm.build_dataset(
        out,
        seed=seed,
        params_digest=digest,
        mm_per_px=spacing,
        frame_time_ms=1000.0 / fps,
        photometric=photometric,
        bits=bits,
        calibration=calibration,
        magnification=float(magnification),
        transfer_syntax=transfer_syntax,
        facing=image_facing,
        frame_timing=frame_timing,
        jpeg_quality=int(jpeg_quality),
    )
    return Phantom(out, truth_doc, dataset, landmarks, model)


def _acquisition_geometry(acq: app.AcquisitionLook, rows: int, cols: int) -> np.ndarray:
    """3 x 3 pixel affine of the acquisition's rotation about the image centre and horizontal flip."""
    cx, cy = (cols - 1) / 2, (rows - 1) / 2
    a = np.deg2rad(acq.rotation_deg)
    c, s = np.cos(a), np.sin(a)
    m = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])
    if acq.flip:
        m = np.array([[-1.0, 0.0, cols - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ m
    return m


def _body_samples(vertebra: Vertebra, anatomy: sk.Anatomy, step_mm: float = 0.5) -> np.ndarray:
    b = anatomy.sizes[vertebra]
    u = np.arange(-b.depth_mm / 2, b.depth_mm / 2 + step_mm, step_mm)
    v = np.arange(-b.height_post_mm / 2, b.height_post_mm / 2 + step_mm, step_mm)
    uu, vv = np.meshgrid(u, v)
    inside = shapes.body_sdf(vertebra, uu, vv, anatomy=anatomy) > 0
    if vertebra is Vertebra.C2:
        inside &= vv <= b.height_ant_mm / 2
    return np.stack([uu[inside], vv[inside]], axis=-1)


def _truth(
    params: dict[str, Any],
    model: PhantomModel,
    world: dict[str, np.ndarray],
    motion: sk.Motion,
    spacing: tuple[float, float],
    keys: tuple[int, ...],
    *,
    covered: np.ndarray | None = None,
) -> dict[str, Any]:
    frames = params["frames"]
    rows, cols = model.shape
    sr, sc = spacing
    l2i = model.local_to_image
    anatomy = model.anatomy
    tracks: dict[str, Any] = {}
    corners_px: dict[str, np.ndarray] = {}
    for v in sk.CORNER_BODIES:
        local = sk.body_corners_mm(v, anatomy=anatomy)
        c = np.stack([sk.apply(l2i[v.value][f], local) for f in range(frames)])  # (T, 4, 2)
        corners_px[v.value] = c
        tracks[v.value] = {k.value: c[:, i].tolist() for i, k in enumerate(CORNERS)}
    arch_local = sk.arch_post_mm(params["adi_mm"], anatomy=anatomy)
    dens_local = sk.dens_ant_mm(anatomy=anatomy)
    arch = np.stack([sk.apply(l2i["C1"][f], arch_local) for f in range(frames)])
    dens = np.stack([sk.apply(l2i["C2"][f], dens_local) for f in range(frames)])
    scale = np.array([sc, sr])
    adi = np.linalg.norm((arch - dens) * scale, axis=-1)

    # visibility: share of the body inside the image and not hidden by skull, mandible or shoulders
    occluders = [s for s in model.structures if s.occluder is not None]
    # in_field: share of the body inside the image and not behind a collimator blade (what no tracker can
    # see), occluding bones ignored (a vertebra they cross stays inside the image)
    visibility: dict[str, list[float]] = {}
    in_field: dict[str, list[float]] = {}
    for v in sk.CORNER_BODIES:
        pts = _body_samples(v, anatomy)
        vis, field = [], []
        for f in range(frames):
            wpts = sk.apply(world[v.value][f], pts)
            ipts = sk.apply(l2i[v.value][f], pts)
            outside = ~(
                (ipts[:, 0] >= -0.5)
                & (ipts[:, 0] <= cols - 0.5)
                & (ipts[:, 1] >= -0.5)
                & (ipts[:, 1] <= rows - 0.5)
            )
            if covered is not None:  # behind the acquisition's collimator blades
                r = np.clip(np.rint(ipts[~outside, 1]).astype(int), 0, rows - 1)
                c = np.clip(np.rint(ipts[~outside, 0]).astype(int), 0, cols - 1)
                outside[~outside] = covered[r, c] > 0.5
            hidden = outside.copy()
            for s in occluders:
                loc = sk.apply(np.linalg.inv(world[s.frame][f]), wpts)
                hidden |= s.occluder(loc[:, 0], loc[:, 1]) > 0
            vis.append(round(float(1.0 - hidden.mean()), 4))
            field.append(round(float(1.0 - outside.mean()), 4))
        visibility[v.value] = vis
        in_field[v.value] = field

    # reference values with the spec's formulas, in mm
    mm = {k: c * scale for k, c in corners_px.items()}
    bodies6 = np.stack([mm[v.value] for v in BODIES], axis=1)  # (T, 6, 4, 2)
    h = truth.facing_sign(bodies6[0])
    cobb = truth.cobb_c2c7_deg(mm["C2"], mm["C7"], h)
    neutral_frame, flexion_frame, extension_frame = 0, int(np.argmin(cobb)), int(np.argmax(cobb))
    levels: dict[str, Any] = {}
    for level in list(Level) + ["C7-T1"]:
        name = level.value if isinstance(level, Level) else level
        upper, lower = name.split("-")
        angle, offset = truth.level_values(mm[lower], mm[upper], h)
        depth = float(np.linalg.norm(mm[lower][0, 0] - mm[lower][0, 1]))
        levels[name] = {
            "angle_deg": angle.tolist(),
            "offset_mm": offset.tolist(),
            "rotation_rom_deg": float(angle[extension_frame] - angle[flexion_frame]),
            "rotation_range_deg": float(angle.max() - angle.min()),
            "translation_mm": float(offset[flexion_frame] - offset[extension_frame]),
            "translation_pct": float(100 * (offset[flexion_frame] - offset[extension_frame]) / depth),
            "offset_range_mm": float(offset.max() - offset.min()),
            "requested_rom_deg": params["rom_deg"].get(name),
            "requested_extra_translation_mm": params["unstable_mm"].get(name, 0.0),
        }
    curve_at: dict[str, Any] = {}
    for key, f in (("neutral", neutral_frame), ("flexion", flexion_frame), ("extension", extension_frame)):
        d = truth.ishihara_d_mm(bodies6[f], h)
        cls, s_type = truth.curve_class(d)
        curve_at[key] = {
            "frame": f,
            "class": cls,
            "s_type": s_type,
            "cobb_c2c7_deg": float(cobb[f]),
            "d_mm": {v: float(x) for v, x in zip(("C3", "C4", "C5", "C6"), d, strict=True)},
        }
    ref = params["reference_frame"]
    transforms = {}
    for n in ["C1"] + [v.value for v in sk.CORNER_BODIES]:
        inv_ref = np.linalg.inv(l2i[n][ref])
        transforms[n] = [np.round((l2i[n][f] @ inv_ref)[:2], 12).tolist() for f in range(frames)]
    return {
        "schema": SCHEMA,
        "params": params,
        "mm_per_px": [sr, sc],
        "frames": frames,
        "frame_time_ms": 1000.0 / params["fps"],
        "facing": params["facing"],
        "curve": params["curve"],
        "unstable_levels": dict(params["unstable_mm"]),
        "reference_frame": ref,
        "motion_key_frames": {"flexion": keys[1], "neutral_mid": keys[2], "extension": keys[3]},
        "key_frames": {"neutral": neutral_frame, "flexion": flexion_frame, "extension": extension_frame},
        "tracks": tracks,
        "points": {"C1.arch_post": arch.tolist(), "C2.dens_ant": dens.tolist()},
        "adi_mm": adi.tolist(),
        "visibility": visibility,
        "in_field": in_field,
        "levels": levels,
        "curve_shape": curve_at,
        "h": h,
        "transforms_px": transforms,
        "notes": (
            "Pixel coordinates: x = column, y = row, centre of the top-left pixel (0, 0). "
            "levels/curve_shape are the spec's formulas applied to the exact corners (mm). "
            "visibility: share of the body inside the image and not covered by skull, mandible or "
            "shoulders (and inside the exposed field); in_field: share of the body inside the image and "
            "not behind a collimator blade, occluding bones ignored. "
            "transforms_px map reference-frame pixels to each frame's pixels."
        ),
    }


def _landmarks(doc: dict[str, Any], frame: int) -> Landmarks:
    corners = {
        v: np.array([doc["tracks"][v.value][k.value][frame] for k in CORNERS], dtype=float) for v in BODIES
    }
    extra = {p: np.array(doc["points"][p.value][frame], dtype=float) for p in UpperCervicalPoint}
    return Landmarks(frame=frame, corners_px=corners, extra_px=extra)


def write_phantom(phantom: Phantom, out_dir: str | Path) -> dict[str, Path]:
    """Write ``study.dcm``, ``truth.json`` and ``landmarks.json`` into ``out_dir`` (created if needed).

    Returns the paths written, by name.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"study": out / "study.dcm", "truth": out / "truth.json", "landmarks": out / "landmarks.json"}
    phantom.dataset.save_as(paths["study"], enforce_file_format=True)
    paths["truth"].write_text(json.dumps(phantom.truth, indent=1) + "\n", encoding="utf-8")
    write_landmarks(phantom.landmarks, paths["landmarks"])
    return paths


def render_structure(
    phantom: Phantom, name: str, frame: int, *, density: np.ndarray | None = None
) -> np.ndarray:
    """Render one structure (by name, e.g. ``"C4"``) alone on frame ``frame``: its ``mu*path`` map.

    ``density`` replaces the structure's map (same grid), e.g. an outline mask.
    """
    m = phantom.model
    s = next((s for s in m.structures if s.name == name), None)
    if s is None:
        raise KeyError(name)
    if density is not None:
        s = shapes.Structure(s.name, s.frame, s.group, density.astype(np.float32), s.u0_mm, s.v0_mm, s.ds_mm)
    canvas = np.zeros(m.shape, np.float32)
    imaging.place(canvas, s, m.local_to_image[s.frame][frame])
    return canvas


def body_mask(
    phantom: Phantom, vertebra: Vertebra | str, frame: int, *, ramp_px: float | None = None
) -> np.ndarray:
    """Texture-free, noise-free inside fraction (0..1) of a body's outline in frame ``frame``.

    The outline is a linear ramp ``ramp_px`` output pixels wide (default: as in the images);
    a ramp of 2-3 pixels lets sub-pixel edge finders recover the outline without aliasing.
    """
    v = Vertebra(vertebra)
    s = next(s for s in phantom.model.structures if s.name == v.value)
    rows, cols = s.density.shape
    u = s.u0_mm + s.ds_mm * np.arange(cols)
    vv = s.v0_mm - s.ds_mm * np.arange(rows)
    uu, vg = np.meshgrid(u, vv)
    width_mm = shapes.RAMP * s.ds_mm if ramp_px is None else ramp_px * min(phantom.truth["mm_per_px"])
    mask = shapes.coverage(shapes.body_sdf(v, uu, vg, anatomy=phantom.model.anatomy), width_mm)
    mask[0, :] = mask[-1, :] = 0
    mask[:, 0] = mask[:, -1] = 0
    return render_structure(phantom, v.value, frame, density=mask)


def parse_level_values(items: list[str], *, parameter: str, default: float | None = None) -> dict[str, float]:
    """Parse ``["C4-C5=18", "C5-C6"]`` into ``{"C4-C5": 18.0, "C5-C6": default}`` (CLI helper).

    A malformed item raises :class:`~dmx.errors.ParameterError` naming ``parameter``
    (``"rom_deg"``, ``"unstable_mm"``: the :func:`make_phantom` argument it fills).
    """
    out: dict[str, float] = {}
    for item in items:
        m = re.fullmatch(r"\s*([A-Za-z0-9]+-[A-Za-z0-9]+)\s*(?:=\s*(.+))?", item)
        if not m:
            raise ParameterError(parameter, f"must be LEVEL or LEVEL=VALUE (e.g. C4-C5=4), got {item!r}")
        level = m.group(1).upper()
        if m.group(2) is None:
            if default is None:
                raise ParameterError(parameter, f"needs a value at {level} (e.g. {level}=15)")
            out[level] = float(default)
            continue
        try:
            out[level] = float(m.group(2))
        except ValueError:
            raise ParameterError(parameter, f"must be a number at {level}, got {m.group(2)!r}") from None
    return out
