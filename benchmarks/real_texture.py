"""Tracking on real radiographic texture: a real lateral radiograph warped with known rigid motion.

Builds a cine from ``lateral_neutral_20yo_male.jpg`` (public domain; see the README beside it; it is
not in this repository: it is read from ``shared/real-radiographs`` beside the repository, or from
``--image``). The four corners of C2-C6 were placed by hand on it (``benchmarks/data/
real_radiograph_corners.json``, which says how; C7 is hidden by the shoulders). Every vertebral
body, with a margin of ``MARGIN_FRAC`` of its size around it, moves rigidly with a known smooth
flexion-extension motion (each level rotates a few degrees about a centre in the body below it, C6
about its own; C4 also slides 0.8 mm forward on C5 in flexion); the soft tissue, the posterior
elements and the background in between follow an inverse-distance blend of the bodies' motions
(the shoulders stay still, the skull moves with C2). The lower border of the mandible, cut from the
same image, is added (X-ray densities add) sliding down and back across C3-C4 as the neck flexes.
Truth = the hand-placed corners moved by each body's rigid motion: exact by construction, whatever
the accuracy of the hand placement.

The cine is written as an 8-bit RF DICOM with PixelSpacing, analysed with the real pipeline
(``dmx analyze STUDY --landmarks <truth on frame 0> --out DIR``, in a subprocess) and compared with
``dmx.measure.measure`` on the true corners:

* per-frame disc angle error (deg) per level: median, p95, worst level and frames;
* corner error (px) over the frames a body is reported;
* coverage: the fraction of frames each body is tracked;
* end-range rotation ROM and translation (mm) error per level, at the key frames each side chose.

    PYTHONPATH=. python benchmarks/real_texture.py [--frames 90] [--size 1024] [--keep DIR]

Not a tuning set: the tracker was not fitted on it, and its figures are quoted as held-out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dmx.anatomy import CORNERS, Vertebra

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "real_radiograph_corners.json"
IMAGE_NAME = "lateral_neutral_20yo_male.jpg"

#: Source square (x0, y0, side) in the radiograph's pixels that becomes the whole output frame.
SOURCE_SQUARE = (0.0, 60.0, 500.0)
#: Pixel size at 1024 x 1024 (the bodies are about 15-16 mm deep, as in an adult).
MM_PER_PX_1024 = 0.14
#: Rigid region of a body: its corner quadrilateral grown by this fraction of its size.
MARGIN_FRAC = 0.10
#: Flexion / extension rotation (deg) of each level at the end of range; C6 moves against the still
#: shoulders by ``BASE_DEG``.
FLEXION_DEG = {"C2-C3": 3.0, "C3-C4": 4.0, "C4-C5": 5.0, "C5-C6": 4.0}
EXTENSION_DEG = {"C2-C3": 2.5, "C3-C4": 3.0, "C4-C5": 3.5, "C5-C6": 3.0}
BASE_DEG = (2.0, 1.5)  # C6 flexion, extension
#: Extra anterior slide (mm) of the upper body on the lower one at full flexion.
SLIDE_MM = {"C4-C5": 0.8}
#: Mandible occluder, carried with C3's motion: source offset (px) at neutral and added at full
#: flexion (down and back across C3-C4); band height above the border (px), feather of its top (px).
OCCLUDER_BASE_PX = (15.0, 0.0)
OCCLUDER_SWEEP_PX = (75.0, 130.0)
OCCLUDER_BAND_PX = 45.0
OCCLUDER_FEATHER_PX = 15.0
NOISE_SD = 1.5
BODIES = ("C2", "C3", "C4", "C5", "C6")


def find_image(explicit: str | None) -> Path | None:
    """The radiograph: ``--image``, else ``shared/real-radiographs`` beside the repository."""
    if explicit:
        return Path(explicit)
    here = Path(__file__).resolve()
    for parent in here.parents[1:4]:  # <repo>/.., and one more level for worktrees (<root>/wt/<name>)
        p = parent / "shared" / "real-radiographs" / IMAGE_NAME
        if p.is_file():
            return p
    return None


def _rot(deg: float, centre: np.ndarray) -> np.ndarray:
    """3x3 rotation by ``deg`` (image coordinates, y down) about ``centre``."""
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    m = np.eye(3)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:2, 2] = centre - m[:2, :2] @ centre
    return m


def _shift(d: np.ndarray) -> np.ndarray:
    m = np.eye(3)
    m[:2, 2] = d
    return m


def phase(n_frames: int) -> np.ndarray:
    """Motion phase per frame: 0 at frame 0, +1 full flexion, -1 full extension, smooth."""
    t = np.arange(n_frames) / max(n_frames - 1, 1)
    return np.sin(2 * np.pi * t)


class Scene:
    """The synthetic cine's geometry: corners on frame 0 and every body's rigid motion per frame."""

    def __init__(self, corners_src: dict[str, np.ndarray], size: int, n_frames: int) -> None:
        x0, y0, side = SOURCE_SQUARE
        self.size = size
        self.scale = size / side
        self.n_frames = n_frames
        self.mm_per_px = MM_PER_PX_1024 * 1024 / size
        self.corners0 = {v: (c - [x0, y0]) * self.scale for v, c in corners_src.items()}
        s = phase(n_frames)
        self.phase = s
        # facing left (anterior = -x): flexion tips the upper body forward = negative angle
        self.motion = {v: np.empty((n_frames, 3, 3)) for v in BODIES}
        for t in range(n_frames):
            f, e = max(s[t], 0.0), max(-s[t], 0.0)
            c6 = self.corners0["C6"]
            a = _rot(-BASE_DEG[0] * f + BASE_DEG[1] * e, 0.5 * (c6[2] + c6[3]))
            self.motion["C6"][t] = a
            for lower, upper in zip(BODIES[:0:-1], BODIES[-2::-1], strict=True):
                name = f"{upper}-{lower}"
                cl = self.corners0[lower]
                depth = np.linalg.norm(cl[0] - cl[1])
                sup_mid = 0.5 * (cl[0] + cl[1])
                down = 0.5 * (cl[2] + cl[3]) - sup_mid
                centre = sup_mid + 0.3 * down  # in the upper part of the lower body
                rel = _rot(-FLEXION_DEG[name] * f + EXTENSION_DEG[name] * e, centre)
                ant = (cl[0] - cl[1]) / depth
                slide = _shift(ant * SLIDE_MM.get(name, 0.0) / self.mm_per_px * f)
                a = a @ slide @ rel
                self.motion[upper][t] = a

    def corners(self, t: int) -> dict[str, np.ndarray]:
        """True corners (4, 2) of every body on frame ``t``."""
        out = {}
        for v, c in self.corners0.items():
            m = self.motion[v][t]
            out[v] = c @ m[:2, :2].T + m[:2, 2]
        return out

    def region0(self, v: str) -> np.ndarray:
        """The rigid region of body ``v`` on frame 0: the corners grown by MARGIN_FRAC of the size."""
        c = self.corners0[v]
        centre = c.mean(axis=0)
        p, q = c[2] - c[0], c[3] - c[1]
        size = np.sqrt(0.5 * abs(p[0] * q[1] - p[1] * q[0]))
        d = c - centre
        grow = 1.0 + MARGIN_FRAC * size / np.linalg.norm(d, axis=1, keepdims=True) * np.sqrt(2)
        poly = centre + d * grow
        if v == "C2":  # the dens moves with C2: take it in (up to 0.8 body heights above the base)
            poly = poly + 0.8 * np.array([c[0] - c[3], c[1] - c[2], [0.0, 0.0], [0.0, 0.0]])
        return poly


def render(
    scene: Scene, image: np.ndarray, border_src: np.ndarray, *, seed: int = 0, occluder_gain: float = 1.0
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(T, size, size)`` uint8 frames of ``scene`` drawn from the radiograph ``image`` (float32).

    Also returns, per body, the fraction of its corner quadrilateral under the mandible band (added
    density above 5 grey levels) on each frame.
    """
    import cv2

    n, size, k = scene.n_frames, scene.size, scene.scale
    x0, y0, _ = SOURCE_SQUARE
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ones = np.ones_like(xx)
    grid = np.stack([xx, yy, ones], axis=-1)  # (H, W, 3)
    rng = np.random.default_rng(seed)

    # anchors: the bodies; the shoulders (still) from 60 px below C6 (at 1024²); the skull (moves
    # with C2) from 40 px above the top of C2's region
    c6 = scene.corners0["C6"]
    gap = size / 1024
    shoulder = np.array([[0, c6[3, 1] + 60 * gap], [size, c6[2, 1] + 60 * gap], [size, size], [0, size]])
    top = min(scene.region0("C2")[:, 1]) - 40 * gap
    skull = np.array([[0, 0], [size, 0], [size, top], [0, top]])

    # occluder: the band above the mandible's lower border, density above the soft tissue under it
    occ = _occluder(image, border_src, k) * np.float32(occluder_gain)
    covered = {v: np.zeros(n) for v in BODIES}

    frames = np.empty((n, size, size), np.uint8)
    for t in range(n):
        anchors = [(scene.motion[v][t], scene.region0(v)) for v in BODIES]
        anchors += [(np.eye(3), shoulder), (scene.motion["C2"][t], skull)]
        num = np.zeros((size, size, 2), np.float32)
        den = np.zeros((size, size), np.float32)
        exact = []
        for m, poly0 in anchors:
            poly = poly0 @ m[:2, :2].T + m[:2, 2]
            mask = np.zeros((size, size), np.uint8)
            cv2.fillPoly(mask, [np.round(poly * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
            d = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)
            w = 1.0 / (d * d * d + 1e-3)
            inv = np.linalg.inv(m)[:2].astype(np.float32)
            src = grid @ inv.T  # (H, W, 2): the frame-0 position of each output pixel
            num += w[..., None] * src
            den += w
            exact.append((mask.astype(bool), src))
        q = num / den[..., None]
        for mask, src in exact[: len(BODIES)]:  # inside a body's region: its rigid motion, exactly
            q[mask] = src[mask]
        # frame-0 output coordinates -> radiograph pixels
        mx = (q[..., 0] / k + x0).astype(np.float32)
        my = (q[..., 1] / k + y0).astype(np.float32)
        img = cv2.remap(image, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        f = max(scene.phase[t], 0.0)
        off = (np.array(OCCLUDER_BASE_PX) + f * np.array(OCCLUDER_SWEEP_PX)) * k
        m_occ = (scene.motion["C3"][t] @ _shift(off))[:2].astype(np.float32)
        layer = cv2.warpAffine(occ, m_occ, (size, size), flags=cv2.INTER_LINEAR)
        img += layer
        for v, c in scene.corners(t).items():
            body = np.zeros((size, size), np.uint8)
            cv2.fillPoly(body, [np.round(c * 16).astype(np.int32)], 1, shift=4)
            covered[v][t] = float((layer[body > 0] > 5.0).mean())
        img += rng.normal(0.0, NOISE_SD, img.shape).astype(np.float32)
        frames[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return frames, covered


def _occluder(image: np.ndarray, border_src: np.ndarray, k: float) -> np.ndarray:
    """The mandible's lower-border band as an added density, in output pixels at its own place."""
    import cv2

    x0, y0, side = SOURCE_SQUARE
    size = int(round(side * k))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sx, sy = xx / k + x0, yy / k + y0  # radiograph pixel of each output pixel
    src = cv2.remap(image, sx, sy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    bx, by = border_src[:, 0], border_src[:, 1]
    yb = np.interp(sx, bx, by, left=np.nan, right=np.nan)  # the border's row under each column
    above = yb - sy  # radiograph px above the border (negative below)
    edge = np.clip(above + 0.5, 0.0, 1.0)  # sharp (1 px) at the border
    top = np.clip((OCCLUDER_BAND_PX - above) / OCCLUDER_FEATHER_PX, 0.0, 1.0)
    side_fade = np.clip((bx.max() - sx) / OCCLUDER_FEATHER_PX, 0.0, 1.0) * np.clip((sx - bx.min()) / 5, 0, 1)
    mask = np.nan_to_num(edge * top * side_fade)
    # soft tissue level just under the border, column by column (median over a 6-px strip)
    below = (above < -3) & (above > -9)
    base = np.zeros(size, np.float32)
    for j in range(size):
        col = src[below[:, j], j]
        base[j] = np.median(col) if col.size else np.nan
    ok = np.isfinite(base)
    base = np.interp(np.arange(size), np.flatnonzero(ok), base[ok]).astype(np.float32)
    base = cv2.GaussianBlur(base[None, :], (0, 0), sigmaX=4 * k)[0]  # no column stripes
    return (np.clip(src - base[None, :], 0.0, None) * mask).astype(np.float32)


def write_study(frames: np.ndarray, path: Path, mm_per_px: float) -> None:
    """The cine as an 8-bit RF multi-frame DICOM, 30 fps, PixelSpacing ``mm_per_px``."""
    from dmx.phantom.dicom import build_dataset, params_digest
    from dmx.phantom.options import Calibration, Facing, Photometric, TransferSyntax

    ds = build_dataset(
        frames,
        seed=13,
        params_digest=params_digest({"benchmark": "real_texture", "shape": frames.shape}),
        mm_per_px=(mm_per_px, mm_per_px),
        frame_time_ms=1000.0 / 30.0,
        photometric=Photometric.MONOCHROME2,
        bits=8,
        calibration=Calibration.PIXEL_SPACING,
        magnification=1.0,
        transfer_syntax=TransferSyntax.EXPLICIT,
        facing=Facing.LEFT,
    )
    ds.StudyDescription = "DMX REAL-TEXTURE BENCHMARK (WARPED PUBLIC-DOMAIN RADIOGRAPH)"
    ds.save_as(path, enforce_file_format=True)


def truth_measurements(scene: Scene) -> dict:
    from dmx.measure import measure
    from dmx.tracking.types import Tracks

    vs = tuple(Vertebra(v) for v in BODIES)
    n = scene.n_frames
    c = np.stack([np.stack([scene.corners(t)[v] for v in BODIES]) for t in range(n)])
    tr = Tracks(vs, c, np.ones((n, len(vs))), tuple((None,) * len(vs) for _ in range(n)), 0)
    return measure(tr, mm_per_px=(scene.mm_per_px, scene.mm_per_px))


def _arr(values: list) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in values], dtype=float)


def report(scene: Scene, got: dict, ref: dict, covered: dict[str, np.ndarray]) -> list[str]:
    n = scene.n_frames
    lines = []
    fr, rf = got["frames"], ref["frames"]
    lines.append(
        f"key frames (dmx / truth): flexion {fr['flexion']} / {rf['flexion']}, "
        f"extension {fr['extension']} / {rf['extension']}  (basis {fr['key_frame_basis']})"
    )
    lines.append("")
    lines.append(
        f"{'body':<5} {'under mandible':>14} {'tracked':>8} {'corner med px':>14} {'p95':>6} {'max':>6} "
        f"{'min q':>6}  frames lost"
    )
    for v in BODIES:
        tr = got["tracks"].get(v)
        err = np.full(n, np.nan)
        if tr:
            xy = np.stack(
                [np.array([p if p is not None else [np.nan, np.nan] for p in tr[c.value]]) for c in CORNERS],
                1,
            )
            truth = np.stack([scene.corners(t)[v] for t in range(n)])
            err = np.linalg.norm(xy - truth, axis=-1).max(axis=-1)
        ok = np.isfinite(err)
        e = err[ok]
        lost = np.flatnonzero(~ok)
        stats = f"{np.median(e):14.3f} {np.percentile(e, 95):6.3f} {e.max():6.3f}" if e.size else " " * 28
        cov = covered[v]
        under = f"{cov.max():4.0%} ({int((cov > 0.05).sum())} fr)"
        q = _arr(got["quality"].get(v, [None] * n))
        qmin = f"{np.nanmin(q):6.2f}" if np.isfinite(q).any() else f"{'-':>6}"
        lines.append(f"{v:<5} {under:>14} {ok.mean():8.1%} {stats} {qmin}  {_ranges(lost)}")
    lines.append("")
    lines.append(
        f"{'level':<6} {'angle med':>9} {'p95':>6} {'max':>6} {'at':>4} {'cov':>5}  "
        f"{'ROM dmx':>8} {'truth':>7} {'err':>6}  {'transl dmx':>10} {'truth':>6} {'err':>6}"
    )
    all_err = []
    worst = (0.0, "", -1)
    for name in FLEXION_DEG:
        g, r = got["levels"][name], ref["levels"][name]
        err = np.abs(_arr(g["angle_deg"]) - _arr(r["angle_deg"]))
        ok = np.isfinite(err)
        all_err.append(err[ok])
        if ok.any():
            i = int(np.nanargmax(err))
            if err[i] > worst[0]:
                worst = (float(err[i]), name, i)
            ang = f"{np.median(err[ok]):9.3f} {np.percentile(err[ok], 95):6.3f} {err[i]:6.3f} {i:4d}"
        else:
            ang = f"{'-':>9} {'-':>6} {'-':>6} {'-':>4}"

        def f(x, d=3):
            return "null" if x is None else f"{x:.{d}f}"

        def e(a, b):
            return "-" if a is None or b is None else f"{abs(a - b):.3f}"

        lines.append(
            f"{name:<6} {ang} {ok.mean():5.0%}  "
            f"{f(g['rotation_rom_deg'], 2):>8} {f(r['rotation_rom_deg'], 2):>7} "
            f"{e(g['rotation_rom_deg'], r['rotation_rom_deg']):>6}  {f(g['translation_mm']):>10} "
            f"{f(r['translation_mm']):>6} {e(g['translation_mm'], r['translation_mm']):>6}"
        )
    e_all = np.concatenate(all_err)
    lines.append("")
    lines.append(
        f"per-frame angle error over all levels and reported frames: median {np.median(e_all):.3f} deg, "
        f"p95 {np.percentile(e_all, 95):.3f} deg, worst {worst[0]:.3f} deg ({worst[1]}, frame {worst[2]})"
    )
    return lines


def _ranges(idx: np.ndarray) -> str:
    if idx.size == 0:
        return "-"
    out, start, prev = [], idx[0], idx[0]
    for i in list(idx[1:]) + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=90, help="number of frames (default 90)")
    p.add_argument("--size", type=int, default=1024, help="frame side in px (default 1024)")
    p.add_argument("--image", help=f"path to {IMAGE_NAME} (default: shared/real-radiographs beside the repo)")
    p.add_argument("--keep", help="write the study, landmarks, truth and dmx outputs here and keep them")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument(
        "--occluder-gain",
        type=float,
        default=1.0,
        help="scale the mandible band's added density (1: as in the radiograph)",
    )
    args = p.parse_args(argv)
    path = find_image(args.image)
    if path is None or not path.is_file():
        where = (
            f"{path}: no such file"
            if path is not None
            else f"{IMAGE_NAME} not found in shared/real-radiographs beside the repository"
        )
        print(f"real_texture: {where}; pass --image PATH", file=sys.stderr)
        return 2
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        print(f"real_texture: {path}: cannot read the image", file=sys.stderr)
        return 2
    doc = json.loads(DATA.read_text())
    corners_src = {v: np.array([doc["points"][v][c.value] for c in CORNERS], float) for v in BODIES}
    border = np.array(doc["mandible_lower_border"]["polyline"], float)

    t0 = time.perf_counter()
    scene = Scene(corners_src, args.size, args.frames)
    frames, covered = render(
        scene, image.astype(np.float32), border, seed=args.seed, occluder_gain=args.occluder_gain
    )
    t_render = time.perf_counter() - t0

    with tempfile.TemporaryDirectory(prefix="dmx-real-texture-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        study = work / "study.dcm"
        write_study(frames, study, scene.mm_per_px)
        lm = {
            "schema": "dmx.landmarks/1",
            "frame": 0,
            "points": {
                v: {c.value: [float(x) for x in scene.corners0[v][i]] for i, c in enumerate(CORNERS)}
                for v in BODIES
            },
        }
        (work / "landmarks.json").write_text(json.dumps(lm, indent=1))
        truth = {v: [scene.corners(t)[v].tolist() for t in range(scene.n_frames)] for v in BODIES}
        (work / "truth_corners.json").write_text(json.dumps(truth))
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t1 = time.perf_counter()
        run = subprocess.run(
            [
                sys.executable,
                "-P",  # this checkout's dmx, whatever the working directory holds
                "-m",
                "dmx",
                "analyze",
                str(study),
                "--landmarks",
                str(work / "landmarks.json"),
                "--out",
                str(work / "out"),
                "--no-report",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        t_analyze = time.perf_counter() - t1
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            print(f"real_texture: dmx analyze exited {run.returncode}", file=sys.stderr)
            return 1
        got = json.loads((work / "out" / "measurements.json").read_text())
    ref = truth_measurements(scene)
    print(
        f"real texture: {path.name} warped, {args.size}x{args.size}, {args.frames} frames, "
        f"{scene.mm_per_px:.4f} mm/px, mandible gain {args.occluder_gain:g}; "
        f"rendered in {t_render:.1f} s, dmx analyze {t_analyze:.1f} s"
    )
    for line in report(scene, got, ref, covered):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
