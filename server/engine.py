"""The storage engine: the metadata store plus every open collection.

It owns start-up recovery (every collection's snapshot + log replay) and the
on-disk layout of the data directory::

    DIR/metadata.db                       SQLite (WAL mode)
    DIR/collections/<id>/collection.json  the collection's identity (name, dimension, ...)
    DIR/collections/<id>/wal/*.wal        the collection's write-ahead log
    DIR/collections/<id>/snapshots/<seq>/ its newest index snapshot (+ documents catalogue)
    DIR/quarantine/                       collection directories no catalogue row claims

Nothing is ever deleted that the catalogue cannot account for: a collection's directory
is removed only after its drop is committed and a ``DROPPED`` marker is in it; any other
directory without a catalogue row is moved to ``quarantine/`` and reported.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path

from akidb.server.collection import Collection
from akidb.server.config import Settings
from akidb.server.errors import NotFound, StartupError, Unavailable
from akidb.server.recovery import RecoveryReport
from akidb.server.storage.fsync import fsync_path, mkdirs_durable
from akidb.server.storage.metadata import CollectionRow, MetadataStore
from akidb.server.storage.shipper import Shipper

log = logging.getLogger("akidb.engine")
MANIFEST = "collection.json"
DROPPED = "DROPPED"
METADATA_FILE = "metadata.db"


def collection_dirs(data_dir: Path) -> list[Path]:
    root = data_dir / "collections"
    return sorted((p for p in root.iterdir() if p.is_dir()),
                  key=lambda p: p.name) if root.is_dir() else []


def write_manifest(directory: Path, row: CollectionRow) -> None:
    """``collection.json``: what the catalogue knows of the collection, beside its data."""
    # The directory chain must be durable too, or a power loss could drop the whole
    # collection directory although every file in it was synced.
    mkdirs_durable(directory)
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(asdict(row), indent=1))
    fsync_path(tmp)
    os.replace(tmp, directory / MANIFEST)
    fsync_path(directory)


def _open_store(data_dir: Path, rebuild: bool) -> MetadataStore:
    path = data_dir / METADATA_FILE
    dirs = [d for d in collection_dirs(data_dir) if not (d / DROPPED).exists()]
    if rebuild:
        if path.exists():
            raise StartupError(f"--rebuild-metadata: {path} exists; move it (and "
                               f"{path.name}-wal, {path.name}-shm) aside first")
        from akidb.server.rebuild import rebuild_catalogue

        store = MetadataStore(path)
        rebuild_catalogue(store, dirs)
        return store
    if not path.exists() and dirs:
        raise StartupError(
            f"{path} is missing but {data_dir / 'collections'} holds the logs and snapshots "
            f"of {len(dirs)} collection(s) ({', '.join(d.name for d in dirs[:10])}). "
            "Refusing to start with an empty catalogue, which would orphan them. Restore "
            f"{path.name} from a backup (or start an empty directory with --restore-from), "
            "or start with --rebuild-metadata to rebuild the catalogue and documents from "
            "the collections' snapshots and logs")
    try:
        return MetadataStore(path)
    except sqlite3.DatabaseError as exc:
        raise StartupError(
            f"{path} cannot be read as a SQLite database ({exc}). Restore it from a backup "
            "or --restore-from; or move it (with its -wal and -shm files) aside and start "
            "with --rebuild-metadata to rebuild it from the collections' snapshots and "
            "logs") from None


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = _open_store(self.data_dir, settings.rebuild_metadata)
        self.quarantined: list[str] = []
        self._collections: dict[int, Collection] = {}
        self._by_path: dict[tuple[str, str, str], Collection] = {}
        self._lock = threading.Lock()
        self.ready = False
        self.recovery_seconds: float | None = None
        self.recovery_reports: list[RecoveryReport] = []
        self._stop = threading.Event()
        self._snapshotter: threading.Thread | None = None
        self.shipper: Shipper | None = None  # set before recover() to ship to S3

    def _hook(self, coll: Collection) -> None:
        shipper = self.shipper
        if shipper is None:
            return
        cid = coll.row.id
        coll.wal.on_seal = lambda path, first, last: shipper.segment_sealed(cid, path, first,
                                                                            last)
        coll.on_snapshot = lambda snap: shipper.snapshot_taken(cid, snap.path)

    def _collection_dir(self, collection_id: int) -> Path:
        return self.data_dir / "collections" / str(collection_id)

    def recover(self) -> list[RecoveryReport]:
        """Open every collection: newest valid snapshot, then log replay."""
        started = time.perf_counter()
        known = set()
        for row in self.store.list_collections():
            coll = Collection(row, self.store, self._collection_dir(row.id), self.settings)
            self._hook(coll)
            report = coll.open(repair=self.settings.repair)
            self.recovery_reports.append(report)
            self._register(coll)
            known.add(str(row.id))
            if not (coll.dir / MANIFEST).exists():
                write_manifest(coll.dir, row)  # directories from before manifests existed
            log.info("recovered %s: %d documents, snapshot seq %s, %d log records replayed"
                     " in %.3fs", row.path, coll.count, report.snapshot_seq,
                     report.replayed_records, report.seconds)
        for leftover in collection_dirs(self.data_dir):
            if leftover.name not in known:
                self._remove_or_quarantine(leftover)
        self.recovery_seconds = time.perf_counter() - started
        self.ready = True
        if self.settings.snapshot_wal_bytes > 0:
            self._snapshotter = threading.Thread(target=self._snapshot_loop, name="snapshotter",
                                                 daemon=True)
            self._snapshotter.start()
        return self.recovery_reports

    def _snapshot_loop(self) -> None:
        s = self.settings
        while not self._stop.wait(s.snapshot_check_s):
            for coll in self.collections():
                try:
                    if coll.needs_snapshot(s.snapshot_wal_bytes, s.snapshot_wal_ratio,
                                           s.snapshot_min_vectors):
                        started = time.perf_counter()
                        snap = coll.snapshot()
                        log.info("automatic snapshot of %s at seq %d in %.2fs", coll.row.path,
                                 snap.seq, time.perf_counter() - started)
                except Exception:
                    if coll.row.id in self._collections:  # not just dropped under us
                        log.exception("automatic snapshot of %s failed", coll.row.path)

    def _register(self, coll: Collection) -> None:
        with self._lock:
            self._collections[coll.row.id] = coll
            self._by_path[(coll.row.tenant, coll.row.database, coll.row.name)] = coll

    def collection(self, tenant: str, database: str, name: str) -> Collection:
        if not self.ready:
            raise Unavailable("server is recovering; retry when /ready answers 200")
        coll = self._by_path.get((tenant, database, name))
        if coll is None:
            self.store.get_collection(tenant, database, name)  # precise NotFound
            raise NotFound(f"collection {tenant}/{database}/{name} not found")
        return coll

    def create_collection(self, tenant: str, database: str, name: str, *, dimension: int,
                          metric: str, m: int, ef_construction: int, ef_search: int,
                          embedding: str | None = None) -> Collection:
        row = self.store.create_collection(tenant, database, name, dimension=dimension,
                                           metric=metric, m=m, ef_construction=ef_construction,
                                           ef_search=ef_search, embedding=embedding)
        directory = self._collection_dir(row.id)
        if directory.exists():
            self._remove_or_quarantine(directory)
        write_manifest(directory, row)
        coll = Collection(row, self.store, directory, self.settings)
        self._hook(coll)
        coll.open()
        self._register(coll)
        return coll

    def collections(self) -> list[Collection]:
        return list(self._collections.values())

    def drop_collections(self, ids: list[int]) -> None:
        """Forget collections already deleted from SQLite and remove their files."""
        with self._lock:
            for cid in ids:
                coll = self._collections.pop(cid, None)
                if coll is None:
                    continue
                self._by_path.pop((coll.row.tenant, coll.row.database, coll.row.name), None)
                coll.close()
                _mark_dropped(coll.dir)
                shutil.rmtree(coll.dir, ignore_errors=True)

    def _remove_or_quarantine(self, directory: Path) -> None:
        """A collection directory no catalogue row claims: finish a drop that a crash
        interrupted (it carries the DROPPED marker), otherwise keep it aside."""
        if (directory / DROPPED).exists():
            shutil.rmtree(directory, ignore_errors=True)
            return
        target = self.data_dir / "quarantine" / f"{directory.name}-{int(time.time())}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(directory, target)
        fsync_path(target.parent)
        fsync_path(directory.parent)
        self.quarantined.append(str(target))
        log.error("%s has no entry in the catalogue; moved it to %s instead of deleting it "
                  "(see README: recovery)", directory, target)

    def recovery_repairs(self) -> dict[str, int]:
        """What recovery had to repair, summed over collections (for /metrics)."""
        reports = self.recovery_reports
        return {"documents_reindexed": sum(r.index_from_store for r in reports),
                "stale_labels_removed": sum(r.index_removed for r in reports),
                "indexes_rebuilt": sum(r.index_rebuilt for r in reports),
                "log_truncations": sum(len(r.truncations) for r in reports),
                "lost_record_ranges": sum(len(r.lost_records) for r in reports),
                "quarantined_directories": len(self.quarantined)}

    def close(self) -> None:
        self._stop.set()
        if self._snapshotter is not None:
            self._snapshotter.join(timeout=60)
        with self._lock:
            for coll in self._collections.values():
                try:
                    coll.close()
                except Exception:
                    log.exception("closing %s", coll.row.path)
        self.store.close()


def _mark_dropped(directory: Path) -> None:
    """The drop is committed in SQLite: mark the directory so a crash during its removal
    leaves a leftover that recovery knows it may delete."""
    if directory.is_dir():
        (directory / DROPPED).write_text("dropped\n")
        fsync_path(directory)
