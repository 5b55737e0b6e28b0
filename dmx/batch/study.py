"""One study of a batch: analysed into its own output folder, atomically, never raising for a bad study.

:func:`run_study` is a picklable top-level function, so the same function runs
in local worker processes or on a Dask cluster.
"""

from __future__ import annotations

import importlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmx.batch.jobs import Status, StudyJob
from dmx.batch.manifest import ManifestRow, one_line, study_row, utc_now
from dmx.batch.outputs import install, output_record, temporary_folder
from dmx.errors import DmxError, LandmarkError
from dmx.files import write_text_atomic

#: The analysis each worker runs, as ``"module:function"`` (a string, so that it
#: pickles under any start method and on a Dask cluster). See :func:`analyze_study`.
DEFAULT_ANALYZER = "dmx.batch:analyze_study"
#: The same analysis that also writes the results as DICOM (``dmx batch --dicom``; ``dmx listen``).
DICOM_ANALYZER = "dmx.batch:analyze_study_dicom"

#: Schema of the ``batch.json`` record in each study folder.
BATCH_SCHEMA = "dmx.batch-study/1"


def analyze_study(
    study: StudyJob,
    out_dir: Path,
    *,
    mm_per_px: float | None = None,
    dicom: bool = False,
    config: str | Path | None = None,
) -> list[str]:
    """The default per-study analysis: :func:`dmx.pipeline.analyze` then ``write_outputs``.

    A static flexion/extension study (kind ``static F/E, N views``) goes to
    :func:`dmx.static.analyze_static` instead.

    Writes ``measurements.json``, ``report.html`` and ``landmarks.csv`` into
    ``out_dir`` and returns the analysis warnings. A study without a landmark sidecar
    is analysed with automatic landmarks (found once, inside the analysis), which adds
    ``landmarks.auto.json`` and ``review.html``; its ``measurements.json`` says
    ``landmarks_source: "auto"``. With ``dicom`` the results are also written as DICOM
    in the source study under ``out_dir/dicom/`` (:func:`dmx.dicom.write_dicom_outputs`).
    ``config`` is a thresholds TOML file (``dmx analyze --config``): its thresholds, and
    the normative table its ``[normative] file`` names.

    Raises
    ------
    DmxError
        Bad input, or no landmarks: no sidecar and automatic detection not available
        or not usable ("no landmarks: add <sidecar> (<why>)").
    """
    from dmx import pipeline
    from dmx.batch.discovery import is_static_kind

    settings = analysis_settings(config)
    try:
        if is_static_kind(study.kind):
            from dmx.static import analyze_static

            analysis = analyze_static(
                study.paths, landmarks_path=study.landmarks_path, mm_per_px=mm_per_px, **settings
            )
        else:
            analysis = pipeline.analyze(
                study.study_path,
                landmarks_path=study.landmarks_path,
                series=study.series_uid,
                mm_per_px=mm_per_px,
                **settings,
            )
    except (pipeline.DetectionUnavailableError, pipeline.DetectionFailedError) as exc:
        raise _no_landmarks(study, exc) from None
    pipeline.write_outputs(analysis, out_dir, report=True, dicom=dicom)
    from dmx.measure import no_measurement_reason

    if (nothing := no_measurement_reason(analysis.measurements)) is not None:
        raise DmxError(nothing)  # finished, but nothing to read: a failed study
    return [str(w) for w in analysis.measurements.get("warnings", []) or []]


def analyze_study_dicom(
    study: StudyJob, out_dir: Path, *, mm_per_px: float | None = None, config: str | Path | None = None
) -> list[str]:
    """:func:`analyze_study` with the DICOM results (:data:`DICOM_ANALYZER`)."""
    return analyze_study(study, out_dir, mm_per_px=mm_per_px, dicom=True, config=config)


def analysis_settings(config: str | Path | None) -> dict[str, Any]:
    """``thresholds`` and ``normative`` from a thresholds TOML file (empty: the defaults).

    Raises
    ------
    DmxError
        The file (or the normative table it names) is missing or invalid.
    """
    if config is None:
        return {}
    from dmx.measure.config import load_thresholds
    from dmx.normative import load_normative, normative_path_from_config

    return {
        "thresholds": load_thresholds(config),
        "normative": load_normative(normative_path_from_config(config)),
    }


def check_settings(*, mm_per_px: float | None, config: str | Path | None) -> None:
    """Refuse settings no study could be analysed with, once, before any study.

    Raises
    ------
    ParameterError
        ``mm_per_px`` is not a number > 0.
    DmxError
        The thresholds file (or the normative table it names) is missing or invalid.
    """
    if mm_per_px is not None:
        from dmx.io.calibration import resolve_calibration

        resolve_calibration(None, user_mm_per_px=mm_per_px)  # its check of a user's calibration
    analysis_settings(config)


def settings_digest(config: str | Path | None) -> str | None:
    """A checksum of the thresholds file and the normative table it names (``None`` without one)."""
    if config is None:
        return None
    import hashlib

    from dmx.normative import normative_path_from_config

    h = hashlib.sha256(Path(config).read_bytes())
    if (table := normative_path_from_config(config)) is not None:
        h.update(b"\x00" + Path(table).read_bytes())
    return h.hexdigest()[:16]


