"""The reported confidence's calibration (:mod:`dmx.detect.calibrate`, issue #12): its data, fit and check.

``dump``
    ``dmx analyze``'s detector (:func:`dmx.detect.detect_landmarks`, other views included) on the reference
    frame of each phantom of a set (as ``benchmarks/heldout.py detect``: ``--family``, ``--n``,
    ``--generator``, ``--first``, ``--cache``), **without** the calibration: one JSON line per phantom with
    the bodies reported, their corners and the detector's own confidence, the reasons of those not
    reported, and the true corners.
``fit DUMP...``
    The logistic model of "worst corner within 3 px" on those bodies (the detector's confidence, the log
    of :func:`dmx.detect.calibrate.outline_deviation`, C2, C7): leave-one-set-out figures (each set's
    bodies scored by the model fitted on the others), then the coefficients fitted on all of them, to
    copy into :data:`dmx.detect.calibrate.COEFFICIENTS`.
``check DUMP...``
    The shipped coefficients on sets they were not fitted on: per level group the bodies reported and
    those beyond 3 px, before (the detector's own confidence, every dumped body reported) and after (left
    out below :data:`dmx.detect.calibrate.MIN_CHANCE`), the right ones lost, and the share within 3 px of
    those reported at or above a few confidences.

Session 61's data and fit (the development sets; the held-out ones only checked)::

    python benchmarks/confidence_calibration.py dump --n 20 --generator 13838 --first 1380000 \\
        --cache /tmp/c1380000 --out /tmp/d1380000.jsonl     # ... to 1490000 (--generator 14949)
    python benchmarks/confidence_calibration.py fit /tmp/d13*.jsonl /tmp/d14*.jsonl
    python benchmarks/confidence_calibration.py check /tmp/d1570000.jsonl /tmp/d1580000.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json

import numpy as np

from dmx.anatomy import BODIES, Vertebra

#: A body whose worst corner is within this (px) counts as right.
RIGHT_PX = 3.0

#: The model's inputs, in :data:`dmx.detect.calibrate.COEFFICIENTS` order after the intercept.
INPUTS = ("confidence", "log_deviation", "c2", "c7")

#: The ridge penalty on the standardised inputs (the intercept is not penalised).
RIDGE = 1.0


def dump(args) -> None:
    import heldout  # benchmarks/heldout.py: the sets and their frame cache

    from dmx.detect import detect_landmarks

    with open(args.out, "w") as out:
        for kw in heldout._specs(args):
            image, truth, mpp = heldout._reference(kw, args.cache)
            det = detect_landmarks(image, mm_per_px=mpp, calibrated=False)
            lm = det.landmarks
            record = {
                "seed": kw["seed"],
                "mpp": mpp,
                "corners": {v.value: np.asarray(c).tolist() for v, c in lm.corners_px.items()},
                "conf": {v.value: float(lm.confidence[v]) for v in lm.corners_px},
                "truth": {v.value: np.asarray(truth[v]).tolist() for v in BODIES},
                "warnings": list(det.warnings),
                "missing": {v.value: why for v, why in det.missing.items()},
            }
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(kw["seed"], " ".join(sorted(record["corners"])), flush=True)


def bodies(paths: list[str]) -> list[dict]:
    """Every reported body of the dumps: set, seed, level, the detector's confidence, the model's inputs,
    and whether its worst corner is within :data:`RIGHT_PX`."""
    from dmx.detect import model_file
    from dmx.detect.calibrate import model_inputs
    from dmx.detect.model import load_model

    mean = load_model(model_file()).mean_shape_mm
    rows = []
    for path in paths:
        for line in open(path):
            r = json.loads(line)
            for name, corners in r["corners"].items():
                v = Vertebra(name)
                c = np.asarray(corners)
                err = float(np.hypot(*(c - np.asarray(r["truth"][name])).T).max())
                rows.append(
                    {
                        "set": r["seed"] // 10000 * 10000,
                        "seed": r["seed"],
                        "level": name,
                        "detector": r["conf"][name],
                        **model_inputs(r["conf"][name], c, v, mean),
                        "err": err,
                        "right": err <= RIGHT_PX,
                    }
                )
    return rows


def fit_logistic(rows: list[dict]) -> dict[str, float]:
    """Ridge logistic regression (Newton) of ``right`` on :data:`INPUTS`; coefficients in raw units."""
    x = np.array([[r[k] for k in INPUTS] for r in rows], float)
    y = np.array([r["right"] for r in rows], float)
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.c_[np.ones(len(x)), (x - mu) / sd]
    w = np.zeros(z.shape[1])
    penalty = RIDGE * np.diag(np.r_[0.0, np.ones(len(INPUTS))])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-z @ w))
        step = np.linalg.solve(z.T @ (z * (p * (1 - p))[:, None]) + penalty, z.T @ (p - y) + penalty @ w)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    raw = w[1:] / sd
    return {
        "intercept": float(w[0] - np.sum(raw * mu)),
        **{k: float(c) for k, c in zip(INPUTS, raw, strict=True)},
    }


def chances(rows: list[dict], coefficients: dict[str, float]) -> np.ndarray:
    z = coefficients["intercept"] + sum(coefficients[k] * np.array([r[k] for r in rows]) for k in INPUTS)
    return 1.0 / (1.0 + np.exp(-z))


GROUPS = (
    ("C2", ("C2",)),
    ("C3-C6", ("C3", "C4", "C5", "C6")),
    ("C7", ("C7",)),
    ("all", tuple(v.value for v in BODIES)),
)


def shares(right: np.ndarray, confidence: np.ndarray) -> str:
    """The share of bodies within 3 px among those at or above a few confidences."""
    line = "share right at confidence >="
    for t in (0.5, 0.7, 0.8, 0.9):
        k = confidence >= t
        line += f"  {t}: {100 * right[k].mean():.1f} % of {k.sum()}"
    return line


def table(rows: list[dict], p: np.ndarray, min_chance: float) -> None:
    right = np.array([r["right"] for r in rows])
    level = np.array([r["level"] for r in rows])
    for name, levels in GROUPS:
        m = np.isin(level, levels)
        kept = m & (p >= min_chance)
        share, share_kept = (
            100 * (m & right).sum() / max(m.sum(), 1),
            100 * (kept & right).sum() / max(kept.sum(), 1),
        )
        line = (
            f"{name:6s} reported {m.sum():4d}, beyond 3 px {int((m & ~right).sum()):3d} "
            f"({share:5.1f} % right) -> reported {kept.sum():4d}, "
            f"beyond {int((kept & ~right).sum()):3d} ({share_kept:5.1f} %); "
            f"right ones lost {int((m & ~kept & right).sum())}, "
            f"wrong ones left out {int((m & ~kept & ~right).sum())}"
        )
        print(line)
    print(shares(right, p))


def fit(args) -> None:
    rows = bodies(args.dumps)
    sets = np.array([r["set"] for r in rows])
    p = np.zeros(len(rows))
    for s in np.unique(sets):
        held = sets == s
        w = fit_logistic([r for r, h in zip(rows, held, strict=True) if not h])
        p[held] = chances([r for r, h in zip(rows, held, strict=True) if h], w)
    from dmx.detect.calibrate import MIN_CHANCE

    print(f"leave-one-set-out over {len(np.unique(sets))} sets, {len(rows)} bodies:")
    table(rows, p, MIN_CHANCE)
    w = fit_logistic(rows)
    print("COEFFICIENTS = {" + ", ".join(f'"{k}": {v:.4f}' for k, v in w.items()) + "}")


def check(args) -> None:
    from dmx.detect.calibrate import COEFFICIENTS, MIN_CHANCE

    rows = bodies(args.dumps)
    print(f"{len(rows)} bodies of {len({r['seed'] for r in rows})} phantoms; the shipped coefficients:")
    p = chances(rows, COEFFICIENTS)
    table(rows, p, MIN_CHANCE)
    print("the detector's own confidence:")
    print(shares(np.array([r["right"] for r in rows]), np.array([r["detector"] for r in rows])))
    found(args.dumps, rows, p >= MIN_CHANCE)


def found(paths: list[str], rows: list[dict], kept: np.ndarray) -> None:
    """What ``dmx analyze``'s detector reports per level over every phantom of the dumps (the calibration
    applied: ``kept``, per row of ``rows``): right (within 3 px) and beyond, and the commonest reasons of
    the others (dumps made before session 62 hold no reasons)."""
    records = [json.loads(line) for path in paths for line in open(path)]
    out = {(r["seed"], r["level"]): r["right"] for r, k in zip(rows, kept, strict=True) if k}
    print(f"reported per level over all {len(records)} phantoms (calibrated):")
    for v in BODIES:
        right = sum(1 for (_, level), ok in out.items() if level == v.value and ok)
        wrong = sum(1 for (_, level), ok in out.items() if level == v.value and not ok)
        why = collections.Counter(
            r.get("missing", {}).get(v.value, "left out by the calibration").split(" (")[0][:70]
            for r in records
            if (r["seed"], v.value) not in out
        )
        common = "; ".join(f"{n} {w}" for w, n in why.most_common(3))
        print(f"  {v.value}: right {right:3d}, beyond 3 px {wrong:2d}; not reported: {common}")
    mid = [ok for (_, level), ok in out.items() if level in ("C3", "C4", "C5", "C6")]
    print(f"  C3-C6: right {sum(mid)} of {4 * len(records)}, beyond 3 px {len(mid) - sum(mid)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("--family", default="all")
    d.add_argument("--n", type=int, default=20)
    d.add_argument("--generator", type=int, required=True)
    d.add_argument("--first", type=int, required=True)
    d.add_argument("--cache", default=None)
    d.add_argument("--out", required=True)
    d.set_defaults(func=dump)
    for name, func in (("fit", fit), ("check", check)):
        s = sub.add_parser(name)
        s.add_argument("dumps", nargs="+")
        s.set_defaults(func=func)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
