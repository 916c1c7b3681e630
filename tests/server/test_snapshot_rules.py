"""When a collection snapshots itself: the log-size rule and the vector-count rule."""

from __future__ import annotations

import numpy as np

from akidb.server.collection import Collection

from .collections import open_collection


def _collection(tmp_path, dim: int = 16) -> Collection:
    return open_collection(tmp_path, dim=dim, m=8)


def _add(coll: Collection, start: int, n: int, dim: int = 16) -> None:
    vecs = np.random.default_rng(start).standard_normal((n, dim)).astype(np.float32)
    ids = [str(i) for i in range(start, start + n)]
    coll.upsert(ids, vecs, [None] * n, ["{}"] * n)


def test_the_vector_count_rule_applies_only_without_a_snapshot(tmp_path):
    coll = _collection(tmp_path)
    _add(coll, 0, 200)
    huge_log_allowance = 1 << 30
    assert not coll.needs_snapshot(huge_log_allowance, 0.25, min_vectors=300)  # 200 < 300
    _add(coll, 200, 100)
    assert coll.needs_snapshot(huge_log_allowance, 0.25, min_vectors=300)  # 300 >= 300
    coll.snapshot()
    _add(coll, 300, 10)
    assert not coll.needs_snapshot(huge_log_allowance, 0.25, min_vectors=300)  # has one now


def test_the_log_rule_is_the_larger_of_a_floor_and_a_quarter_of_the_index(tmp_path):
    coll = _collection(tmp_path)
    _add(coll, 0, 400)
    coll.snapshot()
    _add(coll, 400, 400)
    index_bytes = coll.count * (16 * 4 + 8 * 8)
    wal = coll.wal.size_bytes()
    assert 0.25 * index_bytes < wal  # a quarter of the index is exceeded ...
    assert not coll.needs_snapshot(wal + 1, 0.25)  # ... but not the floor
    assert coll.needs_snapshot(wal - 1, 0.25)  # past the floor and past a quarter
    assert not coll.needs_snapshot(wal - 1, wal / index_bytes + 0.01)  # a larger share
    coll.close()
