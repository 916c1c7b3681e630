"""Scenarios where writes meet reads, after VectorDBBench's and TopK Bench's cases.

- ``capacity``: insert seeded vectors in batches until the database refuses (a limit:
  quota, memory, disk), ``max_vectors`` are in, or ``budget_s`` has passed, then wait
  until all of it is searchable (where a driver builds its index); the rate counts
  that wait, and the rate in each tenth of the inserts shows where it slows down.
- ``streaming``: half the dataset loaded, the other half inserted at a fixed rate by a
  writer thread while the searcher searches back to back; latency and recall per
  quarter of the stream. A hit is right when it is in the exact top-k of the rows
  acknowledged before the search began or of those acknowledged before it ended
  (rows that arrive during a search may or may not be seen, either is correct).
- ``freshness``: after the load, one new document at a time (a query vector under a
  new id), then searches for it back to back until it comes back: the lag from the
  insert's acknowledgement to the first search that finds it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from akidb.bench.drivers import Driver

if TYPE_CHECKING:  # the driver worker imports ``stream`` with numpy and the peer only
    from akidb.bench.datasets import Dataset

CAPACITY_BATCH = 1000
FRESHNESS_TIMEOUT_S = 10.0
STREAM_STAGES = 4
STREAM_TICK_S = 0.1
MAX_JUDGED = 400  # searches per stage whose recall is computed exactly


def _summary(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    lat = np.asarray(ms)
    return {"p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def capacity(driver: Driver, data: Dataset, opts: Any, progress: Callable[[str], None]
             ) -> dict[str, Any]:
    from akidb.datagen import vectors

    params = dataclasses.replace(opts.params, expected_rows=opts.max_vectors)
    driver.create(data.dimension, params)
    started = time.perf_counter()
    inserted, stopped_by, batches = 0, "max_vectors", []
    while inserted < opts.max_vectors:
        if time.perf_counter() - started > opts.budget_s:
            stopped_by = "budget"
            break
        n = min(CAPACITY_BATCH, opts.max_vectors - inserted)
        block = vectors.clustered(n, data.dimension, seed=opts.seed, stream=2 + len(batches))
        ids = [f"cap{inserted + i}" for i in range(n)]
        t0 = time.perf_counter()
        try:
            driver.insert(ids, block, None)
        except Exception as exc:  # noqa: BLE001 - the refusal is the case's answer
            stopped_by = f"limit: {type(exc).__name__}: {exc}"[:300]
            break
        batches.append((n, time.perf_counter() - t0))
        inserted += n
        if len(batches) % 20 == 0:
            progress(f"{driver.name}: {inserted} vectors in")
    inserting = time.perf_counter() - started
    index_s = None
    if inserted:  # what was inserted, searchable (LanceDB and pgvector index here)
        t0 = time.perf_counter()
        try:
            driver.wait_indexed(inserted)
            index_s = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - a limit hit while indexing
            stopped_by = f"limit while indexing: {type(exc).__name__}: {exc}"[:300]
    elapsed = time.perf_counter() - started
    tenths = [b for b in np.array_split(np.asarray(batches, dtype=np.float64), 10) if len(b)]
    return {"inserted": inserted, "stopped_by": stopped_by, "seconds": elapsed,
            "insert_s": inserting, "index_s": index_s,
            "per_s": inserted / elapsed if elapsed else 0.0,
            "per_s_by_tenth": [float(b[:, 0].sum() / b[:, 1].sum()) for b in tenths],
            "count": driver.count(), "memory_bytes": driver.memory_bytes()}


def _writer(driver: Driver, ids: list[str], rows: np.ndarray, first: int, rate: float,
            acked: list[int], stop: threading.Event, errors: list[str]) -> None:
    """Insert ``rows`` (dataset rows first..) at ``rate`` per second in ticks;
    ``acked[0]`` is how many dataset rows are acknowledged (they are, in order)."""
    began, done = time.perf_counter(), 0
    while done < len(rows) and not stop.is_set():
        due = int((time.perf_counter() - began) * rate) + 1
        end = min(len(rows), max(due, done + 1))
        try:
            driver.insert(ids[done:end], rows[done:end], None)
        except Exception as exc:  # noqa: BLE001 - reported with the result
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            return
        done = end
        acked[0] = first + done
        ahead = done / rate - (time.perf_counter() - began)
        if ahead > 0:
            stop.wait(min(ahead, STREAM_TICK_S))


def stream(driver: Driver, ids: list[str], rows: np.ndarray, first: int, rate: float,
           queries: np.ndarray, k: int, ef: int | None) -> dict[str, Any]:
    """Insert ``rows`` at ``rate`` from a writer thread while this one searches back to
    back; every search as (query, rows acknowledged before, after, ms, ids). Runs where
    the database lives (in a driver's worker too, so the pipe never queues a search
    behind an insert)."""
    acked, stop, errors = [first], threading.Event(), []
    writer = threading.Thread(target=_writer, args=(driver, ids, rows, first, rate, acked,
                                                    stop, errors), daemon=True)
    searches: list[tuple[int, int, int, float, list[str]]] = []
    began = time.perf_counter()
    writer.start()
    i = 0
    while writer.is_alive():
        q = i % len(queries)
        before = acked[0]
        t0 = time.perf_counter()
        found = driver.search(queries[q], k, ef)
        searches.append((q, before, acked[0], (time.perf_counter() - t0) * 1000.0, found))
        i += 1
    stop.set()
    writer.join()
    return {"searches": searches, "acked": acked[0], "seconds": time.perf_counter() - began,
            "error": errors[0] if errors else None}


def streaming(driver: Driver, data: Dataset, opts: Any, progress: Callable[[str], None]
              ) -> dict[str, Any]:
    from akidb.bench.drivers.remote import RemoteDriver

    n = len(data.train)
    first = n // 2
    driver.create(data.dimension, dataclasses.replace(opts.params, expected_rows=n))
    for s in range(0, first, opts.batch):
        driver.insert(data.ids[s:min(first, s + opts.batch)],
                      data.train[s:min(first, s + opts.batch)], None)
    driver.wait_indexed(first)
    progress(f"{driver.name}: {first} loaded; streaming {n - first} at "
             f"{opts.insert_rate:g}/s while searching")
    run = (driver.stream if isinstance(driver, RemoteDriver) else
           lambda *a: stream(driver, *a))(data.ids[first:], data.train[first:], first,
                                          opts.insert_rate, data.test, opts.k, opts.ef)
    searches, acked, stream_s = run["searches"], run["acked"], run["seconds"]
    row_of = {v: r for r, v in enumerate(data.ids)}
    stages = []
    bounds = np.linspace(first, acked, STREAM_STAGES + 1)
    for s in range(STREAM_STAGES):
        mine = [x for x in searches if bounds[s] <= x[1] < bounds[s + 1]
                or (s == STREAM_STAGES - 1 and x[1] >= bounds[-1])]
        stage = {"stage": f"{s * 100 // STREAM_STAGES}-{(s + 1) * 100 // STREAM_STAGES}%",
                 "searches": len(mine), **_summary([x[3] for x in mine])}
        judged = mine[:: max(1, len(mine) // MAX_JUDGED)]
        if judged:
            stage["recall"] = _stream_recall(data, judged, opts.k, row_of)
        stages.append(stage)
    inserted = acked - first
    return {"loaded_first": first, "streamed": inserted, "stream_s": stream_s,
            "insert_rate_target": opts.insert_rate,
            "insert_rate": inserted / stream_s if stream_s else 0.0,
            "kept_up": inserted / stream_s >= 0.95 * opts.insert_rate if stream_s else False,
            "writer_error": run["error"], "searches": len(searches),
            **_summary([x[3] for x in searches]), "stages": stages}


def _stream_recall(data: Dataset, judged: list[tuple[int, int, int, float, list[str]]],
                   k: int, row_of: dict[str, int]) -> float:
    from akidb.datagen.groundtruth import exact_knn

    queries = data.test[[x[0] for x in judged]]
    rows = np.arange(len(data.train))
    start_mask = rows[None, :] < np.asarray([x[1] for x in judged])[:, None]
    end_mask = rows[None, :] < np.asarray([x[2] for x in judged])[:, None]
    t_start, _ = exact_knn(data.train, queries, k, data.metric, mask=start_mask)
    t_end, _ = exact_knn(data.train, queries, k, data.metric, mask=end_mask)
    right = 0
    for j, x in enumerate(judged):
        allowed = set(t_start[j].tolist()) | set(t_end[j].tolist())
        right += len({row_of[i] for i in x[4] if i in row_of} & allowed)
    return right / (k * len(judged))


def freshness(driver: Driver, data: Dataset, opts: Any, progress: Callable[[str], None]
              ) -> dict[str, Any]:
    from akidb.bench.scenarios import load

    out = load(driver, data, opts, progress)
    progress(f"{driver.name}: {opts.probes} freshness probes")
    lags, first_try, never = [], 0, 0
    for j in range(opts.probes):
        doc = f"fresh{j}"
        vector = data.test[j % len(data.test)]
        driver.insert([doc], vector[None, :], None)
        acked = time.perf_counter()
        tries = 0
        while True:
            tries += 1
            found = doc in driver.search(vector, opts.k, opts.ef)
            now = time.perf_counter()
            if found or now - acked > FRESHNESS_TIMEOUT_S:
                break
        if not found:
            never += 1
            continue
        first_try += tries == 1
        lags.append((now - acked) * 1000.0)
    lag = np.asarray(lags) if lags else np.asarray([np.nan])
    out.update({"probes": opts.probes, "visible_at_first_search": first_try,
                "not_visible_within_s": never, "timeout_s": FRESHNESS_TIMEOUT_S,
                "lag_p50_ms": float(np.percentile(lag, 50)),
                "lag_p99_ms": float(np.percentile(lag, 99)), "lag_max_ms": float(lag.max())})
    return out
