"""Rebuild a data dir from the object store: newest metadata backup, then per collection
the newest usable snapshot and the log segments after it, every object checksum-verified.

A snapshot is used only when the log from its sequence number up to what the
metadata backup holds is in the bucket too; otherwise the index is rebuilt from
the vectors in the metadata (slower, same result). Segments past the backup are
replayed by the normal recovery, so acknowledged writes shipped after the last
backup come back as well. Any corrupt object aborts the restore before the
server loads anything, and the files written so far are removed.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from akidb.server.storage.objectstore import ObjectStore

log = logging.getLogger("akidb.restore")


class RestoreError(RuntimeError):
    pass


@dataclass
class RestoreReport:
    metadata_key: str = ""
    collections: dict[str, dict[str, object]] = field(default_factory=dict)
    objects: int = 0
    bytes: int = 0
    seconds: float = 0.0


def restore(data_dir: Path, store: ObjectStore) -> RestoreReport:
    if (data_dir / "metadata.db").exists():
        raise RestoreError(f"{data_dir} already holds a database; restore only into an "
                           "empty data dir")
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        report = _restore(data_dir, store, written)
    except BaseException:
        for path in reversed(written):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _restore(data_dir: Path, store: ObjectStore, written: list[Path]) -> RestoreReport:
    loc = store.location
    report = RestoreReport()
    objects = dict(store.list(loc.key()))
    backups = sorted(k for k in objects if k.startswith(loc.key("metadata") + "/"))
    if not backups:
        raise RestoreError(f"no metadata backup under {loc} (nothing was shipped there yet: a "
                           "server ships at every snapshot)")

    def fetch(key: str, dest: Path) -> None:
        written.append(dest)
        store.download(key, dest)
        report.objects += 1
        report.bytes += objects[key]

    report.metadata_key = backups[-1]
    fetch(backups[-1], data_dir / "metadata.db")
    with sqlite3.connect(data_dir / "metadata.db") as db:
        rows = db.execute("SELECT c.id, t.name || '/' || d.name || '/' || c.name, c.applied_seq"
                          " FROM collections c JOIN databases d ON d.id = c.database_id"
                          " JOIN tenants t ON t.id = d.tenant_id").fetchall()
        # Bookkeeping of the old machine's files: rewritten by recovery on this one.
        db.execute("DELETE FROM wal_segments")
        db.execute("DELETE FROM snapshots")
    written.append(data_dir / "collections")
    for cid, path, applied in rows:
        base = loc.key("collections", str(cid))
        segments = [k for k in objects if k.startswith(base + "/wal/")]
        snaps: dict[int, set[str]] = {}
        for k in objects:
            if k.startswith(base + "/snapshots/"):
                seq_part, name = k[len(base) + len("/snapshots/"):].split("/", 1)
                snaps.setdefault(int(seq_part), set()).add(name)
        complete = sorted(s for s, names in snaps.items()
                          if {"index.bin", "meta.json"} <= names and s <= applied)
        chosen = None
        for seq in reversed(complete):
            if seq == applied or _covers(segments, seq + 1, applied):
                chosen = seq
                break
        start = applied if chosen is None else chosen
        cdir = data_dir / "collections" / str(cid)
        if chosen is not None:
            sdir = cdir / "snapshots" / f"{chosen:020d}"
            for name in ("index.bin", "meta.json"):
                fetch(f"{base}/snapshots/{chosen:020d}/{name}", sdir / name)
            json.loads((sdir / "meta.json").read_text())  # a torn meta.json fails here
        needed = _chain(segments, start + 1)
        for key in needed:  # back to the local name: <first>.wal
            fetch(key, cdir / "wal" / f"{_range(key)[0]:020d}.wal")
        (cdir / "wal").mkdir(parents=True, exist_ok=True)
        report.collections[path] = {"applied_seq": applied, "snapshot_seq": chosen,
                                    "segments": len(needed)}
        log.info("restore %s: metadata at seq %d, snapshot %s, %d log segments", path,
                 applied, chosen, len(needed))
    return report


def _range(key: str) -> tuple[int, int]:
    """A shipped segment's key names its first and last record: ``<first>-<last>.wal``."""
    first, last = key.rsplit("/", 1)[-1].removesuffix(".wal").split("-")
    return int(first), int(last)


def _chain(segments: list[str], first_needed: int) -> list[str]:
    """The contiguous run of shipped segments from the one holding ``first_needed``."""
    ranges = sorted((_range(k), k) for k in segments)
    chain: list[str] = []
    expect = first_needed
    for (first, last), key in ranges:
        if last < expect:
            continue
        if first > expect:
            break  # a gap: not shipped (yet)
        chain.append(key)
        expect = last + 1
    return chain


def _covers(segments: list[str], first: int, last: int) -> bool:
    """Do the shipped segments hold every record ``first..last``?"""
    chain = _chain(segments, first)
    return bool(chain) and _range(chain[-1])[1] >= last

