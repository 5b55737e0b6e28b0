"""An experimental corner network: the four corners of one body from a crop around it (issue #12).

Not used by ``dmx``: session 37 and 38's experiment, kept so that its figures can be reproduced and a
next model judged the same way (``benchmarks/corner_model.py``; docs/detection.md, "Sessions 37-38").
Sub-commands (training needs the ``train`` extra: ``pip install dmx[train]``)::

    PYTHONPATH=. python -m dmx.training.corners data --phantoms 1400 --seed 3838 --first 530000 \
        --out CACHE/corners.npz                                                  # ~30 min on 2 cores
    PYTHONPATH=. python -m dmx.training.corners train --data CACHE/corners.npz --out NETS/c.onnx \
        --minutes 40 [--exclude cortical] [--max-phantoms N] [--res 0.25 --input-px 112] \
        [--steps N] [--overlaps 0.5 --texture 0.5]

Session 38's networks (``DMX_TRAIN_THREADS=1``, the first three at once): ``allm`` ``--minutes 50
--max-phantoms 574``; ``nocort`` ``--minutes 50 --exclude cortical``; ``coarse`` ``--minutes 50 --res 0.5
--input-px 64 --blur-max 2.5 --blur-p 0.6``; ``nocort_dr`` (two threads, alone) ``--exclude cortical
--steps 2622 --overlaps 0.5 --texture 0.5``.

Data recipe (:func:`corner_specs`): phantoms of :func:`dmx.phantom.make_phantom` (4 frames; frames 1 and
3, flexion and extension, are used), pixel size 0.18-0.4 mm, field 120-180 mm, random curve, facing,
polarity, dose, blur, tilt, ROM, bits and anatomy (``anatomy_sd`` 0-0.12); each phantom takes each
appearance family with a probability drawn per phantom from 0.25-0.95 (the acquisition family's pixel
size redrawn in 0.18-0.4 mm, its image 300-900 px). Per visible body (visible share >= 0.5), a 40-mm
square at :data:`CROP_MM_PER_PX` around its true centre (bone bright: MONOCHROME1 inverted; the
acquisition family may still draw bone dark), 0.5-99.5th percentiles to 0..255, with its true corners in
crop pixels, the body's level and the phantom's families (a bitmask in :class:`Family` order), so that a
family can be left out at training time (``--exclude``).

Training (:func:`train`): each crop turned to face right, then a random rotation (+-25 deg), scale
(0.85-1.15) and shift (+-4 mm) resampled to ``--input-px`` pixels at ``--res`` mm, gamma, blur, unsharp
masking, noise, gain and offset; a U-Net (:func:`build_net`) gives four corner heatmaps at half the input's
resolution, read by soft-argmax; loss = L1 of the corners (input px) + 0.2 x cross-entropy against a
Gaussian target (sigma 1 heatmap px). AdamW, 100-step warm-up, cosine over the wall-clock budget; the
last 10 % of the phantoms (by index) are the validation crops. ``OUT.json`` records the input geometry
(``res``, ``inp``, ``stride``) that :func:`predict` needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dmx.anatomy import BODIES
from dmx.phantom import make_phantom
from dmx.training.heatmap import (
    FAMILIES,
    _family_mask,
    _overlaps,
    conv_block,
    random_look,
    random_study_options,
)

#: Stored crops: this many mm square at this pixel size.
CROP_MM = 40.0
CROP_MM_PER_PX = 0.25
CROP_SIDE = int(CROP_MM / CROP_MM_PER_PX)
#: Heatmap pixels per input pixel (the U-Net's output is at half the input's resolution).
OUT_STRIDE = 2


def corner_specs(n: int, seed: int, first_seed: int, share=(0.25, 0.95)) -> list[dict[str, Any]]:
    """``n`` phantoms' keywords for :func:`dmx.phantom.make_phantom` (seeds ``first_seed``..)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        mpp = float(np.round(rng.uniform(0.18, 0.4), 3))
        field = rng.uniform(120, 180)
        side = int(field / mpp)
        kw = dict(
            seed=first_seed + i,
            frames=4,
            return_to_neutral=False,
            rows=side,
            cols=int(side * rng.uniform(0.8, 1.0)),
            mm_per_px=mpp,
            **random_study_options(rng),
        )
        kw["appearance"] = random_look(
            rng, kw["seed"], float(rng.uniform(*share)), mm_per_px=(0.18, 0.4), side_px=(300, 900)
        )
        out.append(kw)
    return out


