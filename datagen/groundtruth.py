"""Exact k-nearest neighbours by blocked brute force on BLAS.

Queries and base are processed in blocks so memory stays bounded by
``query_block × base_block`` scores whatever N is; each block is one matmul, so
the work runs at the machine's BLAS rate. Scores follow the server's convention
(higher is better): cosine similarity, inner product, negative L2 distance.
"""

from __future__ import annotations

import numpy as np


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1, norms)
    return x


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine", *,
              mask: np.ndarray | None = None, query_block: int = 1024, base_block: int = 65536
              ) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores), each (n_queries, k), best first; -1 / -inf pad short rows.

    ``mask`` (bool, per base row, or per query × base row) restricts the candidates,
    which is how filtered ground truth is computed.
    """
    if metric not in ("cosine", "l2", "ip"):
        raise ValueError(f"metric must be cosine, l2 or ip, got {metric!r}")
    base = _prepare(base, metric)
    queries = _prepare(queries, metric)
    nq, nb = len(queries), len(base)
    k_eff = min(k, nb)
    out_idx = np.full((nq, k), -1, dtype=np.int64)
    out_score = np.full((nq, k), -np.inf, dtype=np.float32)
    base_sq = (base * base).sum(axis=1) if metric == "l2" else None
    for qs in range(0, nq, query_block):
        q = queries[qs : qs + query_block]
        best_idx = np.full((len(q), 0), -1, dtype=np.int64)
        best_score = np.full((len(q), 0), -np.inf, dtype=np.float32)
        for bs in range(0, nb, base_block):
            b = base[bs : bs + base_block]
            scores = q @ b.T
            if metric == "l2":
                sq = (q * q).sum(axis=1)[:, None] - 2 * scores + base_sq[None, bs : bs + len(b)]
                scores = -np.sqrt(np.maximum(sq, 0))
            if mask is not None:
                m = mask[bs : bs + len(b)] if mask.ndim == 1 else mask[qs : qs + len(q),
                                                                        bs : bs + len(b)]
                scores = np.where(m, scores, -np.inf)
            idx = np.broadcast_to(np.arange(bs, bs + len(b)), scores.shape)
            all_scores = np.concatenate([best_score, scores], axis=1)
            all_idx = np.concatenate([best_idx, idx], axis=1)
            keep = min(k_eff, all_scores.shape[1])
            part = np.argpartition(-all_scores, keep - 1, axis=1)[:, :keep]
            best_score = np.take_along_axis(all_scores, part, axis=1)
            best_idx = np.take_along_axis(all_idx, part, axis=1)
        order = np.argsort(-best_score, axis=1, kind="stable")
        best_score = np.take_along_axis(best_score, order, axis=1)
        best_idx = np.take_along_axis(best_idx, order, axis=1)
        best_idx = np.where(np.isfinite(best_score), best_idx, -1)
        out_idx[qs : qs + len(q), : best_idx.shape[1]] = best_idx
        out_score[qs : qs + len(q), : best_score.shape[1]] = best_score
    return out_idx, out_score


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
