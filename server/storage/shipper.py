"""Ships completed snapshots, sealed WAL segments and metadata backups to the object store.

The queue lives in ``DIR/ship-queue.db`` (SQLite), so what was not yet shipped
when the process stopped is shipped after the restart. One background thread
uploads in order, retrying with exponential backoff while the store is down;
the server keeps serving from its local files meanwhile, and the backlog shows
in ``/metrics`` and ``/ready``. A queued file that no longer exists locally was
superseded (a newer snapshot covers it) and is dropped.

Object layout under the prefix::

    metadata/<ms>.db                               consistent SQLite backups
    collections/<id>/snapshots/<seq>/index.bin     index snapshots (meta.json last)
    collections/<id>/wal/<first>-<last>.wal        sealed log segments (record range)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from akidb.server import tracing
from akidb.server.storage.objectstore import ObjectStore, ObjectStoreError

log = logging.getLogger("akidb.shipper")

QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('metadata', 'snapshot', 'segment')),
    path TEXT NOT NULL,
    key TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
) STRICT;
"""


class Shipper:
    def __init__(self, data_dir: Path, store: ObjectStore, backup_metadata: Any,
                 max_backoff_s: float = 30.0) -> None:
        """``backup_metadata(dest)`` writes a consistent copy of metadata.db to ``dest``."""
        self.data_dir = data_dir
        self.store = store
        self.backup_metadata = backup_metadata
        self.max_backoff_s = max_backoff_s
        self.backup_dir = data_dir / "ship-backups"
        self.backup_dir.mkdir(exist_ok=True)
        self._db = sqlite3.connect(data_dir / "ship-queue.db", check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(QUEUE_SCHEMA)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.uploaded_objects = 0
        self.uploaded_bytes = 0
        self.upload_seconds = 0.0  # time inside successful uploads (hashing included)
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self.failing_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="shipper", daemon=True)

    def start(self) -> Shipper:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            self._db.close()

    # -- producers (called from the storage engine) -----------------------------------
    def _enqueue(self, kind: str, path: Path, key: str) -> None:
        size = path.stat().st_size if path.exists() else 0
        with self._lock:
            self._db.execute("INSERT INTO queue (kind, path, key, bytes, enqueued_at)"
                             " VALUES (?, ?, ?, ?, ?)", (kind, str(path), key, size, time.time()))
        self._wake.set()

    def segment_sealed(self, collection_id: int, path: Path, first: int, last: int) -> None:
        """A segment holding records ``first..last`` will not change any more."""
        if last < first:
            return  # empty
        self._enqueue("segment", path,
                      self.store.location.key("collections", str(collection_id), "wal",
                                              f"{first:020d}-{last:020d}.wal"))

    def snapshot_taken(self, collection_id: int, snapshot_dir: Path) -> None:
        """The index file first and meta.json last: a snapshot whose meta.json is in the
        bucket is complete. Then a metadata backup taken after it."""
        base = ("collections", str(collection_id), "snapshots", snapshot_dir.name)
        for name in ("index.bin", "meta.json"):
            self._enqueue("snapshot", snapshot_dir / name,
                          self.store.location.key(*base, name))
        self.ship_metadata()

    def ship_metadata(self) -> None:
        """Back up metadata.db now and queue it, dropping older backups not yet shipped
        (the newest supersedes them)."""
        stamp = f"{int(time.time() * 1000):015d}"
        dest = self.backup_dir / f"{stamp}.db"
        self.backup_metadata(dest)
        with self._lock:
            stale = self._db.execute("SELECT id, path FROM queue WHERE kind = 'metadata'"
                                     ).fetchall()
            for row_id, path in stale:
                self._db.execute("DELETE FROM queue WHERE id = ?", (row_id,))
                Path(path).unlink(missing_ok=True)
        self._enqueue("metadata", dest, self.store.location.key("metadata", dest.name))

    # -- the uploader -----------------------------------------------------------------
    def backlog(self) -> tuple[int, int]:
        with self._lock:
            count, size = self._db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM queue"
                                           ).fetchone()
        return int(count), int(size)

    def status(self) -> dict[str, Any]:
        count, size = self.backlog()
        return {"target": str(self.store.location), "backlog_objects": count,
                "backlog_bytes": size, "uploaded_objects": self.uploaded_objects,
                "uploaded_bytes": self.uploaded_bytes,
                "upload_seconds": round(self.upload_seconds, 4), "last_error": self.last_error,
                "state": "retrying" if self.failing_since else "ok",
                "last_success_at": self.last_success_at}

    def _next(self) -> tuple[int, str, str, str] | None:
        with self._lock:
            return self._db.execute("SELECT id, kind, path, key FROM queue ORDER BY id LIMIT 1"
                                    ).fetchone()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            item = self._next()
            if item is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            row_id, kind, path_text, key = item
            path = Path(path_text)
            if not path.exists():
                log.info("dropping %s from the upload queue: superseded locally", key)
                with self._lock:
                    self._db.execute("DELETE FROM queue WHERE id = ?", (row_id,))
                continue
            try:
                size = path.stat().st_size
                began = time.perf_counter()
                # Its own trace: shipping runs behind the writes, not inside a request.
                with tracing.span("objectstore.upload", **{"akidb.key": key,
                                                           "akidb.kind": kind,
                                                           "akidb.bytes": size}):
                    self.store.upload(path, key)
                took = time.perf_counter() - began
            except (ObjectStoreError, OSError) as exc:
                failures += 1
                self.last_error = str(exc)[:300]
                self.failing_since = self.failing_since or time.time()
                with self._lock:
                    self._db.execute("UPDATE queue SET attempts = attempts + 1, last_error = ?"
                                     " WHERE id = ?", (self.last_error, row_id))
                delay = min(self.max_backoff_s, 0.25 * 2 ** min(failures, 10))
                if failures == 1 or failures % 10 == 0:
                    log.warning("upload of %s failed (%d in a row), retrying in %.1fs: %s",
                                key, failures, delay, self.last_error)
                self._stop.wait(delay)
                continue
            failures = 0
            self.failing_since = None
            self.uploaded_objects += 1
            self.uploaded_bytes += size
            self.upload_seconds += took
            self.last_success_at = time.time()
            with self._lock:
                self._db.execute("DELETE FROM queue WHERE id = ?", (row_id,))
            if kind == "metadata":
                path.unlink(missing_ok=True)  # a shipping copy only
