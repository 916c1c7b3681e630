"""The write-ahead log on its own: framing, torn tails, corruption, group commit."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from akidb.server.storage.wal import OP_DELETE, OP_UPSERT, WalCorruption, WriteAheadLog


def _fill(directory, n=5, fsync="always", dim=4):
    wal = WriteAheadLog(directory, fsync=fsync)
    wal.open()
    for i in range(n):
        vec = np.full((1, dim), i, dtype=np.float32)
        wal.append(OP_UPSERT, {"ids": [f"d{i}"], "labels": [i]}, vec)
    wal.close()
    return directory


def _reopen(directory, repair=False):
    wal = WriteAheadLog(directory)
    report = wal.open(repair=repair)
    records = list(wal.replay(0, 4))
    wal.close()
    return report, records


def test_append_and_replay_round_trip(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    vec = np.arange(8, dtype=np.float32).reshape(2, 4)
    seq1, _ = wal.append(OP_UPSERT, {"ids": ["a", "b"], "labels": [0, 1]}, vec)
    seq2, _ = wal.append(OP_DELETE, {"ids": ["a"], "labels": [0]})
    wal.close()
    report, records = _reopen(tmp_path)
    assert (seq1, seq2) == (1, 2)
    assert report.records == 2 and report.last_seq == 2 and not report.truncations
    assert records[0].meta["ids"] == ["a", "b"]
    assert np.array_equal(records[0].vectors, vec)
    assert records[1].op == OP_DELETE and records[1].vectors is None


@pytest.mark.parametrize("cut", [1, 5, 9, 30])
def test_torn_tail_is_truncated_and_reported(tmp_path, cut):
    _fill(tmp_path)
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) - cut])  # the last frame lost its last bytes
    report, records = _reopen(tmp_path)
    assert [r.seq for r in records] == [1, 2, 3, 4]
    assert len(report.truncations) == 1
    assert seg.stat().st_size == report.truncations[0].offset
    # The log is appendable after the cut, and the next record gets seq 5.
    wal = WriteAheadLog(tmp_path)
    wal.open()
    assert wal.append(OP_DELETE, {"ids": ["x"], "labels": [9]})[0] == 5
    wal.close()


def test_garbage_after_last_frame_is_a_torn_tail(tmp_path):
    _fill(tmp_path)
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    with open(seg, "ab") as fh:
        fh.write(b"\x00" * 7)
    report, records = _reopen(tmp_path)
    assert len(records) == 5 and report.truncations[0].dropped_bytes == 7


def test_mid_log_corruption_stops_with_file_and_offset(tmp_path):
    _fill(tmp_path)
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    data = bytearray(seg.read_bytes())
    frame = len(data) // 5
    data[frame + 20] ^= 0xFF  # inside the second record's payload
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruption) as info:
        _reopen(tmp_path)
    assert info.value.path == seg and info.value.offset == frame
    assert str(seg) in str(info.value) and f"offset {frame}" in str(info.value)
    assert seg.read_bytes() == bytes(data)  # refusing to start changed nothing


def test_corrupt_length_field_mid_log_is_not_mistaken_for_a_torn_tail(tmp_path):
    _fill(tmp_path)
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    data = bytearray(seg.read_bytes())
    frame = len(data) // 5
    data[frame + 2] = 0x7F  # length now claims far more than the file holds
    seg.write_bytes(bytes(data))
    with pytest.raises(WalCorruption):
        _reopen(tmp_path)


def test_repair_keeps_the_valid_prefix(tmp_path):
    _fill(tmp_path)
    seg = sorted(tmp_path.glob("*.wal"))[-1]
    data = bytearray(seg.read_bytes())
    frame = len(data) // 5
    data[2 * frame + 20] ^= 0xFF  # third record
    seg.write_bytes(bytes(data))
    report, records = _reopen(tmp_path, repair=True)
    assert [r.seq for r in records] == [1, 2]
    assert report.truncations[0].offset == 2 * frame


def test_truncate_through_drops_covered_segments_and_keeps_sequence(tmp_path):
    wal = WriteAheadLog(tmp_path)
    wal.open()
    for i in range(3):
        wal.append(OP_DELETE, {"ids": [str(i)], "labels": [i]})
    wal.truncate_through(3)
    assert wal.size_bytes() == 0 and wal.first_seq() is None
    wal.close()
    wal = WriteAheadLog(tmp_path)
    wal.open()
    assert wal.append(OP_DELETE, {"ids": ["n"], "labels": [7]})[0] == 4
    wal.close()


def test_group_commit_makes_every_concurrent_writer_durable(tmp_path, monkeypatch):
    """Every writer returns only after an fdatasync that began after its append
    (counted at the os boundary, in the main thread, so a failure fails the test)."""
    wal = WriteAheadLog(tmp_path, fsync="batch")
    wal.open()
    seqs: list[int] = []
    lock = threading.Lock()
    syncs: list[int] = []  # for each completed fdatasync: appends done when it began
    appended = [0]
    late: list[tuple[int, int]] = []
    real_sync = os.fdatasync

    def counting_sync(fd: int) -> None:
        with lock:
            covered = appended[0]
        real_sync(fd)
        with lock:
            syncs.append(covered)

    monkeypatch.setattr(os, "fdatasync", counting_sync)

    def writer(w: int) -> None:
        for i in range(50):
            with lock:
                seq, token = wal.append(OP_DELETE, {"ids": [f"{w}-{i}"], "labels": [i]})
                appended[0] += 1
                mine = appended[0]
            wal.wait_durable(token)
            with lock:
                if not any(covered >= mine for covered in syncs):
                    late.append((w, i))
                seqs.append(seq)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wal.close()
    assert late == [], f"returned before a sync covered the append: {late[:5]}"
    assert len(syncs) < 200, "group commit: concurrent writers should share syncs"
    assert sorted(seqs) == list(range(1, 201))
    _, records = _reopen(tmp_path)
    assert [r.seq for r in records] == list(range(1, 201))


def test_segments_rotate_at_the_size_limit(tmp_path):
    wal = WriteAheadLog(tmp_path, segment_bytes=200)
    wal.open()
    for i in range(20):
        wal.append(OP_DELETE, {"ids": [f"id-{i}"], "labels": [i]})
    wal.close()
    assert len(list(tmp_path.glob("*.wal"))) > 3
    _, records = _reopen(tmp_path)
    assert [r.seq for r in records] == list(range(1, 21))
