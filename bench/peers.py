"""The server beside raw hnswlib and an embedded peer (chromadb), same data, same run.

``python -m akidb.bench.peers [--vectors 20000 --dim 384] [--chroma-python PY]``

An alias of ``akidb bench run serial`` on generated data with the drivers ``akidb``
(REST and gRPC), ``hnswlib`` and ``chroma`` (embedded, in ``--chroma-python``'s
interpreter; left out with a note when chromadb is not importable there): the same
vectors, queries and HNSW settings (M=32, ef_construction=200, ef_search=64,
cosine), ingest in batches, then one client querying top-10 one at a time, recall@10
beside every latency.
"""

from __future__ import annotations

import subprocess
import sys

from akidb.bench import common, datasets, drivers
from akidb.bench import run as run_mod
from akidb.bench.results import record, save
from akidb.bench.scenarios import Options

M, EF_CONSTRUCTION, EF_SEARCH, K = 32, 200, 64, 10


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=20_000, dim=384, queries=500, batch=1000, seed=0,
                       out="reports/peers")
    ap.add_argument("--chroma-python", default=sys.executable)
    args = ap.parse_args(argv)
    data = datasets.generated(args.vectors, args.dim, args.queries, args.seed)
    specs: list[tuple[str, dict[str, object]]] = [
        ("akidb", {"transport": "rest"}), ("akidb", {"transport": "grpc"}), ("hnswlib", {})]
    notes = []
    if subprocess.run([args.chroma_python, "-c", "import chromadb"],
                      capture_output=True).returncode == 0:
        specs.append(("chroma", {"mode": "embedded", "python": args.chroma_python}))
    else:
        notes.append(f"chromadb: not importable by {args.chroma_python} (--chroma-python PY)")
    opts = Options(k=K, batch=args.batch,
                   params=drivers.IndexParams("cosine", M, EF_CONSTRUCTION, EF_SEARCH))
    rec = run_mod.run("serial", specs, data, opts, lambda msg: print(f"  .. {msg}"))
    rec["notes"] += notes
    text = run_mod.report(rec, args.out)
    print(text)
    save(args.out, record("peers", args, {"results": rec["results"], "notes": rec["notes"]}),
         text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
