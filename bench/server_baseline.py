"""Server baseline: the reference server against raw hnswlib, measured in one run.

Figures (ratios, because absolute times on a shared 2-core machine are noisy):
- REST ingest throughput (batches of 500, fsync=batch) ÷ raw hnswlib ``add_items``
  with the same parameters and batches (target ≥ 0.7×);
- single-client REST search latency vs raw ``knn_query``: P50/P99 and the added
  P50 (target ≤ 1.5 ms);
- recovery time after kill -9 with a snapshot plus a WAL of single-document
  records (target ≤ 10 s for 100k × 384 + 10k records);
- memory per 1M vectors, extrapolated from the server's RSS growth.

Run: ``python -m akidb.bench.server_baseline [--vectors N] [--out DIR]``.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from akidb.bench import common
from akidb.bench import raw as reference
from akidb.bench.environment import rss_bytes
from akidb.bench.results import markdown_to_html, record, save
from akidb.bench.samples import Samples
from akidb.datagen import vectors
from akidb.harness import Node

M, EF_CONSTRUCTION, EF_SEARCH, THREADS = 32, 200, 64, 2


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def raw_hnswlib(base: np.ndarray, queries: np.ndarray, batch: int) -> dict[str, Any]:
    ref = reference.build(base, m=M, ef_construction=EF_CONSTRUCTION, ef=EF_SEARCH,
                          batch=batch, threads=THREADS)
    lat, _ = ref.serial(queries, 10)
    return {"ingest_per_s": ref.ingest_per_s, "search_p50_ms": lat.p50,
            "search_p99_ms": lat.p99}


def server_ingest_and_search(node: Node, base: np.ndarray, queries: np.ndarray, batch: int,
                             clients: int) -> dict[str, Any]:
    """Ingest with ``clients`` concurrent loaders (so request encoding and parsing overlap
    indexing, as with any loaded server), then single-client search latency."""
    path = "bench/db/ingest"
    with node.admin_client(timeout=300) as client:
        client.create_collection(path, dimension=base.shape[1], metric="cosine",
                                 create_parents=True,
                                 hnsw={"m": M, "ef_construction": EF_CONSTRUCTION,
                                       "ef_search": EF_SEARCH})
        ids = [str(i) for i in range(len(base))]
        starts = list(range(0, len(base), batch))
        half = len(starts) // 2
        rss = {}

        batch_rates: list[float] = []

        def load(part: list[int]) -> None:
            with node.admin_client(timeout=300) as loader:
                for s in part:
                    t = time.perf_counter()
                    loader.upsert_arrays(path, ids[s : s + batch], base[s : s + batch])
                    batch_rates.append(len(ids[s : s + batch]) / (time.perf_counter() - t))

        started = time.perf_counter()
        for phase, part in (("half", starts[:half]), ("end", starts[half:])):
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(load, [part[i::clients] for i in range(clients)]))
            rss[phase] = rss_bytes(node.pid)
        ingest_s = time.perf_counter() - started
        lat, _ = Samples.timed(lambda q: client.search(path, q, k=10), queries, warmup=50)
        client.delete_collection(path)
    second_half = len(base) - half * batch
    return {"ingest_per_s": len(base) / ingest_s, "ingest_clients": clients,
            "search_samples": lat,
            "batch_rates": Samples.of(batch_rates, "vectors/s", "higher"),
            "search_p50_ms": lat.p50, "search_p99_ms": lat.p99,
            # RSS slope over the second half: allocator warm-up and fixed costs excluded.
            "rss_bytes_per_vector": (rss["end"] - rss["half"]) / second_half}


def recovery(node: Node, n: int, wal_records: int, dim: int) -> dict[str, Any]:
    path = "bench/db/recovery"
    base = vectors.clustered(n + wal_records, dim, seed=7)
    with node.admin_client(timeout=300) as client:
        client.create_collection(path, dimension=dim, metric="cosine", create_parents=True)
        for s in range(0, n, 1000):
            client.upsert_arrays(path, [str(i) for i in range(s, min(s + 1000, n))],
                                 base[s : min(s + 1000, n)])
        snap = client.snapshot(path)
        _progress(f"snapshot at seq {snap['seq']}; writing {wal_records} single-record WAL")
        for i in range(n, n + wal_records):
            client.upsert_arrays(path, [str(i)], base[i : i + 1])
        wal_bytes = client.get_collection(path)["wal_bytes"]
    node.kill()
    started = time.perf_counter()
    node.start()
    ready_s = time.perf_counter() - started
    with node.admin_client() as client:
        count = client.get_collection(path)["count"]
        metrics = client.metrics()
    server_s = next(float(line.split()[-1]) for line in metrics.splitlines()
                    if line.startswith("akidb_recovery_seconds "))
    if count != n + wal_records:
        raise SystemExit(f"recovery lost documents: {count} != {n + wal_records}")
    return {"vectors": n, "wal_records": wal_records, "wal_bytes": wal_bytes,
            "restart_to_ready_s": ready_s, "server_recovery_s": server_s, "count_after": count}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=50000, dim=384, queries=1000, batch=500, seed=0,
                       out="reports/baseline")
    ap.add_argument("--ingest-clients", type=common.positive_int, default=2)
    ap.add_argument("--recovery-vectors", type=common.positive_int, default=100000)
    ap.add_argument("--wal-records", type=common.positive_int, default=10000)
    args = ap.parse_args(argv)

    print(f"server baseline: {args.vectors} x {args.dim} clustered vectors, "
          f"M={M} efC={EF_CONSTRUCTION} ef={EF_SEARCH}", flush=True)
    base = vectors.clustered(args.vectors, args.dim, seed=args.seed)
    queries = vectors.queries(args.queries, args.dim, seed=args.seed)
    _progress("raw hnswlib")
    raw = raw_hnswlib(base, queries, args.batch)
    node = Node(fsync="batch")
    try:
        node.start()
        _progress("server ingest + search (REST, fsync=batch)")
        srv = server_ingest_and_search(node, base, queries, args.batch, args.ingest_clients)
        _progress(f"recovery: {args.recovery_vectors} vectors + {args.wal_records} WAL records")
        rec = recovery(node, args.recovery_vectors, args.wal_records, args.dim)
    finally:
        node.close()

    result = record("server_baseline", args, {
        "raw_hnswlib": raw,
        "server": srv,
        "recovery": rec,
        "ratios": {
            "ingest_server_over_raw": srv["ingest_per_s"] / raw["ingest_per_s"],
            "search_p50_added_ms": srv["search_p50_ms"] - raw["search_p50_ms"],
            "search_p99_added_ms": srv["search_p99_ms"] - raw["search_p99_ms"],
        },
        "memory_per_1m_vectors_gib": srv["rss_bytes_per_vector"] * 1e6 / 2**30,
        # Raw samples for the regression gate (akidb bench compare).
        "metrics": {
            "search_latency_ms": srv.pop("search_samples").metric(),
            "ingest_batch_vectors_per_s": srv.pop("batch_rates").metric(),
        },
    })
    result["params"].update(m=M, ef_construction=EF_CONSTRUCTION, ef_search=EF_SEARCH,
                            index_threads=THREADS)
    report = render(result)
    save(args.out, result, report)
    (args.out / "server_baseline.html").write_text(markdown_to_html(
        report, "server_baseline", result.get("environment")))
    print(report)
    print(f"report: {args.out / 'server_baseline.md'} (and .html; JSON: "
          f"{args.out / 'server_baseline.json'})")
    return 0


def render(r: dict[str, Any]) -> str:
    raw, srv, rec, ratios = r["raw_hnswlib"], r["server"], r["recovery"], r["ratios"]
    p = r["params"]
    return "\n".join([
        f"# Server baseline ({p['vectors']} x {p['dim']}, M={p['m']}, efC={p['ef_construction']},"
        f" ef={p['ef_search']})",
        "",
        "| figure | raw hnswlib | server (REST) | ratio / added | target |",
        "|---|---|---|---|---|",
        f"| ingest vectors/s (batches of {p['batch']}, fsync=batch,"
        f" {srv['ingest_clients']} clients) | {raw['ingest_per_s']:.0f} |"
        f" {srv['ingest_per_s']:.0f} | {ratios['ingest_server_over_raw']:.2f}x | >= 0.7x |",
        f"| search P50 ms (top-10, 1 client) | {raw['search_p50_ms']:.3f} |"
        f" {srv['search_p50_ms']:.3f} | +{ratios['search_p50_added_ms']:.3f} ms | <= +1.5 ms |",
        f"| search P99 ms | {raw['search_p99_ms']:.3f} | {srv['search_p99_ms']:.3f} |"
        f" +{ratios['search_p99_added_ms']:.3f} ms | |",
        f"| recovery after kill -9: {rec['vectors']} vectors snapshot + {rec['wal_records']}"
        f" WAL records | | {rec['restart_to_ready_s']:.2f} s to ready"
        f" ({rec['server_recovery_s']:.2f} s replay) | | <= 10 s |",
        f"| memory per 1M vectors ({p['dim']}-d, RSS slope) | | "
        f"{r['memory_per_1m_vectors_gib']:.2f} GiB | | < 5 GB (512-d) |",
        *([""] if p["vectors"] >= 100_000 else [
            "", f"Memory is extrapolated from {p['vectors'] // 2} vectors; below ~100k the "
            "index's capacity doublings dominate the slope, so read it as an upper bound."]),
        "",
        f"Environment: {r['environment']['cpu']}, {r['environment']['cores']} cores, "
        f"Python {r['environment']['python']}, git {r['environment']['git_sha']}",
        "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
