"""One collection at run time: its log, its index and its id map, kept in step
(start-up recovery is in recovery.py).

Write order (the durability argument): append the record to the collection's
WAL (fsynced under ``always``) → apply it to SQLite, recording the sequence
number in the same transaction → insert into the HNSW index → wait for the group
fsync under ``batch`` → acknowledge. Recovery replays every log record newer
than what SQLite holds (into SQLite) and newer than the index snapshot (into the
index), so an acknowledged write is never lost, whichever step a crash cut.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from akidb.server import faults, tracing
from akidb.server.config import Settings
from akidb.server.errors import NotFound, Unavailable
from akidb.server.index.flat import FlatVectors
from akidb.server.index.hnsw import HnswIndex, ShortResult
from akidb.server.index.payload import Matches, PayloadIndex
from akidb.server.index.turns import Turns
from akidb.server.query import filters
from akidb.server.query.hybrid import reciprocal_rank_fusion
from akidb.server.query.plan import Query
from akidb.server.recovery import Recovery
from akidb.server.storage import snapshot as snapshots
from akidb.server.storage.metadata import CollectionRow, DocumentRow, MetadataStore
from akidb.server.storage.wal import OP_DELETE, OP_UPSERT, WalRecord, WriteAheadLog

log = logging.getLogger("akidb.collection")

# Filtered vector search picks a strategy from the exact matching count: exact search
# over up to this many matches ... The filtered graph walk calls back into Python, GIL
# and all, for every candidate, so beside one busy Python thread its median rose from
# 4-7 ms to 1.5 s at 5k-10k matches of 100k x 512, where exact search (recall 1.0
# against the walk's 0.79-0.87) went from 9-38 to 12-20 ms; at 20k, exact 46 ms and
# the walk 34 ms (P95 94 and 448 ms).
EXACT_SEARCH_MAX = 20000
# ... oversampled graph search + post-filter when at least this share matches ...
OVERSAMPLE_MIN_SELECTIVITY = 0.25
# ... and otherwise a graph walk that skips non-matching labels.


@dataclass(slots=True)
class Hit:
    label: int
    ext_id: str
    score: float
    document: DocumentRow | None = None


class Collection(Recovery):
    def __init__(self, row: CollectionRow, store: MetadataStore, directory: Path,
                 settings: Settings) -> None:
        self.row = row
        self.store = store
        self.dir = directory
        self.index = HnswIndex(dimension=row.dimension, metric=row.metric, m=row.m,
                               ef_construction=row.ef_construction, ef_search=row.ef_search,
                               threads=settings.index_threads,
                               insert_chunk_max=settings.index_insert_chunk_max)
        self.wal = WriteAheadLog(directory / "wal", fsync=settings.fsync,
                                 segment_bytes=settings.wal_segment_bytes)
        self.payloads = PayloadIndex()
        self.flat = FlatVectors(row.dimension, row.metric, self._exact_vectors)
        self.write_lock = threading.Lock()
        self.graph_turns = Turns()
        self.labels: dict[str, int] = {}
        self.ext_ids: dict[int, str] = {}
        self.next_label = 0
        self.last_snapshot: snapshots.Snapshot | None = None
        self.broken: str | None = None
        # How searches were answered (graph, exact, oversample, filtered_walk, ...): for
        # /metrics, and to show which strategy a filter's selectivity picked.
        self.strategies: Counter[str] = Counter()
        # Set by the engine when snapshots are shipped to an object store.
        self.on_snapshot: Callable[[snapshots.Snapshot], None] | None = None

    @property
    def count(self) -> int:
        return len(self.labels)

    # -- recovery ----------------------------------------------------------------------
    def _apply_store(self, record: WalRecord) -> None:
        meta = record.meta
        if record.op == OP_UPSERT:
            vectors = record.vectors
            rows = [
                (ext_id, label, text, payload, vectors[i].tobytes())
                for i, (ext_id, label, text, payload) in enumerate(
                    zip(meta["ids"], meta["labels"], meta["texts"], meta["payloads"],
                        strict=True))
            ]
            self.store.apply_upsert(self.row.id, record.seq, rows)
        elif record.op == OP_DELETE:
            self.store.apply_delete(self.row.id, record.seq, meta["ids"])

    # -- writes ------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.broken:
            raise Unavailable(f"collection {self.row.path} is read-only after a storage "
                              f"failure ({self.broken}); restart the server to recover")

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str | None],
               payloads: Sequence[str], on_logged: Callable[[], None] | None = None) -> int:
        """Durably upsert validated documents (payloads are canonical JSON strings).
        ``on_logged`` is called once the batch holds its place in the log, before its
        graph insert: a stream may send the next batch from then on."""
        if faults.lose_write():
            return len(ids)  # the deliberately broken mode: acknowledged, never written
        with self.write_lock:
            self._check_writable()
            labels: list[int] = []
            fresh = 0
            for ext_id in ids:
                label = self.labels.get(ext_id)
                if label is None:
                    label = self.next_label + fresh
                    fresh += 1
                labels.append(label)
            meta = {"ids": list(ids), "labels": labels, "texts": list(texts),
                    "payloads": list(payloads)}
            try:
                with tracing.span("wal.append", **{"akidb.documents": len(ids)}):
                    seq, token = self.wal.append(OP_UPSERT, meta, vectors)
            except OSError as exc:
                raise Unavailable(f"write-ahead log append failed: {exc}") from None
            self.next_label += fresh
            record = WalRecord(seq, OP_UPSERT, meta, vectors)
            self._apply_logged(record)
            label_arr = np.asarray(labels, dtype=np.int64)
            self.flat.put(label_arr, vectors)
            self.payloads.put([(label, orjson.loads(p)) for label, p in zip(labels, payloads,
                                                                              strict=True)])
            for ext_id, label in zip(ids, labels, strict=True):
                self.labels[ext_id] = label
                self.ext_ids[label] = ext_id
            ticket = self.graph_turns.ticket()
        if on_logged is not None:
            on_logged()
        # The graph insert, in log order, while the next batch is logged and stored
        # (server/index/turns.py); the answer waits for it, so a search after the
        # acknowledgement finds the documents.
        with self.graph_turns.turn(ticket), tracing.span("index.insert",
                                                         **{"akidb.documents": len(ids)}):
            self.index.add(label_arr, vectors)
        self._wait_durable(token)
        return len(ids)

    def delete(self, ids: Sequence[str]) -> int:
        with self.write_lock:
            self._check_writable()
            missing = [e for e in ids if e not in self.labels]
            if missing:
                raise NotFound(f"document {missing[0]!r} not found in {self.row.path}")
            labels = [self.labels[e] for e in ids]
            meta = {"ids": list(ids), "labels": labels}
            try:
                with tracing.span("wal.append", **{"akidb.documents": len(ids)}):
                    seq, token = self.wal.append(OP_DELETE, meta)
            except OSError as exc:
                raise Unavailable(f"write-ahead log append failed: {exc}") from None
            self._apply_logged(WalRecord(seq, OP_DELETE, meta))
            for ext_id, label in zip(ids, labels, strict=True):
                del self.labels[ext_id]
                self.ext_ids.pop(label, None)
            self.graph_turns.settle()  # an earlier upsert of these labels goes in first
            self.index.delete(labels)
            self.payloads.remove(labels)
        self._wait_durable(token)
        return len(ids)

    def _apply_logged(self, record: WalRecord) -> None:
        try:
            with tracing.span("sqlite.apply", **{"akidb.seq": record.seq}):
                self._apply_store(record)
        except Exception as exc:
            # SQLite rolled its transaction back. If the log record can be cut off again
            # (nothing came after it), the write simply failed and nothing changed —
            # a full disk, typically.
            if self.wal.undo(record.seq):
                raise Unavailable(f"write to {self.row.path} failed and was not applied: "
                                  f"{exc}") from None
            # Otherwise replay at restart will apply it; until then memory and SQLite may
            # disagree, so refuse further writes.
            self.broken = f"applying record {record.seq}: {exc}"
            log.exception("collection %s: %s", self.row.path, self.broken)
            raise Unavailable(f"storage failure in {self.row.path}; the write may be "
                              "applied on restart") from None

    def _wait_durable(self, token: int) -> None:
        try:
            with tracing.span("wal.fsync_wait"):
                self.wal.wait_durable(token)
        except OSError as exc:
            self.broken = f"fsync failed: {exc}"
            raise Unavailable(f"fsync of the write-ahead log failed: {exc}") from None

    # -- reads -------------------------------------------------------------------------
    def get(self, ext_id: str) -> DocumentRow:
        doc = self.store.get_document(self.row.id, ext_id)
        if doc is None:
            raise NotFound(f"document {ext_id!r} not found in {self.row.path}")
        return doc

    def _hits(self, labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
              ) -> list[Hit]:
        # One tolist() per array: converting numpy scalars one at a time was ~8% of a
        # 100-query batch search (py-spy).
        labels = labels.tolist() if isinstance(labels, np.ndarray) else [int(x) for x in labels]
        scores = (scores.tolist() if isinstance(scores, np.ndarray)
                  else [float(x) for x in scores])
        ext_ids = self.ext_ids
        # A label missing from ext_ids was deleted between search and lookup.
        return [Hit(label, ext_id, score) for label, score in zip(labels, scores, strict=True)
                if (ext_id := ext_ids.get(label)) is not None]

    def search(self, query: Query) -> list[Hit]:
        """Answer a validated query; the filter is resolved once, here, into the set of
        matching labels, which the vector side and the text side both use."""
        if tracing.ENABLED:
            with tracing.span("index.search", **{"akidb.mode": query.mode, "akidb.k": query.k,
                                                 "akidb.filtered": query.filter is not None}):
                return self._search(query)
        return self._search(query)

    def _search(self, query: Query) -> list[Hit]:
        allowed = self.payloads.evaluate(query.filter) if query.filter is not None else None
        if query.mode == "vector" or (query.mode == "hybrid" and not query.match):
            return self._vector(query.vector, query.k, query.ef, allowed)
        if not query.match:
            return []
        if query.mode == "text":
            return self._text(query.match, query.k, allowed)
        depth = max(query.k * 4, 50)
        by_vector = self._vector(query.vector, depth, query.ef, allowed)
        by_text = self._text(query.match, depth, allowed)
        fused = reciprocal_rank_fusion([h.label for h in by_vector], [h.label for h in by_text],
                                       alpha=query.alpha, k=query.k)
        return self._hits([f[0] for f in fused], [f[1] for f in fused])

    def search_many(self, queries: Sequence[Query]) -> list[list[Hit]]:
        """Answers in order; unfiltered vector queries sharing k and ef go to the graph
        as one batch (hnswlib spreads it over the index threads), the rest one by one."""
        out: list[list[Hit] | None] = [None] * len(queries)
        groups: dict[tuple[int, int | None], list[int]] = {}
        for i, q in enumerate(queries):
            if q.mode == "vector" and q.filter is None:
                groups.setdefault((q.k, q.ef), []).append(i)
        for (k, ef), members in groups.items():
            if len(members) < 2:
                continue
            try:
                labels, scores = self.index.search_batch(
                    np.stack([queries[i].vector for i in members]), k, ef)
            except ShortResult:
                continue  # answered one by one below, with the exact fallback
            self.strategies["graph"] += len(members)
            for row, i in enumerate(members):
                out[i] = self._hits(labels[row], scores[row])
        return [hits if hits is not None else self.search(queries[i])
                for i, hits in enumerate(out)]

    def _vector(self, vector: np.ndarray, k: int, ef: int | None,
                allowed: Matches | None) -> list[Hit]:
        if allowed is not None:
            return self._filtered_vector_search(vector, k, ef, allowed)
        try:
            labels, scores = self.index.search(vector, k, ef)
            self.strategies["graph"] += 1
        except ShortResult:
            labels, scores = self.flat.exact(vector, self._live_labels(), k)
            self.strategies["exact_fallback"] += 1
        return self._hits(labels, scores)

    def _exact_vectors(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self.store.vectors_by_labels(self.row.id, labels.tolist())
        present = np.asarray([x for x in labels.tolist() if x in found], dtype=np.int64)
        vectors = np.frombuffer(b"".join(found[x] for x in present.tolist()), np.float32)
        return present, vectors.reshape(len(present), self.row.dimension)

    def _live_labels(self) -> np.ndarray:
        return np.fromiter(self.ext_ids.keys(), dtype=np.int64, count=len(self.ext_ids))

    def _filtered_vector_search(self, vector: np.ndarray, k: int, ef: int | None,
                                allowed: Matches) -> list[Hit]:
        """Exact over a small matching set; oversample + post-filter when most documents
        match; otherwise walk the graph skipping non-matching labels."""
        total = self.index.count
        if not allowed or total == 0:
            return []
        if len(allowed) <= EXACT_SEARCH_MAX:
            self.strategies["exact"] += 1
            return self._hits(*self.flat.exact(vector, allowed.labels(), k))
        selectivity = len(allowed) / total
        if selectivity >= OVERSAMPLE_MIN_SELECTIVITY:
            wanted = min(total, int(3 * k / selectivity) + 10)
            try:
                labels, scores = self.index.search(vector, wanted, max(ef or 0, wanted))
                keep = np.flatnonzero(allowed.keep(labels))[:k]
                if len(keep) >= k:
                    self.strategies["oversample"] += 1
                    return self._hits(labels[keep], scores[keep])
            except ShortResult:
                pass
        try:
            labels, scores = self.index.search(vector, k, ef, allowed=allowed)
            self.strategies["filtered_walk"] += 1
        except ShortResult:
            labels, scores = self.flat.exact(vector, allowed.labels(), k)
            self.strategies["exact_fallback"] += 1
        return self._hits(labels, scores)

    def _text(self, match: str, k: int, allowed: Matches | None) -> list[Hit]:
        """FTS5 BM25 top-k; with a filter, ranked matches are read in growing pages and
        kept when they are in the allowed set, until k are found or none are left."""
        if allowed is None:
            return self._hits(*self._ranked(match, k))
        if not allowed:
            return []
        limit, kept_labels, kept_scores = max(4 * k, 64), [], []
        while True:
            labels, scores = self._ranked(match, limit)
            kept_labels = [lab for lab in labels if lab in allowed][:k]
            if len(kept_labels) == k or len(labels) < limit:
                score_of = dict(zip(labels, scores, strict=True))
                kept_scores = [score_of[lab] for lab in kept_labels]
                return self._hits(kept_labels, kept_scores)
            limit *= 4

    def _ranked(self, match: str, limit: int) -> tuple[list[int], list[float]]:
        rows = self.store.text_search(self.row.id, match, limit)
        return [r[0] for r in rows], [r[1] for r in rows]

    def attach_documents(self, hits: list[Hit], query: Query) -> list[Hit]:
        """The hits with their stored documents, each consistent with what it returns.

        Searches do not block writers, so a document can change between the index
        scoring it and its row being read. A hit is dropped when its document is gone
        or, as now stored, fails the query's filter; vector scores are recomputed from
        the stored vector (order kept best first). So a hit never carries a payload
        that fails the filter or a score that is not its vector's."""
        docs = self.store.documents_by_labels(self.row.id, [h.label for h in hits])
        kept = []
        for hit in hits:
            doc = docs.get(hit.label)
            if doc is None or doc.ext_id != hit.ext_id:
                continue
            if query.filter is not None and not filters.matches(query.filter, doc.payload):
                continue
            hit.document = doc
            kept.append(hit)
        if query.mode == "vector" and kept:
            stored = np.stack([np.frombuffer(h.document.vector, np.float32) for h in kept])
            for hit, score in zip(kept, self.flat.score(query.vector, stored), strict=True):
                hit.score = float(score)
            kept.sort(key=lambda h: -h.score)
        return kept

    # -- snapshots ---------------------------------------------------------------------
    def snapshot(self) -> snapshots.Snapshot:
        """Save the index at the current log position, then drop the log it covers."""
        with self.write_lock:
            self.graph_turns.settle()  # the graph holds everything up to seq
            seq = self.wal.last_seq
            snap = snapshots.write(
                self.dir / "snapshots", seq, self.index.save,
                {"next_label": self.next_label, "deleted": self.index.deleted,
                 "count": self.count, "dimension": self.row.dimension,
                 "metric": self.row.metric}, self._save_documents)
            # SQLite must hold everything up to seq on disk before the log is cut.
            self.store.checkpoint()
            self.wal.truncate_through(seq)
            self.store.record_snapshot(self.row.id, seq, str(snap.path),
                                       snapshots.size_bytes(snap))
            self._record_segments()
            self.last_snapshot = snap
        if self.on_snapshot is not None:
            self.on_snapshot(snap)
        return snap

    def _save_documents(self, path: Path) -> None:
        """The catalogue a snapshot carries: one JSON array per document, with the
        vector's norm for cosine (hnswlib keeps only the unit vector)."""
        with open(path, "wb") as fh:
            for rows in self.store.iter_catalogue_documents(self.row.id):
                norms = [1.0] * len(rows)
                if self.row.metric == "cosine":
                    labels = np.fromiter((r[0] for r in rows), np.int64, count=len(rows))
                    norms = self.flat.norms(labels).tolist()
                fh.write(b"".join(orjson.dumps([r[0], r[1], r[2], r[3], norm]) + b"\n"
                                  for r, norm in zip(rows, norms, strict=True)))

    def needs_snapshot(self, min_wal_bytes: int, ratio: float, min_vectors: int = 0) -> bool:
        """Is restarting now costlier than the policy allows? Without any snapshot a
        restart rebuilds the whole graph from the stored vectors, however small the
        log: seen in the kill -9 loop at 180k 8-d documents, 15-21 s per restart."""
        if self.last_snapshot is None and min_vectors and self.count >= min_vectors:
            return True
        wal = self.wal.size_bytes()
        index_bytes = self.count * (self.row.dimension * 4 + self.row.m * 8)
        return wal > max(min_wal_bytes, ratio * index_bytes)

    def _record_segments(self) -> None:
        try:
            self.store.set_wal_segments(self.row.id, self.wal.segment_info())
        except Exception as exc:  # bookkeeping only; the files are the truth
            log.warning("could not record WAL segments of %s: %s", self.row.path, exc)

    def stats(self) -> dict[str, Any]:
        return {"count": self.count, "wal_bytes": self.wal.size_bytes(),
                "last_seq": self.wal.last_seq,
                "snapshot_seq": self.last_snapshot.seq if self.last_snapshot else None,
                "index_capacity": self.index.capacity}

    def close(self) -> None:
        with self.write_lock:
            self.graph_turns.settle()
            self.wal.close()

