"""Confidence calibration of the heatmap detector, from body records of ``detection.py --dump``.

Reads one or more JSON files written by
``benchmarks/detection.py --detector heatmap --families LIST --dump FILE`` (per body the
detector fitted: family, vertebra, features, confidence, worst corner error in px) and prints,
per confidence threshold, the share of bodies at or above it whose worst corner is within 3 px
(the issue's calibration target: at least 97 % at the reporting threshold) and how many bodies
that reports. Fit the threshold on families that are NOT the held-out ones you report::

    PYTHONPATH=. python benchmarks/detection.py --detector heatmap --families soft_tissue,processing \\
        --per-family 10 --dump /tmp/calib.json
    PYTHONPATH=. python benchmarks/heatmap_calibration.py /tmp/calib.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dmx.detect.detector import HEATMAP_FEATURES

#: A body whose worst corner is within this (px) counts as right.
RIGHT_PX = 3.0


def _spread(a: np.ndarray) -> str:
    return " ".join(f"{x:5.2f}" for x in np.percentile(a, [5, 50, 95])) if a.size else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dumps", nargs="+", type=Path)
    args = ap.parse_args()
    rows = [r for p in args.dumps for r in json.loads(p.read_text())]
    conf = np.array([r["confidence"] for r in rows])
    worst = np.array([r["worst_px"] for r in rows])
    ok = worst <= RIGHT_PX
    fams = sorted({r["family"] for r in rows})
    print(
        f"{len(rows)} fitted bodies from {len(fams)} appearance sets; {ok.mean():.0%} within {RIGHT_PX:g} px"
    )
    print(f"{'threshold':>9s} {'reported':>9s} {'right':>7s} {'wrong':>6s} {'worst reported px':>18s}")
    for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        sel = conf >= t
        if not sel.any():
            print(f"{t:9.2f} {0:9d}")
            continue
        print(
            f"{t:9.2f} {int(sel.sum()):9d} {ok[sel].mean():7.1%} {int((~ok[sel]).sum()):6d} "
            f"{worst[sel].max():18.2f}"
        )
    for idx, name in enumerate(HEATMAP_FEATURES):
        v = np.array([np.nan if r["features"][idx] is None else r["features"][idx] for r in rows])
        good, bad = v[ok & np.isfinite(v)], v[~ok & np.isfinite(v)]
        print(f"{name:15s} right (p5 p50 p95): {_spread(good):17s}  wrong: {_spread(bad)}")


if __name__ == "__main__":
    main()
