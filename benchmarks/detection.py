"""Automatic corner detection against phantom ground truth, on settings held out from fitting.

Every case uses seeds the fitting never saw (fitting uses 100000+) and most use settings
outside the fitting ranges (see ``dmx.training.fit.HELD_OUT``): 1024-px images at 0.15 mm,
fewer than 600 photons, blur 2 px, JPEG quality 50, and the combination S-curve (lower
kyphotic) + facing left + MONOCHROME1, and anatomical variation above the fitted 0.08
(``anatomy_sd`` 0.10-0.12: body sizes, aspect, wedging, discs, outline shape). Per case it
prints the corner error (median, 95th percentile, maximum, px) over the vertebrae found, how
many of C2-C7 were found, the lowest confidence and the time. Then, for a few cases, it tracks
the whole cine from the detected and from the true corners, measures both, and prints the worst
level's rotation-ROM difference and whether the curve class is the same at every key frame.

    PYTHONPATH=. python benchmarks/detection.py                      # quick (about 30 s)
    PYTHONPATH=. python benchmarks/detection.py --full --random 30   # 3 seeds per case, 30 more (~3 min)

Appearance families (:mod:`dmx.phantom.appearance`), never used to fit the shipped model, so every
family is held out for it: per family, the same unseen phantoms (fitting ranges, other seeds) with
that family's look drawn from each seed, plus the default look and all families at once::

    PYTHONPATH=. python benchmarks/detection.py --families all --per-family 12
    PYTHONPATH=. python benchmarks/detection.py --leave-one-family-out --fit-images 24 --per-family 6

The template detector's levels are checked against the learned network as ``dmx analyze`` does
(``dmx.detect.detector.levels_disputed``, with ``models/heatmap.onnx``); ``--no-level-check`` leaves
the check out, ``--level-nets DIR`` runs it on each family with ``DIR/heatmap-no-FAMILY.onnx`` (the
network trained without that family: the check held out as well).

``--leave-one-family-out`` refits the detector (``dmx.training.fit.fit``) on the default look mixed
with every family but one, and tests on that one (small settings: minutes per family).

``--detector heatmap`` runs every table with the learned heatmap detector (issue #12,
``models/heatmap.onnx``; ``--net`` another network file). Its leave-one-family-out rows read
networks trained without each family (``python -m dmx.training.heatmap train --exclude FAMILY``,
see ``models/README.md``) from ``--nets DIR`` (``DIR/heatmap-no-FAMILY.onnx``)::

    PYTHONPATH=. python benchmarks/detection.py --detector heatmap --families all --per-family 10
    PYTHONPATH=. python benchmarks/detection.py --detector heatmap --leave-one-family-out --nets DIR

``--rom`` measures what clinicians use: per family of ``--families``, ``--per-family`` unseen
phantoms as 30-frame 512-px cines, landmarks from the template detector and from the heatmap
detector (``--nets DIR``: the network trained without that family) on the reference frame, the
cine tracked and measured from them and from the true corners; |delta ROM| per level (deg)::

    PYTHONPATH=. python benchmarks/detection.py --rom --families cortical,posterior --per-family 5 --nets DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dmx.anatomy import BODIES, Vertebra
from dmx.detect import detect_landmarks
from dmx.landmarks import Landmarks
from dmx.measure import measure
from dmx.phantom import make_phantom
from dmx.tracking import track
from dmx.training.fit import training_specs

#: name -> (make_phantom keywords, calibration given to the detector)
CASES: dict[str, tuple[dict, bool]] = {
    "lordotic 512 0.30 mm": (dict(curve="lordotic"), True),
    "kyphotic left MONO1 flex": (
        dict(curve="kyphotic", facing="left", photometric="MONOCHROME1", reference_frame=1),
        True,
    ),
    "S-upper 1024 0.15 mm ext": (
        dict(curve="s_upper_kyphotic", rows=1024, cols=1024, mm_per_px=0.15, reference_frame=3),
        True,
    ),
    "0.40 mm, 300 photons": (dict(curve="lordotic", mm_per_px=0.4, photons=300.0, reference_frame=3), True),
    "S-lower left MONO1 (combo)": (
        dict(curve="s_lower_kyphotic", facing="left", photometric="MONOCHROME1", reference_frame=3),
        True,
    ),
    "JPEG q50, blur 2 px": (
        dict(curve="straight", transfer_syntax="jpeg", jpeg_quality=50, blur_px=2.0, reference_frame=1),
        True,
    ),
    "straight tilt 30, 768 0.2": (
        dict(curve="straight", tilt_deg=30.0, rows=768, cols=768, mm_per_px=0.2),
        True,
    ),
    "uncalibrated lordotic 640": (dict(curve="lordotic", rows=640, cols=640, mm_per_px=0.25), False),
    "anatomy 0.10 lordotic": (dict(curve="lordotic", anatomy_sd=0.10), True),
    "anatomy 0.12 S-upper flex": (
        dict(curve="s_upper_kyphotic", anatomy_sd=0.12, reference_frame=1, rows=640, mm_per_px=0.25),
        True,
    ),
    "anatomy 0.11 kyph left ext": (
        dict(curve="kyphotic", facing="left", anatomy_sd=0.11, reference_frame=3, photons=1500.0),
        True,
    ),
}
#: Cases also tracked and measured (quick mode: the first two).
TRACKED = (
    "lordotic 512 0.30 mm",
    "S-lower left MONO1 (combo)",
    "kyphotic left MONO1 flex",
    "0.40 mm, 300 photons",
    "anatomy 0.10 lordotic",
)
#: Detector under test (``--detector``) and, for ``heatmap``, the network file (``--net``; None: shipped).
DETECTOR = "template"
NET: str | None = None
#: The template detector's level check against the learned network (``dmx.detect.detector.
#: levels_disputed``, as ``dmx analyze`` runs it): ``"shipped"`` (models/heatmap.onnx), ``"off"``
#: (``--no-level-check``), or a folder of networks trained without each family (``--level-nets``:
#: ``heatmap-no-FAMILY.onnx`` on that family, the shipped one on the default look): held out.
LEVEL_CHECK = "shipped"
#: Family tables: the bodies reported are those of :func:`dmx.detect.detect_landmarks`, as ``dmx analyze``
#: reports them (``--as-analyze``: with its search over sizes where nothing is found at the calibrated
#: size, and its other views of a frame where fewer than two bodies are found); the bodies it does not
#: report still count for the confidence line. False: the template detector joined by the network
#: (:func:`dmx.detect.detector.run_combined`) alone, as the tables before session 21.
AS_ANALYZE = False
#: Folder where the family tables keep their rendered frames (``--cache``; None: render every time).
CACHE: str | None = None
#: With ``--dump FILE``: per body the heatmap detector fitted, its features, confidence and worst
#: corner error (the data of the confidence calibration, ``benchmarks/heatmap_calibration.py``).
RECORDS: list[dict] | None = None

#: Anatomical variation of the --random phantoms: uniform in 0..RANDOM_ANATOMY_SD (the fitting set
#: stops at 0.08, so a third of them are beyond it).
RANDOM_ANATOMY_SD = 0.12


def display(ph, frame: int | None = None) -> np.ndarray:
    """Frames (or one frame) in display polarity, as the loader gives them."""
    f = ph.frames.astype(np.float32) if frame is None else ph.frames[frame].astype(np.float32)
    if ph.truth["params"]["photometric"] == "MONOCHROME1":
        f = float((1 << ph.truth["params"]["bits"]) - 1) - f
    return f


def detection_row(name: str, kw: dict, calibrated: bool, seed: int) -> tuple[str, object, object]:
    kw = dict(kw, seed=seed)
    kw.setdefault("frames", 4)
    kw.setdefault("return_to_neutral", False)
    ph = make_phantom(**kw)
    ref = kw.get("reference_frame", 0)
    t0 = time.perf_counter()
    det = detect_landmarks(
        display(ph, ref), mm_per_px=ph.truth["mm_per_px"] if calibrated else None, frame=ref, method=DETECTOR
    )
    dt = time.perf_counter() - t0
    errs = [
        np.hypot(*(det.landmarks.corners_px[v] - ph.landmarks.corners_px[v]).T)
        for v in BODIES
        if v in det.landmarks.corners_px
    ]
    e = np.concatenate(errs) if errs else np.array([np.nan])
    conf = min(det.landmarks.confidence.values()) if det.landmarks.confidence else float("nan")
    missing = ",".join(v.value for v in det.missing) or "-"
    row = (
        f"{name:28s} {seed:5d} {np.median(e):6.2f} {np.percentile(e, 95):6.2f} {e.max():6.2f} "
        f"{len(errs):3d}/6 {conf:5.2f} {dt:5.2f}  {missing}"
    )
    return row, e, det


def tracked_row(name: str, kw: dict, seed: int) -> str:
    kw = dict(kw, seed=seed, frames=30)
    ph = make_phantom(**kw)
    ref = kw.get("reference_frame", 0)
    frames = display(ph)
    mm = ph.truth["mm_per_px"]
    det = detect_landmarks(frames[ref], mm_per_px=mm, frame=ref, method=DETECTOR)
    true_lm = Landmarks(frame=ref, corners_px=dict(ph.landmarks.corners_px))
    got = measure(track(frames, det.landmarks), mm_per_px=mm)
    ref_m = measure(track(frames, true_lm), mm_per_px=mm)
    diffs = [
        abs(got["levels"][L]["rotation_rom_deg"] - ref_m["levels"][L]["rotation_rom_deg"])
        for L in ref_m["levels"]
        if L in got["levels"]
        and got["levels"][L]["rotation_rom_deg"] is not None
        and ref_m["levels"][L]["rotation_rom_deg"] is not None
    ]
    same = all(
        got["curve"][k]["class"] == ref_m["curve"][k]["class"]
        and got["curve"][k]["s_type"] == ref_m["curve"][k]["s_type"]
        for k in ("neutral", "flexion", "extension")
    )
    classes = "/".join(str(got["curve"][k]["class"]) for k in ("neutral", "flexion", "extension"))
    worst = f"{max(diffs):.3f}" if diffs else "null"
    verdict = "same" if same else "DIFFERENT"
    n_true = sum(ref_m["levels"][L]["rotation_rom_deg"] is not None for L in ref_m["levels"])
    return (
        f"{name:28s} {seed:5d} {len(diffs):2d} levels (true corners: {n_true})"
        f"  worst ROM diff {worst:>6s} deg"
        f"  class {verdict} ({classes})"
    )


def random_rows(n: int) -> None:
    """Unseen phantoms drawn from the fitting ranges (other seeds), anatomy varied up to 0.12."""
    errs, found, false_accept, t = [], 0, 0, 0.0
    missed: dict[str, int] = {}
    rng = np.random.default_rng(778)
    for kw in training_specs(n, seed=777, first_seed=900000):
        kw = dict(kw, anatomy_sd=float(np.round(rng.uniform(0.0, RANDOM_ANATOMY_SD), 3)))
        ph = make_phantom(**kw)
        ref = kw["reference_frame"]
        t0 = time.perf_counter()
        det = detect_landmarks(display(ph, ref), mm_per_px=ph.truth["mm_per_px"], frame=ref, method=DETECTOR)
        t += time.perf_counter() - t0
        for v in det.missing:
            missed[v.value] = missed.get(v.value, 0) + 1
        for v, c in det.landmarks.corners_px.items():
            e = np.hypot(*(c - ph.landmarks.corners_px[v]).T)
            errs.append(e)
            found += 1
            false_accept += int(e.max() > 3.0)
    e = np.concatenate(errs)
    print(
        f"{'random unseen, anat 0-0.12':28s} {n:5d} {np.median(e):6.2f} {np.percentile(e, 95):6.2f} "
        f"{e.max():6.2f} {found:3d}/{6 * n} bodies, {false_accept} with a corner > 3 px; {t / n:.2f} s/image"
    )
    print(f"{'':28s} left out: {', '.join(f'{k} x{v}' for k, v in sorted(missed.items())) or 'none'}")


# --------------------------------------------------------------------------- appearance families

#: Seeds of the family phantoms (unseen by the fit, which uses 100000+; the --random set uses 900000+).
FAMILY_SPEC_SEED, FAMILY_FIRST_SEED = 4242, 700000
#: Confidence at which the calibration line counts a body as reported.
CALIBRATION_CONFIDENCE = 0.5


def family_specs(family: str | None, n: int, *, max_size_px: int) -> list[dict]:
    """``n`` unseen phantoms from the fitting ranges, with ``family``'s look (``None``: the default,
    ``"all"``: every family) drawn from each phantom's seed. The same seeds for every family."""
    from dmx.phantom import draw_appearance

    specs = training_specs(n, seed=FAMILY_SPEC_SEED, first_seed=FAMILY_FIRST_SEED)
    if family is not None:
        for kw in specs:
            kw["appearance"] = draw_appearance(family, seed=kw["seed"], max_size_px=max_size_px)
    return specs


