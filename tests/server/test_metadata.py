"""The SQLite metadata store: versioned migrations, STRICT tables, WAL mode, FTS5."""

from __future__ import annotations

import sqlite3

import pytest

from akidb.server.storage.metadata import MIGRATIONS, MetadataStore
from akidb.server.storage.sqlite import SqliteStore, split_sql


def test_migrations_apply_once_and_upgrade_an_older_database(tmp_path):
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                 " applied_at REAL NOT NULL) STRICT")
    for statement in split_sql(MIGRATIONS[0]):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
    conn.execute("INSERT INTO tenants (name, quotas, created_at) VALUES ('old', '{}', 0)")
    conn.close()
    store = MetadataStore(path)  # a version-1 database gains the later migrations
    assert store.schema_version() == len(MIGRATIONS)
    assert store.get_tenant("old")["name"] == "old"
    store.create_user("old", "u", "viewer", "k1", b"s" * 16, b"h" * 32)
    store.close()
    store = MetadataStore(path)
    assert store.schema_version() == len(MIGRATIONS)
    assert [u["name"] for u in store.list_users("old")] == ["u"]
    r = store._reader()
    assert r.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    strict = r.execute("SELECT name FROM sqlite_schema WHERE sql LIKE '%STRICT%'").fetchall()
    assert {"tenants", "databases", "collections", "documents", "users"} <= {x[0] for x in strict}
    with pytest.raises(sqlite3.IntegrityError):  # STRICT: types are enforced
        store._write.execute("INSERT INTO tenants (name, quotas, created_at)"
                             " VALUES ('x', '{}', 'not a number')")
    store.close()


def test_a_newer_database_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "m.db"
    MetadataStore(path).close()
    with pytest.raises(RuntimeError, match="newer than this server"):
        SqliteStore(path, MIGRATIONS[:1])  # a server that knows fewer migrations
