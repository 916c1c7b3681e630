"""Exact k-nearest neighbours by blocked brute force on BLAS.

Queries and base are processed in tiles, so memory stays bounded by
``workers x query_block x base_block`` scores whatever N is, and each tile is one matmul.
Keeping the top k is the other cost, and at 128-d it rivals the matmul, so the
loop is built around memory traffic: one preallocated score tile, reused (no page
faults from a fresh 100 MB array per block), is compared with each query's
current k-th best; only the first tile is partitioned in full, later tiles offer
just the scores above that threshold (about ``k x tile / seen`` per row), and
those are folded into every row's top k together through one padded partition.
Query blocks run on every usable core at once, each with a one-thread BLAS, so
selection on one core overlaps a matmul on the other. Block and tile sizes were
chosen by measurement (NOTES).
Scores follow the server's convention (higher is better): cosine similarity,
inner product, negative L2 distance. L2 ranks by ``2 q·b − |b|²`` (no square root
over every pair) and converts the final k only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from akidb.datagen import usable_cores
from akidb.server.query import filters

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
              mask: np.ndarray | None = None, query_block: int = 512, base_block: int = 8192,
              workers: int | None = None, on_block: Callable[[int], None] | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores), each (n_queries, k), best first; -1 / -inf pad short rows.

    ``mask`` (bool, per base row, or per query x base row) restricts the candidates,
    which is how filtered ground truth is computed. ``workers`` threads (default: the
    usable cores) each take whole query blocks with BLAS held to one thread, so one
    core's top-k selection overlaps the other's matmul instead of a two-core matmul
    waiting on single-threaded selection (NOTES). Memory is ``workers x query_block x
    base_block x 5`` bytes of scratch whatever N is. ``on_block(n)`` reports each
    finished block of n queries (from worker threads, one call at a time), for
    progress bars.
    """
    if metric not in ("cosine", "l2", "ip"):
        raise ValueError(f"metric must be cosine, l2 or ip, got {metric!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if query_block < 1 or base_block < 1:
        raise ValueError(f"blocks must be >= 1, got query_block={query_block}, "
                         f"base_block={base_block}")
    base = _prepare(base, metric)
    queries = _prepare(queries, metric)
    nq, nb = len(queries), len(base)
    out_idx = np.full((nq, k), -1, dtype=np.int64)
    out_score = np.full((nq, k), -np.inf, dtype=np.float32)
    base_sq = np.einsum("ij,ij->i", base, base) if metric == "l2" else None
    bounds = _tile_bounds(nb, k, base_block)
    widest = max((be - bs for bs, be in zip(bounds, bounds[1:], strict=False)), default=0)
    workers = max(1, workers or usable_cores())
    blocks = _query_blocks(nq, query_block, workers)
    workers = min(workers, max(1, len(blocks)))
    todo: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()
    for block in blocks:
        todo.put(block)
    report_lock = threading.Lock()

    def run_worker() -> None:
        # Flat scratch reshaped per tile, so every tile is C-contiguous: ravel and
        # flatnonzero on a sliced view would copy it whole.
        tile = np.empty(max((e - s for s, e in blocks), default=0) * widest, dtype=np.float32)
        above = np.empty(tile.shape, dtype=bool)
        while True:
            try:
                qs, qe = todo.get_nowait()
            except queue.Empty:
                return
            q = queries[qs:qe]
            top = _TopK(len(q), k)
            for bs, be in zip(bounds, bounds[1:], strict=False):
                shape = (len(q), be - bs)
                scores = tile[: shape[0] * shape[1]].reshape(shape)
                np.matmul(q, base[bs:be].T, out=scores)
                if base_sq is not None:
                    scores *= 2
                    scores -= base_sq[bs:be]
                if mask is not None:
                    m = mask[bs:be] if mask.ndim == 1 else mask[qs:qe, bs:be]
                    np.copyto(scores, -np.inf, where=~m)
                top.offer(scores, bs, above[: scores.size].reshape(shape))
            best_s, best_i = top.result()
            if base_sq is not None:
                q_sq = np.einsum("ij,ij->i", q, q)[:, None]
                best_s = -np.sqrt(np.maximum(q_sq - best_s, 0))
            best_i[~np.isfinite(best_s)] = -1
            out_idx[qs : qs + len(q)] = best_i
            out_score[qs : qs + len(q)] = best_s
            if on_block is not None:
                with report_lock:
                    on_block(len(q))

    if workers == 1:
        run_worker()
    else:
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            for done in [pool.submit(run_worker) for _ in range(workers)]:
                done.result()
    return out_idx, out_score


def _query_blocks(nq: int, query_block: int, workers: int) -> list[tuple[int, int]]:
    """Near-equal (start, end) blocks of at most ``query_block``, a multiple of
    ``workers`` of them (fewer only when there are fewer queries), so the workers
    finish together instead of one of them running a last block alone."""
    count = -(-nq // query_block)
    count = -(-count // workers) * workers
    edges = np.linspace(0, nq, min(count, nq) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges, edges[1:], strict=False)]


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
            self.best_s[:], self.best_i[:] = _select(scores, self.k, offset=offset)
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
        self.best_s[hit], self.best_i[hit] = _select(cand_s, k, cand_i)
        self.threshold = self.best_s.min(axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices) per row, best first; equal scores by index, so the order
        does not depend on how the queries and base were blocked."""
        self._fold()
        order = np.lexsort((self.best_i, -self.best_s), axis=1)
        return (np.take_along_axis(self.best_s, order, axis=1),
                np.take_along_axis(self.best_i, order, axis=1))


def _select(scores: np.ndarray, k: int, ids: np.ndarray | None = None, offset: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best (scores, ids), unordered; ``ids`` default to column + offset.

    Among equal scores at the k-th place the lowest id wins, which makes the answer
    independent of blocking: tiles arrive in id order and later ones must beat the
    k-th best strictly, so only a partition can pick among ties, and argpartition
    picks arbitrarily. Rows where a tie straddles the k-th place are rare (exact
    float ties), so they are redone one by one with a full sort.
    """
    part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
    best_s = np.take_along_axis(scores, part, axis=1)
    best_i = part + offset if ids is None else np.take_along_axis(ids, part, axis=1)
    kth = best_s.min(axis=1)
    straddle = ((scores >= kth[:, None]).sum(axis=1) > k) & np.isfinite(kth)
    for row in np.flatnonzero(straddle):
        row_ids = np.arange(offset, offset + scores.shape[1]) if ids is None else ids[row]
        order = np.lexsort((row_ids, -scores[row]))[:k]
        best_s[row], best_i[row] = scores[row, order], row_ids[order]
    return best_s, best_i


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
