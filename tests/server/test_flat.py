"""Exact search over a matching set: the int8 shortlist must never cost exactness."""

from __future__ import annotations

import numpy as np
import pytest

from akidb.datagen.groundtruth import exact_knn
from akidb.server.index.flat import FlatVectors


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_exact_over_a_subset_matches_brute_force(metric):
    rng = np.random.default_rng(7)
    # Clustered rows with varied norms (l2/ip see the scale; cosine normalizes it).
    centers = rng.standard_normal((20, 64)).astype(np.float32)
    base = (centers[rng.integers(0, 20, 6000)] + 0.3 * rng.standard_normal((6000, 64))
            ).astype(np.float32) * rng.uniform(0.2, 5.0, (6000, 1)).astype(np.float32)
    flat = FlatVectors(64, metric, lambda labels: (labels, base[labels]))
    flat.put(np.arange(3000), base[:3000])
    flat.put(np.arange(3000, 6000), base[3000:])  # grows past the first allocation
    subset = np.sort(rng.choice(6000, 2500, replace=False))
    queries = rng.standard_normal((30, 64)).astype(np.float32)
    truth, _ = exact_knn(base[subset], queries, 10, metric)
    for q, want in zip(queries, truth, strict=True):
        got, scores = flat.exact(q, subset, 10)
        assert set(got.tolist()) == set(subset[want].tolist())
        assert np.all(np.diff(scores) <= 0)  # best first


def test_replacing_a_row_updates_its_shortlist_entry():
    base = np.eye(8, dtype=np.float32)
    store = {i: base[i] for i in range(8)}
    flat = FlatVectors(8, "ip", lambda labels: (labels, np.stack([store[int(x)]
                                                                  for x in labels])))
    flat.put(np.arange(8), base)
    store[3] = -base[3]
    flat.put(np.array([3]), store[3][None, :])
    got, scores = flat.exact(base[3], np.arange(8), 1)
    assert got[0] != 3 and scores[0] == 0.0
