"""Which syncs the log issues, seen at the os boundary: every new or removed segment
syncs its directory, a sealed segment and an undone record sync their file, and with
``fsync="none"`` nothing is synced at all. The file is unbuffered, so what was
appended is in the file (the page cache) before anything else happens."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from akidb.server.storage.wal import OP_UPSERT, WriteAheadLog


@pytest.fixture
def syncs(monkeypatch) -> list[tuple[str, str]]:
    """(call, what was synced: 'dir' or the segment's start seq) for every fsync and
    fdatasync, in order."""
    seen: list[tuple[str, str]] = []

    def recorder(name: str, real):
        def call(fd: int) -> None:
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
            seen.append((name, "dir" if target.is_dir() else str(int(target.stem))))
            real(fd)
        return call

    monkeypatch.setattr(os, "fsync", recorder("fsync", os.fsync))
    monkeypatch.setattr(os, "fdatasync", recorder("fdatasync", os.fdatasync))
    return seen


def _append(wal: WriteAheadLog, i: int, size: int = 4) -> int:
    seq, _ = wal.append(OP_UPSERT, {"ids": [f"d{i}"], "labels": [i]},
                        np.full((1, size), i, np.float32))
    return seq


def test_always_syncs_each_record_each_new_segment_and_each_cut(tmp_path, syncs):
    wal = WriteAheadLog(tmp_path, fsync="always", segment_bytes=300)
    wal.open()
    assert syncs == [("fsync", "dir")]  # the first segment's directory entry
    syncs.clear()
    _append(wal, 1)
    assert syncs == [("fdatasync", "1")]
    syncs.clear()
    for i in range(2, 6):  # past segment_bytes: the log rotates
        _append(wal, i, size=16)
    rotations = [s for s in syncs if s[0] == "fsync"]
    assert rotations and rotations[0][1] == "1"  # the sealed segment, before the new one
    assert ("fsync", "dir") in syncs  # the new segment's directory entry
    assert len(wal.segments()) >= 2
    syncs.clear()
    last = _append(wal, 6)
    assert wal.undo(last)
    assert syncs[-1][0] == "fsync" and syncs[-1][1] != "dir"  # the cut file itself
    syncs.clear()
    wal.truncate_through(wal.last_seq)
    assert syncs[-1] == ("fsync", "dir")  # the removed segments' directory
    assert len(wal.segments()) == 1
    syncs.clear()
    wal.close()
    assert [s[0] for s in syncs] == ["fsync"]
    reopened = WriteAheadLog(tmp_path, fsync="always", segment_bytes=300)
    reopened.open()  # an existing segment: no new directory entry, no directory sync
    assert ("fsync", "dir") not in syncs[1:]
    reopened.close()


def test_none_never_syncs_anything(tmp_path, syncs):
    wal = WriteAheadLog(tmp_path, fsync="none", segment_bytes=300)
    wal.open()
    for i in range(1, 8):
        _append(wal, i, size=16)
    assert wal.undo(wal.last_seq)
    wal.truncate_through(wal.last_seq)
    wal.close()
    assert syncs == []


def test_batch_syncs_in_wait_durable_only(tmp_path, syncs):
    wal = WriteAheadLog(tmp_path, fsync="batch")
    wal.open()
    syncs.clear()
    seq, token = wal.append(OP_UPSERT, {"ids": ["a"], "labels": [0]},
                            np.ones((1, 4), np.float32))
    assert syncs == []
    wal.wait_durable(token)
    assert syncs == [("fdatasync", "1")]
    wal.wait_durable(token)  # already durable: no second sync
    assert len(syncs) == 1
    wal.close()


def test_appended_bytes_are_in_the_file_at_once(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="none")
    wal.open()
    for i in range(3):
        _append(wal, i)
        (segment,) = wal.segments()
        assert segment.stat().st_size == wal.size_bytes() > 0
        assert os.path.getsize(segment) == wal._fh.tell()  # nothing held in a buffer
    wal.close()


def test_reopening_many_segments_continues_the_numbering_in_the_last_one(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="none", segment_bytes=200)
    wal.open()
    for i in range(1, 9):
        _append(wal, i, size=16)
    wal.close()
    names = [p.name for p in wal.segments()]
    assert len(names) >= 3
    again = WriteAheadLog(tmp_path, fsync="none", segment_bytes=200)
    report = again.open()
    assert report.last_seq == again.last_seq == 8 and report.records == 8
    assert [p.name for p in again.segments()] == names  # a restart adds no file
    assert _append(again, 9) == 9
    again.close()
    assert [p.name for p in again.segments()][: len(names)] == names