def crop_around(image: np.ndarray, centre: np.ndarray, mm_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The stored crop (:data:`CROP_SIDE` square at :data:`CROP_MM_PER_PX`) centred on ``centre``
    (image px) and the 2x3 affine taking image px to crop px."""
    s = mm_per_px / CROP_MM_PER_PX
    m = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])
    m[:, 2] = (CROP_SIDE - 1) / 2 - s * np.asarray(centre, float)
    src = cv2.GaussianBlur(image, (0, 0), max(0.01, 0.5 * (1 / s - 1))) if s < 1 else image
    crop = cv2.warpAffine(
        src, m, (CROP_SIDE, CROP_SIDE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    lo, hi = np.percentile(crop, [0.5, 99.5])
    crop = np.clip((crop - lo) / max(hi - lo, 1e-6), 0, 1)
    return np.round(crop * 255).astype(np.uint8), m


def render(job: tuple[int, dict[str, Any]]):
    """One phantom's crops of frames 1 and 3: (crops, corners, visibility, level, families, phantom)."""
    index, kw = job
    ph = make_phantom(**kw)
    p = ph.truth["params"]
    mpp = float(np.mean(ph.truth["mm_per_px"]))
    crops, cors, vis, lv = [], [], [], []
    for f in (1, 3):
        img = ph.frames[f].astype(np.float32)
        if p["photometric"] == "MONOCHROME1":
            img = float((1 << p["bits"]) - 1) - img
        for k, v in enumerate(BODIES):
            tr = ph.truth["tracks"][v.value]
            c = np.array([tr[name][f] for name in tr], dtype=np.float64)
            visible = float(ph.truth["visibility"][v.value][f])
            if visible < 0.5:
                continue
            crop, m = crop_around(img, c.mean(0), mpp)
            crops.append(crop)
            cors.append((c @ m[:, :2].T + m[:, 2]).astype(np.float32))
            vis.append(visible)
            lv.append(k)
    return crops, cors, vis, lv, _family_mask(kw), index


def make_data(n: int, seed: int, first: int, out: Path, workers: int = 2) -> None:
    specs = corner_specs(n, seed, first)
    parts: dict[str, list] = {
        k: [] for k in ("crops", "corners", "visibility", "level", "families", "phantom")
    }
    t0 = time.time()
    with ProcessPoolExecutor(workers) as pool:
        for j, (c, k, v, lv, mask, i) in enumerate(pool.map(render, list(enumerate(specs)), chunksize=2)):
            parts["crops"] += c
            parts["corners"] += k
            parts["visibility"] += v
            parts["level"] += lv
            parts["families"] += [mask] * len(c)
            parts["phantom"] += [i] * len(c)
            if (j + 1) % 50 == 0:
                print(j + 1, f"{time.time() - t0:.0f}s", len(parts["crops"]), flush=True)
    np.savez_compressed(
        out,
        crops=np.stack(parts["crops"]),
        corners=np.stack(parts["corners"]),
        visibility=np.array(parts["visibility"], np.float32),
        level=np.array(parts["level"], np.int8),
        families=np.array(parts["families"], np.int16),
        phantom=np.array(parts["phantom"], np.int32),
    )
    print("wrote", out, len(parts["crops"]), f"{time.time() - t0:.0f}s")


def facing_right(crops: np.ndarray, corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crops mirrored where the body faces left, so that the anterior corners (0: ant_sup, 3: ant_inf)
    lie on the larger x."""
    crops, corners = crops.copy(), corners.copy()
    left = corners[:, 0, 0] < corners[:, 1, 0]
    w = crops.shape[2]
    crops[left] = crops[left][:, :, ::-1]
    corners[left, :, 0] = w - 1 - corners[left, :, 0]
    return crops, corners


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A corner network's input: ``inp`` pixels square at ``res`` mm per pixel."""

    res: float = 0.25
    inp: int = 112
    blur_p: float = 0.3
    blur_max: float = 1.2
    #: Share of training crops given 1-3 generic structures over them (the heatmap recipe's overlaps:
    #: ellipses, polygons, bands, sometimes rimmed) and share given correlated noise (a texture of random
    #: grain 1-4 px, up to 0.15): appearance drawn from no phantom family. 0 draws nothing (session 37).
    overlaps: float = 0.0
    texture: float = 0.0


def augment(rng, crop: np.ndarray, c: np.ndarray, g: Geometry, train: bool = True):
    """One crop resampled to the network's input (0..1 float32) and its corners in input px."""
    side = crop.shape[0]
    if train:
        th, s, t = math.radians(rng.uniform(-25, 25)), rng.uniform(0.85, 1.15), rng.uniform(-16, 16, 2)
    else:
        th, s, t = 0.0, 1.0, np.zeros(2)
    ctr = np.array([(side - 1) / 2, (side - 1) / 2]) + t
    r = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]) * s * (CROP_MM_PER_PX / g.res)
    m = np.zeros((2, 3))
    m[:, :2] = r
    m[:, 2] = (g.inp - 1) / 2 - r @ ctr
    src = crop.astype(np.float32) / 255.0
    if g.res > 0.3:
        src = cv2.GaussianBlur(src, (0, 0), 0.5 * (g.res / CROP_MM_PER_PX - 1))
    im = cv2.warpAffine(src, m, (g.inp, g.inp), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    cc = c @ m[:, :2].T + m[:, 2]
    if train:
        im = np.clip(im, 0, 1) ** math.exp(rng.uniform(-0.5, 0.5))
        if rng.random() < g.blur_p:
            im = cv2.GaussianBlur(im, (0, 0), rng.uniform(0.3, g.blur_max))
        if rng.random() < 0.3:
            b = cv2.GaussianBlur(im, (0, 0), rng.uniform(2, 6))
            im = im + rng.uniform(0.3, 1.5) * (im - b)
        im = im + rng.normal(0, rng.uniform(0, 0.05), im.shape).astype(np.float32)
        im = im * rng.uniform(0.7, 1.3) + rng.uniform(-0.15, 0.15)
        if g.overlaps and rng.random() < g.overlaps:
            im = _overlaps(rng, im)
        if g.texture and rng.random() < g.texture:
            grain = cv2.GaussianBlur(rng.normal(size=im.shape).astype(np.float32), (0, 0), rng.uniform(1, 4))
            im = im + rng.uniform(0, 0.15) * grain / max(float(grain.std()), 1e-6)
    lo, hi = np.percentile(im, [0.5, 99.5])
    im = (im - lo) / max(hi - lo, 1e-6)
    return im.astype(np.float32), cc.astype(np.float32)


def build_net(width: int = 12):
    """The U-Net: five levels (``width`` .. 8 x ``width`` channels), four heatmap logits at stride 2."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    block = conv_block

    class Net(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.e1, self.e2, self.e3 = block(1, w), block(w, 2 * w), block(2 * w, 4 * w)
            self.e4, self.e5 = block(4 * w, 6 * w), block(6 * w, 8 * w)
            self.d4, self.d3 = block(8 * w + 6 * w, 6 * w), block(6 * w + 4 * w, 4 * w)
            self.d2 = block(4 * w + 2 * w, 2 * w)
            self.head = nn.Conv2d(2 * w, 4, 1)

        def forward(self, x):
            e1 = self.e1(x)
            e2 = self.e2(F.max_pool2d(e1, 2))
            e3 = self.e3(F.max_pool2d(e2, 2))
            e4 = self.e4(F.max_pool2d(e3, 2))
            e5 = self.e5(F.max_pool2d(e4, 2))
            up = lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
            d4 = self.d4(torch.cat([up(e5), e4], 1))
            d3 = self.d3(torch.cat([up(d4), e3], 1))
            d2 = self.d2(torch.cat([up(d3), e2], 1))
            return self.head(d2)

    return Net(width)


def soft_argmax_np(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners (4, 2) in input px and each heatmap's spread (SD, input px) from (4, H, W) logits."""
    k, h, w = logits.shape
    flat = logits.reshape(k, -1)
    p = np.exp(flat - flat.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True)).reshape(k, h, w)
    xs, ys = np.arange(w), np.arange(h)
    px, py = p.sum(1), p.sum(2)
    ex, ey = (px * xs).sum(-1), (py * ys).sum(-1)
    var = (px * (xs - ex[:, None]) ** 2).sum(-1) + (py * (ys - ey[:, None]) ** 2).sum(-1)
    c = np.stack([(ex + 0.5) * OUT_STRIDE - 0.5, (ey + 0.5) * OUT_STRIDE - 0.5], -1)
    return c, np.sqrt(var) * OUT_STRIDE


