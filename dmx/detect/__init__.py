"""Automatic detection of the vertebral-body corners C2-C7 on one frame (issue #7).

Public interface (stable; the implementation behind it may change):

- :class:`Detection` what the detector found: landmarks for the vertebrae it
  found (with per-vertebra confidence in 0..1), and for every vertebra it did
  not find, the reason. A vertebra it cannot find is left out, never guessed.
- :func:`detect_landmarks` runs the detector on one image.
- :func:`find_landmarks` runs it on a loaded :class:`dmx.io.sequence.Sequence`
  (reference frame, calibration as a scale prior).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dmx.anatomy import Vertebra
from dmx.landmarks import Landmarks

#: File name of the fitted detector parameters in the models folder.
MODEL_NAME = "detector.npz"


def model_file(name: str = MODEL_NAME) -> Path:
    """Where a fitted model file is: ``$DMX_MODEL_DIR``, the source tree's ``models/``, or the install.

    A source checkout (or editable install) reads ``<repo>/models``; ``pip install .``
    puts the files in ``<prefix>/share/dmx/models`` (see pyproject's data-files).

    Raises
    ------
    FileNotFoundError
        Naming every place looked in.
    """
    import os
    import site
    import sys

    places = []
    if os.environ.get("DMX_MODEL_DIR"):
        places.append(Path(os.environ["DMX_MODEL_DIR"]))
    places.append(Path(__file__).resolve().parents[2] / "models")
    places += [Path(p) / "share" / "dmx" / "models" for p in (sys.prefix, sys.base_prefix, site.USER_BASE)]
    for place in places:
        if (place / name).is_file():
            return place / name
    raise FileNotFoundError(f"model file {name} not found in: {', '.join(str(p) for p in places)}")


@dataclass(frozen=True)
class Detection:
    """Result of automatic corner detection on one frame.

    Attributes
    ----------
    landmarks : Landmarks
        Corners (CORNERS order, pixels) of the vertebrae found, on ``landmarks.frame``,
        with ``landmarks.confidence`` filled for each of them.
    missing : dict
        ``{Vertebra: reason}`` for each of C2-C7 not found.
    warnings : tuple of str
        Anything the reviewer should know (low confidence, ambiguous scale ...).
    """

    landmarks: Landmarks
    missing: dict[Vertebra, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def detect_landmarks(
    image: np.ndarray,
    *,
    mm_per_px: tuple[float, float] | None = None,
    frame: int = 0,
    model_path: str | Path | None = None,
) -> Detection:
    """Find the corners of C2-C7 on one display-polarity frame (higher = brighter = bone).

    Parameters
    ----------
    image : numpy.ndarray
        ``H x W`` frame in display polarity (as in :attr:`Sequence.frames`).
    mm_per_px : (float, float), optional
        Row and column spacing, used only as a prior on body size; without it the
        detector searches over scales.
    frame : int
        Index recorded as the landmarks' reference frame.
    model_path : path, optional
        Fitted parameters (default :func:`model_file`).
    """
    raise NotImplementedError("automatic landmark detection is being built (issue #7)")


def find_landmarks(sequence, *, frame: int = 0, model_path: str | Path | None = None) -> Detection:
    """Run :func:`detect_landmarks` on ``sequence.frames[frame]`` with the sequence's calibration."""
    return detect_landmarks(
        sequence.frames[frame], mm_per_px=sequence.mm_per_px, frame=frame, model_path=model_path
    )
