"""Fit the body-segmentation network (:mod:`dmx.detect.heatmap`) on phantoms of every appearance family.

Sub-commands (training needs the ``train`` extra: ``pip install dmx[train]``, i.e. PyTorch and
onnx; inference does not)::

    PYTHONPATH=. python -m dmx.training.heatmap data --phantoms 400 --out CACHE/heatmap.npz
    PYTHONPATH=. python -m dmx.training.heatmap train --data CACHE/heatmap.npz \
        --out models/heatmap.onnx --minutes 40 [--exclude posterior]
    PYTHONPATH=. python -m dmx.training.heatmap export --state models/heatmap.pt --out X.onnx
    PYTHONPATH=. python -m dmx.training.heatmap preview --data CACHE/heatmap.npz --model X.onnx --out DIR

Data recipe (:func:`heatmap_specs`): phantom seeds 400000+ (the corner-detector fit uses 100000+,
the benchmarks 700000+ and below 100000), each phantom taking each appearance family with
probability one half (``--family-share LO,HI``: with a probability drawn per phantom from
[LO, HI], so that many phantoms take nearly every family at once), rendered small (224-320 px
at 0.5-0.75 mm, the acquisition family's image and pixel size scaled to that range), four frames
each (neutral, flexion, neutral, extension), random curve, facing, polarity, bits, noise, blur,
tilt, ROM and anatomy. Every frame is stored at :data:`STORE_MM_PER_PX`, normalised as at
inference (:func:`dmx.detect.heatmap.net_input`), with its true corners, the bodies' visibility,
their share inside the exposed field (since session 60) and the families it was drawn with, so that a
family can be left out at training time (``--exclude``) without generating the data again.

Targets, drawn per training crop from the true corners: the segmentation (background, C2..C7: each
body's corner quadrilateral; a body less than :data:`MIN_VISIBILITY` visible is ignored by the loss, or
with ``--targets field`` one less than :data:`MIN_IN_FIELD` inside the exposed field: C7 under the
shoulders, which the phantom's visibility counts as hidden, is then a target) and four corner-type maps
(Gaussian peaks). Loss: class-weighted cross-entropy + soft Dice on the segmentation, CenterNet's focal
loss on the corner maps (:func:`_loss`). Training adds random crops (resampled to the network's pixel
size), flips, rotations (+-20 deg; ``--rotate-deg``), scale (0.8-1.25), gamma, contrast, blur, edge
enhancement, noise, shading and, sometimes, inverted polarity; AdamW with a cosine learning rate over a
wall-clock budget (``--minutes``). The torch state is kept beside the output (``OUT.pt``) every 3
minutes and at the end; a ``train`` run that finds it resumes (the budget then counts every run's
minutes). ``--init X.onnx`` starts from an exported network's weights instead of random ones
(:func:`load_onnx_weights`: a fine-tuning run; its batch norms stay frozen as the export folded them).
Deterministic for a given data file and seed up to PyTorch's own CPU non-determinism and the wall-clock
budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dmx.anatomy import BODIES
from dmx.detect.heatmap import N_BODIES, N_CLASSES, N_CORNERS, N_OUT, NET_MM_PER_PX, PEAK_SIGMA_PX, net_input
from dmx.phantom import make_phantom
from dmx.phantom.appearance import Appearance, Family, draw_appearance
from dmx.phantom.skeleton import CURVES

FAMILIES = tuple(f.value for f in Family)
#: Stored frames are padded / cropped to this side at this pixel size (205 mm); training crops
#: resample them to the network's pixel size.
STORE_SIDE = 256
STORE_MM_PER_PX = 0.8
#: A body counts as visible (a target) above this visible share (the default shoulders leave
#: 0.38 of C7, which stays plainly visible); a less visible one is ignored by the loss.
MIN_VISIBILITY = 0.3
#: With ``--targets field`` (session 60) a body is a target where this share of it lies inside the exposed
#: field (the image less the collimator blades), whatever bone or soft tissue lies over it: the phantom's
#: visibility counts any overlap by the mandible or the shoulders as hidden, so that C7 (visibility 0 on
#: every all-family phantom, though plainly outlined under the shoulders) was never a target there.
MIN_IN_FIELD = 0.7
#: What makes a body a training target: its visible share (``visibility``) or its share in the field.
TARGETS = ("visibility", "field")


def heatmap_specs(
    n: int, *, seed: int = 12, first_seed: int = 400000, family_share: tuple[float, float] = (0.5, 0.5)
) -> list[dict[str, Any]]:
    """``n`` make_phantom keyword sets for the heatmap network's training data.

    Each phantom takes each appearance family with a probability drawn uniformly from
    ``family_share`` (one draw per phantom, so some phantoms take nearly every family at once and
    some nearly none; ``(0.5, 0.5)``, the first recipe, draws nothing extra)."""
    rng = np.random.default_rng(seed)
    lo, hi = family_share
    out = []
    for i in range(n):
        mpp = float(np.round(rng.uniform(0.5, 0.75), 3))
        side = int(rng.choice([224, 256, 288, 320]))
        kw: dict[str, Any] = {
            "seed": first_seed + i,
            "frames": 4,
            "return_to_neutral": False,
            "rows": side,
            "cols": max(int(np.ceil(150.0 / mpp)), int(round(side * rng.uniform(0.8, 1.0)))),
            "mm_per_px": mpp,
            **random_study_options(rng),
        }
        share = lo if lo == hi else float(rng.uniform(lo, hi))
        kw["appearance"] = random_look(rng, kw["seed"], share, mm_per_px=(0.5, 0.75), side_px=(200, 440))
        out.append(kw)
    return out


def random_study_options(rng: np.random.Generator) -> dict[str, Any]:
    """A training phantom's curve, facing, polarity, dose, blur, tilt, ROM, bits and anatomy
    (:func:`dmx.phantom.make_phantom` keywords), drawn in this order from ``rng``."""
    return {
        "curve": str(rng.choice(CURVES)),
        "facing": str(rng.choice(["right", "left"])),
        "photometric": str(rng.choice(["MONOCHROME2", "MONOCHROME1"])),
        "photons": float(rng.choice([0.0, 300.0, 1000.0, 4000.0, 20000.0])),
        "blur_px": float(np.round(rng.uniform(0.3, 1.2), 2)),
        "tilt_deg": float(np.round(rng.uniform(-10, 30), 1)),
        "rom_deg": {
            j: float(np.round(r * rng.uniform(0.5, 1.4), 1))
            for j, r in {"C2-C3": 8, "C3-C4": 11, "C4-C5": 14, "C5-C6": 15, "C6-C7": 9}.items()
        },
        "bits": 8 if rng.random() < 0.6 else 12,
        "anatomy_sd": float(np.round(rng.uniform(0.0, 0.12), 3)),
    }


def random_look(
    rng: np.random.Generator,
    seed: int,
    share: float,
    *,
    mm_per_px: tuple[float, float],
    side_px: tuple[int, int],
) -> Appearance:
    """Each appearance family with probability ``share``, drawn from the phantom's ``seed``; the
    acquisition family's pixel size redrawn in ``mm_per_px`` (its image scaled with it, clipped to
    ``side_px``), keeping its geometry and overlays at the training pixel size."""
    chosen = [f for f in FAMILIES if rng.random() < share]
    look = draw_appearance(chosen, seed=seed, max_size_px=2048)
    if look.acquisition is not None:
        acq = look.acquisition
        new = float(rng.uniform(*mm_per_px))
        k = acq.mm_per_px / new
        acq = dataclasses.replace(
            acq,
            mm_per_px=new,
            rows=int(np.clip(round(acq.rows * k), *side_px)),
            cols=int(np.clip(round(acq.cols * k), *side_px)),
            grid_period_px=acq.grid_period_px * min(k, 1.0) if acq.grid_period_px else 0.0,
        )
        look = dataclasses.replace(look, acquisition=acq)
    return look


def _family_mask(kw: dict[str, Any]) -> int:
    return sum(1 << i for i, f in enumerate(FAMILIES) if f in kw["appearance"].families)


def _store(img: np.ndarray, corners: np.ndarray, mm_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Network input padded / centre-cropped to STORE_SIDE, as uint8, and the corners in its pixels."""
    x, factor = net_input(img, mm_per_px, net_mm_per_px=STORE_MM_PER_PX)
    h, w = x.shape
    out = np.full((STORE_SIDE, STORE_SIDE), float(np.median(x)), dtype=np.float32)
    oy, ox = (STORE_SIDE - h) // 2, (STORE_SIDE - w) // 2
    sy, sx = max(0, -oy), max(0, -ox)
    dy, dx = max(0, oy), max(0, ox)
    hh, ww = min(h - sy, STORE_SIDE - dy), min(w - sx, STORE_SIDE - dx)
    out[dy : dy + hh, dx : dx + ww] = x[sy : sy + hh, sx : sx + ww]
    c = (corners + 0.5) * factor - 0.5 + np.array([ox, oy], dtype=float)
    return np.round(out * 255).astype(np.uint8), c.astype(np.float32)


