"""Static flexion/extension studies: two or three separate lateral views instead of a cine.

Many patients arrive with separate lateral radiographs (DX/CR, often one series each) in
neutral, flexion and extension, or with exported still images. :func:`load_static` loads
them as one :class:`StaticStudy`: one :class:`View` per image, each with its own calibration,
and a :class:`~dmx.io.sequence.Sequence` whose frames are the views in posture order,
**neutral = frame 0, flexion = 1, extension = 2** (a view not given is skipped, so a
flexion/extension pair is flexion = 0, extension = 1). Frame times are unknown (``None``).

Views of different sizes are padded (bottom and right, with the view's lowest value) to the
largest, so every view keeps its own pixel coordinates; ``View.shape`` is its true size.

Which image is which posture comes, in this order, from the options (``--neutral``,
``--flexion``, ``--extension``), from the DICOM tags (ViewPosition, SeriesDescription,
ProtocolName, ImageComments, AcquisitionDeviceProcessingDescription: words such as
*flexion*, *flex*, *extension*, *ext*, *neutral*), from the file name, and otherwise from the
image content once the corners are known on every view (:func:`order_by_curve`: the most
flexed C2-C7 Cobb angle is flexion, the largest extension).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import numpy as np

from dmx.anatomy import CalibrationSource
from dmx.errors import InputError, UsageError
from dmx.io.sequence import Sequence


class Posture(StrEnum):
    """The posture of one static view."""

    NEUTRAL = "neutral"
    FLEXION = "flexion"
    EXTENSION = "extension"


#: Frame order of a static study.
POSTURES = (Posture.NEUTRAL, Posture.FLEXION, Posture.EXTENSION)


class PostureSource(StrEnum):
    """How a view's posture was known (``static.views[].posture_source`` in measurements.json)."""

    OPTION = "option"
    TAG = "tag"
    FILE_NAME = "file name"
    CONTENT = "content"


#: A folder with more files than this (landmark and text files aside) is never a static study.
MAX_STATIC_FILES = 8

#: DICOM keywords read for a posture word, in order.
POSTURE_TAGS = (
    "ViewPosition",
    "SeriesDescription",
    "ProtocolName",
    "ImageComments",
    "AcquisitionDeviceProcessingDescription",
    "StudyDescription",
)

_WORDS = {
    Posture.FLEXION: re.compile(r"(?<![a-z])(flex(ion|ed)?|flx|fl)(?![a-z])", re.I),
    Posture.EXTENSION: re.compile(r"(?<![a-z])(ext(ension|ended)?|extn|ex)(?![a-z])", re.I),
    Posture.NEUTRAL: re.compile(r"(?<![a-z])(neutral|neut|ntrl|upright|resting)(?![a-z])", re.I),
}


def posture_in_text(text: str | None) -> Posture | None:
    """The one posture named in ``text`` (``None`` when none, or several, are named)."""
    if not text:
        return None
    words = re.sub(r"[_\-.]+", " ", text)
    found = {p for p, rx in _WORDS.items() if rx.search(words)}
    return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class View:
    """One image of a static study.

    Attributes
    ----------
    sequence : Sequence
        The image as a one-frame sequence, with its own calibration and warnings.
    path : Path
        The file.
    posture : Posture or None
        ``None`` until known (see :func:`order_by_curve`).
    posture_source : PostureSource or None
    acquisition_time : str or None
        AcquisitionTime (or ContentTime) of a DICOM view.
    """

    sequence: Sequence
    path: Path
    posture: Posture | None = None
    posture_source: PostureSource | None = None
    acquisition_time: str | None = None

    @property
    def image(self) -> np.ndarray:
        return self.sequence.frames[0]

    @property
    def shape(self) -> tuple[int, int]:
        return self.sequence.shape


