"""Static flexion/extension studies against phantom ground truth (issue #18).

The flexion and extension key frames of a phantom cine are written as two single-frame DX
files in two series (and as two PNG images), exact landmarks are given on the flexion view
only, and ``dmx.static.analyze_static`` registers the bodies on the extension view and
measures. The truth is ``dmx.measure.measure`` on the exact corners of both views (the same
formulas, key frames = the views). Prints, per case, per-level rotation-ROM and translation
errors (the worst level), the levels that are null and why, and the time. A third variant
magnifies the extension view by 8 % about its centre (its PixelSpacing divided accordingly, as
a second exposure at another distance): the truth in mm is unchanged, since each view is
measured with its own calibration.

The phantom's appearance is this repository's own synthetic rendering (dmx.phantom): figures
on real radiographs will differ.

    PYTHONPATH=. python benchmarks/static.py [--full]

Targets: rotation ROM within 0.3 deg and translation within 0.15 mm at every level, for the
DICOM pair and for the PNG pair with --mm-per-px.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from dmx.anatomy import BODIES, LEVELS
from dmx.measure import measure
from dmx.phantom import make_phantom
from dmx.phantom.static import static_truth, view_frames, write_static_views
from dmx.static import analyze_static
from dmx.tracking.types import Tracks

CASES = {
    "lordotic": dict(curve="lordotic", seed=1),
    "S-curve upper kyphotic": dict(curve="s_upper_kyphotic", seed=3),
    "unstable C4-C5 4 mm": dict(curve="lordotic", unstable_mm={"C4-C5": 4.0}, seed=5),
}
FULL_CASES = {
    "kyphotic, facing left, MONOCHROME1": dict(
        curve="kyphotic", facing="left", photometric="MONOCHROME1", seed=4
    ),
    "1024 px, low dose": dict(curve="s_lower_kyphotic", rows=1024, cols=1024, photons=2000, seed=6),
}


def truth_levels(corners: dict, postures: list[str], mm_per_px) -> dict:  # noqa: ANN001
    """Spec values from the exact corners of the views (frames in posture order)."""
    vs = tuple(v for v in BODIES if all(v in corners[p] for p in postures))
    c = np.array([[corners[p][v] for v in vs] for p in postures])
    n = len(postures)
    tracks = Tracks(vs, c, np.ones((n, len(vs))), tuple((None,) * len(vs) for _ in range(n)), 0)
    fe = (postures.index("flexion"), postures.index("extension"))
    return measure(tracks, mm_per_px=mm_per_px, view_key_frames=fe)["levels"]


def compare(measured: dict, truth: dict) -> tuple[float | None, float | None, list[str]]:
    rot, trans, null = [], [], []
    for lv in (L.value for L in LEVELS):
        m, t = measured.get(lv), truth.get(lv)
        if t is None or t["rotation_rom_deg"] is None:
            continue
        if m["rotation_rom_deg"] is None:
            null.append(lv)
            continue
        rot.append(abs(m["rotation_rom_deg"] - t["rotation_rom_deg"]))
        if m["translation_mm"] is not None and t["translation_mm"] is not None:
            trans.append(abs(m["translation_mm"] - t["translation_mm"]))
    return (max(rot) if rot else None), (max(trans) if trans else None), null


def run_case(name: str, params: dict, tmp: Path) -> None:
    ph = make_phantom(frames=60, **params)
    frames = view_frames(ph)
    truth_corners = static_truth(ph, frames)
    mm = tuple(ph.truth["mm_per_px"])
    truth = truth_levels(truth_corners, ["flexion", "extension"], mm)
    lm_path = tmp / f"{name[:8]}-landmarks.json"
    pts = {
        v.value: {
            c: [float(x) for x in xy]
            for c, xy in zip(("ant_sup", "post_sup", "post_inf", "ant_inf"), k, strict=True)
        }
        for v, k in truth_corners["flexion"].items()
        if v in BODIES
    }
    lm_path.write_text(json.dumps({"schema": "dmx.landmarks/1", "frame": 0, "points": pts}))
    variants = {
        "dicom": ("dicom", None),
        "png": ("png", None),
        "dicom, extension x1.08": ("dicom", {"extension": 1.08}),
    }
    for label, (fmt, mag) in variants.items():
        out = tmp / f"{abs(hash(name))}-{abs(hash(label))}"
        files = write_static_views(ph, out, frames=frames, fmt=fmt, magnification=mag)
        t0 = time.perf_counter()
        a = analyze_static(
            [files["flexion"], files["extension"]],
            landmarks_path=lm_path,
            mm_per_px=None if fmt == "dicom" else float(mm[0]),
        )
        dt = time.perf_counter() - t0
        rot, trans, null = compare(a.measurements["levels"], truth)
        reasons = {
            v.value: r for v, r in zip(a.tracks.vertebrae, a.tracks.reason[1], strict=True) if r is not None
        }
        rot_s = "-" if rot is None else f"{rot:.3f}"
        trans_s = "-" if trans is None else f"{trans:.3f}"
        print(
            f"{name:36s} {label:23s} worst ROM err {rot_s:>6s} deg  worst translation err {trans_s:>6s} mm  "
            f"null levels {','.join(null) or 'none'}  {dt:.1f} s"
            + (f"  (extension view: {reasons})" if reasons else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the harder cases")
    args = parser.parse_args()
    cases = dict(CASES, **(FULL_CASES if args.full else {}))
    with tempfile.TemporaryDirectory() as d:
        for name, params in cases.items():
            run_case(name, params, Path(d))


if __name__ == "__main__":
    main()
