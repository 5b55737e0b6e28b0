"""C-STORE SCP: receive studies, analyse them as ``dmx batch`` does, send the results back.

``dmx listen --aet DMX --port 11112 --out DIR [--forward PACS@host:104] [--allow AET ...]``

- Every instance is written durably into ``DIR/spool/incoming/`` before the
  C-STORE is acknowledged (:class:`dmx.net.spool.Spool`); a duplicate (same SOP
  Instance UID) is acknowledged and ignored.
- A series with no new instance for ``--quiet-seconds`` is complete: it moves to
  ``DIR/spool/complete/``, which is the inbox of :func:`dmx.batch.run_batch`
  (automatic landmarks, DICOM results), writing into ``DIR/results/`` with its
  manifest; a study that fails is in the manifest with its reason.
- With ``--forward`` the DICOM results of each study (SR, key images) are sent
  back with :func:`dmx.net.send.send_files`; what could not be sent is retried
  later, and what was sent is remembered in ``DIR/spool/forwarded/``.
- After a restart or a kill, temporary files are removed (their senders were not
  acknowledged), complete series not yet analysed are analysed, and results not
  yet forwarded are forwarded: nothing received is lost.
- Associations from AE titles outside ``--allow`` are rejected; unreadable
  instances are refused (status 0xC210); SOP classes that are not storage are not
  negotiated. SIGTERM (or Ctrl-C) stops it cleanly after the study in progress.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dmx.files import prepare_output_dir
from dmx.net.send import Peer, check_ae_title, send_files
from dmx.net.spool import Spool, Stored

log = logging.getLogger("dmx.listen")

#: C-STORE failure statuses (PS3.4 Annex B).
STATUS_CANNOT_UNDERSTAND = 0xC210
STATUS_OUT_OF_RESOURCES = 0xA700
#: Seconds between two attempts to forward results the peer did not take (doubling up to 5 minutes).
FORWARD_RETRY_S = 15.0


@dataclass
class ListenerConfig:
    """Options of ``dmx listen``."""

    ae_title: str
    port: int
    out: Path
    forward: Peer | None = None
    allow: Sequence[str] = ()
    quiet_s: float = 10.0
    host: str = "0.0.0.0"
    poll_s: float = 0.5
    mm_per_px: float | None = None
    thresholds_config: Path | None = None


@dataclass
class _Pending:
    retry_at: float = 0.0
    wait_s: float = FORWARD_RETRY_S
    keys: set[str] = field(default_factory=set)


class Listener:
    """The SCP, its spool and the worker that completes, analyses and forwards."""

    def __init__(self, config: ListenerConfig) -> None:
        check_ae_title(config.ae_title, option="--aet")
        for a in config.allow:
            check_ae_title(a, option="--allow")
        from dmx.batch.study import check_settings

        check_settings(mm_per_px=config.mm_per_px, config=config.thresholds_config)  # before the port opens
        self.config = config
        self.out = prepare_output_dir(config.out)  # a file in the way: one line, not a traceback
        self.results = self.out / "results"
        self.spool = Spool(self.out / "spool")
        self.stop_event = threading.Event()
        self._server: Any = None
        self._worker: threading.Thread | None = None
        self._pending = _Pending()

    # ------------------------------------------------------------------ network side

    def _ae(self) -> Any:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.config.ae_title)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.config.allow:
            ae.require_calling_aet = list(self.config.allow)
        ae.maximum_associations = 8
        return ae

    def _handlers(self) -> list[tuple[Any, Any]]:
        from pynetdicom import evt

        return [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ACCEPTED, self._on_event),
            (evt.EVT_REJECTED, self._on_event),
            (evt.EVT_ABORTED, self._on_event),
        ]

    @staticmethod
    def _who(event: Any) -> str:
        req = event.assoc.requestor
        return f"{str(req.ae_title).strip() or '?'} ({req.address})"

    def _on_event(self, event: Any) -> None:
        name = event.event.name
        if name == "EVT_REJECTED":
            log.warning("association from %s rejected (calling AE title not allowed)", self._who(event))
        elif name == "EVT_ABORTED":
            log.warning("association from %s aborted", self._who(event))
        else:
            log.info("association from %s accepted", self._who(event))

    def _on_store(self, event: Any) -> int:
        who = self._who(event)
        try:
            ds = event.dataset
            study_uid = str(ds.get("StudyInstanceUID") or "")
            series_uid = str(ds.get("SeriesInstanceUID") or "")
            sop_uid = str(event.request.AffectedSOPInstanceUID or "")
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:  # noqa: BLE001 - garbage from the network must never stop the listener
            log.warning("refused an unreadable instance from %s (%s)", who, type(exc).__name__)
            return STATUS_CANNOT_UNDERSTAND
        if not (study_uid and series_uid and sop_uid):
            log.warning("refused an instance without Study/Series/SOP Instance UID from %s", who)
            return STATUS_CANNOT_UNDERSTAND
        try:
            what = self.spool.store(
                study_uid=study_uid, series_uid=series_uid, sop_instance_uid=sop_uid, data=data
            )
        except OSError as exc:
            log.error("cannot spool an instance from %s: %s", who, exc.strerror or exc)
            return STATUS_OUT_OF_RESOURCES
        key = self.spool.series_key(study_uid, series_uid)
        if what is Stored.DUPLICATE:
            log.info("duplicate instance from %s ignored (series %s)", who, key)
        else:
            log.info("received an instance from %s (series %s)", who, key)
        return 0x0000

    # ------------------------------------------------------------------ worker side

    def _complete_due(self) -> int:
        n = 0
        for series in self.spool.due(self.config.quiet_s):
            count = self.spool.complete(series)
            log.info("series %s complete (%d instance%s)", series.key, count, "" if count == 1 else "s")
            n += 1
        return n

    def _analyse(self) -> None:
        from dmx.batch import DICOM_ANALYZER, Status, run_batch

        result = run_batch(
            self.spool.complete_dir,
            self.results,
            jobs=1,
            analyzer=DICOM_ANALYZER,
            mm_per_px=self.config.mm_per_px,
            config=self.config.thresholds_config,
        )
        for row in result.rows:
            if row.status is Status.FAILED:
                log.warning("study %s failed: %s", row.input, row.reason)
            elif row.status is Status.OK:
                log.info("study %s analysed: %s", row.input, row.output)
            if row.output and row.status is not Status.FAILED:
                self._pending.keys.add(row.output)
        self._pending.retry_at = 0.0

    def _forward(self) -> None:
        import json

        peer = self.config.forward
        if peer is None or not self._pending.keys or time.monotonic() < self._pending.retry_at:
            return
        failed = False
        for key in sorted(self._pending.keys):
            folder = self.results / key
            try:
                finished = json.loads((folder / "batch.json").read_text(encoding="utf-8"))["finished_at"]
            except (OSError, ValueError, KeyError, TypeError):
                self._pending.keys.discard(key)
                continue
            if self.spool.forwarded_mark(key) == f"{finished} {peer}" or not (folder / "dicom").is_dir():
                self._pending.keys.discard(key)
                continue
            result = send_files([folder / "dicom"], peer, calling_aet=self.config.ae_title, retries=0)
            if result.failed:
                failed = True
                why = sorted({f.reason for f in result.files if not f.ok})[0]
                log.warning("results of %s not forwarded to %s: %s (will retry)", key, peer, why)
                continue
            self.spool.mark_forwarded(key, f"{finished} {peer}")
            self._pending.keys.discard(key)
            log.info("results of %s forwarded to %s (%d files)", key, peer, result.sent)
        if failed:
            self._pending.retry_at = time.monotonic() + self._pending.wait_s
            self._pending.wait_s = min(self._pending.wait_s * 2, 300.0)
        else:
            self._pending.wait_s = FORWARD_RETRY_S

    def _work(self) -> None:
        first = True
        while not self.stop_event.is_set():
            try:
                changed = self._complete_due()
                if (changed or first) and self.spool.has_complete():
                    self._analyse()
                first = False
                self._forward()
            except Exception as exc:  # noqa: BLE001 - log, keep listening; the spool keeps the work
                log.error("worker: %s: %s (will retry)", type(exc).__name__, exc)
                self.stop_event.wait(5.0)
            self.stop_event.wait(self.config.poll_s)

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Recover the spool, start the worker and open the port (returns once listening)."""
        from dmx.errors import ParameterError

        if n := self.spool.recover():
            log.info("removed %d unfinished instance file(s) left by an earlier run", n)
        waiting = self.spool.incoming_series()
        if waiting:
            log.info("%d series still arriving from an earlier run", len(waiting))
        ae = self._ae()
        try:
            self._server = ae.start_server(
                (self.config.host, self.config.port), block=False, evt_handlers=self._handlers()
            )
        except OSError as exc:
            raise ParameterError(
                "port", f"{self.config.port}: cannot listen on {self.config.host} ({exc.strerror or exc})"
            ) from None
        self._worker = threading.Thread(target=self._work, name="dmx-listen-worker", daemon=True)
        self._worker.start()
        allow = ", ".join(self.config.allow) if self.config.allow else "any AE title"
        fwd = f"; results go to {self.config.forward}" if self.config.forward else ""
        log.info(
            "listening as %s on %s:%d (accepting %s; series complete after %g s quiet)%s",
            self.config.ae_title,
            self.config.host,
            self.config.port,
            allow,
            self.config.quiet_s,
            fwd,
        )

    def stop(self) -> None:
        """Stop accepting, let the worker finish what it is doing, and return."""
        self.stop_event.set()
        running = self._server is not None
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        if running:
            log.info("stopped")

    def serve_forever(self) -> None:
        """:meth:`start`, then wait for SIGTERM or SIGINT and :meth:`stop`."""

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("%s received: stopping", signal.Signals(signum).name)
            self.stop_event.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self.stop_event.wait(1.0):
                pass
        finally:
            self.stop()
            for s, h in previous.items():
                signal.signal(s, h)
