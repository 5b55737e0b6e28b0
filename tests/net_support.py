"""Helpers of the network tests: free loopback ports, a `dmx listen` subprocess, a throw-away Orthanc.

Everything runs on 127.0.0.1 and is bounded in time; Orthanc (Debian package
``orthanc``) is required, not optional: CI installs it (.ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int, *, besides: tuple[int, ...] = ()) -> list[int]:
    """``n`` distinct loopback ports free now, none of ``besides``: held open together while chosen (one
    port asked for twice in a row can come back twice: Orthanc's HTTP and DICOM ports once did, and it
    stopped with "The TCP port of the HTTP server is ... already in use")."""
    held: list[socket.socket] = []
    try:
        while len(held) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in besides:
                s.close()
                continue
            held.append(s)
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def wait_for(predicate, *, timeout_s: float, what: str, interval_s: float = 0.25):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class ListenerProcess:
    """``python -m dmx listen ...`` in its own process group, logging to a file."""

    def __init__(self, out: Path, port: int, *args: str) -> None:
        self.out, self.port = Path(out), port
        self.log_path = self.out.parent / f"{self.out.name}-listen-{time.monotonic_ns()}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "dmx",
            "listen",
            "--port",
            str(port),
            "--out",
            str(out),
            "--host",
            "127.0.0.1",
        ]
        self.proc = subprocess.Popen(
            [*cmd, *args], stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        wait_for(
            lambda: "listening as" in self.text() or self.proc.poll() is not None,
            timeout_s=60,
            what="listener",
        )
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def terminate(self, timeout_s: float = 120) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the listener and the worker processes it started (its own process group)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # orphaned batch workers, if any
            except ProcessLookupError:
                pass
        self.log.close()


def orthanc_executable() -> str:
    path = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    assert path, "Orthanc is not installed (Debian package 'orthanc'; .ci/run installs it)"
    return path


class Orthanc:
    """A temporary Orthanc on loopback ports whose DicomModalities name ``dmx`` (the listener)."""

    def __init__(self, root: Path, *, listener_port: int, listener_aet: str = "DMX") -> None:
        self.root = Path(root)
        self.http_port, self.dicom_port = free_ports(2, besides=(listener_port,))
        self.aet = "ORTHANC"
        config = {
            "Name": "dmx-test",
            "StorageDirectory": str(self.root / "storage"),
            "IndexDirectory": str(self.root / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [],
            "DicomModalities": {"dmx": [listener_aet, "127.0.0.1", listener_port]},
            # Orthanc 1.10 has no listen address: its DICOM port takes stores only from that modality
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowEcho": False,
            "DicomCheckModalityHost": True,
            "DicomScuTimeout": 30,
            "HttpTimeout": 60,
        }
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "orthanc.json").write_text(json.dumps(config), encoding="utf-8")
        self.log = open(self.root / "orthanc.log", "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [orthanc_executable(), str(self.root / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._up, timeout_s=60, what="Orthanc to start")

    def _up(self) -> bool:
        assert self.proc.poll() is None, (self.root / "orthanc.log").read_text()
        try:
            self.get("/system")
            return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def get(self, path: str):  # noqa: ANN201
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            data = r.read()
        return json.loads(data) if r.headers.get_content_type() == "application/json" else data

    def post(self, path: str, body: bytes | str | dict, timeout_s: float = 120):  # noqa: ANN201
        if isinstance(body, dict):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(self.url + path, data=data, method="POST")
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return json.loads(r.read())

    def series_of(self, study_id: str) -> list[dict]:
        return self.get(f"/studies/{study_id}/series")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.log.close()
