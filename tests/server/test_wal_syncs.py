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


def test_the_default_policy_is_always(tmp_path, syncs):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    syncs.clear()
    _append(wal, 1)
    assert syncs == [("fdatasync", "1")]
    wal.close()


def test_edges_of_undo_close_and_rotation(tmp_path):
    from akidb.server.storage.wal import encode

    wal = WriteAheadLog(tmp_path, fsync="none")
    wal.open()
    assert wal.undo(1) is False  # nothing appended yet
    frame = len(encode(1, OP_UPSERT, {"ids": ["d1"], "labels": [1]},
                       np.full((1, 4), 1, np.float32)))
    wal.close()
    wal.close()  # closing twice is harmless
    exact = WriteAheadLog(tmp_path / "exact", fsync="none", segment_bytes=2 * frame)
    exact.open()
    _append(exact, 1)
    _append(exact, 2)  # fills the segment exactly: no rotation yet
    assert len(exact.segments()) == 1
    _append(exact, 3)
    assert len(exact.segments()) == 2
    exact.close()
    tiny = WriteAheadLog(tmp_path / "tiny", fsync="none", segment_bytes=1)
    sealed: list[tuple[str, int, int]] = []
    tiny.on_seal = lambda path, first, last: sealed.append((path.name, first, last))
    tiny.open()
    _append(tiny, 1)  # bigger than a segment, but the segment was empty: it goes there
    assert [p.name for p in tiny.segments()] == [f"{1:020d}.wal"]
    assert sealed == []  # the segment being written is never reported sealed
    _append(tiny, 2)
    assert sealed == [(f"{1:020d}.wal", 1, 1)]
    tiny.truncate_through(2)  # seals the segment holding record 2 ...
    tiny.truncate_through(2)  # ... and, with the new one still empty, nothing more
    assert sealed == [(f"{1:020d}.wal", 1, 1), (f"{2:020d}.wal", 2, 2)]
    tiny.close()


def test_sealing_reports_the_exact_range_and_batch_survives_rotation(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="batch", segment_bytes=300)
    sealed: list[tuple[str, int, int]] = []
    wal.on_seal = lambda path, first, last: sealed.append((path.name, first, last))
    wal.open()
    tokens = [wal.append(OP_UPSERT, {"ids": [f"d{i}"], "labels": [i]},
                         np.full((1, 16), i, np.float32))[1] for i in range(1, 8)]
    for token in tokens:
        wal.wait_durable(token)  # after rotations too
    assert sealed and sealed[0][1] == 1
    for (name, first, last), nxt in zip(sealed, sealed[1:] + [None], strict=True):
        assert name == f"{first:020d}.wal" and last >= first
        if nxt is not None:
            assert nxt[1] == last + 1  # contiguous: each ends where the next begins
    info = wal.segment_info()
    assert [Path(p).name for _, p, _, _ in info] == [p.name for p in wal.segments()]
    assert [s for _, _, s, _ in info][-1] is False and all(s for _, _, s, _ in info[:-1])
    wal.close()


def test_truncation_keeps_exactly_the_segments_with_later_records(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="none", segment_bytes=1)  # one record a segment
    wal.open()
    for i in range(1, 6):
        _append(wal, i)
    wal.truncate_through(3)  # records 1..3 are in a snapshot now
    starts = [int(p.stem) for p in wal.segments()]
    assert starts[0] == 4 and 4 in starts and 5 in starts
    wal.truncate_through(3)  # again, with the open segment empty: nothing more goes
    assert [int(p.stem) for p in wal.segments()] == starts
    wal.close()


def test_a_junk_byte_before_a_valid_record_is_corruption_not_a_torn_tail(tmp_path):
    from akidb.server.storage.wal import WalCorruption

    wal = WriteAheadLog(tmp_path, fsync="none")
    wal.open()
    _append(wal, 1)
    _append(wal, 2)
    (segment,) = wal.segments()
    wal.close()
    data = segment.read_bytes()
    first = len(data) // 2  # both frames have the same size here
    segment.write_bytes(data[:first] + b"\xff" + data[first:])  # record 2 follows at +1
    with pytest.raises(WalCorruption):
        WriteAheadLog(tmp_path, fsync="none").open()
