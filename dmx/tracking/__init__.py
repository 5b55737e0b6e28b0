"""Tracking of vertebral bodies through the cine."""

from dmx.tracking.types import Tracks

__all__ = ["Tracks"]