def render(
    kw: dict[str, Any],
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray], int]:
    """One phantom's frames as stored training images, their corners, visibility and share in the field."""
    ph = make_phantom(**kw)
    p = ph.truth["params"]
    mpp = float(np.mean(ph.truth["mm_per_px"]))
    imgs, cors, vis, field = [], [], [], []
    for f in range(ph.frames.shape[0]):
        img = ph.frames[f].astype(np.float32)
        if p["photometric"] == "MONOCHROME1":
            img = float((1 << p["bits"]) - 1) - img
        corners = np.array(
            [[ph.truth["tracks"][v.value][k][f] for k in ph.truth["tracks"][v.value]] for v in BODIES]
        )
        im8, c = _store(img, corners, mpp)
        imgs.append(im8)
        cors.append(c)
        vis.append(np.array([ph.truth["visibility"][v.value][f] for v in BODIES], dtype=np.float32))
        field.append(np.array([ph.truth["in_field"][v.value][f] for v in BODIES], dtype=np.float32))
    return imgs, cors, vis, field, _family_mask(kw)


def make_data(
    n: int,
    out: Path,
    *,
    workers: int = 2,
    seed: int = 12,
    first_seed: int = 400000,
    family_share: tuple[float, float] = (0.5, 0.5),
) -> None:
    """Render ``n`` phantoms (4 frames each) into one .npz training file."""
    specs = heatmap_specs(n, seed=seed, first_seed=first_seed, family_share=family_share)
    imgs, cors, vis, field, fams = [], [], [], [], []
    t0 = time.time()
    with ProcessPoolExecutor(workers) as pool:
        for i, (im, c, v, f, m) in enumerate(pool.map(render, specs, chunksize=2)):
            imgs += im
            cors += c
            vis += v
            field += f
            fams += [m] * len(im)
            if (i + 1) % 25 == 0:
                print(f"{i + 1}/{n} phantoms, {time.time() - t0:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=np.stack(imgs),
        corners=np.stack(cors),
        visibility=np.stack(vis),
        in_field=np.stack(field),
        families=np.array(fams, dtype=np.uint8),
        family_names=np.array(FAMILIES),
    )
    print(f"wrote {out}: {len(imgs)} frames from {n} phantoms in {time.time() - t0:.0f} s")


