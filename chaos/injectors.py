"""Fault injectors on a stopped or running node's data: the files a crash or a bad disk
leaves behind. (Process faults — kill -9, SIGTERM, SIGSTOP — are ``harness.Node``
methods; network faults go through the Toxiproxy-API proxy; a full disk is
``Node(max_file_bytes=N)``, which caps every file the server writes.)"""

from __future__ import annotations

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
