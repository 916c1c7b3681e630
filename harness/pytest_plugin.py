"""pytest plugin (entry point ``pytest11``): ``akidb_cluster`` and ``akidb_client`` fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.cluster import Cluster
from server.client import Client


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("akidb")
    group.addoption("--akidb-nodes", type=int, default=1,
                    help="server processes in the akidb_cluster fixture (default 1)")
    group.addoption("--akidb-fsync", default="always", choices=("always", "batch", "none"),
                    help="WAL fsync policy of fixture servers (default always)")


@pytest.fixture(scope="session")
def akidb_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A running cluster shared by the session; stopped and removed at the end."""
    with Cluster(nodes=request.config.getoption("--akidb-nodes"),
                 fsync=request.config.getoption("--akidb-fsync")) as cluster:
        yield cluster


@pytest.fixture
def akidb_client(akidb_cluster: Cluster) -> Iterator[Client]:
    """An admin client of the first node."""
    client = akidb_cluster.admin_client()
    try:
        yield client
    finally:
        client.close()