# ----------------------------------------------------------------------------------------------
# the network (PyTorch, imported lazily: only the train/check commands need it)


def conv_block(i: int, o: int):
    """Two 3x3 convolutions with batch norm and ReLU (``i`` -> ``o`` channels): the U-Nets' block."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(i, o, 3, padding=1, bias=False),
        nn.BatchNorm2d(o),
        nn.ReLU(inplace=True),
        nn.Conv2d(o, o, 3, padding=1, bias=False),
        nn.BatchNorm2d(o),
        nn.ReLU(inplace=True),
    )


def build_net(width: int = 12):
    """U-Net-ish fully-convolutional net: 4 down-samplings, :data:`N_OUT` maps at input resolution.

    Channels 0..6 are the segmentation logits (background, C2..C7), 7..10 the corner-type logits
    (anterior-superior, posterior-superior, posterior-inferior, anterior-inferior); the corner
    channels' bias starts at a prior of 1 % so the focal loss does not begin in a flat minimum.
    """
    import torch
    from torch import nn

    block = conv_block
    ch = [width, width * 2, width * 4, width * 6, width * 8]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.ModuleList([block(1, ch[0])] + [block(ch[i], ch[i + 1]) for i in range(4)])
            self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in range(4)])
            self.dec = nn.ModuleList([block(2 * ch[i], ch[i]) for i in range(4)])
            self.head = nn.Conv2d(ch[0], N_OUT, 1)
            with torch.no_grad():
                self.head.bias[N_CLASSES:] = float(np.log(0.01 / 0.99))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, e in enumerate(self.enc):
                x = e(x)
                if i < 4:
                    skips.append(x)
                    x = nn.functional.max_pool2d(x, 2)
            for i in reversed(range(4)):
                x = self.up[i](x)
                x = self.dec[i](torch.cat([x, skips[i]], dim=1))
            return self.head(x)

    return Net()


def _overlaps(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Add 1-3 generic structures over the crop, anywhere (the column included): filled
    ellipses or polygons, or curved bands, each brighter or darker by up to 0.4, sometimes with
    a brighter rim, blurred by 0.5-3 px. Not drawn after any appearance family of the phantom
    (no skull, mandible or shoulder outline): they teach the network that a bright outline over
    or beside the column is not a body, whatever draws it."""
    crop = out.shape[0]
    for _ in range(int(rng.integers(1, 4))):
        mask = np.zeros((crop * 4, crop * 4), dtype=np.uint8)
        kind = rng.integers(0, 3)
        cx, cy = rng.uniform(0, crop, 2)
        if kind == 0:
            axes = (int(rng.uniform(6, 45) * 16 * 4), int(rng.uniform(4, 30) * 16 * 4))
            cv2.ellipse(
                mask, (int(cx * 64), int(cy * 64)), axes, rng.uniform(0, 180), 0, 360, 255, -1, cv2.LINE_8, 4
            )
        elif kind == 1:
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(8, 40, n)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
            cv2.fillPoly(mask, np.round(pts * 64)[None].astype(np.int32), 255, cv2.LINE_8, 4)
        else:
            t = np.linspace(-1, 1, 40)[:, None]
            d = rng.normal(size=2)
            d /= np.linalg.norm(d) + 1e-9
            bend = rng.uniform(-25, 25)
            length = rng.uniform(30, 120)
            pts = np.array([cx, cy]) + t * length / 2 * d + (t**2) * bend * np.array([-d[1], d[0]])
            cv2.polylines(
                mask,
                np.round(pts * 64)[None].astype(np.int32),
                False,
                255,
                int(rng.uniform(1, 8) * 4),
                cv2.LINE_8,
                4,
            )
        m = cv2.resize(mask, (crop, crop), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        amp = rng.uniform(0.08, 0.4) * (1 if rng.random() < 0.7 else -1)
        layer = amp * m
        if rng.random() < 0.5:  # a cortical rim
            rim = m - cv2.erode(m, np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 3)))
            layer = layer + abs(amp) * rng.uniform(0.3, 1.0) * rim
        out = out + cv2.GaussianBlur(layer, (0, 0), rng.uniform(0.5, 3.0))
    return out


