"""The C2 test (issue #12) on the learned network's columns, against the truth: which columns it keeps.

For every phantom of a set (or study of the independent renderer's sets), on the reference frame as given
and inverted (bone dark), the learned network's column is taken where it reports at least two bodies;
per column the C2 test's parts per shift of its levels (:func:`dmx.detect.detector.c2_parts`: the dens
template's fit where the shift puts C2, the two bodies below it, the plain body fit there) and its
decision (:func:`dmx.detect.detector.c2_disputed`), and whether a near tie was settled by the dens contrast
(:func:`dmx.detect.detector._dens_confirms`). The truth says which shift is right: each reported
body's centre is matched to the nearest true body (within half a true body's endplate length), so a
column is ``right`` (every body on its own level), ``off+1`` / ``off-1`` (every body one level above /
below its label) or ``mixed``. The tally is what session 29's choice rested on (docs/detection.md, "The C2
test no longer weighs C2 above a C2 the network reports"): right columns kept, refused and untestable (C2
outside the image), columns a level off kept (the failure the test exists to stop), and how many columns
report their own C2.

This is the network's column alone, before the combined detector's other checks (the template detector's
column, the level evidence, the views turned a quarter or an eighth): ``benchmarks/heldout.py detect`` and
``benchmarks/independent.py --detect-held-out`` give what ``dmx analyze`` reports.

    PYTHONPATH=. python benchmarks/c2_columns.py phantoms --family all --n 20 --generator 11111 \
        --first 1110000 --cache DIR
    PYTHONPATH=. python benchmarks/c2_columns.py independent --sets DEFG --cache DIR
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dmx.anatomy import BODIES  # noqa: E402


def column_class(reported, truth: dict) -> tuple[str, list[int | None]]:
    """``right``, ``off+1``/``off-1`` or ``mixed`` for the reported bodies against the true corners, with
    each body's level shift (true level minus label; None where its centre is on no true body). The class
    is that of the levels, of the bodies on a true body: a body on none (an outline far off) is not
    counted, and a column with none on a true body is ``mixed``."""
    centres = {v: np.asarray(c, float).mean(0) for v, c in truth.items()}
    shifts: list[int | None] = []
    for b in reported:
        c = b.corners_px.mean(0)
        v = min(centres, key=lambda u: float(np.hypot(*(c - centres[u]))))
        t = np.asarray(truth[v], float)
        if np.hypot(*(c - centres[v])) > 0.5 * np.hypot(*(t[0] - t[1])):
            shifts.append(None)
        else:
            shifts.append(BODIES.index(v) - BODIES.index(b.vertebra))
    known = [s for s in shifts if s is not None]
    if known and all(s == 0 for s in known):
        return "right", shifts
    if known and len(set(known)) == 1:
        return f"off{known[0]:+d}", shifts
    return "mixed", shifts


def _shown(values: dict[int, float]) -> dict[int, str]:
    """Per shift, a value to two decimals ("nan" where it could not be computed), shifts in order."""
    return {s: f"{v:.2f}" if np.isfinite(v) else "nan" for s, v in sorted(values.items())}


def columns(tag: str, image: np.ndarray, truth: dict, mm_per_px: float, net, model, tally) -> None:
    from dmx.detect import detector as D

    for view, img in (("given", image), ("inverted", image.max() + image.min() - image)):
        network = D.run_heatmap(img, model, net, mm_per_px=mm_per_px)
        reported = D.reported_bodies(network, D.HEATMAP_THRESHOLD)
        if len(reported) < 2:
            continue
        cv = D.ColumnView(img, network, model)
        parts = D.c2_parts(img, network, model, D.HEATMAP_THRESHOLD, cv)
        reason = D.c2_disputed(img, network, model, D.HEATMAP_THRESHOLD, cv)
        kind, shifts = column_class(reported, truth)
        decision = "kept" if reason is None else ("outside" if reason == D.C2_OUTSIDE else "refused")
        has_c2 = any(b.vertebra == BODIES[0] for b in reported)
        tally[(kind, decision)] += 1
        tally[("reports C2", kind)] += has_c2
        corr = {s: d + b for s, (d, b, _) in parts.items()}
        score = _shown(corr)
        dens = _shown({s: d for s, (d, _, _) in parts.items()})
        plain = _shown({s: p for s, (_, _, p) in parts.items()})
        # kept though another weighed shift scored higher: the near tie the dens contrast settled
        weighed = D._shifts_weighed(corr, reported, network.network_c2_region)
        tie = reason is None and any(s != 0 and np.isfinite(v) and v >= corr[0] for s, v in weighed.items())
        labels = ",".join(b.vertebra.value for b in reported)
        print(
            f"{tag} {view:<8} {labels:<18} {kind:<6} {decision:<8} C2 test {score} dens {dens} plain {plain} "
            f"shifts {shifts} C2 region {network.network_c2_region:.2f}"
            f"{' (a near tie the dens contrast settled)' if tie else ''}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="kind", required=True)
    ph = sub.add_parser("phantoms", help="a set of this project's appearance-family phantoms")
    ph.add_argument("--family", default="all")
    ph.add_argument("--n", type=int, default=20)
    ph.add_argument("--generator", type=int, required=True)
    ph.add_argument("--first", type=int, required=True)
    ph.add_argument("--cache", help="keep the rendered frames here (benchmarks/heldout.py's cache)")
    ind = sub.add_parser("independent", help="the independent renderer's sets (benchmarks/independent.py)")
    ind.add_argument("--sets", default="ABC")
    ind.add_argument("--cache", default="/tmp/dmx-independent-cache")
    args = p.parse_args(argv)

    from dmx.detect import _net_and_model

    net, model = _net_and_model(None)
    tally: collections.Counter = collections.Counter()
    if args.kind == "phantoms":
        import detection

        from dmx.phantom import draw_appearance
        from dmx.training.fit import training_specs

        detection.CACHE = args.cache
        for kw in training_specs(args.n, seed=args.generator, first_seed=args.first):
            kw["appearance"] = draw_appearance(args.family, seed=kw["seed"], max_size_px=768)
            image, truth, mpp = detection.reference_frame(kw)
            columns(str(kw["seed"]), image, truth, mpp, net, model, tally)
    else:
        import independent

        from dmx.anatomy import Vertebra

        names = {v.value for v in BODIES}
        for name, seed, _out, truth, seq in independent.set_studies(Path(args.cache), args.sets):
            true = {Vertebra(k): np.asarray(c) for k, c in truth["corners"][0].items() if k in names}
            columns(f"{name}{seed}", seq.frames[0], true, float(np.mean(seq.mm_per_px)), net, model, tally)
    print("\ncolumns (network, >= 2 bodies reported), by truth and the C2 test's decision:")
    for key in sorted(k for k in tally if k[0] != "reports C2"):
        print(f"  {key[0]:<6} {key[1]:<8} {tally[key]}")
    print(
        "  reporting their own C2: "
        + ", ".join(f"{k[1]} {n}" for k, n in sorted(tally.items()) if k[0] == "reports C2")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
