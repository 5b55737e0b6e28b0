"""The job model: one study found in the inbox, what the batch knows about it, its outcome."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from dmx.anatomy import LandmarkSource
from dmx.io.checksum import sha256_files


class Status(StrEnum):
    """Outcome of one input in the manifest."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class StudyJob:
    """One study found in the inbox: what the analysis reads and where its output goes.

    Attributes
    ----------
    key : str
        Stable, non-identifying id (16 hex digits): the output folder name.
    label : str
        The study's path relative to the inbox (POSIX form); what the manifest and logs show.
    kind : str
        ``"multiframe"``, ``"dicom-series"``, ``"dicomdir"`` or ``"video"`` (as
        :class:`dmx.io.discover.InputKind`).
    study_path : Path
        What :func:`dmx.pipeline.analyze` reads: a file, or the folder of a series.
    paths : tuple of Path
        Every input file of the study, in frame order.
    root : Path
        The inbox (used to shorten paths in messages).
    series_uid : str or None
        Series to read when ``study_path`` is a folder; passed to the analysis, never logged.
    landmarks_path : Path or None
        The sidecar landmark file, when there is one.
    landmarks_hint : str
        Where a landmark file would be picked up (for the "no landmarks" reason).
    sha256 : str
        SHA-256 over the study's files in order (:func:`dmx.io.checksum.sha256_files`, the
        same as ``measurements.json`` ``input.sha256``); filled in by :func:`with_checksums`.
    landmarks_sha256 : str
        SHA-256 of the landmark sidecar ("" without one); filled in by :func:`with_checksums`.
    detector_sha256 : str
        SHA-256 of the detector's model file for a study without a sidecar ("" otherwise);
        filled in by :func:`with_checksums`.
    """

    key: str
    label: str
    kind: str
    study_path: Path
    paths: tuple[Path, ...]
    root: Path
    series_uid: str | None = None
    landmarks_path: Path | None = None
    landmarks_hint: str = ""
    sha256: str = ""
    landmarks_sha256: str = ""
    detector_sha256: str = ""

    @property
    def landmarks_source(self) -> str:
        """``"file"`` (a sidecar) or ``"auto"`` (found automatically), as in measurements.json."""
        return (LandmarkSource.FILE if self.landmarks_path is not None else LandmarkSource.AUTO).value

    @property
    def fingerprint(self) -> str:
        """What decides "unchanged" and "duplicate": the images and the landmarks.

        Without a landmark file the landmarks come from the detector, so its model
        file stands in for them: a new model re-analyses those studies.
        """
        if self.landmarks_path is None:
            return f"{self.sha256}+auto:{self.detector_sha256}"
        return f"{self.sha256}+{self.landmarks_sha256}"


@dataclass(frozen=True)
class Unusable:
    """An input file that is not a study (``skipped``) or cannot be read at all (``failed``)."""

    path: Path
    label: str
    reason: str
    status: Status = Status.SKIPPED


def with_checksums(studies: list[StudyJob], *, jobs: int) -> list[StudyJob]:
    """``studies`` with their input, landmark and (without a sidecar) detector checksums filled in.

    The files are read by ``jobs`` threads at a time.
    """
    detector = detector_sha256() if any(s.landmarks_path is None for s in studies) else ""

    def one(s: StudyJob) -> StudyJob:
        lm = sha256_files([s.landmarks_path]) if s.landmarks_path is not None else ""
        det = detector if s.landmarks_path is None else ""
        return replace(s, sha256=sha256_files(s.paths), landmarks_sha256=lm, detector_sha256=det)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, studies))


def detector_sha256() -> str:
    """Checksum of the detector's model files ("" when there is none): ``detector.npz``, and the
    learned network ``heatmap.onnx`` when it is there (it checks the template detector's levels and
    is the heatmap detector), so a new file of either re-analyses the studies without landmarks."""
    from dmx.detect import model_file
    from dmx.detect.heatmap import NET_NAME

    try:
        paths = [model_file()]
    except FileNotFoundError:
        return ""
    if paths[0].with_name(NET_NAME).is_file():  # read from beside the model (dmx.detect.detect_landmarks)
        paths.append(paths[0].with_name(NET_NAME))
    try:
        return sha256_files(paths)
    except OSError:
        return ""


def unusable_sha256(path: Path) -> str:
    """Checksum of a file that is not a study, for its manifest row ("" when it cannot be read)."""
    try:
        return sha256_files([path])
    except OSError:
        return ""