class CornerNet:
    """A trained corner network (ONNX read with ``cv2.dnn``) and its input geometry (``OUT.json``)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.name = path.stem
        self._net = cv2.dnn.readNetFromONNX(str(path))
        cfg = json.loads(Path(f"{path}.json").read_text()) if Path(f"{path}.json").is_file() else {}
        self.res = float(cfg.get("res", Geometry.res))
        self.inp = int(cfg.get("inp", Geometry.inp))

    def predict(
        self, image: np.ndarray, centre, theta_deg: float, mm_per_px: float, facing: str
    ) -> tuple[np.ndarray, float]:
        """The four corners (image px) of the body centred near ``centre``, the column turned upright by
        ``theta_deg`` (its direction towards C2 from the image's up, clockwise), and the largest
        heatmap spread (mm)."""
        s = mm_per_px / self.res
        th = math.radians(theta_deg)
        r = np.array([[math.cos(th), math.sin(th)], [-math.sin(th), math.cos(th)]]) * s
        if facing == "left":
            r = np.diag([-1.0, 1.0]) @ r
        m = np.zeros((2, 3))
        m[:, :2] = r
        m[:, 2] = (self.inp - 1) / 2 - r @ np.asarray(centre, float)
        img = np.asarray(image, np.float32)
        src = cv2.GaussianBlur(img, (0, 0), 0.5 * (1 / s - 1)) if s < 0.9 else img
        crop = cv2.warpAffine(
            src, m, (self.inp, self.inp), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        lo, hi = np.percentile(crop, [0.5, 99.5])
        crop = ((crop - lo) / max(hi - lo, 1e-6)).astype(np.float32)
        self._net.setInput(crop[None, None])
        c, spread = soft_argmax_np(np.asarray(self._net.forward()[0]))
        inv = cv2.invertAffineTransform(m)
        return c @ inv[:, :2].T + inv[:, 2], float(spread.max() * self.res)


def train(
    data: Path,
    out: Path,
    *,
    minutes: float = 40.0,
    steps: int = 0,
    exclude: str = "",
    max_phantoms: int = 0,
    geometry: Geometry = Geometry(),
    batch_size: int = 16,
    width: int = 12,
    lr: float = 2e-3,
    seed: int = 37,
) -> None:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(int(os.environ.get("DMX_TRAIN_THREADS", "2")))
    torch.manual_seed(seed)
    d = np.load(data)
    crops, cors = facing_right(d["crops"], d["corners"])
    keep = np.ones(len(crops), bool)
    for f in filter(None, exclude.split(",")):
        keep &= (d["families"] & (1 << FAMILIES.index(f))) == 0
    ph = d["phantom"]
    if max_phantoms:  # the first N phantoms left: a training set as large as one with a family left out
        keep &= np.isin(ph, np.unique(ph[keep])[:max_phantoms])
    idx = np.flatnonzero(keep)
    phantoms = np.unique(ph[idx])
    cut = phantoms[int(len(phantoms) * 0.9)]
    tr, va = idx[ph[idx] < cut], idx[ph[idx] >= cut]
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(
        json.dumps(
            dict(
                **dataclasses.asdict(geometry),
                stride=OUT_STRIDE,
                exclude=exclude,
                max_phantoms=max_phantoms,
                data=str(data),
            )
        )
    )
    net = build_net(width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    print(
        f"exclude {exclude or '-'}: {len(phantoms)} phantoms, train {len(tr)} crops, validation {len(va)};"
        f" {sum(p.numel() for p in net.parameters())} parameters",
        flush=True,
    )
    rng = np.random.default_rng(seed)

    def batch(ids, is_train):
        ims, cs = zip(*(augment(rng, crops[i], cors[i], geometry, is_train) for i in ids), strict=True)
        return torch.from_numpy(np.stack(ims)[:, None]), torch.from_numpy(np.stack(cs))

    def soft_argmax(logits):
        b, k, h, w = logits.shape
        p = F.softmax(logits.reshape(b, k, -1), -1).reshape(b, k, h, w)
        ys, xs = torch.arange(h, dtype=logits.dtype), torch.arange(w, dtype=logits.dtype)
        ex, ey = (p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)
        return torch.stack([(ex + 0.5) * OUT_STRIDE - 0.5, (ey + 0.5) * OUT_STRIDE - 0.5], -1), p

    def target(c, h, w, sigma=1.0):
        hc = (c + 0.5) / OUT_STRIDE - 0.5
        ys = torch.arange(h, dtype=torch.float32)[None, None, :, None]
        xs = torch.arange(w, dtype=torch.float32)[None, None, None, :]
        g = torch.exp(
            -((xs - hc[..., 0, None, None]) ** 2 + (ys - hc[..., 1, None, None]) ** 2) / (2 * sigma**2)
        )
        return g / g.sum((-1, -2), keepdim=True).clamp_min(1e-12)

    def evaluate():
        net.eval()
        errs = []
        with torch.no_grad():
            for i in range(0, len(va), 64):
                x, c = batch(va[i : i + 64], False)
                pc, _ = soft_argmax(net(x))
                errs.append(torch.linalg.norm(pc - c, dim=-1).max(-1).values.numpy())
        net.train()
        e = np.concatenate(errs) * geometry.res
        return np.median(e), np.percentile(e, 95)

    t0 = last = time.time()
    step, budget = 0, minutes * 60
    while time.time() - t0 < budget and (not steps or step < steps):
        frac = (time.time() - t0) / budget
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * frac))
        x, c = batch(rng.choice(tr, batch_size, replace=False), True)
        logits = net(x)
        pc, p = soft_argmax(logits)
        l1 = (pc - c).abs().sum(-1).mean()
        ce = (
            -(target(c, logits.shape[2], logits.shape[3]) * torch.log(p.clamp_min(1e-12)))
            .sum((-1, -2))
            .mean()
        )
        loss = l1 + 0.2 * ce
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if time.time() - last > 180:
            last = time.time()
            med, p95 = evaluate()
            print(
                f"{(last - t0) / 60:.1f} min step {step} loss {loss.item():.3f} | validation worst corner"
                f" median {med:.2f} mm p95 {p95:.2f} mm",
                flush=True,
            )
            torch.save(net.state_dict(), f"{out}.pt")
    med, p95 = evaluate()
    print(f"final step {step}: validation worst corner median {med:.2f} mm, p95 {p95:.2f} mm", flush=True)
    torch.save(net.state_dict(), f"{out}.pt")
    net.eval()
    torch.onnx.export(
        net,
        torch.zeros(1, 1, geometry.inp, geometry.inp),
        str(out),
        input_names=["x"],
        output_names=["y"],
        opset_version=13,
        dynamo=False,
    )
    print("wrote", out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m dmx.training.corners", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("data", help="render the training crops")
    a.add_argument("--phantoms", type=int, required=True)
    a.add_argument("--seed", type=int, required=True, help="the recipe's generator seed")
    a.add_argument("--first", type=int, required=True, help="the first phantom's seed")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--workers", type=int, default=2)
    b = sub.add_parser("train", help="fit a corner network and export ONNX (OUT, OUT.json, OUT.pt)")
    b.add_argument("--data", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--minutes", type=float, default=40.0)
    b.add_argument("--exclude", default="", help="families left out, comma-separated")
    b.add_argument("--steps", type=int, default=0, help="stop after N steps (0: the time budget only)")
    b.add_argument("--overlaps", type=float, default=0.0, help="augmentation: share of crops with overlaps")
    b.add_argument("--texture", type=float, default=0.0, help="augmentation: share of crops with grain")
    b.add_argument("--max-phantoms", type=int, default=0, help="train on the first N phantoms left only")
    b.add_argument("--res", type=float, default=Geometry.res, help="input mm per pixel")
    b.add_argument("--input-px", type=int, default=Geometry.inp, help="input side (a multiple of 16)")
    b.add_argument(
        "--blur-max", type=float, default=Geometry.blur_max, help="augmentation: largest blur (px)"
    )
    b.add_argument(
        "--blur-p", type=float, default=Geometry.blur_p, help="augmentation: share of crops blurred"
    )
    args = ap.parse_args(argv)
    if args.cmd == "data":
        make_data(args.phantoms, args.seed, args.first, args.out, args.workers)
    else:
        if args.input_px % 16:
            sys.exit(f"error: --input-px {args.input_px} is not a multiple of 16")
        for f in filter(None, args.exclude.split(",")):
            if f not in FAMILIES:
                sys.exit(f"error: --exclude: no family {f!r} (families: {', '.join(FAMILIES)})")
        if not args.data.is_file():
            sys.exit(f"error: {args.data}: no such data file (write it with the data command)")
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit("error: training needs PyTorch and onnx: pip install 'dmx[train]'")
        g = Geometry(
            res=args.res,
            inp=args.input_px,
            blur_p=args.blur_p,
            blur_max=args.blur_max,
            overlaps=args.overlaps,
            texture=args.texture,
        )
        train(
            args.data,
            args.out,
            minutes=args.minutes,
            steps=args.steps,
            exclude=args.exclude,
            max_phantoms=args.max_phantoms,
            geometry=g,
        )


if __name__ == "__main__":
    main()