def _level_net(family: str | None):
    """The network of the template detector's level check on ``family`` (None: no check)."""
    from dmx.detect import model_file
    from dmx.detect.heatmap import NET_NAME, load_net

    if LEVEL_CHECK == "off":
        return None
    if LEVEL_CHECK == "shipped" or family in (None, "default") or "+" in family:
        return load_net(model_file(NET_NAME))  # no network was trained without all families at once
    return load_net(Path(LEVEL_CHECK) / f"heatmap-no-{family}.onnx")


def _bodies_found(
    image: np.ndarray, model, mm_per_px: float, family: str | None = None
) -> list[tuple[object, np.ndarray, float, bool]]:
    """Every body the detector fitted (vertebra, corners, confidence, reported), before the
    confidence cut; nothing when no column is found (as :func:`dmx.detect.detect_landmarks`
    decides). The template detector's bodies get confidence 0 when the level check disputes their
    levels (they are then not reported); the learned network adds its bodies where the two agree
    (:func:`dmx.detect.detector.run_combined`); ``family`` chooses the network of both
    (:func:`_level_net`)."""
    from dmx.detect import MIN_SIDE_PX
    from dmx.detect.detector import HEATMAP_THRESHOLD, network_disagrees, run_combined, run_heatmap

    if min(image.shape) < MIN_SIDE_PX:
        return []
    if DETECTOR == "heatmap":
        from dmx.detect import model_file
        from dmx.detect.heatmap import NET_NAME, load_net

        result = run_heatmap(image, model, load_net(NET or model_file(NET_NAME)), mm_per_px=mm_per_px)
        if RECORDS is not None:
            RECORDS.extend(
                {
                    "vertebra": b.vertebra.value,
                    "features": b.features,
                    "confidence": float(b.confidence),
                    "corners": b.corners_px,
                }
                for b in result.bodies
                if b.corners_px is not None
            )
        levels_ok = network_disagrees(image, result, {}, model) is None  # as detect_landmarks
        return [
            (b.vertebra, b.corners_px, float(b.confidence), levels_ok and b.confidence >= HEATMAP_THRESHOLD)
            for b in result.bodies
            if b.corners_px is not None
        ]
    comb = run_combined(image, model, _level_net(family), mm_per_px=mm_per_px)
    rows = [
        (
            b.vertebra,
            b.corners_px,
            0.0 if comb.disputed and source == "template" else float(b.confidence),
            reported,
        )
        for b, source, reported in comb.bodies
        if b.corners_px is not None
    ]
    if AS_ANALYZE and LEVEL_CHECK == "shipped":
        det = detect_landmarks(image, mm_per_px=mm_per_px)
        found = det.landmarks.corners_px
        rows = [(v, c, conf, False) for v, c, conf, _ in rows if v not in found] + [
            (v, c, float(det.landmarks.confidence[v]), True) for v, c in found.items()
        ]
    return rows


