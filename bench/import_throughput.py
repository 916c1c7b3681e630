"""Import throughput: ``akidb import`` from Parquet and .npy vs the server's own batch ingest.

``python -m akidb.bench.import_throughput [--vectors 100000 --dim 384 --batch 1000]``

All three load the same vectors into fresh collections of one server, over the
same client and transport, in batches of the same size: the baseline sends
pre-built numpy batches; the imports read, parse and validate the file as they
go. Target: import ≥ 0.9x the baseline (parsing must not be the bottleneck).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.bulk.importer import run_import
from akidb.datagen import vectors
from akidb.harness import Node


def _parquet(path: Path, base: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = pa.array([str(i) for i in range(len(base))], pa.string())
    vec = pa.FixedSizeListArray.from_arrays(pa.array(base.ravel(), pa.float32()), base.shape[1])
    pq.write_table(pa.table({"id": ids, "vector": vec}), path, row_group_size=10_000)


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=100_000, dim=384, batch=1000, out="reports/import")
    ap.add_argument("--transport", choices=["rest", "grpc"], default="rest")
    args = ap.parse_args(argv)
    base = vectors.clustered(args.vectors, args.dim, seed=0)
    work = Path(tempfile.mkdtemp(prefix="akidb-import-bench-"))
    np.save(work / "base.npy", base)
    _parquet(work / "base.parquet", base)
    rates: dict[str, float] = {}
    node = Node(fsync="batch")
    try:
        node.start()
        client = node.admin_client(timeout=600, data_plane=args.transport)
        for name in ("baseline", "npy", "parquet"):
            client.create_collection(f"bench/db/{name}", dimension=args.dim,
                                     create_parents=True)
        ids = [str(i) for i in range(args.vectors)]
        started = time.perf_counter()
        for s in range(0, args.vectors, args.batch):
            client.upsert_arrays("bench/db/baseline", ids[s:s + args.batch],
                                 base[s:s + args.batch])
        rates["baseline"] = args.vectors / (time.perf_counter() - started)
        for fmt in ("npy", "parquet"):
            summary = run_import(client, work / f"base.{fmt}", fmt, f"bench/db/{fmt}",
                                 batch=args.batch, progress=False,
                                 checkpoint_path=work / f"{fmt}.ckpt.json")
            assert summary.imported == args.vectors
            rates[fmt] = summary.rows_per_s
        client.close()
    finally:
        node.close()
        for f in work.iterdir():
            f.unlink()
        work.rmdir()
    lines = [f"# Import throughput ({args.vectors} x {args.dim}, batches of {args.batch}, "
             f"{args.transport}, fsync=batch)", "",
             *markdown_table(["source", "rows/s", "÷ batch ingest", "target"], [
                 ["pre-built batches (server batch ingest)", f"{rates['baseline']:.0f}",
                  "1.00x", ""],
                 *[[f"akidb import .{fmt}", f"{rates[fmt]:.0f}",
                    f"{rates[fmt] / rates['baseline']:.2f}x", ">= 0.9x"]
                   for fmt in ("npy", "parquet")]])]
    publish(args.out, record("import_throughput", args, {"results": rates}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
