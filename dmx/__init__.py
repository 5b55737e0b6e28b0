"""dmx: cervical-spine instability measurements from Digital Motion X-ray."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dmx")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from dmx.errors import DmxError, InputError, LandmarkError, UsageError  # noqa: E402
from dmx.io.sequence import Sequence, StudyInfo  # noqa: E402
from dmx.landmarks import Landmarks, read_landmarks, write_landmarks  # noqa: E402
from dmx.tracking.types import Tracks  # noqa: E402


def load_sequence(path, **kwargs):  # noqa: ANN001, ANN201 - re-exported lazily
    """Load a DMX study; see :func:`dmx.io.load.load_sequence`."""
    from dmx.io.load import load_sequence as _load

    return _load(path, **kwargs)


__all__ = [
    "DmxError",
    "InputError",
    "LandmarkError",
    "Landmarks",
    "Sequence",
    "StudyInfo",
    "Tracks",
    "UsageError",
    "__version__",
    "load_sequence",
    "read_landmarks",
    "write_landmarks",
]
