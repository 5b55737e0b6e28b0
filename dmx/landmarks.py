"""Landmark files (spec section 1): four corners per vertebral body on the reference frame."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dmx.anatomy import BODIES, CORNERS, OPTIONAL_BODIES, UpperCervicalPoint, Vertebra
from dmx.errors import LandmarkError

SCHEMA = "dmx.landmarks/1"


@dataclass(frozen=True)
class Landmarks:
    """Corners of the vertebral bodies on one frame, in pixels (x = column, y = row).

    Attributes
    ----------
    frame : int
        Index of the frame the points were placed on (the reference frame).
    corners_px : dict
        ``{Vertebra: array (4, 2)}`` in :data:`dmx.anatomy.CORNERS` order.
    extra_px : dict
        Optional upper-cervical points ``{UpperCervicalPoint: array (2,)}``.
    confidence : dict
        Optional per-vertebra confidence in 0..1 (automatic detection).
    """

    frame: int
    corners_px: dict[Vertebra, np.ndarray]
    extra_px: dict[UpperCervicalPoint, np.ndarray] = field(default_factory=dict)
    confidence: dict[Vertebra, float] = field(default_factory=dict)

    @property
    def vertebrae(self) -> tuple[Vertebra, ...]:
        """The vertebrae present, top to bottom."""
        return tuple(v for v in Vertebra if v in self.corners_px)

    def to_json(self) -> dict[str, Any]:
        points: dict[str, Any] = {}
        for v in self.vertebrae:
            c = self.corners_px[v]
            points[v.value] = {k.value: [float(c[i, 0]), float(c[i, 1])] for i, k in enumerate(CORNERS)}
        for p, xy in self.extra_px.items():
            vert, name = p.value.split(".")
            points.setdefault(vert, {})[name] = [float(xy[0]), float(xy[1])]
        out: dict[str, Any] = {"schema": SCHEMA, "frame": int(self.frame), "points": points}
        if self.confidence:
            out["confidence"] = {v.value: float(s) for v, s in self.confidence.items()}
        return out


def _point(path: Path, where: str, value: Any) -> np.ndarray:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in value)
        or not all(math.isfinite(t) for t in value)
    ):
        raise LandmarkError(path, f"{where} must be [x, y] with two finite numbers, got {value!r}")
    return np.array(value, dtype=float)


def parse_landmarks(data: Any, *, path: str | Path = "<landmarks>") -> Landmarks:
    """Validate a landmark document (already parsed from JSON) and return :class:`Landmarks`."""
    path = Path(path)
    if not isinstance(data, dict):
        raise LandmarkError(path, "not a landmark file: expected a JSON object")
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise LandmarkError(path, f"unsupported schema {schema!r} (expected {SCHEMA!r})")
    frame = data.get("frame", 0)
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        raise LandmarkError(path, f"'frame' must be a non-negative integer, got {frame!r}")
    points = data.get("points")
    if not isinstance(points, dict) or not points:
        raise LandmarkError(path, "'points' is missing or empty")
    allowed = {v.value for v in BODIES + OPTIONAL_BODIES} | {"C1"}
    corners: dict[Vertebra, np.ndarray] = {}
    extra: dict[UpperCervicalPoint, np.ndarray] = {}
    corner_names = [c.value for c in CORNERS]
    for name, pts in points.items():
        if name not in allowed:
            raise LandmarkError(path, f"unknown vertebra {name!r} (expected one of C1..C7, T1)")
        if not isinstance(pts, dict):
            raise LandmarkError(path, f"{name}: expected an object of named points")
        for key in pts:
            full = f"{name}.{key}"
            if key not in corner_names and full not in {p.value for p in UpperCervicalPoint}:
                raise LandmarkError(path, f"{name}: unknown point {key!r}")
        for p in UpperCervicalPoint:
            vert, key = p.value.split(".")
            if vert == name and key in pts:
                extra[p] = _point(path, p.value, pts[key])
        present = [c for c in corner_names if c in pts]
        if name == "C1":
            if present:
                raise LandmarkError(path, "C1 has no body corners; only C1.arch_post may be given")
            continue
        if not present and name == "C2" and extra:
            continue
        missing = [c for c in corner_names if c not in pts]
        if missing:
            raise LandmarkError(
                path, f"{name} has {4 - len(missing)} of its 4 corners (missing {', '.join(missing)})"
            )
        corners[Vertebra(name)] = np.stack([_point(path, f"{name}.{c}", pts[c]) for c in corner_names])
    if not corners:
        raise LandmarkError(path, "no vertebral body has its four corners")
    confidence: dict[Vertebra, float] = {}
    for name, s in (data.get("confidence") or {}).items():
        if name in allowed and isinstance(s, (int, float)):
            confidence[Vertebra(name)] = float(s)
    return Landmarks(frame=frame, corners_px=corners, extra_px=extra, confidence=confidence)


def read_landmarks(path: str | Path) -> Landmarks:
    """Read and validate a landmark file (``dmx.landmarks/1``).

    Raises
    ------
    LandmarkError
        If the file cannot be read or is malformed; the message names the file.
    """
    path = Path(path)
    return parse_landmarks(read_landmark_json(path), path=path)


def read_landmark_json(path: str | Path) -> Any:
    """The JSON content of a landmark file, unparsed.

    Raises
    ------
    LandmarkError
        Naming the file: not found, unreadable, or not JSON.
    """
    from dmx.files import read_json

    return read_json(path, what="landmark file", error=LandmarkError)


def write_landmarks(landmarks: Landmarks, path: str | Path) -> None:
    """Write ``landmarks`` as a ``dmx.landmarks/1`` JSON file (atomically: never half a file)."""
    from dmx.files import write_text_atomic

    write_text_atomic(path, json.dumps(landmarks.to_json(), indent=2) + "\n")
