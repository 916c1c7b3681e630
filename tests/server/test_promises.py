"""Behaviours the README promises that had no test of their own."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

from akidb.harness import Node
from akidb.server.client import Client
from akidb.server.errors import BadRequest, QuotaExceeded
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb
from akidb.server.proto.akidb.v1 import dataplane_pb2_grpc as pb_grpc


def _rate_limited_user(client: Client, tenant: str) -> str:
    client.request("DELETE", f"/v1/tenants/{tenant}")
    client.create_tenant(tenant, quotas={"requests_per_second": 0.2, "burst": 1})
    client.create_database(tenant, "db")
    client.create_collection(f"{tenant}/db/c", dimension=2, metric="l2")
    return client.create_user(tenant, "u", "developer")["api_key"]


def test_429_carries_retry_after(client, tenant, akidb_cluster):
    key = _rate_limited_user(client, tenant)
    url = (f"{akidb_cluster.nodes[0].rest_url}/v1/tenants/{tenant}/databases/db/"
           "collections/c")
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    urllib.request.urlopen(request, timeout=10).read()  # the burst of 1
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 429
    assert int(info.value.headers["Retry-After"]) >= 1  # a whole second, rounded up
    body = json.loads(info.value.read())
    assert body["error"]["code"] == "quota_exceeded"


def test_grpc_quota_is_resource_exhausted_with_the_error_code_trailer(client, tenant,
                                                                      akidb_cluster):
    key = _rate_limited_user(client, tenant)
    node = akidb_cluster.nodes[0]
    channel = grpc.insecure_channel(node.grpc_target)
    stub = pb_grpc.DataPlaneStub(channel)
    request = pb.SearchRequest(collection=f"{tenant}/db/c", k=1,
                               vector=np.ones(2, "<f4").tobytes())
    metadata = (("authorization", f"Bearer {key}"),)
    stub.Search(request, metadata=metadata)
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(request, metadata=metadata)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(info.value.trailing_metadata())["akidb-error-code"] == "quota_exceeded"
    channel.close()
    over_grpc = Client(node.rest_url, key, node.grpc_target, data_plane="grpc", retries=0)
    with pytest.raises(QuotaExceeded):  # the client turns it back into the typed error
        over_grpc.search(f"{tenant}/db/c", [1, 0], k=1)
    over_grpc.close()


def test_admin_key_file_is_private_and_the_environment_overrides_it(tmp_path):
    node = Node(tmp_path / "data")
    node.start()
    key_file = node.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    generated = key_file.read_text().strip()
    node.stop()
    override = "an-override-admin-key-0123456789"
    node.env = {"AKIDB_ADMIN_KEY": override}
    node.start()
    assert Client(node.rest_url, override).list_tenants() == []
    with pytest.raises(Exception, match="unknown API key"):
        Client(node.rest_url, generated).list_tenants()
    assert key_file.read_text().strip() == generated  # the file is left as it was
    node.close()


def test_flags_win_over_akidb_environment_variables(tmp_path):
    node = Node(tmp_path / "data", fsync="always", env={"AKIDB_FSYNC": "none",
                                                        "AKIDB_THREADS": "3"})
    node.start()
    listening = [json.loads(line) for line in node.log_tail(100).splitlines()
                 if '"msg": "listening"' in line]
    assert listening and listening[-1]["fsync"] == "always"  # --fsync always beats the env
    node.close()
    node = Node(tmp_path / "data2", env={"AKIDB_FSYNC": "none"})
    node.fsync = "none"
    node.start()
    listening = [json.loads(line) for line in node.log_tail(100).splitlines()
                 if '"msg": "listening"' in line]
    assert listening[-1]["fsync"] == "none"
    node.close()


def test_ids_up_to_256_characters_and_no_longer(client, tenant):
    coll = f"{tenant}/db/c"
    client.create_collection(coll, dimension=2, metric="l2")
    client.upsert(coll, [{"id": "x" * 256, "vector": [1, 0]}])
    assert client.get(coll, "x" * 256)["id"] == "x" * 256
    with pytest.raises(BadRequest, match="1-256 characters"):
        client.upsert(coll, [{"id": "y" * 257, "vector": [1, 0]}])
    with pytest.raises(BadRequest, match="no '/'"):
        client.upsert(coll, [{"id": "a/b", "vector": [1, 0]}])
    assert client.get_collection(coll)["count"] == 1
