"""C-STORE SCU: send DICOM files (dmx results or any others) to a PACS or viewer.

One association carries every file; each file gets its own status. When the
peer cannot be reached, refuses the association or drops it, the files not yet
stored are retried on a new association after a back-off (1 s, 2 s, 4 s, ...).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dmx.errors import InputError, UsageError

log = logging.getLogger("dmx.net")

#: C-STORE statuses that mean "stored" (0x0000 success; 0xB000, 0xB006, 0xB007 warnings: stored).
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
DEFAULT_AET = "DMX"
_AET = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5: 16 characters, no backslash or control


@dataclass(frozen=True)
class Peer:
    """A DICOM node: AE title, host and port (``AET@HOST:PORT``)."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def check_ae_title(aet: str, *, option: str) -> str:
    """``aet`` if it is a valid AE title (1-16 characters, no backslash), else a UsageError."""
    if not _AET.match(aet) or not aet.strip():
        raise UsageError(f"{option}: {aet!r} is not an AE title (1 to 16 characters, no backslash)")
    return aet


def parse_peer(text: str, *, option: str = "--to") -> Peer:
    """``"PACS@10.0.0.5:104"`` as a :class:`Peer`; a one-line UsageError when malformed."""
    m = re.fullmatch(r"(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d+)", text.strip())
    if not m:
        raise UsageError(f"{option} must be AET@HOST:PORT (e.g. PACS@10.0.0.5:104), got {text!r}")
    port = int(m.group("port"))
    if not 0 < port < 65536:
        raise UsageError(f"{option}: port {port} is outside 1..65535")
    return Peer(check_ae_title(m.group("aet"), option=option), m.group("host").strip("[]"), port)


@dataclass(frozen=True)
class FileStatus:
    """What happened to one file: ``status`` is the C-STORE status (None when never sent)."""

    path: Path
    ok: bool
    status: int | None
    reason: str


@dataclass
class SendResult:
    """Per-file outcome of :func:`send_files`."""

    files: list[FileStatus] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(f.ok for f in self.files)

    @property
    def failed(self) -> int:
        return sum(not f.ok for f in self.files)

    @property
    def exit_code(self) -> int:
        """0 when every file was stored, 1 otherwise."""
        return 1 if self.failed else 0


