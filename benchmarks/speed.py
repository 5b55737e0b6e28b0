"""End-to-end speed of ``dmx analyze`` (report included) on a 600-frame 1024x1024 30 fps study.

Target (issue #13): at least 3x real time on 2 cores, i.e. a 20 s acquisition (600 frames at
30 fps) analysed in at most 6.7 s, with peak memory below 2x the decoded frames.

The phantom (``dmx phantom --frames 600 --fps 30 --size 1024``) is generated once into a cache
folder (default ``~/.cache/dmx-bench/speed``; about a minute) and reused. Then, each in a fresh
Python process:

* ``dmx analyze STUDY --landmarks L --out DIR``, the command itself: wall time, CPU time (its worker
  processes included, and of its main process alone), peak RSS of its largest process
  (``getrusage``) and peak PSS of all its processes together (``/proc/PID/smaps_rollup``, sampled
  every 0.25 s: the frames a forked worker shares are counted once, as they are in memory);
* the same steps called one by one (load, track in as many processes as ``dmx analyze`` uses,
  smooth, measure, assemble, write measurements/landmarks, report), timed each (wall and CPU, the
  tracking workers' CPU included), with the peak RSS and PSS. "assemble" includes the input's
  SHA-256, which ``dmx analyze`` computes on a background thread while it tracks; the report is
  written here after measurements.json, where ``dmx analyze`` writes them at the same time.

The machine is shared, so wall times are noisy: ``--repeat N`` runs each N times and prints the
best and the median; CPU seconds are steadier. Machines differ too (the same code took 11.4 CPU-s on
session 23's machine and 26 on session 29's): every run first prints a reference of the machine and
its libraries (:func:`machine_reference`: a pure-Python loop, a numpy product and an OpenCV blur,
best of 5, with the numpy and OpenCV versions), so figures from two machines can be compared.

``--track-only N`` instead tracks the first N frames of the study alone, in a fresh process
(``--repeat`` times), in ``--processes P`` processes (default 1: ``track(processes=P)``): CPU seconds
(all processes, and the main one alone), wall seconds, ms per frame, and the prefilter's work of the
main process, which does not depend on the machine's load: megapixels through the Gaussian and the
box filters (and their seconds), and how many fits were run on a whole frame region (``FrameROI``
built without ``inner``) or on the part a predicted fit samples; with ``--processes`` over 1, how long
the main process waited for the workers' fits and they (idle) for it (``ForkedChains``), and the load
average. With ``--profile`` the first run is
profiled (the main process).

    PYTHONPATH=. python benchmarks/speed.py [--repeat 3] [--cache DIR] [--profile out.prof]
    PYTHONPATH=. python benchmarks/speed.py --track-only 120 --repeat 3 [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAMES, FPS, SIZE = 600, 30.0, 1024


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def ensure_study(cache: Path) -> Path:
    """The cached phantom folder (``study.dcm``, ``landmarks.json``), generated if missing."""
    folder = cache / f"phantom_{FRAMES}f_{SIZE}px_{int(FPS)}fps"
    if (folder / "study.dcm").is_file() and (folder / "landmarks.json").is_file():
        return folder
    print(f"generating the phantom into {folder} (once) ...", file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "dmx",
            "phantom",
            str(folder),
            "--frames",
            str(FRAMES),
            "--fps",
            str(FPS),
            "--size",
            str(SIZE),
            "--seed",
            "13",
        ],
        check=True,
        env=_env(),
    )
    print(f"  done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return folder


def _tree_pss_gb(pid: int) -> float:
    """Proportional set size (GB) of process ``pid`` and its descendants: pages shared by several
    (a forked worker's copy-on-write frames) are counted once over all, unlike the sum of their RSS."""
    total_kb, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total_kb / 1e6


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far (None if unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_sampled(cmd: list[str], **kwargs) -> tuple[str, resource.struct_rusage, float, float]:
    """Run ``cmd``; its standard output (with ``stdout=subprocess.PIPE``, else ""), its resource usage
    (``os.wait4``: its own and that of the worker processes it waited for, so the peak RSS is of its
    largest process, never of an earlier child of this one such as the phantom's generator), the peak
    PSS (GB) of its process tree (sampled every 0.25 s: reading it walks the processes' page tables,
    which slows them if done often) and the CPU seconds of its main process alone (its workers left
    out; sampled every 20 ms). 0 where ``/proc`` has no figures."""
    import threading

    proc = subprocess.Popen(cmd, **kwargs)
    peak, main_cpu = [0.0], [0.0]
    done = threading.Event()

    def sample() -> None:
        n = 0
        while not done.wait(0.02):
            if n % 12 == 0:
                peak[0] = max(peak[0], _tree_pss_gb(proc.pid))
            main_cpu[0] = _cpu_s(proc.pid) or main_cpu[0]
            n += 1

    texts = {}

    def drain(name: str) -> None:  # the pipes read while it runs (a full pipe would block it)
        texts[name] = getattr(proc, name).read()

    threads = [threading.Thread(target=sample, daemon=True)]
    threads += [threading.Thread(target=drain, args=(n,)) for n in ("stdout", "stderr") if getattr(proc, n)]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): its rusage is this child's alone
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    for t in threads:
        t.join()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, texts.get("stdout"), texts.get("stderr"))
    return texts.get("stdout") or "", usage, peak[0], main_cpu[0]


