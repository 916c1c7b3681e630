"""SQLite metadata store: tenants → databases → collections → documents.

SQLite runs in WAL journal mode with STRICT tables; document text is indexed by
FTS5 (external content, kept in sync by triggers). One writer connection is
shared under a lock; each reader thread has its own connection, so searches
never wait for a write transaction.

Document writes use ``synchronous=NORMAL``: the project's own write-ahead log is
what makes an acknowledged write durable, and ``collections.applied_seq`` (updated
in the same transaction) tells recovery which log records SQLite already holds.
Control-plane changes commit with ``synchronous=FULL`` because no log covers them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from akidb.server.errors import AlreadyExists, NotFound

MIGRATIONS: list[str] = [
    # 1: the hierarchy, documents with FTS5, snapshots and WAL segment bookkeeping.
    """
    CREATE TABLE tenants (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        quotas TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    ) STRICT;
    CREATE TABLE databases (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (tenant_id, name)
    ) STRICT;
    CREATE TABLE collections (
        id INTEGER PRIMARY KEY,
        database_id INTEGER NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        dimension INTEGER NOT NULL,
        metric TEXT NOT NULL CHECK (metric IN ('cosine', 'l2', 'ip')),
        m INTEGER NOT NULL,
        ef_construction INTEGER NOT NULL,
        ef_search INTEGER NOT NULL,
        applied_seq INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        UNIQUE (database_id, name)
    ) STRICT;
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        ext_id TEXT NOT NULL,
        label INTEGER NOT NULL,
        text TEXT,
        payload TEXT NOT NULL DEFAULT '{}',
        vector BLOB,
        seq INTEGER NOT NULL,
        UNIQUE (collection_id, ext_id)
    ) STRICT;
    CREATE INDEX documents_label ON documents (collection_id, label);
    CREATE VIRTUAL TABLE documents_fts USING fts5 (
        text, content='documents', content_rowid='id'
    );
    CREATE TRIGGER documents_ai AFTER INSERT ON documents WHEN new.text IS NOT NULL BEGIN
        INSERT INTO documents_fts (rowid, text) VALUES (new.id, new.text);
    END;
    CREATE TRIGGER documents_ad AFTER DELETE ON documents WHEN old.text IS NOT NULL BEGIN
        INSERT INTO documents_fts (documents_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END;
    CREATE TRIGGER documents_au AFTER UPDATE OF text ON documents
    WHEN old.text IS NOT new.text BEGIN
        INSERT INTO documents_fts (documents_fts, rowid, text)
            SELECT 'delete', old.id, old.text WHERE old.text IS NOT NULL;
        INSERT INTO documents_fts (rowid, text) SELECT new.id, new.text WHERE new.text IS NOT NULL;
    END;
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        path TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at REAL NOT NULL
    ) STRICT;
    CREATE TABLE wal_segments (
        collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
        start_seq INTEGER NOT NULL,
        path TEXT NOT NULL,
        sealed INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (collection_id, start_seq)
    ) STRICT;
    """,
    # 2: users, hashed API keys, per-tenant Cedar policies, and the audit log.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'viewer', 'auditor')),
        created_at REAL NOT NULL,
        UNIQUE (tenant_id, name)
    ) STRICT;
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        salt BLOB NOT NULL,
        hash BLOB NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    ) STRICT;
    CREATE TABLE tenant_policies (
        tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
        policies TEXT NOT NULL,
        updated_at REAL NOT NULL
    ) STRICT;
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        tenant TEXT,
        principal TEXT NOT NULL,
        action TEXT NOT NULL,
        resource TEXT NOT NULL,
        decision TEXT NOT NULL,
        detail TEXT
    ) STRICT;
    CREATE INDEX audit_log_tenant ON audit_log (tenant, id);
    """,
    # 3: collections that embed their documents' text with a named model.
    """
    ALTER TABLE collections ADD COLUMN embedding TEXT
        CHECK (embedding IS NULL OR embedding IN ('minilm'));
    """,
]


