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

from dmx.anatomy import LandmarkSource
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
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same options and seed, same files.")] = 0,
    frames: Annotated[int, typer.Option("--frames", help="Number of frames.")] = 60,
    fps: Annotated[float, typer.Option("--fps", help="Frame rate (frames per second).")] = 15.0,
    size: Annotated[str, typer.Option("--size", help="Image size: N (square) or WxH, 128..2048.")] = "512",
    mm_per_px: Annotated[
        str | None,
        typer.Option(
            "--mm-per-px",
            help="True spacing at the patient: MM or ROW,COL (default: 153.6 mm over the shorter side).",
        ),
    ] = None,
    curve: Annotated[
        str,
        typer.Option(
            "--curve", help="Neutral curve: lordotic, straight, kyphotic, s_upper_kyphotic, s_lower_kyphotic."
        ),
    ] = "lordotic",
    facing: Annotated[
        str, typer.Option("--facing", help="Patient faces the image's right or left.")
    ] = "right",
    rom: Annotated[
        list[str] | None,
        typer.Option("--rom", help="Range of motion of a joint, LEVEL=DEG (e.g. C4-C5=18); repeatable."),
    ] = None,
    flexion_fraction: Annotated[
        float, typer.Option("--flexion-fraction", help="Share of each range spent in flexion.")
    ] = 0.55,
    unstable: Annotated[
        list[str] | None,
        typer.Option("--unstable", help="Unstable level, LEVEL or LEVEL=MM (extra translation); repeatable."),
    ] = None,
    translation_mm: Annotated[
        float,
        typer.Option("--translation-mm", help="Extra translation (mm) of --unstable levels without =MM."),
    ] = 4.0,
    adi_mm: Annotated[float, typer.Option("--adi-mm", help="Atlanto-dental interval (mm).")] = 1.5,
    sway_mm: Annotated[float, typer.Option("--sway-mm", help="Whole-body drift amplitude (mm).")] = 1.0,
    sway_deg: Annotated[float, typer.Option("--sway-deg", help="Whole-body rotation drift (degrees).")] = 0.8,
    photons: Annotated[
        float, typer.Option("--photons", help="Unattenuated quanta per pixel (0: noise-free).")
    ] = 8000.0,
    blur_px: Annotated[float, typer.Option("--blur-px", help="Detector blur sigma (pixels).")] = 0.8,
    flicker: Annotated[
        float, typer.Option("--flicker", help="Per-frame exposure variation (relative SD).")
    ] = 0.03,
    bits: Annotated[int, typer.Option("--bits", help="Stored bits: 8 or 12.")] = 8,
    photometric: Annotated[
        str, typer.Option("--photometric", help="MONOCHROME2 or MONOCHROME1.")
    ] = "MONOCHROME2",
    calibration: Annotated[
        str,
        typer.Option(
            "--calibration", help="PixelSpacing, ImagerPixelSpacing+ERMF, ImagerPixelSpacing or none."
        ),
    ] = "PixelSpacing",
    magnification: Annotated[
        float, typer.Option("--magnification", help="Geometric magnification for ImagerPixelSpacing/ERMF.")
    ] = 1.15,
    transfer_syntax: Annotated[
        str, typer.Option("--transfer-syntax", help="explicit (VR little endian), rle or jpeg (baseline).")
    ] = "explicit",
    jpeg_quality: Annotated[int, typer.Option("--jpeg-quality", help="JPEG quality 1..100.")] = 90,
    frame_timing: Annotated[
        str, typer.Option("--frame-timing", help="Cine timing tags: FrameTime, FrameTimeVector or both.")
    ] = "FrameTime",
    reference_frame: Annotated[int, typer.Option("--reference-frame", help="Frame of landmarks.json.")] = 0,
    return_to_neutral: Annotated[
        bool, typer.Option("--return/--no-return", help="End the cine back in neutral.")
    ] = True,
    anatomy_sd: Annotated[
        float,
        typer.Option(
            "--anatomy-sd",
            help="Per-patient anatomical variation (relative SD 0..0.2) of body sizes, wedging, "
            "discs and outline shape, drawn from the seed (0: standard anatomy).",
        ),
    ] = 0.0,
) -> None:
    """Write a synthetic lateral cervical DMX study with known ground truth.

    OUT receives study.dcm (multi-frame RF DICOM), truth.json (every corner in
    every frame) and landmarks.json (the reference frame's corners).
    """
    import re
    import time

    from dmx.errors import UsageError
    from dmx.phantom import make_phantom, parse_level_values, write_phantom

    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", size)
    if not m:
        raise UsageError(f"--size must be N or WxH (e.g. 512 or 640x480), got {size!r}")
    cols = int(m.group(1))
    rows = int(m.group(2)) if m.group(2) else cols
    spacing: float | tuple[float, ...] | None = None
    if mm_per_px is not None:
        try:
            vals = tuple(float(t) for t in mm_per_px.split(","))
        except ValueError:
            raise UsageError(f"--mm-per-px must be MM or ROW,COL in mm, got {mm_per_px!r}") from None
        spacing = vals[0] if len(vals) == 1 else vals
    start = time.perf_counter()
    ph = make_phantom(
        seed=seed,
        frames=frames,
        fps=fps,
        rows=rows,
        cols=cols,
        mm_per_px=spacing,
        curve=curve,
        facing=facing,
        rom_deg=parse_level_values(rom or [], option="--rom"),
        flexion_fraction=flexion_fraction,
        unstable_mm=parse_level_values(unstable or [], option="--unstable", default=translation_mm),
        adi_mm=adi_mm,
        sway_mm=sway_mm,
        sway_deg=sway_deg,
        photons=photons,
        blur_px=blur_px,
        flicker=flicker,
        bits=bits,
        photometric=photometric.upper(),
        calibration=calibration,
        magnification=magnification,
        transfer_syntax=transfer_syntax,
        jpeg_quality=jpeg_quality,
        frame_timing=frame_timing,
        reference_frame=reference_frame,
        return_to_neutral=return_to_neutral,
        anatomy_sd=anatomy_sd,
    )
    paths = write_phantom(ph, out)
    log.info("phantom: %d frames %dx%d in %.1f s", frames, cols, rows, time.perf_counter() - start)
    for p in paths.values():
        typer.echo(str(p))


