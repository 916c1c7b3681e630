"""Query latency by kind, QPS by client concurrency, freshness, and reads during writes.

What the public benchmarks report (VectorDBBench's serial latency and QPS at the
best concurrency; TopK Bench's concurrency 1/2/4/8, filter selectivity and
freshness), on one collection of documents with text and payloads:
- single-client P50/P95/P99 for top-10, top-100, filtered at 10% and 1%
  selectivity, hybrid (vector + BM25) and text-only queries, interleaved;
- top-10 QPS with 1, 2, 4 and 8 concurrent clients (closed loop, each its own
  connection);
- freshness: time from an upsert's acknowledgement to the document being found
  by a search for its own vector;
- top-10 latency while another client upserts batches, beside the same
  queries with no writer.

Run: ``python -m akidb.bench.query_latency [--vectors 50000 --dim 384] [--queries 300]
[--target URL --api-key KEY]``.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from akidb.bench import common
from akidb.bench.load import load_data
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.bench.target import Target, add_target_options, open_target
from akidb.datagen import vectors
from akidb.server.client import Client

TEXTS = ["market growth report", "family travel plans", "science and technology news",
         "community health program", "financial investment strategy"]


def kinds(client: Client, collection: str, dim: int, seed: int
          ) -> dict[str, Callable[[np.ndarray], Any]]:
    """Each query kind as a call taking one query vector."""
    rng = np.random.default_rng(seed)

    def text() -> str:
        return TEXTS[int(rng.integers(len(TEXTS)))]

    return {
        "top10": lambda q: client.search(collection, q, k=10),
        "top100": lambda q: client.search(collection, q, k=100),
        "filtered_10pct": lambda q: client.search(collection, q, k=10,
                                                  filter={"price": {"$lt": 10}}),
        "filtered_1pct": lambda q: client.search(collection, q, k=10,
                                                 filter={"category": "cat-07"}),
        "hybrid": lambda q: client.search(collection, q, k=10, text=text(), mode="hybrid"),
        "text": lambda q: client.search(collection, None, k=10, text=text(), mode="text"),
    }


def serial_latency(calls: dict[str, Callable[[np.ndarray], Any]], queries: np.ndarray,
                   seed: int) -> dict[str, np.ndarray]:
    """Every kind over the same queries, interleaved in a random order."""
    order = [(name, i) for name in calls for i in range(len(queries))]
    np.random.default_rng(seed).shuffle(order)
    for fn in calls.values():  # warm each path once
        fn(queries[0])
    out: dict[str, list[float]] = {name: [] for name in calls}
    for name, i in order:
        started = time.perf_counter()
        calls[name](queries[i])
        out[name].append((time.perf_counter() - started) * 1000)
    return {name: np.asarray(ms) for name, ms in out.items()}


def qps_by_concurrency(target: Target, collection: str, queries: np.ndarray,
                       levels: list[int], seconds: float) -> dict[int, dict[str, Any]]:
    """Closed-loop search QPS per client count, each client its own process (the
    shared ``closed_loop``: merged histograms, saturation flagged)."""
    from akidb.bench.drivers.akidb_driver import AkiDBDriver
    from akidb.bench.scenarios import closed_loop

    driver = AkiDBDriver(target=target.rest_url, api_key=target.api_key,
                         collection=collection)
    out: dict[int, dict[str, Any]] = {}
    try:
        for n in levels:
            r = closed_loop(driver, queries, 10, None, n, seconds)
            out[n] = {"qps": r["qps"], "p50": r["p50_ms"], "p99": r["p99_ms"],
                      "errors": r["errors"], "client_busiest": r["client_busiest"],
                      "client_saturated": r["client_saturated"]}
            print(f"  .. {n} clients: {out[n]['qps']:.0f} QPS", file=sys.stderr, flush=True)
    finally:
        driver.close()
    return out


def freshness(client: Client, collection: str, dim: int, trials: int, seed: int
              ) -> np.ndarray:
    """ms from an upsert's acknowledgement until a search for its vector returns it."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(trials):
        v = rng.standard_normal(dim).astype(np.float32)
        doc_id = f"fresh-{uuid.uuid4().hex[:8]}-{t}"
        client.upsert_arrays(collection, [doc_id], v[None, :])
        acked = time.perf_counter()
        while doc_id not in client.search(collection, v, k=1).ids:
            if time.perf_counter() - acked > 10:
                raise RuntimeError(f"{doc_id} not searchable 10 s after its acknowledgement")
        out.append((time.perf_counter() - acked) * 1000)
    return np.asarray(out)


