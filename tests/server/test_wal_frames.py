"""WAL framing at its boundaries, on hand-made frames: the smallest payload, the
largest plausible length, a frame ending exactly at the end of the file, and the
scan for a valid frame after damage reaching the very last position."""

from __future__ import annotations

import zlib

import pytest

from akidb.server.storage import wal as wal_module
from akidb.server.storage.wal import FRAME, HEADER, MAX_FRAME_BYTES

_frames = wal_module._frames
_valid_frame_after = wal_module._valid_frame_after


def frame(payload: bytes, length: int | None = None, crc: int | None = None) -> bytes:
    """A frame as the log writes it, optionally lying about its length or CRC."""
    size = (len(payload) if length is None else length).to_bytes(4, "little")
    good = zlib.crc32(payload, zlib.crc32(size))
    return size + (good if crc is None else crc).to_bytes(4, "little") + payload


def smallest() -> bytes:
    return HEADER.pack(1, wal_module.OP_UPSERT, 0)  # a header and nothing else


def test_the_smallest_payload_is_a_good_frame_with_no_problem():
    data = frame(smallest())
    assert list(_frames(data)) == [(0, FRAME.size + HEADER.size, smallest(), "")]


def test_a_length_below_the_header_is_implausible():
    short = smallest()[:-1]
    ((offset, end, payload, problem),) = _frames(frame(short))
    assert payload is None and problem == f"implausible frame length {HEADER.size - 1}"


def test_the_largest_plausible_length_is_a_torn_frame_and_one_more_is_implausible():
    (*_, problem), = _frames(frame(smallest(), length=MAX_FRAME_BYTES))
    assert problem == f"frame of {MAX_FRAME_BYTES} bytes runs past end of file"
    (*_, problem), = _frames(frame(smallest(), length=MAX_FRAME_BYTES + 1))
    assert problem == f"implausible frame length {MAX_FRAME_BYTES + 1}"


def test_a_frame_ending_exactly_at_the_end_of_the_file_is_whole():
    two = frame(smallest()) + frame(HEADER.pack(2, wal_module.OP_DELETE, 2) + b"{}")
    spans = list(_frames(two))
    assert [p for *_, p in spans] == ["", ""] and spans[-1][1] == len(two)
    cut = list(_frames(two[:-1]))
    assert cut[-1][2] is None and "runs past end of file" in cut[-1][3]
    assert cut[-1][:2] == (len(frame(smallest())), len(two))  # where it would have ended


@pytest.mark.parametrize("left", range(1, FRAME.size))
def test_fewer_bytes_than_a_frame_header_are_an_incomplete_header(left):
    data = frame(smallest()) + b"\x00" * left
    last = list(_frames(data))[-1]
    assert last == (FRAME.size + HEADER.size, len(data), None, "incomplete frame header")


def test_a_whole_header_and_nothing_more_is_a_torn_frame():
    data = frame(smallest()) + frame(smallest())[:FRAME.size]
    last = list(_frames(data))[-1]
    assert last[2] is None and last[3] == f"frame of {HEADER.size} bytes runs past end of file"


def test_a_crc_mismatch_stops_the_walk():
    bad = frame(smallest(), crc=0)
    assert list(_frames(bad + frame(smallest()))) == [(0, len(bad), None, "CRC mismatch")]


def test_the_scan_after_damage_reaches_the_last_possible_position():
    good = frame(smallest())
    for garbage in (b"", b"\xff", b"\xff" * 7, b"\xff" * 40):
        data = garbage + good  # the good frame sits at len(data) - FRAME - HEADER
        assert _valid_frame_after(data, 0), len(garbage)
        assert _valid_frame_after(data, len(garbage))  # starting exactly on it
        assert not _valid_frame_after(data, len(garbage) + 1)
    assert not _valid_frame_after(good[:-1], 0)  # one byte short: not a frame
    assert not _valid_frame_after(b"", 0)


def test_the_scan_ignores_frames_too_short_or_running_past_the_end():
    short = smallest()[:-1]
    assert not _valid_frame_after(frame(short), 0)  # CRC right, length below the header
    assert not _valid_frame_after(frame(smallest(), length=HEADER.size + 1), 0)
    assert not _valid_frame_after(frame(smallest(), crc=1), 0)


def test_a_short_write_is_continued_until_the_whole_frame_is_in_the_file(tmp_path,
                                                                           monkeypatch):
    """os.write may write less than asked (a signal, a pipe, some filesystems); the log
    keeps writing the rest rather than leaving a torn frame behind."""
    import numpy as np

    real_write = wal_module.os.write
    calls = []

    def three_bytes_at_a_time(fd, data):
        calls.append(len(data))
        return real_write(fd, bytes(data[:3]))

    log = wal_module.WriteAheadLog(tmp_path, fsync="none")
    log.open()
    monkeypatch.setattr(wal_module.os, "write", three_bytes_at_a_time)
    log.append(wal_module.OP_UPSERT, {"ids": ["a"], "labels": [0]}, np.ones((1, 4), np.float32))
    monkeypatch.setattr(wal_module.os, "write", real_write)
    log.close()
    data = log.segments()[0].read_bytes()
    ((_, end, payload, problem),) = _frames(data)
    assert problem == "" and end == len(data) and len(calls) > 10
    assert wal_module.decode(payload, 4).meta == {"ids": ["a"], "labels": [0]}
