"""pytest plugin (entry point ``pytest11``): ``akidb_cluster`` and ``akidb_client``.

Options: ``--akidb-nodes N``, ``--akidb-fsync``, ``--akidb-scope
session|module|function`` (how widely one cluster is shared), ``--akidb-keep-failed``
(keep the data dirs and logs of clusters whose tests failed) and ``--akidb-url`` /
``--akidb-api-key`` to test a server that is already running instead of starting one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from akidb.harness.cluster import Cluster
from akidb.server.client import Client

_FAILED = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("akidb")
    group.addoption("--akidb-nodes", type=int, default=1,
                    help="server processes in the akidb_cluster fixture (default 1)")
    group.addoption("--akidb-fsync", default="always", choices=("always", "batch", "none"),
                    help="WAL fsync policy of fixture servers (default always)")
    group.addoption("--akidb-scope", default="session",
                    choices=("session", "package", "module", "class", "function"),
                    help="scope of the akidb_cluster fixture (default session)")
    group.addoption("--akidb-keep-failed", action="store_true",
                    help="keep data dirs and logs of clusters used by failed tests")
    group.addoption("--akidb-fault-proxy", action="store_true",
                    help="put a Toxiproxy-API proxy in front of each node (node.proxy)")
    group.addoption("--akidb-url", default=None,
                    help="use this running server instead of starting one")
    group.addoption("--akidb-api-key", default=None, help="API key for --akidb-url")


def _scope(fixture_name: str, config: pytest.Config) -> str:
    return config.getoption("--akidb-scope")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]
                              ) -> Iterator[None]:
    report = yield
    if report.failed and "akidb_cluster" in getattr(item, "fixturenames", ()):
        item.config.stash[_FAILED] = True
    return report


class ExternalNode:
    """A server this session did not start: usable, but not to be killed or restarted."""

    def __init__(self, rest_url: str, api_key: str | None) -> None:
        self.rest_url = rest_url
        self.api_key = api_key
        self.grpc_target = None

    def admin_client(self, **kwargs: Any) -> Client:
        return Client(self.rest_url, self.api_key, **kwargs)

    @property
    def admin_key(self) -> str | None:
        return self.api_key

    def _not_here(self, what: str) -> Any:
        pytest.skip(f"{what} needs a server this run starts; --akidb-url points at one "
                    "it did not")

    def kill(self) -> None:
        self._not_here("kill()")

    def stop(self, *args: Any, **kwargs: Any) -> None:
        self._not_here("stop()")

    def start(self, *args: Any, **kwargs: Any) -> None:
        self._not_here("start()")

    def restart(self, *args: Any, **kwargs: Any) -> None:
        self._not_here("restart()")

    def pause(self) -> None:
        self._not_here("pause()")

    def resume(self) -> None:
        self._not_here("resume()")

    @property
    def proxy_url(self) -> str:
        return self._not_here("a fault proxy")

    @property
    def data_dir(self) -> Any:
        return self._not_here("the data dir")


class ExternalCluster:
    def __init__(self, rest_url: str, api_key: str | None) -> None:
        self.nodes = [ExternalNode(rest_url, api_key)]

    def admin_client(self, index: int = 0, **kwargs: Any) -> Client:
        return self.nodes[index].admin_client(**kwargs)


@pytest.fixture(scope=_scope)
def akidb_cluster(request: pytest.FixtureRequest) -> Iterator[Cluster | ExternalCluster]:
    """Running server processes, stopped and removed when the scope ends."""
    config = request.config
    if config.getoption("--akidb-url"):
        yield ExternalCluster(config.getoption("--akidb-url"), config.getoption("--akidb-api-key"))
        return
    config.stash[_FAILED] = False
    cluster = Cluster(nodes=config.getoption("--akidb-nodes"),
                      fsync=config.getoption("--akidb-fsync"),
                      fault_proxy=config.getoption("--akidb-fault-proxy"))
    cluster.start()
    try:
        yield cluster
    finally:
        keep = config.getoption("--akidb-keep-failed") and config.stash.get(_FAILED, False)
        cluster.close(keep_data=keep)
        if keep:
            print(f"\nakidb: kept data and logs of a failed test's cluster in {cluster.base_dir}")


@pytest.fixture
def akidb_client(akidb_cluster: Cluster | ExternalCluster) -> Iterator[Client]:
    """An admin client of the first node, closed after the test."""
    client = akidb_cluster.admin_client()
    try:
        yield client
    finally:
        client.close()
