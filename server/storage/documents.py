"""Documents in SQLite (with FTS5 text), and the snapshot and log-segment bookkeeping.

Each upsert or delete records the log record's sequence number in the same
transaction (``collections.applied_seq``, and each document's ``seq``), which is how
recovery knows what SQLite already holds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from akidb.server.storage.sqlite import SqliteStore

# Rows of one upsert: ?2 is a JSON array of [ext_id, label, text, payload, offset,
# length] and ?3 every vector, concatenated (substr of a blob is a blob).
_UPSERT_ROWS = (
    "INSERT INTO documents (collection_id, ext_id, label, text, payload, vector, seq)"
    " SELECT ?1, json_extract(r.value, '$[0]'), json_extract(r.value, '$[1]'),"
    " json_extract(r.value, '$[2]'), json_extract(r.value, '$[3]'),"
    " CASE WHEN json_extract(r.value, '$[4]') IS NULL THEN NULL"
    " ELSE substr(?3, json_extract(r.value, '$[4]') + 1, json_extract(r.value, '$[5]')) END,"
    " ?4"
    " FROM json_each(?2) AS r WHERE true"
    " ON CONFLICT (collection_id, ext_id) DO UPDATE SET label = excluded.label,"
    " text = excluded.text, payload = excluded.payload, vector = excluded.vector,"
    " seq = excluded.seq"
)


@dataclass(frozen=True)
class DocumentRow:
    ext_id: str
    label: int
    text: str | None
    payload: dict[str, Any]
    vector: bytes | None


class Documents(SqliteStore):
    # -- documents ---------------------------------------------------------------------
    def apply_upsert(
        self,
        collection_id: int,
        seq: int,
        rows: Sequence[tuple[str, int, str | None, str, bytes | None]],
    ) -> None:
        """Upsert (ext_id, label, text, payload_json, vector_bytes) rows for log record ``seq``.

        The rows go in as one statement over ``json_each`` (their vectors as one blob
        sliced by offset), not ``executemany``: the sqlite3 module releases the GIL
        around every step and must win it back, and beside a busy Python thread each
        row then waited up to a switch interval (1000 rows: 3.4-6.3 s against 27-33 ms
        as one statement)."""
        meta: list[tuple[str, int, str | None, str, int | None, int | None]] = []
        blobs: list[bytes] = []
        offset = 0
        for ext_id, label, text, payload, vector in rows:
            if vector is None:
                meta.append((ext_id, label, text, payload, None, None))
            else:
                meta.append((ext_id, label, text, payload, offset, len(vector)))
                blobs.append(vector)
                offset += len(vector)
        with self._tx() as conn:
            if meta:
                # orjson: 0.03 ms per 1000 rows against 0.38 ms for json.dumps.
                conn.execute(_UPSERT_ROWS, (collection_id, orjson.dumps(meta).decode(),
                                            b"".join(blobs), seq))
            conn.execute(
                "UPDATE collections SET applied_seq = ? WHERE id = ?", (seq, collection_id)
            )

    def apply_delete(self, collection_id: int, seq: int, ext_ids: Iterable[str]) -> None:
        with self._tx() as conn:
            conn.execute(  # one statement, for the reason given in apply_upsert
                "DELETE FROM documents WHERE collection_id = ?"
                " AND ext_id IN (SELECT value FROM json_each(?))",
                (collection_id, json.dumps(list(ext_ids), ensure_ascii=False)),
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

    def _rows_by_labels(self, collection_id: int, labels: Sequence[int],
                        columns: Sequence[str]) -> list[list[Any]]:
        """Rows for many labels, in chunks that stay under SQLite's parameter limit.

        Each chunk comes back as one JSON row (vectors as hex), not a step per row, for
        the GIL reason given in ``apply_upsert``: an exact filtered search reads its
        shortlist's 40 vectors here, and beside a busy thread that read was most of its
        P95 (64-244 ms)."""
        conn = self._reader()
        selected = ", ".join("CASE WHEN vector IS NULL THEN NULL ELSE hex(vector) END"
                             if c == "vector" else c for c in columns)
        hexed = [i for i, c in enumerate(columns) if c == "vector"]
        out: list[list[Any]] = []
        for start in range(0, len(labels), 500):
            chunk = [int(x) for x in labels[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            (rows,) = conn.execute(
                f"SELECT json_group_array(json_array({selected})) FROM documents"
                f" WHERE collection_id = ? AND label IN ({marks})",
                (collection_id, *chunk)).fetchone()
            for row in orjson.loads(rows):
                for i in hexed:
                    if row[i] is not None:
                        row[i] = bytes.fromhex(row[i])
                out.append(row)
        return out

    def documents_by_labels(self, collection_id: int, labels: Sequence[int]
                            ) -> dict[int, DocumentRow]:
        return {r[1]: DocumentRow(r[0], r[1], r[2], json.loads(r[3]), r[4])
                for r in self._rows_by_labels(collection_id, labels,
                                              ("ext_id", "label", "text", "payload", "vector"))}

    def vectors_by_labels(self, collection_id: int, labels: Sequence[int]) -> dict[int, bytes]:
        """Exact vector blobs by label (labels deleted meanwhile are simply absent)."""
        return {r[0]: r[1] for r in self._rows_by_labels(collection_id, labels,
                                                          ("label", "vector"))}

    def text_search(self, collection_id: int, match: str, limit: int
                    ) -> list[tuple[int, float]]:
        """FTS5 BM25 best ``limit`` as (label, score), best first; SQLite's bm25() is
        lower-is-better, so it is negated. Filters are applied by the caller.

        The hits come back as one aggregated row (17 significant digits: exact floats)
        rather than a step per hit, for the GIL reason given in ``apply_upsert``: beside
        a busy Python thread, 50 hits took 21-24 ms that way and 10-14 ms as one row."""
        labels, ranks = self._reader().execute(
            "SELECT group_concat(label), group_concat(printf('%!.17g', rank)) FROM ("
            " SELECT d.label AS label, bm25(documents_fts) AS rank FROM documents_fts"
            " JOIN documents d INDEXED BY documents_fts_join ON d.id = documents_fts.rowid"
            " WHERE documents_fts MATCH ? AND d.collection_id = ?"
            " ORDER BY rank, d.label LIMIT ?)",
            (match, collection_id, limit),
        ).fetchone()
        if labels is None:
            return []
        hits = [(int(label), -float(rank))
                for label, rank in zip(labels.split(","), ranks.split(","), strict=True)]
        hits.sort(key=lambda h: (-h[1], h[0]))  # SQLite does not promise group_concat's order
        return hits

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


