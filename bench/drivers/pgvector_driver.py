"""PostgreSQL with pgvector, at a URL the user gives (``url=postgresql://...`` or
``AKIDB_PGVECTOR_URL``), through psycopg 3.

Rows go in with binary ``COPY`` (the fast path PostgreSQL has; vectors in pgvector's
binary form, built with numpy), label columns as typed columns so a filter is a plain
``WHERE``. The HNSW index is built once the rows are in (pgvector's advice for bulk
loads), so ``wait_indexed`` is where a load becomes searchable. Filtered searches use
pgvector's iterative index scan (0.8+), without which a selective filter returns fewer
than k rows.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from akidb.bench.drivers import DriverError, Filter, IndexParams

_OPS = {"cosine": ("<=>", "vector_cosine_ops"), "l2": ("<->", "vector_l2_ops"),
        "ip": ("<#>", "vector_ip_ops")}
_FILTER_OPS = {"eq": "=", "gte": ">=", "lt": "<"}
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def _column_type(col: np.ndarray) -> str:
    return {"i": "bigint", "u": "bigint", "f": "double precision", "b": "boolean"}.get(
        col.dtype.kind, "text")


def _field(value: Any, kind: str) -> bytes:
    if kind == "bigint":
        data = struct.pack(">q", int(value))
    elif kind == "double precision":
        data = struct.pack(">d", float(value))
    elif kind == "boolean":
        data = b"\x01" if value else b"\x00"
    else:
        data = str(value).encode()
    return struct.pack(">i", len(data)) + data


class PgvectorDriver:
    name = "pgvector"
    capabilities = frozenset({"filter", "memory", "ef"})

    def __init__(self, url: str | None = None, table: str | None = None) -> None:
        """``table``: attach to one that exists (a load client in another process)."""
        url = url or os.environ.get("AKIDB_PGVECTOR_URL")
        if not url:
            raise DriverError("the pgvector driver needs a PostgreSQL URL: --pgvector-url "
                              "postgresql://USER@HOST:PORT/DB (or AKIDB_PGVECTOR_URL)")
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise DriverError(f"cannot connect to PostgreSQL at {url}: {exc}") from None
        # a filter keeps walking the graph until k rows pass it (pgvector >= 0.8);
        # unfiltered searches already find k within ef
        self.conn.execute("SET hnsw.iterative_scan = relaxed_order")
        self._ef = 0
        self.url = url
        self.table = table or f"akidb_bench_{uuid.uuid4().hex[:10]}"
        self.columns: dict[str, str] = {}
        self.metric = "cosine"
        self.params = IndexParams()
        if table is not None:
            self.metric = self._stored_metric()

    def _stored_metric(self) -> str:
        row = self.conn.execute("SELECT obj_description(%s::regclass, 'pg_class')",
                                (self.table,)).fetchone()
        return row[0] if row and row[0] in _OPS else "cosine"

    def attach_options(self) -> dict[str, Any] | None:
        return {"driver": "pgvector", "options": {"url": self.url, "table": self.table}}

    def create(self, dimension: int, params: IndexParams) -> None:
        self.params, self.metric, self.dimension = params, params.metric, dimension
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        self.conn.execute(sql.SQL("CREATE TABLE {} (id text PRIMARY KEY, emb vector({}))")
                          .format(sql.Identifier(self.table), sql.Literal(dimension)))
        self.conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            sql.Identifier(self.table), sql.Literal(params.metric)))

    def _add_columns(self, labels: dict[str, np.ndarray]) -> None:
        for key, col in labels.items():
            if key not in self.columns:
                self.columns[key] = _column_type(col)
                self.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                    sql.Identifier(self.table), sql.Identifier(key),
                    sql.SQL(self.columns[key])))

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        labels = labels or {}
        self._add_columns(labels)
        keys = list(labels)
        vecs = np.ascontiguousarray(vectors, dtype=">f4")
        head = struct.pack(">hh", vecs.shape[1], 0)
        width = struct.pack(">i", len(head) + vecs.shape[1] * 4)
        count = struct.pack(">h", 2 + len(keys))
        cols = {k: labels[k].tolist() for k in keys}
        parts = [_COPY_HEADER]
        for i, doc_id in enumerate(ids):
            parts += [count, _field(doc_id, "text"), width, head, vecs[i].tobytes()]
            parts += [_field(cols[k][i], self.columns[k]) for k in keys]
        parts.append(struct.pack(">h", -1))
        names = sql.SQL(", ").join(sql.Identifier(c) for c in ["id", "emb", *keys])
        with self.conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
                    sql.Identifier(self.table), names)) as copy:
            copy.write(b"".join(parts))

    def wait_indexed(self, count: int) -> None:
        _op, opclass = _OPS[self.metric]
        self.conn.execute(sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (emb {}) "
            "WITH (m = {}, ef_construction = {})").format(
                sql.Identifier(f"{self.table}_hnsw"), sql.Identifier(self.table),
                sql.SQL(opclass), sql.Literal(self.params.m),
                sql.Literal(self.params.ef_construction)))
        self.conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(self.table)))
        got = self.count()
        if got != count:
            raise DriverError(f"pgvector holds {got} rows after inserting {count}")

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        op, _ = _OPS[self.metric]
        where, args = sql.SQL(""), []
        if flt is not None:
            where = sql.SQL("WHERE {} {} %s").format(sql.Identifier(flt.field),
                                                      sql.SQL(_FILTER_OPS[flt.op]))
            args.append(flt.value)
        query = sql.SQL("SELECT id FROM {} {} ORDER BY emb {} %s::vector LIMIT %s").format(
            sql.Identifier(self.table), where, sql.SQL(op))
        want = max(ef or self.params.ef_search, k)
        if want != self._ef:  # a session setting: one round trip per change, not per call
            self.conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(want)))
            self._ef = want
        text = "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).tolist())) + "]"
        rows = self.conn.execute(query, [*args, text, k]).fetchall()
        return [r[0] for r in rows]

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        return [self.search(v, k, ef) for v in vectors]

    def count(self) -> int:
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(self.table))).fetchone()
        return int(row[0]) if row else 0

    def memory_bytes(self) -> int | None:
        """The table's and its indexes' size on disk (the server's memory is shared by
        every database it holds, so it says nothing about this one)."""
        row = self.conn.execute("SELECT pg_total_relation_size(%s::regclass)",
                                (self.table,)).fetchone()
        return int(row[0]) if row else None

    def drop(self) -> None:
        self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
            sql.Identifier(self.table)))

    def close(self) -> None:
        self.conn.close()
