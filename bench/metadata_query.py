"""Metadata query latency: control-plane and document reads served from SQLite.

The seed's target is P99 < 5 ms for a metadata query. The scenario builds a
catalogue the size of a small deployment (tenants x databases x collections) and
one collection of documents with payloads, then times, one client at a time and
in random order, the reads a dashboard or an operator tool makes: a tenant, the
databases of a tenant, the collections of a database, one collection (with its
count), one document by id (payload), and the payloads of a page of documents.

Run: ``python -m akidb.bench.metadata_query [--tenants 20 --databases 5 --collections 10]
[--documents 20000] [--samples 500] [--target URL --api-key KEY]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.bench.target import Target, add_target_options, open_target
from akidb.datagen import vectors
from akidb.datagen.documents import iter_documents
from akidb.server.client import Client

TARGET_P99_MS = 5.0


def build_catalogue(client: Client, name: Callable[[str], str], tenants: int, databases: int,
                    collections: int) -> list[tuple[str, str, str]]:
    """Create the tenants/databases/collections; returns every collection's parts."""
    made = []
    for t in range(tenants):
        tenant = name(f"t{t:03d}")
        client.create_tenant(tenant)
        for d in range(databases):
            db = f"db{d:02d}"
            client.create_database(tenant, db)
            for c in range(collections):
                coll = f"c{c:03d}"
                client.create_collection(f"{tenant}/{db}/{coll}", dimension=8)
                made.append((tenant, db, coll))
        print(f"  .. tenant {t + 1}/{tenants}", file=sys.stderr, flush=True)
    return made


def load_documents(client: Client, collection: str, n: int, dim: int, seed: int) -> list[str]:
    client.create_collection(collection, dimension=dim)
    base = vectors.clustered(n, dim, seed=seed)
    docs = iter_documents(n, seed=seed)
    ids: list[str] = []
    for s in range(0, n, 1000):
        chunk = [next(docs) for _ in range(min(1000, n - s))]
        ids.extend(d["id"] for d in chunk)
        client.upsert_arrays(collection, [d["id"] for d in chunk], base[s:s + len(chunk)],
                             [d["payload"] for d in chunk], [d["text"] for d in chunk])
    return ids


def operations(client: Client, catalogue: list[tuple[str, str, str]], doc_collection: str,
               ids: list[str], rng: random.Random) -> dict[str, Callable[[], Any]]:
    """Each metadata read, picking its arguments at random on every call."""
    sorted_ids = sorted(ids)

    def pick() -> tuple[str, str, str]:
        return rng.choice(catalogue)

    return {
        "get_tenant": lambda: client.get_tenant(pick()[0]),
        "list_databases": lambda: client.list_databases(pick()[0]),
        "list_collections": lambda: client.list_collections(*pick()[:2]),
        "get_collection": lambda: client.get_collection("/".join(pick())),
        "get_document": lambda: client.get(doc_collection, rng.choice(ids)),
        # The payloads (metadata) of a page of documents; vectors and texts are an
        # export's business (akidb export), not a metadata query's.
        "list_payloads_100": lambda: client.list_documents(
            doc_collection, after=rng.choice(sorted_ids), limit=100, include=("payload",)),
    }


def measure(ops: dict[str, Callable[[], Any]], samples: int, rng: random.Random
            ) -> dict[str, np.ndarray]:
    """Interleave the operations in random order, so drift hits all of them alike."""
    for fn in ops.values():
        for _ in range(5):
            fn()
    schedule = [name for name in ops for _ in range(samples)]
    rng.shuffle(schedule)
    out: dict[str, list[float]] = {name: [] for name in ops}
    for name in schedule:
        started = time.perf_counter()
        ops[name]()
        out[name].append((time.perf_counter() - started) * 1000)
    return {name: np.asarray(ms) for name, ms in out.items()}


def run(target: Target, args: argparse.Namespace) -> dict[str, np.ndarray]:
    rng = random.Random(args.seed)
    with target.scratch_tenants("mq") as name, target.client(timeout=120) as client:
        print(f"creating {args.tenants} tenants x {args.databases} databases x "
              f"{args.collections} collections ...", file=sys.stderr, flush=True)
        catalogue = build_catalogue(client, name, args.tenants, args.databases,
                                    args.collections)
        doc_collection = f"{catalogue[0][0]}/{catalogue[0][1]}/documents"
        print(f"loading {args.documents} documents ...", file=sys.stderr, flush=True)
        ids = load_documents(client, doc_collection, args.documents, args.dim, args.seed)
        return measure(operations(client, catalogue, doc_collection, ids, rng),
                       args.samples, rng)


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, dim=64, seed=0, out="reports/metadata")
    ap.add_argument("--tenants", type=int, default=20)
    ap.add_argument("--databases", type=int, default=5, help="per tenant")
    ap.add_argument("--collections", type=int, default=10, help="per database")
    ap.add_argument("--documents", type=int, default=20_000)
    ap.add_argument("--samples", type=int, default=500, help="per operation")
    add_target_options(ap)
    args = ap.parse_args(argv)
    for name in ("tenants", "databases", "collections", "documents", "samples"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")
    with open_target(args) as target:
        lat = run(target, args)
    stats = {name: {q: Samples.of(ms).percentile(q) for q in (50, 95, 99)}
             for name, ms in lat.items()}
    worst = max(s[99] for s in stats.values())
    n_coll = args.tenants * args.databases * args.collections
    lines = [f"# Metadata query latency ({args.tenants} tenants, {n_coll} collections, "
             f"{args.documents} documents)", "",
             f"{args.samples} calls per operation, one client, REST, interleaved at random.", "",
             *markdown_table(["operation", "P50 ms", "P95 ms", "P99 ms"],
                             [[n, f"{s[50]:.2f}", f"{s[95]:.2f}", f"{s[99]:.2f}"]
                              for n, s in stats.items()]),
             "", f"Worst P99 {worst:.2f} ms; target P99 < {TARGET_P99_MS:g} ms: "
             f"{'met' if worst < TARGET_P99_MS else 'missed'}."]
    metrics = {f"metadata_{name}_ms": Samples.of(ms).metric() for name, ms in lat.items()}
    publish(args.out, record("metadata_query", args, {"results": stats, "metrics": metrics}),
            lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
