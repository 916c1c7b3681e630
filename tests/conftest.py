"""Shared fixtures: real server processes (via the harness) on free loopback ports."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from akidb.harness import Cluster, Node
from akidb.server.client import Client


@pytest.fixture(scope="session")
def shared_cluster() -> Iterator[Cluster]:
    """One server for the API tests of the whole session (each test uses its own tenant)."""
    with Cluster(nodes=1) as cluster:
        yield cluster


@pytest.fixture
def client(shared_cluster: Cluster) -> Iterator[Client]:
    c = shared_cluster.admin_client()
    yield c
    c.close()


@pytest.fixture
def tenant(client: Client) -> Iterator[str]:
    """A fresh tenant with database ``db`` for one test; deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    client.create_tenant(name)
    client.create_database(name, "db")
    yield name
    client.delete_tenant(name)


@pytest.fixture
def node(tmp_path) -> Iterator[Node]:
    """A dedicated server on its own data dir, for tests that kill or restart it."""
    n = Node(tmp_path / "data", fsync="always")
    n.start()
    yield n
    n.close()
