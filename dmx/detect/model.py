"""The detector's fitted parameters (``models/detector.npz``), read and written as plain arrays."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dmx.errors import ModelFileError

__all__ = ["FEATURES", "FORMAT", "DetectorModel", "ModelFileError", "confidence_inputs", "load_model"]

FORMAT = "dmx.detector/2"
#: Names of the per-vertebra confidence features, in the order of :attr:`DetectorModel.conf_weights`.
FEATURES = (
    "coarse_score",
    "inlier",
    "strength",
    "rms_px",
    "shape_mm",
    "size_ratio",
    "stability_px",
    "is_c2",
)


def confidence_inputs(features: np.ndarray) -> np.ndarray:
    """The logistic's inputs from raw features (:data:`FEATURES`, last axis): scale-like ones as logs.

    Edge strength, residual, shape deviation and stability span orders of magnitude between a
    clear and a doubtful body; their logarithms make one logistic weight fit both ends.
    """
    x = np.array(features, dtype=float)
    i = {name: j for j, name in enumerate(FEATURES)}
    x[..., i["strength"]] = np.log(np.maximum(x[..., i["strength"]], 0.1))
    x[..., i["rms_px"]] = np.log(0.05 + np.minimum(x[..., i["rms_px"]], 99.0))
    x[..., i["shape_mm"]] = np.log(0.05 + np.minimum(x[..., i["shape_mm"]], 99.0))
    x[..., i["stability_px"]] = np.log(0.1 + x[..., i["stability_px"]])
    return x


@dataclass(frozen=True)
class DetectorModel:
    """Fitted detector parameters (see ``models/README.md`` and :mod:`dmx.training.fit`).

    Attributes
    ----------
    res_mm : float
        Canonical resolution of the coarse search (mm per pixel).
    tmpl_body, tmpl_c2 : numpy.ndarray
        Upright mean appearance (facing right) of a C3-C6 body and of C2 with its dens.
    crop_body, crop_c2 : int
        Square template sizes used for matching (canonical pixels).
    c2_offset_mm : float
        Height of the C2 template's centre above the C2 body centre.
    angles : numpy.ndarray
        Tilts searched (deg).
    scale_sweep_mm : numpy.ndarray
        Pixel sizes tried when the calibration is unknown.
    trans_mean, trans_std : numpy.ndarray
        (5, 3) for C2-C3 ... C6-C7: position of the upper body's centre in the lower body's
        frame (u anterior, v superior; mm) and relative tilt (deg).
    mean_shape_mm : numpy.ndarray
        (6, 4, 2) corners of C2..C7 in their own body frame (mm).
    side_offsets_mm : numpy.ndarray
        (2, 4) outward shift from the steepest step to the corner outline, per side
        (superior, posterior, inferior, anterior), for C2 (row 0) and C3-C7 (row 1).
    score_weight : float
        Weight of correlation against the spacing log-likelihood in the chain search.
    conf_mean, conf_scale, conf_weights : numpy.ndarray
        Standardisation and logistic weights (bias last) of the confidence features :data:`FEATURES`
        (as :func:`confidence_inputs` transforms them).
    conf_threshold : float
        Vertebrae below this confidence are left out.
    chain_min_score : float
        Below this chain score no column is reported.
    """

    res_mm: float
    tmpl_body: np.ndarray
    tmpl_c2: np.ndarray
    crop_body: int
    crop_c2: int
    c2_offset_mm: float
    angles: np.ndarray
    scale_sweep_mm: np.ndarray
    trans_mean: np.ndarray
    trans_std: np.ndarray
    mean_shape_mm: np.ndarray
    side_offsets_mm: np.ndarray
    score_weight: float
    conf_mean: np.ndarray
    conf_scale: np.ndarray
    conf_weights: np.ndarray
    conf_threshold: float
    chain_min_score: float

    def save(self, path: str | Path) -> None:
        """Write the parameters as a compressed ``.npz`` (float32 templates)."""
        arrays = {k: np.asarray(v) for k, v in asdict(self).items()}
        arrays["tmpl_body"] = arrays["tmpl_body"].astype(np.float32)
        arrays["tmpl_c2"] = arrays["tmpl_c2"].astype(np.float32)
        np.savez_compressed(path, format=np.array(FORMAT), **arrays)

    def confidence(self, features: np.ndarray) -> float:
        """Logistic confidence in 0..1 from a feature vector ordered as :data:`FEATURES`."""
        z = (confidence_inputs(features) - self.conf_mean) / self.conf_scale
        s = float(z @ self.conf_weights[:-1] + self.conf_weights[-1])
        return float(1.0 / (1.0 + np.exp(-np.clip(s, -50, 50))))


def load_model(path: str | Path) -> DetectorModel:
    """Read ``detector.npz``; raises :class:`ModelFileError` if it is not a usable dmx detector file."""
    rebuild = "rebuild it with: python -m dmx.training.fit --out models/detector.npz"
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:  # not a zip/npy file, unreadable
        raise ModelFileError(path, f"not a readable model file ({exc.__class__.__name__})") from None
    with z:
        if "format" not in z or str(z["format"]) != FORMAT:
            found = str(z["format"]) if "format" in z else "no format tag"
            raise ModelFileError(path, f"not a {FORMAT} model file ({found}); {rebuild}")
        missing = [name for name in DetectorModel.__dataclass_fields__ if name not in z]
        if missing:
            raise ModelFileError(path, f"model file lacks {', '.join(missing)}; {rebuild}")
        kw = {}
        for name, f in DetectorModel.__dataclass_fields__.items():
            a = z[name]
            kw[name] = a.item() if a.ndim == 0 else a
            if f.type in ("int",):
                kw[name] = int(kw[name])
    kw["tmpl_body"] = kw["tmpl_body"].astype(np.float32)
    kw["tmpl_c2"] = kw["tmpl_c2"].astype(np.float32)
    return DetectorModel(**kw)