def dicom_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files named, and every file under the folders named (sorted; hidden ones left out).

    Raises
    ------
    InputError
        For a path that does not exist.
    """
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out += sorted(
                f for f in p.rglob("*") if f.is_file() and not any(s.startswith(".") for s in f.parts[-1:])
            )
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(p, "not found")
    return out


def _read(path: Path):  # noqa: ANN202 - pydicom Dataset or a reason
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, TypeError, EOFError) as exc:
        return f"not a DICOM file ({type(exc).__name__})"
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        return "not a DICOM instance (no SOP Class/Instance UID)"
    return ds


def _contexts(datasets: Sequence) -> list:  # noqa: ANN001
    """Presentation contexts: one per SOP class and transfer syntax of the files to send.

    One transfer syntax per context, so that the peer accepts or refuses each one
    separately (a context offering JPEG and Explicit VR would be accepted with only
    one of them, and a JPEG file could then not be sent as it is). Explicit VR Little
    Endian is always offered too: a compressed file the peer does not take as it is
    is sent decompressed (:func:`_store`).
    """
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import build_context

    wanted: set[tuple[str, str]] = set()
    for ds in datasets:
        ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ExplicitVRLittleEndian)
        wanted.add((str(ds.SOPClassUID), ts))
        wanted.add((str(ds.SOPClassUID), str(ExplicitVRLittleEndian)))  # fallback: sent decompressed
    contexts = [build_context(sop_class, ts) for sop_class, ts in sorted(wanted)]
    if len(contexts) > 128:
        raise UsageError(f"cannot send {len(contexts)} kinds of file in one association (at most 128)")
    return contexts


def send_files(
    paths: Iterable[str | Path],
    peer: Peer,
    *,
    calling_aet: str = DEFAULT_AET,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
) -> SendResult:
    """C-STORE every DICOM file of ``paths`` to ``peer``, retrying what could not be sent.

    Parameters
    ----------
    paths : iterable of path
        Files, or folders (every file below them).
    peer : Peer
        Where to store them.
    calling_aet : str
        Our AE title.
    retries : int
        New associations tried after the first one fails (peer down, association
        rejected or aborted); the wait doubles from ``backoff_s`` each time.
    timeout_s : float
        Connection, association (ACSE) and DIMSE timeout in seconds.

    Returns
    -------
    SendResult
        One :class:`FileStatus` per file, in order. A file that is not DICOM is
        failed with its reason and not sent.
    """
    from pynetdicom import AE

    check_ae_title(calling_aet, option="--aet")
    files = dicom_files(paths)
    status: dict[Path, FileStatus] = {}
    to_send: list[tuple[Path, object]] = []
    for f in files:
        ds = _read(f)
        if isinstance(ds, str):
            status[f] = FileStatus(f, False, None, ds)
            log.warning("%s: %s: not sent", f, ds)
        else:
            to_send.append((f, ds))
    attempt = 0
    last_problem = ""
    while to_send:
        down = _unreachable(peer, timeout_s)
        if down:
            last_problem = down
            to_send = _retry_or_fail(to_send, status, peer, last_problem, attempt, retries)
            if not to_send:
                break
            _back_off(peer, last_problem, attempt, retries, backoff_s)
            attempt += 1
            continue
        ae = AE(ae_title=calling_aet)
        ae.requested_contexts = _contexts([ds for _, ds in to_send])
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
        ae.connection_timeout = timeout_s
        assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title)
        if assoc.is_established:
            remaining = []
            for i, (f, ds) in enumerate(to_send):
                if not assoc.is_established:  # aborted or released by the peer mid-way
                    remaining = to_send[i:]
                    last_problem = "the peer closed the association"
                    break
                try:
                    rsp = _store(assoc, ds)
                except (ValueError, RuntimeError, NotImplementedError) as exc:  # no context for this file
                    status[f] = FileStatus(f, False, None, f"not accepted by {peer}: {exc}")
                    log.warning("%s: not accepted by %s (%s)", f, peer, exc)
                    continue
                code = int(rsp.Status) if rsp is not None and "Status" in rsp else None
                if code is None:
                    remaining = to_send[i:]
                    last_problem = "no response (association aborted or timed out)"
                    break
                ok = code in STORED
                reason = "stored" if code == 0 else f"status 0x{code:04X}"
                status[f] = FileStatus(f, ok, code, reason)
                log.info("%s: %s", f, reason if ok else f"refused by peer ({reason})")
            if assoc.is_established:
                assoc.release()
            to_send = remaining
        else:
            last_problem = (
                "association rejected"
                if assoc.is_rejected
                else "association aborted"
                if assoc.is_aborted
                else "cannot connect"
            )
        ae.shutdown()
        to_send = _retry_or_fail(to_send, status, peer, last_problem, attempt, retries)
        if not to_send:
            break
        _back_off(peer, last_problem, attempt, retries, backoff_s)
        attempt += 1
    return SendResult([status[f] for f in files])


def _store(assoc, ds):  # noqa: ANN001, ANN202
    """C-STORE ``ds`` as it is, or decompressed when the peer took only Explicit VR Little Endian for it."""
    from pydicom.uid import ExplicitVRLittleEndian

    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_compressed:
        accepted = {
            str(cx.transfer_syntax[0])
            for cx in assoc.accepted_contexts
            if cx.abstract_syntax == ds.SOPClassUID and cx.transfer_syntax
        }
        if str(ts) not in accepted and str(ExplicitVRLittleEndian) in accepted:
            ds = ds.copy()
            ds.decompress()
    return assoc.send_c_store(ds)


def _unreachable(peer: Peer, timeout_s: float) -> str:
    """Why a TCP connection to ``peer`` fails ("" when it can be opened)."""
    try:
        with socket.create_connection((peer.host, peer.port), timeout=min(timeout_s, 10.0)):
            return ""
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return f"cannot connect ({why.lower()})"


def _retry_or_fail(
    to_send: list, status: dict[Path, FileStatus], peer: Peer, problem: str, attempt: int, retries: int
) -> list:
    """``to_send`` when another attempt is allowed; else every file of it failed with ``problem``."""
    if not to_send or attempt < retries:
        return to_send
    for f, _ in to_send:
        status[f] = FileStatus(f, False, None, f"{peer}: {problem}")
    return []


def _back_off(peer: Peer, problem: str, attempt: int, retries: int, backoff_s: float) -> None:
    wait = backoff_s * 2**attempt
    log.warning("%s: %s; retrying in %.0f s (%d of %d)", peer, problem, wait, attempt + 1, retries)
    time.sleep(wait)
