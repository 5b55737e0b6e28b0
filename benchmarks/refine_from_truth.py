"""The edge refinement alone, started from the true corners: where an outline is lost whatever its start.

``dmx.detect``'s learned network places each body coarsely (1.2 mm per pixel) and the edge refinement
(:func:`dmx.detect.refine.refine_corners`) outlines it on the full-resolution image. This script starts the
refinement from each body's **true** corners, on the frame in the polarity that shows bone bright and
turned to face right (both from the phantom's truth), with the radii the detector uses after the network
(:data:`dmx.detect.detector.HEATMAP_REFINE_RADII_MM`), so neither the network, the polarity and facing
votes nor the level checks take part. Per body: outlined within 3 px and passing the edge and shape factors
of :func:`dmx.detect.detector.heatmap_confidence` (inlier share, side residual, shape and size against the
level's mean body; the network's own factors left out), within 3 px but failing them, beyond 3 px (passing
or not), or no outline; per level, and which sides of the bodies beyond 3 px are off (a side whose fitted
edge lies more than 2.5 px from the true corners at either end: S superior, P posterior, I inferior,
A anterior). C2 is refined as a body with shoulders (:func:`refine_corners` with ``is_c2``), not from its
walls as the detector can, so its row says less than the others.

A body the refinement cannot outline from its true corners is not found by the detector from the network's
start either; the difference between this count and ``benchmarks/heldout.py detect`` on the same set is
what the network, the votes and the level checks lose. Sets are drawn as in ``benchmarks/heldout.py``::

    python benchmarks/refine_from_truth.py --family all --n 20 --generator 13232 --first 1320000 --cache DIR

``--mean-of N`` draws each phantom as a cine of ``--frames`` frames (the same motion over more frames) and
refines each body on the mean of the ``N`` frames around the reference frame moved back with that body's
**true** motion (the phantom's ``transforms_px``): what an outline on a cine's motion-compensated mean could
reach with a perfect registration (session 63). ``N`` 1 is the reference frame of the same cine.
"""

from __future__ import annotations

import argparse
from collections import Counter

import detection  # benchmarks/detection.py: the phantoms' display frames
import heldout  # benchmarks/heldout.py: the sets and their cached reference frames
import numpy as np

from dmx.anatomy import BODIES
from dmx.detect import model_file
from dmx.detect.detector import HEATMAP_REFINE_RADII_MM, heatmap_confidence
from dmx.detect.model import load_model
from dmx.detect.pose import smoothed
from dmx.detect.refine import refine_corners, shape_deviation_mm, side_offsets_px
from dmx.measure.geometry import facing
from dmx.phantom import make_phantom
from dmx.tracking.temporal import moved_mean

#: A body is right when its worst corner is within this (px).
RIGHT_PX = 3.0
#: A side is off when the true corners lie further than this (px) from its fitted edge at either end (the
#: fitted annotation offsets are about 1 px).
SIDE_OFF_PX = 2.5


def _edge_and_shape(feats: dict, dev_mm: float, size: float) -> float:
    """:func:`heatmap_confidence` with the network's own factors set to pass."""
    return heatmap_confidence(
        {**feats, "shape_mm": dev_mm, "size_ratio": size, "region_prob": 1.0, "on_region": 1.0}
    )


def refine_from(
    sm: np.ndarray,
    noise: float,
    start: np.ndarray,
    k: int,
    mpp: float,
    model,
    radii: tuple[float, ...] = HEATMAP_REFINE_RADII_MM,
    shaped: bool = True,
):
    """The detector's edge refinement of body ``k`` (``BODIES`` index; C2 by its shoulders) from ``start``
    (facing right) on the smoothed image ``sm`` (:func:`dmx.detect.pose.smoothed`), the level's mean shape
    guiding C3-C7 where ``shaped``: :func:`refine_corners`' corners (or None), features and side fits, and
    whether the outline passes the edge and shape factors (:func:`_edge_and_shape`)."""
    out, feats, fits = refine_corners(
        sm,
        start,
        is_c2=k == 0,
        px_per_mm=1.0 / mpp,
        noise=noise,
        side_offsets_mm=model.side_offsets_mm[0 if k == 0 else 1],
        radii_mm=radii,
        mean_shape_mm=model.mean_shape_mm[k] if shaped and k else None,
    )
    if out is None:
        return None, feats, fits, False
    dev, size = shape_deviation_mm(out * mpp, model.mean_shape_mm[k])
    return out, feats, fits, _edge_and_shape(feats, dev, size) >= 0.5