@app.command()
def analyze(
    study: Annotated[
        list[Path],
        typer.Argument(
            help="DICOM file, folder of frames, DICOMDIR, video or still image; or the 2-3 views of a "
            "static flexion/extension study (files, or a folder holding them)."
        ),
    ],
    landmarks: Annotated[
        Path | None,
        typer.Option(
            "--landmarks",
            help="Landmark file (dmx.landmarks/1). Without it the corners of C2-C7 are found "
            "automatically on frame 0: review them (review.html) and re-run with --landmarks.",
        ),
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
    smooth_frames: Annotated[
        int | None,
        typer.Option(
            "--smooth-frames",
            help="Window in frames of the temporal smoothing of the tracks (odd, >= 5; local "
            "quadratic; default 5). 0: raw tracks.",
        ),
    ] = None,
    neutral: Annotated[
        Path | None, typer.Option("--neutral", help="Static study: the neutral view (frame 0).")
    ] = None,
    flexion: Annotated[Path | None, typer.Option("--flexion", help="Static study: the flexion view.")] = None,
    extension: Annotated[
        Path | None, typer.Option("--extension", help="Static study: the extension view.")
    ] = None,
) -> None:
    """Track C2-C7 through the cine and write measurements.json, landmarks.csv and report.html.

    Several views (static flexion/extension radiographs or still images) are one static study:
    neutral = frame 0, flexion = 1, extension = 2 (a view not given is skipped).
    """
    import json

    from dmx.measure import format_summary
    from dmx.measure.config import load_thresholds
    from dmx.pipeline import analyze as run_analysis
    from dmx.pipeline import write_outputs
    from dmx.static import analyze_static, is_static_request

    thresholds = load_thresholds(config, overrides=threshold or None)
    postures = {"--neutral": neutral, "--flexion": flexion, "--extension": extension}
    postures_given = any(p is not None for p in postures.values())
    # one folder with --series: the chosen series of it, as before (not a static study)
    one_series = series is not None and len(study) == 1 and not postures_given
    if not one_series and is_static_request(study, postures_given=postures_given):
        cine_only = {"--series": series, "--neutral-frame": neutral_frame, "--smooth-frames": smooth_frames}
        used = [name for name, value in cine_only.items() if value is not None]
        if used:
            _fail(f"{', '.join(used)} do not apply to a static study (separate views)")
        analysis = analyze_static(
            study,
            neutral=neutral,
            flexion=flexion,
            extension=extension,
            landmarks_path=landmarks,
            mm_per_px=mm_per_px,
            thresholds=thresholds,
        )
    else:
        analysis = run_analysis(
            study[0],
            landmarks_path=landmarks,
            series=series,
            mm_per_px=mm_per_px,
            neutral_frame=neutral_frame,
            thresholds=thresholds,
            smooth_frames=smooth_frames,
        )
    written = write_outputs(analysis, out, report=report, pdf=pdf)
    if json_out:
        typer.echo(json.dumps(analysis.measurements, indent=1, allow_nan=False))
    else:
        typer.echo(format_summary(analysis.measurements))
    for path in written.values():
        log.info("wrote %s", path)
    if analysis.landmarks_source == LandmarkSource.AUTO:
        from dmx.pipeline import format_detection

        log.info("landmarks found automatically: review them")
        for line in format_detection(analysis.measurements["landmarks_detection"]).splitlines():
            log.info("  %s", line)
        where = written.get("review", written.get("landmarks_auto"))
        log.info("correct %s, then re-run with --landmarks <corrected file>", where)


@app.command()
def landmarks(
    study: Annotated[Path, typer.Argument(help="DICOM file, folder of frames, DICOMDIR or video.")],
    out: Annotated[Path, typer.Option("--out", help="Landmark file to write (dmx.landmarks/1).")],
    review: Annotated[
        Path | None,
        typer.Option("--review", help="Also write the interactive review page (HTML) to correct them."),
    ] = None,
    frame: Annotated[int, typer.Option("--frame", help="Reference frame to place the landmarks on.")] = 0,
    series: Series = None,
    mm_per_px: MmPerPx = None,
) -> None:
    """Find the corners of C2-C7 automatically and write them for review.

    Prints one line per vertebra: found with its confidence, or missing and why.

    Correct the file by hand, or in the --review page (drag corners, download).

    Then: dmx analyze STUDY --landmarks FILE
    """
    from dmx.errors import InputError
    from dmx.landmarks import write_landmarks
    from dmx.pipeline import adjacent_pairs, detection_summary, format_detection, propose_landmarks

    sequence, detection = propose_landmarks(study, series=series, mm_per_px=mm_per_px, frame=frame)
    summary = detection_summary(detection)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_landmarks(detection.landmarks, out)
    except OSError as exc:
        raise InputError(out, f"cannot write the landmark file: {exc.strerror or exc}") from None
    log.info("wrote %s", out)
    if review is not None:
        from dmx.report.review import write_review

        try:
            write_review(
                sequence,
                detection.landmarks,
                review,
                missing=summary["missing"],
                warnings=summary["warnings"],
            )
        except OSError as exc:
            raise InputError(review, f"cannot write the review page: {exc.strerror or exc}") from None
        log.info("wrote %s", review)
    typer.echo(format_detection(summary))
    for w in summary["warnings"]:
        log.warning("landmark detection: %s", w)
    if not adjacent_pairs(detection.landmarks):
        log.warning(
            "no two adjacent bodies found: add the missing ones before dmx analyze can measure a level"
        )
    log.info("review them, then: dmx analyze %s --landmarks %s", study, out)


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