@dataclass(frozen=True)
class StaticStudy:
    """The views of one static study, in frame order once their postures are known."""

    views: tuple[View, ...]
    warnings: tuple[str, ...] = ()

    @property
    def ordered(self) -> bool:
        """Every view has a posture."""
        return all(v.posture is not None for v in self.views)

    def frame_of(self, posture: Posture) -> int | None:
        """Frame index of ``posture`` (``None`` when that view was not given)."""
        for i, v in enumerate(self.views):
            if v.posture is posture:
                return i
        return None

    def sequence(self) -> Sequence:
        """The views as one :class:`Sequence` (frames padded to the largest view, no frame times).

        Calibration is the first view's (the others' are in ``views``); when the views' pixel
        sizes differ a warning says that each view is measured with its own.
        """
        first = self.views[0].sequence
        rows = max(v.shape[0] for v in self.views)
        cols = max(v.shape[1] for v in self.views)
        dtype = np.result_type(*[v.image.dtype for v in self.views])
        frames = np.empty((len(self.views), rows, cols), dtype=dtype)
        for i, v in enumerate(self.views):
            img = v.image
            frames[i] = img.min()
            frames[i, : img.shape[0], : img.shape[1]] = img
        warnings: list[str] = []
        for v in self.views:
            for w in v.sequence.warnings:
                if w not in warnings:
                    warnings.append(w)
        warnings += [w for w in self.warnings if w not in warnings]
        uncalibrated = any(v.sequence.mm_per_px is None for v in self.views)
        mm_per_px = None if uncalibrated else first.mm_per_px
        source = CalibrationSource.NONE if uncalibrated else first.calibration_source
        return Sequence(
            frames=frames,
            mm_per_px=mm_per_px,
            calibration_source=source,
            frame_time_ms=None,
            study=first.study,
            paths=tuple(v.path for v in self.views),
            photometric_interpretation=first.photometric_interpretation,
            transfer_syntax=first.transfer_syntax,
            bits_stored=max((v.sequence.bits_stored or 0) for v in self.views) or None,
            warnings=tuple(warnings),
            kind="static",
        )


def _tag_hint(path: Path) -> tuple[Posture | None, str | None]:
    """Posture named by the DICOM tags of ``path`` (and its AcquisitionTime)."""
    from dmx.io.dicom import read_header

    try:
        ds = read_header(path).dataset
    except InputError:
        return None, None
    time = None
    for key in ("AcquisitionTime", "ContentTime"):
        if ds.get(key):
            time = str(ds.get(key)).strip() or None
            break
    for key in POSTURE_TAGS:
        p = posture_in_text(str(ds.get(key) or ""))
        if p is not None:
            return p, time
    return None, time


def _load_view(path: Path, *, mm_per_px: float | tuple[float, float] | None) -> View:
    from dmx.io.still import is_still_image, read_still

    if is_still_image(path):
        return View(read_still(path, mm_per_px=mm_per_px), path)
    from dmx.io.load import load_sequence

    seq = load_sequence(path, mm_per_px=mm_per_px)
    if seq.n_frames != 1:
        raise InputError(
            path,
            f"holds {seq.n_frames} frames: a static study is single images (analyse a cine on its own)",
        )
    _, time = _tag_hint(path)
    return View(seq, path, acquisition_time=time)


def static_files(path: str | Path) -> list[Path] | None:
    """The files of a folder that holds a static study, or ``None`` when it does not.

    A folder is a static study when it holds two or three single-frame DICOM series (one image
    each) of one patient and date (``dmx.io.discover`` finds them), or two or three still images.
    """
    from dmx.io.discover import discover
    from dmx.io.still import is_still_image

    path = Path(path)
    if not path.is_dir():
        return None
    stills = sorted(p for p in path.iterdir() if p.is_file() and is_still_image(p))
    if 2 <= len(stills) <= 3:
        return stills
    # a cine folder (hundreds of single frames) is not walked twice: a static study is a few files
    n_files = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in (".json", ".txt", ".csv"):
            n_files += 1
            if n_files > MAX_STATIC_FILES:
                return None
    found = discover(path)
    studies = found.studies
    if not 2 <= len(studies) <= 3 or any(len(s.paths) != 1 for s in studies):
        return None
    return static_group([s.paths[0] for s in studies])


