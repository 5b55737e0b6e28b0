"""DICOM files: headers, sanity checks, pixel value transforms and frame-by-frame decoding.

Reading is lenient (files without preamble or file meta, as ACR-NEMA wrote
them, are read with ``force=True`` and a transfer syntax is inferred); every
failure becomes a one-line :class:`dmx.errors.InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import sys
import warnings as _warnings
from collections.abc import Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from dmx.errors import InputError
from dmx.io.sequence import StudyInfo

log = logging.getLogger("dmx.io")

#: Largest frame size (rows or columns) accepted before anything is allocated.
MAX_ROWS_COLS = 8192
#: Largest number of frames accepted.
MAX_FRAMES = 10000
#: Largest decoded study accepted, in bytes.
MAX_BYTES = 4 * 1024**3

_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}


@contextlib.contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's warnings and log records (vendor quirks, decoder tracebacks) for a block.

    Lenient reading tolerates what pydicom complains about; real failures
    surface as one-line :class:`~dmx.errors.InputError` instead.
    """
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@dataclass(frozen=True)
class Header:
    """A DICOM file's header (everything before the pixel data) and what was learnt reading it.

    Attributes
    ----------
    path : Path
        The file.
    dataset : pydicom.dataset.Dataset
        Header elements, with ``file_meta.TransferSyntaxUID`` always set.
    transfer_syntax : pydicom.uid.UID
        The transfer syntax (read, or inferred for files without file meta).
    has_file_meta : bool
        ``False`` for ACR-NEMA style files (no preamble / file meta).
    pixel_value_length : int or None
        Length in bytes of the pixel data value as its element header says
        (``0xFFFFFFFF`` when encapsulated); ``None`` when there is no pixel
        data element or it could not be located (deflated files).
    pixel_bytes_in_file : int or None
        Bytes present in the file from the start of the pixel data value.
    pixel_problem : str or None
        What is wrong with encapsulated pixel data (cut short, damaged), if anything.
    pixel_value_offset : int or None
        File position of the first byte of the pixel data value, when located.
    """

    path: Path
    dataset: Dataset
    transfer_syntax: UID
    has_file_meta: bool
    pixel_value_length: int | None
    pixel_bytes_in_file: int | None
    pixel_problem: str | None = None
    pixel_value_offset: int | None = None

    @property
    def is_dicomdir(self) -> bool:
        sop = self.dataset.file_meta.get("MediaStorageSOPClassUID") if self.dataset.file_meta else None
        return sop == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in self.dataset

    @property
    def is_image(self) -> bool:
        return "Rows" in self.dataset and "Columns" in self.dataset


def _plausible_acr_nema(head: bytes) -> bool:
    """Whether a file without preamble starts like a DICOM data set.

    ACR-NEMA style files start with a group 0008 (or 0002) element, or with a
    group length (0000,0000) or (0008,0000) of 4 bytes.
    """
    if len(head) < 8:
        return False
    for end in "<>":
        group, elem = struct.unpack(f"{end}HH", head[:4])
        if group in (0x0002, 0x0008) and elem < 0x2000:
            return True
        if group == 0 and elem == 0:
            length = struct.unpack(f"{end}L", head[4:8])[0]
            if length == 4 or head[4:6] == b"UL":
                return True
    return False


_IDENTIFYING = ("SOPClassUID", "Rows", "Modality", "StudyInstanceUID", "SeriesInstanceUID", "PatientID")


