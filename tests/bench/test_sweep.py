"""The recall/QPS sweep: more ef buys recall on a driver that takes it per search; a
driver that does not gives one point, labelled."""

from __future__ import annotations

from akidb.bench import datasets
from akidb.bench.drivers import IndexParams
from akidb.bench.drivers.hnswlib_driver import HnswlibDriver
from akidb.bench.scenarios import SCENARIOS, Options


class _NoSearchEf(HnswlibDriver):
    capabilities = frozenset({"filter", "batch_search"})


def _sweep(driver):
    data = datasets.load("clustered-5k-64-cosine")
    opts = Options(k=10, ef_sweep=[10, 200], params=IndexParams("cosine", 8, 40, 10))
    try:
        return SCENARIOS["sweep"][0](driver, data, opts, lambda _m: None)
    finally:
        driver.close()


def test_more_ef_buys_recall():
    low, high = _sweep(HnswlibDriver())["points"]
    assert (low["ef"], high["ef"]) == (10, 200)
    assert high["recall"] > low["recall"] and high["recall"] > 0.95
    assert low["qps"] > 0 and low["queries"] == high["queries"] == 200


def test_a_driver_without_search_ef_gives_one_labelled_point():
    r = _sweep(_NoSearchEf())
    (point,) = r["points"]
    assert point["ef"] is None and "one point" in r["note"]
