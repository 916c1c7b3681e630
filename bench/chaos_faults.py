"""Chaos figures: the fault proxy's own cost, availability through a partition, recovery.

``python -m akidb.bench.chaos_faults [--partition-s 30] [--recovery-vectors 100000]``

- Proxy overhead with no toxics: search P50 through the Toxiproxy-API proxy vs
  direct, and download throughput of a large response (a 5000-document page).
- Availability during a partition: readers with client retries (exponential
  backoff) and writers (no retries: writes are not idempotent) through the
  proxy while it is disabled for ``--partition-s``; the share of calls that
  succeeded in the window, and the time to the first success after healing.
- Recovery after kill -9 with ``--recovery-vectors`` acknowledged vectors.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.chaos import workload
from akidb.chaos.history import History
from akidb.datagen import vectors
from akidb.harness import Cluster, Node
from akidb.server.client import Client


def proxy_overhead(cluster: Cluster, dim: int) -> dict[str, float]:
    node = cluster.nodes[0]
    coll = "bench/db/proxy"
    with node.admin_client(timeout=300) as admin:
        admin.create_collection(coll, dimension=dim, create_parents=True)
        base = vectors.clustered(5000, dim, seed=0)
        admin.upsert_arrays(coll, [str(i) for i in range(5000)], base)
    queries = vectors.queries(500, dim, seed=0)
    out: dict[str, float] = {}
    for name, url in (("direct", node.rest_url), ("proxy", node.proxy_url)):
        with Client(url, node.admin_key, timeout=60) as c:
            ms, _ = Samples.timed(lambda q, c=c: c.search(coll, q, k=10), queries, warmup=50)
            out[f"{name}_p50_ms"] = ms.p50
            path = "/v1/tenants/bench/databases/db/collections/proxy/documents?limit=5000"
            c.transport.request("GET", path)  # warm-up
            started = time.perf_counter()
            size = sum(len(c.transport.request("GET", path)[1]) for _ in range(5))
            out[f"{name}_mb_per_s"] = size / (time.perf_counter() - started) / 2**20
    return out


def partition(cluster: Cluster, dim: int, seconds: float) -> dict[str, float]:
    node = cluster.nodes[0]
    coll = "bench/db/partition"
    with node.admin_client() as admin:
        admin.create_collection(coll, dimension=dim, create_parents=True)
        admin.upsert_arrays(coll, ["seed"], np.ones((1, dim), np.float32))
    stop = threading.Event()
    writes = History()
    t0 = time.monotonic()
    writers = workload.start(
        lambda _: Client(node.proxy_url, node.admin_key, timeout=2, retries=0), coll,
        workload.Workload(clients=2, batch=20, dimension=dim), writes, stop, t0)
    reads: list[tuple[float, bool]] = []

    def reader() -> None:
        with Client(node.proxy_url, node.admin_key, timeout=2, retries=3,
                    backoff_s=0.1) as c:
            q = np.ones(dim, np.float32)
            while not stop.is_set():
                t = time.monotonic()
                try:
                    c.search(coll, q, k=5)
                    reads.append((t, True))
                except Exception:  # noqa: BLE001 - counted as unavailable
                    reads.append((t, False))
                time.sleep(0.01)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    cut = time.monotonic()
    node.proxy.disable()
    time.sleep(seconds)
    node.proxy.enable()
    healed = time.monotonic()
    time.sleep(3.0)
    stop.set()
    for t in [*threads, *writers]:
        t.join(30)
    window = [ok for t, ok in reads if cut <= t <= healed]
    after = [t for t, ok in reads if ok and t >= healed]
    return {"read_availability": sum(window) / len(window) if window else 1.0,
            "write_availability": writes.availability(cut - t0, healed - t0),
            "read_availability_overall": sum(ok for _, ok in reads) / max(len(reads), 1),
            "write_availability_overall": writes.availability(),
            "first_read_after_heal_s": (min(after) - healed) if after else float("nan")}


def recovery(n: int, dim: int) -> dict[str, float]:
    node = Node(fsync="always", ready_timeout=600)
    try:
        node.start()
        with node.admin_client(timeout=600) as c:
            c.create_collection("bench/db/rec", dimension=dim, create_parents=True)
            base = vectors.clustered(n, dim, seed=1)
            ids = [str(i) for i in range(n)]
            for s in range(0, n, 1000):
                c.upsert_arrays("bench/db/rec", ids[s:s + 1000], base[s:s + 1000])
        node.kill()
        started = time.perf_counter()
        node.start()
        ready_s = time.perf_counter() - started
        with node.admin_client() as c:
            count = c.get_collection("bench/db/rec")["count"]
        return {"recovery_to_ready_s": ready_s, "count_after": count}
    finally:
        node.close()


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, dim=128, out="reports/chaos_faults")
    ap.add_argument("--partition-s", type=float, default=30.0)
    ap.add_argument("--recovery-vectors", type=int, default=100_000)
    args = ap.parse_args(argv)
    with Cluster(nodes=1, fsync="batch", fault_proxy=True) as cluster:
        kind = cluster.toxiproxy_endpoint.kind  # type: ignore[union-attr]
        overhead = proxy_overhead(cluster, args.dim)
        part = partition(cluster, args.dim, args.partition_s)
    rec = recovery(args.recovery_vectors, args.dim)
    o = overhead
    lines = [f"# Chaos figures ({kind} proxy, {args.dim}-d)", "",
             *markdown_table(["figure", "direct", "through the proxy", "ratio / added"], [
                 ["search P50 ms (no toxics)", f"{o['direct_p50_ms']:.3f}",
                  f"{o['proxy_p50_ms']:.3f}", f"+{o['proxy_p50_ms'] - o['direct_p50_ms']:.3f} ms"],
                 ["download MB/s (5000-document pages)", f"{o['direct_mb_per_s']:.1f}",
                  f"{o['proxy_mb_per_s']:.1f}",
                  f"{o['proxy_mb_per_s'] / o['direct_mb_per_s']:.2f}x"]]), "",
             f"Partition of {args.partition_s:g}s: reads with retries "
             f"{part['read_availability']:.1%} available in the window "
             f"({part['read_availability_overall']:.1%} over the run), writes "
             f"{part['write_availability']:.1%} ({part['write_availability_overall']:.1%}); "
             f"first read after healing {part['first_read_after_heal_s']:.2f}s.", "",
             f"Recovery after kill -9 with {args.recovery_vectors} x {args.dim} vectors "
             f"(fsync=always): {rec['recovery_to_ready_s']:.2f}s to ready, "
             f"{rec['count_after']} documents."]
    publish(args.out, record("chaos_faults", args, {"results": {
        "proxy": overhead, "partition": part, "recovery": rec, "proxy_kind": kind}}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
