"""Exact ground truth against a naive reference."""

from __future__ import annotations

import numpy as np
import pytest

from akidb.datagen.groundtruth import exact_knn, recall_at_k


def _naive(base, queries, k, metric, mask=None):
    out = []
    for q in queries:
        scores = []
        for i, b in enumerate(base):
            if mask is not None and not mask[i]:
                continue
            if metric == "cosine":
                s = float(q @ b / (np.linalg.norm(q) * np.linalg.norm(b)))
            elif metric == "ip":
                s = float(q @ b)
            else:
                s = -float(np.linalg.norm(q - b))
            scores.append((s, i))
        scores.sort(key=lambda t: (-t[0], t[1]))
        out.append([i for _, i in scores[:k]])
    return out


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_blocked_brute_force_matches_naive(metric):
    rng = np.random.default_rng(7)
    base = rng.standard_normal((300, 16)).astype(np.float32)
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    mask = rng.random(300) < 0.3
    for m in (None, mask):
        idx, scores = exact_knn(base, queries, 10, metric, mask=m, query_block=7, base_block=64)
        assert [list(r) for r in idx] == _naive(base, queries, 10, metric, m)
        assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_short_rows_are_padded_and_recall_ignores_padding():
    base = np.eye(4, dtype=np.float32)
    idx, scores = exact_knn(base, base[:1], 3, "l2", mask=np.array([True, False, False, False]))
    assert list(idx[0]) == [0, -1, -1] and np.isneginf(scores[0, 1])
    assert recall_at_k([[0]], idx, 3) == 1.0
    assert recall_at_k([[1, 2, 3]], idx, 3) == 0.0


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_parallel_blocks_give_one_answer_with_ties_by_index(metric):
    # Small integer vectors make exact float ties common; the answer must not depend
    # on workers or blocking, and equal scores come lowest index first.
    rng = np.random.default_rng(3)
    base = rng.integers(-2, 3, (400, 6)).astype(np.float32)
    queries = rng.integers(-2, 3, (37, 6)).astype(np.float32)
    mask = rng.random((37, 400)) < 0.5
    want = _naive(base, queries, 25, metric)
    for workers, qb, bb in ((1, 512, 8192), (2, 5, 16), (3, 1, 64), (4, 9, 100)):
        idx, _ = exact_knn(base, queries, 25, metric, query_block=qb, base_block=bb,
                           workers=workers)
        assert [list(r) for r in idx] == want, (workers, qb, bb)
        idx, _ = exact_knn(base, queries, 25, metric, mask=mask, query_block=qb,
                           base_block=bb, workers=workers)
        for row, q in enumerate(queries):
            allowed = np.flatnonzero(mask[row])
            assert list(idx[row]) == [int(allowed[i]) for i in
                                      _naive(base[allowed], q[None], 25, metric)[0]]


def test_progress_reports_every_query_once():
    rng = np.random.default_rng(4)
    base = rng.standard_normal((50, 4)).astype(np.float32)
    done: list[int] = []
    exact_knn(base, base[:23], 3, "ip", query_block=4, workers=2, on_block=done.append)
    assert sum(done) == 23 and len(done) == 6
