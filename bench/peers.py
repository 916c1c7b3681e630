"""The server beside raw hnswlib and an embedded peer (chromadb), same data, same run.

``python -m akidb.bench.peers [--vectors 20000 --dim 384] [--chroma-python PY]``

Every system gets the same vectors, the same queries and the same HNSW settings
(M=32, ef_construction=200, ef_search=64, cosine): ingest in batches of 1000,
then one client querying top-10 one at a time. Recall@10 is printed beside every
latency, so speeds are compared at (near) equal recall. chromadb runs in its own
interpreter (``--chroma-python``, default this one) because its dependencies
are its own; it is skipped, with a note, when it is not installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from akidb.bench.results import markdown_table, publish, record
from akidb.bench.timing import percentile
from akidb.datagen import vectors
from akidb.datagen.groundtruth import exact_knn, recall_at_k
from akidb.harness import Node

M, EF_CONSTRUCTION, EF_SEARCH, K = 32, 200, 64, 10

_CHROMA_WORKER = r"""
import json, sys, time
import numpy as np
import chromadb
work = sys.argv[1]
params = json.load(open(work + "/params.json"))
train, test = np.load(work + "/train.npy"), np.load(work + "/test.npy")
client = chromadb.EphemeralClient()
coll = client.create_collection("bench", embedding_function=None, configuration={"hnsw": {
    "space": "cosine", "max_neighbors": params["m"], "ef_construction": params["efc"],
    "ef_search": params["ef"]}})
ids = [str(i) for i in range(len(train))]
started = time.perf_counter()
for s in range(0, len(train), params["batch"]):
    coll.add(ids=ids[s:s + params["batch"]], embeddings=train[s:s + params["batch"]])
ingest_s = time.perf_counter() - started
for q in test[:20]:
    coll.query(query_embeddings=q[None, :], n_results=params["k"])
lat, found = [], []
for q in test:
    t = time.perf_counter()
    out = coll.query(query_embeddings=q[None, :], n_results=params["k"])
    lat.append((time.perf_counter() - t) * 1000)
    found.append([int(x) for x in out["ids"][0]])
print(json.dumps({"version": chromadb.__version__, "ingest_s": ingest_s,
                  "latency_ms": lat, "found": found}))
"""


def _measure(search: Any, queries: np.ndarray) -> tuple[list[float], list[list[int]]]:
    for q in queries[:20]:
        search(q)
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        ids = search(q)
        lat.append((time.perf_counter() - t) * 1000)
        found.append(ids)
    return lat, found


def _chroma(python: str, train: np.ndarray, test: np.ndarray, batch: int) -> dict[str, Any]:
    check = subprocess.run([python, "-c", "import chromadb"], capture_output=True)
    if check.returncode != 0:
        return {"skipped": f"chromadb is not importable by {python} (--chroma-python PY)"}
    with tempfile.TemporaryDirectory(prefix="akidb-peer-") as work:
        np.save(f"{work}/train.npy", train)
        np.save(f"{work}/test.npy", test)
        Path(work, "params.json").write_text(json.dumps(
            {"m": M, "efc": EF_CONSTRUCTION, "ef": EF_SEARCH, "k": K, "batch": batch}))
        out = subprocess.run([python, "-c", _CHROMA_WORKER, work], capture_output=True,
                             text=True, timeout=3600)
    if out.returncode != 0:
        return {"skipped": f"chromadb worker failed: {out.stderr.strip()[-300:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--chroma-python", default=sys.executable)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("reports/peers"))
    args = ap.parse_args(argv)
    train = vectors.clustered(args.vectors, args.dim, seed=args.seed, normalize=True)
    test = vectors.queries(args.queries, args.dim, seed=args.seed, normalize=True)
    truth, _ = exact_knn(train, test, K, "cosine")
    n = len(train)
    systems: dict[str, dict[str, Any]] = {}

    index = hnswlib.Index(space="cosine", dim=args.dim)
    index.init_index(max_elements=n, M=M, ef_construction=EF_CONSTRUCTION, random_seed=0)
    index.set_num_threads(2)
    started = time.perf_counter()
    for s in range(0, n, args.batch):
        index.add_items(train[s:s + args.batch], np.arange(s, min(s + args.batch, n)))
    ingest = time.perf_counter() - started
    index.set_ef(EF_SEARCH)
    index.set_num_threads(1)
    lat, found = _measure(lambda q: index.knn_query(q, k=K)[0][0].tolist(), test)
    systems["raw hnswlib (in-process)"] = {"ingest_s": ingest, "latency_ms": lat,
                                           "found": found}

    node = Node(fsync="batch").start()
    try:
        for plane in ("rest", "grpc"):
            client = node.admin_client(timeout=600, data_plane=plane)
            coll = f"bench/db/{plane}"
            client.create_collection(coll, dimension=args.dim, create_parents=True,
                                     hnsw={"m": M, "ef_construction": EF_CONSTRUCTION,
                                           "ef_search": EF_SEARCH})
            ids = [str(i) for i in range(n)]
            started = time.perf_counter()
            client.upsert_stream(coll, [(ids[s:s + args.batch], train[s:s + args.batch],
                                         None, None) for s in range(0, n, args.batch)])
            ingest = time.perf_counter() - started
            lat, found = _measure(
                lambda q, c=client, name=coll: [int(i) for i in c.search(name, q, k=K).ids],
                test)
            systems[f"akidb server ({plane.upper()})"] = {"ingest_s": ingest,
                                                          "latency_ms": lat, "found": found}
            client.close()
    finally:
        node.close()
    chroma = _chroma(args.chroma_python, train, test, args.batch)
    notes = []
    if "skipped" in chroma:
        notes.append(f"chromadb: {chroma['skipped']}")
    else:
        systems[f"chromadb {chroma.pop('version')} (embedded)"] = chroma

    rows, results = [], {}
    for name, s in systems.items():
        lat = np.asarray(s["latency_ms"])
        recall = recall_at_k(s["found"], truth, K)
        results[name] = {"ingest_vectors_per_s": n / s["ingest_s"], "recall_at_10": recall,
                         "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99)}
        r = results[name]
        rows.append([name, f"{r['ingest_vectors_per_s']:.0f}", f"{r['recall_at_10']:.4f}",
                     f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}"])
    lines = [f"# Peers: {n} x {args.dim} cosine, M={M}, ef_construction={EF_CONSTRUCTION}, "
             f"ef_search={EF_SEARCH}, top-{K}, 1 client", "",
             *markdown_table(["system", "ingest vectors/s", "recall@10", "query P50 ms",
                              "query P99 ms"], rows), "", *notes]
    publish(args.out, record("peers", args, {"results": results}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
