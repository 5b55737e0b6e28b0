"""Small synthetic cervical columns with exactly known rigid motion (tests and benchmark).

Not a realistic phantom (see :mod:`dmx.phantom`): textured vertebral bodies with a
cortical rim and a posterior element, chained through the discs so that the column
flexes and extends, over a smooth soft-tissue background, with optional noise,
exposure flicker, an occluder, inverted polarity, mirrored facing and JPEG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dmx.anatomy import BODIES, Vertebra
from dmx.landmarks import Landmarks

_SS = 2  # supersampling of the source textures


@dataclass(frozen=True)
class Scene:
    frames: np.ndarray  # (T, H, W)
    truth_px: np.ndarray  # (T, V, 4, 2)
    transforms: np.ndarray  # (T, V, 3, 3) reference -> frame
    landmarks: Landmarks
    vertebrae: tuple[Vertebra, ...]


def _rot(theta: float, c: np.ndarray) -> np.ndarray:
    co, si = math.cos(theta), math.sin(theta)
    return np.array(
        [[co, -si, c[0] - co * c[0] + si * c[1]], [si, co, c[1] - si * c[0] - co * c[1]], [0, 0, 1]]
    )


def _texture(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    t = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    return t / (t.std() + 1e-9)


def make_scene(
    *,
    shape: tuple[int, int] = (256, 256),
    n_frames: int = 12,
    body_px: float = 30.0,
    seed: int = 0,
    amplitude_deg: float = 6.0,
    drift_px: float = 0.0,
    noise: float = 0.0,
    flicker: float = 0.0,
    invert: bool = False,
    mirror: bool = False,
    jpeg_quality: int | None = None,
    occluder: str | None = None,
    reference_frame: int = 0,
    background: bool = True,
    dtype: type = np.uint8,
) -> Scene:
    """Render a synthetic lateral cervical cine.

    ``amplitude_deg`` is the per-level peak rotation (C2 turns about 5x that); ``drift_px`` a
    translation of the whole column over the cine; ``noise`` Gaussian noise std in grey levels (0..255
    scale); ``flicker`` the per-frame gain deviation (0.1 = +-10 %); ``occluder`` one of None,
    ``"mandible"`` (a soft-edged dense region crossing C2-C4 in flexion) or ``"block"`` (an opaque square
    covering C4 completely in the middle third of the cine).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    n_v = len(BODIES)
    depth = body_px
    height = 0.8 * body_px
    disc = 0.3 * body_px
    # reference geometry: slightly lordotic column, anterior to the left
    x_c = 0.45 * w
    y_top = 0.5 * h - 0.5 * n_v * (height + disc) + 0.5 * disc
    quads = []
    for k in range(n_v):
        yc = y_top + k * (height + disc) + 0.5 * height
        xc = x_c + 0.04 * body_px * (k - 2.5) ** 2
        tilt = math.radians(4.0 * (k - 2.5))
        base = np.array(
            [
                [-depth / 2, -height / 2],
                [depth / 2, -height / 2],
                [depth / 2, height / 2],
                [-depth / 2, height / 2],
            ]
        )
        base[0, 0] -= 0.05 * depth * rng.uniform(-1, 1)
        base[3, 1] += 0.04 * height * rng.uniform(-1, 1)
        r = np.array([[math.cos(tilt), -math.sin(tilt)], [math.sin(tilt), math.cos(tilt)]])
        quads.append(base @ r.T + [xc, yc])
    quads = np.array(quads)
    joints = [
        0.5 * (quads[k, 2] + quads[k, 3] + quads[k + 1, 0] + quads[k + 1, 1]) / 2 for k in range(n_v - 1)
    ]
    joints.append(0.5 * (quads[-1, 2] + quads[-1, 3]) + [0, disc])

    # per-vertebra source textures (body with cortical rim + posterior element), local coords = reference px
    sources = []
    for k in range(n_v):
        q = quads[k]
        x0, y0 = np.floor(q.min(axis=0) - 0.25 * body_px).astype(int)
        x1, y1 = np.ceil(q.max(axis=0) + 0.25 * body_px).astype(int)
        x1 += int(0.8 * body_px)  # posterior element
        sh, sw = (y1 - y0) * _SS, (x1 - x0) * _SS
        body = np.zeros((sh, sw), np.float32)
        pts = np.round((q - [x0, y0]) * _SS * 16).astype(np.int32)
        cv2.fillPoly(body, [pts], 1.0, shift=4)
        rim = body - cv2.erode(body, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _SS + 1, 2 * _SS + 1)))
        trab = 0.25 * _texture(rng, sh, sw, 1.5 * _SS) + 0.15 * _texture(rng, sh, sw, 4 * _SS)
        img = body * (0.55 + trab) + 0.9 * rim
        # posterior element: an elongated blob behind the body
        post = np.zeros((sh, sw), np.float32)
        pc = (0.5 * (q[1] + q[2]) - [x0, y0]) * _SS + [0.45 * body_px * _SS, 0]
        cv2.ellipse(
            post,
            (int(pc[0]), int(pc[1])),
            (int(0.35 * body_px * _SS), int(0.22 * body_px * _SS)),
            10,
            0,
            360,
            1.0,
            -1,
        )
        img += post * (0.35 + 0.15 * _texture(rng, sh, sw, 2 * _SS)) * (1 - body)
        img = cv2.GaussianBlur(img, (0, 0), 0.7 * _SS)
        sources.append((img, x0, y0))

    # motion: per-level rotation about the disc joints, chained from the bottom
    t_ = np.arange(n_frames)
    prof = np.sin(2 * math.pi * (t_ - reference_frame) / max(n_frames, 2))
    level_amp = np.linspace(1.3, 0.7, n_v) * math.radians(amplitude_deg)
    transforms = np.zeros((n_frames, n_v, 3, 3))
    for t in range(n_frames):
        drift = np.eye(3)
        drift[0, 2] = drift_px * (t - reference_frame) / max(n_frames - 1, 1)
        drift[1, 2] = -0.3 * drift_px * (t - reference_frame) / max(n_frames - 1, 1)
        for k in range(n_v):
            a = drift.copy()
            for j in range(n_v - 1, k - 1, -1):
                a = a @ _rot(level_amp[j] * prof[t], joints[j])
            transforms[t, k] = a

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = 0.25 + 0.1 * np.sin(xx / w * 3.0) + 0.08 * (yy / h) + 0.05 * _texture(rng, h, w, 12)
    if not background:
        bg = np.full((h, w), 0.25, np.float32)

    frames = np.zeros((n_frames, h, w), np.float32)
    for t in range(n_frames):
        img = bg.copy()
        for k, (src, x0, y0) in enumerate(sources):
            # source pixel -> reference coords: x = (u + 0.5) / SS - 0.5 + x0
            s = np.array([[1 / _SS, 0, 0.5 / _SS - 0.5 + x0], [0, 1 / _SS, 0.5 / _SS - 0.5 + y0], [0, 0, 1]])
            m = transforms[t, k] @ s
            corners = np.array(
                [[0, 0, 1], [src.shape[1], 0, 1], [src.shape[1], src.shape[0], 1], [0, src.shape[0], 1]]
            )
            p = (m[:2] @ corners.T).T
            bx0, by0 = np.maximum(np.floor(p.min(axis=0)).astype(int) - 1, 0)
            bx1, by1 = np.minimum(np.ceil(p.max(axis=0)).astype(int) + 2, [w, h])
            if bx1 <= bx0 or by1 <= by0:
                continue
            mm = m.copy()
            mm[0, 2] -= bx0
            mm[1, 2] -= by0
            patch = cv2.warpAffine(
                src,
                mm[:2],
                (int(bx1 - bx0), int(by1 - by0)),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )
            img[by0:by1, bx0:bx1] += 0.5 * patch
        if occluder == "mandible":
            f = max(0.0, float(prof[t]))  # flexion half
            c2 = quads[0].mean(axis=0)
            cx = c2[0] - 1.6 * body_px + 1.4 * body_px * f
            cy = c2[1] + 1.2 * body_px * f
            occ = np.zeros((h, w), np.float32)
            cv2.ellipse(
                occ,
                (int(cx * 16), int(cy * 16)),
                (int(1.4 * body_px * 16), int(0.8 * body_px * 16)),
                30,
                0,
                360,
                1.0,
                -1,
                shift=4,
            )
            occ = cv2.GaussianBlur(occ, (0, 0), 2.0)
            img += 0.35 * occ
        if occluder == "block" and n_frames // 3 <= t < 2 * n_frames // 3:
            c4 = transforms[t, 2, :2] @ np.append(quads[2].mean(axis=0), 1)
            half = int(0.9 * body_px)
            ya, xa = int(c4[1]) - half, int(c4[0]) - half
            img[max(ya, 0) : ya + 2 * half, max(xa, 0) : xa + 2 * half] = 0.6
        if flicker:
            img *= 1 + flicker * rng.uniform(-1, 1)
        frames[t] = img

    frames *= 255 / 1.6
    if invert:
        frames = 255 - frames
    if noise:
        frames += rng.normal(0, noise, frames.shape).astype(np.float32)
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        frames = np.clip(np.round(frames * (top / 255)), 0, top).astype(dtype)
    else:
        frames = frames.astype(dtype)
    if jpeg_quality is not None:
        assert dtype == np.uint8
        for t in range(n_frames):
            ok, buf = cv2.imencode(".jpg", frames[t], [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            frames[t] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    truth = np.einsum(
        "tvij,vkj->tvki", transforms[:, :, :2, :], np.concatenate([quads, np.ones((n_v, 4, 1))], axis=2)
    )
    if mirror:
        frames = frames[:, :, ::-1].copy()
        truth = truth.copy()
        truth[..., 0] = w - 1 - truth[..., 0]
        flip = np.array([[-1.0, 0, w - 1], [0, 1, 0], [0, 0, 1]])
        transforms = flip @ transforms @ flip
    lm = Landmarks(
        frame=reference_frame, corners_px={v: truth[reference_frame, k].copy() for k, v in enumerate(BODIES)}
    )
    return Scene(frames=frames, truth_px=truth, transforms=transforms, landmarks=lm, vertebrae=BODIES)
