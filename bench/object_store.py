"""Object-store shipping and restore, against an S3 API (moto's server unless --endpoint).

``python -m akidb.bench.object_store [--vectors 100000 --dim 384] [--endpoint URL --bucket B]``

- Ship throughput: after a snapshot, the shipper's MB/s (SHA-256 + upload,
  multipart above 16 MiB) vs a plain boto3 ``upload_file`` of the same files.
- Restore: a new node from the bucket (download, verify, recover) to ready, vs
  the original node's local restart (recovery from its own disk) to ready.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.datagen import vectors
from akidb.harness import Node
from akidb.harness.process import free_port

AWS_DEFAULTS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}



def _wait_drained(client, timeout: float = 3600) -> dict:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        status = client.request("GET", "/ready")["object_store"]
        if status["backlog_objects"] == 0:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"backlog did not drain: {status}")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    import boto3

    ap = common.parser(__doc__, vectors=100_000, dim=384, batch=1000,
                       out="reports/object_store")
    ap.add_argument("--endpoint", help="S3 endpoint; default: a moto server started here")
    ap.add_argument("--bucket", default="akidb-bench")
    args = ap.parse_args(argv)
    for k, v in AWS_DEFAULTS.items():
        os.environ.setdefault(k, v)
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request lines
    moto = None
    endpoint = args.endpoint
    if endpoint is None:
        from moto.server import ThreadedMotoServer

        port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        endpoint = f"http://127.0.0.1:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    try:
        s3.create_bucket(Bucket=args.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    work = Path(tempfile.mkdtemp(prefix="akidb-s3-bench-"))
    prefix = f"run-{int(time.time())}"
    env = {k: os.environ[k] for k in AWS_DEFAULTS} | {"AKIDB_SNAPSHOT_WAL_BYTES": "0"}
    base = vectors.clustered(args.vectors, args.dim, seed=0)
    coll = "bench/db/c"
    node = Node(work / "a", fsync="batch", env=env, extra_args=[
        "--s3-endpoint", endpoint, "--object-store", f"s3://{args.bucket}/{prefix}"])
    restored = Node(work / "b", fsync="batch", env=env, ready_timeout=3600, extra_args=[
        "--s3-endpoint", endpoint, "--restore-from", f"s3://{args.bucket}/{prefix}"])
    try:
        node.start()
        client = node.admin_client(timeout=600)
        client.create_collection(coll, dimension=args.dim, create_parents=True)
        ids = [str(i) for i in range(args.vectors)]
        for s in range(0, args.vectors, args.batch):
            client.upsert_arrays(coll, ids[s:s + args.batch], base[s:s + args.batch])
        before = _wait_drained(client)
        client.snapshot(coll)
        status = _wait_drained(client)
        # Time inside the shipper's uploads (SHA-256 + transfer), not the snapshot itself.
        ship_s = status["upload_seconds"] - before["upload_seconds"]
        shipped = status["uploaded_bytes"] - before["uploaded_bytes"]
        client.close()

        # Plain boto3 upload of the same bytes: the snapshot files and a metadata copy.
        snap_dir = max((work / "a" / "collections").glob("*/snapshots/*"))
        files = [snap_dir / "index.bin", snap_dir / "meta.json"]
        meta_copy = work / "metadata-copy.db"
        shutil.copyfile(work / "a" / "metadata.db", meta_copy)
        files.append(meta_copy)
        plain_bytes = sum(f.stat().st_size for f in files)
        started = time.perf_counter()
        for f in files:
            s3.upload_file(str(f), args.bucket, f"plain-{prefix}/{f.name}")
        plain_s = time.perf_counter() - started

        node.stop()
        started = time.perf_counter()
        node.start()
        local_s = time.perf_counter() - started
        started = time.perf_counter()
        restored.start()
        restore_s = time.perf_counter() - started
        with restored.admin_client() as rc:
            assert rc.get_collection(coll)["count"] == args.vectors
    finally:
        node.close()
        restored.close()
        shutil.rmtree(work, ignore_errors=True)
        if moto is not None:
            moto.stop()
    mb = 1024 * 1024
    ship_rate, plain_rate = shipped / mb / ship_s, plain_bytes / mb / plain_s
    results = {"shipped_bytes": shipped, "ship_seconds": ship_s, "ship_mb_per_s": ship_rate,
               "plain_bytes": plain_bytes, "plain_seconds": plain_s,
               "plain_mb_per_s": plain_rate, "restore_to_ready_s": restore_s,
               "local_restart_to_ready_s": local_s, "endpoint": "moto" if moto else endpoint}
    lines = [f"# Object store ({args.vectors} x {args.dim}, "
             f"{'moto server, in this process' if moto else endpoint})", "",
             *markdown_table(["figure", "akidb", "reference", "ratio"], [
                 ["ship MB/s (snapshot + metadata backup, sha256 + upload)",
                  f"{ship_rate:.1f} ({shipped / mb:.1f} MB)",
                  f"{plain_rate:.1f} plain boto3 upload_file ({plain_bytes / mb:.1f} MB)",
                  f"{ship_rate / plain_rate:.2f}x"],
                 ["seconds to ready", f"{restore_s:.2f} restore from the bucket",
                  f"{local_s:.2f} local restart", f"{restore_s / local_s:.2f}x"]])]
    publish(args.out, record("object_store", args, {"results": results}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
