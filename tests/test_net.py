"""dmx send (C-STORE SCU) and dmx listen's robustness (no PACS needed: pynetdicom plays the peer)."""

from __future__ import annotations

import socket
import time

import pydicom
import pytest
from net_support import ROOT, ListenerProcess, free_port, wait_for
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dmx.cli import main
from dmx.errors import UsageError
from dmx.net.send import Peer, parse_peer, send_files

STUDY = ROOT / "sample_data" / "lordotic_stable" / "study.dcm"


def test_parse_peer():
    assert parse_peer("PACS@10.0.0.5:104") == Peer("PACS", "10.0.0.5", 104)
    assert parse_peer("MY AE@host.example:11112") == Peer("MY AE", "host.example", 11112)
    for bad in ("PACS10.0.0.5:104", "PACS@host", "@host:104", "PACS@host:0", "WAY_TOO_LONG_AE_TITLE@h:1"):
        with pytest.raises(UsageError):
            parse_peer(bad)


def test_send_malformed_destination_is_a_usage_error(capsys):
    assert main(["send", str(STUDY), "--to", "PACS-host-104"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dmx: error: --to must be AET@HOST:PORT (e.g. PACS@10.0.0.5:104), got 'PACS-host-104'"]


def test_send_to_a_peer_that_is_down_fails_with_one_error_line(capsys, caplog):
    port = free_port()  # nothing listens there
    code = main(["send", str(STUDY), "--to", f"PACS@127.0.0.1:{port}", "--retries", "1"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.splitlines() == [
        f"failed\t{STUDY}\tPACS@127.0.0.1:{port}: cannot connect (connection refused)"
    ]
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("dmx: error:")]
    assert errors == [
        f"dmx: error: 1 of 1 file(s) not stored on PACS@127.0.0.1:{port}: cannot connect (connection refused)"
    ]
    assert "cannot connect (connection refused); retrying in 1 s (1 of 1)" in caplog.text


def _storage_scp(port: int, statuses: list[int]):
    """A pynetdicom SCP that answers C-STOREs with ``statuses`` in turn (then success)."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    received = []

    def on_store(event):
        received.append(event.dataset.SOPInstanceUID)
        return statuses.pop(0) if statuses else 0x0000

    ae = AE(ae_title="PEER")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    return server, received


def test_send_reports_each_file_and_skips_non_dicom(tmp_path, capsys):
    port = free_port()
    server, received = _storage_scp(port, [0xA700])  # the first file: out of resources
    try:
        folder = tmp_path / "send"
        folder.mkdir()
        ds = pydicom.dcmread(STUDY)
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(folder / "a.dcm")
        (folder / "b.dcm").write_bytes(STUDY.read_bytes())
        (folder / "notes.txt").write_text("not dicom")
        code = main(["send", str(folder), "--to", f"PEER@127.0.0.1:{port}", "--aet", "DMXTEST"])
    finally:
        server.shutdown()
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert lines == [
        f"failed\t{folder / 'a.dcm'}\tstatus 0xA700",
        f"sent\t{folder / 'b.dcm'}\tstored",
        f"failed\t{folder / 'notes.txt'}\tnot a DICOM file (InvalidDicomError)",
    ]
    assert len(received) == 2


def test_send_retries_until_the_peer_is_up(tmp_path):
    import threading

    port = free_port()
    started = {}

    def start_later():
        time.sleep(1.5)
        started["server"] = _storage_scp(port, [])

    t = threading.Thread(target=start_later)
    t.start()
    try:
        result = send_files([STUDY], Peer("PEER", "127.0.0.1", port), retries=4, backoff_s=0.5)
    finally:
        t.join()
        started["server"][0].shutdown()
    assert result.exit_code == 0 and result.sent == 1
    assert len(started["server"][1]) == 1


def _associate(port: int, aet: str, contexts):  # noqa: ANN001, ANN202
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    for cx in contexts:
        ae.add_requested_context(*cx)
    return ae, ae.associate("127.0.0.1", port, ae_title="DMX")


def test_listener_survives_garbage_refuses_strangers_and_ignores_duplicates(tmp_path):
    from pynetdicom.sop_class import XRayRadiofluoroscopicImageStorage

    port = free_port()
    out = tmp_path / "listen"
    listener = ListenerProcess(out, port, "--aet", "DMX", "--allow", "MOD", "--quiet-seconds", "600")
    try:
        # garbage on the socket, then a connection dropped mid-association request
        for payload in (b"\x00garbage\xff" * 300, b"\x01\x00\x00\x00\x10\x00"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(payload)
                time.sleep(0.2)
        # an AE title outside --allow is rejected
        bad = send_files([STUDY], Peer("DMX", "127.0.0.1", port), calling_aet="STRANGER", retries=0)
        assert bad.failed == 1 and "association rejected" in bad.files[0].reason
        # an association aborted by the caller mid-way
        ae, assoc = _associate(port, "MOD", [(XRayRadiofluoroscopicImageStorage, ExplicitVRLittleEndian)])
        assert assoc.is_established
        assoc.abort()
        ae.shutdown()
        # an unknown SOP class is not negotiated; the association carries nothing
        ae, assoc = _associate(port, "MOD", [("1.2.3.4.5.6.7.8.9", ExplicitVRLittleEndian)])
        assert not assoc.is_established or not assoc.accepted_contexts
        if assoc.is_established:
            assoc.release()
        ae.shutdown()
        # an instance without a Study Instance UID is refused, and the listener keeps going
        ae, assoc = _associate(port, "MOD", [(XRayRadiofluoroscopicImageStorage, ExplicitVRLittleEndian)])
        assert assoc.is_established
        junk = Dataset()
        junk.SOPClassUID = XRayRadiofluoroscopicImageStorage
        junk.SOPInstanceUID = generate_uid()
        junk.file_meta = FileMetaDataset()
        junk.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        status = assoc.send_c_store(junk)
        assert status.Status == 0xC210
        assoc.release()
        ae.shutdown()
        # the real study, twice: stored once
        good = send_files([STUDY, STUDY], Peer("DMX", "127.0.0.1", port), calling_aet="MOD", retries=0)
        assert good.exit_code == 0 and good.sent == 2
        spooled = list((out / "spool" / "incoming").rglob("*.dcm"))
        assert len(spooled) == 1
        assert pydicom.dcmread(spooled[0]).SOPInstanceUID == pydicom.dcmread(STUDY).SOPInstanceUID
        got, sent = pydicom.dcmread(spooled[0]), pydicom.dcmread(STUDY)
        assert got.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID  # stored as received
        assert got.PixelData == sent.PixelData and got.NumberOfFrames == sent.NumberOfFrames
        log = wait_for(lambda: "duplicate" in listener.text() and listener.text(), timeout_s=10, what="log")
        assert "association from STRANGER (127.0.0.1) rejected" in log
        assert "association from MOD (127.0.0.1) aborted" in log
        assert "refused an instance without Study/Series/SOP Instance UID from MOD" in log
        assert log.count("received an instance from MOD") == 1
        assert "PHANTOM" not in log
    finally:
        code = listener.terminate()
    assert code == 0, listener.text()
    assert listener.text().rstrip().endswith("dmx: stopped")
    # nothing analysed: the series was still arriving (quiet 600 s), and it is still spooled
    assert len(list((out / "spool" / "incoming").rglob("*.dcm"))) == 1
    assert not (out / "results").exists()


def test_listen_option_errors(capsys, tmp_path):
    assert main(["listen", "--aet", "A\\B", "--port", "104"]) == 2
    assert "is not an AE title" in capsys.readouterr().err
    assert main(["listen", "--forward", "nowhere", "--port", "104"]) == 2
    assert "--forward must be AET@HOST:PORT" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[thresholds]\nmin_rotation_deg = -2\n", encoding="utf-8")
    assert main(["listen", "--config", str(bad), "--port", "104"]) == 2  # before any port is opened
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "must not be negative" in err[0]
    assert main(["listen", "--mm-per-px", "0", "--port", "104"]) == 2
    assert "--mm-per-px" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["listen", "--port", str(port), "--host", "127.0.0.1", "--out", str(tmp_path / "l")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dmx: error: --port {port}: cannot listen on 127.0.0.1 (Address already in use)"]


def _noise_cine(path):
    """The lordotic sample with its pixels replaced by noise (new instance UID): no spine to find."""
    import numpy as np

    ds = pydicom.dcmread(STUDY)
    dtype = np.uint8 if ds.BitsAllocated == 8 else np.uint16
    shape = (int(getattr(ds, "NumberOfFrames", 1)), ds.Rows, ds.Columns)
    ds.PixelData = np.random.default_rng(5).integers(0, 255, shape, dtype=dtype).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # the sample may be compressed
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_listener_records_a_study_whose_landmarks_cannot_be_found(tmp_path):
    """No sidecar can reach a listener: automatic landmarks; a failure is in the manifest with its reason."""
    import json

    port = free_port()
    out = tmp_path / "listen"
    listener = ListenerProcess(out, port, "--aet", "DMX", "--quiet-seconds", "0.5")
    try:
        noise = _noise_cine(tmp_path / "noise.dcm")  # no spine for the detector
        assert send_files([noise], Peer("DMX", "127.0.0.1", port), retries=0).exit_code == 0
        manifest = out / "results" / "manifest.jsonl"
        wait_for(lambda: "failed:" in listener.text(), timeout_s=240, what="the analysis to fail")
        (row,) = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert row["status"] == "failed" and row["landmarks_source"] == "auto"
        assert "no landmarks" in row["reason"] and "no vertebral body" in row["reason"]
        assert f"study {row['input']} failed: {row['reason']}" in listener.text()
    finally:
        assert listener.terminate() == 0, listener.text()


def test_listen_out_that_is_a_file_is_one_line(capsys, tmp_path):
    """--out naming a file: one line naming it, exit 2, before any port is opened (no traceback)."""
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code = main(["listen", "--port", str(free_port()), "--host", "127.0.0.1", "--out", str(blocker)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dmx: error: {blocker}: cannot be used as the output folder: it is a file, not a folder"]