def read_header(path: str | Path, *, specific_tags: list[Any] | None = None) -> Header:
    """Read a DICOM file's header without its pixel data.

    Parameters
    ----------
    path : str or Path
        The file.
    specific_tags : list, optional
        Only read these elements (faster when grouping many files).

    Returns
    -------
    Header

    Raises
    ------
    dmx.errors.InputError
        The file is missing, is not DICOM, or its header cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a folder, not a file")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(132)
            has_preamble = len(head) == 132 and head[128:132] == b"DICM"
            if not has_preamble and not _plausible_acr_nema(head):
                raise InputError(path, "not a DICOM file (no DICM marker and no DICOM data set at its start)")
            f.seek(0)
            with quiet_pydicom():
                ds = pydicom.dcmread(f, force=True, stop_before_pixels=True, specific_tags=specific_tags)
                _convert_quietly(ds)
            pixel_length = pixel_avail = pixel_problem = None
            ts_in_meta = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta else None
            if ts_in_meta != DeflatedExplicitVRLittleEndian and specific_tags is None:
                pixel_length, pixel_avail, pixel_problem = _pixel_element(f, ds, size)
            pixel_offset = None if pixel_avail is None else size - pixel_avail
    except InputError:
        raise
    except (InvalidDicomError, EOFError, struct.error, ValueError, TypeError, KeyError, OSError) as exc:
        raise InputError(path, f"not a readable DICOM file ({_short(exc)})") from None
    except Exception as exc:  # pydicom raises a variety of errors on damaged headers
        raise InputError(path, f"not a readable DICOM file ({_short(exc)})") from None
    if len(ds) == 0 and not (ds.file_meta and "TransferSyntaxUID" in ds.file_meta):
        raise InputError(path, "not a DICOM file (no data elements)")
    if not has_preamble and not any(k in ds for k in _IDENTIFYING):
        raise InputError(path, "not a DICOM file (no DICM marker and no image or study elements)")
    has_meta = bool(ds.file_meta) and "TransferSyntaxUID" in ds.file_meta
    if has_meta:
        ts = UID(ds.file_meta.TransferSyntaxUID)
    else:
        implicit, little = ds.original_encoding
        if implicit and little:
            ts = ImplicitVRLittleEndian
        elif little:
            ts = ExplicitVRLittleEndian
        elif implicit is False:
            ts = ExplicitVRBigEndian
        else:
            raise InputError(path, "not a readable DICOM file (unknown byte order)")
        if not ds.file_meta:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
        log.debug("%s: no file meta; read as %s", path.name, ts.name)
    return Header(
        path,
        ds,
        ts,
        has_meta and has_preamble,
        pixel_length,
        pixel_avail,
        pixel_problem,
        pixel_value_offset=pixel_offset,
    )


def _convert_quietly(ds: Dataset) -> None:
    """Convert the raw elements now, with pydicom's validation warnings silenced (vendor UIDs, DS ...)."""
    for tag in list(ds.keys()):
        try:
            ds[tag]
        except Exception:  # left raw; readers of that element fall back to its bytes
            pass


def _pixel_element(f: Any, ds: Dataset, size: int) -> tuple[int | None, int | None, str | None]:
    """Length of the pixel data value, bytes present, and a problem with its encapsulation.

    Read at the file position where the header ended. For encapsulated pixel
    data (undefined length) the fragment items are walked (headers only) up
    to the Sequence Delimitation Item, so a file cut short is caught here.
    """
    implicit, little = ds.original_encoding
    if implicit is None:
        return None, None, None
    start = f.tell()
    data = f.read(8)
    if len(data) < 8:
        return None, None, None
    end = "<" if little else ">"
    group, elem = struct.unpack(f"{end}HH", data[:4])
    if (group << 16 | elem) not in _PIXEL_TAGS:
        return None, None, None
    if implicit:
        length = struct.unpack(f"{end}L", data[4:8])[0]
        value_start = start + 8
    else:
        more = f.read(4)
        if len(more) < 4:
            return 0, 0, None
        length = struct.unpack(f"{end}L", more)[0]
        value_start = start + 12
    problem = None
    if length == 0xFFFFFFFF:
        problem = _walk_fragments(f, value_start, size, end)
    return length, max(0, size - value_start), problem


def _walk_fragments(f: Any, pos: int, size: int, end: str) -> str | None:
    """``None`` if the encapsulated items reach their Sequence Delimitation Item inside the file."""
    items = 0
    while True:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return f"pixel data cut short: the file ends after {items} encapsulated item(s), before its end"
        group, elem, length = struct.unpack(f"{end}HHL", head)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return None if items > 1 else "encapsulated pixel data holds no frame"
        if (group, elem) != (0xFFFE, 0xE000):
            tag = f"({group:04X},{elem:04X})"
            return f"encapsulated pixel data damaged (unexpected tag {tag} after {items} items)"
        pos += 8 + length
        if pos > size:
            return f"pixel data cut short: encapsulated item {items} runs past the end of the file"
        items += 1


