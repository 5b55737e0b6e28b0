"""Tracking benchmark: corner accuracy against ground truth, and speed.

Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/tracking.py            # quick (about a minute)
    PYTHONPATH=$PWD python benchmarks/tracking.py --full     # more seeds, 150/300/600 frames
    PYTHONPATH=$PWD python benchmarks/tracking.py --speed-only / --accuracy-only
    PYTHONPATH=$PWD python benchmarks/tracking.py --appearance all   # per appearance family, then stop
    PYTHONPATH=$PWD python benchmarks/tracking.py --appearance all --mandible-seeds 41,42,43  # held out
    PYTHONPATH=$PWD python benchmarks/tracking.py --appearance all --no-still-layers  # without the refit
    PYTHONPATH=$PWD python benchmarks/tracking.py --appearance all --no-refit-unreliable  # lost stay lost
    PYTHONPATH=$PWD python benchmarks/tracking.py --appearance all --no-refit-fine  # no fine-detail refit
    PYTHONPATH=$PWD python benchmarks/tracking.py --appearance all --no-consistency-weights  # no last refit
    PYTHONPATH=$PWD python benchmarks/tracking.py --appearance all --no-grid-lines  # grid lines left in

``--appearance FAMILY[,FAMILY]|all`` tracks one phantom per appearance family
(:mod:`dmx.phantom.appearance`; the tracker was tuned on the default look only), plus the cases of
issue #13 (mandible over C2-C4 in deep flexion, shoulders over C7, C2 leaving the image),
and prints, per level, the per-frame disc-angle error against the truth (median / p95 / max, deg)
over frames where both bodies are trusted, and the share of frames flagged; then, per body, the
slope of its tracked rotation against the true one (below 1: pulled towards its reference pose).

Accuracy uses the realistic phantom (:mod:`dmx.phantom`) when it is installed, and the small synthetic
columns of :mod:`dmx.phantom.scenes` (exact rigid motion) always. For every vertebra it prints the
median / 95th percentile / max corner error (px) over the frames reported as trusted (finite and
quality >= ``TRUSTED_QUALITY``), the fraction flagged (NaN or low quality), and the number of frames
off by more than 2 px that were NOT flagged (must be 0).

C1 (phantom only): the error of ``C1.arch_post`` carried by C1's tracked motion (its only landmark).

Beside the corner error, one ``angles`` line per case: the error of the per-frame segmental angle
(spec section 4, ``ang(sup(L), inf(U))``, of every pair of adjacent tracked bodies) over the trusted
frames: median / p95 / max (degrees), and the worst level and frame. A sub-pixel corner error can
still turn an endplate: this is the number the measurements see.

Speed: frames per second (wall clock and CPU), and times real time at 30 fps, for 1024x1024 and 512x512
studies of 150 / 300 / 600 frames.

``--processes N`` tracks in N processes (``track(processes=N)``): the same figures (only the speed
differs), which is how the tracks' independence of the worker processes is checked on every case.

Targets (issue): median <= 0.2 px, p95 <= 0.6 px, no unflagged frame > 2 px; >= 30 fps (1x real
time) for 600 frames at 1024x1024, aiming for 90 fps.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from dmx.anatomy import Vertebra
from dmx.phantom.scenes import make_scene
from dmx.tracking import TRUSTED_QUALITY, track

#: Extra options of every ``track`` call (``--processes``).
TRACK_OPTIONS: dict[str, Any] = {}


def _row(
    name: str, tracks: Any, truth: np.ndarray, seconds: float, arch: np.ndarray | None = None
) -> list[str]:
    bodies = [tracks.vertebrae.index(v) for v in tracks.bodies]  # C1 has no corners
    err = np.linalg.norm(tracks.corners_px[:, bodies] - truth, axis=-1).max(axis=-1)  # (T, V)
    q = np.nan_to_num(tracks.quality[:, bodies], nan=0.0)
    flagged = ~np.isfinite(err) | (q < TRUSTED_QUALITY)
    lines = []
    if arch is not None and Vertebra.C1 in tracks.vertebrae:
        # C1: its landmark C1.arch_post carried by the tracked motion, against the true point
        i = tracks.vertebrae.index(Vertebra.C1)
        a = tracks.transforms[:, i]
        e1 = np.linalg.norm(a[:, :, :2] @ arch[tracks.reference_frame] + a[:, :, 2] - arch, axis=-1)
        ok = np.isfinite(e1) & (np.nan_to_num(tracks.quality[:, i]) >= TRUSTED_QUALITY)
        e = e1[ok]
        med, p95, mx = (np.median(e), np.percentile(e, 95), e.max()) if e.size else (np.nan,) * 3
        bad = int(np.sum((e1 > 2.0) & ok))
        lines.append(f"{name:<38} {'C1':<3} {med:7.3f} {p95:7.3f} {mx:7.3f} {1 - ok.mean():8.1%} {bad:6d}")
    for v_idx, v in enumerate(tracks.bodies):
        ok = ~flagged[:, v_idx]
        e = err[ok, v_idx]
        if e.size:
            med, p95, mx = np.median(e), np.percentile(e, 95), e.max()
        else:
            med = p95 = mx = float("nan")
        bad = int(np.sum((err[:, v_idx] > 2.0) & ok))
        frac = flagged[:, v_idx].mean()
        lines.append(f"{name:<38} {v.value:<3} {med:7.3f} {p95:7.3f} {mx:7.3f} {frac:8.1%} {bad:6d}")
    lines.append(_angle_row(name, tracks, truth, flagged))
    lines.append(
        f"{name[:38]:<38} {'all':<3} {np.median(err[~flagged]):7.3f} "
        f"{np.percentile(err[~flagged], 95):7.3f} {err[~flagged].max():7.3f} {flagged.mean():8.1%} "
        f"{int(np.sum((err > 2.0) & ~flagged)):6d}   ({truth.shape[0] / seconds:.0f} fps)"
    )
    return lines


def _angle_row(name: str, tracks: Any, truth: np.ndarray, flagged: np.ndarray) -> str:
    """Per-frame segmental angle error (deg) over the trusted frames: median, p95, max, where."""
    from dmx.measure.geometry import spine_facing
    from dmx.measure.segmental import level_series

    bodies = tracks.bodies
    got = tracks.corners_px[:, [tracks.vertebrae.index(v) for v in bodies]]
    h, _, _ = spine_facing(truth)
    errs, worst, where = [], 0.0, "-"
    for k in range(len(bodies) - 1):
        if h is None or int(bodies[k + 1].value[1:]) != int(bodies[k].value[1:]) + 1:
            continue  # not adjacent bodies
        a = level_series(got[:, k], got[:, k + 1], h=h).angle_deg
        t = level_series(truth[:, k], truth[:, k + 1], h=h).angle_deg
        e = np.abs(a - t)
        e[flagged[:, k] | flagged[:, k + 1]] = np.nan
        if np.isfinite(e).any():
            errs.append(e[np.isfinite(e)])
            if np.nanmax(e) > worst:
                worst, where = (
                    float(np.nanmax(e)),
                    f"{bodies[k].value}-{bodies[k + 1].value} f{np.nanargmax(e)}",
                )
    if not errs:
        return f"{name[:38]:<38} angles: none measured"
    e = np.concatenate(errs)
    stats = f"{np.median(e):7.3f} {np.percentile(e, 95):7.3f} {e.max():7.3f}"
    return f"{name[:38]:<38} ang {stats}  deg, worst {where}"


def _synthetic_cases(full: bool) -> list[tuple[str, dict]]:
    seeds = (0, 1, 2) if full else (0,)
    base = dict(shape=(512, 512), body_px=48, n_frames=60, amplitude_deg=3.0)
    cases = []
    for seed in seeds:
        cases += [
            (f"syn clean s{seed}", dict(base, seed=seed)),
            (f"syn noise8 flicker s{seed}", dict(base, seed=seed, noise=8.0, flicker=0.1)),
            (f"syn mandible noise4 s{seed}", dict(base, seed=seed, noise=4.0, occluder="mandible")),
            (f"syn inverted mirrored s{seed}", dict(base, seed=seed, noise=4.0, invert=True, mirror=True)),
            (f"syn jpeg60 noise3 s{seed}", dict(base, seed=seed, noise=3.0, jpeg_quality=60)),
            (f"syn block (C4 covered) s{seed}", dict(base, seed=seed, occluder="block")),
            (f"syn ref=mid drift s{seed}", dict(base, seed=seed, reference_frame=30, drift_px=40.0)),
        ]
    return cases


def _phantom_settings(full: bool) -> list[tuple[str, dict]]:
    seeds = (1, 2, 3) if full else (1,)
    cases = [(f"phantom default s{seed}", dict(seed=seed)) for seed in seeds]
    cases += [
        (
            "phantom low dose, MONO1, facing left",
            dict(seed=4, photons=1500, photometric="MONOCHROME1", facing="left"),
        ),
        ("phantom jpeg70 flicker10%", dict(seed=5, transfer_syntax="jpeg", jpeg_quality=70, flicker=0.1)),
        ("phantom 30 frames (fast motion)", dict(seed=6, frames=30)),
        ("phantom C2 leaves image in flexion", dict(seed=2, curve="kyphotic", anterior_shift_mm=45.0)),
        (
            "phantom ref=mid kyphotic unstable",
            dict(seed=7, reference_frame=30, curve="kyphotic", unstable_mm={"C4-C5": 4.0}),
        ),
    ]
    if full:
        cases += [
            (
                "phantom very low dose + jpeg60",
                dict(seed=8, photons=300, transfer_syntax="jpeg", jpeg_quality=60),
            ),
            ("phantom 12 bit 1024x1024", dict(seed=9, bits=12, rows=1024, cols=1024, frames=60)),
            (
                "phantom s-curve, big ROM",
                dict(
                    seed=10,
                    curve="s_upper_kyphotic",
                    rom_deg={"C2-C3": 14, "C3-C4": 18, "C4-C5": 20, "C5-C6": 20, "C6-C7": 16},
                ),
            ),
        ]
    return cases


def _phantom_cases(full: bool):
    """Yield (name, frames, truth, landmarks, C1.arch_post truth) from :mod:`dmx.phantom`, if available."""
    try:
        from dmx.phantom import make_phantom, truth_corners
    except ImportError:
        print("(dmx.phantom not available: synthetic columns only)")
        return
    for name, kw in _phantom_settings(full):
        try:
            ph = make_phantom(**kw)
        except Exception as exc:  # an option this phantom version does not know
            print(f"{name}: skipped ({exc})")
            continue
        arch = np.array(ph.truth["points"]["C1.arch_post"], dtype=float)
        yield name, ph.frames, truth_corners(ph.truth, ph.landmarks.vertebrae), ph.landmarks, arch


def accuracy(full: bool) -> None:
    print(f"{'case':<38} {'V':<3} {'median':>7} {'p95':>7} {'max':>7} {'flagged':>8} {'>2px!':>6}")
    for name, frames, truth, landmarks, arch in _phantom_cases(full):
        t0 = time.perf_counter()
        tr = track(frames, landmarks, **TRACK_OPTIONS)
        for line in _row(name, tr, truth, time.perf_counter() - t0, arch):
            print(line)
        sys.stdout.flush()
    for name, kw in _synthetic_cases(full):
        s = make_scene(**kw)
        t0 = time.perf_counter()
        tr = track(s.frames, s.landmarks, **TRACK_OPTIONS)
        for line in _row(name, tr, s.truth_px, time.perf_counter() - t0):
            print(line)
        sys.stdout.flush()


def _speed_study(shape: tuple[int, int], body_px: float, n_frames: int) -> Any:
    """A study of ``n_frames``: one 150-frame flexion-extension cycle rendered once and repeated."""
    period = min(n_frames, 150)
    s = make_scene(
        shape=shape,
        body_px=body_px,
        n_frames=period,
        amplitude_deg=5.0,
        noise=4.0,
        occluder="mandible",
        seed=0,
    )
    reps = -(-n_frames // period)
    frames = np.concatenate([s.frames] * reps)[:n_frames]
    return frames, s.landmarks


def speed(full: bool) -> None:
    import cv2

    head = f"{'study':<22} {'frames':>6} {'wall s':>7} {'fps':>7} {'x RT30':>7} {'cpu fps':>8}"
    print(f"{head}  (cv2 threads {cv2.getNumThreads()})")
    sizes = [((1024, 1024), 65.0), ((512, 512), 32.0)]
    counts = (150, 300, 600) if full else (150, 600)
    for shape, body in sizes:
        for n in counts if shape[0] == 1024 else counts[:1]:
            frames, lm = _speed_study(shape, body, n)
            c0 = time.process_time()
            t0 = time.perf_counter()
            tr = track(frames, lm, **TRACK_OPTIONS)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
            lost = int((~tr.tracked).sum())
            study = f"{shape[0]}x{shape[1]} body {body:.0f}px"
            rt = n / wall / 30
            print(f"{study:<22} {n:6d} {wall:7.2f} {n / wall:7.1f} {rt:7.2f} {n / cpu:8.1f}  lost {lost}")
            sys.stdout.flush()
            del frames


def speed_phantom(full: bool) -> None:
    """Speed on the realistic phantom at 1024x1024 (bodies about 105 px deep): 150 frames, tiled to 600."""
    try:
        from dmx.phantom import make_phantom
    except ImportError:
        return
    ph = make_phantom(seed=4, rows=1024, cols=1024, frames=150)
    for n in (150, 600) if full else (150,):
        frames = np.concatenate([ph.frames] * (n // 150))
        t0 = time.perf_counter()
        c0 = time.process_time()
        tr = track(frames, ph.landmarks, **TRACK_OPTIONS)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        lost = int((~tr.tracked).sum())
        study = "phantom 1024x1024"
        print(
            f"{study:<22} {n:6d} {wall:7.2f} {n / wall:7.1f} {n / wall / 30:7.2f} {n / cpu:8.1f}  lost {lost}"
        )
        sys.stdout.flush()


# --------------------------------------------------------------------------- appearance families


def _mandible_case(seed: int, base: dict) -> tuple[str, dict]:
    """The mandible over C2-C4 in deep flexion, shoulders over C7 (issue #13), drawn with ``seed``."""
    from dataclasses import replace

    from dmx.phantom import Appearance, Family, draw_appearance

    occ = draw_appearance("occluders", seed=seed).occluders
    # C2-C3 fully visible at the reference frame (neutral), the mandible over C2-C4 in deep flexion
    heavy = replace(occ, mandible_shift_mm=(-4.0, -4.0), mandible_gain=2.2, shoulder_shift_mm=(0.0, 10.0))
    deep = {"C0-C1": 24.0, "C1-C2": 14.0, "C2-C3": 12.0, "C3-C4": 15.0}
    name = "mandible over C2-C4 deep flex, shoulders C7"
    if seed != 40:
        name = f"mandible (seed {seed}) over C2-C4, shoulders C7"
    kw = dict(
        base,
        seed=seed,
        rom_deg=deep,
        flexion_fraction=0.75,
        appearance=Appearance((Family.OCCLUDERS,), occluders=heavy),
    )
    return name, kw


def _family_cases(families: list[str], *, frames: int, size_px: int) -> list[tuple[str, dict]]:
    """(name, make_phantom keywords): one phantom per family, then the issue #13 cases."""
    from dmx.phantom import Appearance, Family, draw_appearance
    from dmx.phantom.appearance import AcquisitionLook

    base = dict(frames=frames, rows=size_px, cols=size_px)
    cases = [("default look", dict(base, seed=21))]
    for i, fam in enumerate(families):
        look = draw_appearance(fam, seed=22 + i, max_size_px=max(size_px, 768))
        cases.append((fam, dict(base, seed=22 + i, appearance=look)))
    cases.append(_mandible_case(40, base))
    crop = AcquisitionLook.plain(rows=size_px, cols=int(size_px * 0.53), mm_per_px=0.3)
    cases.append(
        (
            "C2 leaving the image in flexion",
            dict(base, seed=41, appearance=Appearance((Family.ACQUISITION,), acquisition=crop)),
        )
    )
    return cases


def family_accuracy(
    families: list[str],
    *,
    frames: int = 60,
    size_px: int = 512,
    outlier_spread_px: float = 0.0,
    mandible_seeds: list[int] | None = None,
    still_layers: bool = True,
) -> None:
    """Per-frame disc-angle error per level against the truth, one phantom per appearance family (or,
    with ``mandible_seeds``, the mandible case drawn with each of those seeds instead)."""
    from dmx.anatomy import BODIES, Level
    from dmx.phantom import make_phantom, truth_corners
    from dmx.phantom.truth import level_values

    print(
        f"{'case':<42} {'level':<6} {'median':>7} {'p95':>7} {'max':>7} {'flagged':>8}   "
        f"(angle error, deg; corners median/p95 px)"
    )
    if mandible_seeds:
        base = dict(frames=frames, rows=size_px, cols=size_px)
        cases = [_mandible_case(seed, base) for seed in mandible_seeds]
    else:
        cases = _family_cases(families, frames=frames, size_px=size_px)
    for name, kw in cases:
        ph = make_phantom(**kw)
        tr = track(
            ph.frames,
            ph.landmarks,
            outlier_spread_px=outlier_spread_px,
            still_layers=still_layers,
            **TRACK_OPTIONS,
        )
        sr, sc = ph.truth["mm_per_px"]
        h = float(ph.truth["h"])
        idx = {v: tr.vertebrae.index(v) for v in BODIES}
        ok = np.nan_to_num(tr.quality, nan=0.0) >= TRUSTED_QUALITY
        truth = truth_corners(ph.truth, BODIES)
        err_px = np.linalg.norm(tr.corners_px[:, [idx[v] for v in BODIES]] - truth, axis=-1).max(axis=-1)
        good = ok[:, [idx[v] for v in BODIES]] & np.isfinite(err_px)
        corner = (
            f"{np.median(err_px[good]):.2f}/{np.percentile(err_px[good], 95):.2f} px" if good.any() else "-"
        )
        for level in Level:
            upper, lower = (Vertebra(x) for x in level.value.split("-"))
            both = ok[:, idx[upper]] & ok[:, idx[lower]]
            up = tr.corners_px[:, idx[upper]] * np.array([sc, sr])
            lo = tr.corners_px[:, idx[lower]] * np.array([sc, sr])
            angle, _ = level_values(lo, up, h)
            e = np.abs(angle - np.array(ph.truth["levels"][level.value]["angle_deg"]))[both]
            stats = (
                f"{np.median(e):7.3f} {np.percentile(e, 95):7.3f} {e.max():7.3f}"
                if e.size
                else f"{'-':>7} " * 3
            )
            print(f"{name[:42]:<42} {level.value:<6} {stats} {1 - both.mean():8.1%}   {corner}")
        print(f"{name[:42]:<42} rotation slope (tracked on true, 1 = right): {_rotation_slopes(ph, tr, ok)}")
        sys.stdout.flush()


def _rotation_slopes(ph: Any, tr: Any, ok: np.ndarray) -> str:
    """Per body, the slope of its tracked rotation against its true rotation since the reference frame
    over its trusted frames: below 1 where something that does not move with it pulls it towards its
    reference pose (C7 under still shoulders: docs/tracking.md), which no per-frame noise figure shows."""
    from dmx.anatomy import BODIES

    out = []
    for v in BODIES:
        i = tr.vertebrae.index(v)
        a = np.asarray(ph.truth["transforms_px"][v.value], dtype=float)
        true = np.degrees(np.arctan2(a[:, 1, 0], a[:, 0, 0]))
        got = np.degrees(np.arctan2(tr.transforms[:, i, 1, 0], tr.transforms[:, i, 0, 0]))
        use = ok[:, i] & np.isfinite(got)
        spread = np.ptp(true[use]) if use.sum() >= 3 else 0.0
        out.append(
            f"{v.value} {np.polyfit(true[use], got[use], 1)[0]:.3f}" if spread >= 1.0 else f"{v.value} -"
        )
    return "  ".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="more seeds and frame counts (several minutes)")
    p.add_argument("--speed-only", action="store_true")
    p.add_argument("--accuracy-only", action="store_true")
    p.add_argument(
        "--appearance",
        default=None,
        metavar="LIST",
        help="per appearance family (FAMILY[,FAMILY] or all) and the issue #13 cases, then stop",
    )
    p.add_argument(
        "--outlier-spread",
        type=float,
        default=0.0,
        metavar="PX",
        help="with --appearance: track's experimental outlier_spread_px (default 0, off)",
    )
    p.add_argument(
        "--mandible-seeds",
        default=None,
        metavar="LIST",
        help="with --appearance: only the mandible case, drawn with each of these seeds (e.g. 41,42,43: "
        "seeds the #13 guards were not developed on; 40 is the benchmark's own)",
    )
    p.add_argument(
        "--no-still-layers",
        action="store_true",
        help="with --appearance: track(..., still_layers=False), the passes without the still-layer refit",
    )
    p.add_argument(
        "--no-refit-unreliable",
        action="store_true",
        help="track(..., refit_unreliable=False): bodies lost under an occluder are not refitted without "
        "the template pixels that do not move with them",
    )
    p.add_argument(
        "--no-refit-fine",
        action="store_true",
        help="track(..., refit_fine=False): bodies still lost under an occluder are not registered again on "
        "their fine detail",
    )
    p.add_argument(
        "--no-consistency-weights",
        action="store_true",
        help="track(..., consistency_weights=False): no last refit with the template's pixels weighed by how "
        "steadily they follow the body",
    )
    p.add_argument(
        "--no-grid-lines",
        action="store_true",
        help="track(..., grid_lines=False): anti-scatter grid lines are left in the frames",
    )
    p.add_argument("--frames", type=int, default=60, help="with --appearance: frames per phantom (60)")
    p.add_argument("--size", type=int, default=512, help="with --appearance: frame side in px (512)")
    p.add_argument("--processes", type=int, default=1, help="track in this many processes (same figures)")
    args = p.parse_args(argv)
    TRACK_OPTIONS["processes"] = args.processes
    if args.no_refit_unreliable:
        TRACK_OPTIONS["refit_unreliable"] = False
    if args.no_refit_fine:
        TRACK_OPTIONS["refit_fine"] = False
    if args.no_consistency_weights:
        TRACK_OPTIONS["consistency_weights"] = False
    if args.no_grid_lines:
        TRACK_OPTIONS["grid_lines"] = False
    if args.appearance is not None:
        from dmx.phantom import parse_families

        family_accuracy(
            [f.value for f in parse_families(args.appearance)],
            frames=args.frames,
            size_px=args.size,
            outlier_spread_px=args.outlier_spread,
            mandible_seeds=[int(x) for x in args.mandible_seeds.split(",")] if args.mandible_seeds else None,
            still_layers=not args.no_still_layers,
        )
        return 0
    if not args.speed_only:
        accuracy(args.full)
        print()
    if not args.accuracy_only:
        speed(args.full)
        speed_phantom(args.full)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
