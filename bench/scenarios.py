"""Scenarios that run on any driver (``akidb bench run``), after VectorDBBench's cases.

- ``serial``: load the dataset (insert duration and the time until all of it is
  searchable), then recall@k and serial P50/P99 over the test queries, one at a time.
- ``filtered``: the same search with a filter keeping 1% and 99% of the rows (a row
  number label, as VectorDBBench filters on ids), recall against the filtered truth.
- ``qps``: closed-loop search throughput per concurrency; AkiDB over REST is driven
  from client *processes* (``loadgen``, their CPU recorded and a saturated client
  flagged); hnswlib from threads (its search releases the GIL); other drivers:
  unsupported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from akidb.bench.datasets import Dataset
from akidb.bench.drivers import Driver, Filter, IndexParams, Unsupported
from akidb.datagen.groundtruth import exact_knn, recall_at_k

ROW = "_row"  # the label the filtered scenario adds: the row number


@dataclass
class Options:
    k: int = 10
    ef: int | None = None
    batch: int = 1000
    concurrency: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    seconds: float = 5.0
    params: IndexParams = field(default_factory=IndexParams)


def load(driver: Driver, data: Dataset, opts: Options, progress: Callable[[str], None]
         ) -> dict[str, Any]:
    driver.create(data.dimension, opts.params)
    started = time.perf_counter()
    rows = np.arange(len(data.train))
    for s in range(0, len(data.train), opts.batch):
        e = min(len(data.train), s + opts.batch)
        labels = {name: col[s:e] for name, col in data.labels.items()}
        labels[ROW] = rows[s:e]
        driver.insert(data.ids[s:e], data.train[s:e], labels)
        if (s // opts.batch) % 20 == 0:
            progress(f"{driver.name}: inserted {e}/{len(data.train)}")
    inserted = time.perf_counter() - started
    driver.wait_indexed(len(data.train))
    return {"insert_s": inserted, "load_s": time.perf_counter() - started,
            "vectors": len(data.train), "memory_bytes": driver.memory_bytes()}


def _serial(driver: Driver, data: Dataset, opts: Options, truth: np.ndarray,
            flt: Filter | None) -> dict[str, Any]:
    row_of = {v: i for i, v in enumerate(data.ids)}
    found, ms = [], []
    for q in data.test:
        t0 = time.perf_counter()
        ids = driver.search(q, opts.k, opts.ef, flt)
        ms.append((time.perf_counter() - t0) * 1000.0)
        found.append([row_of[i] for i in ids])
    lat = np.asarray(ms)
    return {"recall": recall_at_k(found, truth, opts.k), "p50_ms": float(np.median(lat)),
            "p99_ms": float(np.percentile(lat, 99)), "queries": len(lat)}


def serial(driver: Driver, data: Dataset, opts: Options, progress: Callable[[str], None]
           ) -> dict[str, Any]:
    out = load(driver, data, opts, progress)
    progress(f"{driver.name}: {len(data.test)} serial searches")
    out.update(_serial(driver, data, opts, data.neighbors, None))
    return out


def filtered(driver: Driver, data: Dataset, opts: Options, progress: Callable[[str], None]
             ) -> dict[str, Any]:
    out: dict[str, Any] = load(driver, data, opts, progress)
    n = len(data.train)
    cut = max(1, n // 100)
    for label, flt, mask in (("1%", Filter(ROW, "lt", cut), np.arange(n) < cut),
                             ("99%", Filter(ROW, "gte", cut), np.arange(n) >= cut)):
        truth, _ = exact_knn(data.train, data.test, opts.k, data.metric, mask=mask)
        progress(f"{driver.name}: filtered search keeping {label}")
        try:
            out[label] = _serial(driver, data, opts, truth, flt)
        except Unsupported as exc:
            out[label] = {"unsupported": str(exc)}
    return out


def qps(driver: Driver, data: Dataset, opts: Options, progress: Callable[[str], None]
        ) -> dict[str, Any]:
    out: dict[str, Any] = load(driver, data, opts, progress)
    runs = []
    for c in opts.concurrency:
        progress(f"{driver.name}: {c} concurrent clients for {opts.seconds:g} s")
        runs.append({"clients": c, **_closed_loop(driver, data, opts, c)})
    out["runs"] = runs
    best = max(runs, key=lambda r: r["qps"])
    out["best_qps"], out["best_clients"] = best["qps"], best["clients"]
    return out


def _closed_loop(driver: Driver, data: Dataset, opts: Options, clients: int
                 ) -> dict[str, Any]:
    if driver.name == "akidb-rest":
        from akidb.bench.loadgen import Request, closed_loop

        akidb: Any = driver
        t, d, c = akidb.collection.split("/")
        body = orjson.dumps({"vector": data.test[0], "k": opts.k},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        req = Request(akidb.client.rest_url, "POST",
                      f"/v1/tenants/{t}/databases/{d}/collections/{c}/search", body,
                      dict(akidb.client.transport.headers))
        r = closed_loop(req, clients, opts.seconds)
        return {k: r[k] for k in ("qps", "p50_ms", "p99_ms", "errors", "client_saturated")}
    from akidb.bench.drivers.hnswlib_driver import HnswlibDriver

    if not isinstance(driver, HnswlibDriver):
        raise Unsupported(f"qps from client processes is not wired for {driver.name}")
    deadline = time.perf_counter() + opts.seconds

    def worker(w: int) -> list[float]:
        lat, i = [], w
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            driver.search(data.test[i % len(data.test)], opts.k, opts.ef)
            lat.append((time.perf_counter() - t0) * 1000.0)
            i += clients
        return lat

    with ThreadPoolExecutor(clients) as pool:
        lat = np.concatenate([np.asarray(x) for x in pool.map(worker, range(clients))])
    return {"qps": len(lat) / opts.seconds, "p50_ms": float(np.median(lat)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": 0, "client_saturated": False}


SCENARIOS: dict[str, tuple[Callable[..., dict[str, Any]], str]] = {
    "serial": (serial, "load duration, recall@k, serial P50/P99"),
    "filtered": (filtered, "recall and latency with filters keeping 1% and 99%"),
    "qps": (qps, "closed-loop QPS per concurrency, best concurrency"),
}
