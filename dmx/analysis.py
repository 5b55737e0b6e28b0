"""The types every layer shares: one study's :class:`Analysis`, a :class:`Detection`, limits and file names.

This module sits at the bottom of dmx (see ``docs/architecture.md``): the
detector, the pipeline, the report, the batch runner and the command line all
import these names from here, so that no lower layer has to import the
pipeline (the orchestrator) to learn them.

>>> from dmx.analysis import Analysis, LOW_CONFIDENCE
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dmx.anatomy import LandmarkSource, Vertebra
from dmx.landmarks import Landmarks

if TYPE_CHECKING:  # annotations only: the bottom layer does not import io or tracking at run time
    from dmx.io.sequence import Sequence
    from dmx.report.images import EncodedCine
    from dmx.tracking.types import Tracks

#: Detector confidence below which a body is flagged for review (report, review page, summary):
#: the detector's own "low confidence; check its corners" warning. The confidence reported is the
#: calibrated chance that the body's corners are right (:mod:`dmx.detect.calibrate`), a body below
#: one half left out; on held-out phantoms 96-97 % of the bodies at 0.8 or more were right, and C2
#: (its level's rate, about 0.76) is always below it.
LOW_CONFIDENCE = 0.8

#: File names :func:`dmx.pipeline.write_outputs` writes into a study's output folder.
MEASUREMENTS_NAME = "measurements.json"
LANDMARKS_CSV_NAME = "landmarks.csv"
REPORT_NAME = "report.html"
#: The automatic landmarks (``dmx.landmarks/1``) and the page to review them.
AUTO_LANDMARKS_NAME = "landmarks.auto.json"
REVIEW_NAME = "review.html"


@dataclass(frozen=True)
class Detection:
    """Result of automatic corner detection on one frame (:func:`dmx.detect.detect_landmarks`).

    Attributes
    ----------
    landmarks : Landmarks
        Corners (CORNERS order, pixels) of the vertebrae found, on ``landmarks.frame``,
        with ``landmarks.confidence`` filled for each of them.
    missing : dict
        ``{Vertebra: reason}`` for each of C2-C7 not found.
    warnings : tuple of str
        Anything the reviewer should know (low confidence, ambiguous scale ...).
    frames_searched : tuple of int
        Other frames of the cine searched too, where none gave two adjacent bodies
        (:func:`dmx.pipeline.detect_on_sequence`); said in the error line.
    """

    landmarks: Landmarks
    missing: dict[Vertebra, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    frames_searched: tuple[int, ...] = ()


@dataclass(frozen=True)
class Analysis:
    """Everything one study's analysis produced (:func:`dmx.pipeline.analyze`).

    ``measurements`` is the ``measurements.json`` document (spec section 8);
    ``detection`` is what the automatic detector found, when the landmarks were
    found automatically (``None`` when they came from a file). ``report_cine``,
    when set (``analyze(..., encode_cine=True)``), gives the report's cine frames
    encoded while the study was measured (call it once; the report is the same).
    """

    sequence: Sequence
    landmarks: Landmarks
    tracks: Tracks
    measurements: dict[str, Any]
    detection: Detection | None = None
    report_cine: Callable[[], EncodedCine] | None = field(default=None, compare=False, repr=False)

    @property
    def landmarks_source(self) -> str:
        """``"auto"`` (found by the detector) or ``"file"`` (given)."""
        return str(self.measurements.get("landmarks_source", LandmarkSource.FILE.value))
