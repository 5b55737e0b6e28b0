"""The source study of a result: its DICOM headers, and which instance/frame each analysed frame is."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dmx.errors import UsageError

#: Series numbers of the result series (high, so that viewers list them after the acquisition).
SR_SERIES_NUMBER = 9001
KEY_IMAGES_SERIES_NUMBER = 9002
PDF_SERIES_NUMBER = 9003

#: What the result objects say made them.
MANUFACTURER = "dmx"


@dataclass(frozen=True)
class FrameRef:
    """One analysed frame as a DICOM reference: the instance, and its frame number when multi-frame."""

    sop_class_uid: str
    sop_instance_uid: str
    frame_number: int | None  # 1-based, None for a single-frame instance


@dataclass(frozen=True)
class SourceStudy:
    """The headers (no pixels) of the instances a study was read from, in frame order.

    Attributes
    ----------
    datasets : list of pydicom.Dataset
        One per source file; the first carries the patient and study modules copied into
        every result object.
    frames : list of FrameRef
        Frame ``i`` of the analysis (0-based) as an instance and frame number.
    """

    datasets: list[Any]
    frames: list[FrameRef]

    @property
    def first(self) -> Any:
        return self.datasets[0]

    def refs(self, indices: list[int]) -> dict[tuple[str, str], list[int]]:
        """``{(sop_class, sop_instance): [frame numbers]}`` for frame indices (empty list: single-frame)."""
        out: dict[tuple[str, str], list[int]] = {}
        for i in indices:
            r = self.frames[i]
            nums = out.setdefault((r.sop_class_uid, r.sop_instance_uid), [])
            if r.frame_number is not None and r.frame_number not in nums:
                nums.append(r.frame_number)
        return out


def read_source_study(paths: list[Path] | tuple[Path, ...], n_frames: int, *, label: str) -> SourceStudy:
    """Read the headers of the study's files and map each analysed frame to its instance.

    Raises
    ------
    UsageError
        When the study was not read from DICOM (a video), or its files no longer
        carry the identifiers a result object needs.
    """
    import pydicom

    if not paths:
        raise UsageError(f"{label}: --dicom needs a DICOM study (this one has no DICOM source)")
    datasets = []
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
        except (OSError, ValueError, TypeError) as exc:
            raise UsageError(f"{p}: --dicom cannot re-read the source DICOM header ({exc})") from None
        missing = [k for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID") if not ds.get(k)]
        if missing:
            why = "not DICOM (a video?)" if len(missing) == 3 else f"no {', '.join(missing)}"
            raise UsageError(f"{p}: --dicom needs a DICOM source study: {why}")
        datasets.append(ds)
    if len(datasets) == 1:
        ds = datasets[0]
        multi = int(ds.get("NumberOfFrames", 1) or 1) > 1
        frames = [
            FrameRef(str(ds.SOPClassUID), str(ds.SOPInstanceUID), i + 1 if multi else None)
            for i in range(n_frames)
        ]
    elif len(datasets) == n_frames:
        frames = [FrameRef(str(d.SOPClassUID), str(d.SOPInstanceUID), None) for d in datasets]
    else:
        raise UsageError(f"{label}: --dicom cannot map {n_frames} frames onto {len(datasets)} source files")
    return SourceStudy(datasets, frames)


def result_uid(measurements_text: str, what: str) -> str:
    """A UID derived from the measurements and the object (``2.25`` form).

    The same analysis gives the same UIDs, so a result sent twice replaces itself in
    a PACS instead of piling up; a different analysis gives new ones.
    """
    digest = hashlib.sha256(measurements_text.encode("utf-8")).hexdigest()
    key = hashlib.sha256(f"dmx\0{digest}\0{what}".encode()).digest()[:16]
    return f"2.25.{int.from_bytes(key, 'big')}"  # PS3.5 B.2: a 128-bit number under 2.25
