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
from dmx.errors import DmxError, ParameterError, UsageError

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


def _phantom_spacing(text: str) -> float | tuple[float, float]:
    """``dmx phantom --mm-per-px``: one number (square pixels, like ``dmx analyze``) or ``ROW,COL``."""
    try:
        vals = tuple(float(t) for t in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) not in (1, 2):
        raise UsageError(f"--mm-per-px must be MM or ROW,COL in mm (e.g. 0.3 or 0.3,0.25), got {text!r}")
    return vals[0] if len(vals) == 1 else (vals[0], vals[1])


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
            help="True spacing at the patient in mm per pixel: one number (square pixels, as in dmx "
            "analyze) or ROW,COL for non-square pixels (default: 153.6 mm over the shorter side).",
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
    anterior_shift_mm: Annotated[
        float,
        typer.Option(
            "--anterior-shift-mm",
            help="Move the patient this far anteriorly in the field of view (-100..100 mm), e.g. 45 "
            "makes C2 leave the image in deep flexion.",
        ),
    ] = 0.0,
    appearance: Annotated[
        str | None,
        typer.Option(
            "--appearance",
            help="Appearance families drawn from the seed, FAMILY[,FAMILY] or all: cortical, posterior, "
            "soft_tissue, occluders, processing, acquisition (acquisition draws --size and --mm-per-px). "
            "Default: the standard look.",
        ),
    ] = None,
) -> None:
    """Write a synthetic lateral cervical DMX study with known ground truth.

    OUT receives study.dcm (multi-frame RF DICOM), truth.json (every corner in
    every frame) and landmarks.json (the reference frame's corners).
    """
    import re
    import time

    from dmx.phantom import make_phantom, parse_level_values, write_phantom

    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", size)
    if not m:
        raise UsageError(f"--size must be N or WxH (e.g. 512 or 640x480), got {size!r}")
    cols = int(m.group(1))
    rows = int(m.group(2)) if m.group(2) else cols
    spacing = None if mm_per_px is None else _phantom_spacing(mm_per_px)
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
        rom_deg=parse_level_values(rom or [], parameter="rom_deg"),
        flexion_fraction=flexion_fraction,
        unstable_mm=parse_level_values(unstable or [], parameter="unstable_mm", default=translation_mm),
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
        anterior_shift_mm=anterior_shift_mm,
        appearance=appearance,
    )
    paths = write_phantom(ph, out)
    rows, cols = ph.frames.shape[1:]
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
    normative: Annotated[
        Path | None,
        typer.Option(
            "--normative",
            help="Normative reference table (dmx.normative/1 JSON) instead of the packaged one; "
            "also [normative] file = ... in the --config TOML.",
        ),
    ] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    pdf: Annotated[bool, typer.Option("--pdf", help="Also write report.pdf (needs Chromium).")] = False,
    dicom: Annotated[
        bool,
        typer.Option(
            "--dicom",
            help="Also write the results as DICOM in the source study under OUT/dicom/: TID 1500 SR, "
            "key-frame images, and with --pdf the report as Encapsulated PDF (needs dmx\\[dicom]).",
        ),
    ] = False,
    smooth_frames: Annotated[
        int | None,
        typer.Option(
            "--smooth-frames",
            help="Window in frames of the temporal smoothing of the tracks (odd, >= 5; local "
            "quadratic; default 5). 0: raw tracks.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "--threads",
            min=1,
            help="Processes registering the bodies of each frame: this one and N-1 forked workers sharing "
            "its frames (default: the CPUs available, at most 4). Same results whatever the number. "
            "--threads is its former name.",
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

    Exit 1 when the analysis finished but no level could be measured (the reason is printed;
    the files are still written).
    """
    import json

    from dmx.files import prepare_output_dir
    from dmx.measure import format_summary, no_measurement_reason
    from dmx.measure.config import load_thresholds
    from dmx.normative import load_normative, normative_path_from_config
    from dmx.pipeline import (
        REVIEW_NAME,
        DetectionFailedError,
        detection_shortfall,
        write_manual_review,
        write_outputs,
    )
    from dmx.pipeline import analyze as run_analysis
    from dmx.static import analyze_static, is_static_request
    from dmx.threads import default_threads

    if dicom:
        from dmx.dicom import require_extra

        require_extra()
    thresholds = load_thresholds(config, overrides=threshold or None)
    postures = {"--neutral": neutral, "--flexion": flexion, "--extension": extension}
    postures_given = any(p is not None for p in postures.values())
    # one folder with --series: the chosen series of it, as before (not a static study)
    one_series = series is not None and len(study) == 1 and not postures_given
    static = not one_series and is_static_request(study, postures_given=postures_given)
    if static:
        cine_only = {"--series": series, "--neutral-frame": neutral_frame, "--smooth-frames": smooth_frames}
        used = [name for name, value in cine_only.items() if value is not None]
        if used:
            _fail(f"{', '.join(used)} do not apply to a static study (separate views)")
    named = study[0] if len(study) == 1 else " ".join(str(p) for p in study)
    created = [p for p in (out, *out.parents) if not p.exists()]
    reference = load_normative(normative or normative_path_from_config(config))
    prepare_output_dir(out)  # before the work: an unusable --out costs one line, not an analysis
    try:
        if static:
            analysis = analyze_static(
                study,
                neutral=neutral,
                flexion=flexion,
                extension=extension,
                landmarks_path=landmarks,
                mm_per_px=mm_per_px,
                thresholds=thresholds,
                normative=reference,
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
                normative=reference,
                processes=default_threads() if workers is None else workers,
                encode_cine=report,  # while the tracks are measured (with workers)
            )
    except DetectionFailedError as exc:
        if exc.sequence is None:
            raise
        # too little found automatically: the page on which the user places the bodies by hand
        page = write_manual_review(exc.sequence, out / REVIEW_NAME, detection=exc.detection)
        found = exc.detection.landmarks.corners_px
        todo = "check the bodies found and place the missing ones" if found else "place the bodies"
        _fail(
            f"{named}: {detection_shortfall(exc.detection)}; {todo} by hand in the review page {page} "
            "(then 'Download corrected landmarks') and run: "
            f"dmx analyze {named} --landmarks <downloaded file>",
            EXIT_FAILED,
        )
    except DmxError:
        for p in created:  # nothing was written: leave no empty folder behind
            try:
                p.rmdir()
            except OSError:
                break
        raise
    written = write_outputs(
        analysis,
        out,
        report=report,
        pdf=pdf,
        dicom=dicom,
        processes=default_threads() if workers is None else workers,
    )
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
    nothing = no_measurement_reason(analysis.measurements)
    if nothing is not None:  # finished, wrote what it could, but there is nothing to read
        _fail(f"{named}: {nothing}", EXIT_FAILED)


@app.command()
def landmarks(
    study: Annotated[Path, typer.Argument(help="DICOM file, folder of frames, DICOMDIR or video.")],
    out: Annotated[Path, typer.Option("--out", help="Landmark file to write (dmx.landmarks/1).")],
    review: Annotated[
        Path | None,
        typer.Option("--review", help="Also write the interactive review page (HTML) to correct them."),
    ] = None,
    frame: Annotated[
        int | None,
        typer.Option(
            "--frame",
            help="Reference frame to place the landmarks on (default: frame 0, or where it gives no two "
            "adjacent bodies or not all of C3-C6, the one of six other frames of the cine giving more).",
        ),
    ] = None,
    series: Series = None,
    mm_per_px: MmPerPx = None,
) -> None:
    """Find the corners of C2-C7 automatically and write them for review.

    Prints one line per vertebra: found with its confidence, or missing and why.

    Correct the file by hand, or in the --review page (drag corners, download).

    Then: dmx analyze STUDY --landmarks FILE

    When no body is found (or detection cannot run) and --review is given, the review page is
    still written, to place every body by hand; the landmark file is not written and the exit
    code is 1.
    """
    from dmx.errors import InputError
    from dmx.files import prepare_output_file
    from dmx.landmarks import write_landmarks
    from dmx.pipeline import (
        DetectionFailedError,
        DetectionUnavailableError,
        adjacent_pairs,
        detection_shortfall,
        detection_summary,
        format_detection,
        propose_landmarks,
        write_manual_review,
    )

    prepare_output_file(out, what="landmark file")
    if review is not None:
        prepare_output_file(review, what="review page")
    try:
        sequence, detection = propose_landmarks(study, series=series, mm_per_px=mm_per_px, frame=frame)
    except (DetectionFailedError, DetectionUnavailableError) as exc:
        unavailable = isinstance(exc, DetectionUnavailableError)
        if exc.sequence is None or (review is None and unavailable):
            raise
        what = (
            f"automatic landmark detection is not available ({exc.why})"
            if unavailable
            else detection_shortfall(exc.detection)
        )
        if review is None:
            _fail(
                f"{study}: {what}; {out} not written; add --review page.html to place them by hand",
                EXIT_FAILED,
            )
        write_manual_review(
            exc.sequence,
            review,
            frame=0 if frame is None else frame,
            why=f"automatic detection not available ({exc.why})"
            if unavailable
            else "automatic detection found no body",
        )
        log.info("wrote %s", review)
        _fail(
            f"{study}: {what}; {out} not written; place each body by hand in the review page "
            f"{review} (then 'Download corrected landmarks') and run: "
            f"dmx analyze {study} --landmarks <downloaded file>",
            EXIT_FAILED,
        )
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
    dicom: Annotated[
        bool,
        typer.Option(
            "--dicom",
            help="Also write each study's results as DICOM in its source study under OUT/<key>/dicom/ "
            "(needs dmx\\[dicom]).",
        ),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="TOML file of flag thresholds for every study (and [normative] file = ...); "
            "a run with another file redoes the studies.",
        ),
    ] = None,
) -> None:
    """Analyse every study under INBOX; resumable; writes a manifest.

    Each study gets its own folder OUT/<key>/ (measurements.json, report.html,
    landmarks.csv); OUT/manifest.csv lists every input with status ok, failed or
    skipped. Exit 0 when no study failed, 1 when any failed.
    """
    from dmx.batch import DICOM_ANALYZER, run_batch

    if dicom:
        from dmx.dicom import require_extra

        require_extra()
    result = run_batch(
        inbox,
        out,
        jobs=jobs,
        force=force,
        executor=executor,
        scheduler=scheduler,
        mm_per_px=mm_per_px,
        analyzer=DICOM_ANALYZER if dicom else None,
        config=config,
    )
    raise typer.Exit(result.exit_code)


def _quiet_pynetdicom() -> None:
    """pynetdicom logs every PDU; dmx logs one line per event itself."""
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)


@app.command()
def send(
    paths: Annotated[list[Path], typer.Argument(help="DICOM files, or folders of them (e.g. OUT/dicom).")],
    to: Annotated[str, typer.Option("--to", help="Destination AET@HOST:PORT (e.g. PACS@10.0.0.5:104).")],
    aet: Annotated[str, typer.Option("--aet", help="Our (calling) AE title.")] = "DMX",
    retries: Annotated[
        int, typer.Option("--retries", help="New associations tried when the peer is down or refuses.")
    ] = 3,
    timeout: Annotated[float, typer.Option("--timeout", help="Network timeout in seconds.")] = 30.0,
) -> None:
    """Store DICOM files on a PACS or viewer (C-STORE); one line per file.

    Exit 0 when every file was stored, 1 when any was not (the peer down or
    refusing, a file that is not DICOM), 2 for a usage error.
    """
    from dmx.dicom import require_extra

    require_extra("dmx send", ("pynetdicom",))
    _quiet_pynetdicom()
    from dmx.net.send import parse_peer, send_files

    peer = parse_peer(to)
    if retries < 0:
        _fail(f"--retries must be 0 or more, got {retries}")
    result = send_files(paths, peer, calling_aet=aet, retries=retries, timeout_s=timeout)
    for f in result.files:
        typer.echo(f"{'sent' if f.ok else 'failed'}\t{f.path}\t{f.reason}")
    if result.failed:
        reasons = sorted({f.reason.removeprefix(f"{peer}: ") for f in result.files if not f.ok})
        typer.echo(
            f"dmx: error: {result.failed} of {len(result.files)} file(s) not stored on {peer}: "
            + "; ".join(reasons[:3]),
            err=True,
        )
    else:
        log.info("%d file(s) stored on %s", result.sent, peer)
    raise typer.Exit(result.exit_code)


@app.command()
def listen(
    aet: Annotated[str, typer.Option("--aet", help="Our AE title (what the PACS/modality calls).")] = "DMX",
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = 11112,
    out: Annotated[Path, typer.Option("--out", help="Folder for the spool and the results.")] = Path(
        "dmx-listen"
    ),
    forward: Annotated[
        str | None,
        typer.Option("--forward", help="Send the DICOM results (SR, key images) to AET@HOST:PORT."),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="Accept associations only from this calling AE title (repeatable)."),
    ] = None,
    quiet_seconds: Annotated[
        float,
        typer.Option(
            "--quiet-seconds", help="A series is complete after this many seconds without a new instance."
        ),
    ] = 10.0,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "0.0.0.0",
    mm_per_px: MmPerPx = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file of flag thresholds for every study (as dmx batch)."),
    ] = None,
) -> None:
    """Receive studies by C-STORE, analyse each series as dmx batch does, and send the results back.

    Every instance is on disk (OUT/spool/) before it is acknowledged; results go to
    OUT/results/ (manifest.csv, one folder per study with dicom/). Runs until SIGTERM
    or Ctrl-C; a restart picks up unfinished work.
    """
    from dmx.dicom import require_extra

    require_extra("dmx listen", ("pynetdicom", "highdicom"))
    _quiet_pynetdicom()
    from dmx.net.listen import Listener, ListenerConfig
    from dmx.net.send import parse_peer

    if not 0 < port < 65536:
        _fail(f"--port must be 1..65535, got {port}")
    if quiet_seconds < 0:
        _fail(f"--quiet-seconds must be 0 or more, got {quiet_seconds}")
    listener = ListenerConfig(
        ae_title=aet,
        port=port,
        out=out,
        forward=None if forward is None else parse_peer(forward, option="--forward"),
        allow=tuple(allow or ()),
        quiet_s=quiet_seconds,
        host=host,
        mm_per_px=mm_per_px,
        thresholds_config=config,
    )
    Listener(listener).serve_forever()


@app.command()
def compare(
    baseline: Annotated[
        Path, typer.Argument(help="Baseline analysis output folder (or its measurements.json).")
    ],
    followup: Annotated[
        Path, typer.Argument(help="Follow-up analysis output folder (or its measurements.json).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder for comparison.json and comparison.html.")
    ] = Path("dmx-compare"),
    force: Annotated[
        bool, typer.Option("--force", help="Compare even when the patient IDs differ or are missing.")
    ] = False,
    mdc: Annotated[
        Path | None,
        typer.Option(
            "--mdc", help="Between-visit variability table (dmx.mdc/1 JSON) instead of the packaged one."
        ),
    ] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="Write comparison.html.")] = True,
    images: Annotated[
        bool,
        typer.Option(
            "--images/--no-images",
            help="Show the key frames re-read from each study's input files (else tracked outlines).",
        ),
    ] = True,
) -> None:
    """Compare one patient's follow-up study with the baseline, level by level, against the MDC.

    The two are put in study-date order; two different patients are refused unless
    --force. Prints the verdict; writes OUT/comparison.json and OUT/comparison.html.
    """
    import json

    from dmx.pipeline import write_comparison

    written = write_comparison(baseline, followup, out, force=force, mdc_path=mdc, html=html, images=images)
    doc = json.loads(written["json"].read_text(encoding="utf-8"))
    for line in doc["verdict"]:
        typer.echo(line)
    for w in doc["warnings"]:
        log.warning("%s", w)
    for path in written.values():
        log.info("wrote %s", path)


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

    Writes a long table (one row per study x level x metric x key frame),
    TABLE_summary (n, mean, SD, percentiles per level x metric) and
    TABLE_longitudinal (one row per patient x level x metric, every visit's date
    and value in date order). Exit 1 when
    some measurements.json could not be read (they are named and skipped).
    """
    from dmx.aggregate import aggregate as run_aggregate
    from dmx.files import prepare_output_file

    prepare_output_file(out, what="table")
    result = run_aggregate(results, out, secret=pseudonymize)
    typer.echo(f"{result.table}\n{result.summary}\n{result.longitudinal}")
    raise typer.Exit(result.exit_code)


#: Library parameters set by an option of another name (else ``--`` + the name with dashes).
OPTION_OF_PARAMETER = {
    "table": "--out",
    "secret": "--pseudonymize",
    "rom_deg": "--rom",
    "unstable_mm": "--unstable",
}


def error_line(exc: DmxError) -> str:
    """The error as the command line says it: a :class:`ParameterError` names the option."""
    if isinstance(exc, ParameterError):
        option = OPTION_OF_PARAMETER.get(exc.parameter, "--" + exc.parameter.replace("_", "-"))
        return f"{option} {exc.problem}"
    return str(exc)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    logging.basicConfig(level=logging.INFO, format="dmx: %(message)s", stream=sys.stderr)
    # click's exceptions, whether typer uses click or its own vendored copy (typer >= 0.2x)
    usage_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
    click_exception = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    no_args = getattr(sys.modules[usage_error.__module__], "NoArgsIsHelpError", ())
    try:
        # not standalone: click's usage errors come here, to be one line like every dmx error
        code = typer.main.get_command(app).main(args=argv, prog_name="dmx", standalone_mode=False)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return EXIT_OK
        return code if isinstance(code, int) else EXIT_USAGE
    except no_args as exc:  # bare "dmx": the help (typer has printed it), exit 2 as before
        if exc.format_message().strip():
            typer.echo(exc.format_message(), err=True)
        return EXIT_USAGE
    except usage_error as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "dmx"
        message = " ".join(exc.format_message().split())
        typer.echo(f"dmx: error: {message} ({where} --help)", err=True)
        return EXIT_USAGE
    except click_exception as exc:
        typer.echo(f"dmx: error: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code
    except DmxError as exc:
        typer.echo(f"dmx: error: {error_line(exc)}", err=True)
        return EXIT_USAGE
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("dmx: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
