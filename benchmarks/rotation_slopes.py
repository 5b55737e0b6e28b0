"""Each body's tracked rotation against the truth: is it shrunk towards the reference pose (issue #13)?

Tracks a study with its true reference-frame landmarks (raw tracks, as ``dmx.track`` gives them) and prints,
per body, the slope of its tracked rotation against its true rotation over the trusted frames (1 is right;
below 1 the body turns too little, pulled towards its reference pose by something that does not move with
it) and its per-frame rotation error (median / p95 of |error - median error|: the constant offset from the
reference frame's own noise removed). With ``--refit-highpass F`` the same for one plain registration per
frame from the tracked pose with a template high-passed at ``F`` x the body's size (the tracker uses 0.1),
and with ``--band PX`` for one with a template weighted to a band of +-PX around the body's outline where the
reference frame's gradient is normal to the nearest side: the experiments of docs/tracking.md, "Session 43".

    PYTHONPATH=. python benchmarks/rotation_slopes.py --shoulder-seeds 301,302,305,307 --refit-highpass 0.025
    PYTHONPATH=. python benchmarks/rotation_slopes.py --mandible-seeds 40,42,44 --band 3
    PYTHONPATH=. python benchmarks/rotation_slopes.py --family occluders:26 --track-highpass 0.05
    PYTHONPATH=. python benchmarks/rotation_slopes.py --shoulder-seeds 363,371,372 --photons 1e7
    PYTHONPATH=. python benchmarks/rotation_slopes.py --shoulder-seeds 363,371,372 --no-shoulders

``--photons`` and ``--no-shoulders`` draw the independent renderer's studies with other quantum noise (1e5
as ``benchmarks/independent.py``; 1e7 is nearly noiseless) or without the shoulders: docs/tracking.md,
"Session 45".

Independent-renderer studies are rendered into ``--cache`` (as ``benchmarks/independent.py`` does); this
project's phantoms (``--mandible-seeds``: ``benchmarks/tracking.py``'s mandible-and-shoulders case;
``--family NAME:SEED``: one appearance family) are drawn in memory, 60 frames of 512 x 512.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from dmx.tracking.tracker import TRUSTED_QUALITY
from dmx.tracking.types import rigid_fit

sys.path.insert(0, str(Path(__file__).resolve().parent))

BODIES = ("C2", "C3", "C4", "C5", "C6", "C7")


def _rotation_deg(a: np.ndarray) -> float:
    return math.degrees(math.atan2(a[1, 0], a[0, 0]))


def _true_rotation_deg(corners: np.ndarray, ref: int, t: int) -> float:
    """The rotation of a rigid body's true corners ``(T, 4, 2)`` from frame ``ref`` to frame ``t``."""
    return _rotation_deg(rigid_fit(corners[ref], corners[t]))


def _band_weights(template, quad: np.ndarray, reference: np.ndarray, band_px: float) -> np.ndarray:
    """Weights over ``template.bbox``: 1 within ``band_px`` of the outline ``quad``, scaled down to 0 where
    the reference frame's gradient is not normal to the nearest side (|cos| 0.5 -> 0, 0.9 -> 1)."""
    x0, y0, x1, y1 = template.bbox
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [np.round((quad - [x0, y0]) * 8).astype(np.int32)], 1, shift=3)
    dist = np.where(
        inside > 0,
        cv2.distanceTransform(inside, cv2.DIST_L2, 5),
        cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5),
    )
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(float)
    nearest = np.full(xx.shape, np.inf)
    nx, ny = np.zeros_like(xx), np.zeros_like(xx)
    for k in range(4):
        p, q = quad[k], quad[(k + 1) % 4]
        side = q - p
        length = float(np.hypot(*side))
        s = np.clip(((xx - p[0]) * side[0] + (yy - p[1]) * side[1]) / length**2, 0.0, 1.0)
        d = np.hypot(xx - (p[0] + s * side[0]), yy - (p[1] + s * side[1]))
        closer = d < nearest
        nearest[closer] = d[closer]
        nx[closer], ny[closer] = -side[1] / length, side[0] / length
    smooth = cv2.GaussianBlur(reference.astype(np.float32), (0, 0), 1.5)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)[y0:y1, x0:x1]
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)[y0:y1, x0:x1]
    normal = np.abs(gx * nx + gy * ny) / (np.hypot(gx, gy) + 1e-6)
    return (dist <= band_px).astype(np.float32) * np.clip((normal - 0.5) / 0.4, 0.0, 1.0)


def _refit(frames, landmarks, tracks, body: str, highpass_frac: float, band_px: float | None) -> np.ndarray:
    """``(T,)`` rotation (deg) of one plain registration per frame from the tracked pose; NaN where lost."""
    from dmx.anatomy import Vertebra
    from dmx.tracking.register import FrameROI, make_template, needed_box, register, reweighted

    ref = landmarks.frame
    reference = frames[ref].astype(np.float32)
    names = [v.value for v in tracks.vertebrae]
    i = names.index(body)
    quad = np.asarray(landmarks.corners_px[Vertebra(body)], float)
    neighbours = tuple(
        np.asarray(landmarks.corners_px[Vertebra(names[j])], float)
        for j in (i - 1, i + 1)
        if 0 <= j < len(names) and Vertebra(names[j]) in landmarks.corners_px
    )
    size = math.sqrt(abs(cv2.contourArea(quad.astype(np.float32))))
    template = make_template(
        reference,
        quad,
        exclude_quads_px=neighbours,
        highpass_sigma_px=highpass_frac * size,
        blur_sigma_px=1.0,
    )
    if band_px is not None:
        template = reweighted(template, _band_weights(template, quad, reference, band_px))
    out = np.full(len(frames), np.nan)
    for t in range(len(frames)):
        a = tracks.transforms[t, i]
        if not np.isfinite(a).all() or not np.nan_to_num(tracks.quality[t, i]) >= TRUSTED_QUALITY:
            continue
        pose = np.vstack([a, [0.0, 0.0, 1.0]])
        box = needed_box(template, pose, frames[t].shape, 12 + template.filter_pad_px)
        fit = register(template, FrameROI(frames[t].astype(np.float32), box, template), pose, first_level=1)
        out[t] = _rotation_deg(fit.transform)
    return out


