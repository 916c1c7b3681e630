"""The SQLite metadata store: versioned migrations, STRICT tables, WAL mode, FTS5."""

from __future__ import annotations

import json
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


def test_document_rows_survive_the_one_statement_upsert_exactly(tmp_path):
    """Upserts go to SQLite as one JSON-driven statement; every value must come back
    byte for byte: awkward text, JSON-looking strings, missing vectors, replacements."""
    store = MetadataStore(tmp_path / "m.db")
    store.create_tenant("t", {})
    store.create_database("t", "d")
    cid = store.create_collection("t", "d", "c", dimension=3, metric="l2", m=8,
                                  ef_construction=16, ef_search=16).id
    texts = ["plain", "naïve ☃ 😀", "nul\x00inside", 'quote"back\\slash', '{"json": 1}',
             "123", "", "tab\tnewline\n"]
    rows = [(f"id-{i}", i, t if i % 2 else None, '{"t":' + f'"{i}"' + "}",
             None if i == 3 else bytes(range(i, i + 12))) for i, t in enumerate(texts)]
    store.apply_upsert(cid, 5, rows)
    read = store._reader()

    def stored() -> list[tuple]:
        return read.execute("SELECT ext_id, label, text, payload, vector FROM documents"
                            " WHERE collection_id = ? ORDER BY label", (cid,)).fetchall()

    assert stored() == rows
    docs = store.documents_by_labels(cid, [7, 0, 3, 2, 12345])
    assert sorted(docs) == [0, 2, 3, 7]
    assert [(d.ext_id, d.label, d.text, d.payload, d.vector) for d in docs.values()] == [
        (e, label, t, json.loads(p), v) for e, label, t, p, v in rows if label in docs]
    assert store.vectors_by_labels(cid, list(range(1200))) == {r[1]: r[4] for r in rows}
    assert read.execute("SELECT DISTINCT seq FROM documents").fetchall() == [(5,)]
    assert read.execute("SELECT typeof(label) FROM documents LIMIT 1").fetchone() == ("integer",)
    store.apply_upsert(cid, 6, [("id-0", 99, "fresh words", "{}", b"\x01" * 12)])
    assert stored()[-1] == ("id-0", 99, "fresh words", "{}", b"\x01" * 12)
    assert [label for label, _ in store.text_search(cid, "fresh", 5)] == [99]
    store.apply_upsert(cid, 7, [(f"w{i}", 100 + i, "fresh " * (i % 4 + 1) + "other " * i, "{}",
                                 None) for i in range(12)])
    exact = read.execute(
        "SELECT d.label, bm25(documents_fts) FROM documents_fts JOIN documents d"
        " ON d.id = documents_fts.rowid WHERE documents_fts MATCH 'fresh'"
        " ORDER BY bm25(documents_fts), d.label LIMIT 8").fetchall()
    assert store.text_search(cid, "fresh", 8) == [(label, -rank) for label, rank in exact]
    store.apply_delete(cid, 7, [f"w{i}" for i in range(12)])
    store.apply_delete(cid, 7, ["id-1", "id-2", "never-written"])
    assert [r[0] for r in stored()] == [f"id-{i}" for i in range(3, 8)] + ["id-0"]
    assert store.text_search(cid, "naïve", 5) == []
    store.apply_upsert(cid, 8, [])
    assert read.execute("SELECT applied_seq FROM collections WHERE id = ?",
                        (cid,)).fetchone() == (8,)
    store.close()