def static_group(paths: list[Path]) -> list[Path] | None:
    """``paths`` when they are 2-3 single-frame DICOM images of one patient and date in separate series."""
    from dmx.io.dicom import read_header

    keys, series = set(), set()
    for p in paths:
        try:
            ds = read_header(p).dataset
        except InputError:
            return None
        n = int(ds.get("NumberOfFrames", 1) or 1)
        if n != 1:
            return None
        keys.add((str(ds.get("PatientID", "")).strip(), str(ds.get("StudyDate", "")).strip()))
        series.add(str(ds.get("SeriesInstanceUID", "")).strip() or str(p))
    if len(keys) != 1 or len(series) != len(paths):
        return None
    return sorted(paths)


def load_static(
    paths: list[str | Path] | tuple[str | Path, ...],
    *,
    neutral: str | Path | None = None,
    flexion: str | Path | None = None,
    extension: str | Path | None = None,
    mm_per_px: float | tuple[float, float] | None = None,
) -> StaticStudy:
    """Load the views of a static study and order them by posture where it is known.

    Parameters
    ----------
    paths : sequence of path
        Files (DICOM single images, PNG, JPEG, TIFF), or one folder holding them.
    neutral, flexion, extension : path, optional
        Which file is which posture (added to ``paths`` when not among them).
    mm_per_px : float or (float, float), optional
        User calibration for every view (wins over DICOM values).

    Returns
    -------
    StaticStudy
        Views in frame order (neutral, flexion, extension) when every posture is known;
        otherwise the known ones first in that order, then the others in the order given
        (their posture is found later from the corners: :func:`order_by_curve`).

    Raises
    ------
    dmx.errors.InputError
        A file that cannot be read, a multi-frame file, views of different patients or dates.
    dmx.errors.UsageError
        More than three views, one file given for two postures, or two files for one posture.
    """
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            inner = static_files(p)
            if inner is None:
                raise InputError(p, "does not hold a static study (two or three single lateral images)")
            files += inner
        else:
            files.append(p)
    given = {Posture.NEUTRAL: neutral, Posture.FLEXION: flexion, Posture.EXTENSION: extension}
    by_option: dict[Path, Posture] = {}
    for posture, f in given.items():
        if f is None:
            continue
        f = Path(f)
        key = next((x for x in files if _same(x, f)), None)
        if key is None:
            files.append(f)
            key = f
        if key in by_option:
            raise UsageError(f"{f} is given as both --{by_option[key].value} and --{posture.value}")
        by_option[key] = posture
    unique: list[Path] = []
    for f in files:
        if not any(_same(f, u) for u in unique):
            unique.append(f)
    files = unique
    if not 1 <= len(files) <= 3:
        raise UsageError(
            f"a static study has two or three views (neutral, flexion, extension); {len(files)} given"
        )
    for f in files:
        if not f.exists():
            raise InputError(f, "file not found")
    views = [_load_view(f, mm_per_px=mm_per_px) for f in files]
    identities = {
        (v.sequence.study.patient_id, v.sequence.study.study_date)
        for v in views
        if v.sequence.kind != "still"
    }
    if len(identities) > 1:
        raise InputError(
            files[0], "the views are of different patients or dates (PatientID/StudyDate differ)"
        )
    out: list[View] = []
    for v in views:
        posture, source = by_option.get(v.path), PostureSource.OPTION
        if posture is None and v.sequence.kind != "still":
            posture, source = _tag_hint(v.path)[0], PostureSource.TAG
        if posture is None:
            posture, source = posture_in_text(v.path.stem), PostureSource.FILE_NAME
        out.append(replace(v, posture=posture, posture_source=source if posture else None))
    # a posture claimed twice (by tags or names) is not trusted: those views are ordered by content
    claimed = [v.posture for v in out if v.posture is not None]
    warnings: list[str] = []
    for p in set(claimed):
        if claimed.count(p) > 1:
            holders = [v for v in out if v.posture is p]
            if any(v.posture_source is PostureSource.OPTION for v in holders):
                raise UsageError(f"two files are given as --{p.value}")
            warnings.append(f"{len(holders)} views are labelled {p.value}: they are ordered by their content")
            out = [replace(v, posture=None, posture_source=None) if v.posture is p else v for v in out]
    calibrated = [v for v in out if v.sequence.mm_per_px is not None]
    if calibrated and len(calibrated) < len(out):
        warnings.append(
            "some views carry no calibration: every mm value is null (give --mm-per-px for all of them)"
        )
    elif len({v.sequence.mm_per_px for v in calibrated}) > 1:
        sizes = ", ".join(f"{v.path.name} {v.sequence.mm_per_px[1]:.4g} mm/px" for v in calibrated)
        warnings.append(
            f"the views' pixel sizes differ ({sizes}): each view is measured with its own calibration"
        )
    return order_views(StaticStudy(tuple(out), tuple(warnings)))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def order_views(study: StaticStudy) -> StaticStudy:
    """Views with a posture first, in frame order (neutral, flexion, extension), then the others as given."""
    known = sorted((v for v in study.views if v.posture is not None), key=lambda v: POSTURES.index(v.posture))
    rest = [v for v in study.views if v.posture is None]
    return replace(study, views=tuple(known + rest))


