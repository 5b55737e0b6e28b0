"""Experimental corner networks (``dmx.training.corners``) at the learned network's regions (issue #12).

Not the detector: each body's region comes from the shipped segmentation network
(``models/heatmap.onnx``, :meth:`dmx.detect.heatmap.HeatmapNet.bodies_in_windows`) at the true pixel
size, in the polarity (as given or inverted) that puts more regions inside their true bodies; the crop
is turned by the column's direction (between the neighbouring regions' centres) and faces the way the
truth does. So this isolates the corner model: where the region is right (its centre inside the true
body), how far each network's worst corner lies from the truth, and the spread of its heatmaps (mm),
which would be its confidence.

Sets (any number):

``ph:FAMILY:N:GENERATOR:FIRST``
    this project's phantoms of ``benchmarks/heldout.py`` (``training_specs`` with one family's look, or
    ``all``), the reference frame; rendered frames kept in ``--cache``.
``indep:LETTERS``
    the independent renderer's detection studies (``benchmarks/independent.py``: A-C held out, D-H
    development), frame 0; errors against its corners (on the rounded cortex) and its outline's
    vertices (where the sides meet, the convention this project's phantom and detector use).
``real:MM_PER_PX``
    the real radiograph of ``benchmarks/real_detection.py`` (uncalibrated; read at the given pixel size)
    against its hand-placed corners.

Prints per set the right C3-C6 regions and, per network, the share within 3 px, median and p90, and the
share within 3 px among bodies whose spread is at most 0.5 / 0.75 / 1.0 mm::

    PYTHONPATH=. python benchmarks/corner_model.py NETS/a.onnx NETS/b.onnx --sets indep:ABC \
        ph:cortical:20:13838:1380000 real:0.26 real:0.3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout  # noqa: E402
import independent  # noqa: E402
import real_detection  # noqa: E402

from dmx.detect.heatmap import load_net  # noqa: E402
from dmx.training.corners import CornerNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ["C2", "C3", "C4", "C5", "C6", "C7"]
MIDDLE = ("C3", "C4", "C5", "C6")
RIGHT_PX = 3.0
SPREADS_MM = (0.5, 0.75, 1.0)


def inside(point, quad: np.ndarray) -> bool:
    poly = np.asarray(quad, np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(poly, (float(point[0]), float(point[1])), False) >= 0


def studies(spec: str, cache: Path, indep_cache: Path):
    """``(study id, frame, truth corners, mm per px, outline vertices or None)`` of one set."""
    kind, rest = spec.split(":", 1)
    if kind == "ph":
        family, n, generator, first = rest.split(":")
        a = argparse.Namespace(
            family=family, n=int(n), generator=int(generator), first=int(first), bone_dark=False
        )
        for kw in heldout._specs(a):
            img, truth, mpp = heldout._reference(kw, str(cache / f"ho_{family}_{first}"))
            truth = {getattr(k, "value", k): np.asarray(v, float) for k, v in truth.items()}
            yield f"{family}/{kw['seed']}", np.asarray(img, np.float32), truth, mpp, None
    elif kind == "real":
        doc = json.loads(real_detection.DATA.read_text())
        img = cv2.imread(str(real_detection.IMAGE), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise SystemExit(f"error: {real_detection.IMAGE}: cannot read the real radiograph")
        names = ("ant_sup", "post_sup", "post_inf", "ant_inf")
        truth = {lv: np.array([p[c] for c in names], float) for lv, p in doc["points"].items()}
        yield f"real@{rest}", img.astype(np.float32), truth, float(rest), None
    elif kind == "indep":
        for name, seed, _out, truth, seq in independent.set_studies(indep_cache, rest):
            t = {v: np.asarray(c, float) for v, c in truth["corners"][0].items()}
            tv = {v: np.asarray(c, float) for v, c in truth["corner_vertices"][0].items()}
            yield f"{name}/{seed}", np.asarray(seq.frames[0], np.float32), t, float(truth["mm_per_px"]), tv
    else:
        raise SystemExit(f"error: {spec}: a set is ph:..., indep:... or real:...")


def regions(net, img: np.ndarray, truth: dict, mpp: float):
    """The network's region centres per level index, in the polarity with more right regions."""
    best = None
    for inverted in (False, True):
        im = img.max() + img.min() - img if inverted else img
        found = net.bodies_in_windows(im, mpp)
        cen = {k: found.corners_px[k].mean(0) for k in range(6) if np.all(np.isfinite(found.corners_px[k]))}
        right = sum(LEVELS[k] in truth and inside(c, truth[LEVELS[k]]) for k, c in cen.items())
        if best is None or right > best[0]:
            best = (right, im, cen)
    return best[1], best[2]


