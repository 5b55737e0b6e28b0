"""Are ``angle_uncertainty_deg`` and the offsets' uncertainty honest where something covers the bodies? (#13)

Each level's per-frame angle uncertainty is the registration precision of its two bodies (image
noise) plus a model-error term that grows with how much each fit's robust cost lies above the body's
clear cost (``Tracks.cost_excess``; :mod:`dmx.measure.uncertainty`). Its constants were fitted on the
DEVELOPMENT phantoms below; this script checks them on HELD-OUT phantoms (other seeds of the same
kinds of case, never used for fitting): z = (tracked - true angle) / u over every tracked level-frame
(5-frame smoothed tracks, as ``dmx analyze`` measures them). Honest: z RMS 1 and 95 % of |z| within
1.96, in every band of cost excess, not only overall. The same for each level's per-frame offset
(``offset_mm``; its uncertainty is internal, the end range's ``translation_uncertainty_mm`` is made
of it) and the end-range translation, with the position-model constants fitted on the same
development phantoms.

    PYTHONPATH=. python benchmarks/uncertainty.py          # the shipped constants, both sets (~6 min)
    PYTHONPATH=. python benchmarks/uncertainty.py --fit    # also refit the constants on the dev set

The cases are 60-frame 512x512 phantoms: the default look, one phantom of each appearance family
(:mod:`dmx.phantom.appearance`), the mandible over C2-C4 in deep flexion with the shoulders over C7
(``benchmarks/tracking.py``'s case). Development: default seeds 21, 31, 32; the families at seeds
22-26 (``benchmarks/measurements.py --appearance``'s cases); mandible seed 40. Held out: default 33,
34; cortical 70, posterior 80, soft_tissue 90, processing 100; occluders 60-64; mandible 41-43.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

from dmx.anatomy import Vertebra
from dmx.measure.geometry import depth
from dmx.measure.uncertainty import (
    MODEL_EXCESS_CAP,
    MODEL_SD_DEG,
    MODEL_SD_PER_EXCESS_DEG,
    POSITION_MODEL_FRAC,
    POSITION_MODEL_FRAC_PER_EXCESS,
    angle_uncertainty_deg,
    offset_uncertainty,
    position_model_frac,
    rotation_model_sd_deg,
)
from dmx.phantom import draw_appearance
from dmx.tracking.smoothing import WINDOW_FRAMES

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measurements as measurements_bench  # noqa: E402  (each case tracked and measured, series)
import tracking as tracking_bench  # noqa: E402  (the mandible case)

BASE = dict(frames=60, rows=512, cols=512)
FAMILIES = ("cortical", "posterior", "soft_tissue", "processing", "occluders")


def _family(fam: str, seed: int) -> dict:
    return dict(BASE, seed=seed, appearance=draw_appearance(fam, seed=seed))


def cases() -> tuple[dict[str, dict], dict[str, dict]]:
    """(development, held-out) phantom keywords by name."""
    dev = {f"default s{s}": dict(BASE, seed=s) for s in (21, 31, 32)}
    dev.update({f"{fam} s{22 + i}": _family(fam, 22 + i) for i, fam in enumerate(FAMILIES)})
    dev["mandible+shoulders s40"] = tracking_bench._mandible_case(40, BASE)[1]
    held = {f"default s{s}": dict(BASE, seed=s) for s in (33, 34)}
    for fam, s in (("cortical", 70), ("posterior", 80), ("soft_tissue", 90), ("processing", 100)):
        held[f"{fam} s{s}"] = _family(fam, s)
    held.update({f"occluders s{s}": _family("occluders", s) for s in range(60, 65)})
    held.update({f"mandible+shoulders s{s}": tracking_bench._mandible_case(s, BASE)[1] for s in (41, 42, 43)})
    return dev, held


def level_frames(name: str, kw: dict) -> dict[str, np.ndarray]:
    """Every tracked level-frame of one phantom: angle error, both bodies' noise SD and cost excess,
    the shipped uncertainty; the offset's error (mm) with what its uncertainty is made of (noise part,
    both bodies' depth, the disc-height lever); and per level with an end range, the ROM and
    translation errors and their uncertainties."""
    _, mm, tr, got, ref = measurements_bench.track_and_measure(kw, WINDOW_FRAMES)
    a_got = measurements_bench.series(got["levels"], "angle_deg")
    a_true = measurements_bench.series(ref["levels"], "angle_deg")
    u_got = measurements_bench.series(got["levels"], "angle_uncertainty_deg")
    o_got = measurements_bench.series(got["levels"], "offset_mm")
    o_true = measurements_bench.series(ref["levels"], "offset_mm")
    cols: dict[str, list] = {k: [] for k in ("err", "nu", "nl", "xu", "xl", "u")}
    ocols: dict[str, list] = {k: [] for k in ("o_err", "o_noise", "o_du", "o_dl", "o_lever", "o_xu", "o_xl")}
    rom_err, rom_u, tr_err, tr_cols, tr_shipped = [], [], [], [], []
    fl, ex = got["frames"]["flexion"], got["frames"]["extension"]
    row, col = mm
    for level in a_got:
        vu, vl = (Vertebra(n) for n in level.split("-"))
        up, lo = tr.vertebrae.index(vu), tr.vertebrae.index(vl)
        e = a_got[level] - a_true[level]
        ok = np.isfinite(e) & np.isfinite(u_got[level])
        ok[tr.reference_frame] = False
        cols["err"].append(e[ok])
        cols["u"].append(u_got[level][ok])
        for key, arr, i in (
            ("nu", tr.rotation_precision_deg, up),
            ("nl", tr.rotation_precision_deg, lo),
            ("xu", tr.cost_excess, up),
            ("xl", tr.cost_excess, lo),
        ):
            cols[key].append(np.asarray(arr[ok, i], dtype=float))
        # the offset: its noise part as measured, and the pieces its model term is made of
        cu, cl = (tr.corners_px[:, i] * np.array([col, row]) for i in (up, lo))
        parts = dict(
            precision_upper_px=tr.precision_px[:, up],
            precision_lower_px=tr.precision_px[:, lo],
            mm_per_px=mm,
            lower_vertebra=vl,
            upper_vertebra=vu,
        )
        noise, _ = offset_uncertainty(cu, cl, rotation_sd_lower_deg=tr.rotation_precision_deg[:, lo], **parts)
        # the lever alone: no position noise, 1 rad of L's rotation
        lever, _ = offset_uncertainty(
            cu,
            cl,
            rotation_sd_lower_deg=np.zeros(len(cu)),
            model_sd_lower_deg=np.degrees(1.0),
            **dict(parts, precision_upper_px=np.zeros(len(cu)), precision_lower_px=np.zeros(len(cu))),
        )
        # -1: no model term (the reference frame, where the pose is the landmarks themselves)
        x_u = np.where(tr.rotation_precision_deg[:, up] == 0, -1.0, tr.cost_excess[:, up])
        x_l = np.where(tr.rotation_precision_deg[:, lo] == 0, -1.0, tr.cost_excess[:, lo])
        oe = o_got[level] - o_true[level]
        ook = np.isfinite(oe) & np.isfinite(noise)
        ook[tr.reference_frame] = False
        pieces = dict(
            o_err=oe,
            o_noise=noise,
            o_du=depth(cu, vertebra=vu),
            o_dl=depth(cl, vertebra=vl),
            o_lever=lever,
            o_xu=np.asarray(x_u, dtype=float),
            o_xl=np.asarray(x_l, dtype=float),
        )
        for key, arr in pieces.items():
            ocols[key].append(arr[ook])
        lv = got["levels"][level]
        if lv["rotation_rom_deg"] is not None and lv["rotation_rom_uncertainty_deg"]:
            rom_err.append(lv["rotation_rom_deg"] - (a_true[level][ex] - a_true[level][fl]))
            rom_u.append(lv["rotation_rom_uncertainty_deg"])
        if lv["translation_mm"] is not None and lv["translation_uncertainty_mm"]:
            tr_err.append(lv["translation_mm"] - (o_true[level][fl] - o_true[level][ex]))
            tr_cols.append(np.array([pieces[k][t] for t in (fl, ex) for k in pieces if k != "o_err"]))
            tr_shipped.append(lv["translation_uncertainty_mm"])
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out.update({k: np.concatenate(v) for k, v in ocols.items()})
    out["case"] = np.array([name] * out["err"].size)
    out["o_case"] = np.array([name] * out["o_err"].size)
    out["rom_err"], out["rom_u"] = np.array(rom_err), np.array(rom_u)
    out["tr_err"] = np.array(tr_err)
    out["tr_parts"] = np.array(tr_cols).reshape(-1, 12)
    out["tr_shipped"] = np.array(tr_shipped)
    return out


def offset_u(
    noise: np.ndarray,
    du: np.ndarray,
    dl: np.ndarray,
    lever: np.ndarray,
    xu: np.ndarray,
    xl: np.ndarray,
    base: float,
    per: float,
) -> np.ndarray:
    """The offset's uncertainty (mm) with position-model constants ``base``, ``per`` and the shipped
    rotation model (an excess of -1: no model term, the reference frame)."""

    def frac(x: np.ndarray) -> np.ndarray:
        return np.where(x < 0, 0.0, position_model_frac(x, base_frac=base, per_excess_frac=per))

    m_l = np.where(xl < 0, 0.0, np.radians(rotation_model_sd_deg(xl)))
    return np.sqrt(noise**2 + (frac(xu) * du) ** 2 + (frac(xl) * dl) ** 2 + (lever * m_l) ** 2)


def offset_level_u(d: dict[str, np.ndarray], base: float, per: float) -> np.ndarray:
    return offset_u(d["o_noise"], d["o_du"], d["o_dl"], d["o_lever"], d["o_xu"], d["o_xl"], base, per)


def translation_u(d: dict[str, np.ndarray], base: float, per: float) -> np.ndarray:
    p = d["tr_parts"]
    return np.hypot(offset_u(*p[:, :6].T, base, per), offset_u(*p[:, 6:].T, base, per))


def offset_report(label: str, d: dict[str, np.ndarray], base: float, per: float) -> None:
    u = offset_level_u(d, base, per)
    z = d["o_err"] / u
    x = np.fmax(np.nan_to_num(d["o_xu"], nan=np.inf), np.nan_to_num(d["o_xl"], nan=np.inf))
    z0 = d["o_err"] / d["o_noise"]
    print(
        f"offset_mm, {label}: {z.size} level-frames; z RMS {np.sqrt(np.mean(z * z)):.2f} "
        f"({np.mean(np.abs(z) <= 1.96):.1%} within 1.96); noise alone {np.sqrt(np.mean(z0 * z0)):.2f} "
        f"({np.mean(np.abs(z0) <= 1.96):.1%})"
    )
    print(f"  {'cost excess':12s} {'n':>5s} {'z RMS':>6s} {'<1.96':>6s}")
    for lo, hi in BANDS:
        m = (x >= lo) & (x < hi)
        if m.any():
            print(
                f"  {lo:.2f}-{hi:.2f}    {m.sum():5d} {np.sqrt(np.mean(z[m] ** 2)):6.2f} "
                f"{np.mean(np.abs(z[m]) <= 1.96):6.1%}"
            )
    for name in dict.fromkeys(d["o_case"]):
        m = d["o_case"] == name
        print(
            f"  {name:26s} {m.sum():5d} err RMS {np.sqrt(np.mean(d['o_err'][m] ** 2)):6.3f} mm  "
            f"u RMS {np.sqrt(np.mean(u[m] ** 2)):6.3f}  z RMS {np.sqrt(np.mean(z[m] ** 2)):5.2f}"
        )
    zt = d["tr_err"] / translation_u(d, base, per)
    p = d["tr_parts"]
    zt0 = d["tr_err"] / np.hypot(p[:, 0], p[:, 6])
    print(
        f"translation_uncertainty_mm, {label}: {zt.size} levels, z RMS {np.sqrt(np.mean(zt * zt)):.2f}, "
        f"{np.mean(np.abs(zt) <= 1.96):.1%} within 1.96; noise alone {np.sqrt(np.mean(zt0 * zt0)):.2f}"
    )


def fit_position_constants(d: dict[str, np.ndarray]) -> tuple[float, float]:
    """Position-model constants making every band's offset z RMS as near 1 as possible (bands of >= 20
    level-frames) on ``d``."""
    x = np.fmax(np.nan_to_num(d["o_xu"], nan=np.inf), np.nan_to_num(d["o_xl"], nan=np.inf))
    grid = itertools.product(np.arange(0.0, 0.0205, 0.001), np.arange(0.0, 0.305, 0.01))

    def cost(ab: tuple[float, float]) -> float:
        z = d["o_err"] / offset_level_u(d, *ab)
        total = 0.0
        for lo, hi in BANDS:
            m = (x >= lo) & (x < hi)
            if m.sum() >= 20:
                total += np.log(np.sqrt(np.mean(z[m] ** 2))) ** 2
        return total

    return min(grid, key=cost)


def collect(named: dict[str, dict]) -> dict[str, np.ndarray]:
    parts = []
    for name, kw in named.items():
        t0 = time.perf_counter()
        parts.append(level_frames(name, kw))
        print(
            f"  {name:26s} {parts[-1]['err'].size:4d} level-frames  {time.perf_counter() - t0:5.1f} s",
            flush=True,
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def uncertainty(
    d: dict[str, np.ndarray], base: float, per: float, cap: float = MODEL_EXCESS_CAP
) -> np.ndarray:
    """The level-frames' angle uncertainty with model constants ``base``, ``per``."""
    m_u = rotation_model_sd_deg(d["xu"], base_deg=base, per_excess_deg=per, cap=cap)
    m_l = rotation_model_sd_deg(d["xl"], base_deg=base, per_excess_deg=per, cap=cap)
    return angle_uncertainty_deg(d["nu"], d["nl"], m_u, m_l)