def true_motion_mean(frames: np.ndarray, transforms: list, ref: int, n: int) -> np.ndarray:
    """The mean of the ``n`` frames around ``ref`` (fewer at the cine's ends: the window is moved inside it),
    each moved back to the reference frame with one body's true motion (``transforms[f]``: 2x3, reference
    px -> frame ``f`` px), as :func:`dmx.tracking.temporal.moved_mean` moves them with a tracked one."""
    t, h, w = frames.shape
    lo = int(np.clip(ref - n // 2, 0, max(0, t - n)))
    hi = min(t, lo + n)
    poses = [np.vstack([np.asarray(m, float), [0.0, 0.0, 1.0]]) for m in transforms]
    total, used = moved_mean(frames, poses, np.eye(3), range(lo, hi), (0, 0, w, h))
    return (total / used).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="all", help="appearance family (benchmarks/heldout.py)")
    ap.add_argument("--n", type=int, default=20, help="phantoms drawn")
    ap.add_argument("--generator", type=int, required=True, help="the set's generator seed")
    ap.add_argument("--first", type=int, required=True, help="the set's first phantom seed")
    ap.add_argument("--cache", help="folder keeping the rendered reference frames (shared with heldout.py)")
    ap.add_argument(
        "--radii",
        default=",".join(f"{r:g}" for r in HEATMAP_REFINE_RADII_MM),
        help="edge-search radii (mm), comma-separated",
    )
    ap.add_argument(
        "--strongest",
        action="store_true",
        help="each side from every profile's strongest step (no mean shape: sessions up to 47)",
    )
    ap.add_argument(
        "--mean-of",
        type=int,
        default=0,
        help="refine on the mean of this many frames moved back with each body's true motion (0: one frame)",
    )
    ap.add_argument("--frames", type=int, default=120, help="with --mean-of: frames per cine")
    args = ap.parse_args()
    args.bone_dark = False
    radii = tuple(float(r) for r in args.radii.split(","))
    model = load_model(model_file())
    tally = {v: Counter() for v in BODIES}
    sides = Counter()
    for kw in heldout._specs(args, args.frames if args.mean_of else None):
        if args.mean_of:
            ph = make_phantom(**kw)
            cine, ref = detection.display(ph), kw["reference_frame"]
            img, truth = cine[ref], dict(ph.landmarks.corners_px)
            mpp = float(np.mean(ph.truth["mm_per_px"]))
        else:
            img, truth, mpp = heldout._reference(kw, args.cache)
        acq = kw["appearance"].acquisition
        sign = -1.0 if acq is not None and acq.inverted else 1.0  # bone shown dark: refined as bright bone
        im = sign * np.asarray(img, dtype=np.float32)
        h, w = im.shape
        views: dict[bool, tuple[np.ndarray, float]] = {}
        marks = []
        for k, v in enumerate(BODIES):
            true = np.asarray(truth[v], dtype=float)
            if (true < 2).any() or (true[:, 0] > w - 3).any() or (true[:, 1] > h - 3).any():
                continue
            right = bool(facing(true) < 0)  # the spec's h: -1 facing right
            if args.mean_of:  # this body's own mean: not shared between bodies
                mean = sign * true_motion_mean(cine, ph.truth["transforms_px"][v.value], ref, args.mean_of)
                sm, noise = smoothed(mean if right else mean[:, ::-1].copy(), mpp)
            else:
                if right not in views:
                    views[right] = smoothed(im if right else im[:, ::-1].copy(), mpp)
                sm, noise = views[right]
            start = true if right else np.c_[w - 1 - true[:, 0], true[:, 1]]
            out, feats, fits, passes = refine_from(sm, noise, start, k, mpp, model, radii, not args.strongest)
            if out is None:
                tally[v]["no outline"] += 1
                marks.append(f"{v.value}:-")
                continue
            err = float(np.hypot(*(out - start).T).max())
            if err <= RIGHT_PX:
                tally[v]["right, passes" if passes else "right, fails"] += 1
                marks.append(v.value if passes else f"{v.value}?")
                continue
            tally[v]["beyond, passes" if passes else "beyond, fails"] += 1
            off = np.abs(side_offsets_px(fits, start)).max(axis=1) > SIDE_OFF_PX
            which = "".join("SPIA"[s] for s in range(4) if off[s]) or "corners"
            if k not in (0, len(BODIES) - 1):
                sides[which] += 1
            marks.append(f"{v.value}:{err:.0f}{'!' if passes else ''}({which})")
        print(kw["seed"], f"{mpp:.2f} mm", " ".join(marks), flush=True)
    keys = ("right, passes", "right, fails", "beyond, passes", "beyond, fails", "no outline")
    print(f"\n{'level':6s}" + "".join(f"{k:>16s}" for k in keys))
    for v in BODIES:
        print(f"{v.value:6s}" + "".join(f"{tally[v][k]:16d}" for k in keys))
    mid = Counter()
    for v in BODIES[1:5]:
        mid.update(tally[v])
    print(f"{'C3-C6':6s}" + "".join(f"{mid[k]:16d}" for k in keys))
    print("sides off on C3-C6 beyond 3 px:", ", ".join(f"{k} {n}" for k, n in sides.most_common()))


if __name__ == "__main__":
    main()
