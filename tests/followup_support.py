"""Studies of one patient at two visits, for the normative, comparison and aggregate tests.

Two phantoms (different seeds, so different noise) made to be the same patient: the
follow-up file is given the baseline's PatientID and name and a later StudyDate.
"""

from __future__ import annotations

from pathlib import Path

import pydicom

from dmx.phantom import make_phantom, write_phantom
from dmx.pipeline import analyze, write_outputs

#: Extra translation (phantom ``--unstable``) that makes the tracked C4-C5 translation about
#: 5.3 mm (baseline) and 3.0 mm (follow-up): the phantom's own C4-C5 translation is 2.05 mm.
BASELINE_EXTRA_MM = 3.25
FOLLOWUP_EXTRA_MM = 0.95
PATIENT_ID = "FU-0001"
PATIENT_NAME = "Followup^Patient"


def make_visit(
    folder: Path,
    *,
    seed: int,
    extra_mm: float,
    study_date: str,
    patient_id: str = PATIENT_ID,
    report: bool = False,
) -> Path:
    """Write a phantom study of the patient at ``folder/input`` and its analysis at ``folder/out``."""
    ph = make_phantom(seed=seed, frames=40, unstable_mm={"C4-C5": extra_mm})
    paths = write_phantom(ph, folder / "input")
    ds = pydicom.dcmread(paths["study"])
    ds.PatientID = patient_id
    ds.PatientName = PATIENT_NAME
    ds.StudyDate = study_date
    ds.save_as(paths["study"])
    analysis = analyze(paths["study"], landmarks_path=paths["landmarks"])
    write_outputs(analysis, folder / "out", report=report)
    return folder / "out"