#: Training crops are turned by up to this many degrees either way (``--rotate-deg``).
ROTATE_DEG = 20.0


def _augment(
    rng: np.random.Generator,
    img: np.ndarray,
    corners: np.ndarray,
    crop: int,
    overlaps: float = 0.0,
    rotate_deg: float = ROTATE_DEG,
):
    """Random similarity transform + crop, then photometric changes; returns float image and corners.
    With probability ``overlaps`` generic structures are drawn over the crop (:func:`_overlaps`)."""
    ang = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg))
    s = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
    flip = rng.random() < 0.5
    # centre the crop near the column most of the time
    valid = corners.reshape(-1, 2)
    centre = valid.mean(axis=0) + rng.normal(0, 12, 2) if rng.random() < 0.85 else rng.uniform(40, 216, 2)
    a = (
        np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        * s
        * (STORE_MM_PER_PX / NET_MM_PER_PX)
    )
    if flip:
        a = a @ np.diag([-1.0, 1.0])
    t = np.array([crop / 2, crop / 2]) - a @ centre
    m = np.hstack([a, t[:, None]])
    src = img.astype(np.float32) / 255.0
    fill = float(np.median(src))
    out = cv2.warpAffine(src, m, (crop, crop), flags=cv2.INTER_LINEAR, borderValue=fill)
    c = corners @ a.T + t
    if overlaps > 0 and rng.random() < overlaps:
        out = _overlaps(rng, out)
    # photometric
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.2))
    if rng.random() < 0.3:  # edge enhancement
        bl = cv2.GaussianBlur(out, (0, 0), rng.uniform(1, 4))
        out = out + rng.uniform(0.3, 1.5) * (out - bl)
    out = np.clip(out, 0, 1) ** float(np.exp(rng.uniform(-0.6, 0.6)))
    out = out * rng.uniform(0.6, 1.2) + rng.uniform(-0.2, 0.2)
    if rng.random() < 0.15:
        out = 1.0 - out
    if rng.random() < 0.5:
        out = out + rng.normal(0, rng.uniform(0.005, 0.06), out.shape).astype(np.float32)
    if rng.random() < 0.3:  # low-frequency shading
        yy, xx = np.mgrid[0:crop, 0:crop] / crop
        out = out + rng.uniform(-0.2, 0.2) * (xx - 0.5) + rng.uniform(-0.2, 0.2) * (yy - 0.5)
    return out.astype(np.float32), c.astype(np.float32)


