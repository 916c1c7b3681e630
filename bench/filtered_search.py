"""Filtered search strategies, measured side by side in one run.

On raw hnswlib with the server's parameters: (a) a filter callable inside the
graph walk, (b) oversampling ×10 then post-filtering, (c) exact search over the
matching rows. Then the server end to end (its strategy: oversample, and fall
back to exact search over the matching set). Latency P50 and recall@10 per
filter selectivity — the evidence behind the server's choice.

Run: ``python -m akidb.bench.filtered_search [--vectors N] [--out DIR]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np

from akidb.bench import common, raw
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.datagen import vectors
from akidb.datagen.groundtruth import exact_knn, recall_at_k
from akidb.harness import Node

M, EF_CONSTRUCTION, EF_SEARCH, K = 32, 200, 64, 10
FILTERS = {  # payload cat = row % 100
    "50%": ({"cat": {"$lt": 50}}, lambda cats: cats < 50),
    "10%": ({"cat": {"$lt": 10}}, lambda cats: cats < 10),
    "1%": ({"cat": 7}, lambda cats: cats == 7),
}


def _time(fn: Callable[[np.ndarray], list[int]], queries: np.ndarray
          ) -> tuple[float, list[list[int]]]:
    ms, found = Samples.timed(fn, queries)
    return ms.p50, found


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=20000, dim=384, queries=200, seed=0,
                       out="reports/filtered")
    args = ap.parse_args(argv)
    base = vectors.clustered(args.vectors, args.dim, seed=args.seed)
    queries = vectors.queries(args.queries, args.dim, seed=args.seed)
    cats = np.arange(args.vectors) % 100
    index = raw.build(base, m=M, ef_construction=EF_CONSTRUCTION, ef=EF_SEARCH).index
    normed = base / np.linalg.norm(base, axis=1, keepdims=True)

    node = Node(fsync="none")
    rows: list[dict[str, Any]] = []
    try:
        node.start()
        client = node.admin_client(timeout=300)
        path = "bench/db/filtered"
        client.create_collection(path, dimension=args.dim, create_parents=True)
        for s in range(0, args.vectors, 1000):
            e = min(s + 1000, args.vectors)
            client.upsert_arrays(path, [str(i) for i in range(s, e)], base[s:e],
                                 payloads=[{"cat": int(c)} for c in cats[s:e]])
        for name, (flt, predicate) in FILTERS.items():
            mask = predicate(cats)
            truth, _ = exact_knn(base, queries, K, "cosine", mask=mask)
            matching = np.flatnonzero(mask)

            def callable_filter(q: np.ndarray, mask: np.ndarray = mask) -> list[int]:
                index.set_ef(EF_SEARCH)
                labels, _ = index.knn_query(q, k=K, filter=lambda x: bool(mask[x]))
                return labels[0].tolist()

            def oversample(q: np.ndarray, mask: np.ndarray = mask) -> list[int]:
                index.set_ef(max(EF_SEARCH, K * 10))
                labels, _ = index.knn_query(q, k=K * 10)
                return [int(x) for x in labels[0] if mask[x]][:K]

            def exact(q: np.ndarray, matching: np.ndarray = matching) -> list[int]:
                scores = normed[matching] @ (q / np.linalg.norm(q))
                top = np.argpartition(-scores, K - 1)[:K]
                return matching[top[np.argsort(-scores[top])]].tolist()

            def server(q: np.ndarray, flt: dict = flt) -> list[int]:
                return [int(i) for i in client.search(path, q, k=K, filter=flt).ids]

            row: dict[str, Any] = {"selectivity": name, "matching": int(mask.sum())}
            for label, fn in (("hnsw_filter_callable", callable_filter),
                              ("oversample_x10_postfilter", oversample),
                              ("exact_over_matching", exact), ("server_rest", server)):
                p50, found = _time(fn, queries)
                row[label] = {"p50_ms": p50, "recall_at_10": recall_at_k(found, truth, K)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        client.close()
    finally:
        node.close()
    table = [[row["selectivity"], key, f"{value['p50_ms']:.3f}", f"{value['recall_at_10']:.3f}"]
             for row in rows for key, value in row.items() if isinstance(value, dict)]
    lines = [f"# Filtered search strategies ({args.vectors} x {args.dim}, k={K}, ef={EF_SEARCH})",
             "", *markdown_table(["selectivity", "strategy", "P50 ms", "recall@10"], table)]
    publish(args.out, record("filtered_search", args, {"results": rows}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
