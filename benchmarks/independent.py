"""dmx on studies from the independent renderer (benchmarks/independent_phantom.py).

Renders each setting (cached by seed and options), runs ``dmx analyze`` with the true
frame-0 landmarks and without landmarks (automatic detection), and prints one table:

* given landmarks: per-level per-frame |angle_deg - truth| median / p95 / max over the
  frames where dmx measured the level, the worst level, how many level-frames were not
  measured, |rotation_rom_deg - truth ROM| per level (truth ROM between the true key
  frames, spec section 6) and the worst tracked-corner error;
* automatic: which of C2-C7 were found on frame 0 and their worst-corner error vs truth, and each
  level's rotation ROM from them (``dmx analyze --landmarks``) minus that from the true landmarks.

    PYTHONPATH=. python benchmarks/independent.py [--cache DIR] [--frames 60] [--only NAME]
    PYTHONPATH=. python benchmarks/independent.py --detect-held-out [A|B] [--detector heatmap]  # detection
    PYTHONPATH=. python benchmarks/independent.py --detect-held-out C --rom --frames 30   # ROM: auto vs true
    PYTHONPATH=. python benchmarks/independent.py --detect-held-out C --cine 30   # detection on cines
    PYTHONPATH=. python benchmarks/independent.py --noise-split 4 [--only NAME]   # bias vs noise
    PYTHONPATH=. python benchmarks/independent.py --shoulder-seeds 301,302,13:1   # C7 under heavy shoulders

``--noise-split R`` renders each setting R more times with the same anatomy and motion and only the
quantum noise drawn anew (``noise_seed`` 1..R), tracks each with the true landmarks, and splits each
level's signed per-frame angle error into the part every noise draw shares (a bias of the method: rms
over frames of the mean over the draws) and the part that changes with the draw (median over frames of
the SD across the draws). The first tells what a better method could remove; the second is the noise
floor of the images (the mean over R draws still holds 1/sqrt(R) of it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent_phantom as ip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BODIES = ["C2", "C3", "C4", "C5", "C6", "C7"]
LEVELS = ["C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7"]
SETTINGS = [
    ("512/0.3 right M2", 11, dict(size=512, mm_per_px=0.3, facing="right")),
    (
        "1024/0.175 left M1 12b",
        12,
        dict(size=1024, mm_per_px=0.175, facing="left", photometric="MONOCHROME1", bits=12),
    ),
    (
        "768/0.25 mand-low heavy-sh",
        13,
        dict(size=768, mm_per_px=0.25, mandible_low=True, heavy_shoulders=True),
    ),
    ("768/0.2 left low-dose", 14, dict(size=768, mm_per_px=0.2, facing="left", photons=3e4)),
    ("512/0.4 no mand/sh", 15, dict(size=512, mm_per_px=0.4, mandible=False, shoulders=False)),
]


def study(cache: Path, seed: int, opts: dict) -> tuple[Path, dict]:
    key = f"s{seed}_" + "_".join(f"{k}-{v}" for k, v in sorted(opts.items()))
    out = cache / key.replace("/", "")
    tp = out / "truth.json"
    if tp.exists() and (out / "study.dcm").exists():
        return out, json.loads(tp.read_text())
    return out, ip.render_study(out, seed, **opts)


def set_studies(cache: Path, sets: str):
    """Each study of the named detection sets (letters of :data:`HELD_OUT_SETS` and
    :data:`DEVELOPMENT_SETS`), rendered into ``cache`` if missing: ``(set name, seed, folder, truth,
    loaded sequence)``."""
    from dmx.io.load import load_sequence

    for name, generator, seeds, _seen in HELD_OUT_SETS + DEVELOPMENT_SETS:
        if name not in sets:
            continue
        for seed, opts in held_out_specs(generator, seeds):
            out, truth = study(cache, seed, opts)
            yield name, seed, out, truth, load_sequence(out / "study.dcm")


def dmx(args: list[str]) -> tuple[int, str]:
    """``python -m dmx ARGS`` with this checkout's dmx: ``-P`` keeps the working directory off
    ``sys.path`` (run from another checkout, its dmx would be imported instead of this one's)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-P", "-m", "dmx", *args], capture_output=True, text=True, env=env)
    return r.returncode, (r.stdout + r.stderr)


def cobb(c: dict) -> float:
    """cobb_c2c7_deg from one frame's true corners (spec 3 and 5)."""
    k = {b: np.asarray(c[b]) for b in BODIES}
    cr = lambda p, q: p[0] * q[1] - p[1] * q[0]  # noqa: E731
    hs = [np.sign(cr((v[0] + v[3] - v[1] - v[2]) / 2, (v[0] + v[1] - v[2] - v[3]) / 2)) for v in k.values()]
    h = 1.0 if sum(hs) >= 0 else -1.0
    p, q = k["C7"][3] - k["C7"][2], k["C2"][3] - k["C2"][2]
    return h * math.degrees(math.atan2(cr(p, q), p @ q))


def given(out: Path, truth: dict) -> dict:
    rc, log = dmx(
        [
            "analyze",
            str(out / "study.dcm"),
            "--landmarks",
            str(out / "landmarks.json"),
            "--out",
            str(out / "res"),
        ]
    )
    mp = out / "res" / "measurements.json"
    if not mp.exists():
        return {"error": log.strip().splitlines()[-1] if log.strip() else f"exit {rc}"}
    m = json.loads(mp.read_text())
    cb = [cobb(c) for c in truth["corners"]]
    fl, ex = int(np.argmin(cb)), int(np.argmax(cb))
    res = {"levels": {}, "flex_ext": (m["frames"]["flexion"], m["frames"]["extension"], fl, ex)}
    for lv in LEVELS:
        a = m["levels"][lv]["angle_deg"]
        t = truth["angle_deg"][lv]
        err = np.array([abs(x - y) for x, y in zip(a, t, strict=True) if x is not None])
        rom_t = t[ex] - t[fl]
        rom = m["levels"][lv].get("rotation_rom_deg")
        res["levels"][lv] = dict(
            med=float(np.median(err)) if err.size else math.nan,
            p95=float(np.percentile(err, 95)) if err.size else math.nan,
            max=float(err.max()) if err.size else math.nan,
            missing=sum(x is None for x in a),
            rom_err=abs(rom - rom_t) if rom is not None else math.nan,
        )
    worst = 0.0
    for b in BODIES:
        tr = m["tracks"].get(b) or {}
        for i, cn in enumerate(ip.CORNERS):
            for f, xy in enumerate(tr.get(cn) or []):
                if xy is not None:
                    worst = max(worst, float(np.hypot(*(np.asarray(xy) - truth["corners"][f][b][i]))))
    res["corner_max_mm"] = worst * truth["mm_per_px"]
    return res


def auto(out: Path, truth: dict) -> dict:
    rc, log = dmx(["landmarks", str(out / "study.dcm"), "--out", str(out / "auto_landmarks.json")])
    p = out / "auto_landmarks.json"
    if rc != 0 or not p.exists():
        lines = [ln for ln in log.strip().splitlines() if "error" in ln] or log.strip().splitlines()[-1:]
        msg = (lines[-1] if lines else f"exit {rc}").replace(str(out / "study.dcm"), "<study>")
        return {"found": {}, "message": msg.replace(str(p), "<out>")}
    pts = json.loads(p.read_text())["points"]
    found = {}
    for b in BODIES:
        if b in pts and all(c in pts[b] for c in ip.CORNERS):
            d = [
                np.hypot(*(np.asarray(pts[b][c]) - truth["corners"][0][b][i]))
                for i, c in enumerate(ip.CORNERS)
            ]
            found[b] = max(d) * truth["mm_per_px"]
    # what clinicians use: each level's rotation ROM from the automatic landmarks against that from the
    # true ones (the issue #12 target: within 1 deg)
    dmx(["analyze", str(out / "study.dcm"), "--landmarks", str(p), "--out", str(out / "res_auto")])
    rom = {}
    ma, mg = out / "res_auto" / "measurements.json", out / "res" / "measurements.json"
    if ma.exists() and mg.exists():
        la, lg = json.loads(ma.read_text())["levels"], json.loads(mg.read_text())["levels"]
        for lv in LEVELS:
            a, g = la[lv]["rotation_rom_deg"], lg[lv]["rotation_rom_deg"]
            if a is not None and g is not None:
                rom[lv] = a - g
    return {"found": found, "message": "", "rom": rom}


#: The detection-only studies (``--detect-held-out``), two sets, each drawn by its own generator:
#: ``(name, generator seed, study seeds, what was seen of it)``. Set A was never looked at while the
#: fallback chains of session 9 were developed (on the five SETTINGS studies above), but its result
#: was seen before the C2 test of session 11 was chosen (seed 40's column one level off among them),
#: so for that test it is development data; set B was rendered in session 11 after the C2 test was
#: fixed and is held out from it, but its results led to adding the network's bodies to partial
#: columns and to their 0.7 threshold; set C was rendered after every choice of session 11.
HELD_OUT_SETS = (
    ("A", 2026, range(31, 43), "seen before the C2 test of session 11 was chosen"),
    ("B", 2027, range(300, 324), "held out from the C2 test, seen before the network joined partial columns"),
    ("C", 2028, range(500, 524), "held out from every choice of session 11"),
    (
        "I",
        2036,
        range(1400, 1440),
        "session 41, drawn after the search of other frames of a cine was written: held out from it",
    ),
    (
        "J",
        2040,
        range(1600, 1680),
        "session 50, drawn to judge a change of the C2 test (not kept): held out from every choice before it",
    ),
    (
        "K",
        2041,
        range(1700, 1780),
        "session 51, drawn before its change of the network's level votes was run on it: held out from it",
    ),
)
#: Development sets drawn in session 14 by new generators, not held out: D's results led to the level
#: conflict rule of ``dmx.detect.detector.run_combined`` (seed 934); E was a check of it before the
#: held-out sets were run; F and G (80 studies each), searches for other wrong levels after it (G's led to
#: the check of the column as reported, seed 1126). ``--detect-held-out D`` (``E``, ``F``, ``G``) runs them
#: like the held-out ones. Session 15 chose the margin of the C2 test's move of a network column
#: (``dmx.detect.detector.C2_MOVE_MARGIN``) on D-G; H (120 studies, a new generator) was drawn after that
#: choice and run once with it and once without, as a check: held out from it.
DEVELOPMENT_SETS = (
    ("D", 2031, range(900, 940), "development, session 14"),
    ("E", 2032, range(950, 990), "development, session 14 (a check of the level conflict rule)"),
    ("F", 2033, range(1000, 1080), "development, session 14 (a search for wrong levels)"),
    (
        "G",
        2034,
        range(1100, 1180),
        "development, session 14 (a search for wrong levels; led to the column check)",
    ),
    (
        "H",
        2035,
        range(1200, 1320),
        "session 15, held out from the C2 move's margin (chosen on D-G); seen in session 16 (dens contrast)",
    ),
)


def held_out_specs(generator: int = 2026, seeds=range(31, 43)) -> list[tuple[int, dict]]:
    """Detection studies with settings drawn from one generator (3 frames each)."""
    rng = np.random.default_rng(generator)
    out = []
    for seed in seeds:
        opts = dict(
            frames=3,
            size=int(rng.choice([512, 768, 1024])),
            mm_per_px=float(np.round(rng.uniform(0.17, 0.35), 3)),
            facing=str(rng.choice(["right", "left"])),
            photometric=str(rng.choice(["MONOCHROME2", "MONOCHROME1"])),
        )
        if opts["size"] * opts["mm_per_px"] < 150:  # the field must hold the neck
            opts["mm_per_px"] = round(150 / opts["size"], 3)
        if rng.random() < 0.3:
            opts["mandible_low"] = True
        if rng.random() < 0.3:
            opts["heavy_shoulders"] = True
        out.append((seed, opts))
    return out


#: A reported body whose worst corner is further than this from the truth (mm) is on another
#: structure (a body is 15-20 mm deep): counted as wrong, and left out of the corner statistics.
WRONG_MM = 5.0


def detect_held_out(
    cache: Path, sets: str = "AB", method: str | None = None, calibrated: bool = True, cine: int = 0
) -> None:
    """Automatic landmarks on the detection studies: per study the bodies found, their worst-corner
    error against the truth (px) and where they came from; per set C2-C7 found, wrong reports and
    the corner errors (px) of the right ones. ``calibrated`` False: the detector is not given the
    pixel size (it searches over body sizes). ``cine`` N > 0: each study rendered as an N-frame cine
    (same settings, another draw of motion and noise) and detected as ``dmx analyze`` does
    (:func:`dmx.pipeline.detect_on_sequence`: frame 0 offered the frames around it, other frames where it
    reports no two adjacent bodies), against the truth at the frame the bodies were found on."""
    from dmx.detect import MEAN_ADDED, NETWORK_MARK, detect_landmarks
    from dmx.errors import DetectionFailedError
    from dmx.io.load import load_sequence
    from dmx.pipeline import cine_mean, detect_on_sequence

    on_mean = MEAN_ADDED.split("{level}")[1].split("{frames}")[0]

    for name, generator, seeds, seen in HELD_OUT_SETS + DEVELOPMENT_SETS:
        if name not in sets:
            continue
        specs = held_out_specs(generator, seeds)
        how = ("" if calibrated else ", the detector not given the pixel size") + (
            f", as {cine}-frame cines (frame 0 and the frames around it)" if cine else ""
        )
        print(f"set {name} (seeds {seeds.start}-{seeds.stop - 1}, {len(specs)} studies; {seen}{how}):")
        found = dict.fromkeys(BODIES, 0)
        wrong, corners, studies_any, to_vertex, seconds = 0, [], 0, [], []
        c2_inf, c2_sup, c2_wall = [], [], []
        c7 = {True: [0, 0], False: [0, 0]}  # C7 found / studies, with heavy shoulders and without
        mean_found: dict[str, int] = {}  # right bodies found on the cine's mean, per level
        mean_worst: list[float] = []  # and their worst corners (px)
        for seed, opts in specs:
            out, truth = study(cache, seed, {**opts, "frames": cine} if cine else opts)
            seq = load_sequence(out / "study.dcm")
            t0 = time.perf_counter()
            if cine and calibrated and method is None:
                try:
                    det = detect_on_sequence(seq, study_path=out / "study.dcm")
                except DetectionFailedError as exc:
                    det = exc.detection  # what frame 0 gave (detect_on_sequence attaches it)
            else:
                det = detect_landmarks(
                    seq.frames[0],
                    mm_per_px=seq.mm_per_px if calibrated else None,
                    method=method,
                    mean_of=cine_mean(seq.frames, 0) if cine else None,
                )
            seconds.append(time.perf_counter() - t0)
            at = det.landmarks.frame  # the frame the bodies were found on (another where frame 0 had none)
            other = f" (on frame {at})" if at else ""
            shown = []
            c7_right = False
            on_mean_levels = [w.split(on_mean)[0] for w in det.warnings if on_mean in w]
            for v, c in det.landmarks.corners_px.items():
                d = np.hypot(*(c - np.asarray(truth["corners"][at][v.value])).T)
                if d.max() * truth["mm_per_px"] > WRONG_MM:
                    wrong += 1
                    shown.append(f"{v.value} {d.max():.1f} WRONG")
                    continue
                found[v.value] += 1
                if v.value in on_mean_levels:
                    mean_found[v.value] = mean_found.get(v.value, 0) + 1
                    mean_worst.append(float(d.max()))
                c7_right = c7_right or v.value == "C7"
                if v.value == "C2":
                    # C2's superior corners have no edge of their own on this renderer's C2 (spec: "where
                    # the body meets the base of the dens"): reported apart, with the posterior wall's
                    # direction, the only thing of them a measurement uses (ARA)
                    t = np.asarray(truth["corners"][at]["C2"])
                    c2_sup += d[:2].tolist()
                    c2_inf += d[2:].tolist()
                    pw = [np.degrees(np.arctan2(*(q[1] - q[2]))) for q in (c, t)]
                    c2_wall.append(abs((pw[0] - pw[1] + 180) % 360 - 180))
                    shown.append(f"C2 {d[2:].max():.1f}/{d[:2].max():.1f}")
                    continue
                corners += d.tolist()
                if "corner_vertices" in truth:
                    to_vertex += np.hypot(*(c - np.asarray(truth["corner_vertices"][at][v.value])).T).tolist()
                shown.append(f"{v.value} {d.max():.1f}")
            studies_any += bool(det.landmarks.corners_px)
            heavy = bool(opts.get("heavy_shoulders"))
            c7[heavy][1] += 1
            c7[heavy][0] += c7_right
            net = [w.split(" found by")[0] for w in det.warnings if NETWORK_MARK in w]
            src = f" (network: {net[0]})" if net else ""
            src += "".join(f" ({lv} on the mean)" for lv in on_mean_levels) + other
            why = ""
            if not det.landmarks.corners_px:
                why = " - " + next(iter(det.missing.values()), "")[:110]
            extra = (" mand-low" if opts.get("mandible_low") else "") + (
                " heavy-sh" if opts.get("heavy_shoulders") else ""
            )
            print(
                f"  seed {seed} {opts['size']:4d} px {opts['mm_per_px']:.3f} mm "
                f"{opts['facing']:5s}{extra:18s}: "
                f"{' '.join(shown) or 'none'}{src}{why}"
            )
        n = len(specs)
        c = np.asarray(corners)
        stats = (
            f"median {np.median(c):.2f} / p95 {np.percentile(c, 95):.2f} / max {c.max():.2f} px"
            if c.size
            else "-"
        )
        if to_vertex:
            q = np.asarray(to_vertex)
            stats += (
                f"; against the outline's vertices (where its sides meet, about 0.4 mm outside the rounded "
                f"cortex): median {np.median(q):.2f} / p95 {np.percentile(q, 95):.2f} / max {q.max():.2f} px"
            )
        if c2_inf:
            stats += (
                f"; C2 ({found['C2']}): inferior corners median {np.median(c2_inf):.2f} / max "
                f"{max(c2_inf):.2f} px, superior median {np.median(c2_sup):.2f} / max {max(c2_sup):.2f} px, "
                f"posterior wall direction median {np.median(c2_wall):.2f} / max {max(c2_wall):.2f} deg"
            )
        print(
            f"  studies with a body {studies_any} of {n}; "
            f"C3-C6 right {sum(found[b] for b in BODIES[1:5])} of {4 * n}"
            f" ({', '.join(f'{b} {found[b]}' for b in BODIES)}); C7 with heavy shoulders {c7[True][0]} of"
            f" {c7[True][1]}, without {c7[False][0]} of {c7[False][1]}; wrong (> {WRONG_MM:g} mm) {wrong};"
            + (
                f" found on the cine's mean (counted above): "
                f"{', '.join(f'{k} {v}' for k, v in sorted(mean_found.items())) or 'none'}"
                + (
                    f", worst corner median {np.median(mean_worst):.2f} / max {max(mean_worst):.2f} px;"
                    if mean_worst
                    else ";"
                )
                if cine
                else ""
            )
            + f" corners of the right ones (C3-C7): {stats}; {np.median(seconds):.1f} s per frame (median)"
        )


def rom_held_out(cache: Path, sets: str, frames: int) -> None:
    """What clinicians use, on the detection studies: each study rendered again as a ``frames``-frame
    cine (same settings), analysed from its automatic landmarks and from the true ones; per level the
    rotation ROM from the automatic landmarks minus that from the true ones (issue #12: within 1 deg)."""
    for name, generator, seeds, seen in HELD_OUT_SETS + DEVELOPMENT_SETS:
        if name not in sets:
            continue
        print(
            f"set {name} as {frames}-frame cines ({seen}): ROM from automatic minus from true landmarks (deg)"
        )
        diffs = []
        for seed, opts in held_out_specs(generator, seeds):
            out, truth = study(cache, seed, {**opts, "frames": frames})
            g = given(out, truth)
            au = auto(out, truth)
            if "error" in g or not au.get("rom"):
                why = au.get("message") or g.get("error") or "no level from the automatic landmarks"
                print(f"  seed {seed}: {why}"[:150])
                continue
            diffs += list(au["rom"].values())
            print(f"  seed {seed}: " + ", ".join(f"{lv} {x:+.2f}" for lv, x in au["rom"].items()))
        d = np.abs(np.asarray(diffs))
        if d.size:
            print(
                f"  {d.size} levels: |ROM difference| median {np.median(d):.2f}, max {d.max():.2f} deg;"
                f" within 1 deg: {int(np.sum(d <= 1.0))} of {d.size}"
            )


def signed_errors(out: Path, truth: dict) -> dict | None:
    """Per level, measured minus true angle on every frame (NaN where not measured); None on failure."""
    if "error" in given(out, truth):
        return None
    m = json.loads((out / "res" / "measurements.json").read_text())
    return {
        lv: np.array(
            [
                math.nan if x is None else x - y
                for x, y in zip(m["levels"][lv]["angle_deg"], truth["angle_deg"][lv], strict=True)
            ]
        )
        for lv in LEVELS
    }


def noise_split(cache: Path, repeats: int, frames: int, only: str | None) -> None:
    """Each setting's per-level angle error split into bias (shared by the noise draws) and noise."""
    print(f"\nper-level signed angle error over {repeats} noise draws of each study (deg, true landmarks)")
    hdr = f"{'setting':28} {'seed':>4} {'level':6} {'bias rms':>8} {'bias max':>8} {'noise sd':>8}"
    print(hdr + "\n" + "-" * len(hdr))
    for name, seed, opts in SETTINGS:
        if only and only not in name:
            continue
        draws = []
        for k in range(1, repeats + 1):
            out, truth = study(cache, seed, {**opts, "frames": frames, "noise_seed": k})
            e = signed_errors(out, truth)
            if e is None:
                print(f"{name:28} {seed:>4} noise draw {k}: dmx analyze failed")
                continue
            draws.append(e)
        if len(draws) < 2:
            continue
        for lv in LEVELS:
            x = np.array([d[lv] for d in draws])  # (draws, frames)
            with warnings.catch_warnings():  # frames no draw measured: NaN, said by the table's max
                warnings.simplefilter("ignore", RuntimeWarning)
                bias = np.nanmean(x, axis=0)
                sd = np.nanstd(x, axis=0, ddof=1)
            rms, worst = float(np.sqrt(np.nanmean(bias**2))), float(np.nanmax(np.abs(bias)))
            print(f"{name:28} {seed:>4} {lv:6} {rms:8.3f} {worst:8.3f} {float(np.nanmedian(sd)):8.3f}")


#: #13's coverage target: a level whose bodies stay in the image is measured on at least this share of frames.
COVERAGE = 0.95

#: The heavy-shoulder setting of :data:`SETTINGS` (C7 about as faint as its noise under the shoulders),
#: drawn with other anatomy seeds by ``--shoulder-seeds`` (session 40: seed 13 and its noise draws 1-5
#: were the development cases of the match ceiling, seeds 201-206 a first check, 301-308 held out).
HEAVY_SHOULDERS = dict(size=768, mm_per_px=0.25, mandible_low=True, heavy_shoulders=True)


def shoulders(cache: Path, specs: str, frames: int) -> None:
    """``--shoulder-seeds``: per study of the heavy-shoulder setting (``SEED`` or ``SEED:NOISE_DRAW``,
    comma-separated), C5-C6 and C6-C7 with the true landmarks: frames measured, per-frame |error|
    median / p95, the RMS of error / angle_uncertainty_deg, and rotation_rom_deg at dmx's key frames
    minus the truth at those frames, with its stated rotation_rom_uncertainty_deg; then dmx's angles at
    the *true* key frames (the extremes of the true Cobb) minus the truth there ("at true keys"): the
    tracker's own error at the end range, without the choice of key frames. The two differ where the
    key frames are chosen on a Cobb angle as noisy as C7's: the frame whose noise makes it the most
    extreme is chosen, and its noise enters the ROM (issue #13, session 43). The key frames' true Cobb
    angle short of the true extremes (flexion / extension; #13's target: within 0.5 deg). Last, the
    largest shortfall, each ROM error's mean and RMS over the studies, and in how many studies each level
    is measured on at least :data:`COVERAGE` of the frames. Per study and over them, every level's
    rotation_rom_deg minus the true ROM (between the true extremes): the error a reader gets, the choice of
    key frames included (session 52: better key frames can expose a bias the noisy ones offset)."""
    print(
        "\nheavy shoulders, true landmarks: per level frames measured, per-frame |error| median / p95 (deg),"
        " z RMS (error / angle_uncertainty_deg), ROM error at dmx's key frames +- its stated uncertainty,"
        " ROM error at the true key frames"
    )
    rom_errors: dict[str, list[tuple[float, float]]] = {"C5-C6": [], "C6-C7": []}
    # every level's rotation_rom_deg minus the true ROM (between the true extremes of the Cobb): the
    # error a reader gets, the key frames' choice included
    vs_true: dict[str, list[float]] = {lv: [] for lv in LEVELS}
    covered: dict[str, list[bool]] = {"C5-C6": [], "C6-C7": []}  # measured on >= COVERAGE of the frames
    shortfalls: list[float] = []
    for spec in specs.split(","):
        seed_s, _, draw = spec.partition(":")
        opts = {**HEAVY_SHOULDERS, "frames": frames, **({"noise_seed": int(draw)} if draw else {})}
        out, truth = study(cache, int(seed_s), opts)
        given(out, truth)
        mp = out / "res" / "measurements.json"
        if not mp.exists():
            print(f"  {spec}: dmx analyze failed")
            continue
        m = json.loads(mp.read_text())
        fl, ex, ref = m["frames"]["flexion"], m["frames"]["extension"], m["frames"]["reference"]
        true_cobb = [cobb(c) for c in truth["corners"]]
        tfl, tex = int(np.argmin(true_cobb)), int(np.argmax(true_cobb))
        row = []
        for lv in ("C5-C6", "C6-C7"):
            level = m["levels"][lv]
            a = np.array([np.nan if x is None else x for x in level["angle_deg"]])
            u = np.array([np.nan if x is None else x for x in level["angle_uncertainty_deg"]])
            t = np.array(truth["angle_deg"][lv])
            ok = np.isfinite(a)
            ok[ref] = False
            e = np.abs(a - t)[ok]
            covered[lv].append(bool(ok.sum() >= COVERAGE * (len(a) - 1)))
            z = float(np.sqrt(np.mean(((a - t)[ok] / u[ok]) ** 2))) if ok.any() else math.nan
            rom, ru = level["rotation_rom_deg"], level["rotation_rom_uncertainty_deg"]
            rom_txt = "null" if rom is None else f"{rom - abs(t[fl] - t[ex]):+.2f} +- {ru:.2f}"
            at_true = (a[tex] - a[tfl]) - (t[tex] - t[tfl])  # NaN where a true key frame is not measured
            if rom is not None:
                rom_errors[lv].append((rom - abs(t[fl] - t[ex]), at_true))
            stats = f"{np.median(e):.2f} / {np.percentile(e, 95):.2f}" if e.size else "-"
            row.append(
                f"{lv} {int(ok.sum())}/{len(a) - 1} {stats} z {z:.2f} ROM {rom_txt} "
                f"at true keys {at_true:+.2f}"
            )
        short = (true_cobb[fl] - true_cobb[tfl], true_cobb[tex] - true_cobb[ex])
        shortfalls.append(max(short))
        every = []
        for lv in LEVELS:
            rom = m["levels"][lv]["rotation_rom_deg"]
            t = truth["angle_deg"][lv]
            if rom is not None:
                vs_true[lv].append(rom - (t[tex] - t[tfl]))
            every.append(f"{lv} {'null' if rom is None else f'{vs_true[lv][-1]:+.2f}'}")
        print(
            f"  {spec:>7} | key frames {fl}/{ex} (true Cobb short of the extremes by {short[0]:.2f} / "
            f"{short[1]:.2f}), true {tfl}/{tex} | " + " | ".join(row)
        )
        print(f"  {'':>7} | rotation ROM minus the true ROM: " + ", ".join(every))
    if shortfalls:
        print(
            "  key frames' true Cobb short of the true extremes: at most "
            f"{max(shortfalls):.2f} deg (#13: 0.5)"
        )
    for lv, errs in rom_errors.items():
        if errs:
            chosen, at_true = np.array(errs).T
            sure = at_true[np.isfinite(at_true)]
            print(
                f"  {lv} ROM error over {len(errs)} studies (deg): at dmx's key frames mean "
                f"{np.mean(chosen):+.2f}, RMS {np.sqrt(np.mean(chosen**2)):.2f}, largest "
                f"{chosen[np.argmax(np.abs(chosen))]:+.2f}; at the true key frames mean "
                f"{np.mean(sure):+.2f}, RMS {np.sqrt(np.mean(sure**2)):.2f} (#13: 0.2)"
            )
    pooled = [e for errs in vs_true.values() for e in errs]
    if pooled:
        print(
            "  rotation ROM minus the true ROM (the true extremes), RMS (mean) over the studies: "
            + ", ".join(
                f"{lv} {np.sqrt(np.mean(np.square(e))):.2f} ({np.mean(e):+.2f})"
                for lv, e in vs_true.items()
                if e
            )
            + f"; every level {np.sqrt(np.mean(np.square(pooled))):.2f} (#13: 0.2)"
        )
    for lv, ok in covered.items():
        if ok:
            print(
                f"  {lv} measured on >= {COVERAGE:.0%} of the frames in {sum(ok)} of {len(ok)} studies (#13)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default="/tmp/dmx-independent-cache")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--only", default=None, help="run only settings whose name contains this")
    ap.add_argument(
        "--detect-held-out",
        nargs="?",
        const="AB",
        default=None,
        metavar="SETS",
        help="automatic landmarks on the detection studies of sets A, B, C, I, J, K (HELD_OUT_SETS) and/or "
        "the development sets D-H (DEVELOPMENT_SETS), then stop",
    )
    ap.add_argument("--detector", default=None, help="with --detect-held-out: template (default) or heatmap")
    ap.add_argument(
        "--uncalibrated",
        action="store_true",
        help="with --detect-held-out: the detector is not given the pixel size",
    )
    ap.add_argument(
        "--rom",
        action="store_true",
        help="with --detect-held-out: the studies as --frames cines, ROM from automatic vs true landmarks",
    )
    ap.add_argument(
        "--cine",
        type=int,
        default=0,
        metavar="N",
        help="with --detect-held-out: each study as an N-frame cine, detected on frame 0 offered the frames "
        "around it as dmx analyze offers them (a body too faint on one frame looked for on their mean)",
    )
    ap.add_argument(
        "--noise-split",
        type=int,
        default=0,
        metavar="R",
        help="R noise draws of each setting: per level the error's bias and noise parts, then stop",
    )
    ap.add_argument(
        "--shoulder-seeds",
        default=None,
        metavar="SEEDS",
        help="the heavy-shoulder setting drawn with these seeds (SEED or SEED:NOISE_DRAW, comma-separated): "
        "C5-C6 and C6-C7 coverage, error, uncertainty calibration, ROM; then stop",
    )
    a = ap.parse_args()
    cache = Path(a.cache)
    if a.shoulder_seeds:
        shoulders(cache, a.shoulder_seeds, a.frames)
        return
    if a.noise_split:
        noise_split(cache, a.noise_split, a.frames, a.only)
        return
    if a.detect_held_out and a.rom:
        rom_held_out(cache, a.detect_held_out, a.frames)
        return
    if a.detect_held_out:
        detect_held_out(cache, a.detect_held_out, a.detector, calibrated=not a.uncalibrated, cine=a.cine)
        return
    rows = []
    for name, seed, opts in SETTINGS:
        if a.only and a.only not in name:
            continue
        t0 = time.time()
        out, truth = study(cache, seed, {**opts, "frames": a.frames})
        g, au = given(out, truth), auto(out, truth)
        rows.append((name, seed, g, au, time.time() - t0, out))
    print(
        "\nper-frame |angle_deg - truth| (deg) with the true frame-0 landmarks;"
        " ROM err = |rotation_rom_deg - truth|"
    )
    hdr = (
        f"{'setting':28} {'seed':>4} {'level':6} {'med':>5} {'p95':>5} {'max':>5} {'unmeas':>6} {'ROMerr':>6}"
    )
    print(hdr + "\n" + "-" * len(hdr))
    for name, seed, g, _au, dt, _out in rows:
        if "error" in g:
            print(f"{name:28} {seed:>4} dmx analyze failed: {g['error']}")
            continue
        worst = max(g["levels"], key=lambda lv: np.nan_to_num(g["levels"][lv]["p95"], nan=1e9))
        for lv, r in g["levels"].items():
            mark = " <- worst" if lv == worst else ""
            errs = f"{r['med']:5.2f} {r['p95']:5.2f} {r['max']:5.2f} {r['missing']:>6} {r['rom_err']:6.2f}"
            print(f"{name:28} {seed:>4} {lv:6} {errs}{mark}")
        fe = g["flex_ext"]
        print(
            f"{'':33} key frames dmx flex/ext {fe[0]}/{fe[1]}, truth {fe[2]}/{fe[3]};"
            f" worst tracked corner {g['corner_max_mm']:.2f} mm; {dt:.0f} s"
        )
    print("\nautomatic landmarks (dmx landmarks, frame 0): bodies found, worst-corner error vs truth (mm)")
    for name, seed, _g, au, _dt, _out in rows:
        found = ", ".join(f"{b} {e:.1f}" for b, e in au["found"].items()) or "none"
        print(f"{name:28} {seed:>4} found: {found}  {au['message']}")
        if au.get("rom"):
            d = ", ".join(f"{lv} {x:+.2f}" for lv, x in au["rom"].items())
            print(f"{'':33} ROM from them minus ROM from the true landmarks (deg): {d}")
    print(f"\nstudies in {cache}")


if __name__ == "__main__":
    main()
