"""``Cluster(nodes=N)``: N independent server processes, started and torn down together."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from akidb.harness.embed_service import EmbedService
from akidb.harness.node import Node
from akidb.server.client import Client


class Cluster:
    def __init__(self, nodes: int = 1, *, base_dir: str | Path | None = None,
                 fsync: str = "always", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, ready_timeout: float = 30.0,
                 detach: bool = False, fault_proxy: bool = False,
                 embed_service: bool = False, embed_backend: str = "auto") -> None:
        """``fault_proxy``: put a Toxiproxy-API proxy in front of each node's REST and
        gRPC ports; ``node.proxy`` / ``node.grpc_proxy`` are then toxiproxy-python
        proxies, ``node.proxy_url`` / ``node.grpc_proxy_target`` the addresses to send
        traffic through (they follow the node across restarts). ``embed_service``: run
        the embedding model as its own process (``cluster.embed_service``) that every
        node calls over gRPC, instead of in each node."""
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        self._owns_dir = base_dir is None
        self._fault_proxy = fault_proxy
        self.toxiproxy_endpoint = None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="akidb-"))
        self.embed_service: EmbedService | None = None
        if embed_service:
            self.embed_service = EmbedService(self.base_dir / "embed", backend=embed_backend,
                                              env=env, ready_timeout=ready_timeout,
                                              detach=detach)
        self.nodes = [
            Node(self.base_dir / f"node{i}", name=f"node{i}", fsync=fsync,
                 extra_args=extra_args, env=env, ready_timeout=ready_timeout, detach=detach)
            for i in range(nodes)
        ]

    def start(self) -> Cluster:
        try:
            if self.embed_service is not None:
                self.embed_service.start()
                for node in self.nodes:
                    node.extra_args += ["--embedder", self.embed_service.target]
            for node in self.nodes:
                node.start(wait=False)
            for node in self.nodes:
                node.wait_ready()
            if self._fault_proxy:
                from akidb.chaos.endpoint import ToxiproxyEndpoint

                self.toxiproxy_endpoint = ToxiproxyEndpoint().start()
                api = self.toxiproxy_endpoint.toxiproxy()
                for node in self.nodes:
                    node.proxy_api = self.toxiproxy_endpoint.url
                    node.proxy = api.create(upstream=node.rest_url.removeprefix("http://"),
                                            name=f"{node.name}-rest")
                    if node.grpc_target:
                        node.grpc_proxy = api.create(upstream=node.grpc_target,
                                                     name=f"{node.name}-grpc")
        except BaseException:
            self.close()
            raise
        return self

    def admin_client(self, index: int = 0, **kwargs: Any) -> Client:
        return self.nodes[index].admin_client(**kwargs)

    def close(self, keep_data: bool = False) -> None:
        """Stop every node; remove the base dir if we created it (unless ``keep_data``)."""
        if self.toxiproxy_endpoint is not None:
            self.toxiproxy_endpoint.close()
            self.toxiproxy_endpoint = None
        for node in [*self.nodes, *([self.embed_service] if self.embed_service else [])]:
            node._owns_dir = node._owns_dir and not keep_data
            node.close()
        if self._owns_dir and not keep_data:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