def _cases(a):
    """(name, frames, landmarks, {body: (T, 4, 2) true corners}) per case asked for."""
    if a.shoulder_seeds:
        import independent as bench

        import dmx

        for seed in a.shoulder_seeds.split(","):
            opts = {**bench.HEAVY_SHOULDERS, "frames": a.frames}
            if a.photons is not None:
                opts["photons"] = a.photons
            if a.no_shoulders:
                opts["shoulders"] = False
            out, truth = bench.study(Path(a.cache), int(seed), opts)
            seq = dmx.load_sequence(out / "study.dcm")
            corners = {b: np.array([c[b] for c in truth["corners"]], float) for b in BODIES}
            yield f"independent {seed}", seq.frames, dmx.read_landmarks(out / "landmarks.json"), corners
    phantoms = []
    if a.mandible_seeds:
        import tracking as tracking_bench

        base = dict(frames=60, rows=512, cols=512)
        phantoms += [
            (f"mandible {s}", tracking_bench._mandible_case(int(s), base)[1])
            for s in a.mandible_seeds.split(",")
        ]
    for spec in a.family or []:
        from dmx.phantom import draw_appearance

        fam, seed = spec.split(":")
        phantoms.append(
            (
                spec,
                dict(
                    frames=60,
                    rows=512,
                    cols=512,
                    seed=int(seed),
                    appearance=draw_appearance(fam, seed=int(seed)),
                ),
            )
        )
    for name, kw in phantoms:
        from dmx.anatomy import Vertebra
        from dmx.phantom import make_phantom, truth_corners

        ph = make_phantom(**kw)
        tc = truth_corners(ph.truth, tuple(Vertebra(b) for b in BODIES))
        yield name, ph.frames, ph.landmarks, {b: tc[:, k] for k, b in enumerate(BODIES)}


def _line(label: str, rot: np.ndarray, true: np.ndarray) -> str:
    ok = np.isfinite(rot)
    if ok.sum() < 3:
        return f"{label} -"
    e = rot[ok] - true[ok]
    e = np.abs(e - np.median(e))
    slope = np.polyfit(true[ok], rot[ok], 1)[0]
    return f"{label} slope {slope:.3f} |e| {np.median(e):.3f} / {np.percentile(e, 95):.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoulder-seeds", help="independent renderer, heavy shoulders: comma-separated seeds")
    ap.add_argument("--mandible-seeds", help="this project's mandible-and-shoulders phantom: seeds")
    ap.add_argument("--family", action="append", help="this project's appearance family NAME:SEED")
    ap.add_argument("--bodies", default="C4,C5,C6,C7")
    ap.add_argument("--track-highpass", type=float, default=None, help="the tracker's highpass_frac")
    ap.add_argument("--refit-highpass", type=float, default=None)
    ap.add_argument("--band", type=float, default=None, help="with the refit: the outline band (px)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument(
        "--photons",
        type=float,
        default=None,
        help="--shoulder-seeds: the renderer's photons (1e5; 1e7: no noise)",
    )
    ap.add_argument(
        "--no-shoulders", action="store_true", help="--shoulder-seeds: drawn without the shoulders"
    )
    ap.add_argument("--cache", default="/tmp/dmx-independent-cache")
    a = ap.parse_args()
    from dmx.tracking.tracker import track

    print("per body: tracked rotation against the truth (slope; per-frame |error| median / p95, deg)")
    for name, frames, landmarks, corners in _cases(a):
        kw = {} if a.track_highpass is None else {"highpass_frac": a.track_highpass}
        tracks = track(frames, landmarks, **kw)
        names = [v.value for v in tracks.vertebrae]
        ref = landmarks.frame
        for body in a.bodies.split(","):
            i = names.index(body)
            trusted = np.nan_to_num(tracks.quality[:, i]) >= TRUSTED_QUALITY
            rot = np.array(
                [_rotation_deg(tracks.transforms[t, i]) if trusted[t] else np.nan for t in range(len(frames))]
            )
            rot[ref] = np.nan
            true = np.array([_true_rotation_deg(corners[body], ref, t) for t in range(len(frames))])
            row = [_line("tracked", rot, true)]
            if a.refit_highpass is not None:
                refit = _refit(frames, landmarks, tracks, body, a.refit_highpass, a.band)
                refit[ref] = np.nan
                what = f"refit hp {a.refit_highpass}" + ("" if a.band is None else f" band {a.band:g}")
                row.append(_line(what, refit, true))
            print(f"  {name:18} {body} | " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
