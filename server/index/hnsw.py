"""hnswlib index of one collection, safe for concurrent searches and writes.

Labels are the collection's internal integer ids; the external-id mapping lives
with the collection. Scores returned are "higher is better" for every metric:
cosine similarity, inner product, and negative L2 distance.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import hnswlib
import numpy as np

from akidb.server.index.payload import Matches
from akidb.server.index.rwlock import RWLock

# Inserts are applied in chunks so that searches can run between them instead of
# waiting for a whole batch (hnswlib forbids search during insert): a search waits for
# one chunk at most (the lock is phase-fair). 64 vectors take ~12-15 ms at 384-d here.
# Small chunks cost bulk ingest ~5% (every call starts and joins hnswlib's threads;
# Arrow ingest from 2 loaders read 0.82-0.85x raw at 64 against 0.89-0.90x at 512), so
# while no search has come for READ_QUIET_S the chunk doubles up to INSERT_CHUNK_MAX
# (~90 ms at 384-d; the server's index_insert_chunk_max setting), and the first search
# after a quiet spell sets it back: only that first search can wait longer than one
# small chunk.
INSERT_CHUNK = 64
INSERT_CHUNK_MAX = 512
READ_QUIET_S = 1.0
MIN_CAPACITY = 1024


class ShortResult(Exception):
    """The graph search found fewer than k live neighbours."""


class HnswIndex:
    def __init__(self, *, dimension: int, metric: str, m: int, ef_construction: int,
                 ef_search: int, threads: int = 2,
                 insert_chunk_max: int = INSERT_CHUNK_MAX) -> None:
        self.dimension = dimension
        self.metric = metric
        self.m = m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.threads = threads
        self.lock = RWLock()
        # Batch searches in flight: a batch spreads over every index thread when it is
        # alone and takes its share when others run, so concurrent batches overlap their
        # Python (parsing, shaping) with each other's graph work instead of oversubscribing
        # the cores.
        self._batches = 0
        self._batches_lock = threading.Lock()
        self.read_quiet_s = READ_QUIET_S
        self.chunk_min = min(INSERT_CHUNK, insert_chunk_max)
        self.chunk_max = insert_chunk_max
        self._chunk = self.chunk_min
        self.clear()

    # -- size --------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Live (not deleted) elements."""
        return self._index.element_count - self._deleted

    @property
    def capacity(self) -> int:
        return self._index.max_elements

    def _ensure_capacity(self, extra: int) -> None:
        need = self._index.element_count + extra
        if need > self._index.max_elements:
            self._index.resize_index(max(need, self._index.max_elements * 2))

    # -- writes ------------------------------------------------------------------------
    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace (same label) vectors; each chunk holds the write lock."""
        labels = np.asarray(labels, dtype=np.int64)
        start = 0
        while start < len(labels):
            size = self._chunk
            chunk_labels = labels[start : start + size]
            chunk_vectors = vectors[start : start + size]
            with self.lock.write():
                self._ensure_capacity(len(chunk_labels))
                self._index.add_items(chunk_vectors, chunk_labels, num_threads=self.threads)
            start += size
            quiet = time.monotonic() - self.lock.last_read > self.read_quiet_s
            self._chunk = min(2 * size, self.chunk_max) if quiet else self.chunk_min

    @property
    def insert_chunk(self) -> int:
        """Vectors the next insert call takes under the write lock at once."""
        return self._chunk

    @property
    def deleted(self) -> int:
        return self._deleted

    def delete(self, labels: list[int]) -> None:
        with self.lock.write():
            for label in labels:
                try:
                    self._index.mark_deleted(int(label))
                except RuntimeError:
                    continue  # already deleted or never added (log replay is idempotent)
                self._deleted += 1

    # -- reads -------------------------------------------------------------------------
    def _scores(self, distances: np.ndarray) -> np.ndarray:
        if self.metric == "l2":
            return -np.sqrt(np.maximum(distances, 0.0))
        return 1.0 - distances

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               allowed: Matches | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (labels, scores); fewer when the index holds fewer live elements.
        ``allowed``: only these labels (the graph walk skips the others)."""
        with self.lock.read():
            k = min(k, self.count)
            if k <= 0:
                return np.empty(0, np.int64), np.empty(0, np.float32)
            ef = max(ef or self.ef_search, k)
            # hnswlib calls the filter (with the GIL) for each candidate: the bound
            # ``__getitem__`` of a bytes mask is a C call, and the mask covers every
            # label the graph can hold while the read lock keeps it from growing.
            keep = (None if allowed is None
                    else allowed.padded(self._index.max_elements).tobytes().__getitem__)
            try:
                # set_ef is a plain store read by each query; concurrent readers with
                # different ef race benignly (a query may use the other's ef).
                self._index.set_ef(ef)
                labels, distances = self._index.knn_query(vector, k=k, filter=keep,
                                                          num_threads=1)
            except RuntimeError as exc:
                # hnswlib raises when it finds fewer than k (heavy deletes or a very
                # selective filter); the caller falls back to exact search.
                raise ShortResult(str(exc)) from None
        return labels[0].astype(np.int64), self._scores(distances[0])

    def labels(self) -> np.ndarray:
        """Every label the graph holds, deleted ones included (recovery checks only)."""
        with self.lock.read():
            return np.asarray(self._index.get_ids_list(), dtype=np.int64)

    def vectors(self, labels: np.ndarray) -> np.ndarray:
        """Stored vectors of live labels (normalized for cosine, as hnswlib keeps them)."""
        with self.lock.read():
            return np.asarray(self._index.get_items(labels.tolist()), dtype=np.float32)

    def clear(self) -> None:
        """Start over with an empty graph of the same parameters (recovery rebuilds)."""
        index = hnswlib.Index(space=self.metric, dim=self.dimension)
        index.init_index(max_elements=MIN_CAPACITY, ef_construction=self.ef_construction,
                         M=self.m, allow_replace_deleted=False)
        index.set_ef(self.ef_search)
        index.set_num_threads(self.threads)
        with self.lock.write():
            self._index = index
            self._deleted = 0

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k of many queries in one call, on the index's threads (the GIL is released
        inside hnswlib); ``ShortResult`` when any query finds fewer than k."""
        with self.lock.read():
            k = min(k, self.count)
            if k <= 0:
                empty = np.empty((len(vectors), 0))
                return empty.astype(np.int64), empty.astype(np.float32)
            self._index.set_ef(max(ef or self.ef_search, k))
            with self._batches_lock:
                self._batches += 1
                threads = max(1, self.threads // self._batches)
            try:
                labels, distances = self._index.knn_query(vectors, k=k, num_threads=threads)
            except RuntimeError as exc:
                raise ShortResult(str(exc)) from None
            finally:
                with self._batches_lock:
                    self._batches -= 1
        return labels.astype(np.int64), self._scores(distances)

    # -- persistence -------------------------------------------------------------------
    def save(self, path: Path) -> None:
        with self.lock.read():
            self._index.save_index(str(path))

    def load(self, path: Path, deleted: int) -> None:
        """Replace the contents with a saved index (``deleted``: marked-deleted count)."""
        index = hnswlib.Index(space=self.metric, dim=self.dimension)
        index.load_index(str(path), max_elements=0)
        index.set_ef(self.ef_search)
        index.set_num_threads(self.threads)
        with self.lock.write():
            self._index = index
            self._deleted = deleted
