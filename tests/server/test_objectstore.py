"""Snapshot shipping to a real S3 API (moto's server) and restore from it: round trip,
outage through the chaos proxy (backlog, restart, drain), corrupt objects refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import boto3
import numpy as np
import pytest

from akidb.chaos.endpoint import ToxiproxyEndpoint
from akidb.datagen import vectors
from akidb.harness import Node
from akidb.harness.process import free_port

DIM = 16
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}



@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    for k, v in AWS.items():
        monkeypatch.setenv(k, v)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    client.create_bucket(Bucket="akidb")
    yield url, client
    server.stop()


def _node(data_dir, endpoint, *extra: str, segment_bytes: int = 1) -> Node:
    env = {**AWS, "AKIDB_WAL_SEGMENT_BYTES": str(segment_bytes),
           "AKIDB_SHIP_MAX_BACKOFF_S": "0.5", "AKIDB_SNAPSHOT_WAL_BYTES": "0"}
    return Node(data_dir, fsync="batch", env=env,
                extra_args=["--s3-endpoint", endpoint, *extra])


def _wait_drained(client, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = client.request("GET", "/ready")["object_store"]
        if status["backlog_objects"] == 0:
            return status
        assert time.monotonic() < deadline, f"backlog never drained: {status}"
        time.sleep(0.1)


def _ingest(client, coll, start: int, n: int, batch: int = 50) -> None:
    vecs = vectors.clustered(n, DIM, seed=start)
    for s in range(0, n, batch):
        client.upsert(coll, [{"id": f"d{start + i}", "vector": vecs[i], "text": f"doc {start + i}",
                              "payload": {"n": start + i, "even": (start + i) % 2 == 0}}
                             for i in range(s, min(s + batch, n))])


LIVE = {"sentinel": {"$exists": False}}


def _results(client, coll) -> list:
    queries = vectors.queries(10, DIM, seed=99)
    return [[(h.id, round(h.score, 5)) for h in client.search(coll, q, k=10, filter=LIVE).hits]
            for q in queries]


def test_ship_wipe_restore_round_trip(s3, tmp_path):
    endpoint, bucket = s3
    coll = "t/db/c"
    with _node(tmp_path / "a", endpoint, "--object-store", "s3://akidb/n1") as node:
        client = node.admin_client()
        client.create_collection(coll, dimension=DIM, create_parents=True)
        _ingest(client, coll, 0, 400)
        client.snapshot(coll)
        _ingest(client, coll, 400, 300)  # one sealed segment per batch after the snapshot
        client.upsert(coll, [{"id": "sentinel", "vector": np.ones(DIM),
                              "payload": {"sentinel": True}}])  # seals the last batch
        status = _wait_drained(client)
        assert status["uploaded_objects"] >= 3 + 6 and status["state"] == "ok"
        metrics = client.metrics()
        assert "akidb_object_store_backlog_objects 0.0" in metrics
        expected = _results(client, coll)
        docs = {d: client.get(coll, d) for d in ("d0", "d399", "d400", "d699")}
        client.close()
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="akidb", Prefix="n1/")["Contents"]]
    assert any(k.startswith("n1/metadata/") for k in keys)
    assert any(k.endswith("/meta.json") for k in keys) and any(k.endswith(".wal") for k in keys)

    with _node(tmp_path / "b", endpoint, "--restore-from", "s3://akidb/n1") as restored:
        client = restored.admin_client()
        # Everything shipped comes back: the snapshot's 400, the 300 in sealed segments;
        # the sentinel sat in the unsealed tail, which is not shipped.
        assert client.get_collection(coll)["count"] == 700
        assert _results(client, coll) == expected
        for doc_id, doc in docs.items():
            assert client.get(coll, doc_id) == doc
        client.close()
        assert "restored from s3://akidb/n1" in restored.log_tail(200)


def test_outage_backlog_survives_restart_and_drains(s3, tmp_path):
    endpoint, _ = s3
    proxy_api = ToxiproxyEndpoint().start()
    try:
        proxy = proxy_api.toxiproxy().create(upstream=endpoint.removeprefix("http://"),
                                             name="s3")
        via_proxy = f"http://{proxy.listen}"
        coll = "t/db/c"
        node = _node(tmp_path / "a", via_proxy, "--object-store", "s3://akidb/n2").start()
        try:
            client = node.admin_client()
            client.create_collection(coll, dimension=DIM, create_parents=True)
            _ingest(client, coll, 0, 200)
            client.snapshot(coll)
            _wait_drained(client)

            proxy.disable()  # the object store becomes unreachable
            _ingest(client, coll, 200, 200)  # writes keep being acknowledged
            client.snapshot(coll)
            deadline = time.monotonic() + 20
            while True:
                status = client.request("GET", "/ready")["object_store"]
                if status["state"] == "retrying" and status["backlog_objects"] > 0:
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            assert "akidb_object_store_failing 1.0" in client.metrics()
            assert client.search(coll, np.ones(DIM), k=3).ids  # still serving
            client.close()
            node.stop()  # the queue is on disk: it survives the restart
            node.start()
            client = node.admin_client()
            # Still queued: the snapshot's index.bin and meta.json and the metadata backup
            # (log segments the snapshot superseded may have been dropped meanwhile).
            assert client.request("GET", "/ready")["object_store"]["backlog_objects"] >= 3
            proxy.enable()
            status = _wait_drained(client, timeout=60)
            assert status["state"] == "ok"
            count = client.get_collection(coll)["count"]
            client.close()
        finally:
            node.close()
        with _node(tmp_path / "b", endpoint, "--restore-from", "s3://akidb/n2") as restored:
            client = restored.admin_client()
            assert client.get_collection(coll)["count"] == count == 400
            client.close()
    finally:
        proxy_api.close()


CORRUPTED = {"snapshot index": lambda k: k.endswith("/index.bin"),
             "log segment": lambda k: k.endswith(".wal"),
             "metadata backup": lambda k: "/metadata/" in k}


@pytest.mark.parametrize("what", sorted(CORRUPTED))
def test_corrupt_object_is_detected_and_never_loaded(s3, tmp_path, what):
    endpoint, bucket = s3
    coll = "t/db/c"
    with _node(tmp_path / "a", endpoint, "--object-store", "s3://akidb/n3") as node:
        client = node.admin_client()
        client.create_collection(coll, dimension=DIM, create_parents=True)
        _ingest(client, coll, 0, 100)
        client.snapshot(coll)
        _ingest(client, coll, 100, 20, batch=5)  # sealed log segments after the snapshot
        _wait_drained(client)
        client.close()
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="akidb", Prefix="n3/")["Contents"]]
    index_key = max(k for k in keys if CORRUPTED[what](k))
    head = bucket.head_object(Bucket="akidb", Key=index_key)
    body = bytearray(bucket.get_object(Bucket="akidb", Key=index_key)["Body"].read())
    body[len(body) // 2] ^= 0xFF  # one flipped byte, checksum metadata kept
    bucket.put_object(Bucket="akidb", Key=index_key, Body=bytes(body),
                      Metadata=head["Metadata"])
    target = tmp_path / "b"
    out = subprocess.run(
        [sys.executable, "-m", "akidb", "serve", "--data-dir", str(target), "--port", "0",
         "--s3-endpoint", endpoint, "--restore-from", "s3://akidb/n3"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **AWS})
    assert out.returncode == 1
    assert f"s3://akidb/{index_key}" in out.stderr and "corrupt" in out.stderr
    assert not (target / "metadata.db").exists()  # nothing restored, nothing loaded
    assert not (target / "collections").exists()


def test_bad_object_store_arguments(s3, tmp_path):
    endpoint, _ = s3
    out = subprocess.run([sys.executable, "-m", "akidb", "serve", "--data-dir",
                          str(tmp_path / "x"), "--object-store", "bucket-without-scheme"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "s3://BUCKET" in out.stderr
    empty = subprocess.run([sys.executable, "-m", "akidb", "serve", "--data-dir",
                            str(tmp_path / "y"), "--port", "0", "--s3-endpoint", endpoint,
                            "--restore-from", "s3://akidb/nothing-here"],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, **AWS})
    assert empty.returncode == 1 and "no metadata backup under s3://akidb/nothing-here" in \
        empty.stderr


def test_files_above_16_mib_are_uploaded_in_parts_and_verified(s3, tmp_path):
    from akidb.server.storage.objectstore import MULTIPART_THRESHOLD, ObjectStore, S3Location

    endpoint, bucket = s3
    store = ObjectStore(S3Location.parse("s3://akidb/big"), endpoint)
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(0).bytes(MULTIPART_THRESHOLD + 1024 * 1024))
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1024)
    store.upload(big, "big/big.bin")
    store.upload(small, "big/small.bin")
    # S3 marks a multipart object's ETag with the part count: "<md5 of md5s>-N".
    assert bucket.head_object(Bucket="akidb", Key="big/big.bin")["ETag"].strip('"') \
        .endswith("-2")
    assert "-" not in bucket.head_object(Bucket="akidb", Key="big/small.bin")["ETag"]
    store.download("big/big.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