@dataclass(frozen=True)
class UserKey:
    """What an API key id resolves to."""

    key_id: str
    user: str
    tenant: str
    role: str
    salt: bytes
    hash: bytes
    revoked: bool
    tenant_id: int = 0


@dataclass(frozen=True)
class CollectionRow:
    id: int
    tenant: str
    database: str
    name: str
    dimension: int
    metric: str
    m: int
    ef_construction: int
    ef_search: int
    applied_seq: int
    created_at: float
    embedding: str | None = None

    @property
    def path(self) -> str:
        return f"{self.tenant}/{self.database}/{self.name}"


@dataclass(frozen=True)
class DocumentRow:
    ext_id: str
    label: int
    text: str | None
    payload: dict[str, Any]
    vector: bytes | None


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class MetadataStore:
    """All SQL of the server lives here; callers get plain rows and dataclasses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write = _connect(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._migrate()

    # -- connections -------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._write
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        with self._write_lock:
            self._write.close()
        with self._readers_lock:
            for conn in self._readers:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._readers.clear()

    def backup(self, dest: Path) -> None:
        """A consistent copy of the whole database (SQLite's online backup), for shipping."""
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.unlink(missing_ok=True)
        src = sqlite3.connect(self.path)
        try:
            dst = sqlite3.connect(tmp)
            with dst:
                src.backup(dst)
            dst.close()
        finally:
            src.close()
        os.replace(tmp, dest)

    def checkpoint(self) -> None:
        """Make every committed transaction durable in the main database file."""
        with self._write_lock:
            self._write.execute("PRAGMA synchronous=FULL")
            self._write.execute("PRAGMA wal_checkpoint(FULL)")
            self._write.execute("PRAGMA synchronous=NORMAL")

    def _migrate(self) -> None:
        with self._tx(durable=True) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL) STRICT"
            )
            current = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            if current > len(MIGRATIONS):
                raise RuntimeError(
                    f"{self.path}: schema version {current} is newer than this server "
                    f"({len(MIGRATIONS)}); upgrade akidb"
                )
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _split_sql(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

    def schema_version(self) -> int:
        return self._reader().execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    # -- tenants and databases ---------------------------------------------------------
    def create_tenant(self, name: str, quotas: dict[str, Any]) -> dict[str, Any]:
        try:
            with self._tx(durable=True) as conn:
                conn.execute(
                    "INSERT INTO tenants (name, quotas, created_at) VALUES (?, ?, ?)",
                    (name, json.dumps(quotas), time.time()),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"tenant {name!r} already exists") from None
        return self.get_tenant(name)

    def get_tenant(self, name: str) -> dict[str, Any]:
        row = self._reader().execute(
            "SELECT id, name, quotas, created_at FROM tenants WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"tenant {name!r} not found")
        return {"id": row[0], "name": row[1], "quotas": json.loads(row[2]), "created_at": row[3]}

    def list_tenants(self) -> list[dict[str, Any]]:
        rows = self._reader().execute("SELECT name FROM tenants ORDER BY name").fetchall()
        return [self.get_tenant(r[0]) for r in rows]

    def delete_tenant(self, name: str) -> list[int]:
        """Delete a tenant and everything under it; returns the dropped collection ids."""
        tenant = self.get_tenant(name)
        with self._tx(durable=True) as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT c.id FROM collections c JOIN databases d ON d.id = c.database_id"
                    " WHERE d.tenant_id = ?",
                    (tenant["id"],),
                )
            ]
            for cid in ids:
                conn.execute("DELETE FROM documents WHERE collection_id = ?", (cid,))
            conn.execute("DELETE FROM tenants WHERE id = ?", (tenant["id"],))
        return ids

    def create_database(self, tenant: str, name: str) -> dict[str, Any]:
        tenant_id = self.get_tenant(tenant)["id"]
        try:
            with self._tx(durable=True) as conn:
                conn.execute(
                    "INSERT INTO databases (tenant_id, name, created_at) VALUES (?, ?, ?)",
                    (tenant_id, name, time.time()),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"database {tenant}/{name} already exists") from None
        return self.get_database(tenant, name)

    def get_database(self, tenant: str, name: str) -> dict[str, Any]:
        row = self._reader().execute(
            "SELECT d.id, d.name, d.created_at FROM databases d JOIN tenants t"
            " ON t.id = d.tenant_id WHERE t.name = ? AND d.name = ?",
            (tenant, name),
        ).fetchone()
        if row is None:
            self.get_tenant(tenant)
            raise NotFound(f"database {tenant}/{name} not found")
        return {"id": row[0], "tenant": tenant, "name": row[1], "created_at": row[2]}

    def list_databases(self, tenant: str) -> list[dict[str, Any]]:
        self.get_tenant(tenant)
        rows = self._reader().execute(
            "SELECT d.name FROM databases d JOIN tenants t ON t.id = d.tenant_id"
            " WHERE t.name = ? ORDER BY d.name",
            (tenant,),
        ).fetchall()
        return [self.get_database(tenant, r[0]) for r in rows]

    def delete_database(self, tenant: str, name: str) -> list[int]:
        db = self.get_database(tenant, name)
        with self._tx(durable=True) as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM collections WHERE database_id = ?", (db["id"],)
                )
            ]
            for cid in ids:
                conn.execute("DELETE FROM documents WHERE collection_id = ?", (cid,))
            conn.execute("DELETE FROM databases WHERE id = ?", (db["id"],))
        return ids

    # -- users, keys, policies, audit ---------------------------------------------------
    def create_user(self, tenant: str, name: str, role: str, key_id: str, salt: bytes,
                    key_hash: bytes) -> dict[str, Any]:
        tenant_id = self.get_tenant(tenant)["id"]
        now = time.time()
        try:
            with self._tx(durable=True) as conn:
                cur = conn.execute(
                    "INSERT INTO users (tenant_id, name, role, created_at) VALUES (?, ?, ?, ?)",
                    (tenant_id, name, role, now))
                conn.execute(
                    "INSERT INTO api_keys (key_id, user_id, salt, hash, created_at)"
                    " VALUES (?, ?, ?, ?, ?)", (key_id, cur.lastrowid, salt, key_hash, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"user {name!r} already exists in tenant {tenant!r}") from None
        return {"id": int(cur.lastrowid), "name": name, "role": role, "tenant": tenant}

    def list_users(self, tenant: str) -> list[dict[str, Any]]:
        tenant_id = self.get_tenant(tenant)["id"]
        rows = self._reader().execute(
            "SELECT u.id, u.name, u.role, u.created_at, COUNT(k.key_id) FROM users u"
            " LEFT JOIN api_keys k ON k.user_id = u.id AND k.revoked_at IS NULL"
            " WHERE u.tenant_id = ? GROUP BY u.id ORDER BY u.name", (tenant_id,)).fetchall()
        return [{"id": r[0], "name": r[1], "role": r[2], "created_at": r[3], "active_keys": r[4]}
                for r in rows]

    def _user_id(self, tenant: str, user: str) -> int:
        row = self._reader().execute(
            "SELECT u.id FROM users u JOIN tenants t ON t.id = u.tenant_id"
            " WHERE t.name = ? AND u.name = ?", (tenant, user)).fetchone()
        if row is None:
            self.get_tenant(tenant)
            raise NotFound(f"user {user!r} not found in tenant {tenant!r}")
        return int(row[0])

    def add_key(self, tenant: str, user: str, key_id: str, salt: bytes, key_hash: bytes) -> None:
        user_id = self._user_id(tenant, user)
        with self._tx(durable=True) as conn:
            conn.execute("INSERT INTO api_keys (key_id, user_id, salt, hash, created_at)"
                         " VALUES (?, ?, ?, ?, ?)", (key_id, user_id, salt, key_hash, time.time()))

    def revoke_keys(self, tenant: str, user: str, key_id: str | None = None) -> list[str]:
        """Revoke one key of a user, or all of them; returns the revoked key ids."""
        user_id = self._user_id(tenant, user)
        with self._tx(durable=True) as conn:
            sql = "SELECT key_id FROM api_keys WHERE user_id = ? AND revoked_at IS NULL"
            params: tuple[Any, ...] = (user_id,)
            if key_id is not None:
                sql += " AND key_id = ?"
                params += (key_id,)
            ids = [r[0] for r in conn.execute(sql, params)]
            if key_id is not None and not ids:
                raise NotFound(f"no active key {key_id!r} for user {user!r}")
            conn.executemany("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?",
                             [(time.time(), k) for k in ids])
        return ids

    def delete_user(self, tenant: str, user: str) -> list[str]:
        revoked = self.revoke_keys(tenant, user)
        with self._tx(durable=True) as conn:
            conn.execute("DELETE FROM users WHERE id = ?", (self._user_id(tenant, user),))
        return revoked

    def lookup_key(self, key_id: str) -> UserKey | None:
        row = self._reader().execute(
            "SELECT k.key_id, u.name, t.name, u.role, k.salt, k.hash, k.revoked_at, t.id"
            " FROM api_keys k JOIN users u ON u.id = k.user_id JOIN tenants t"
            " ON t.id = u.tenant_id WHERE k.key_id = ?", (key_id,)).fetchone()
        if row is None:
            return None
        return UserKey(row[0], row[1], row[2], row[3], row[4], row[5], row[6] is not None,
                       row[7])

    def set_policies(self, tenant: str, policies: str) -> None:
        tenant_id = self.get_tenant(tenant)["id"]
        with self._tx(durable=True) as conn:
            conn.execute(
                "INSERT INTO tenant_policies (tenant_id, policies, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET policies = excluded.policies,"
                " updated_at = excluded.updated_at", (tenant_id, policies, time.time()))

    def get_policies(self, tenant: str) -> str:
        tenant_id = self.get_tenant(tenant)["id"]
        row = self._reader().execute(
            "SELECT policies FROM tenant_policies WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return row[0] if row else ""

    def audit(self, tenant: str | None, principal: str, action: str, resource: str,
              decision: str, detail: str | None = None) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO audit_log (ts, tenant, principal, action, resource, decision,"
                " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), tenant, principal, action, resource, decision, detail))

    def read_audit(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._reader().execute(
            "SELECT ts, principal, action, resource, decision, detail FROM audit_log"
            " WHERE tenant = ? ORDER BY id DESC LIMIT ?", (tenant, limit)).fetchall()
        return [dict(zip(("ts", "principal", "action", "resource", "decision", "detail"), r,
                         strict=True)) for r in rows]

    # -- collections -------------------------------------------------------------------
    _COLLECTION_SELECT = (
        "SELECT c.id, t.name, d.name, c.name, c.dimension, c.metric, c.m, c.ef_construction,"
        " c.ef_search, c.applied_seq, c.created_at, c.embedding FROM collections c"
        " JOIN databases d ON d.id = c.database_id JOIN tenants t ON t.id = d.tenant_id"
    )

    def create_collection(
        self,
        tenant: str,
        database: str,
        name: str,
        *,
        dimension: int,
        metric: str,
        m: int,
        ef_construction: int,
        ef_search: int,
        embedding: str | None = None,
        collection_id: int | None = None,
        created_at: float | None = None,
    ) -> CollectionRow:
        """A new collection row; ``collection_id`` is given only when the catalogue is
        rebuilt and must match the collection's existing directory."""
        db_id = self.get_database(tenant, database)["id"]
        try:
            with self._tx(durable=True) as conn:
                conn.execute(
                    "INSERT INTO collections (id, database_id, name, dimension, metric, m,"
                    " ef_construction, ef_search, created_at, embedding)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (collection_id, db_id, name, dimension, metric, m, ef_construction,
                     ef_search, created_at or time.time(), embedding),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"collection {tenant}/{database}/{name} already exists") from None
        return self.get_collection(tenant, database, name)

    def get_collection(self, tenant: str, database: str, name: str) -> CollectionRow:
        row = self._reader().execute(
            self._COLLECTION_SELECT + " WHERE t.name = ? AND d.name = ? AND c.name = ?",
            (tenant, database, name),
        ).fetchone()
        if row is None:
            self.get_database(tenant, database)
            raise NotFound(f"collection {tenant}/{database}/{name} not found")
        return CollectionRow(*row)

    def list_collections(self, tenant: str | None = None, database: str | None = None
                         ) -> list[CollectionRow]:
        if tenant is None:
            rows = self._reader().execute(self._COLLECTION_SELECT + " ORDER BY c.id").fetchall()
        else:
            self.get_database(tenant, database or "")
            rows = self._reader().execute(
                self._COLLECTION_SELECT + " WHERE t.name = ? AND d.name = ? ORDER BY c.name",
                (tenant, database),
            ).fetchall()
        return [CollectionRow(*r) for r in rows]

    def delete_collection(self, collection_id: int) -> None:
        with self._tx(durable=True) as conn:
            conn.execute("DELETE FROM documents WHERE collection_id = ?", (collection_id,))
            conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

    # -- documents ---------------------------------------------------------------------
    def apply_upsert(
        self,
        collection_id: int,
        seq: int,
        rows: Sequence[tuple[str, int, str | None, str, bytes]],
    ) -> None:
        """Upsert (ext_id, label, text, payload_json, vector_bytes) rows for log record ``seq``."""
        with self._tx() as conn:
            conn.executemany(
                "INSERT INTO documents (collection_id, ext_id, label, text, payload, vector, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (collection_id, ext_id) DO UPDATE SET label = excluded.label,"
                " text = excluded.text, payload = excluded.payload, vector = excluded.vector,"
                " seq = excluded.seq",
                [(collection_id, e, lab, t, p, v, seq) for e, lab, t, p, v in rows],
            )
            conn.execute(
                "UPDATE collections SET applied_seq = ? WHERE id = ?", (seq, collection_id)
            )

    def apply_delete(self, collection_id: int, seq: int, ext_ids: Iterable[str]) -> None:
        with self._tx() as conn:
            conn.executemany(
                "DELETE FROM documents WHERE collection_id = ? AND ext_id = ?",
                [(collection_id, e) for e in ext_ids],
            )
            conn.execute(
                "UPDATE collections SET applied_seq = ? WHERE id = ?", (seq, collection_id)
            )

    def id_map(self, collection_id: int) -> list[tuple[int, str, str]]:
        """(label, external id, payload JSON) of every document, for recovery."""
        return self._reader().execute(
            "SELECT label, ext_id, payload FROM documents WHERE collection_id = ?",
            (collection_id,),
        ).fetchall()

    def iter_vectors(self, collection_id: int, batch: int = 10000
                     ) -> Iterator[list[tuple[int, bytes]]]:
        cur = self._reader().execute(
            "SELECT label, vector FROM documents WHERE collection_id = ? AND vector IS NOT NULL",
            (collection_id,),
        )
        while rows := cur.fetchmany(batch):
            yield rows

    def vectors_after(self, collection_id: int, seq: int) -> list[tuple[int, bytes]]:
        """(label, vector) of documents last written by a log record after ``seq``."""
        return self._reader().execute(
            "SELECT label, vector FROM documents WHERE collection_id = ? AND seq > ?"
            " AND vector IS NOT NULL", (collection_id, seq)).fetchall()

    def iter_catalogue_documents(self, collection_id: int, batch: int = 10000
                                 ) -> Iterator[list[tuple[int, str, str | None, str]]]:
        """(label, ext id, text, payload JSON) of every document, for snapshot manifests."""
        cur = self._reader().execute(
            "SELECT label, ext_id, text, payload FROM documents WHERE collection_id = ?",
            (collection_id,))
        while rows := cur.fetchmany(batch):
            yield rows

    def get_document(self, collection_id: int, ext_id: str) -> DocumentRow | None:
        row = self._reader().execute(
            "SELECT ext_id, label, text, payload, vector FROM documents"
            " WHERE collection_id = ? AND ext_id = ?",
            (collection_id, ext_id),
        ).fetchone()
        if row is None:
            return None
        return DocumentRow(row[0], row[1], row[2], json.loads(row[3]), row[4])

    def list_documents(self, collection_id: int, after: str | None, limit: int, *,
                       text: bool = True, payload: bool = True, vector: bool = True
                       ) -> list[DocumentRow]:
        """One page in id order after ``after`` (keyset pagination on the unique index).

        Columns left out are not read at all: a page of payloads need not pull every
        vector and text off the disk."""
        columns = ", ".join(("text" if text else "NULL", "payload" if payload else "'{}'",
                             "vector" if vector else "NULL"))
        rows = self._reader().execute(
            f"SELECT ext_id, label, {columns} FROM documents"
            " WHERE collection_id = ? AND ext_id > ? ORDER BY ext_id LIMIT ?",
            (collection_id, after or "", limit),
        ).fetchall()
        return [DocumentRow(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def _rows_by_labels(self, collection_id: int, labels: Sequence[int], columns: str
                        ) -> Iterator[tuple[Any, ...]]:
        """Rows for many labels, in chunks that stay under SQLite's parameter limit."""
        conn = self._reader()
        for start in range(0, len(labels), 500):
            chunk = [int(x) for x in labels[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            yield from conn.execute(
                f"SELECT {columns} FROM documents WHERE collection_id = ? AND label IN ({marks})",
                (collection_id, *chunk))

    def documents_by_labels(self, collection_id: int, labels: Sequence[int]
                            ) -> dict[int, DocumentRow]:
        return {r[1]: DocumentRow(r[0], r[1], r[2], json.loads(r[3]), r[4])
                for r in self._rows_by_labels(collection_id, labels,
                                              "ext_id, label, text, payload, vector")}

    def vectors_by_labels(self, collection_id: int, labels: Sequence[int]) -> dict[int, bytes]:
        """Exact vector blobs by label (labels deleted meanwhile are simply absent)."""
        return dict(self._rows_by_labels(collection_id, labels, "label, vector"))  # type: ignore

    def text_search(self, collection_id: int, match: str, limit: int
                    ) -> list[tuple[int, float]]:
        """FTS5 BM25 best ``limit`` as (label, score), best first; SQLite's bm25() is
        lower-is-better, so it is negated. Filters are applied by the caller."""
        rows = self._reader().execute(
            "SELECT d.label, bm25(documents_fts) AS rank FROM documents_fts"
            " JOIN documents d ON d.id = documents_fts.rowid"
            " WHERE documents_fts MATCH ? AND d.collection_id = ?"
            " ORDER BY rank, d.label LIMIT ?",
            (match, collection_id, limit),
        ).fetchall()
        return [(r[0], -float(r[1])) for r in rows]

    # -- snapshots and WAL segments ----------------------------------------------------
    def record_snapshot(self, collection_id: int, seq: int, path: str, size: int) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                "INSERT INTO snapshots (collection_id, seq, path, bytes, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (collection_id, seq, path, size, time.time()),
            )
            conn.execute(
                "DELETE FROM snapshots WHERE collection_id = ? AND id != ?",
                (collection_id, cur.lastrowid),
            )
            return int(cur.lastrowid)

    def set_wal_segments(self, collection_id: int,
                         segments: Sequence[tuple[int, str, bool, int]]) -> None:
        """Replace the bookkeeping rows of a collection's log segments."""
        with self._tx() as conn:
            conn.execute("DELETE FROM wal_segments WHERE collection_id = ?", (collection_id,))
            conn.executemany(
                "INSERT INTO wal_segments (collection_id, start_seq, path, sealed, bytes)"
                " VALUES (?, ?, ?, ?, ?)",
                [(collection_id, s, p, int(sealed), b) for s, p, sealed, b in segments],
            )


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        candidate = "\n".join(buf).strip()
        if candidate.endswith(";") and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            buf = []
    if "".join(buf).strip():
        statements.append("\n".join(buf))
    return statements