def _short(exc: BaseException) -> str:
    """A short, single-line account of a library exception (no dumps)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return default
        return int(value)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class Geometry:
    """Image dimensions as the header claims them."""

    frames: int
    rows: int
    columns: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool

    @property
    def frame_bytes(self) -> int:
        return math.ceil(self.rows * self.columns * self.samples * self.bits_allocated / 8)


def geometry(header: Header) -> Geometry:
    """Image dimensions from the header, refused when absent or absurd (before any allocation).

    Raises
    ------
    dmx.errors.InputError
        No pixel data, missing or implausible dimensions.
    """
    ds = header.dataset
    path = header.path
    rows = _int(ds, "Rows")
    cols = _int(ds, "Columns")
    if rows is None or cols is None:
        raise InputError(path, "no image in this DICOM file (no Rows/Columns)")
    frames = _int(ds, "NumberOfFrames", 1)
    frames = 1 if frames is None else frames
    samples = _int(ds, "SamplesPerPixel", 1) or 1
    bits_allocated = _int(ds, "BitsAllocated")
    if bits_allocated is None:
        raise InputError(path, "no BitsAllocated (0028,0100): cannot decode the pixels")
    bits_stored = _int(ds, "BitsStored", bits_allocated) or bits_allocated
    signed = _int(ds, "PixelRepresentation", 0) == 1
    if rows <= 0 or cols <= 0 or frames <= 0:
        raise InputError(path, f"header claims an empty image ({frames} frames of {rows} x {cols})")
    if rows > MAX_ROWS_COLS or cols > MAX_ROWS_COLS:
        raise InputError(
            path, f"header claims {rows} x {cols} pixels per frame (limit {MAX_ROWS_COLS}): refused"
        )
    if frames > MAX_FRAMES:
        raise InputError(path, f"header claims {frames} frames (limit {MAX_FRAMES}): refused")
    if samples not in (1, 3):
        raise InputError(path, f"unsupported SamplesPerPixel {samples}")
    if bits_allocated not in (1, 8, 16, 32, 64) or not 0 < bits_stored <= bits_allocated:
        raise InputError(path, f"unsupported BitsAllocated {bits_allocated} / BitsStored {bits_stored}")
    g = Geometry(frames, rows, cols, samples, bits_allocated, bits_stored, signed)
    check_size(path, frames, rows, cols, bytes_per_px=max(1, bits_allocated // 8))
    return g


def check_size(path: Path, frames: int, rows: int, cols: int, *, bytes_per_px: int) -> None:
    """Refuse a study whose decoded size would be absurd, before allocating it."""
    total = frames * rows * cols * bytes_per_px
    if total > MAX_BYTES:
        raise InputError(
            path,
            f"header claims {frames} frames of {rows} x {cols} pixels "
            f"({total / 1024**3:.1f} GB decoded; limit {MAX_BYTES / 1024**3:.0f} GB): refused",
        )


def check_pixel_data(header: Header, geom: Geometry) -> None:
    """Refuse a file with no pixel data or native pixel data shorter than its header says."""
    path = header.path
    if header.transfer_syntax == DeflatedExplicitVRLittleEndian:
        return  # checked after inflating, in decode_frames
    if header.pixel_value_length is None:
        raise InputError(path, "no pixel data in this DICOM file")
    ts = header.transfer_syntax
    avail = header.pixel_bytes_in_file or 0
    if ts.is_encapsulated or header.pixel_value_length == 0xFFFFFFFF:
        if header.pixel_problem:
            raise InputError(path, header.pixel_problem)
        return
    expected = geom.frame_bytes * geom.frames
    if geom.bits_allocated == 1:
        expected = math.ceil(geom.rows * geom.columns * geom.samples * geom.frames / 8)
    if str(header.dataset.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        expected = expected * 2 // 3  # two chroma samples shared by each pair of pixels
    length = header.pixel_value_length
    if length < expected:
        raise InputError(path, f"pixel data shorter than its header says ({length} of {expected} bytes)")
    if avail < expected:
        raise InputError(
            path, f"file cut short: pixel data shorter than its header says ({avail} of {expected} bytes)"
        )


# --- pixel values -------------------------------------------------------------------------------------


def _smallest_int_dtype(lo: float, hi: float) -> np.dtype:
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _float_or_none(ds: Dataset, keyword: str) -> float | None:
    try:
        value = ds.get(keyword)
        if value is None or value == "":
            return None
        v = float(value)
        return v if math.isfinite(v) else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class ValueMap:
    """How stored values become display values: Modality LUT / rescale, then MONOCHROME1 inversion.

    Exactly one of ``table`` (a lookup over the stored range starting at
    ``stored_min``) or the affine ``slope``/``intercept`` (+ ``invert_sum``:
    output = invert_sum - value when not ``None``) is used.
    """

    dtype: np.dtype
    stored_min: int
    stored_max: int
    table: np.ndarray | None = None
    slope: float = 1.0
    intercept: float = 0.0
    invert_sum: float | None = None
    grey_from_colour: bool = False

    @property
    def identity(self) -> bool:
        return (
            self.table is None
            and self.slope == 1.0
            and self.intercept == 0.0
            and self.invert_sum is None
            and not self.grey_from_colour
        )

    def apply(self, frame: np.ndarray, out: np.ndarray) -> None:
        """Write the display values of one decoded ``frame`` into ``out`` (a view of the result)."""
        if self.grey_from_colour:
            if frame.ndim == 3:
                grey = frame[..., 0] * 0.299 + frame[..., 1] * 0.587 + frame[..., 2] * 0.114
                np.rint(grey, out=grey)
                out[...] = grey
            else:
                out[...] = frame
            return
        if frame.dtype.kind in "ui":
            info = np.iinfo(frame.dtype)
            if info.min < self.stored_min or info.max > self.stored_max:  # bits above BitsStored
                frame = np.clip(frame, self.stored_min, self.stored_max)
        if self.identity:
            out[...] = frame
            return
        if self.table is not None:
            idx = frame.astype(np.int64) - self.stored_min if self.stored_min else frame
            out[...] = self.table[idx]
            return
        v = frame.astype(np.float64) if self.dtype.kind == "f" else frame.astype(np.int64)
        if self.slope != 1.0:
            v = v * (self.slope if self.dtype.kind == "f" else int(self.slope))
        if self.intercept != 0.0:
            v = v + (self.intercept if self.dtype.kind == "f" else int(self.intercept))
        if self.invert_sum is not None:
            v = (self.invert_sum if self.dtype.kind == "f" else int(self.invert_sum)) - v
        out[...] = v


def value_map(header: Header, geom: Geometry, warnings: list[str]) -> ValueMap:
    """The transform from stored to display values for this file, and the output dtype.

    Integer output where the transform keeps integers (uint8 stays uint8,
    12/16-bit stays uint16/int16 ...), float32 only when the Modality LUT or
    rescale gives non-integers. MONOCHROME1 is inverted over the full range
    of the transformed stored values (``min + max - value``), the same for
    every frame.
    """
    from pydicom.pixels import apply_modality_lut

    ds = header.dataset
    path = header.path
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    bs = geom.bits_stored
    if geom.bits_allocated == 1:
        return ValueMap(np.dtype(np.uint8), 0, 1)
    if geom.bits_allocated > 32:
        raise InputError(path, f"unsupported BitsAllocated {geom.bits_allocated}")
    lo, hi = (-(2 ** (bs - 1)), 2 ** (bs - 1) - 1) if geom.signed else (0, 2**bs - 1)
    raw_dtype = np.dtype(f"{'i' if geom.signed else 'u'}{max(1, geom.bits_allocated // 8)}")
    if geom.samples == 3 or pi.startswith(("RGB", "YBR")):
        warnings.append(f"colour image ({pi}) converted to grey")
        return ValueMap(raw_dtype, lo, hi, grey_from_colour=True)
    if pi == "PALETTE COLOR":
        raise InputError(path, "PALETTE COLOR images are not supported (need a greyscale image)")
    if pi not in ("MONOCHROME1", "MONOCHROME2"):
        warnings.append(f"unknown PhotometricInterpretation {pi!r}: read as MONOCHROME2")
    invert = pi == "MONOCHROME1"

    if "ModalityLUTSequence" in ds and bs <= 16:
        try:
            table = apply_modality_lut(np.arange(lo, hi + 1, dtype=np.int64), ds)
        except Exception as exc:
            raise InputError(path, f"unusable Modality LUT Sequence ({_short(exc)})") from None
        tmin, tmax = float(np.min(table)), float(np.max(table))
        integral = bool(np.all(np.equal(np.mod(table, 1), 0)))
        dtype = _smallest_int_dtype(tmin, tmax) if integral else np.dtype(np.float32)
        if invert:
            table = (tmin + tmax) - table.astype(np.float64)
        return ValueMap(dtype, lo, hi, table=np.asarray(table).astype(dtype))

    rescale = ds
    if (
        "RescaleSlope" not in ds
    ):  # enhanced objects: Pixel Value Transformation in the shared functional group
        try:
            rescale = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
        except (AttributeError, IndexError, KeyError, TypeError):
            rescale = ds
    slope = _float_or_none(rescale, "RescaleSlope")
    intercept = _float_or_none(rescale, "RescaleIntercept")
    if slope is None or slope == 0:
        if "RescaleSlope" in rescale:
            warnings.append(f"RescaleSlope (0028,1053) is {rescale.get('RescaleSlope')!r}: invalid, 1 used")
        slope = 1.0
    intercept = 0.0 if intercept is None else intercept
    a, b = slope * lo + intercept, slope * hi + intercept
    omin, omax = min(a, b), max(a, b)
    integral = float(slope).is_integer() and float(intercept).is_integer()
    dtype = _smallest_int_dtype(omin, omax) if integral else np.dtype(np.float32)
    if dtype.itemsize > 4 and integral:
        dtype = np.dtype(np.float32)
    return ValueMap(
        dtype, lo, hi, slope=slope, intercept=intercept, invert_sum=(omin + omax) if invert else None
    )


# --- decoding --------------------------------------------------------------------------------------------


def decode_frames(
    header: Header, geom: Geometry, vmap: ValueMap, out: np.ndarray, *, indices: Seq[int] | None = None
) -> None:
    """Decode the frames of one file, one by one, into ``out`` (``len(indices)`` x rows x columns).

    Frames are read from the file one at a time (the whole pixel data is
    never held twice), except for deflated files which must be inflated
    first.
    """
    from pydicom.pixels import iter_pixels

    path = header.path
    n = geom.frames if indices is None else len(indices)
    if _read_native(header, geom, vmap, out, indices):
        return
    count = 0
    try:
        with quiet_pydicom():
            if header.transfer_syntax == DeflatedExplicitVRLittleEndian:
                ds = pydicom.dcmread(path, force=True)
                if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
                    raise InputError(path, "no pixel data in this DICOM file")
                source: Any = ds
                kwargs: dict[str, Any] = {}
            else:
                source = str(path)
                kwargs = {"transfer_syntax_uid": header.transfer_syntax}
            for i, frame in enumerate(iter_pixels(source, indices=indices, **kwargs)):
                if i >= n:
                    break
                if frame.shape[:2] != (geom.rows, geom.columns):
                    raise InputError(
                        path,
                        f"frame {i} decodes to {frame.shape[:2]}, header says {geom.rows} x {geom.columns}",
                    )
                vmap.apply(frame, out[i])
                count += 1
    except InputError:
        raise
    except MemoryError:
        raise InputError(path, "not enough memory to decode the pixel data") from None
    except Exception as exc:
        raise InputError(path, _decode_problem(header, exc)) from None
    if count < n:
        raise InputError(path, f"pixel data holds {count} frames, header says {n}")


def _read_native(
    header: Header, geom: Geometry, vmap: ValueMap, out: np.ndarray, indices: Seq[int] | None
) -> bool:
    """Read native little-endian greyscale frames straight from the file into ``out``.

    Only when that is exactly what decoding would give: 8- or 16-bit samples whose every value is a
    stored value (no bits above BitsStored to clip), display values equal to stored values, and
    ``out`` of the stored dtype. Saves a copy and an allocation per frame. Returns ``False`` (nothing
    read) when not applicable; a file shorter than its header says is an :class:`InputError`.
    """
    offset = header.pixel_value_offset
    if (
        offset is None
        or header.transfer_syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        or header.pixel_value_length in (None, 0xFFFFFFFF)
        or geom.samples != 1
        or geom.bits_allocated not in (8, 16)
        or not vmap.identity
        or not out.flags.c_contiguous
        or str(header.dataset.get("PhotometricInterpretation", "")).strip().upper() != "MONOCHROME2"
    ):
        return False
    dtype = np.dtype(f"{'i' if geom.signed else 'u'}{geom.bits_allocated // 8}")
    info = np.iinfo(dtype)
    if out.dtype != dtype or info.min < vmap.stored_min or info.max > vmap.stored_max:
        return False
    frame_bytes = geom.rows * geom.columns * dtype.itemsize
    n = geom.frames if indices is None else len(indices)
    if out.shape != (n, geom.rows, geom.columns):
        return False
    buf = out.reshape(-1).view(np.uint8)
    if dtype.itemsize > 1 and sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        return False
    try:
        with open(header.path, "rb", buffering=0) as f:
            if indices is None:
                runs = [(0, 0, n)]  # (first frame in file, first frame in out, count)
            else:
                runs = [(int(k), i, 1) for i, k in enumerate(indices)]
            for first, at, count in runs:
                f.seek(offset + first * frame_bytes)
                view = memoryview(buf)[at * frame_bytes : (at + count) * frame_bytes]
                got = 0
                while got < len(view):
                    r = f.readinto(view[got:])
                    if not r:
                        raise InputError(
                            header.path,
                            f"pixel data holds {(first * frame_bytes + got) // frame_bytes} frames, "
                            f"header says {geom.frames}",
                        )
                    got += r
    except OSError as exc:
        raise InputError(header.path, f"cannot read the pixel data ({_short(exc)})") from None
    return True


def _decode_problem(header: Header, exc: BaseException) -> str:
    text = str(exc)
    ts = header.transfer_syntax
    if "less than expected" in text:
        return "pixel data shorter than its header says"
    if ts.is_compressed:
        return f"cannot decode the {ts.name} pixel data (codestream damaged or unsupported)"
    return f"cannot decode the pixel data ({_short(exc)})"


# --- metadata ----------------------------------------------------------------------------------------


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def study_info(ds: Dataset) -> StudyInfo:
    """Study metadata from a header (raw strings, possibly with patient names: never log them)."""
    return StudyInfo(
        patient_id=_text(ds, "PatientID"),
        patient_name=_text(ds, "PatientName"),
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        study_date=_text(ds, "StudyDate"),
        study_description=_text(ds, "StudyDescription"),
        series_description=_text(ds, "SeriesDescription"),
        modality=_text(ds, "Modality"),
        manufacturer=_text(ds, "Manufacturer"),
        model=_text(ds, "ManufacturerModelName"),
        institution=_text(ds, "InstitutionName"),
    )


def _floats(value: Any) -> list[float] | None:
    if value is None:
        return None
    try:
        items = list(value) if not isinstance(value, str | bytes | int | float) else [value]
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return None


def _positive_scalar(ds: Dataset, keyword: str, tag: str, warnings: list[str]) -> float | None:
    """One finite value > 0 of ``keyword``, or ``None`` (with a warning when present but invalid)."""
    if keyword not in ds:
        return None
    v = _floats(_safe(ds, keyword))
    if v and len(v) == 1 and math.isfinite(v[0]) and v[0] > 0:
        return v[0]
    warnings.append(f"{keyword} {tag} is {_safe(ds, keyword)!r}: must be > 0, ignored")
    return None


def frame_times_ms(ds: Dataset, n_frames: int, warnings: list[str]) -> np.ndarray | None:
    """Per-frame duration in ms from FrameTime, FrameTimeVector or CineRate; ``None`` when unknown.

    FrameTimeVector (0018,1065) holds the increment from the previous frame
    (0 for the first): frame ``i`` lasts until frame ``i + 1`` starts, and the
    last frame is given the last increment.
    """
    pointer = _safe(ds, "FrameIncrementPointer")
    try:
        pointers = (
            []
            if pointer is None
            else [int(pointer)]
            if isinstance(pointer, int)
            else [int(p) for p in pointer]
        )
    except (TypeError, ValueError):
        pointers = []
    ftv = None
    if "FrameTimeVector" in ds:
        ftv = _floats(_safe(ds, "FrameTimeVector"))
        if ftv is None or len(ftv) != n_frames or not all(math.isfinite(v) and v >= 0 for v in ftv):
            warnings.append("FrameTimeVector (0018,1065) does not give one valid time per frame: ignored")
            ftv = None
    ft = _positive_scalar(ds, "FrameTime", "(0018,1063)", warnings)
    cine = _positive_scalar(ds, "CineRate", "(0018,0040)", warnings)
    use_vector = ftv is not None and (0x00181065 in pointers or ft is None)
    if use_vector and n_frames > 1:
        times = np.asarray(ftv[1:] + ftv[-1:], dtype=float)
        if np.all(times > 0):
            return times
        warnings.append("FrameTimeVector (0018,1065) has zero increments after the first frame: ignored")
    if ft is not None:
        return np.full(n_frames, ft, dtype=float)
    if cine is not None:
        return np.full(n_frames, 1000.0 / cine, dtype=float)
    if n_frames > 1:
        warnings.append("no frame time (FrameTime, FrameTimeVector or CineRate): frame times unknown")
    return None


def _safe(ds: Dataset, keyword: str) -> Any:
    try:
        return ds[keyword].value
    except Exception:
        raw = ds.get_item(keyword)
        return None if raw is None else raw.value
