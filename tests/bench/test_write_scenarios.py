"""The write-side scenarios (capacity, streaming, freshness) on real databases: they
stop where they should, and their recall and lag figures see what a database does
(a driver that never indexes streamed rows, one that shows inserts late)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from akidb.bench import datasets
from akidb.bench.drivers import IndexParams, open_driver
from akidb.bench.drivers.hnswlib_driver import HnswlibDriver
from akidb.bench.scenarios import SCENARIOS, Options


@pytest.fixture(scope="module")
def data():
    return datasets.load("clustered-5k-64-cosine")


def _opts(**kw):
    return Options(k=10, params=IndexParams("cosine", 16, 100, 64), **kw)


def _run(name, driver, data, opts):
    try:
        return SCENARIOS[name][0](driver, data, opts, lambda _msg: None)
    finally:
        driver.drop()
        driver.close()


def test_capacity_stops_at_max_vectors_with_every_vector_counted(data):
    r = _run("capacity", open_driver("hnswlib"), data, _opts(max_vectors=4500))
    assert r["stopped_by"] == "max_vectors"
    assert r["inserted"] == r["count"] == 4500
    assert len(r["per_s_by_tenth"]) == 5 and min(r["per_s_by_tenth"]) > 0  # 5 batches


def test_capacity_stops_at_the_databases_limit():
    small = datasets.Dataset("x", np.zeros((1, 8), np.float32), np.zeros((1, 8), np.float32),
                             np.zeros((1, 1), np.int64), "cosine", ["a"])
    r = _run("capacity", open_driver("akidb", quotas={"max_vectors": 2500}), small,
             _opts(max_vectors=10_000))
    assert r["stopped_by"].startswith("limit: ") and "quota of 2500" in r["stopped_by"]
    assert r["inserted"] == r["count"] == 2000  # the third batch of 1000 was refused whole


def test_capacity_stops_when_the_budget_is_spent(data):
    r = _run("capacity", open_driver("hnswlib"), data, _opts(max_vectors=10_000, budget_s=0.0))
    assert r["stopped_by"] == "budget" and r["inserted"] == r["count"] == 0


def test_streaming_inserts_everything_and_judges_recall_per_quarter(data):
    r = _run("streaming", open_driver("hnswlib"), data, _opts(insert_rate=2000.0))
    assert r["loaded_first"] == 2500 and r["streamed"] == 2500
    assert r["writer_error"] is None and r["searches"] > 0
    assert [s["stage"] for s in r["stages"]] == ["0-25%", "25-50%", "50-75%", "75-100%"]
    assert all(s["recall"] > 0.95 for s in r["stages"] if "recall" in s)


class _NeverIndexesStream(HnswlibDriver):
    """Accepts streamed rows but leaves them out of its index: a stale database."""

    def wait_indexed(self, count):
        self.frozen = True

    def insert(self, ids, vectors, labels):
        if getattr(self, "frozen", False):
            return
        super().insert(ids, vectors, labels)


def test_streaming_recall_falls_when_streamed_rows_never_show(data):
    r = _run("streaming", _NeverIndexesStream(), data, _opts(insert_rate=2000.0))
    judged = [s["recall"] for s in r["stages"] if "recall" in s]
    assert judged and judged[-1] < 0.9  # half the rows are missing from every answer


class _ShowsInsertsLate(HnswlibDriver):
    """Makes an insert searchable only DELAY_S after it was acknowledged."""

    DELAY_S = 0.05

    def __init__(self):
        super().__init__()
        self.pending = []

    def insert(self, ids, vectors, labels):
        if self.count() == 0 or len(ids) > 1:
            super().insert(ids, vectors, labels)
        else:
            self.pending.append((time.perf_counter() + self.DELAY_S, ids, vectors))

    def search(self, vector, k, ef=None, flt=None):
        now = time.perf_counter()
        while self.pending and self.pending[0][0] <= now:
            _due, ids, vectors = self.pending.pop(0)
            super().insert(ids, vectors, None)
        return super().search(vector, k, ef, flt)


def test_freshness_sees_each_new_document_at_once_on_akidb(data):
    r = _run("freshness", open_driver("akidb"), data, _opts(probes=10))
    assert r["probes"] == 10 and r["visible_at_first_search"] == 10
    assert r["not_visible_within_s"] == 0 and 0 < r["lag_p50_ms"] <= r["lag_p99_ms"]


def test_freshness_measures_a_late_database_lag(data):
    r = _run("freshness", _ShowsInsertsLate(), data, _opts(probes=5))
    assert r["visible_at_first_search"] == 0 and r["not_visible_within_s"] == 0
    assert r["lag_p50_ms"] >= _ShowsInsertsLate.DELAY_S * 1000
