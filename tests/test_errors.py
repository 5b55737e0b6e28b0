"""One error hierarchy: every error dmx raises on purpose is a DmxError, and the CLI says it in one line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

import dmx.errors
from dmx.cli import main
from dmx.detect.model import load_model
from dmx.errors import DmxError, InputError, ModelFileError, ParameterError, UsageError
from dmx.measure import MeasurementsSchemaError, validate_measurements

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "lordotic_stable" / "study.dcm"


def test_every_exception_of_dmx_errors_is_a_dmx_error():
    classes = [c for _, c in inspect.getmembers(dmx.errors, inspect.isclass) if issubclass(c, BaseException)]
    assert len(classes) >= 8
    assert all(issubclass(c, DmxError) for c in classes), classes


def test_unusable_model_file_is_an_input_error_naming_the_file(tmp_path):
    bad = tmp_path / "detector.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError) as info:
        load_model(bad)
    assert isinstance(info.value, InputError) and info.value.path == bad
    assert str(info.value) == f"{bad}: not a readable model file (ValueError)"


def test_malformed_measurements_are_a_dmx_error():
    with pytest.raises(MeasurementsSchemaError) as info:
        validate_measurements({"schema": "dmx.measurements/1"})
    assert isinstance(info.value, DmxError)
    assert "<document>: 'software' is a required property" in info.value.problems


def test_parameter_error_names_the_parameter_and_the_cli_the_option(capsys):
    err = ParameterError("mm_per_px", "must be a number > 0, got -1.0")
    assert isinstance(err, UsageError) and str(err) == "mm_per_px must be a number > 0, got -1.0"
    assert main(["info", str(SAMPLE), "--mm-per-px", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "dmx: error: --mm-per-px must be a number > 0, got -1.0"


def test_parameter_set_by_an_option_of_another_name(tmp_path, capsys):
    (tmp_path / "r" / "s").mkdir(parents=True)
    (tmp_path / "r" / "s" / "measurements.json").write_text(json.dumps({}))
    assert main(["aggregate", str(tmp_path / "r"), "--out", str(tmp_path / "t.xlsx")]) == 2
    assert capsys.readouterr().err.strip() == "dmx: error: --out must end in .csv or .parquet, got 't.xlsx'"


def _one_of_each() -> list[DmxError]:
    """One instance of every error class dmx defines, with the attributes its callers read."""
    from dmx.errors import (
        DetectionFailedError,
        DetectionUnavailableError,
        LandmarkError,
        OutputError,
    )

    failed = DetectionFailedError("study.dcm", "no vertebral body found")
    failed.detection = {"missing": ["C2"]}
    return [
        DmxError("plain"),
        InputError("a/b.dcm", "not DICOM"),
        InputError(None, "no study given"),
        LandmarkError("L.json", "C3 has 3 corners"),
        UsageError("--jobs needs a number"),
        OutputError("out", "is a file"),
        ParameterError("mm_per_px", "must be a number > 0, got -1.0"),
        ModelFileError("models/detector.npz", "not a zip file"),
        DetectionUnavailableError("study.dcm", "models/detector.npz missing"),
        failed,
        MeasurementsSchemaError(["levels/0: missing", "frames: missing"]),
    ]


def test_every_error_survives_a_process_boundary():
    """An error raised in a worker process (a batch's, a caller's pool) is pickled to the parent: it must
    arrive as itself, with its message and attributes, not break the pool (ParameterError and the others
    with their own constructor arguments could not be rebuilt from the message alone)."""
    import pickle

    for err in _one_of_each():
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err)
        assert str(back) == str(err)
        assert back.__dict__ == err.__dict__, type(err)


def test_an_error_raised_in_a_worker_process_reaches_the_caller_as_itself():
    from concurrent.futures import ProcessPoolExecutor

    from dmx.phantom import make_phantom

    with ProcessPoolExecutor(1) as pool:
        with pytest.raises(ParameterError) as info:
            pool.submit(make_phantom, frames=3).result()
    assert info.value.parameter == "frames"
