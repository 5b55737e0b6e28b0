"""Fit the detector's parameters from phantoms: ``python -m dmx.training.fit --out models/detector.npz``.

Deterministic: the same code gives the same file. What is fitted:

1. body poses, the mean corner shape per level, and the spacing/relative tilt of
   neighbours (chain prior) from the phantoms' exact corners;
2. mean upright appearance of a body (C3-C6) and of C2 with its dens (templates);
3. the outward offset from the steepest edge to the annotated outline, per side;
4. a logistic confidence from the refinement's fit features on correct and on
   deliberately misplaced bodies, and the chain-score floor from images without a spine.

The fitting set varies contrast, noise, blur, polarity, facing, pixel size, image
size, curve, pose (reference frame in flexion, neutral or extension), tilt, JPEG,
texture and anatomy (per-patient body sizes, aspect, wedging, disc heights and outline
shape: ``anatomy_sd`` uniform in 0..0.08). It never uses the settings the benchmark holds
out (see :data:`HELD_OUT`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from dmx.anatomy import BODIES
from dmx.detect.model import FEATURES, DetectorModel, confidence_inputs
from dmx.detect.pose import normalise, pose_from_corners, sample_patch, to_local_mm
from dmx.phantom import draw_appearance, make_phantom, parse_families
from dmx.phantom.skeleton import CURVES

RES_MM = 0.6
#: A detected body is a good example for the confidence fit when its worst corner is within this
#: distance of the truth (px): below the 3 px the benchmark holds every accepted corner to.
GOOD_CORNER_PX = 2.5
#: Bodies below this confidence are left out. Above one half because a wrongly accepted body
#: (a corner more than 3 px off) costs more than a body left out for the reviewer to add: at 0.7
#: the fitting set keeps about 3 such bodies per 1000 and loses under 1 % of good ones.
CONF_THRESHOLD = 0.7
BIG_BODY_MM, CROP_BODY_MM = 48.0, 30.0
BIG_C2_MM, CROP_C2_MM, C2_OFFSET_MM = 56.0, 34.0, 6.0

#: Settings never used for fitting (the benchmark's held-out axes): images of 1024 px, pixel sizes
#: below 0.16 mm, photons below 600, blur above 1.8 px, JPEG quality below 70, anatomical
#: variation above ``anatomy_sd`` 0.08, and the combination S-curve (lower kyphotic) + facing
#: left + MONOCHROME1.
HELD_OUT = {
    "max_anatomy_sd": 0.08,
    "rows": 1024,
    "min_mm_per_px": 0.16,
    "min_photons": 600,
    "max_blur_px": 1.8,
    "min_jpeg_quality": 70,
    "combo": {"curve": "s_lower_kyphotic", "facing": "left", "photometric": "MONOCHROME1"},
}


def training_specs(
    n: int,
    *,
    seed: int = 20261127,
    first_seed: int = 100000,
    families: Sequence[str] | None = None,
    max_size_px: int = 1024,
) -> list[dict[str, Any]]:
    """``n`` make_phantom keyword sets for fitting (phantom seeds ``first_seed`` + i).

    With another ``seed`` and ``first_seed`` it draws unseen phantoms from the same ranges.
    ``anatomy_sd`` is drawn from its own stream, so the other settings are those drawn before
    anatomical variation was added. ``families`` (appearance families, see
    :mod:`dmx.phantom.appearance`): each phantom takes each of them with probability one half
    (its own stream again; ``None``, the default, gives the default look and the same specs as
    before), its look drawn from the phantom's seed with images at most ``max_size_px``.
    """
    rng = np.random.default_rng(seed)
    rng_anatomy = np.random.default_rng([seed, 1])
    rng_look = np.random.default_rng([seed, 2])
    out = []
    while len(out) < n:
        size = int(rng.choice([512, 640, 768]))
        lo = max(0.16, 148.0 / size)
        mpp = float(np.round(rng.uniform(lo, 0.4), 3))
        kw: dict[str, Any] = {
            "seed": first_seed + len(out),
            "frames": 4,
            "return_to_neutral": False,
            "rows": size,
            "cols": size if rng.random() < 0.7 else int(round(size * rng.uniform(0.8, 1.0))),
            "mm_per_px": mpp,
            "curve": str(rng.choice(CURVES)),
            "facing": str(rng.choice(["right", "left"])),
            "photometric": str(rng.choice(["MONOCHROME2", "MONOCHROME1"])),
            "photons": float(rng.choice([0.0, 600.0, 1500.0, 4000.0, 8000.0, 30000.0])),
            "blur_px": float(np.round(rng.uniform(0.4, 1.8), 2)),
            "tilt_deg": float(np.round(rng.uniform(-5, 25), 1)),
            "reference_frame": int(rng.choice([0, 1, 3])),
            "rom_deg": {
                j: float(np.round(r * rng.uniform(0.6, 1.3), 1))
                for j, r in {"C2-C3": 8, "C3-C4": 11, "C4-C5": 14, "C5-C6": 15, "C6-C7": 9}.items()
            },
            "bits": 8 if rng.random() < 0.6 else 12,
            "anatomy_sd": float(np.round(rng_anatomy.uniform(0.0, HELD_OUT["max_anatomy_sd"]), 3)),
        }
        kw["cols"] = max(kw["cols"], int(np.ceil(148.0 / mpp)))
        if kw["bits"] == 8 and rng.random() < 0.3:
            kw["transfer_syntax"] = "jpeg"
            kw["jpeg_quality"] = int(rng.integers(70, 96))
        combo = HELD_OUT["combo"]
        if all(kw[k] == v for k, v in combo.items()):
            continue
        if families:
            chosen = [f for f in families if rng_look.random() < 0.5]
            kw["appearance"] = draw_appearance(chosen, seed=kw["seed"], max_size_px=max_size_px)
        out.append(kw)
    return out


def display_frame(ph: Any, frame: int) -> np.ndarray:
    """The frame in display polarity, as the loader gives it (MONOCHROME1 inverted)."""
    img = ph.frames[frame].astype(np.float32)
    if ph.truth["params"]["photometric"] == "MONOCHROME1":
        bits = ph.truth["params"]["bits"]
        img = float((1 << bits) - 1) - img
    return img


def sample(kw: dict[str, Any]) -> dict[str, Any]:
    """Generate one phantom; return its reference frame facing right, true corners (6,4,2) and spacing."""
    ph = make_phantom(**kw)
    f = kw.get("reference_frame", 0)
    img = display_frame(ph, f)
    corners = np.stack([ph.landmarks.corners_px[v] for v in BODIES])
    if ph.truth["facing"] == "left":  # as the image shows it (an acquisition may flip it)
        img = np.ascontiguousarray(img[:, ::-1])
        corners = corners.copy()
        corners[..., 0] = img.shape[1] - 1 - corners[..., 0]
    vis = np.array([ph.truth["visibility"][v.value][f] for v in BODIES])
    return {"image": img, "corners": corners, "mm_per_px": float(ph.truth["mm_per_px"][0]), "vis": vis}


def _logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Logistic regression by Newton iterations (bias last)."""
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(a.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(a @ w, -30, 30)))
        g = a.T @ (p - y) + l2 * np.r_[w[:-1], 0]
        h = (a * (p * (1 - p))[:, None]).T @ a + l2 * np.eye(len(w))
        step = np.linalg.solve(h, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit(n_images: int = 160, *, families: Sequence[str] | None = None, log=print) -> DetectorModel:
    """Fit a :class:`DetectorModel` from ``n_images`` training phantoms.

    ``families``: appearance families mixed into the training phantoms (see
    :func:`training_specs`); ``None`` (the default) fits on the default look only.
    """
    from dmx.detect.column import coarse
    from dmx.detect.detector import refine_chain
    from dmx.detect.pose import smoothed
    from dmx.detect.refine import refine_corners, side_offsets_px

    t0 = time.perf_counter()
    data = [sample(kw) for kw in training_specs(n_images, families=families)]
    log(f"generated {len(data)} phantoms in {time.perf_counter() - t0:.0f} s")

    # 1. poses, shapes, chain prior
    poses = []  # per image: (6, 3) cx, cy, theta
    local = []
    for d in data:
        p = []
        loc = []
        for k in range(6):
            c, th = pose_from_corners(d["corners"][k])
            p.append([c[0], c[1], th])
            loc.append(to_local_mm(d["corners"][k], c, th, 1 / d["mm_per_px"]))
        poses.append(np.array(p))
        local.append(np.array(loc))
    mean_shape = np.mean(local, axis=0)
    rel = []
    for d, p in zip(data, poses, strict=True):
        r = []
        for k in range(5):
            up, low = p[k], p[k + 1]
            uv = to_local_mm(up[:2], low[:2], low[2], 1 / d["mm_per_px"])
            r.append([uv[0], uv[1], up[2] - low[2]])
        rel.append(r)
    rel = np.array(rel)
    trans_mean = rel.mean(axis=0)
    trans_std = np.maximum(rel.std(axis=0), np.array([1.5, 1.0, 5.0]))
    thetas = np.concatenate([p[:, 2] for p in poses])
    lo, hi = np.floor(thetas.min() / 8) * 8 - 8, np.ceil(thetas.max() / 8) * 8 + 8
    angles = np.arange(lo, hi + 1e-9, 8.0)
    log(f"tilts {thetas.min():.0f}..{thetas.max():.0f} deg -> {len(angles)} template angles")

    # 2. templates
    nb, nc = int(round(BIG_BODY_MM / RES_MM)), int(round(BIG_C2_MM / RES_MM))
    body_sum = np.zeros((nb, nb))
    c2_sum = np.zeros((nc, nc))
    count = 0
    for d, p in zip(data, poses, strict=True):
        norm = normalise(d["image"])
        ppm = 1 / d["mm_per_px"]
        for k in range(1, 5):
            body_sum += sample_patch(norm, p[k, :2], p[k, 2], ppm, size_px=(nb, nb), res_mm=RES_MM)
            count += 1
        c2_sum += sample_patch(
            norm, p[0, :2], p[0, 2], ppm, size_px=(nc, nc), res_mm=RES_MM, offset_mm=(0, C2_OFFSET_MM)
        )
    tmpl_body = (body_sum / count).astype(np.float32)
    tmpl_c2 = (c2_sum / len(data)).astype(np.float32)

    # 3. side offsets: refine from perturbed true corners, compare with the truth
    rng = np.random.default_rng(7)
    offs: list[list[np.ndarray]] = [[], []]
    for d in data:
        sm, noise = smoothed(d["image"], d["mm_per_px"])
        ppm = 1 / d["mm_per_px"]
        for k in range(6):
            if d["vis"][k] < 0.95:
                continue
            init = d["corners"][k] + rng.normal(0, 0.4 * ppm, size=(4, 2))
            c, _, fits = refine_corners(sm, init, is_c2=k == 0, px_per_mm=ppm, noise=noise)
            if c is None:
                continue
            offs[0 if k == 0 else 1].append(side_offsets_px(fits, d["corners"][k]) / ppm)
    side_offsets = np.array([np.median(np.array(o), axis=0) for o in offs])
    log(f"side offsets mm (sup, post, inf, ant; start, end): C2 {np.round(side_offsets[0], 3).tolist()}")
    log(f"                                               C3-C7 {np.round(side_offsets[1], 3).tolist()}")

    model = DetectorModel(
        res_mm=RES_MM,
        tmpl_body=tmpl_body,
        tmpl_c2=tmpl_c2,
        crop_body=int(round(CROP_BODY_MM / RES_MM)),
        crop_c2=int(round(CROP_C2_MM / RES_MM)),
        c2_offset_mm=C2_OFFSET_MM,
        angles=angles,
        scale_sweep_mm=np.geomspace(0.13, 0.46, 14),
        trans_mean=trans_mean,
        trans_std=trans_std,
        mean_shape_mm=mean_shape,
        side_offsets_mm=side_offsets,
        score_weight=20.0,
        conf_mean=np.zeros(len(FEATURES)),
        conf_scale=np.ones(len(FEATURES)),
        conf_weights=np.zeros(len(FEATURES) + 1),
        conf_threshold=CONF_THRESHOLD,
        chain_min_score=-np.inf,
    )

    # 4. confidence: features of detected bodies (label: worst corner within GOOD_CORNER_PX)
    feats, errors, chain_scores = [], [], []
    for i, d in enumerate(data):
        chain, mpp = coarse(d["image"], model, mm_per_px=d["mm_per_px"])
        if chain is None:
            continue
        chain_scores.append(chain.score)
        res = refine_chain(d["image"], chain, model, mm_per_px=mpp)
        for k, (c, f, _) in enumerate(res):
            if c is None:
                continue
            err = np.hypot(*(c - d["corners"][k]).T).max()
            feats.append(f)
            errors.append(err)
        if i % 4 == 0:
            # negatives: the same chain displaced by half a body along the column
            shifted = replace(
                chain,
                bodies=tuple(
                    replace(b, y=b.y + 0.5 * 14.0 / RES_MM * (1 if i % 8 == 0 else -1)) for b in chain.bodies
                ),
            )
            for k, (c, f, _) in enumerate(refine_chain(d["image"], shifted, model, mm_per_px=mpp)):
                if c is None:
                    continue
                err = np.hypot(*(c - d["corners"][k]).T).max()
                feats.append(f)
                errors.append(err)
    # images without a spine: noise, smooth blobs, blank
    neg_scores = []
    rng = np.random.default_rng(11)
    for j in range(6):
        size = 512
        if j % 3 == 0:
            img = rng.normal(100, 20, (size, size)).astype(np.float32)
        elif j % 3 == 1:
            from scipy import ndimage

            img = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 6 + 3 * j).astype(np.float32)
        else:
            img = np.full((size, size), 50, np.float32) + rng.normal(0, 1, (size, size)).astype(np.float32)
        mpp = 0.3
        chain, _ = coarse(img, model, mm_per_px=mpp)
        if chain is None:
            continue
        neg_scores.append(chain.score)
        for c, f, _ in refine_chain(img, chain, model, mm_per_px=mpp):
            if c is not None:
                feats.append(f)
                errors.append(np.inf)  # no spine: every body found is wrong
    x = confidence_inputs(np.array(feats))
    e = np.array(errors)
    y = (e <= GOOD_CORNER_PX).astype(float)
    mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
    w = _logistic((x - mean) / scale, y)
    p = 1 / (1 + np.exp(-(((x - mean) / scale) @ w[:-1] + w[-1])))
    log(
        f"confidence: {int(y.sum())} good / {int((1 - y).sum())} bad bodies; "
        f"at {CONF_THRESHOLD}: {int(((p >= CONF_THRESHOLD) & (y == 1)).sum())} kept good, "
        f"{int(((p >= CONF_THRESHOLD) & (y == 0)).sum())} kept bad"
    )
    is_c2 = x[:, FEATURES.index("is_c2")] > 0.5
    for th in (0.5, 0.6, 0.7, 0.8, 0.9):
        kept = p >= th
        bad = kept & (e > 3.0)
        log(
            f"  at {th:.1f}: kept {int((kept & (e <= GOOD_CORNER_PX)).sum())} good, "
            f"{int(bad.sum())} with a corner > 3 px ({int((bad & is_c2).sum())} of them C2; "
            f"confidences {np.round(np.sort(p[bad]), 2).tolist()})"
        )
    # chain-score floor: nearer the no-spine scores than the spines (a real spine must never be
    # dropped here; per-vertebra confidence is the main guard against false bodies)
    lo_pos, hi_neg = min(chain_scores), max(neg_scores, default=-np.inf)
    floor = hi_neg + 0.25 * (lo_pos - hi_neg) if hi_neg < lo_pos else lo_pos - 1.0
    log(f"chain scores: spines {lo_pos:.1f}..{max(chain_scores):.1f}, no spine max {hi_neg:.1f}")
    log(f"chain-score floor {floor:.1f}")
    model = replace(model, conf_mean=mean, conf_scale=scale, conf_weights=w, chain_min_score=float(floor))
    log(f"fitted in {time.perf_counter() - t0:.0f} s")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmx.training.fit", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/detector.npz", help="output file (default %(default)s)")
    parser.add_argument(
        "--images", type=int, default=160, help="number of training phantoms (default %(default)s)"
    )
    parser.add_argument(
        "--appearance",
        default=None,
        help="appearance families mixed into the training phantoms (FAMILY[,FAMILY] or all; default none)",
    )
    args = parser.parse_args(argv)
    families = [f.value for f in parse_families(args.appearance)] or None
    model = fit(args.images, families=families, log=lambda m: print(m, file=sys.stderr))
    model.save(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
