"""The shared client: retries for idempotent calls only, typed errors, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from akidb.server.client import Client, RestTransport
from akidb.server.errors import TransportError


class FlakyTransport:
    """Wraps the real transport and drops the first ``failures`` requests on the floor,
    as a reset connection would (fault injection at the transport seam)."""

    def __init__(self, inner: RestTransport, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    def request(self, method, path, body=None, headers=None):
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            raise TransportError(f"{method} {path}: injected connection reset")
        return self.inner.request(method, path, body, headers)

    def close(self) -> None:
        self.inner.close()


def test_idempotent_calls_retry_and_writes_do_not(akidb_cluster, tenant):
    node = akidb_cluster.nodes[0]
    setup = node.admin_client()
    setup.create_collection(f"{tenant}/db/c", dimension=2, metric="l2")
    setup.upsert(f"{tenant}/db/c", [{"id": "a", "vector": [1, 0]}])
    flaky = FlakyTransport(RestTransport(node.rest_url, node.admin_key), failures=2)
    client = Client(node.rest_url, transport=flaky, retries=2, backoff_s=0.001)
    assert client.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["a"]
    assert flaky.calls == 3
    flaky.failures = 1
    with pytest.raises(TransportError):
        client.upsert(f"{tenant}/db/c", [{"id": "b", "vector": [0, 1]}])
    assert setup.get_collection(f"{tenant}/db/c")["count"] == 1  # no silent retry
    flaky.failures = 5
    with pytest.raises(TransportError):
        client.get(f"{tenant}/db/c", "a")


def test_unreachable_server_and_bad_arguments():
    with pytest.raises(TransportError):
        Client("http://127.0.0.1:9", retries=1, backoff_s=0.001).health()
    with pytest.raises(ValueError, match="http://"):
        Client("localhost:8080")
    with pytest.raises(ValueError, match="grpc_target"):
        Client("http://127.0.0.1:1", data_plane="grpc")
    with pytest.raises(ValueError, match="TENANT/DB/COLLECTION"):
        Client("http://127.0.0.1:1").search("just-a-name", np.ones(2))
