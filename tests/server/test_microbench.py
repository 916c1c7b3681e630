"""Microbenchmarks of the hot paths (pytest-benchmark), run with ``make microbench``.

They are excluded from the default test run; ``make microbench-compare`` fails when a
median slows by more than 10% against the last saved run.
"""

from __future__ import annotations

import numpy as np
import pytest

from akidb.datagen import vectors
from akidb.datagen.documents import documents
from akidb.datagen.groundtruth import exact_knn
from akidb.server.index.flat import FlatVectors
from akidb.server.index.payload import PayloadIndex
from akidb.server.query import filters
from akidb.server.storage.wal import OP_UPSERT, WriteAheadLog

pytestmark = pytest.mark.microbench


@pytest.fixture(scope="module")
def payload_index():
    index = PayloadIndex()
    index.put([(i, d["payload"]) for i, d in enumerate(documents(20000, seed=1))])
    return index


@pytest.mark.parametrize("flt", [{"category": "cat-07"}, {"price": {"$lt": 10}},
                                 {"$and": [{"lang": "en"}, {"tags": {"$in": ["red", "eco"]}}]}],
                         ids=["eq-1pct", "range-10pct", "and-in"])
def test_filter_evaluation(benchmark, payload_index, flt):
    node = filters.parse(flt)
    matched = benchmark(payload_index.evaluate, node)
    assert matched


def test_wal_append_500x384(benchmark, tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="none")
    wal.open()
    batch = vectors.clustered(500, 384, seed=1)
    meta = {"ids": [str(i) for i in range(500)], "labels": list(range(500)),
            "texts": [None] * 500, "payloads": ["{}"] * 500}
    benchmark(wal.append, OP_UPSERT, meta, batch)
    wal.close()


def test_exact_search_over_2000_matches(benchmark):
    base = vectors.clustered(20000, 384, seed=2)
    flat = FlatVectors(384, "cosine", lambda labels: (labels, base[labels]))
    flat.put(np.arange(20000), base)
    labels = np.arange(0, 20000, 10)
    query = vectors.queries(1, 384, seed=2)[0]
    found, _ = benchmark(flat.exact, query, labels, 10)
    assert len(found) == 10


def test_ground_truth_block(benchmark):
    base = vectors.clustered(20000, 128, seed=3)
    queries = vectors.queries(100, 128, seed=3)
    idx, _ = benchmark(exact_knn, base, queries, 10, "cosine")
    assert idx.shape == (100, 10)
