"""Time from ``Cluster(nodes=N)`` to every node ready, and each node's resident memory.

Run: ``python -m akidb.bench.cluster_startup [--nodes 3] [--repeat 3]``.
"""

from __future__ import annotations

import statistics
import time

from akidb.bench import common
from akidb.bench.environment import rss_bytes
from akidb.bench.results import markdown_table, publish, record
from akidb.harness import Cluster


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, out="reports/cluster_startup")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if args.nodes < 1 or args.repeat < 1:
        ap.error("--nodes and --repeat must be positive")
    runs = []
    for i in range(args.repeat):
        started = time.perf_counter()
        with Cluster(nodes=args.nodes) as cluster:
            ready_s = time.perf_counter() - started
            rss = [rss_bytes(n.pid) / 2**20 for n in cluster.nodes]
        runs.append({"ready_s": ready_s, "rss_mib": rss})
        print(f"run {i + 1}: {args.nodes} nodes ready in {ready_s:.2f}s; RSS per node "
              + ", ".join(f"{r:.0f} MiB" for r in rss), flush=True)
    single_started = time.perf_counter()
    with Cluster(nodes=1):
        single_s = time.perf_counter() - single_started
    result = record("cluster_startup", args, {
        "runs": runs, "median_ready_s": statistics.median(r["ready_s"] for r in runs),
        "single_node_ready_s": single_s})
    publish(args.out, result, [
        "# Cluster start-up", "",
        *markdown_table(["run", "nodes ready (s)", "RSS per node (MiB)"],
                        [[str(i + 1), f"{r['ready_s']:.2f}",
                          ", ".join(f"{x:.0f}" for x in r["rss_mib"])]
                         for i, r in enumerate(runs)]),
        "", f"median {args.nodes}-node ready: {result['median_ready_s']:.2f}s; one node: "
        f"{single_s:.2f}s (target: a node ready in <= 1.5 s)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
