"""Batch throughput: studies per hour with --jobs 1 and --jobs 2.

    PYTHONPATH=. python benchmarks/batch.py                # phantom studies, real pipeline
    PYTHONPATH=. python benchmarks/batch.py --fake 0.5     # runner only: each study sleeps 0.5 s

With the real pipeline it needs ``dmx phantom`` and ``dmx.pipeline``; it makes
``--studies`` distinct copies of one phantom study (new UIDs, so they are not
duplicates) and runs ``dmx batch`` on them. ``--fake SECONDS`` measures the
runner itself (process pool, checksums, atomic folders, manifest) with a
stand-in analysis that decodes the pixels and sleeps.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # so that worker processes can import this file's fake analysis by name


def fake_analyze(study, out_dir, *, mm_per_px=None):  # noqa: ANN001, ANN201 - the runner's analyzer protocol
    """Stand-in analysis: decode every frame, sleep DMX_BENCH_SLEEP seconds, write the three outputs."""
    import pydicom

    for p in study.paths:
        if study.kind != "video":
            pydicom.dcmread(p).pixel_array  # noqa: B018 - decode cost is part of the work
    time.sleep(float(os.environ.get("DMX_BENCH_SLEEP", "0.5")))
    (out_dir / "measurements.json").write_text(json.dumps({"schema": "dmx.measurements/1"}))
    (out_dir / "report.html").write_text("<html></html>")
    (out_dir / "landmarks.csv").write_text("frame,vertebra,corner,x_px,y_px,quality\n")
    return []


def make_inbox(inbox: Path, n: int, *, fake: bool, frames: int = 60) -> None:
    """``n`` distinct studies: copies of one phantom (or a small synthetic cine) with new UIDs."""
    import pydicom
    from pydicom.uid import generate_uid

    template = inbox.parent / "template"
    if fake:
        _synthetic_cine(template / "cine.dcm")
    else:
        try:
            from dmx.phantom import make_phantom, write_phantom
        except ImportError:
            sys.exit("benchmarks/batch.py: dmx.phantom is not available yet; try --fake 0.5")
        write_phantom(make_phantom(seed=0, frames=frames), template)
    for i in range(n):
        dest = inbox / f"study{i:03d}"
        shutil.copytree(template, dest)
        for p in dest.rglob("*"):
            if not p.is_file() or p.suffix == ".json":
                continue
            try:
                ds = pydicom.dcmread(p)
            except Exception:  # noqa: BLE001 - not DICOM: copied as is
                continue
            ds.StudyInstanceUID = generate_uid()
            ds.SeriesInstanceUID = generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(p)


def _synthetic_cine(path: Path, frames: int = 30, size: int = 256) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "RF"
    ds.Rows = ds.Columns = size
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 4095, (frames, size, size), dtype=np.uint16).tobytes()
    path.parent.mkdir(parents=True)
    ds.save_as(path, enforce_file_format=True)
    landmarks = {
        "schema": "dmx.landmarks/1",
        "frame": 0,
        "points": {
            "C3": {"ant_sup": [10, 10], "post_sup": [40, 10], "post_inf": [40, 40], "ant_inf": [10, 40]}
        },
    }
    path.with_name(path.name + ".landmarks.json").write_text(json.dumps(landmarks))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=6, help="number of studies (default 6)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="worker counts to compare")
    parser.add_argument("--frames", type=int, default=60, help="phantom frames per study (default 60)")
    parser.add_argument(
        "--fake", type=float, metavar="SECONDS", help="runner only: a stand-in analysis sleeping SECONDS"
    )
    args = parser.parse_args()

    from dmx.batch import Status, run_batch

    analyzer = None
    if args.fake is not None:
        os.environ["DMX_BENCH_SLEEP"] = str(args.fake)
        analyzer = f"{Path(__file__).stem}:fake_analyze"
    what = "real pipeline" if analyzer is None else f"fake analysis {args.fake:.2f} s"
    with tempfile.TemporaryDirectory(prefix="dmx-bench-") as tmp, open(os.devnull, "w") as quiet:
        inbox = Path(tmp) / "inbox"
        make_inbox(inbox, args.studies, fake=args.fake is not None, frames=args.frames)
        print(f"{args.studies} studies ({args.frames} frames each), {what}")
        for jobs in args.jobs:
            out = Path(tmp) / f"out-{jobs}"
            t0 = time.perf_counter()
            result = run_batch(inbox, out, jobs=jobs, analyzer=analyzer, progress_stream=quiet)
            dt = time.perf_counter() - t0
            ok = result.count(Status.OK)
            failed = [r for r in result.rows if r.status is Status.FAILED]
            print(
                f"--jobs {jobs}: {ok} ok, {len(failed)} failed in {dt:.1f} s "
                f"-> {3600 * ok / dt:.0f} studies/hour"
            )
            for r in failed[:3]:
                print(f"  failed {r.input}: {r.reason}")
            t0 = time.perf_counter()
            rerun = run_batch(inbox, out, jobs=jobs, analyzer=analyzer, progress_stream=quiet)
            unchanged = sum(r.reason.startswith("unchanged since") for r in rerun.rows)
            print(f"  rerun: {unchanged} unchanged studies skipped in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
