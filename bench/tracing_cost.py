"""What tracing costs on the search path, measured side by side in one run.

Three servers on the same data, searched in turn by one REST client, round after
round (ABC, then CBA, ...): tracing off (the default), on but sampling nothing
(``OTEL_TRACES_SAMPLER=always_off``: the instrumentation runs, no span is recorded),
and on, recording every request (console exporter into the server's log). Figures:
search P50/P99 per configuration and the median of per-round P50 ratios to "off".

Run: ``python -m akidb.bench.tracing_cost [--vectors N] [--dim D] [--queries Q]``.
"""

from __future__ import annotations

import numpy as np

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.datagen import vectors
from akidb.harness import Node

CONFIGS = {
    "off": {},
    "on, sampled none": {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_off"},
    "on, every request": {"OTEL_TRACES_EXPORTER": "console"},
    "on, every request, batches of 32": {"OTEL_TRACES_EXPORTER": "console",
                                          "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32"},
}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=20000, dim=128, queries=1000, out="reports/tracing")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args(argv)
    base = vectors.clustered(args.vectors, args.dim, seed=1)
    queries = vectors.clustered(args.queries, args.dim, seed=1, stream=2)
    nodes = {name: Node(name=f"trace-{i}", fsync="batch", env=env)
             for i, (name, env) in enumerate(CONFIGS.items())}
    samples: dict[str, list[Samples]] = {name: [] for name in nodes}
    try:
        clients = {}
        for name, node in nodes.items():
            node.start()
            client = node.admin_client(timeout=120)
            client.create_collection("t/db/c", dimension=args.dim, create_parents=True)
            for s in range(0, args.vectors, 1000):
                chunk = base[s:s + 1000]
                client.upsert_arrays("t/db/c", [str(s + i) for i in range(len(chunk))], chunk)
            clients[name] = client
        order = list(nodes)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                client = clients[name]
                ms, _ = Samples.timed(lambda q, c=client: c.search("t/db/c", q, k=10),
                                      queries, warmup=min(50, len(queries)))
                samples[name].append(ms)
        for client in clients.values():
            client.close()
    finally:
        for node in nodes.values():
            node.close()
    off_p50 = [ms.p50 for ms in samples["off"]]
    results = {}
    for name, rounds in samples.items():
        every = Samples.of(np.concatenate([ms.values for ms in rounds]))
        p50s = [ms.p50 for ms in rounds]
        results[name] = {
            "p50_ms": every.p50, "p99_ms": every.p99,
            "p50_ratio_to_off": float(np.median([a / b for a, b in zip(p50s, off_p50,
                                                                       strict=True)])),
            "per_round_p50_ms": p50s}
    rows = [[name, f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['p50_ratio_to_off']:.3f}"]
            for name, r in results.items()]
    lines = [f"# Tracing cost on the search path ({args.vectors} x {args.dim}, "
             f"{args.queries} queries x {args.rounds} rounds per configuration, one REST "
             "client, configurations interleaved)", "",
             *markdown_table(["tracing", "P50 ms", "P99 ms", "P50 / off (median of rounds)"],
                             rows)]
    publish(args.out, record("tracing_cost", args, {"results": results}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
