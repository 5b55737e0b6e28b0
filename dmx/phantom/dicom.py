"""The phantom study as a multi-frame X-Ray Radiofluoroscopic Image (RF) DICOM dataset."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from dmx.phantom.options import Calibration, Facing, FrameTiming, Photometric, TransferSyntax

RF_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.12.2"

#: Transfer Syntax UID of each :class:`TransferSyntax`.
TRANSFER_SYNTAX_UIDS: dict[TransferSyntax, str] = {
    TransferSyntax.EXPLICIT: ExplicitVRLittleEndian,
    TransferSyntax.RLE: RLELossless,
    TransferSyntax.JPEG: JPEGBaseline8Bit,
}


def _ds(value: float) -> str:
    """A DICOM decimal string of at most 16 characters."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8g}"


def build_dataset(
    frames: np.ndarray,
    *,
    seed: int,
    params_digest: str,
    mm_per_px: tuple[float, float],
    frame_time_ms: float,
    photometric: Photometric,
    bits: int,
    calibration: Calibration,
    magnification: float,
    transfer_syntax: TransferSyntax,
    facing: Facing = Facing.RIGHT,
    frame_timing: FrameTiming = FrameTiming.FRAME_TIME,
    jpeg_quality: int = 90,
) -> Dataset:
    """Return a complete RF multi-frame dataset (with file meta) holding ``frames`` as stored.

    UIDs derive from ``seed`` and ``params_digest``, so the same request gives the same file.
    Frame ``k`` of a FrameTimeVector holds the time since the previous frame (0 for the first).
    """
    n, rows, cols = frames.shape

    def uid(kind: str) -> str:
        return generate_uid(entropy_srcs=["dmx-phantom", str(seed), params_digest, kind])

    ts = TRANSFER_SYNTAX_UIDS[TransferSyntax(transfer_syntax)]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RF_IMAGE_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = uid("sop")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "DMX_PHANTOM"

    # SOP common, patient, study, series, equipment
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "SINGLE PLANE"]
    ds.SOPClassUID = RF_IMAGE_STORAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    day = f"2026{1 + seed % 12:02d}{1 + seed % 28:02d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = day
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = f"PH{seed:08d}"[:16]
    ds.Modality = "RF"
    ds.Manufacturer = "dmx phantom"
    ds.ManufacturerModelName = "dmx.phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "DMX CERVICAL FLEXION EXTENSION (SYNTHETIC)"
    ds.SeriesDescription = "LATERAL CINE"
    ds.PatientName = f"PHANTOM^{seed}"
    ds.PatientID = f"PHANTOM-{seed}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic phantom, no patient"
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyID = f"{seed % 10**8}"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["A" if facing == Facing.RIGHT else "P", "F"]
    ds.BodyPartExamined = "CSPINE"

    # X-ray acquisition (synthetic values)
    ds.KVP = "70"
    ds.RadiationSetting = "GR"
    ds.ExposureTime = str(int(round(frame_time_ms)))
    ds.XRayTubeCurrent = "2"
    ds.DistanceSourceToDetector = _ds(1150.0)
    ds.DistanceSourceToPatient = _ds(1150.0 / magnification)

    # calibration
    sr, sc = mm_per_px
    if calibration == Calibration.PIXEL_SPACING:
        ds.PixelSpacing = [_ds(sr), _ds(sc)]
        ds.PixelSpacingCalibrationType = "GEOMETRY"
        ds.PixelSpacingCalibrationDescription = "synthetic phantom: exact spacing at the patient plane"
    elif calibration == Calibration.IMAGER_PIXEL_SPACING_ERMF:
        ds.ImagerPixelSpacing = [_ds(sr * magnification), _ds(sc * magnification)]
        ds.EstimatedRadiographicMagnificationFactor = _ds(magnification)
    elif calibration == Calibration.IMAGER_PIXEL_SPACING:
        ds.ImagerPixelSpacing = [_ds(sr * magnification), _ds(sc * magnification)]

    # cine and multi-frame
    ds.NumberOfFrames = n
    if frame_timing == FrameTiming.FRAME_TIME:
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
        ds.FrameTime = _ds(frame_time_ms)
    else:
        ds.FrameIncrementPointer = Tag(0x0018, 0x1065)
        ds.FrameTimeVector = [_ds(0.0)] + [_ds(frame_time_ms)] * (n - 1)
        if frame_timing == FrameTiming.BOTH:  # common in vendor files, though the standard wants only one
            ds.FrameTime = _ds(frame_time_ms)
    ds.CineRate = int(round(1000.0 / frame_time_ms))
    ds.RecommendedDisplayFrameRate = ds.CineRate
    ds.StartTrim = 1
    ds.StopTrim = n
    ds.PreferredPlaybackSequencing = 0

    # image pixel / X-ray image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = str(photometric)
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    top = (1 << bits) - 1
    ds.WindowCenter = _ds(top / 2)
    ds.WindowWidth = _ds(top + 1)
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.ContrastBolusAgent = ""
    ds.AcquisitionDeviceProcessingDescription = "synthetic"
    ds.LossyImageCompression = "00"

    arr = np.ascontiguousarray(frames)
    if transfer_syntax == TransferSyntax.EXPLICIT:
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OB" if ds.BitsAllocated == 8 else "OW"
    elif transfer_syntax == TransferSyntax.RLE:
        ds.compress(RLELossless, arr, encoding_plugin="pydicom", generate_instance_uid=False)
    else:
        if bits != 8:
            raise ValueError("JPEG baseline needs 8-bit frames")
        encoded = []
        for f in arr:
            ok, buf = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
            if not ok:  # pragma: no cover - cv2 always encodes uint8 greyscale
                raise RuntimeError("JPEG encoding failed")
            encoded.append(buf.tobytes())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.LossyImageCompression = "01"
        ratio = arr.nbytes / max(sum(len(e) for e in encoded), 1)
        ds.LossyImageCompressionRatio = _ds(round(ratio, 2))
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    ds.file_meta.TransferSyntaxUID = ts
    return ds


def params_digest(params: dict) -> str:
    """Short stable digest of the generation parameters (for UIDs)."""
    import json

    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
