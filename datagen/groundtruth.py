"""Exact k-nearest neighbours by blocked brute force on BLAS.

Queries and base are processed in blocks, so memory stays bounded by
``query_block x base_block`` scores whatever N is, and each block is one matmul.
Keeping the top k is the other cost: a full ``argpartition`` of every block
would take longer than the matmul at 128-d, so only the first block is
partitioned; later blocks offer just the scores above each query's current k-th
best (a vectorized comparison), which after the first block are few.
Scores follow the server's convention (higher is better): cosine similarity,
inner product, negative L2 distance. L2 ranks by ``2 q·b − |b|²`` (no square root
over every pair) and converts the final k only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from server.query import filters

FIRST_BLOCK = 8192


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1, norms)
    return x


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine", *,
              mask: np.ndarray | None = None, query_block: int = 512, base_block: int = 65536
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
    bounds = [0, *range(min(FIRST_BLOCK, nb), nb, base_block), nb] if nb else [0]
    for qs in range(0, nq, query_block):
        q = queries[qs : qs + query_block]
        best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
        best_i = np.full((len(q), k), -1, dtype=np.int64)
        for bs, be in zip(bounds, bounds[1:], strict=False):
            scores = q @ base[bs:be].T
            if base_sq is not None:
                scores *= 2
                scores -= base_sq[bs:be]
            if mask is not None:
                m = mask[bs:be] if mask.ndim == 1 else mask[qs : qs + len(q), bs:be]
                if m.ndim == 1:
                    scores[:, ~m] = -np.inf
                else:
                    np.putmask(scores, ~m, -np.inf)
            _merge(best_s, best_i, scores, bs)
        order = np.argsort(-best_s, axis=1, kind="stable")
        best_s = np.take_along_axis(best_s, order, axis=1)
        best_i = np.take_along_axis(best_i, order, axis=1)
        if base_sq is not None:
            q_sq = np.einsum("ij,ij->i", q, q)[:, None]
            best_s = -np.sqrt(np.maximum(q_sq - best_s, 0))
        best_i[~np.isfinite(best_s)] = -1
        out_idx[qs : qs + len(q)] = best_i
        out_score[qs : qs + len(q)] = best_s
    return out_idx, out_score


def _merge(best_s: np.ndarray, best_i: np.ndarray, scores: np.ndarray, offset: int) -> None:
    """Fold a block of scores into each row's running top k (in place)."""
    k = best_s.shape[1]
    threshold = best_s.min(axis=1)
    if scores.shape[1] >= k and np.isneginf(threshold).all():
        # Nothing kept yet (the first block): one vectorized partition of every row.
        part = np.argpartition(scores, scores.shape[1] - k, axis=1)[:, -k:]
        best_s[:] = np.take_along_axis(scores, part, axis=1)
        best_i[:] = part + offset
        return
    # 1-D flatnonzero of the raveled mask: ~5x faster than 2-D nonzero here (6.8 vs
    # 34 ms for 256 x 65536), and the row/column split is integer arithmetic.
    flat = np.flatnonzero(scores > threshold[:, None])
    if len(flat) == 0:
        return
    rows, cols = np.divmod(flat, scores.shape[1])
    starts = np.searchsorted(rows, np.arange(len(best_s) + 1))
    for r in np.flatnonzero(np.diff(starts)):
        c = cols[starts[r] : starts[r + 1]]
        all_s = np.concatenate([best_s[r], scores[r, c]])
        all_i = np.concatenate([best_i[r], c + offset])
        keep = np.argpartition(-all_s, k - 1)[:k] if len(all_s) > k else slice(None)
        best_s[r] = all_s[keep]
        best_i[r] = all_i[keep]


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