def reference_frame(kw: dict) -> tuple[np.ndarray, dict, float]:
    """A phantom's reference frame (display polarity), its true corners and pixel size; kept in
    :data:`CACHE` (keyed by the phantom's keywords) when set."""
    import hashlib
    from pathlib import Path

    path = None
    if CACHE:
        key = hashlib.sha1(repr(sorted(kw.items())).encode()).hexdigest()[:16]
        path = Path(CACHE) / f"{key}.npz"
        if path.is_file():
            d = np.load(path)
            return d["image"], {v: d["corners"][i] for i, v in enumerate(BODIES)}, float(d["mpp"])
    ph = make_phantom(**kw)
    ref = kw["reference_frame"]
    image = display(ph, ref)
    truth = dict(ph.landmarks.corners_px)
    mpp = float(np.mean(ph.truth["mm_per_px"]))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, image=image, corners=np.stack([truth[v] for v in BODIES]), mpp=mpp)
    return image, truth, mpp


def family_name(kw: dict) -> str:
    """The appearance families a phantom was drawn with ('default' without any)."""
    look = kw.get("appearance")
    return (
        "+".join(sorted(str(f) for f in look.families)) if look is not None and look.families else "default"
    )


#: A wrong body (worst corner > 3 px) counts as "one level off" when its centre lies within this
#: distance (mm) of the true centre of another level.
LEVEL_OFF_MM = 2.0


