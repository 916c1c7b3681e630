"""Index snapshots: the hnswlib graph plus the facts needed to resume the log after it.

A snapshot directory is written under a temporary name, fsynced, then renamed, so
a crash leaves either the old snapshot or the complete new one. ``meta.json``
records the log sequence number the index reflects and the index file's CRC32;
a snapshot that fails either check is skipped, never loaded.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from akidb.server.storage.fsync import fsync_path, mkdirs_durable

log = logging.getLogger("akidb.snapshot")

INDEX_FILE = "index.bin"
META_FILE = "meta.json"
# The catalogue of the documents the index holds (label, id, text, payload, norm), so the
# metadata store can be rebuilt from snapshot + log if it is ever lost.
DOCUMENTS_FILE = "documents.jsonl"


def _meta_crc(meta: dict[str, Any]) -> int:
    body = {k: v for k, v in meta.items() if k != "meta_crc32"}
    return zlib.crc32(json.dumps(body, sort_keys=True).encode())


@dataclass(frozen=True)
class Snapshot:
    path: Path
    seq: int
    meta: dict[str, Any]

    @property
    def index_path(self) -> Path:
        return self.path / INDEX_FILE


def _crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc


def write(directory: Path, seq: int, save_index: Any, meta: dict[str, Any],
          save_documents: Any = None) -> Snapshot:
    """Write a snapshot at ``seq``; ``save_index(path)`` writes the index file and
    ``save_documents(path)``, when given, the documents catalogue beside it."""
    mkdirs_durable(directory)
    final = directory / f"{seq:020d}"
    tmp = directory / f".tmp-{seq:020d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_index(tmp / INDEX_FILE)
    names = [INDEX_FILE, META_FILE]
    full_meta = dict(meta, seq=seq, created_at=time.time(),
                     index_crc32=_crc32_file(tmp / INDEX_FILE),
                     index_bytes=(tmp / INDEX_FILE).stat().st_size)
    if save_documents is not None:
        save_documents(tmp / DOCUMENTS_FILE)
        full_meta["documents_crc32"] = _crc32_file(tmp / DOCUMENTS_FILE)
        names.append(DOCUMENTS_FILE)
    full_meta["meta_crc32"] = _meta_crc(full_meta)
    (tmp / META_FILE).write_text(json.dumps(full_meta))
    for name in names:
        fsync_path(tmp / name)
    fsync_path(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_path(directory)
    for old in directory.iterdir():
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return Snapshot(final, seq, full_meta)


def load_latest(directory: Path) -> Snapshot | None:
    """The newest snapshot whose metadata parses and whose index matches its CRC."""
    if not directory.is_dir():
        return None
    for path in sorted((p for p in directory.iterdir() if p.name.isdigit()), reverse=True):
        try:
            meta = json.loads((path / META_FILE).read_text())
            # Snapshots from before the field existed carry no meta CRC.
            if "meta_crc32" in meta and _meta_crc(meta) != meta["meta_crc32"]:
                raise ValueError("meta.json differs from its own CRC32 (edited or damaged)")
            index_path = path / INDEX_FILE
            if index_path.stat().st_size != meta["index_bytes"]:
                raise ValueError("index size differs from meta.json")
            if _crc32_file(index_path) != meta["index_crc32"]:
                raise ValueError("index CRC32 differs from meta.json")
            return Snapshot(path, int(meta["seq"]), meta)
        except (OSError, ValueError, KeyError) as exc:
            log.error("skipping invalid snapshot %s: %s", path, exc)
    return None


def verify_documents(snapshot: Snapshot) -> Path:
    """The snapshot's documents catalogue, checked against meta.json (for rebuilds)."""
    path = snapshot.path / DOCUMENTS_FILE
    if "documents_crc32" not in snapshot.meta or not path.exists():
        raise ValueError(f"snapshot {snapshot.path} has no documents catalogue (written by "
                         "an older server)")
    if _crc32_file(path) != snapshot.meta["documents_crc32"]:
        raise ValueError(f"{path} differs from the CRC32 in meta.json")
    return path


def size_bytes(snapshot: Snapshot) -> int:
    return sum(p.stat().st_size for p in snapshot.path.iterdir())