def run_cli(folder: Path, out: Path, profile: str | None) -> tuple[float, float, float, float, float]:
    """``dmx analyze`` in a fresh process: wall s, CPU s (its worker processes included), peak RSS GB
    (of its largest process), peak PSS GB (of all its processes together), CPU s of its main process."""
    cmd = [sys.executable, "-P"]  # -P: this checkout's dmx, whatever the working directory holds
    if profile:
        cmd += ["-m", "cProfile", "-o", profile]
    cmd += [
        "-m",
        "dmx",
        "analyze",
        str(folder / "study.dcm"),
        "--landmarks",
        str(folder / "landmarks.json"),
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    _, usage, pss, main_cpu = _run_sampled(
        cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wall = time.perf_counter() - t0
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1e6, pss, main_cpu  # kB on Linux


STAGES_SCRIPT = r"""
import json, resource, sys, time
t_start = time.perf_counter()
from pathlib import Path
import numpy as np
from dmx.io.load import load_sequence
from dmx.landmarks import read_landmarks
from dmx.measure import measure
from dmx.pipeline import Analysis, _adi_points, build_measurements
from dmx.pipeline import landmarks_csv, measurements_text
from dmx.report import write_report
from dmx.tracking import smooth_tracks, track
from dmx.tracking.smoothing import WINDOW_FRAMES
from dmx.threads import default_threads
folder, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
times = {"import": time.perf_counter() - t_start}
def cpu_s():  # this process and its ended worker processes
    own, ended = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime
def stage(name, fn):
    t0 = time.perf_counter(); c0 = cpu_s()
    r = fn()
    times[name] = time.perf_counter() - t0
    times[name + "_cpu"] = cpu_s() - c0
    return r
lm = read_landmarks(folder / "landmarks.json")
seq = stage("load", lambda: load_sequence(folder / "study.dcm"))
raw = stage("track", lambda: track(seq.frames, lm, processes=default_threads()))
tr = stage("smooth", lambda: smooth_tracks(raw, window_frames=WINDOW_FRAMES))
m = stage("measure", lambda: measure(tr, mm_per_px=seq.mm_per_px, adi_points_px=_adi_points(tr, lm)))
doc = stage("assemble", lambda: build_measurements(seq, lm, tr, m, smooth_frames=WINDOW_FRAMES))
an = Analysis(sequence=seq, landmarks=lm, tracks=tr, measurements=doc, detection=None)
def write_text():
    (out / "measurements.json").write_text(measurements_text(doc))
    (out / "landmarks.csv").write_text(landmarks_csv(tr))
stage("write json/csv", write_text)
stage("report", lambda: write_report(an, out / "report.html"))
times["frames_gb"] = seq.frames.nbytes / 1e9
who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)  # the largest process
times["peak_rss_gb"] = max(resource.getrusage(w).ru_maxrss for w in who) / 1e6
print(json.dumps(times))
"""


def run_stages(folder: Path, out: Path) -> dict[str, float]:
    """The pipeline's steps one by one in a fresh process: seconds per stage, peak RSS and PSS."""
    stdout, _, pss, _ = _run_sampled(
        [sys.executable, "-P", "-c", STAGES_SCRIPT, str(folder), str(out)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    times = json.loads(stdout.strip().splitlines()[-1])
    times["peak_pss_gb"] = pss
    return times


TRACK_SCRIPT = r"""
import cProfile, json, resource, sys, time
import cv2
import numpy as np
import dmx.tracking.register as reg
from dmx.io.load import load_sequence
from dmx.landmarks import read_landmarks
from dmx.tracking import track
folder, n, profile, processes = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
lm = read_landmarks(folder + "/landmarks.json")
frames = np.ascontiguousarray(load_sequence(folder + "/study.dcm").frames[:n])
work = {"gauss_mpx": 0.0, "box_mpx": 0.0, "gauss_s": 0.0, "box_s": 0.0, "whole": 0, "part": 0}
class _CountingCv2:  # the prefilter's OpenCV calls, counted and timed
    def __getattr__(self, name):
        return getattr(cv2, name)
    def sepFilter2D(self, src, *a, **k):
        t0 = time.perf_counter(); out = cv2.sepFilter2D(src, *a, **k)
        work["gauss_s"] += time.perf_counter() - t0; work["gauss_mpx"] += src.size / 1e6
        return out
    def boxFilter(self, src, *a, **k):
        t0 = time.perf_counter(); out = cv2.boxFilter(src, *a, **k)
        work["box_s"] += time.perf_counter() - t0; work["box_mpx"] += src.size / 1e6
        return out
reg.cv2 = _CountingCv2()
roi_init = reg.FrameROI.__init__
def counting_init(self, frame, box, template, **kw):
    work["part" if kw.get("inner") is not None else "whole"] += 1
    roi_init(self, frame, box, template, **kw)
reg.FrameROI.__init__ = counting_init
import dmx.tracking.workers as workers_mod
chains_close = workers_mod.ForkedChains.close
def noting_close(self):  # how long this process waited for the workers' fits, and they for it
    work["main_waited_s"] = work.get("main_waited_s", 0.0) + self.waited_s
    work["workers_idle_s"] = work.get("workers_idle_s", 0.0) + sum(self._idle_s)
    chains_close(self)
workers_mod.ForkedChains.close = noting_close
def cpu_s(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime
prof = cProfile.Profile() if profile else None
c0, w0, t0 = cpu_s(resource.RUSAGE_SELF), cpu_s(resource.RUSAGE_CHILDREN), time.perf_counter()
if prof:
    prof.enable()
track(frames, lm, processes=processes)
if prof:
    prof.disable(); prof.dump_stats(profile)
own, workers = cpu_s(resource.RUSAGE_SELF) - c0, cpu_s(resource.RUSAGE_CHILDREN) - w0
work.update(cpu_s=own + workers, main_cpu_s=own, wall_s=time.perf_counter() - t0, frames=len(frames))
work["load"] = __import__("os").getloadavg()[0]
print(json.dumps(work))
"""


def run_track_only(folder: Path, n_frames: int, profile: str | None, processes: int = 1) -> dict[str, float]:
    """Tracking alone on the study's first ``n_frames``, in ``processes`` processes, in a fresh process."""
    res = subprocess.run(
        [sys.executable, "-P", "-c", TRACK_SCRIPT, str(folder), str(n_frames), profile or "", str(processes)],
        check=True,
        env=_env(),
        capture_output=True,
        text=True,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def machine_reference() -> str:
    """This machine's speed on three fixed pieces of work, best of 5 (ms), and the library versions:
    ``sum(range(10**6))`` (the interpreter), a 500x500 float64 matrix product (numpy's BLAS) and a
    Gaussian blur (sigma 2) of a 1024x1024 uint8 frame (OpenCV). Tracking is mostly the first and the
    last; a slower machine shows in them before it shows in the benchmark."""
    import timeit

    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.random((500, 500))
    frame = (rng.random((SIZE, SIZE)) * 255).astype(np.uint8)

    def best(fn) -> float:
        return 1000 * min(timeit.repeat(fn, number=1, repeat=5))

    py = best(lambda: sum(range(10**6)))
    mm = best(lambda: a @ a)
    blur = best(lambda: cv2.GaussianBlur(frame, (0, 0), 2.0))
    return (
        f"machine: python loop {py:.1f} ms, numpy 500x500 product {mm:.1f} ms, OpenCV 1024x1024 blur "
        f"{blur:.2f} ms (numpy {np.__version__}, OpenCV {cv2.__version__}, Python {sys.version.split()[0]})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "dmx-bench" / "speed"))
    p.add_argument("--repeat", type=int, default=1, help="runs of each measurement (best and median shown)")
    p.add_argument("--profile", help="also write a cProfile of one `dmx analyze` run to this file")
    p.add_argument("--stages-only", action="store_true")
    p.add_argument("--cli-only", action="store_true")
    p.add_argument("--track-only", type=int, metavar="N", help="track the first N frames alone (one thread)")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="with --track-only: register the bodies in this many processes (track(processes=...))",
    )
    args = p.parse_args(argv)
    folder = ensure_study(Path(args.cache))
    print(machine_reference())
    if args.track_only:
        print(
            f"tracking alone, frames 0-{args.track_only - 1} of {FRAMES} ({SIZE}x{SIZE}), "
            f"{args.processes} process(es)"
        )
        for i in range(args.repeat):
            r = run_track_only(folder, args.track_only, args.profile if i == 0 else None, args.processes)
            print(
                f"track: {r['cpu_s']:.2f} CPU-s ({r['main_cpu_s']:.2f} in the main process), "
                f"{r['wall_s']:.2f} s wall "
                f"({1000 * r['cpu_s'] / r['frames']:.1f} CPU-ms per frame); prefilter: "
                f"Gaussian {r['gauss_mpx']:.0f} Mpx {r['gauss_s']:.2f} s, box {r['box_mpx']:.0f} Mpx "
                f"{r['box_s']:.2f} s; regions filtered whole {r['whole']}, in part {r['part']}"
                + (
                    f"; waits: the main process for the workers {r['main_waited_s']:.2f} s, "
                    f"the workers for it (idle) {r['workers_idle_s']:.2f} s"
                    if "main_waited_s" in r
                    else ""
                )
                + f"; load average {r['load']:.1f}"
            )
        return 0
    acquired_s = FRAMES / FPS
    print(
        f"study: {FRAMES} frames {SIZE}x{SIZE} at {FPS:.0f} fps ({acquired_s:.0f} s acquired); "
        f"target <= {acquired_s / 3:.1f} s (3x real time); cpus {os.cpu_count()}"
    )
    with tempfile.TemporaryDirectory(prefix="dmx-speed-") as tmp:
        if not args.cli_only:
            runs = [run_stages(folder, Path(tmp) / f"stages{i}") for i in range(args.repeat)]
            names = [
                k
                for k in runs[0]
                if not k.endswith("_cpu") and k not in ("frames_gb", "peak_rss_gb", "peak_pss_gb")
            ]
            print(f"{'stage':<16} {'wall s (best)':>13} {'median':>7} {'cpu s':>6}")
            for k in names:
                w = [r[k] for r in runs]
                c = [r.get(k + "_cpu", float("nan")) for r in runs]
                print(f"{k:<16} {min(w):13.2f} {statistics.median(w):7.2f} {statistics.median(c):6.2f}")
            total = [sum(r[k] for k in names) for r in runs]
            print(f"{'total':<16} {min(total):13.2f} {statistics.median(total):7.2f}")
            gb, peak = runs[0]["frames_gb"], max(r["peak_rss_gb"] for r in runs)
            pss = max(r["peak_pss_gb"] for r in runs)
            print(
                f"decoded frames {gb:.2f} GB, peak RSS {peak:.2f} GB of the largest process "
                f"({peak / gb:.2f}x the frames), peak PSS {pss:.2f} GB of all ({pss / gb:.2f}x)"
            )
        if not args.stages_only:
            cli = [
                run_cli(folder, Path(tmp) / f"cli{i}", args.profile if i == 0 else None)
                for i in range(args.repeat)
            ]
            walls = [c[0] for c in cli]
            best, med = min(walls), statistics.median(walls)
            cpu, peak = statistics.median([c[1] for c in cli]), max(c[2] for c in cli)
            pss, main_cpu = max(c[3] for c in cli), statistics.median([c[4] for c in cli])
            print(
                f"dmx analyze (report included): wall best {best:.2f} s, median {med:.2f} s, "
                f"cpu {cpu:.2f} s ({main_cpu:.2f} s in the main process), peak RSS {peak:.2f} GB "
                f"(largest process), peak PSS {pss:.2f} GB (all processes); "
                f"{acquired_s / best:.2f}x real time"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