def _level_off(corners: np.ndarray, truth: dict, vertebra, mm_per_px: float) -> bool:
    """Whether a reported body sits on another level's body (its level wrong, not its outline)."""
    centre = corners.mean(axis=0)
    return any(
        float(np.hypot(*(centre - truth[v].mean(axis=0)))) * mm_per_px < LEVEL_OFF_MM
        for v in BODIES
        if v != vertebra
    )


def family_stats(specs: list[dict], model) -> dict:
    """Detection figures of ``model`` on the phantoms ``specs`` (see :func:`family_row`)."""
    found = {v: 0 for v in BODIES}
    errors, worst_reported, calib, seconds = [], [], [], 0.0
    level_off = 0
    for kw in specs:
        image, truth, mpp = reference_frame(kw)
        t0 = time.perf_counter()
        first = len(RECORDS) if RECORDS is not None else 0
        bodies = _bodies_found(image, model, mpp, family_name(kw))
        seconds += time.perf_counter() - t0
        for r in RECORDS[first:] if RECORDS is not None else []:
            r["family"] = family_name(kw)
            r["seed"] = kw["seed"]
            r["worst_px"] = float(np.hypot(*(r.pop("corners") - truth[Vertebra(r["vertebra"])]).T).max())
            r["mm_per_px"] = mpp
        for v, c, conf, reported in bodies:
            e = np.hypot(*(c - truth[v]).T)
            if conf >= CALIBRATION_CONFIDENCE:
                calib.append(e.max() <= 3.0)
            if reported:
                found[v] += 1
                errors.append(e)
                worst_reported.append(e.max())
                if e.max() > 3.0 and _level_off(c, truth, v, mpp):
                    level_off += 1
    e = np.concatenate(errors) if errors else np.array([np.nan])
    return {
        "n": len(specs),
        "found": found,
        "median": float(np.median(e)),
        "p95": float(np.percentile(e, 95)),
        "max": float(np.max(e)),
        "over3": int(np.sum(np.array(worst_reported) > 3.0)),
        "level_off": level_off,
        "reported": len(worst_reported),
        "calibrated": (float(np.mean(calib)) if calib else float("nan"), len(calib)),
        "seconds": seconds / max(len(specs), 1),
    }


