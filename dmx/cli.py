"""The ``dmx`` command line: a thin layer over the library.

stdout carries data (or ``--json``); stderr carries progress and logs.
Exit codes: 0 all good, 1 finished but some study failed or was flagged as
failed, 2 usage or input error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from dmx.errors import DmxError

app = typer.Typer(
    name="dmx",
    help="Cervical-spine instability measurements from Digital Motion X-ray (DMX).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

log = logging.getLogger("dmx")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"dmx: error: {message}", err=True)
    raise typer.Exit(code)


def _not_built(command: str) -> None:
    _fail(f"'dmx {command}' is not built yet in this version", EXIT_USAGE)


MmPerPx = Annotated[
    float | None,
    typer.Option(
        "--mm-per-px",
        help="Calibration in mm per pixel (isotropic); overrides every DICOM value.",
    ),
]
Series = Annotated[
    str | None,
    typer.Option("--series", help="Series Instance UID to read from a folder holding several."),
]


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="DICOM file, folder of frames, DICOMDIR or video.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    series: Series = None,
    mm_per_px: MmPerPx = None,
) -> None:
    """Describe a study: frames, size, transfer syntax, frame time, calibration, warnings."""
    from dmx.io.describe import describe, format_description

    d = describe(path, series=series, mm_per_px=mm_per_px)
    if json_out:
        import json

        typer.echo(json.dumps(d, indent=2))
    else:
        typer.echo(format_description(d))


@app.command()
def phantom(
    out: Annotated[Path, typer.Argument(help="Output folder for the study and its ground truth.")],
) -> None:
    """Write a synthetic lateral cervical DMX study with known ground truth."""
    _not_built("phantom")


@app.command()
def analyze(
    study: Annotated[Path, typer.Argument(help="DICOM file, folder of frames, DICOMDIR or video.")],
    landmarks: Annotated[
        Path | None, typer.Option("--landmarks", help="Landmark file (dmx.landmarks/1).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("dmx-out"),
    json_out: Annotated[
        bool, typer.Option("--json", help="Print measurements.json on stdout instead of the summary.")
    ] = False,
    series: Series = None,
    mm_per_px: MmPerPx = None,
    neutral_frame: Annotated[
        int | None, typer.Option("--neutral-frame", help="Frame index of the neutral posture.")
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="Override a flag threshold: NAME=VALUE (repeatable)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML file of flag thresholds.")] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write report.pdf (needs Chromium).")] = False,
) -> None:
    """Track C2-C7 through the cine and write measurements.json, landmarks.csv and report.html."""
    import json

    from dmx.measure import format_summary
    from dmx.measure.config import load_thresholds
    from dmx.pipeline import analyze as run_analysis
    from dmx.pipeline import write_outputs

    thresholds = load_thresholds(config, overrides=threshold or None)
    analysis = run_analysis(
        study,
        landmarks_path=landmarks,
        series=series,
        mm_per_px=mm_per_px,
        neutral_frame=neutral_frame,
        thresholds=thresholds,
    )
    written = write_outputs(analysis, out, report=report, pdf=pdf)
    if json_out:
        typer.echo(json.dumps(analysis.measurements, indent=1, allow_nan=False))
    else:
        typer.echo(format_summary(analysis.measurements))
    for path in written.values():
        log.info("wrote %s", path)


@app.command()
def batch(
    inbox: Annotated[Path, typer.Argument(help="Folder of studies, any layout.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("dmx-batch"),
    jobs: Annotated[int, typer.Option("--jobs", help="Parallel worker processes.")] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="Redo studies whose input is unchanged since an earlier run.")
    ] = False,
    executor: Annotated[
        str, typer.Option("--executor", help="'local' (worker processes) or 'dask' (needs dmx\\[dask]).")
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="Dask scheduler address (with --executor dask), e.g. tcp://host:8786."
        ),
    ] = None,
    mm_per_px: MmPerPx = None,
) -> None:
    """Analyse every study under INBOX; resumable; writes a manifest.

    Each study gets its own folder OUT/<key>/ (measurements.json, report.html,
    landmarks.csv); OUT/manifest.csv lists every input with status ok, failed or
    skipped. Exit 0 when no study failed, 1 when any failed.
    """
    from dmx.batch import run_batch

    result = run_batch(
        inbox, out, jobs=jobs, force=force, executor=executor, scheduler=scheduler, mm_per_px=mm_per_px
    )
    raise typer.Exit(result.exit_code)


@app.command()
def aggregate(
    results: Annotated[Path, typer.Argument(help="Batch output folder.")],
    out: Annotated[Path, typer.Option("--out", help="Table to write (.csv or .parquet).")] = Path(
        "dmx-table.csv"
    ),
    pseudonymize: Annotated[
        str | None,
        typer.Option(
            "--pseudonymize",
            metavar="SECRET",
            help="Replace patient ID and UIDs by keyed hashes and shift dates per patient "
            "(@FILE reads the secret from a file).",
        ),
    ] = None,
) -> None:
    """Pool many studies' measurements.json into tables for research.

    Writes a long table (one row per study x level x metric x key frame) and
    TABLE_summary (n, mean, SD, percentiles per level x metric). Exit 1 when
    some measurements.json could not be read (they are named and skipped).
    """
    from dmx.aggregate import aggregate as run_aggregate

    result = run_aggregate(results, out, secret=pseudonymize)
    typer.echo(f"{result.table}\n{result.summary}")
    raise typer.Exit(result.exit_code)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    logging.basicConfig(level=logging.INFO, format="dmx: %(message)s", stream=sys.stderr)
    try:
        app(args=argv, prog_name="dmx")  # standalone: click reports usage errors, exits 2
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return EXIT_OK
        return code if isinstance(code, int) else EXIT_USAGE
    except DmxError as exc:
        typer.echo(f"dmx: error: {exc}", err=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        typer.echo("dmx: interrupted", err=True)
        return 130
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
