"""Tracking of vertebral bodies through the cine, and registration across static views."""

from dmx.tracking.smoothing import smooth_tracks
from dmx.tracking.tracker import TRUSTED_QUALITY, track
from dmx.tracking.types import Tracks
from dmx.tracking.views import register_views, static_tracks

__all__ = ["TRUSTED_QUALITY", "Tracks", "register_views", "smooth_tracks", "static_tracks", "track"]
