"""Recall@k against QPS over an ef sweep (the ann-benchmarks curve), server and raw hnswlib.

``python -m akidb.bench.recall_sweep [--dataset FILE.hdf5 | --vectors 20000 --dim 128]
[--ef 10,20,40,80,160,320] [--k 10]``

Same data, same M/ef_construction, same queries, one run: the server is queried
over REST by one client (so its QPS includes the HTTP round trip), hnswlib
in-process one query at a time. Ground truth is exact (``datagen.groundtruth``)
or the dataset's own ``neighbors``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import hnswlib
import numpy as np

from akidb.bench.results import markdown_table, publish, record
from akidb.datagen import io, vectors
from akidb.datagen.groundtruth import exact_knn, recall_at_k
from akidb.harness import Node

M, EF_CONSTRUCTION = 32, 200


def _dataset(args: argparse.Namespace) -> io.AnnDataset:
    if args.dataset:
        return io.read_hdf5(Path(args.dataset))
    train = vectors.clustered(args.vectors, args.dim, seed=args.seed)
    test = vectors.queries(args.queries, args.dim, seed=args.seed)
    idx, scores = exact_knn(train, test, max(args.k, 100), "cosine")
    return io.AnnDataset(train, test, idx, io.scores_to_distances(scores, "cosine"), "cosine")


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", help="an ann-benchmarks HDF5 file (default: generated)")
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--ef", default="10,20,40,80,160,320")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("reports/recall"))
    args = ap.parse_args(argv)
    efs = [int(x) for x in args.ef.split(",")]
    data = _dataset(args)
    metric = data.metric
    truth = data.neighbors[:, :args.k]
    n, dim = data.train.shape
    space = {"cosine": "cosine", "l2": "l2", "ip": "ip"}[metric]

    index = hnswlib.Index(space=space, dim=dim)
    index.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=args.seed)
    index.set_num_threads(2)
    index.add_items(data.train, np.arange(n))
    index.set_num_threads(1)
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