def run(models: list[CornerNet], sets: list[str], cache: Path, indep_cache: Path) -> list[dict]:
    net = load_net(ROOT / "models" / "heatmap.onnx")
    rows = []
    for spec in sets:
        for sid, img, truth, mpp, vertices in studies(spec, cache, indep_cache):
            im, cen = regions(net, img, truth, mpp)
            facing = "right" if truth["C3"][0, 0] > truth["C3"][1, 0] else "left"
            for k, centre in cen.items():
                lv = LEVELS[k]
                lo, hi = (k + 1 if k + 1 in cen else k), (k - 1 if k - 1 in cen else k)
                if lv not in truth or lo == hi:
                    continue
                d = cen[hi] - cen[lo]
                theta = math.degrees(math.atan2(d[0], -d[1]))
                row = dict(set=spec, study=sid, level=lv, mm_per_px=mpp, right=inside(centre, truth[lv]))
                for m in models:
                    c, spread = m.predict(im, centre, theta, mpp, facing)
                    e = float(np.max(np.hypot(*(c - truth[lv]).T)))
                    ev = float(np.max(np.hypot(*(c - vertices[lv]).T))) if vertices else None
                    row[m.name] = dict(error_px=e, spread_mm=spread, error_vertex_px=ev)
                rows.append(row)
    return rows


def summary(rows: list[dict], names: list[str]) -> None:
    for spec in dict.fromkeys(r["set"] for r in rows):
        rs = [r for r in rows if r["set"] == spec]
        mid = [r for r in rs if r["level"] in MIDDLE]
        right = [r for r in mid if r["right"]]
        print(
            f"{spec}: {len({r['study'] for r in rs})} studies, {len(right)} of {len(mid)} C3-C6 regions right"
        )
        for n in names:
            if not right:
                continue
            e = np.array([r[n]["error_px"] for r in right])
            sp = np.array([r[n]["spread_mm"] for r in right])
            line = (
                f"  {n:24s} within {RIGHT_PX:.0f} px {np.mean(e <= RIGHT_PX):.2f}, median {np.median(e):.1f},"
                f" p90 {np.percentile(e, 90):.1f} px"
            )
            for lim in SPREADS_MM:
                sel = sp <= lim
                share = f"{np.mean(e[sel] <= RIGHT_PX):.2f}" if sel.any() else "-"
                line += f" | spread <= {lim} mm: {sel.sum()} ({share})"
            if right[0][n]["error_vertex_px"] is not None:
                ev = np.array([r[n]["error_vertex_px"] for r in right])
                within = np.mean(ev <= RIGHT_PX)
                line += f" | vs vertices within {RIGHT_PX:.0f} px {within:.2f}, median {np.median(ev):.1f}"
            print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path, help="ONNX corner networks (each with OUT.json)")
    ap.add_argument("--sets", nargs="+", required=True)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dmx-corner-model"))
    ap.add_argument(
        "--indep-cache",
        type=Path,
        default=Path("/tmp/dmx-independent-cache"),
        help="as independent.py's --cache",
    )
    ap.add_argument("--json", type=Path, default=None, help="write every body's row here")
    args = ap.parse_args()
    models = [CornerNet(p) for p in args.models]
    rows = run(models, args.sets, args.cache, args.indep_cache)
    if args.json:
        args.json.write_text(json.dumps(rows))
    summary(rows, [m.name for m in models])


if __name__ == "__main__":
    main()