#: Bands of the larger cost excess of a level's two bodies (NaN: unknown, counted as the cap).
BANDS = ((0.0, 0.02), (0.02, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, np.inf))


def _excess(d: dict[str, np.ndarray]) -> np.ndarray:
    return np.fmax(np.nan_to_num(d["xu"], nan=np.inf), np.nan_to_num(d["xl"], nan=np.inf))


def band_z(d: dict[str, np.ndarray], u: np.ndarray, min_n: int = 1) -> list[tuple[str, int, float, float]]:
    x = _excess(d)
    rows = []
    for lo, hi in BANDS:
        m = (x >= lo) & (x < hi)
        if m.sum() >= min_n:
            z = d["err"][m] / u[m]
            rows.append(
                (
                    f"{lo:.2f}-{hi:.2f}",
                    int(m.sum()),
                    float(np.sqrt(np.mean(z * z))),
                    float(np.mean(np.abs(z) <= 1.96)),
                )
            )
    return rows


def report(label: str, d: dict[str, np.ndarray], u: np.ndarray) -> None:
    z0 = d["err"] / np.hypot(d["nu"], d["nl"])
    z = d["err"] / u
    print(
        f"{label}: {z.size} level-frames; z RMS {np.sqrt(np.mean(z * z)):.2f} "
        f"({np.mean(np.abs(z) <= 1.96):.1%} within 1.96); noise alone {np.sqrt(np.mean(z0 * z0)):.2f} "
        f"({np.mean(np.abs(z0) <= 1.96):.1%})"
    )
    print(f"  {'cost excess':12s} {'n':>5s} {'z RMS':>6s} {'<1.96':>6s}")
    for band, n, rms, within in band_z(d, u):
        print(f"  {band:12s} {n:5d} {rms:6.2f} {within:6.1%}")
    print(f"  {'case':26s} {'n':>5s} {'err RMS':>8s} {'u RMS':>7s} {'z RMS':>6s} {'<1.96':>6s}")
    for name in dict.fromkeys(d["case"]):
        m = d["case"] == name
        zc = z[m]
        print(
            f"  {name:26s} {m.sum():5d} {np.sqrt(np.mean(d['err'][m] ** 2)):8.3f} "
            f"{np.sqrt(np.mean(u[m] ** 2)):7.3f} {np.sqrt(np.mean(zc * zc)):6.2f} "
            f"{np.mean(np.abs(zc) <= 1.96):6.1%}"
        )


