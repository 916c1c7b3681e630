"""The write-ahead log's reports, segments, undo and sync calls, exactly."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from akidb.server.storage import wal as wal_module
from akidb.server.storage.wal import (
    FRAME,
    HEADER,
    OP_DELETE,
    OP_UPSERT,
    WalCorruption,
    WriteAheadLog,
    decode,
    encode,
)


def _log(directory, n=4, segment_bytes=64 * 1024 * 1024, fsync="always"):
    wal = WriteAheadLog(directory, fsync=fsync, segment_bytes=segment_bytes)
    wal.open()
    for i in range(n):
        wal.append(OP_UPSERT, {"ids": [f"d{i}"], "labels": [i]}, np.full((1, 2), i, np.float32))
    return wal


def test_encode_decode_and_the_frame_layout():
    frame = encode(7, OP_DELETE, {"ids": ["a"]}, None)
    length, _crc = FRAME.unpack_from(frame)
    assert length == len(frame) - FRAME.size
    seq, op, meta_len = HEADER.unpack_from(frame, FRAME.size)
    assert (seq, op, meta_len) == (7, OP_DELETE, len(b'{"ids":["a"]}'))
    record = decode(frame[FRAME.size:], 2)
    assert (record.seq, record.op, record.meta, record.vectors) == (7, OP_DELETE, {"ids": ["a"]},
                                                                    None)
    vec = np.arange(6, dtype=np.float32).reshape(3, 2)
    back = decode(encode(1, OP_UPSERT, {}, vec)[FRAME.size:], 2)
    assert back.vectors.shape == (3, 2) and np.array_equal(back.vectors, vec)


def test_open_report_and_positions(tmp_path):
    wal = _log(tmp_path, 4)
    assert wal.last_seq == 4 and wal.first_seq() == 1
    wal.close()
    reopened = WriteAheadLog(tmp_path)
    report = reopened.open()
    assert (report.records, report.last_seq, report.truncations) == (4, 4, [])
    seq, token = reopened.append(OP_DELETE, {"ids": ["d0"], "labels": [0]})
    assert seq == 5 and token == 1
    assert [r.seq for r in reopened.replay(2, 2)] == [3, 4, 5]
    reopened.close()
    empty = WriteAheadLog(tmp_path / "empty")
    report = empty.open(min_seq=41)
    assert report.last_seq == 41 and empty.last_seq == 41 and empty.first_seq() is None
    assert empty.append(OP_DELETE, {"ids": []})[0] == 42
    assert [p.name for p in empty.segments()] == [f"{42:020d}.wal"]
    empty.close()


def test_a_torn_tail_is_reported_exactly_and_logged(tmp_path, caplog):
    _log(tmp_path, 3).close()
    (segment,) = sorted(tmp_path.glob("*.wal"))
    size = segment.stat().st_size
    with open(segment, "ab") as fh:
        fh.write(b"\x40\x00\x00\x00\x01\x02")
    caplog.set_level(logging.WARNING, "akidb.wal")
    wal = WriteAheadLog(tmp_path)
    report = wal.open()
    (cut,) = report.truncations
    assert (cut.path, cut.offset, cut.dropped_bytes) == (str(segment), size, 6)
    assert cut.reason == "incomplete frame header" or "runs past" in cut.reason
    assert segment.stat().st_size == size and report.records == 3
    assert f"{segment}: torn tail at offset {size}" in caplog.text and "dropped 6 bytes" \
        in caplog.text
    wal.close()


def test_repair_reports_the_cut_and_the_later_segments_it_drops(tmp_path, caplog):
    wal = _log(tmp_path, 6, segment_bytes=120)
    wal.close()
    segments = sorted(tmp_path.glob("*.wal"))
    assert len(segments) >= 3
    data = bytearray(segments[0].read_bytes())
    data[FRAME.size + 3] ^= 0xFF
    segments[0].write_bytes(bytes(data))
    with pytest.raises(WalCorruption) as info:
        WriteAheadLog(tmp_path).open()
    assert info.value.path == segments[0] and info.value.offset == 0
    assert info.value.reason == "CRC mismatch" and "--repair" in str(info.value)
    caplog.set_level(logging.WARNING, "akidb.wal")
    repaired = WriteAheadLog(tmp_path)
    report = repaired.open(repair=True)
    first, *later = report.truncations
    assert (first.path, first.offset, first.reason) == (str(segments[0]), 0, "CRC mismatch")
    assert [t.path for t in later] == [str(p) for p in segments[1:]]
    assert all(t.offset == 0 and t.reason == "after repaired corruption" and t.dropped_bytes > 0
               for t in later)
    assert "repair at offset 0" in caplog.text
    assert [p.name for p in repaired.segments()] == [segments[0].name]
    repaired.close()


def test_segments_rotate_seal_and_truncate(tmp_path):
    sealed = []
    wal = WriteAheadLog(tmp_path, segment_bytes=100)
    wal.on_seal = lambda path, first, last: sealed.append((path.name, first, last))
    wal.open()
    for i in range(5):
        wal.append(OP_DELETE, {"ids": [f"id-{i:04d}"], "labels": [i]})
    info = wal.segment_info()
    assert [s for s, _p, _sealed, _b in info] == [int(p.name[:-4]) for p in wal.segments()]
    assert [sealed_ for _s, _p, sealed_, _b in info] == [True] * (len(info) - 1) + [False]
    assert sum(b for *_x, b in info) == wal.size_bytes()
    assert sealed and sealed[0][1] == 1 and all(f <= last for _n, f, last in sealed)
    assert [first for _n, first, _l in sealed] == sorted(first for _n, first, _l in sealed)
    wal.truncate_through(wal.last_seq)
    assert wal.size_bytes() == 0 and wal.first_seq() is None
    assert wal.append(OP_DELETE, {"ids": ["after"]})[0] == 6
    assert wal.first_seq() == 6
    wal.close()


def test_undo_cuts_only_the_last_record(tmp_path):
    wal = _log(tmp_path, 2)
    size = wal.size_bytes()
    seq, _token = wal.append(OP_DELETE, {"ids": ["x"]})
    assert not wal.undo(seq - 1)  # not the last one
    assert wal.undo(seq) and wal.last_seq == seq - 1 and wal.size_bytes() == size
    assert not wal.undo(seq)  # nothing left to undo
    assert wal.append(OP_DELETE, {"ids": ["y"]})[0] == seq  # the number is reused
    wal.close()
    assert [r.meta["ids"] for r in WriteAheadLog(tmp_path).replay(2, 2)] == [["y"]]


@pytest.mark.parametrize("policy", ["always", "batch", "none"])
def test_which_policy_syncs_when(tmp_path, monkeypatch, policy):
    calls: list[str] = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("fdatasync"))
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    wal = WriteAheadLog(tmp_path, fsync=policy)
    wal.open()
    calls.clear()
    _seq, token = wal.append(OP_DELETE, {"ids": ["a"]})
    after_append = list(calls)
    wal.wait_durable(token)
    after_wait = list(calls)
    wal.wait_durable(token)  # already durable: no second sync
    assert calls == after_wait
    wal.close()
    if policy == "always":
        assert after_append == ["fdatasync"] and after_wait == ["fdatasync"]
    elif policy == "batch":
        assert after_append == [] and after_wait == ["fdatasync"]
    else:
        assert after_append == [] and after_wait == []
    assert calls[len(after_wait):] == (["fsync"] if policy != "none" else [])  # at close


def test_a_failed_write_is_cut_back_out_of_the_log(tmp_path, monkeypatch):
    wal = _log(tmp_path, 1)
    size = wal.size_bytes()

    def full(fd, data):
        os.write(fd, bytes(data)[:5])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wal_module, "_write_all", full)
    with pytest.raises(OSError):
        wal.append(OP_DELETE, {"ids": ["x"]})
    assert wal.size_bytes() == size and wal.last_seq == 1
    monkeypatch.undo()
    assert wal.append(OP_DELETE, {"ids": ["y"]})[0] == 2
    wal.close()
    assert [r.seq for r in WriteAheadLog(tmp_path).replay(0, 2)] == [1, 2]
