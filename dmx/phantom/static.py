"""Static flexion/extension views cut from a phantom cine, with their exact corners.

:func:`write_static_views` writes chosen frames of a :class:`~dmx.phantom.generator.Phantom`
(by default its flexion and extension key frames) as single-frame DX DICOM files, one series
each, or as PNG images; :func:`static_truth` gives the exact corners of those views, to
measure the truth with the same formulas (spec sections 3-7). Optional per-view
magnification resamples a view (and its corners) about the image centre and sets its
PixelSpacing accordingly, as a second exposure at another distance would.
"""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dmx.anatomy import CORNERS, Vertebra
from dmx.landmarks import Landmarks

#: Digital X-Ray Image Storage - For Presentation.
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def view_frames(phantom, postures: tuple[str, ...] = ("flexion", "extension")) -> dict[str, int]:  # noqa: ANN001
    """Cine frame of each posture (``neutral`` is frame 0's ``key_frames.neutral``)."""
    kf = phantom.truth["key_frames"]
    return {p: int(kf[p]) for p in postures}


def _corners(phantom, frame: int) -> dict[Vertebra, np.ndarray]:  # noqa: ANN001
    tracks = phantom.truth["tracks"]
    out = {}
    for name, per_corner in tracks.items():
        pts = [per_corner[c.value][frame] for c in CORNERS]
        if all(p is not None for p in pts):
            out[Vertebra(name)] = np.array(pts, dtype=float)
    return out


def _magnify(image: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Image resampled by ``scale`` about its centre (same size) and the 2x3 map old -> new pixels."""
    h, w = image.shape
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    m = np.hstack([scale * np.eye(2), (c - scale * c)[:, None]])
    out = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out.astype(image.dtype), m


def static_truth(phantom, frames: dict[str, int], *, magnification: dict[str, float] | None = None):  # noqa: ANN001, ANN201
    """Exact corners of each view ``{posture: {Vertebra: (4, 2)}}`` (after its magnification)."""
    out = {}
    for posture, t in frames.items():
        corners = _corners(phantom, t)
        s = (magnification or {}).get(posture, 1.0)
        if s != 1.0:
            _, m = _magnify(phantom.frames[t], s)
            corners = {v: c @ m[:, :2].T + m[:, 2] for v, c in corners.items()}
        out[posture] = corners
    return out


def write_static_views(
    phantom,  # noqa: ANN001
    out_dir: str | Path,
    *,
    frames: dict[str, int] | None = None,
    fmt: str = "dicom",
    magnification: dict[str, float] | None = None,
    label: bool = True,
) -> dict[str, Path]:
    """Write the phantom's views as single-frame DX files in separate series (or PNG images).

    Parameters
    ----------
    phantom : dmx.phantom.generator.Phantom
    out_dir : path
    frames : dict, optional
        ``{posture: cine frame}``; default the flexion and extension key frames.
    fmt : str
        ``"dicom"`` or ``"png"``.
    magnification : dict, optional
        ``{posture: scale}``: resample that view about its centre; its PixelSpacing is divided by it.
    label : bool
        Name the posture in SeriesDescription (DICOM) or the file name (PNG); otherwise the
        views are ``view1``, ``view2`` ... in the order given.

    Returns
    -------
    dict
        ``{posture: path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = view_frames(phantom) if frames is None else frames
    written: dict[str, Path] = {}
    base = phantom.dataset
    for k, (posture, t) in enumerate(frames.items(), start=1):
        image = np.asarray(phantom.frames[t])
        s = (magnification or {}).get(posture, 1.0)
        if s != 1.0:
            image, _ = _magnify(image, s)
        name = posture if label else f"view{k}"
        if fmt == "png":
            path = out / f"{name}.png"
            shown = image
            if str(base.get("PhotometricInterpretation", "")) == "MONOCHROME1":
                shown = np.iinfo(image.dtype).max - image if image.dtype.kind == "u" else image.max() - image
            cv2.imwrite(str(path), shown)
            written[posture] = path
            continue
        ds = copy.deepcopy(base)
        for kw in (
            "FrameTime",
            "FrameTimeVector",
            "FrameIncrementPointer",
            "CineRate",
            "RecommendedDisplayFrameRate",
        ):
            if kw in ds:
                delattr(ds, kw)
        ds.NumberOfFrames = 1
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = DX_IMAGE_STORAGE
        ds.SOPClassUID = DX_IMAGE_STORAGE
        ds.Modality = "DX"
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(base.SeriesInstanceUID), posture, "series"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(base.SOPInstanceUID), posture, "instance"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = k
        ds.InstanceNumber = 1
        ds.SeriesDescription = f"C-SPINE LAT {posture.upper()}" if label else f"C-SPINE LAT {k}"
        if "PixelSpacing" in ds and s != 1.0:
            ds.PixelSpacing = [f"{float(x) / s:.6g}" for x in ds.PixelSpacing]
        if "ImagerPixelSpacing" in ds and s != 1.0:
            ds.ImagerPixelSpacing = [f"{float(x) / s:.6g}" for x in ds.ImagerPixelSpacing]
        ds.PixelData = np.ascontiguousarray(image).tobytes()
        ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
        ds["PixelData"].is_undefined_length = False
        path = out / f"{name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written[posture] = path
    return written


def landmarks_on(corners: dict[Vertebra, np.ndarray], frame: int) -> Landmarks:
    """A landmark set of ``corners`` on view ``frame``."""
    return Landmarks(frame=frame, corners_px={v: c for v, c in corners.items()})
