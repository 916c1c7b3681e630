"""Vectors by label for exact search over a filter's matching set.

hnswlib's ``get_items`` took ~50 ms for 2000 labels here and SQLite ~19 ms, while
fancy-indexing an in-memory matrix takes well under a millisecond. The copy is
kept as int8 codes with one float32 scale per row (about a quarter of float32's
memory: the server's memory per 1M vectors is a target) and used only to
shortlist ``RESCORE_FACTOR x k`` candidates, whose exact float32 vectors are then
fetched and scored, so results stay exact. int8 rather than float16 because
numpy widens int8 to float32 ~13x faster (0.32 vs 4.2 ms for 5000 x 384 rows
here), and that widening was most of a filtered search's time.
Cosine vectors are stored normalized so every score is one matrix-vector product.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MIN_ROWS = 1024
RESCORE_FACTOR = 4

# labels -> (labels still present, their exact float32 vectors in that order)
Fetch = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class FlatVectors:
    def __init__(self, dimension: int, metric: str, fetch_exact: Fetch) -> None:
        self.dimension = dimension
        self.metric = metric
        self.fetch_exact = fetch_exact
        # (codes, scales) swapped as one tuple, so a reader never pairs the codes of
        # one allocation with the scales of another.
        self._rows = (np.zeros((MIN_ROWS, dimension), np.int8), np.zeros(MIN_ROWS, np.float32))
        # Each row's norm before normalizing (cosine): a snapshot's catalogue carries it,
        # and reading every vector back from SQLite for it was 0.70-0.79 s of a 1.2 s
        # snapshot at 50k x 384, all of it under the collection's write lock (NOTES).
        self._norms = np.zeros(MIN_ROWS, np.float32)

    def put(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Store rows by label (callers serialize writes; readers may run meanwhile, and
        at worst shortlist a row being replaced by its old value: rescoring is exact)."""
        if len(labels) == 0:
            return
        codes, scales = self._rows
        need = int(labels.max()) + 1
        if need > len(codes):
            size = max(need, 2 * len(codes))
            grown = (np.zeros((size, self.dimension), np.int8), np.zeros(size, np.float32))
            grown[0][: len(codes)] = codes
            grown[1][: len(scales)] = scales
            self._rows = codes, scales = grown  # readers of the old pair stay valid
            norms = np.zeros(size, np.float32)
            norms[: len(self._norms)] = self._norms
            self._norms = norms
        rows = np.asarray(vectors, dtype=np.float32)
        if self.metric == "cosine":
            norm = np.linalg.norm(rows, axis=-1)
            self._norms[labels] = norm
            rows = rows / norm[:, None]
        scale = np.abs(rows).max(axis=1) / 127
        scale[scale == 0] = 1
        codes[labels] = np.rint(rows / scale[:, None]).astype(np.int8)
        scales[labels] = scale

    def norms(self, labels: np.ndarray) -> np.ndarray:
        """The norms of these labels' vectors as upserted (cosine; 0 for a label never
        put). Callers hold the collection's write lock, as every ``put`` does."""
        return self._norms[labels]

    def _normalized(self, rows: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            return rows / np.linalg.norm(rows, axis=-1, keepdims=True)
        return rows

    def _scores(self, stored: np.ndarray, q: np.ndarray) -> np.ndarray:
        if self.metric == "l2":
            return -np.sqrt(np.maximum(((stored - q) ** 2).sum(axis=1), 0.0))
        return stored @ q

    def score(self, vector: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """Exact higher-is-better scores of float32 rows against one query, as the
        index scores them."""
        q = self._normalized(np.asarray(vector, dtype=np.float32).reshape(-1))
        return self._scores(self._normalized(np.asarray(stored, dtype=np.float32)), q)

    def _approx_scores(self, labels: np.ndarray, q: np.ndarray) -> np.ndarray:
        codes, scales = self._rows
        if self.metric == "l2":
            return self._scores(codes[labels].astype(np.float32) * scales[labels, None], q)
        # einsum widens the int8 rows in buffered blocks (no float32 copy of them all)
        # and runs in this thread: a BLAS matvec woke OpenBLAS's threads, which kept a
        # second core spinning (CPU/wall 1.99 at 20k rows) in a server whose concurrency
        # comes from its request threads. 10k x 512: 2.7 ms against 3.1 ms.
        return np.einsum("ij,j->i", codes[labels], q) * scales[labels]

    def exact(self, vector: np.ndarray, labels: np.ndarray, k: int
              ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (labels, higher-is-better scores) among ``labels``."""
        if len(labels) == 0 or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        q = self._normalized(np.asarray(vector, dtype=np.float32).reshape(-1))
        shortlist = labels
        if len(labels) > RESCORE_FACTOR * k:
            approx = self._approx_scores(labels, q)
            keep = np.argpartition(-approx, RESCORE_FACTOR * k - 1)[: RESCORE_FACTOR * k]
            shortlist = labels[keep]
        shortlist, exact_vectors = self.fetch_exact(shortlist)
        if len(shortlist) == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        scores = self._scores(self._normalized(exact_vectors), q)
        k = min(k, len(shortlist))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return shortlist[top], scores[top]
