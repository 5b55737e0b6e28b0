"""Automatic landmarks on one real lateral radiograph, against hand-placed corners (test only, never fitting).

Reads ``lateral_neutral_20yo_male.jpg`` (public domain, not in this repository: from
``shared/real-radiographs`` beside the repository or ``--image``) and the corners placed by hand on
it (``benchmarks/data/real_radiograph_corners.json``: C2-C6, estimated accuracy 1-2 px; C7 is hidden
by the shoulders). The image has no calibration, so the detector searches over body sizes. Prints,
per body, whether it was reported, its confidence and its worst-corner error (px), or the reason
it was left out; a reported body whose worst corner is more than 6 px off (a few times the hand
placement's accuracy) counts as wrong.

    PYTHONPATH=. python benchmarks/real_detection.py [--detector heatmap|template] [--image PATH]
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


if __name__ == "__main__":
    main()
