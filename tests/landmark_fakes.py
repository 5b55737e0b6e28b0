"""Stand-ins for the automatic landmark detector (``dmx.detect.find_landmarks``) in tests.

The real detector is replaced with ``monkeypatch.setattr("dmx.detect.find_landmarks", fake)``;
the fake returns the phantom's true corners (or a subset), with chosen confidences,
missing vertebrae and warnings, so the product's code paths run unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dmx.anatomy import Vertebra
from dmx.detect import Detection
from dmx.landmarks import Landmarks, read_landmarks

PHANTOM_FRAMES = 12
PHANTOM_SIZE_PX = 256


def write_phantom_study(out_dir: Path, *, seed: int = 1) -> tuple[Path, Path]:
    """A small phantom study (12 frames, 256 px): ``(study.dcm, landmarks.json)`` paths."""
    from dmx.phantom import make_phantom, write_phantom

    ph = make_phantom(seed=seed, frames=PHANTOM_FRAMES, rows=PHANTOM_SIZE_PX, cols=PHANTOM_SIZE_PX)
    paths = write_phantom(ph, out_dir)
    return paths.get("study", out_dir / "study.dcm"), paths.get("landmarks", out_dir / "landmarks.json")


def fake_detector(
    truth: Landmarks | Path,
    *,
    leave_out: dict[str, str] | None = None,
    confidence: dict[str, float] | None = None,
    warnings: tuple[str, ...] = (),
    calls: list[dict[str, Any]] | None = None,
):
    """A ``find_landmarks(sequence, *, frame=0, model_path=None, mean_of=None, views=True)`` returning
    ``truth``'s corners.

    Parameters
    ----------
    truth : Landmarks or path
        The true corners (the phantom's landmarks.json).
    leave_out : dict
        ``{"C7": reason}``: bodies "not found", reported as missing with that reason.
    confidence : dict
        Confidence per body (default 0.9 for each body found).
    warnings : tuple of str
        The detector's warnings.
    calls : list, optional
        Receives ``{"n_frames", "frame", "model_path", "mean_of"}`` for each call (``mean_of``: whether
        the cine around the frame was offered, :func:`dmx.pipeline.cine_mean`).
    """
    lm = read_landmarks(truth) if isinstance(truth, (str, Path)) else truth
    leave_out = leave_out or {}
    confidence = confidence or {}

    def find_landmarks(sequence, *, frame: int = 0, model_path=None, mean_of=None, views=True) -> Detection:
        if calls is not None:
            calls.append(
                {
                    "n_frames": sequence.n_frames,
                    "frame": frame,
                    "model_path": model_path,
                    "mean_of": mean_of is not None,
                }
            )
        corners = {v: c.copy() for v, c in lm.corners_px.items() if v.value not in leave_out}
        conf = {v: float(confidence.get(v.value, 0.9)) for v in corners}
        return Detection(
            landmarks=Landmarks(frame=frame, corners_px=corners, confidence=conf),
            missing={Vertebra(name): why for name, why in leave_out.items()},
            warnings=tuple(warnings),
        )

    return find_landmarks


def unavailable(exc: BaseException):
    """A ``find_landmarks`` that raises ``exc`` (NotImplementedError, FileNotFoundError ...)."""

    def find_landmarks(sequence, *, frame: int = 0, model_path=None, mean_of=None, views=True) -> Detection:
        raise exc

    return find_landmarks
