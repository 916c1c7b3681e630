"""The storage engine: the metadata store plus every open collection.

It owns start-up recovery (every collection's snapshot + log replay) and the
on-disk layout of the data directory::

    DIR/metadata.db                       SQLite (WAL mode)
    DIR/collections/<id>/wal/*.wal        the collection's write-ahead log
    DIR/collections/<id>/snapshots/<seq>/ its newest index snapshot
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

from server.collection import Collection, RecoveryReport
from server.config import Settings
from server.errors import NotFound, Unavailable
from server.storage.metadata import MetadataStore
from server.storage.shipper import Shipper

log = logging.getLogger("akidb.engine")


class Engine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = MetadataStore(self.data_dir / "metadata.db")
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
            log.info("recovered %s: %d documents, snapshot seq %s, %d log records replayed"
                     " in %.3fs", row.path, coll.count, report.snapshot_seq,
                     report.replayed_records, report.seconds)
        root = self.data_dir / "collections"
        if root.is_dir():
            for leftover in root.iterdir():
                if leftover.name not in known:
                    # A collection dropped (or never committed) before a crash.
                    shutil.rmtree(leftover, ignore_errors=True)
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
        shutil.rmtree(directory, ignore_errors=True)
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
                shutil.rmtree(coll.dir, ignore_errors=True)

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
