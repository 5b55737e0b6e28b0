"""The landmark review page: one self-contained HTML file to check and correct corners by hand.

It shows the reference frame with the four corners of every vertebral body as
draggable handles (mouse, touch, pen; arrow keys nudge the selected handle) and
a button that downloads the corrected ``dmx.landmarks/1`` file, to be passed to
``dmx analyze STUDY --landmarks FILE``.

Confidence in the downloaded file: the detector's confidence is kept for every
body the reviewer left untouched and dropped for every body moved or added by
hand (a human-placed body has no detector confidence). ``dmx analyze`` treats
the file as given by hand (``landmarks_source: "file"``) either way.

>>> from dmx.report.review import write_review
>>> write_review(seq, landmarks, "out/review.html", missing={"C7": "not found"})  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from dmx.analysis import LOW_CONFIDENCE
from dmx.anatomy import BODIES, CORNERS, OPTIONAL_BODIES
from dmx.files import write_text_atomic
from dmx.io.sequence import Sequence
from dmx.landmarks import SCHEMA as LANDMARKS_SCHEMA
from dmx.landmarks import Landmarks
from dmx.report import images
from dmx.report.templating import dicom_date, environment, script_json, template_text

#: Name the corrected file is downloaded as.
DOWNLOAD_NAME = "landmarks.reviewed.json"


def review_payload(
    sequence: Sequence,
    landmarks: Landmarks,
    *,
    missing: Mapping[str, str] | None = None,
    jpeg_quality: int = 92,
) -> dict[str, Any]:
    """The data the review page's script works on (JSON-ready).

    Parameters
    ----------
    sequence : dmx.io.sequence.Sequence
        The study; its frame ``landmarks.frame`` is embedded at full resolution.
    landmarks : Landmarks
        The proposed corners (pixels, CORNERS order) and optional confidence.
    missing : mapping, optional
        ``{"C7": reason}`` for vertebrae not found; the page offers to add them.
    jpeg_quality : int
        JPEG quality of the embedded frame.
    """
    frame = sequence.frames[landmarks.frame]
    window = images.display_window(frame[None])
    uri = images.data_uri(images.jpeg_bytes(images.to_uint8(frame, window), quality=jpeg_quality))
    h, w = frame.shape[:2]

    def conf(v: Any) -> float | None:
        c = landmarks.confidence.get(v)
        return None if c is None or not np.isfinite(c) else round(float(c), 4)

    bodies = [
        {
            "name": v.value,
            "corners": [[round(float(x), 3), round(float(y), 3)] for x, y in landmarks.corners_px[v]],
            "confidence": conf(v),
        }
        for v in landmarks.vertebrae
    ]
    return {
        "schema": LANDMARKS_SCHEMA,
        "frame": int(landmarks.frame),
        "width": int(w),
        "height": int(h),
        "image": uri,
        "bodies": bodies,
        "missing": {str(k): " ".join(str(r).split()) for k, r in (missing or {}).items()},
        "extra": {
            p.value: [round(float(xy[0]), 3), round(float(xy[1]), 3)] for p, xy in landmarks.extra_px.items()
        },
        "order": [v.value for v in BODIES + OPTIONAL_BODIES],
        "corners": [c.value for c in CORNERS],
        "low_confidence": LOW_CONFIDENCE,
        "file_name": DOWNLOAD_NAME,
    }


def render_review(
    sequence: Sequence,
    landmarks: Landmarks,
    *,
    missing: Mapping[str, str] | None = None,
    warnings: Iterable[str] = (),
    automatic: bool = True,
    generated_at: datetime | None = None,
) -> str:
    """The review page as a self-contained HTML document (no external reference; DICOM text escaped).

    Parameters
    ----------
    sequence : dmx.io.sequence.Sequence
        The study.
    landmarks : Landmarks
        The corners to review, on ``landmarks.frame``.
    missing : mapping, optional
        ``{"C7": reason}`` for vertebrae the detector did not find.
    warnings : iterable of str
        Shown above the image (e.g. the detector's warnings).
    automatic : bool
        The corners were found automatically (the page says so).
    generated_at : datetime, optional
        Time printed in the footer (default now, UTC).
    """
    from dmx import __version__

    st = sequence.study
    facts = [
        ("Patient ID", st.patient_id),
        ("Study date", dicom_date(st.study_date)),
        ("Study", st.study_description),
        ("Series", st.series_description),
        ("Frame", str(landmarks.frame)),
    ]
    payload = review_payload(sequence, landmarks, missing=missing)
    low = [
        b["name"]
        for b in payload["bodies"]
        if b["confidence"] is not None and b["confidence"] < LOW_CONFIDENCE
    ]
    context = {
        "title": "DMX landmark review",
        "facts": [(k, v) for k, v in facts if v],
        "automatic": automatic,
        "warnings": list(dict.fromkeys(str(w) for w in warnings)),
        "missing": payload["missing"],
        "none_found": not payload["bodies"],
        "low": low,
        "low_confidence": LOW_CONFIDENCE,
        "file_name": DOWNLOAD_NAME,
        "software": f"dmx {__version__}",
        "generated": (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        "css": Markup(template_text("base.css") + template_text("review.css")),
        "js": Markup(template_text("review.js")),
        "data_json": Markup(script_json(payload)),
    }
    return environment().get_template("review.html").render(**context)


def write_review(
    sequence: Sequence,
    landmarks: Landmarks,
    path: str | Path,
    *,
    missing: Mapping[str, str] | None = None,
    warnings: Iterable[str] = (),
    automatic: bool = True,
) -> Path:
    """Write the review page to ``path`` atomically (see :func:`render_review`); returns ``path``."""
    path = Path(path)
    html = render_review(sequence, landmarks, missing=missing, warnings=warnings, automatic=automatic)
    write_text_atomic(path, html)
    return path