FAMILY_HEAD = (
    f"{'appearance':14s} {'n':>3s} {'C2':>5s} {'C3-C6':>6s} {'C7':>5s} {'med':>6s} {'p95':>6s} {'max':>7s} "
    f"{'>3px':>9s} {'lvl':>4s} {'ok@0.5':>11s} {'s/img':>6s}"
)


def family_row(name: str, st: dict) -> str:
    """One line: found rates of C2, C3-C6 and C7; corner error median/p95/max (px) of reported
    bodies; reported bodies with a corner beyond 3 px, and of those the ones on another level's
    body (lvl: the level wrong, not the outline); of bodies at confidence >= 0.5, the share
    whose worst corner is within 3 px (and how many); detection seconds per image."""
    n = st["n"]
    mid = sum(st["found"][v] for v in BODIES[1:5]) / (4 * n)
    share, k = st["calibrated"]
    return (
        f"{name:14s} {n:3d} {st['found'][BODIES[0]] / n:5.0%} {mid:6.0%} {st['found'][BODIES[5]] / n:5.0%} "
        f"{st['median']:6.2f} {st['p95']:6.2f} {st['max']:7.2f} {st['over3']:4d}/{st['reported']:<4d} "
        f"{st['level_off']:4d} "
        f"{share:6.0%} ({k:3d}) {st['seconds']:6.2f}"
    )


def family_table(families: list[str], n: int, *, max_size_px: int, model_path: str | None = None) -> None:
    """The detector (default: the shipped one, fitted on the default look only) on each family."""
    from dmx.detect import _cached_model

    model = _cached_model(model_path or None)
    print(FAMILY_HEAD)
    for name in ["default", *families, "all"]:
        fam = None if name == "default" else name
        st = family_stats(family_specs(fam, n, max_size_px=max_size_px), model)
        print(family_row(name, st), flush=True)


def leave_one_family_out_heatmap(families: list[str], n: int, *, nets: str, max_size_px: int) -> None:
    """The heatmap networks trained without each family (``nets/heatmap-no-FAMILY.onnx``) on that family."""
    from pathlib import Path

    from dmx.detect import _cached_model, model_file

    global NET
    model = _cached_model(model_file())
    print(
        f"leave-one-family-out, heatmap detector: networks from {nets}, {n} phantoms of the held-out family"
    )
    print(FAMILY_HEAD)
    for held in families:
        path = Path(nets) / f"heatmap-no-{held}.onnx"
        if not path.is_file():
            print(
                f"-{held:13s} no network {path.name} "
                f"(train it: python -m dmx.training.heatmap train --exclude {held})"
            )
            continue
        NET = str(path)
        st = family_stats(family_specs(held, n, max_size_px=max_size_px), model)
        print(family_row(f"-{held}", st), flush=True)


