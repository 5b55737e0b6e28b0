"""Tracking of vertebral bodies through the cine."""

from dmx.tracking.smoothing import smooth_tracks
from dmx.tracking.tracker import TRUSTED_QUALITY, track
from dmx.tracking.types import Tracks

__all__ = ["TRUSTED_QUALITY", "Tracks", "smooth_tracks", "track"]
