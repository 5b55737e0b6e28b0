"""Automatic landmarks on one real lateral radiograph, against hand-placed corners (test only, never fitting).

Reads ``lateral_neutral_20yo_male.jpg`` (public domain, not in this repository: from
``shared/real-radiographs`` beside the repository or ``--image``) and the corners placed by hand on
it (``benchmarks/data/real_radiograph_corners.json``: C2-C6, estimated accuracy 1-2 px; C7 is hidden
by the shoulders). The image has no calibration, so the detector searches over body sizes. Prints,
per body, whether it was reported, its confidence and its worst-corner error (px), or the reason
it was left out; a reported body whose worst corner is more than 6 px off (a few times the hand
placement's accuracy) counts as wrong.

    PYTHONPATH=. python benchmarks/real_detection.py [--detector heatmap|template] [--image PATH]

``--from-hand``: the edge refinement alone (:func:`dmx.detect.refine.refine_corners`, as
``benchmarks/refine_from_truth.py`` on the phantoms) started from the hand-placed corners, at a few pixel
sizes: whether the detector's outlines could be found on this image from a perfect start, so that what
fails (the network's start, the checks, or the refinement itself) can be told apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from dmx.anatomy import BODIES, CORNERS
from dmx.detect import detect_landmarks

DATA = Path(__file__).resolve().parent / "data" / "real_radiograph_corners.json"
IMAGE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "real-radiographs"
    / "lateral_neutral_20yo_male.jpg"
)
#: A reported body with a corner further than this from the hand-placed one is counted wrong.
WRONG_PX = 6.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detector", choices=("template", "heatmap"), default="heatmap")
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument(
        "--from-hand", action="store_true", help="the edge refinement from the hand-placed corners"
    )
    args = ap.parse_args()
    path = args.image
    if path is None:
        for cand in (IMAGE, Path("/work/shared/real-radiographs/lateral_neutral_20yo_male.jpg")):
            if cand.is_file():
                path = cand
                break
    if path is None or not path.is_file():
        raise SystemExit("the real radiograph was not found: pass --image")
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    doc = json.loads(DATA.read_text())
    truth = {
        v: np.array([doc["points"][v.value][k.value] for k in CORNERS])
        for v in BODIES
        if v.value in doc["points"]
    }
    if args.from_hand:
        from_hand(img, truth)
        return
    det = detect_landmarks(img, mm_per_px=None, method=args.detector)
    print(f"detector {args.detector}, {path.name} ({img.shape[1]} x {img.shape[0]} px, uncalibrated)")
    wrong = 0
    for v in BODIES:
        if v in det.landmarks.corners_px:
            c = det.landmarks.corners_px[v]
            if v in truth:
                e = float(np.hypot(*(c - truth[v]).T).max())
                wrong += e > WRONG_PX
                verdict = f"worst corner {e:6.2f} px" + ("  WRONG" if e > WRONG_PX else "")
            else:
                verdict = "no hand-placed corners (hidden by the shoulders)"
            print(f"  {v.value}: reported, confidence {det.landmarks.confidence[v]:.2f}, {verdict}")
        else:
            print(f"  {v.value}: {det.missing.get(v, 'not reported')}")
    found = sum(v in det.landmarks.corners_px for v in truth)
    print(f"reported {found} of {len(truth)} hand-placed bodies, {wrong} wrong (> {WRONG_PX:g} px)")
    for w in det.warnings:
        print(f"  warning: {w}")


#: Pixel sizes (mm) the refinement is tried at from the hand-placed corners: the image has none, the
#: detector's search over sizes settled at 0.26 (session 62).
FROM_HAND_MM = (0.22, 0.26, 0.30)


def from_hand(img: np.ndarray, truth: dict) -> None:
    """Per pixel size and body: the edge refinement from the hand-placed corners
    (:func:`refine_from_truth.refine_from`: the detector's radii after the network, the level's mean shape
    guiding C3-C7), its worst corner against those corners, its edge features, and whether it passes the
    edge and shape factors of :func:`dmx.detect.detector.heatmap_confidence` (the network's own factors set
    to pass)."""
    from refine_from_truth import refine_from  # benchmarks/refine_from_truth.py

    from dmx.detect import model_file
    from dmx.detect.model import load_model
    from dmx.detect.pose import smoothed
    from dmx.measure.geometry import facing

    model = load_model(model_file())
    w = img.shape[1]
    print("the edge refinement from the hand-placed corners (worst corner against them, px):")
    for mpp in FROM_HAND_MM:
        cells = []
        views: dict[bool, tuple[np.ndarray, float]] = {}  # the smoothed image by facing, made once per size
        for v, true in truth.items():
            right = bool(facing(true) < 0)  # the spec's h: -1 facing right; the refinement wants right
            if right not in views:
                views[right] = smoothed(img if right else img[:, ::-1].copy(), mpp)
            sm, noise = views[right]
            start = true if right else np.c_[w - 1 - true[:, 0], true[:, 1]]
            out, feats, _, passes = refine_from(sm, noise, start, BODIES.index(v), mpp, model)
            if out is None:
                cells.append(f"{v.value} no outline")
                continue
            e = float(np.hypot(*(out - start).T).max())
            cells.append(
                f"{v.value} {e:.1f} (inliers {feats['inlier']:.2f}, rms {feats['rms_px']:.2f} px, "
                f"{'passes' if passes else 'fails'})"
            )
        print(f"  {mpp:.2f} mm/px: " + "; ".join(cells))


if __name__ == "__main__":
    main()
