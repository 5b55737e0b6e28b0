"""Measurement accuracy against phantom ground truth (issue: measurements exactly per spec).

For each phantom case, the study's stored pixels (decoded from the DICOM, so that a JPEG case
is tracked on its JPEG pixels, as ``dmx analyze`` sees them) are tracked from its
reference-frame landmarks and measured; the truth is ``dmx.measure.measure`` on the phantom's
exact corners. Prints, per case, the worst level's rotation-ROM, translation (mm, % of depth)
errors, whether curve class, s_type and flags agree at every key frame and level, and the
worst per-frame error of the atlanto-dental interval (C1 followed from its anterior arch) in
mm (uncalibrated: in px) against the phantom's true ADI, with the frames where it is null.

The tracks are smoothed as ``dmx analyze`` smooths them (5-frame local quadratic);
``--raw`` measures the raw tracks instead.

    PYTHONPATH=. python benchmarks/measurements.py [--raw]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dmx.anatomy import BODIES
from dmx.io.calibration import resolve_calibration
from dmx.measure import measure
from dmx.phantom import make_phantom, truth_corners
from dmx.pipeline import _adi_points
from dmx.tracking import smooth_tracks, track
from dmx.tracking.smoothing import WINDOW_FRAMES
from dmx.tracking.types import Tracks

CASES = {
    "lordotic, facing right": dict(curve="lordotic"),
    "S-curve upper kyphotic": dict(curve="s_upper_kyphotic", seed=3),
    "kyphotic, facing left": dict(curve="kyphotic", facing="left", photometric="MONOCHROME1", seed=4),
    "unstable C4-C5 4 mm": dict(curve="lordotic", unstable_mm={"C4-C5": 4.0}, seed=5),
    "uncalibrated, JPEG": dict(curve="s_lower_kyphotic", calibration="none", transfer_syntax="jpeg", seed=6),
}


def truth_tracks(ph) -> Tracks:
    vs = tuple(v for v in BODIES if v.value in ph.truth["tracks"])
    c = truth_corners(ph.truth, vs)
    n = c.shape[0]
    return Tracks(vs, c, np.ones((n, len(vs))), tuple((None,) * len(vs) for _ in range(n)), 0)


def worst(a: dict, b: dict, key: str) -> float | None:
    errs = [abs(a[L][key] - b[L][key]) for L in a if a[L][key] is not None and b[L][key] is not None]
    return max(errs) if errs else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", action="store_true", help="measure raw tracks (no temporal smoothing)")
    window = 0 if ap.parse_args().raw else WINDOW_FRAMES
    print(f"tracks: {'raw' if not window else f'smoothed, {window}-frame local quadratic'}")
    print(
        f"{'case':28s} {'ROM deg':>8s} {'tr mm':>7s} {'tr %':>6s}  class/s_type/flags  "
        f"{'ADI err':>10s} {'null':>4s} {'s':>5s}"
    )
    for name, kw in CASES.items():
        t0 = time.perf_counter()
        ph = make_phantom(**kw)
        mm = resolve_calibration(ph.dataset).mm_per_px  # as the loader would read it

        frames = ph.dataset.pixel_array.astype(np.float32)  # decoded: a JPEG case is lossy here
        if ph.dataset.PhotometricInterpretation == "MONOCHROME1":
            frames = frames.max() - frames
        tr = smooth_tracks(track(frames, ph.landmarks), window_frames=window)
        got = measure(tr, mm_per_px=mm, adi_points_px=_adi_points(tr, ph.landmarks))
        ref = measure(truth_tracks(ph), mm_per_px=mm)
        adi = got.get("adi") or {}
        if mm is not None:
            adi_got = np.array([np.nan if x is None else x for x in adi.get("adi_mm", [])], dtype=float)
            adi_err, unit = np.abs(adi_got - np.array(ph.truth["adi_mm"])), "mm"
        else:
            pts = {k: np.array(v) for k, v in ph.truth["points"].items()}
            adi_true = np.linalg.norm(pts["C1.arch_post"] - pts["C2.dens_ant"], axis=-1)
            adi_got = np.array([np.nan if x is None else x for x in adi.get("adi_px", [])], dtype=float)
            adi_err, unit = np.abs(adi_got - adi_true), "px"
        adi_text = f"{np.nanmax(adi_err):.3f} {unit}" if np.isfinite(adi_err).any() else "none"
        same = all(
            got["curve"][k]["class"] == ref["curve"][k]["class"]
            and got["curve"][k]["s_type"] == ref["curve"][k]["s_type"]
            for k in ("neutral", "flexion", "extension")
        ) and all(got["levels"][L]["flags"] == ref["levels"][L]["flags"] for L in ref["levels"])

        def f(x, d=3):
            return "  null" if x is None else f"{x:.{d}f}"

        print(
            f"{name:28s} {f(worst(got['levels'], ref['levels'], 'rotation_rom_deg')):>8s} "
            f"{f(worst(got['levels'], ref['levels'], 'translation_mm')):>7s} "
            f"{f(worst(got['levels'], ref['levels'], 'translation_pct'), 2):>6s}  "
            f"{'identical' if same else 'DIFFERENT':18s}  {adi_text:>10s} {int(np.isnan(adi_err).sum()):4d} "
            f"{time.perf_counter() - t0:5.1f}"
        )


if __name__ == "__main__":
    main()