def order_by_curve(study: StaticStudy, curve_deg: list[float | None]) -> tuple[StaticStudy, list[int]]:
    """Give the views without a posture theirs from their C2-C7 curve angle (spec section 6).

    Parameters
    ----------
    study : StaticStudy
    curve_deg : list of float or None
        Per view (in ``study.views`` order), the C2-C7 Cobb angle (or the stand-in sum of
        segmental angles), ``None`` where it cannot be computed.

    Returns
    -------
    (StaticStudy, list of int)
        The study in frame order, and for each new frame the index of its view in ``study.views``.
        The postures still free go to the unlabelled views by rank of the curve angle
        (flexion smallest, then neutral, then extension); with two views and none labelled,
        they are flexion and extension.

    Raises
    ------
    dmx.errors.InputError
        When an unlabelled view's curve angle cannot be computed.
    """
    views = list(study.views)
    free_views = [i for i, v in enumerate(views) if v.posture is None]
    if not free_views:
        return study, list(range(len(views)))
    taken = {v.posture for v in views if v.posture is not None}
    wanted = list(POSTURES) if len(views) == 3 else [Posture.FLEXION, Posture.EXTENSION]
    if len(views) == 2 and Posture.NEUTRAL in taken:
        other = next(v for v in views if v.posture is not None)
        wanted = [Posture.NEUTRAL, Posture.EXTENSION if other.posture is Posture.FLEXION else Posture.FLEXION]
        if other.posture is Posture.NEUTRAL:
            wanted = [Posture.NEUTRAL, Posture.FLEXION, Posture.EXTENSION]
    free = [
        p for p in (Posture.FLEXION, Posture.NEUTRAL, Posture.EXTENSION) if p in wanted and p not in taken
    ]
    for i in free_views:
        if curve_deg[i] is None or not np.isfinite(curve_deg[i]):
            raise InputError(
                views[i].path,
                "cannot tell its posture (no label in its tags or name, and its curve angle cannot be "
                "measured): give it with --neutral, --flexion or --extension",
            )
    if len(free) > len(free_views):  # a neutral view and one unlabelled: flexion or extension by the angle
        i = free_views[0]
        j = next(k for k, v in enumerate(views) if v.posture is not None)
        if curve_deg[j] is None or not np.isfinite(curve_deg[j]):
            raise InputError(
                views[i].path, "cannot tell flexion from extension: give it with --flexion or --extension"
            )
        free = [Posture.FLEXION if float(curve_deg[i]) < float(curve_deg[j]) else Posture.EXTENSION]
    ranked = sorted(free_views, key=lambda i: float(curve_deg[i]))
    order_of_free = sorted(free, key=lambda p: (Posture.FLEXION, Posture.NEUTRAL, Posture.EXTENSION).index(p))
    for i, p in zip(ranked, order_of_free, strict=False):
        views[i] = replace(views[i], posture=p, posture_source=PostureSource.CONTENT)
    index = sorted(range(len(views)), key=lambda i: POSTURES.index(views[i].posture))
    return replace(study, views=tuple(views[i] for i in index)), index
