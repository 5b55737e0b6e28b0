"""The PDF report as an Encapsulated PDF instance in the source study."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from dmx.dicom.source import MANUFACTURER, PDF_SERIES_NUMBER, SourceStudy, result_uid

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
PDF_SERIES_DESCRIPTION = "dmx report (PDF)"
DOCUMENT_TITLE = "dmx cervical motion report"

#: Patient and study attributes copied from the source (Patient, General Study, Patient Study modules).
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
)


def build_encapsulated_pdf(
    pdf_path: str | Path, source: SourceStudy, *, measurements_text: str, software_version: str
) -> Any:
    """An Encapsulated PDF ``pydicom.Dataset`` holding ``pdf_path``, in the source study."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    data = Path(pdf_path).read_bytes()
    src = source.first
    sop_uid = result_uid(measurements_text, "pdf")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = src.get("SpecificCharacterSet", "ISO_IR 192") or "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_uid
    for kw in PATIENT_STUDY_KEYWORDS:
        if kw in src:
            setattr(ds, kw, src[kw].value)
    for kw in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
    ):
        if kw not in ds:
            setattr(ds, kw, None)  # type 2: present, empty
    now = datetime.now()
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = result_uid(measurements_text, "pdf series")
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = PDF_SERIES_DESCRIPTION
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "dmx"
    ds.SoftwareVersions = software_version
    ds.ConversionType = "WSD"  # workstation
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = None
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = DOCUMENT_TITLE
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    ref = Dataset()
    ref.ReferencedSOPClassUID = src.SOPClassUID
    ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
    ds.SourceInstanceSequence = [ref]
    return ds
