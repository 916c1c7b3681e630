"""Exact k-nearest neighbours by blocked brute force on BLAS.

Queries and base are processed in tiles, so memory stays bounded by
``query_block x base_block`` scores whatever N is, and each tile is one matmul.
Keeping the top k is the other cost, and at 128-d it rivals the matmul, so the
loop is built around memory traffic: one preallocated score tile, reused (no page
faults from a fresh 100 MB array per block), is compared with each query's
current k-th best; only the first tile is partitioned in full, later tiles offer
just the scores above that threshold (about ``k x tile / seen`` per row), and
those are folded into every row's top k together through one padded partition.
Tile sizes were chosen by measurement (NOTES): large tiles keep the matmul at
its peak rate, which mattered more than keeping a tile in cache for the compare.
Scores follow the server's convention (higher is better): cosine similarity,
inner product, negative L2 distance. L2 ranks by ``2 q·b − |b|²`` (no square root
over every pair) and converts the final k only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from server.query import filters

FIRST_BLOCK = 1024


def _tile_bounds(nb: int, k: int, base_block: int) -> list[int]:
    """Tile edges over the base: small first, doubling up to ``base_block``.

    A full partition of the first tile is the expensive step, so that tile is small;
    each later tile is about as large as everything seen before it, so it offers
    about k candidates per row and the merge stays cheap.
    """
    bounds, width = [0], max(min(FIRST_BLOCK, base_block), k)
    while bounds[-1] < nb:
        bounds.append(min(nb, bounds[-1] + width))
        width = max(k, min(base_block, 2 * width))
    return bounds


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1, norms)
    return x


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine", *,
              mask: np.ndarray | None = None, query_block: int = 1024, base_block: int = 32768
              ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores), each (n_queries, k), best first; -1 / -inf pad short rows.

    ``mask`` (bool, per base row, or per query x base row) restricts the candidates,
    which is how filtered ground truth is computed.
    """
    if metric not in ("cosine", "l2", "ip"):
        raise ValueError(f"metric must be cosine, l2 or ip, got {metric!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    base = _prepare(base, metric)
    queries = _prepare(queries, metric)
    nq, nb = len(queries), len(base)
    out_idx = np.full((nq, k), -1, dtype=np.int64)
    out_score = np.full((nq, k), -np.inf, dtype=np.float32)
    base_sq = np.einsum("ij,ij->i", base, base) if metric == "l2" else None
    bounds = _tile_bounds(nb, k, base_block)
    widest = max((be - bs for bs, be in zip(bounds, bounds[1:], strict=False)), default=0)
    # Flat scratch reshaped per tile, so every tile is C-contiguous: ravel and
    # flatnonzero on a sliced view would copy it whole.
    tile = np.empty(min(query_block, nq) * widest, dtype=np.float32)
    above = np.empty(tile.shape, dtype=bool)
    for qs in range(0, nq, query_block):
        q = queries[qs : qs + query_block]
        top = _TopK(len(q), k)
        for bs, be in zip(bounds, bounds[1:], strict=False):
            shape = (len(q), be - bs)
            scores = tile[: shape[0] * shape[1]].reshape(shape)
            np.matmul(q, base[bs:be].T, out=scores)
            if base_sq is not None:
                scores *= 2
                scores -= base_sq[bs:be]
            if mask is not None:
                m = mask[bs:be] if mask.ndim == 1 else mask[qs : qs + len(q), bs:be]
                np.copyto(scores, -np.inf, where=~m)
            top.offer(scores, bs, above[: scores.size].reshape(shape))
        best_s, best_i = top.result()
        if base_sq is not None:
            q_sq = np.einsum("ij,ij->i", q, q)[:, None]
            best_s = -np.sqrt(np.maximum(q_sq - best_s, 0))
        best_i[~np.isfinite(best_s)] = -1
        out_idx[qs : qs + len(q)] = best_i
        out_score[qs : qs + len(q)] = best_s
    return out_idx, out_score


class _TopK:
    """Each row's running top k over tiles of scores.

    A tile only offers the scores above the row's current k-th best; those wait in
    a pending list and are folded in once there are about k per row, because every
    fold has a fixed cost (gathers, a padded partition) that per-tile folding paid
    some thirty times per query block. A stale threshold only admits a few more
    candidates, never loses one.
    """

    def __init__(self, rows: int, k: int) -> None:
        self.k = k
        self.best_s = np.full((rows, k), -np.inf, dtype=np.float32)
        self.best_i = np.full((rows, k), -1, dtype=np.int64)
        self.threshold = np.full(rows, -np.inf, dtype=np.float32)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.pending_n = 0
        self.empty = True

    def offer(self, scores: np.ndarray, offset: int, above: np.ndarray) -> None:
        """Take a (rows x width) C-contiguous tile; ``above`` is reusable scratch."""
        width = scores.shape[1]
        if self.empty and width >= self.k:
            # Nothing kept yet (the first tile): one vectorized partition of every row.
            part = np.argpartition(scores, width - self.k, axis=1)[:, -self.k :]
            self.best_s[:] = np.take_along_axis(scores, part, axis=1)
            self.best_i[:] = part + offset
            self.threshold = self.best_s.min(axis=1)
            self.empty = False
            return
        np.greater(scores, self.threshold[:, None], out=above)
        # 1-D flatnonzero of the raveled mask: ~5x faster than 2-D nonzero here, and
        # the row/column split is integer arithmetic.
        flat = np.flatnonzero(above)
        if len(flat) == 0:
            return
        rows, cols = np.divmod(flat, width)
        self.pending.append((rows, cols + offset, scores.ravel()[flat]))
        self.pending_n += len(flat)
        if self.pending_n >= self.best_s.size:
            self._fold()

    def _fold(self) -> None:
        """Merge the pending candidates into the top k through one padded partition."""
        if not self.pending:
            return
        k, n = self.k, len(self.best_s)
        rows, cols, vals = (np.concatenate(parts) for parts in zip(*self.pending, strict=True))
        self.pending, self.pending_n, self.empty = [], 0, False
        order = np.argsort(rows, kind="stable")
        rows, cols, vals = rows[order], cols[order], vals[order]
        starts = np.searchsorted(rows, np.arange(n + 1))
        counts = np.diff(starts)
        hit = np.flatnonzero(counts)
        # Pad every row that has candidates to k + its most candidates, kept scores
        # first, then partition all of those rows together.
        slot = np.empty(n, dtype=np.int64)
        slot[hit] = np.arange(len(hit))
        width = k + int(counts.max())
        cand_s = np.full((len(hit), width), -np.inf, dtype=np.float32)
        cand_i = np.full((len(hit), width), -1, dtype=np.int64)
        cand_s[:, :k] = self.best_s[hit]
        cand_i[:, :k] = self.best_i[hit]
        at = (slot[rows], k + np.arange(len(rows)) - starts[rows])
        cand_s[at] = vals
        cand_i[at] = cols
        keep = np.argpartition(cand_s, width - k, axis=1)[:, -k:]
        self.best_s[hit] = np.take_along_axis(cand_s, keep, axis=1)
        self.best_i[hit] = np.take_along_axis(cand_i, keep, axis=1)
        self.threshold = self.best_s.min(axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices) per row, best first."""
        self._fold()
        order = np.argsort(-self.best_s, axis=1, kind="stable")
        return (np.take_along_axis(self.best_s, order, axis=1),
                np.take_along_axis(self.best_i, order, axis=1))


def recall_at_k(found: list[list[int]] | np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean fraction of the true top-k (ignoring -1 padding) present in the found top-k."""
    total = 0.0
    rows = 0
    for got, want in zip(found, truth, strict=True):
        want_set = {int(x) for x in want[:k] if x >= 0}
        if not want_set:
            continue
        total += len(want_set & {int(x) for x in list(got)[:k]}) / len(want_set)
        rows += 1
    return total / rows if rows else 1.0


def filter_mask(payloads: Iterable[dict[str, Any]], flt: dict[str, Any]) -> np.ndarray:
    """Which payloads a filter selects, by the server's own filter semantics."""
    node = filters.parse(flt)
    return np.fromiter((filters.matches(node, p) for p in payloads), dtype=bool)