def leave_one_family_out(families: list[str], n: int, *, fit_images: int, max_size_px: int) -> None:
    """Refit without each family (default look + the others mixed in) and test on it."""
    from dmx.phantom import Family
    from dmx.training.fit import fit

    everything = [f.value for f in Family]
    print(f"leave-one-family-out: fit on {fit_images} phantoms each, test on {n} of the held-out family")
    print(FAMILY_HEAD)
    for held in families:
        others = [f for f in everything if f != held]
        t0 = time.perf_counter()
        model = fit(fit_images, families=others, log=lambda m: None)
        fitted = time.perf_counter() - t0
        st = family_stats(family_specs(held, n, max_size_px=max_size_px), model)
        print(family_row(f"-{held}", st) + f"  (fit {fitted:.0f} s)", flush=True)


def mixed_reference(families: list[str], n: int, *, fit_images: int, max_size_px: int) -> None:
    """The same-size refit with every family in the mix, on each family: what a fit of that size
    gives when the family is NOT held out (the reference for the leave-one-family-out rows)."""
    from dmx.phantom import Family
    from dmx.training.fit import fit

    t0 = time.perf_counter()
    model = fit(fit_images, families=[f.value for f in Family], log=lambda m: None)
    print(f"reference: one fit on {fit_images} phantoms with every family, {time.perf_counter() - t0:.0f} s")
    print(FAMILY_HEAD)
    for fam in families:
        st = family_stats(family_specs(fam, n, max_size_px=max_size_px), model)
        print(family_row(f"+{fam}", st), flush=True)


#: Frames and image side of the --rom cines (the pixel size is the phantom's, at least ROM_MIN_MM so
#: the column fits in the frame).
ROM_FRAMES, ROM_SIZE_PX, ROM_MIN_MM = 30, 512, 0.3


def _reported_landmarks(
    image: np.ndarray, model, mm_per_px: float, frame: int, family: str | None = None
) -> Landmarks:
    """The bodies the detector under test reports (confidence at its threshold) as landmarks;
    ``family`` chooses the network of the template detector's checks (:func:`_level_net`)."""
    bodies = _bodies_found(image, model, mm_per_px, family)
    return Landmarks(
        frame=frame,
        corners_px={v: c for v, c, conf, reported in bodies if reported},
        confidence={v: conf for v, c, conf, reported in bodies if reported},
    )


def _rom_deg(frames: np.ndarray, landmarks: Landmarks, mm) -> dict[str, float | None]:
    """Rotation ROM per level (deg) of the cine tracked and measured from ``landmarks``."""
    from dmx.anatomy import LEVELS

    if len(landmarks.corners_px) < 2:
        return dict.fromkeys((level.value for level in LEVELS), None)
    got = measure(track(frames, landmarks), mm_per_px=mm)
    return {level.value: got["levels"].get(level.value, {}).get("rotation_rom_deg") for level in LEVELS}


