"""Scenarios that run on any driver (``akidb bench run``), after VectorDBBench's cases.

- ``serial``: load the dataset (insert duration and the time until all of it is
  searchable), then recall@k and serial P50/P99 over the test queries, one at a time.
- ``filtered``: the same search with a filter keeping 1% and 99% of the rows (a row
  number label, as VectorDBBench filters on ids), recall against the filtered truth.
- ``qps``: closed-loop search throughput per concurrency, the best concurrency: a
  server is driven from client *processes* (``clients``: merged HdrHistograms, every
  client's CPU recorded, a saturated client flagged); an embedded database from
  threads in its own process.
- ``sweep``: recall@k against one-client QPS over search ef (ann-benchmarks' curve).
- ``capacity``, ``streaming``, ``freshness``: the write-side cases
  (``write_scenarios``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from akidb.bench.datasets import Dataset
from akidb.bench.drivers import Driver, Filter, IndexParams, Unsupported
from akidb.bench.samples import Samples
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
    seed: int = 0
    insert_rate: float = 1000.0   # streaming: rows per second while searching
    max_vectors: int = 200_000    # capacity: stop there at most
    budget_s: float = 60.0        # capacity: or after this long
    probes: int = 100             # freshness: new documents looked for
    ef_sweep: list[int] = field(default_factory=lambda: [10, 20, 40, 80, 160, 320])


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
    lat = Samples.of(ms)
    return {"recall": recall_at_k(found, truth, opts.k), "p50_ms": lat.p50,
            "p99_ms": lat.p99, "queries": len(lat),
            "qps": len(lat) / (float(lat.values.sum()) / 1000.0) if len(lat) else 0.0}


def serial(driver: Driver, data: Dataset, opts: Options, progress: Callable[[str], None]
           ) -> dict[str, Any]:
    out = load(driver, data, opts, progress)
    progress(f"{driver.name}: {len(data.test)} serial searches")
    out.update(_serial(driver, data, opts, data.neighbors, None))
    return out


def sweep(driver: Driver, data: Dataset, opts: Options, progress: Callable[[str], None]
          ) -> dict[str, Any]:
    """Recall@k against one-client QPS over search ef (the ann-benchmarks curve); a
    driver that takes no per-search ef gives one point at its index's setting."""
    out = load(driver, data, opts, progress)
    efs: list[int | None] = list(opts.ef_sweep) if "ef" in driver.capabilities else [None]
    points = []
    for ef in efs:
        progress(f"{driver.name}: {len(data.test)} searches at ef={ef or 'default'}")
        point = _serial(driver, data, dataclasses.replace(opts, ef=ef), data.neighbors, None)
        points.append({"ef": ef, **point})
    out["points"] = points
    if efs == [None]:
        out["note"] = "no per-search ef: one point at the index's own setting"
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
        runs.append(closed_loop(driver, data.test, opts.k, opts.ef, c, opts.seconds))
    out["runs"] = runs
    best = max(runs, key=lambda r: r["qps"])
    out["best_qps"], out["best_clients"] = best["qps"], best["clients"]
    return out


def closed_loop(driver: Driver, queries: np.ndarray, k: int, ef: int | None, clients: int,
                seconds: float) -> dict[str, Any]:
    """One closed-loop run: client processes where the database is a server the
    clients can attach to (the leanest client for each: a pre-encoded HTTP request for
    AkiDB over REST, the driver for the rest), else threads in the process the
    database lives in (in-process or in its driver worker)."""
    from akidb.bench import clients as load
    from akidb.bench.drivers.remote import RemoteDriver

    request = getattr(driver, "load_request", lambda *a: None)(queries, k, ef)
    if request is not None:
        return load.process_loop(request.job(), clients, seconds)
    attach = driver.attach_options()
    if attach is not None:
        with tempfile.TemporaryDirectory(prefix="akidb-queries-") as tmp:
            path = Path(tmp) / "queries.npy"
            np.save(path, np.ascontiguousarray(queries, dtype=np.float32))
            job = {"kind": "driver", **attach, "queries": str(path), "k": k, "ef": ef}
            python = driver.python if isinstance(driver, RemoteDriver) else None
            return load.process_loop(job, clients, seconds, python)
    if isinstance(driver, RemoteDriver):
        return driver.thread_loop(queries, k, ef, clients, seconds)
    return load.thread_loop(lambda i: driver.search(queries[i % len(queries)], k, ef),
                            clients, seconds)


def _write_scenarios() -> dict[str, tuple[Callable[..., dict[str, Any]], str]]:
    from akidb.bench import write_scenarios as w

    return {"capacity": (w.capacity, "insert until a limit, max vectors or time budget"),
            "streaming": (w.streaming, "search latency and recall while inserting at a "
                                       "fixed rate"),
            "freshness": (w.freshness, "lag from an insert's acknowledgement until a "
                                       "search finds it")}


SCENARIOS: dict[str, tuple[Callable[..., dict[str, Any]], str]] = {
    "serial": (serial, "load duration, recall@k, serial P50/P99"),
    "filtered": (filtered, "recall and latency with filters keeping 1% and 99%"),
    "qps": (qps, "closed-loop QPS per concurrency, best concurrency"),
    "sweep": (sweep, "recall@k vs one-client QPS over search ef (ann-benchmarks curve)"),
    **_write_scenarios(),
}