def during_writes(target: Target, collection: str, queries: np.ndarray, dim: int,
                  batch: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """top-10 latency with no writer, then with one client upserting ``batch``-sized
    batches back to back; returns (quiet ms, loaded ms, vectors written per second)."""
    with target.client(timeout=60) as client:
        quiet = serial_latency({"top10": lambda q: client.search(collection, q, k=10)},
                               queries, seed)["top10"]
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            base = vectors.clustered(batch * 50, dim, seed=seed + 1)
            with target.client(timeout=120) as w:
                i = 0
                while not stop.is_set():
                    rows = base[(i * batch) % len(base):][:batch]
                    w.upsert_arrays(collection, [f"w{i}-{j}" for j in range(len(rows))], rows)
                    written[0] += len(rows)
                    i += 1

        th = threading.Thread(target=writer)
        started = time.perf_counter()
        th.start()
        try:
            loaded = serial_latency({"top10": lambda q: client.search(collection, q, k=10)},
                                    queries, seed)["top10"]
        finally:
            stop.set()
            th.join()
        return quiet, loaded, written[0] / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=50_000, dim=384, queries=300, concurrency="1,2,4,8",
                       seconds=5.0, seed=0, out="reports/query_latency")
    ap.add_argument("--freshness-trials", type=int, default=50)
    ap.add_argument("--write-batch", type=int, default=200)
    add_target_options(ap)
    args = ap.parse_args(argv)
    levels = args.concurrency
    if args.vectors < 100 or args.queries < 2:
        ap.error("need --vectors >= 100 and --queries >= 2")
    queries = vectors.queries(args.queries, args.dim, seed=args.seed + 1)
    with open_target(args, fsync="batch") as target, target.scratch_tenants("ql") as name:
        collection = f"{name()}/db/query"
        with target.client(timeout=600) as client:
            print(f"loading {args.vectors} x {args.dim} documents ...", file=sys.stderr,
                  flush=True)
            load_s = load_data(client, args.vectors, args.dim, seed=args.seed,
                               collection=collection)
            print("serial latency by kind ...", file=sys.stderr, flush=True)
            serial = serial_latency(kinds(client, collection, args.dim, args.seed), queries,
                                    args.seed)
            print("QPS by concurrency ...", file=sys.stderr, flush=True)
            sweep = qps_by_concurrency(target, collection, queries, levels, args.seconds)
            print("freshness and reads during writes ...", file=sys.stderr, flush=True)
            fresh = freshness(client, collection, args.dim, args.freshness_trials, args.seed)
            quiet, loaded, write_rate = during_writes(target, collection, queries, args.dim,
                                                      args.write_batch, args.seed)
    pct = {name: {q: Samples.of(ms).percentile(q) for q in (50, 95, 99)}
           for name, ms in {**serial, "freshness": fresh, "top10_quiet": quiet,
                            "top10_during_writes": loaded}.items()}
    best = max(sweep, key=lambda n: sweep[n]["qps"])
    lines = [f"# Query latency on {args.vectors} x {args.dim} (loaded in {load_s:.1f}s)", "",
             f"Single client, {args.queries} queries per kind, interleaved:", "",
             *markdown_table(["kind", "P50 ms", "P95 ms", "P99 ms"],
                             [[n, f"{p[50]:.2f}", f"{p[95]:.2f}", f"{p[99]:.2f}"]
                              for n, p in pct.items() if n in serial]), "",
             "Top-10, closed loop, one connection per client:", "",
             *markdown_table(["clients", "QPS", "P50 ms", "P99 ms"],
                             [[str(n), f"{s['qps']:.0f}", f"{s['p50']:.2f}", f"{s['p99']:.2f}"]
                              for n, s in sweep.items()]), "",
             f"- best QPS {sweep[best]['qps']:.0f} at {best} clients",
             f"- freshness (acknowledged -> found by search), {args.freshness_trials} trials: "
             f"P50 {pct['freshness'][50]:.2f} ms, P99 {pct['freshness'][99]:.2f} ms",
             f"- top-10 P50/P99 with no writer {pct['top10_quiet'][50]:.2f}/"
             f"{pct['top10_quiet'][99]:.2f} ms; while one client upserts batches of "
             f"{args.write_batch} ({write_rate:.0f} vectors/s) "
             f"{pct['top10_during_writes'][50]:.2f}/{pct['top10_during_writes'][99]:.2f} ms "
             f"({pct['top10_during_writes'][50] / pct['top10_quiet'][50]:.2f}x at P50)"]
    metrics = {f"query_{name}_ms": Samples.of(ms).metric() for name, ms in serial.items()}
    metrics["freshness_ms"] = Samples.of(fresh).metric()
    results = {"latency": pct, "qps_by_clients": sweep, "write_rate_per_s": write_rate,
               "load_seconds": load_s}
    publish(args.out, record("query_latency", args, {"results": results, "metrics": metrics}),
            lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
