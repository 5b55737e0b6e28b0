"""Reading DMX studies: DICOM (multi-frame, single-frame series, DICOMDIR) and video."""

from dmx.io.sequence import Sequence, StudyInfo

__all__ = ["Sequence", "StudyInfo"]
