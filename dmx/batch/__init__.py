"""Batch runner: analyse every study found under an inbox folder, resumably, in parallel.

One study in, one output folder out::

    OUT/
      manifest.csv, manifest.jsonl     one row per input found (ok / failed / skipped)
      <study key>/                     16 hex digits, a hash: no names, no UIDs, no dates
        measurements.json, report.html, landmarks.csv   (written by dmx.pipeline; without a
                                         landmark sidecar also landmarks.auto.json, review.html)
        batch.json                     input checksum and finish time (for resuming)

Every study folder appears atomically: the analysis writes into
``OUT/.tmp-<key>-<pid>/`` which is renamed to ``OUT/<key>/`` only when complete,
so a crash or Ctrl-C never leaves half a study; stale temporary folders are
removed at the start of the next run.

The per-study function :func:`run_study` is a picklable top-level function that
never raises for a bad study (it returns a failed :class:`ManifestRow`), so the
same function runs in local worker processes (``concurrent.futures``) or on a
Dask distributed cluster.

The package's modules are its nouns: :mod:`~dmx.batch.jobs` (the job model and
checksums), :mod:`~dmx.batch.discovery` (studies of an inbox as jobs),
:mod:`~dmx.batch.study` (one study into its folder), :mod:`~dmx.batch.outputs`
(atomic study folders, stale clean-up), :mod:`~dmx.batch.manifest`,
:mod:`~dmx.batch.progress`, :mod:`~dmx.batch.lock`, :mod:`~dmx.batch.executors`
(local worker processes, Dask) and :mod:`~dmx.batch.run` (the whole run).
"""

from dmx.batch.discovery import discover_inputs
from dmx.batch.jobs import Status, StudyJob, Unusable, with_checksums
from dmx.batch.manifest import MANIFEST_FIELDS, ManifestRow, ManifestWriter, read_manifest
from dmx.batch.outputs import clean_stale, previous_success
from dmx.batch.progress import Progress, format_duration
from dmx.batch.run import BatchResult, run_batch
from dmx.batch.study import (
    BATCH_SCHEMA,
    DEFAULT_ANALYZER,
    DICOM_ANALYZER,
    analyze_study,
    analyze_study_dicom,
    result_fingerprint,
    run_study,
)
from dmx.io.checksum import sha256_files as input_checksum

__all__ = [
    "BATCH_SCHEMA",
    "DEFAULT_ANALYZER",
    "DICOM_ANALYZER",
    "MANIFEST_FIELDS",
    "BatchResult",
    "ManifestRow",
    "ManifestWriter",
    "Progress",
    "Status",
    "StudyJob",
    "Unusable",
    "analyze_study",
    "analyze_study_dicom",
    "clean_stale",
    "discover_inputs",
    "format_duration",
    "input_checksum",
    "previous_success",
    "read_manifest",
    "result_fingerprint",
    "run_batch",
    "run_study",
    "with_checksums",
]
