"""Fixtures of the project's own tests, on top of its pytest plugin (akidb.harness).

The plugin's ``akidb_cluster`` (session-scoped by default) is the one shared server
of the API tests, and ``akidb_client`` its admin client; ``--akidb-url`` points the
whole suite at an external server instead. What the plugin does not offer: a fresh
tenant per test, and a dedicated node on its own data dir for tests that kill it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from akidb.harness import Node
from akidb.server.client import Client


@pytest.fixture
def tenant(akidb_client: Client) -> Iterator[str]:
    """A fresh tenant with database ``db`` for one test; deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    akidb_client.create_tenant(name)
    akidb_client.create_database(name, "db")
    yield name
    akidb_client.delete_tenant(name)


@pytest.fixture
def node(tmp_path, request) -> Iterator[Node]:
    """A dedicated server on its own data dir, for tests that kill or restart it."""
    if request.config.getoption("--akidb-url"):
        pytest.skip("kills or restarts its server: needs a server this run starts, not "
                    "--akidb-url")
    n = Node(tmp_path / "data", fsync="always")
    n.start()
    yield n
    n.close()


@pytest.fixture
def client(akidb_client: Client) -> Client:
    """The plugin's admin client, under the short name the API tests use."""
    return akidb_client