def result_fingerprint(
    study: StudyJob, analyzer: str, *, mm_per_px: float | None = None, config: str | Path | None = None
) -> str:
    """What makes an earlier result reusable: the study's fingerprint, and the settings that change it.

    The analysis when not the default (so that ``--dicom`` after a run without it redoes
    the studies: their DICOM is missing), a calibration override, and the thresholds
    file's content (with the normative table it names): a run with other settings redoes
    every study instead of finding it "unchanged".
    """
    parts = [study.fingerprint]
    if analyzer != DEFAULT_ANALYZER:
        parts.append(analyzer)
    if mm_per_px is not None:
        parts.append(f"mm_per_px={mm_per_px!r}")
    if (digest := settings_digest(config)) is not None:
        parts.append(f"config={digest}")
    return "+".join(parts)


def _no_landmarks(study: StudyJob, exc: DmxError) -> LandmarkError:
    """The batch reason for a study without a sidecar whose automatic detection gave nothing usable."""
    from dmx.pipeline import DetectionUnavailableError

    if isinstance(exc, DetectionUnavailableError):
        why = f"automatic detection not available: {exc.why}"
    else:
        why = getattr(exc, "problem", str(exc))
    return LandmarkError(None, f"no landmarks: add {study.landmarks_hint} ({why})")


def run_study(
    study: StudyJob,
    out_root: str | Path,
    *,
    force: bool = False,
    mm_per_px: float | None = None,
    analyzer: str = DEFAULT_ANALYZER,
    run_id: str | None = None,
    config: str | Path | None = None,
) -> ManifestRow:
    """Analyse one study into ``out_root/<study.key>/`` atomically; never raises for a bad study.

    Parameters
    ----------
    study : StudyJob
        The study, with its checksum filled in.
    out_root : path
        The batch output folder (shared by every worker).
    force : bool
        Redo the study even when its outputs exist for the same input checksum.
    mm_per_px : float, optional
        Calibration override passed to the analysis.
    analyzer : str
        ``"module:function"`` called as ``function(study, out_dir, mm_per_px=...)``; it
        writes the outputs into ``out_dir`` and returns a list of warnings.
    config : path, optional
        Thresholds TOML file passed to the analysis (:func:`analysis_settings`).
    run_id : str, optional
        Identifies the batch run; recorded in ``batch.json``. Outputs this same run
        already installed (a worker whose result was lost in a crash of its pool
        finished the study) are this run's result: ``ok``, not ``skipped``.

    Returns
    -------
    ManifestRow
        ``ok``, ``skipped`` (unchanged since an earlier run) or ``failed`` with a
        one-line reason. Only ``KeyboardInterrupt`` propagates.
    """
    t0 = time.monotonic()
    out_root = Path(out_root)

    def row(status: Status, reason: str) -> ManifestRow:
        return study_row(study, status, reason, duration_s=time.monotonic() - t0)

    try:
        if not force:
            fingerprint = result_fingerprint(study, analyzer, mm_per_px=mm_per_px, config=config)
            record = output_record(out_root / study.key, fingerprint)
            if record is not None and run_id is not None and record.get("run_id") == run_id:
                return row(Status.OK, "")  # done in this run, by a worker whose result was lost
            if record is not None:
                return row(Status.SKIPPED, f"unchanged since {record.get('finished_at') or 'an earlier run'}")
        warnings = _analyse_into_folder(
            study, out_root, analyzer=analyzer, mm_per_px=mm_per_px, run_id=run_id, config=config
        )
        n = len(warnings)
        return row(Status.OK, f"{n} warning{'s' * (n != 1)} (see measurements.json)" if n else "")
    except KeyboardInterrupt:
        raise
    except DmxError as exc:
        return row(Status.FAILED, one_line(str(exc), study.root))
    except BaseException as exc:  # noqa: BLE001 - a bad study must never stop the batch
        return row(Status.FAILED, one_line(f"internal error ({type(exc).__name__}): {exc}", study.root))


def _analyse_into_folder(
    study: StudyJob,
    out_root: Path,
    *,
    analyzer: str,
    mm_per_px: float | None,
    run_id: str | None,
    config: str | Path | None = None,
) -> list[str]:
    """Run the analysis in a temporary folder, record it and install it as ``out_root/<key>/``.

    Returns the analysis warnings. On any error nothing of the study is left behind.
    """
    tmp = temporary_folder(out_root, study.key)
    try:
        settings = {} if config is None else {"config": config}  # an analyzer without settings works too
        warnings = _resolve(analyzer)(study, tmp, mm_per_px=mm_per_px, **settings) or []
        if not (tmp / "measurements.json").is_file():
            raise DmxError("the analysis wrote no measurements.json")
        fingerprint = result_fingerprint(study, analyzer, mm_per_px=mm_per_px, config=config)
        _write_record(study, tmp, fingerprint=fingerprint, run_id=run_id)
        install(tmp, out_root / study.key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return warnings


def _write_record(study: StudyJob, folder: Path, *, fingerprint: str, run_id: str | None) -> None:
    """``batch.json``: what the outputs in ``folder`` were computed from, for resuming."""
    record = {
        "schema": BATCH_SCHEMA,
        "input": study.label,
        "input_sha256": study.sha256,
        "landmarks_sha256": study.landmarks_sha256,
        "fingerprint": fingerprint,
        "finished_at": utc_now(),
        "run_id": run_id,
        "outputs": sorted(p.name for p in folder.iterdir()),
    }
    write_text_atomic(folder / "batch.json", json.dumps(record, indent=2) + "\n", fsync=True)


def _resolve(analyzer: str) -> Callable[..., Any]:
    module, _, name = analyzer.partition(":")
    return getattr(importlib.import_module(module), name)