def rom_table(families: list[str], n: int, *, nets: str | None, max_size_px: int) -> None:
    """Per-level rotation ROM from each detector's landmarks against the true corners' (--rom).

    Per family, ``n`` unseen phantoms of that look rendered as :data:`ROM_FRAMES`-frame cines of
    :data:`ROM_SIZE_PX` px; the template detector and the heatmap detector (with ``nets``, the
    network trained without the family, ``heatmap-no-FAMILY.onnx``: a held-out figure; otherwise
    the shipped network) place the landmarks on the reference frame; the cine is tracked and
    measured from them, from the true corners of every body, and from the true corners of the
    bodies the detector reported. Per phantom and detector: the levels measured from both, the
    worst |delta ROM| against all true corners and against the same bodies' true corners (the
    detection's own error: the tracker measures a level differently when its neighbours are not
    tracked), and |delta ROM| per level against all true corners (deg; '-' where not measured).
    """
    from pathlib import Path

    from dmx.anatomy import LEVELS
    from dmx.detect import _cached_model, model_file

    global DETECTOR, NET
    model = _cached_model(model_file())
    print(
        f"rotation ROM from automatic landmarks against the true corners: {ROM_FRAMES}-frame cines, "
        f"{ROM_SIZE_PX} px; |delta ROM| (deg)"
    )
    print(
        f"{'family':12s} {'seed':>6s} {'detector':9s} {'levels':>6s} {'worst':>6s} {'same':>6s}"
        "  per level C2-C3 .. C6-C7 (against all true corners)"
    )
    summary: dict[str, list[tuple[float, float]]] = {}
    missing: dict[str, int] = {}
    for fam in families:
        net = Path(nets) / f"heatmap-no-{fam}.onnx" if nets else None
        for kw in family_specs(fam, n, max_size_px=max_size_px):
            kw = dict(
                kw,
                frames=ROM_FRAMES,
                rows=ROM_SIZE_PX,
                cols=ROM_SIZE_PX,
                mm_per_px=max(float(kw["mm_per_px"]), ROM_MIN_MM),
            )
            ph = make_phantom(**kw)
            ref = kw["reference_frame"]
            frames = display(ph)
            mm = ph.truth["mm_per_px"]
            mpp = float(np.mean(mm))
            truth = dict(ph.landmarks.corners_px)
            true_rom = _rom_deg(frames, Landmarks(frame=ref, corners_px=truth), mm)
            for det_name in ("template", "heatmap"):
                DETECTOR = det_name
                NET = str(net) if det_name == "heatmap" and net is not None and net.is_file() else None
                lm = _reported_landmarks(frames[ref], model, mpp, ref, fam)
                got = _rom_deg(frames, lm, mm)
                same = _rom_deg(
                    frames, Landmarks(frame=ref, corners_px={v: truth[v] for v in lm.corners_px}), mm
                )
                cells, diffs = [], []
                for level in LEVELS:
                    t, g, s = true_rom[level.value], got[level.value], same[level.value]
                    if t is None or g is None:
                        cells.append("    -")
                        if t is not None:
                            missing[det_name] = missing.get(det_name, 0) + 1
                        continue
                    diffs.append((abs(g - t), abs(g - s) if s is not None else float("nan")))
                    cells.append(f"{abs(g - t):5.2f}")
                summary.setdefault(f"{fam} {det_name}", []).extend(diffs)
                worst = f"{max(d[0] for d in diffs):6.2f}" if diffs else "     -"
                worst_same = f"{max(d[1] for d in diffs):6.2f}" if diffs else "     -"
                label = det_name + ("*" if det_name == "heatmap" and NET else "")
                print(
                    f"{fam:12s} {kw['seed']:6d} {label:9s} {len(diffs):6d} {worst} {worst_same}  "
                    + " ".join(cells),
                    flush=True,
                )
    print("(heatmap*: the network trained without that family)")
    for key, d in summary.items():
        d_all = np.array([x[0] for x in d]) if d else np.array([np.nan])
        d_same = np.array([x[1] for x in d]) if d else np.array([np.nan])
        print(
            f"{key:24s} {len(d):3d} levels: against all true corners median {np.median(d_all):.2f}, "
            f"max {np.max(d_all):.2f} deg, {int(np.sum(d_all > 1.0))} over 1 deg; against the same "
            f"bodies' true corners max {np.max(d_same):.2f} deg, {int(np.sum(d_same > 1.0))} over 1 deg"
        )
    print(f"levels the true corners measure but a detector's landmarks do not: {missing or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="three seeds per case and five tracked cases")
    parser.add_argument(
        "--random", type=int, default=0, metavar="N", help="also N unseen phantoms drawn like the fitting set"
    )
    parser.add_argument(
        "--families",
        default=None,
        metavar="LIST",
        help="per appearance family (FAMILY[,FAMILY] or all): the shipped detector on each, then stop",
    )
    parser.add_argument(
        "--leave-one-family-out",
        action="store_true",
        help="refit without each family of --families (default all) and test on it, then stop",
    )
    parser.add_argument(
        "--mixed-reference",
        action="store_true",
        help="with --leave-one-family-out: instead of one refit per family, one refit of the same size "
        "with every family in the mix, tested on each family (the reference for the held-out rows)",
    )
    parser.add_argument("--per-family", type=int, default=8, metavar="N", help="phantoms per family")
    parser.add_argument("--fit-images", type=int, default=24, metavar="N", help="phantoms per refit")
    parser.add_argument(
        "--max-size-px", type=int, default=1024, help="largest image the acquisition family draws"
    )
    parser.add_argument(
        "--model", default=None, help="detector file for --families (default: the shipped one)"
    )
    parser.add_argument("--detector", choices=("template", "heatmap"), default="template")
    parser.add_argument("--net", default=None, help="heatmap network file (default: models/heatmap.onnx)")
    parser.add_argument(
        "--nets",
        default=None,
        help="folder of heatmap-no-FAMILY.onnx for --leave-one-family-out --detector heatmap",
    )
    parser.add_argument(
        "--rom",
        action="store_true",
        help="per-level rotation ROM from both detectors' landmarks against the true corners' on short "
        "cines of each family of --families (held-out networks with --nets for the heatmap detector, "
        "--level-nets for the default one's), then stop",
    )
    parser.add_argument(
        "--no-level-check",
        action="store_true",
        help="template detector without its level check against the learned network",
    )
    parser.add_argument(
        "--level-nets",
        default=None,
        metavar="DIR",
        help="the template detector's level check on each family with DIR/heatmap-no-FAMILY.onnx "
        "(networks trained without it: held out) instead of the shipped network",
    )
    parser.add_argument("--cache", default=None, help="folder keeping the family tables' rendered frames")
    parser.add_argument(
        "--as-analyze",
        action="store_true",
        help="family tables: the bodies dmx analyze reports (its searches over sizes and other views too)",
    )
    parser.add_argument(
        "--dump", default=None, help="with --detector heatmap: per-body features and errors to this .json"
    )
    args = parser.parse_args()
    global DETECTOR, NET, CACHE, RECORDS, LEVEL_CHECK, AS_ANALYZE
    DETECTOR, NET, CACHE, AS_ANALYZE = args.detector, args.net, args.cache, args.as_analyze
    LEVEL_CHECK = "off" if args.no_level_check else (args.level_nets or "shipped")
    if args.dump:
        RECORDS = []
        import atexit
        import json

        def _write() -> None:
            rows = [
                dict(r, features=[None if not np.isfinite(x) else float(x) for x in r["features"]])
                for r in RECORDS or []
                if "worst_px" in r
            ]
            Path(args.dump).write_text(json.dumps(rows, indent=0))
            print(f"wrote {len(rows)} body records to {args.dump}")

        atexit.register(_write)
    if args.rom:
        from dmx.phantom import parse_families

        fams = [f.value for f in parse_families(args.families or "all")]
        rom_table(fams, args.per_family, nets=args.nets, max_size_px=args.max_size_px)
        return
    if args.families is not None or args.leave_one_family_out:
        from dmx.phantom import parse_families

        fams = [f.value for f in parse_families(args.families or "all")]
        if args.families is not None:
            family_table(fams, args.per_family, max_size_px=args.max_size_px, model_path=args.model)
            print()
        if args.leave_one_family_out and DETECTOR == "heatmap":
            if not args.nets:
                parser.error("--leave-one-family-out --detector heatmap needs --nets DIR")
            leave_one_family_out_heatmap(fams, args.per_family, nets=args.nets, max_size_px=args.max_size_px)
            return
        if args.leave_one_family_out:
            if args.mixed_reference:
                mixed_reference(
                    fams, args.per_family, fit_images=args.fit_images, max_size_px=args.max_size_px
                )
                return
            leave_one_family_out(
                fams, args.per_family, fit_images=args.fit_images, max_size_px=args.max_size_px
            )
        return
    seeds = (5001, 5002, 5003) if args.full else (5001,)
    print(
        f"{'case':28s} {'seed':>5s} {'med':>6s} {'p95':>6s} {'max':>6s} found {'minc':>5s} {'s':>5s}  missing"
    )
    allerr = []
    for i, (name, (kw, cal)) in enumerate(CASES.items()):
        for s in seeds:
            row, e, _ = detection_row(name, kw, cal, s + 10 * i)
            allerr.append(e)
            print(row, flush=True)
    e = np.concatenate(allerr)
    e = e[np.isfinite(e)]
    print(
        f"{'all corners':28s} {'':5s} {np.median(e):6.2f} {np.percentile(e, 95):6.2f} {e.max():6.2f}"
        f"  (n={e.size})"
    )
    print()
    if args.random:
        random_rows(args.random)
        print()
    for name in TRACKED if args.full else TRACKED[:2]:
        kw, _ = CASES[name]
        print(tracked_row(name, kw, 7001), flush=True)


if __name__ == "__main__":
    main()
