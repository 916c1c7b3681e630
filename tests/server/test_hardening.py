"""Hostile and careless input: number ranges, nesting, /metrics, admin keys, bad files."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import numpy as np
import pytest

from akidb.harness import Node, NodeError
from akidb.server.client import Client
from akidb.server.errors import BadRequest
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb
from akidb.server.proto.akidb.v1 import dataplane_pb2_grpc as pb_grpc

HUGE = 2**70


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"n": value}
    return value


def test_out_of_range_integers_in_filters_are_400_in_every_mode(client, tenant):
    coll = f"{tenant}/db/c"
    client.create_collection(coll, dimension=2, metric="l2")
    client.upsert(coll, [{"id": "a", "vector": [1, 0], "text": "hello", "payload": {"n": 1}}])
    for mode, extra in (("vector", {"vector": [1, 0]}), ("text", {"text": "hello"}),
                        ("hybrid", {"vector": [1, 0], "text": "hello"})):
        for flt in ({"n": {"$gt": HUGE}}, {"n": -HUGE}, {"n": {"$in": [1, HUGE]}}):
            body = json.dumps({"k": 1, "mode": mode, "filter": flt, **extra}).encode()
            with pytest.raises(BadRequest, match="64-bit range"):
                client.request("POST", f"/v1/tenants/{tenant}/databases/db/collections/c/search",
                               raw=body)
    assert client.search(coll, [1, 0], k=1, filter={"n": {"$lt": 2**62}}).ids == ["a"]


def test_payloads_too_deep_or_with_huge_integers_are_400_and_change_nothing(client, tenant):
    coll = f"{tenant}/db/c"
    client.create_collection(coll, dimension=2, metric="l2")
    client.upsert(coll, [{"id": "keep", "vector": [1, 0], "payload": _nested(30)}])
    for payload, match in ((_nested(40), "nested deeper than 32"),
                           ({"big": HUGE}, "64-bit range"),
                           ({"list": [[[[1, HUGE]]]]}, "64-bit range")):
        body = json.dumps({"documents": [{"id": "new", "vector": [0.0, 1.0],
                                          "payload": payload}]}).encode()
        with pytest.raises(BadRequest, match=match):
            client.request("POST", f"/v1/tenants/{tenant}/databases/db/collections/c/documents",
                           raw=body)
    assert client.get_collection(coll)["count"] == 1
    assert client.get(coll, "keep")["payload"] == _nested(30)


def test_grpc_payload_nested_1000_deep_is_invalid_argument(akidb_cluster, client, tenant):
    coll = f"{tenant}/db/c"
    client.create_collection(coll, dimension=2, metric="l2")
    node = akidb_cluster.nodes[0]
    channel = grpc.insecure_channel(node.grpc_target)
    stub = pb_grpc.DataPlaneStub(channel)
    deep = "[" * 1000 + "1" + "]" * 1000
    wide_deep = json.dumps(_nested(200))
    for payload_json in (f'{{"a": {deep}}}', wide_deep, f'{{"n": {HUGE}}}'):
        doc = pb.Document(id="x", vector=np.ones(2, "<f4").tobytes(), payload_json=payload_json)
        with pytest.raises(grpc.RpcError) as info:
            stub.Upsert(iter([pb.UpsertRequest(collection=coll, documents=[doc])]),
                        metadata=(("authorization", f"Bearer {node.admin_key}"),))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    channel.close()
    assert client.get_collection(coll)["count"] == 0


def test_metrics_do_not_name_tenants_to_anonymous_scrapers(akidb_cluster, client, tenant):
    coll = f"{tenant}/db/c"
    client.create_collection(coll, dimension=2, metric="l2")
    client.upsert(coll, [{"id": "a", "vector": [1, 0]}])
    anonymous = Client(akidb_cluster.nodes[0].rest_url)
    public = anonymous.metrics()
    assert tenant not in public
    assert "akidb_vectors " in public and "akidb_collections " in public
    detailed = client.metrics()  # the admin key sees per-collection series
    assert f'akidb_collection_vectors{{collection="{coll}"}} 1.0' in detailed


def test_a_scrape_token_gates_the_whole_exposition(tmp_path):
    node = Node(tmp_path / "data", env={"AKIDB_METRICS_TOKEN": "scrape-secret-123"})
    node.start()
    try:
        with node.admin_client() as admin:
            admin.create_collection("secret-tenant/db/c", dimension=2, create_parents=True)
        with pytest.raises(Exception, match="401|Authorization"):
            Client(node.rest_url).metrics()
        scraper = Client(node.rest_url, "scrape-secret-123")
        assert 'collection="secret-tenant/db/c"' in scraper.metrics()
        with pytest.raises(Exception, match="unknown API key"):
            Client(node.rest_url, "wrong-token-wrong").metrics()
    finally:
        node.close()


@pytest.mark.parametrize(("key", "message"), [
    ("x", "needs at least 16"),
    ("  a-perfectly-long-admin-key  ", "whitespace"),
])
def test_unusable_admin_keys_are_refused_at_start_up(tmp_path, key, message):
    node = Node(tmp_path / "data", env={"AKIDB_ADMIN_KEY": key}, ready_timeout=20)
    with pytest.raises(NodeError, match=message):
        node.start()
    node.close()


def test_a_corrupt_metadata_db_stops_start_up_with_a_clear_message(tmp_path):
    node = Node(tmp_path / "data")
    node.start()
    node.stop()
    (node.data_dir / "metadata.db").write_bytes(b"this is not a database" * 100)
    for extra in node.data_dir.glob("metadata.db-*"):
        extra.unlink()
    with pytest.raises(NodeError) as info:
        node.start()
    text = str(info.value)
    assert "metadata.db cannot be read as a SQLite database" in text
    assert "--rebuild-metadata" in text and "Traceback" not in text
    node.close()


def _akidb(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "akidb", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_import_of_a_non_utf8_csv_exits_2_naming_the_line(akidb_cluster, client, tenant,
                                                         tmp_path):
    coll = f"{tenant}/db/c"
    client.create_collection(coll, dimension=2, metric="l2")
    path = tmp_path / "latin1.csv"
    path.write_bytes(b'id,vector,note\n1,"[1,2]",ok\n2,"[1,3]",caf\xe9\n')
    node = akidb_cluster.nodes[0]
    done = _akidb("import", str(path), "--collection", coll, "--url", node.rest_url,
                  "--api-key", node.admin_key, "--no-progress", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "line 3: not UTF-8 (byte 0xe9" in done.stderr and "Traceback" not in done.stderr
    assert client.get_collection(coll)["count"] == 0


def test_import_with_a_repeated_id_keeps_the_later_row(akidb_cluster, client, tenant,
                                                      tmp_path):
    coll = f"{tenant}/db/c"
    client.create_collection(coll, dimension=2, metric="l2")
    path = tmp_path / "dup.csv"
    path.write_text('id,vector\na,"[1,2]"\nb,"[5,5]"\na,"[3,4]"\n')
    node = akidb_cluster.nodes[0]
    done = _akidb("import", str(path), "--collection", coll, "--url", node.rest_url,
                  "--api-key", node.admin_key, "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 rows repeated an earlier id" in done.stdout
    assert client.get(coll, "a")["vector"] == [3.0, 4.0]
    assert client.get_collection(coll)["count"] == 2