#: Weight of the bodies' pixels (against background 1) in the cross-entropy.
BODY_WEIGHT = 4.0
#: Weight of the corner maps' focal loss against the segmentation's cross-entropy + Dice.
CORNER_WEIGHT = 0.1
#: Label of pixels the segmentation loss ignores (a body too little visible to be a target).
IGNORE = 255


def _targets(corners: np.ndarray, visible: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """Segmentation labels (crop, crop; 0 background, 1..6 C2..C7, IGNORE) from the corner
    quadrilaterals, and 4 corner-type Gaussian maps (visible bodies only, maximum over bodies)."""
    seg = np.zeros((crop, crop), dtype=np.uint8)
    for b in range(N_BODIES):
        q = np.round(corners[b] * 16).astype(np.int32)[None]
        cv2.fillPoly(seg, q, int(b + 1) if visible[b] else IGNORE, lineType=cv2.LINE_8, shift=4)
    yy, xx = np.mgrid[0:crop, 0:crop].astype(np.float32)
    hm = np.zeros((N_CORNERS, crop, crop), dtype=np.float32)
    for b in range(N_BODIES):
        if not visible[b]:
            continue
        for k in range(N_CORNERS):
            x, y = corners[b, k]
            if -3 <= x < crop + 3 and -3 <= y < crop + 3:
                x0, x1 = max(0, int(x) - 6), min(crop, int(x) + 7)
                y0, y1 = max(0, int(y) - 6), min(crop, int(y) + 7)
                if x1 <= x0 or y1 <= y0:
                    continue
                g = np.exp(
                    -((xx[y0:y1, x0:x1] - x) ** 2 + (yy[y0:y1, x0:x1] - y) ** 2) / (2 * PEAK_SIGMA_PX**2)
                )
                hm[k, y0:y1, x0:x1] = np.maximum(hm[k, y0:y1, x0:x1], g)
    return seg, hm


def _loss(p, seg, hm, body_weight: float = BODY_WEIGHT, corner_weight: float = CORNER_WEIGHT):
    """Cross-entropy + soft Dice on the segmentation, CenterNet focal loss on the corner maps."""
    import torch
    from torch.nn import functional as F

    logits = p[:, :N_CLASSES]
    # bodies are 5-10 % of a crop: weigh their pixels up so that 'some body here' is learnt first
    weight = torch.tensor([1.0] + [body_weight] * N_BODIES)
    ce = F.cross_entropy(logits, seg, weight=weight, ignore_index=IGNORE)
    valid = (seg != IGNORE).unsqueeze(1).float()
    prob = logits.softmax(dim=1) * valid
    onehot = (
        F.one_hot(torch.where(seg == IGNORE, 0, seg).long(), N_CLASSES).permute(0, 3, 1, 2).float() * valid
    )
    inter = (prob * onehot)[:, 1:].sum(dim=(0, 2, 3))
    den = (prob + onehot)[:, 1:].sum(dim=(0, 2, 3))
    dice = 1.0 - ((2 * inter + 1.0) / (den + 1.0)).mean()
    q = p[:, N_CLASSES:].sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = (hm > 0.95).float()
    focal = -(pos * (1 - q) ** 2 * q.log() + (1 - pos) * (1 - hm) ** 4 * q**2 * (1 - q).log())
    focal = focal.sum() / pos.sum().clamp(min=1.0)
    return ce + dice + corner_weight * focal, (ce.item(), dice.item(), focal.item())


def target_bodies(d, targets: str = "visibility", name: object = "the data file") -> np.ndarray:
    """Which bodies of each stored frame are training targets (frames, 6) bool: at least
    :data:`MIN_VISIBILITY` visible (``visibility``) or at least :data:`MIN_IN_FIELD` inside the exposed
    field (``field``; the data must hold ``in_field``, written since session 60)."""
    if targets == "field":
        if "in_field" not in getattr(d, "files", d):
            raise SystemExit(f"{name}: no in_field (written since session 60): render the data again")
        return np.asarray(d["in_field"]) >= MIN_IN_FIELD
    if targets == "visibility":
        return np.asarray(d["visibility"]) >= MIN_VISIBILITY
    raise ValueError(f"targets must be one of {', '.join(TARGETS)}, not {targets!r}")


def _batch(rng, images, corners, visible, idx, crop, overlaps=0.0, rotate_deg=ROTATE_DEG):
    import torch

    xs, segs, hms = [], [], []
    for i in idx:
        x, c = _augment(rng, images[i], corners[i], crop, overlaps, rotate_deg)
        s, h = _targets(c, visible[i], crop)
        xs.append(x)
        segs.append(s)
        hms.append(h)
    return (
        torch.from_numpy(np.stack(xs)[:, None]),
        torch.from_numpy(np.stack(segs).astype(np.int64)),
        torch.from_numpy(np.stack(hms)),
    )


def train(
    data: Path,
    out: Path,
    *,
    exclude: tuple[str, ...] = (),
    minutes: float = 15.0,
    batch: int = 8,
    crop: int = 112,
    seed: int = 0,
    width: int = 12,
    threads: int = 1,
    lr: float = 3e-3,
    state: Path | None = None,
    body_weight: float = BODY_WEIGHT,
    corner_weight: float = CORNER_WEIGHT,
    overlaps: float = 0.0,
    rotate_deg: float = ROTATE_DEG,
    init: Path | None = None,
    targets: str = "visibility",
) -> None:
    """Fit the network on the data file (frames drawn with an ``exclude`` family are left out).

    ``targets``: which bodies are targets (:func:`target_bodies`); any other is ignored by the loss.

    ``state`` (default: ``out`` with ``.pt``) keeps the torch state every few minutes and at the
    end; a run finding it resumes from it (the learning-rate schedule spans all runs' minutes).
    ``init``: start from an exported network's weights (:func:`load_onnx_weights`; its batch norms
    stay frozen as the export folded them) instead of random ones.
    """
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    state = state or out.with_suffix(".pt")
    d = np.load(data)
    names = [str(n) for n in d["family_names"]]
    bad = sum(1 << names.index(f) for f in exclude)
    keep = (d["families"] & bad) == 0
    images, corners = d["images"][keep], d["corners"][keep]
    visible = target_bodies(d, targets, data)[keep]
    print(
        f"{keep.sum()} of {keep.size} frames (excluded families: {', '.join(exclude) or 'none'}); "
        f"targets by {targets}: {visible.mean():.1%} of the bodies",
        flush=True,
    )
    net = build_net(width)
    print(f"{sum(p.numel() for p in net.parameters())} parameters", flush=True)
    st = torch.load(state, weights_only=False) if state.is_file() else None
    if st is not None:
        frozen = bool(st.get("frozen_bn", False))  # as the run that saved it trained
    else:
        frozen = init is not None
        if init is not None:
            load_onnx_weights(net, init)
            print(f"started from {init} (batch norms frozen)", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    done_s, step = 0.0, 0
    if st is not None:
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        done_s, step = float(st["seconds"]), int(st["step"])
        minutes = max(minutes, float(st["minutes"]))
        print(f"resumed from {state}: step {step}, {done_s:.0f} s done of {minutes * 60:.0f}", flush=True)
    rng = np.random.default_rng(seed + step)
    total_s = minutes * 60
    t0 = time.time() - done_s
    last_save = time.time()
    losses: list[tuple[float, float, float]] = []

    def save() -> None:
        torch.save(
            {
                "net": net.state_dict(),
                "opt": opt.state_dict(),
                "seconds": time.time() - t0,
                "step": step,
                "minutes": minutes,
                "width": width,
                "frozen_bn": frozen,
            },
            state,
        )

    _train_mode(net, frozen)
    while time.time() - t0 < total_s:
        frac = (time.time() - t0) / total_s
        warm = min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = warm * lr * (0.5 * (1 + np.cos(np.pi * min(frac, 1.0)))) + 2e-5
        idx = rng.integers(0, len(images), batch)
        x, seg, hm = _batch(rng, images, corners, visible, idx, crop, overlaps, rotate_deg)
        p = net(x)
        loss, parts = _loss(p, seg, hm, body_weight, corner_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(parts)
        step += 1
        if step % 25 == 0:
            ce, dice, focal = np.mean(losses[-25:], axis=0)
            print(
                f"step {step} {time.time() - t0:.0f} s ce {ce:.4f} dice {dice:.4f} focal {focal:.3f}",
                flush=True,
            )
        if time.time() - last_save > 180:
            save()
            last_save = time.time()
    save()
    export(net, out)
    print(f"wrote {out} after {step} steps ({time.time() - t0:.0f} s)")


def _train_mode(net, frozen_bn: bool) -> None:
    """``net.train()``, with its batch norms kept in eval mode when they are frozen (a network started
    from exported weights: the export folded each norm into its convolution)."""
    from torch import nn

    net.train()
    if frozen_bn:
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()


def load_onnx_weights(net, onnx_path: Path) -> None:
    """Set ``net`` (:func:`build_net` of the same width) to an exported network's weights.

    The export folds each batch norm into the convolution before it (eval mode), so the ONNX file holds
    each block's convolution with a bias; here the convolution takes the folded weight and its batch norm
    becomes the identity plus that bias (running mean 0, variance 1 - eps, scale 1), which is exact in eval
    mode; :func:`train` keeps such norms in eval mode. The convolutions are matched in the graph's order
    of execution (encoder, then the decoder from the deepest level up); the transposed convolutions and
    the head by name."""
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and not n.input[1].startswith("head.")]
    blocks = [*net.enc, *reversed(net.dec)]
    pairs = [p for b in blocks for p in ((b[0], b[1]), (b[3], b[4]))]
    if len(convs) != len(pairs):
        raise ValueError(f"{onnx_path}: {len(convs)} convolutions, the network has {len(pairs)}")
    with torch.no_grad():
        for node, (conv, bn) in zip(convs, pairs, strict=True):
            w, b = np.array(init[node.input[1]]), np.array(init[node.input[2]])
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(
                    f"{onnx_path}: weight {w.shape} where the network has {tuple(conv.weight.shape)}"
                )
            conv.weight.copy_(torch.from_numpy(w))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
        for name, p in net.named_parameters():
            if name.startswith(("up.", "head.")):
                p.copy_(torch.from_numpy(np.array(init[name])))


def export_state(state: Path, out: Path) -> None:
    """Export the network of a saved training state (e.g. while its run goes on)."""
    import torch

    st = torch.load(state, weights_only=False)
    net = build_net(int(st["width"]))
    net.load_state_dict(st["net"])
    export(net, out)
    print(f"wrote {out} from {state} (step {st['step']}, {st['seconds']:.0f} s)")


def preview(data: Path, model: Path, out_dir: Path, *, n: int = 6, seed: int = 1, exclude: str = "") -> None:
    """PNGs of a few stored frames with the network's segmentation and corner maps (a visual check)."""
    from dmx.detect.heatmap import load_net

    d = np.load(data)
    net = load_net(model)
    rng = np.random.default_rng(seed)
    names = [str(x) for x in d["family_names"]]
    pick = np.arange(len(d["images"]))
    if exclude:
        pick = pick[(d["families"] & (1 << names.index(exclude))) != 0]
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = np.array(
        [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
        dtype=np.float32,
    )
    for j, i in enumerate(rng.choice(pick, n, replace=False)):
        k = STORE_MM_PER_PX / NET_MM_PER_PX
        side = int(round(STORE_SIDE * k)) // 16 * 16
        x = d["images"][i].astype(np.float32) / 255.0
        x = cv2.resize(x, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)[:side, :side]
        o = net.heatmaps(x)
        lab = o[:N_CLASSES].argmax(axis=0)
        g = np.repeat(x[..., None] * 255, 3, axis=2)
        over = np.where(lab[..., None] > 0, 0.5 * g + 0.5 * colours[lab], g)
        q = 1 / (1 + np.exp(-o[N_CLASSES:]))
        cm = np.clip(q.max(axis=0) * 255, 0, 255)
        for c in (d["corners"][i].reshape(-1, 2) + 0.5) * k - 0.5:
            cv2.circle(over, (int(round(c[0])), int(round(c[1]))), 1, (255, 255, 255), -1)
        panel = np.hstack([g, over, np.repeat(cm[..., None], 3, axis=2)])
        cv2.imwrite(
            str(out_dir / f"preview_{j}.png"),
            cv2.resize(panel[..., ::-1], None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST).astype(np.uint8),
        )
    print(f"wrote {n} previews to {out_dir}")


def export(net, out: Path) -> None:
    """ONNX export (opset 13, any input size) and a check that cv2.dnn reads it to the same output."""
    import torch

    net.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    x = torch.rand(1, 1, 128, 160)
    torch.onnx.export(
        net,
        x,
        str(out),
        opset_version=13,
        input_names=["image"],
        output_names=["maps"],
        dynamic_axes={"image": {2: "h", 3: "w"}, "maps": {2: "h", 3: "w"}},
        dynamo=False,
    )
    with torch.no_grad():
        ref = net(x).numpy()
    cv_net = cv2.dnn.readNetFromONNX(str(out))
    cv_net.setInput(x.numpy())
    got = cv_net.forward()
    diff = float(np.abs(got - ref).max())
    print(f"cv2.dnn vs torch: max |difference| {diff:.2e}")
    if diff > 1e-3:
        raise SystemExit(f"cv2.dnn output differs from torch by {diff}")
    net.train()


def _share_range(text: str) -> tuple[float, float]:
    """``--family-share LO,HI`` as two probabilities, 0 <= LO <= HI <= 1 (else argparse's usage error)."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO,HI (two numbers)") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LO <= HI <= 1")
    return lo, hi


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m dmx.training.heatmap", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("data", help="render the training frames")
    a.add_argument("--phantoms", type=int, default=500)
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--workers", type=int, default=2)
    a.add_argument("--seed", type=int, default=12)
    a.add_argument(
        "--first-seed", type=int, default=400000, help="first phantom seed (disjoint from benchmarks)"
    )
    a.add_argument(
        "--family-share",
        type=_share_range,
        default=(0.5, 0.5),
        help="LO,HI: each phantom takes each family with a probability drawn from [LO, HI]",
    )
    b = sub.add_parser("train", help="fit the network, export ONNX (resumes from OUT.pt when present)")
    b.add_argument("--data", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--exclude", default="", help="comma-separated families left out of training")
    b.add_argument("--minutes", type=float, default=30.0, help="wall-clock budget (all resumed runs)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--crop", type=int, default=112, help="training crop side (network px)")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--width", type=int, default=12, help="channels of the first level")
    b.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    b.add_argument(
        "--body-weight", type=float, default=BODY_WEIGHT, help="bodies' weight in the cross-entropy"
    )
    b.add_argument(
        "--corner-weight", type=float, default=CORNER_WEIGHT, help="corner maps' weight in the loss"
    )
    b.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)"
    )
    b.add_argument(
        "--overlaps",
        type=float,
        default=0.0,
        help="share of training crops with generic structures drawn over them (0: none)",
    )
    b.add_argument(
        "--rotate-deg", type=float, default=ROTATE_DEG, help="crops turned by up to this many degrees"
    )
    b.add_argument(
        "--init", type=Path, default=None, help="start from this exported network (ONNX) of the same width"
    )
    b.add_argument(
        "--targets",
        choices=TARGETS,
        default="visibility",
        help="a body is a target by its visible share (default) or by its share in the exposed field",
    )
    e = sub.add_parser("export", help="ONNX from a saved torch state (OUT.pt of a train run)")
    e.add_argument("--state", type=Path, required=True)
    e.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("preview", help="PNGs of the network's maps on a few stored frames")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--model", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    c.add_argument("--n", type=int, default=6)
    c.add_argument("--family", default="", help="only frames drawn with this family")
    args = ap.parse_args(argv)
    if args.cmd == "data":
        make_data(
            args.phantoms,
            args.out,
            workers=args.workers,
            seed=args.seed,
            first_seed=args.first_seed,
            family_share=args.family_share,
        )
    elif args.cmd == "export":
        export_state(args.state, args.out)
    elif args.cmd == "preview":
        preview(args.data, args.model, args.out, n=args.n, exclude=args.family)
    else:
        exclude = tuple(f for f in args.exclude.split(",") if f)
        unknown = [f for f in exclude if f not in FAMILIES]
        if unknown:
            print(
                f"error: unknown family {', '.join(unknown)} (one of {', '.join(FAMILIES)})", file=sys.stderr
            )
            raise SystemExit(2)
        train(
            args.data,
            args.out,
            exclude=exclude,
            minutes=args.minutes,
            seed=args.seed,
            threads=args.threads,
            crop=args.crop,
            batch=args.batch,
            width=args.width,
            lr=args.lr,
            body_weight=args.body_weight,
            corner_weight=args.corner_weight,
            overlaps=args.overlaps,
            rotate_deg=args.rotate_deg,
            init=args.init,
            targets=args.targets,
        )


if __name__ == "__main__":
    main()
