"""Fault injectors on a stopped or running node's data: the files a crash or a bad disk
leaves behind. (Process faults — kill -9, SIGTERM, SIGSTOP — are ``harness.Node``
methods; network faults go through the Toxiproxy-API proxy; a full disk is
``Node(max_file_bytes=N)``, which caps every file the server writes.)"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from akidb.harness import Node


def wal_segments(node: Node) -> list[Path]:
    return sorted((node.data_dir / "collections").glob("*/wal/*.wal"))


def truncate_wal(node: Node, drop_bytes: int) -> Path:
    """Cut the newest WAL segment short, as a torn final write would (node stopped)."""
    if node.is_running():
        raise RuntimeError("stop or kill the node before editing its WAL")
    segment = wal_segments(node)[-1]
    data = segment.read_bytes()
    segment.write_bytes(data[: max(0, len(data) - drop_bytes)])
    return segment


def corrupt_wal(node: Node, offset: int, segment: Path | None = None) -> Path:
    """Flip one byte of a WAL segment (node stopped): bit rot in the middle of the log."""
    if node.is_running():
        raise RuntimeError("stop or kill the node before editing its WAL")
    segment = segment or wal_segments(node)[-1]
    data = bytearray(segment.read_bytes())
    if not 0 <= offset < len(data):
        raise ValueError(f"offset {offset} is outside {segment} ({len(data)} bytes)")
    data[offset] ^= 0xFF
    segment.write_bytes(bytes(data))
    return segment


def _frame_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each whole frame, walking the documented ``<u32 length><u32 crc>``
    framing (see server/storage/wal.py) without judging the contents."""
    spans, offset = [], 0
    while offset + 8 <= len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        end = offset + 8 + length
        if end > len(data):
            break
        spans.append((offset, end))
        offset = end
    return spans


def tear_wal(node: Node, seed: int = 0) -> Path:
    """Append a frame that a crash cut short: a header claiming more bytes than follow
    (node stopped). Nothing acknowledged is in it; recovery must drop only it."""
    if node.is_running():
        raise RuntimeError("stop or kill the node before editing its WAL")
    segment = wal_segments(node)[-1]
    rng = random.Random(seed)
    torn = struct.pack("<II", 4096, rng.getrandbits(32)) + rng.randbytes(rng.randint(1, 64))
    with segment.open("ab") as fh:
        fh.write(torn)
    return segment


def corrupt_wal_before_tail(node: Node, seed: int = 0) -> tuple[Path, int, int] | None:
    """Flip one byte inside a frame that is not the log's last (node stopped): damage a
    crash cannot explain, which start-up must refuse rather than drop. Returns
    (segment, offset, original byte) so the damage can be undone, or None when the log
    has no such frame yet."""
    if node.is_running():
        raise RuntimeError("stop or kill the node before editing its WAL")
    segments = wal_segments(node)
    rng = random.Random(seed)
    choices = []
    for i, segment in enumerate(segments):
        spans = _frame_spans(segment.read_bytes())
        keep = spans if i < len(segments) - 1 else spans[:-1]
        choices += [(segment, start + 8, end) for start, end in keep]
    if not choices:
        return None
    segment, start, end = rng.choice(choices)
    offset = rng.randrange(start, end)
    data = bytearray(segment.read_bytes())
    original = data[offset]
    data[offset] ^= 0xFF
    segment.write_bytes(bytes(data))
    return segment, offset, original


def restore_byte(segment: Path, offset: int, original: int) -> None:
    """Undo ``corrupt_wal_before_tail`` (the operator restoring the file from backup)."""
    data = bytearray(segment.read_bytes())
    data[offset] = original
    segment.write_bytes(bytes(data))
