"""Recall@k against QPS over an ef sweep (the ann-benchmarks curve), server and raw hnswlib.

``python -m akidb.bench.recall_sweep [--dataset NAME|PATH | --vectors 20000 --dim 128]
[--ef 10,20,40,80,160,320] [--k 10]``

Same data, same M/ef_construction, same queries, one run: the server is queried
over REST by one client (so its QPS includes the HTTP round trip), hnswlib
in-process one query at a time. Ground truth is exact (``datagen.groundtruth``)
or the dataset's own ``neighbors``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from akidb.bench import common, datasets
from akidb.bench import raw as reference
from akidb.bench.results import markdown_table, publish, record
from akidb.datagen.groundtruth import recall_at_k
from akidb.datagen.io import DatasetError
from akidb.harness import Node

M, EF_CONSTRUCTION = 32, 200


def _plot(curves: dict[str, list[tuple[float, float, int]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        for recall, qps, ef in points:
            ax.annotate(str(ef), (recall, qps), fontsize=7, textcoords="offset points",
                        xytext=(3, 3))
    ax.set_yscale("log")
    ax.set_xlabel("recall@k")
    ax.set_ylabel("queries per second (1 client)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, dataset=None, vectors=20_000, dim=128, queries=500, k=10,
                       seed=0, out="reports/recall")
    ap.add_argument("--ef", type=common.count_list, default=[10, 20, 40, 80, 160, 320],
                    help="the ef values swept (default: 10,20,40,80,160,320)")
    args = ap.parse_args(argv)
    efs = args.ef
    try:
        data = (datasets.load(args.dataset) if args.dataset else
                datasets.generated(args.vectors, args.dim, args.queries, args.seed))
    except DatasetError as exc:
        ap.error(str(exc))
    metric = data.metric
    truth = data.neighbors[:, :args.k]
    n, dim = data.train.shape
    index = reference.build(data.train, metric=metric, m=M, ef_construction=EF_CONSTRUCTION,
                            seed=args.seed).index
    curves: dict[str, list[tuple[float, float, int]]] = {"raw hnswlib": [], "akidb server": []}
    for ef in efs:
        index.set_ef(max(ef, args.k))
        started = time.perf_counter()
        found = np.vstack([index.knn_query(q, k=args.k)[0] for q in data.test])
        qps = len(data.test) / (time.perf_counter() - started)
        curves["raw hnswlib"].append((recall_at_k(found, truth, args.k), qps, ef))
    del index

    node = Node(fsync="batch").start()
    try:
        client = node.admin_client(timeout=600)
        coll = "bench/db/sweep"
        client.create_collection(coll, dimension=dim, metric=metric, create_parents=True,
                                 hnsw={"m": M, "ef_construction": EF_CONSTRUCTION})
        ids = [str(i) for i in range(n)]
        for s in range(0, n, 1000):
            client.upsert_arrays(coll, ids[s:s + 1000], data.train[s:s + 1000])
        for q in data.test[:20]:
            client.search(coll, q, k=args.k)  # warm-up
        for ef in efs:
            started = time.perf_counter()
            found = np.asarray([[int(h) for h in client.search(coll, q, k=args.k, ef=max(
                ef, args.k)).ids] for q in data.test])
            qps = len(data.test) / (time.perf_counter() - started)
            curves["akidb server"].append((recall_at_k(found, truth, args.k), qps, ef))
        client.close()
    finally:
        node.close()
    args.out.mkdir(parents=True, exist_ok=True)
    title = f"{args.dataset or f'clustered {n} x {dim}'} ({metric}), recall@{args.k}"
    _plot(curves, args.out / "recall_qps.png", title)
    rows = [[str(ef), f"{r_raw:.4f}", f"{q_raw:.0f}", f"{r_srv:.4f}", f"{q_srv:.0f}",
             f"{q_srv / q_raw:.2f}x"]
            for (r_raw, q_raw, ef), (r_srv, q_srv, _) in zip(curves["raw hnswlib"],
                                                             curves["akidb server"],
                                                             strict=True)]
    lines = [f"# Recall / QPS sweep: {title}, M={M}, ef_construction={EF_CONSTRUCTION}", "",
             *markdown_table(["ef", "hnswlib recall", "hnswlib QPS", "server recall",
                              "server QPS", "server ÷ hnswlib QPS"], rows), "",
             "![recall vs QPS](recall_qps.png)"]
    publish(args.out, record("recall_sweep", args, {"results": {
        name: [{"ef": ef, "recall": r, "qps": q} for r, q, ef in pts]
        for name, pts in curves.items()}}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
