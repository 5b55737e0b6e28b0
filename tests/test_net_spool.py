"""dmx.net.spool: durable, duplicate-free, recoverable storage of received instances."""

from __future__ import annotations

import os
import time

from dmx.net.spool import Spool, Stored


def _store(spool: Spool, sop: str, series: str = "1.2.3.2", data: bytes = b"DICM") -> Stored:
    return spool.store(study_uid="1.2.3", series_uid=series, sop_instance_uid=sop, data=data)


def test_store_is_durable_and_ignores_duplicates(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert _store(spool, "1.2.3.2.1", data=b"first") is Stored.NEW
    assert _store(spool, "1.2.3.2.1", data=b"second") is Stored.DUPLICATE
    assert _store(spool, "1.2.3.2.2") is Stored.NEW
    (series,) = spool.incoming_series()
    assert len(series.files) == 2
    assert sorted(f.read_bytes() for f in series.files) == [b"DICM", b"first"]
    assert series.key == Spool.series_key("1.2.3", "1.2.3.2")
    assert "1.2.3" not in str(series.files[0])  # hashes, not UIDs, in paths
    assert not list((tmp_path / "spool").rglob(".*.tmp"))


def test_series_complete_after_quiet_and_duplicates_stay_ignored(tmp_path):
    spool = Spool(tmp_path / "spool")
    _store(spool, "1.2.3.2.1")
    _store(spool, "1.2.3.9.1", series="1.2.3.9")
    now = time.time()
    assert spool.due(5.0, now=now) == []
    old = now - 60
    for f in spool.incoming_series()[0].files:
        os.utime(f, (old, old))
    due = spool.due(5.0, now=now)
    assert len(due) == 1
    assert spool.complete(due[0]) == 1
    assert [s.key for s in spool.incoming_series()] == [Spool.series_key("1.2.3", "1.2.3.9")]
    assert spool.has_complete()
    # an instance already in a complete series is a duplicate; a new one of it waits in incoming
    assert _store(spool, "1.2.3.2.1") is Stored.DUPLICATE
    assert _store(spool, "1.2.3.2.2") is Stored.NEW
    late = [s for s in spool.incoming_series() if s.key == due[0].key]
    assert len(late) == 1 and spool.complete(late[0]) == 2  # joins the instances already complete


def test_recover_removes_unacknowledged_temporary_files(tmp_path):
    spool = Spool(tmp_path / "spool")
    _store(spool, "1.2.3.2.1")
    (series,) = spool.incoming_series()
    torn = series.files[0].parent / ".abc.dcm.xyz.tmp"
    torn.write_bytes(b"half an instance")
    assert Spool(tmp_path / "spool").recover() == 1
    assert not torn.exists() and series.files[0].exists()


def test_forwarded_marks(tmp_path):
    spool = Spool(tmp_path / "spool")
    assert spool.forwarded_mark("abc") == ""
    spool.mark_forwarded("abc", "2026-11-29T10:00:00Z PACS@h:104")
    assert spool.forwarded_mark("abc") == "2026-11-29T10:00:00Z PACS@h:104"