def fit_constants(d: dict[str, np.ndarray]) -> tuple[float, float]:
    """Constants making every band's z RMS as near 1 as possible (least squares of log z RMS, bands
    of >= 20 level-frames) on ``d``."""
    grid = itertools.product(np.arange(0.0, 0.205, 0.01), np.arange(0.0, 1.505, 0.05))

    def cost(ab: tuple[float, float]) -> float:
        return sum(np.log(rms) ** 2 for _, _, rms, _ in band_z(d, uncertainty(d, *ab), min_n=20))

    return min(grid, key=cost)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="refit the model constants on the development set")
    args = ap.parse_args()
    dev_cases, held_cases = cases()
    print("development phantoms")
    dev = collect(dev_cases)
    print("held-out phantoms")
    held = collect(held_cases)
    shipped = (MODEL_SD_DEG, MODEL_SD_PER_EXCESS_DEG)
    print(
        f"\nshipped model: {shipped[0]:g} deg + {shipped[1]:g} deg per unit of cost excess "
        f"(cap {MODEL_EXCESS_CAP:g})"
    )
    report("development (fitted on)", dev, dev["u"])
    report("HELD OUT", held, held["u"])
    for label, d in (("development", dev), ("held out", held)):
        zr = d["rom_err"] / d["rom_u"]
        print(
            f"rotation_rom_uncertainty_deg, {label}: {zr.size} levels, "
            f"z RMS {np.sqrt(np.mean(zr * zr)):.2f}, "
            f"{np.mean(np.abs(zr) <= 1.96):.1%} within 1.96"
        )
    pos = (POSITION_MODEL_FRAC, POSITION_MODEL_FRAC_PER_EXCESS)
    print(
        f"\nshipped offset model: corners {pos[0]:g} + {pos[1]:g} per unit of cost excess of the body's "
        "depth, and the lower body's rotation model under the disc height"
    )
    for label, d in (("development (fitted on)", dev), ("HELD OUT", held)):
        offset_report(label, d, *pos)
    for d in (dev, held):
        # the benchmark's translation uncertainty is the measurement's (the same formula and constants)
        np.testing.assert_allclose(translation_u(d, *pos), d["tr_shipped"], rtol=1e-9, atol=1e-12)
    print("(translation uncertainty with the shipped constants = the measurement's, checked)")
    if args.fit:
        a, b = fit_constants(dev)
        print(f"\nfitted on the development set: {a:.2f} deg + {b:.2f} deg per unit of cost excess")
        report("development, fitted constants", dev, uncertainty(dev, a, b))
        report("HELD OUT, fitted constants", held, uncertainty(held, a, b))
        pa, pb = fit_position_constants(dev)
        print(
            f"\noffset model fitted on the development set: {pa:.3f} + {pb:.3f} of the depth per unit excess"
        )
        for label, d in (("development, fitted constants", dev), ("HELD OUT, fitted constants", held)):
            offset_report(label, d, pa, pb)


if __name__ == "__main__":
    main()
