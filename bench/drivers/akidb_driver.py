"""AkiDB through its Python client: REST or gRPC, a server the harness starts or one
given as ``target`` (with ``api_key``)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from akidb.bench.drivers import DriverError, Filter, IndexParams, label_rows
from akidb.bench.environment import rss_bytes
from akidb.bench.traces import TRACE_ENV, read_spans, slowest
from akidb.harness import Node
from akidb.server.client import Client

_OPS = {"eq": "$eq", "gte": "$gte", "lt": "$lt"}


class AkiDBDriver:
    name = "akidb"
    capabilities = frozenset({"filter", "batch_search", "memory", "rest", "grpc", "ef"})

    def __init__(self, target: str | None = None, api_key: str | None = None,
                 grpc_target: str | None = None, transport: str = "rest",
                 node_args: list[str] | None = None, traces: bool = False,
                 collection: str | None = None,
                 quotas: dict[str, Any] | None = None) -> None:
        """``traces``: the self-started server records its spans (console exporter) for
        ``slowest_traces``. ``collection``: attach to one that exists (a load client).
        ``quotas``: the bench tenant's quotas (e.g. ``max_vectors``, for ``capacity``)."""
        if transport not in ("rest", "grpc"):
            raise DriverError(f"akidb transport must be rest or grpc, got {transport!r}")
        if traces and target is not None:
            raise DriverError("--traces reads the spans of a server the run starts; with "
                              "--target, point that server's OTEL_* settings at a collector")
        self.node: Node | None = None
        self.traces = traces
        self._spans: list[dict[str, Any]] = []
        if target is None:
            self.node = Node(name="bench-akidb", fsync="batch", extra_args=node_args,
                             env=dict(TRACE_ENV) if traces else None)
            self.node.start()
            target, api_key, grpc_target = (self.node.rest_url, self.node.admin_key,
                                            self.node.grpc_target)
        elif transport == "grpc" and not grpc_target:
            raise DriverError("akidb over gRPC with --target needs --grpc-target HOST:PORT")
        self.name = f"akidb-{transport}"
        self.transport = transport
        self.target, self.api_key, self.grpc_target = target, api_key, grpc_target
        self.client = Client(target, api_key, grpc_target, timeout=600, data_plane=transport)
        self.collection = collection or f"bench-{uuid.uuid4().hex[:8]}/db/c"
        self.quotas = quotas

    def attach_options(self) -> dict[str, Any] | None:
        return {"driver": "akidb", "options": {
            "target": self.target, "api_key": self.api_key, "grpc_target": self.grpc_target,
            "transport": self.transport, "collection": self.collection}}

    def load_request(self, queries: np.ndarray, k: int, ef: int | None) -> Any:
        """Searches for (up to 100 of) ``queries`` as pre-encoded HTTP requests sent in
        turn (REST only): the leanest load client."""
        if self.transport != "rest":
            return None
        import orjson

        from akidb.bench.loadgen import Request

        t, d, c = self.collection.split("/")
        bodies = [orjson.dumps({"vector": v, "k": k, **({"ef": ef} if ef else {})},
                               option=orjson.OPT_SERIALIZE_NUMPY) for v in queries[:100]]
        return Request(self.target, "POST",
                       f"/v1/tenants/{t}/databases/{d}/collections/{c}/search", bodies[0],
                       dict(self.client.transport.headers), tuple(bodies[1:]))

    def create(self, dimension: int, params: IndexParams) -> None:
        if self.quotas:
            self.client.create_tenant(self.collection.split("/")[0], self.quotas)
        self.client.create_collection(self.collection, dimension=dimension,
                                      metric=params.metric, create_parents=True,
                                      hnsw={"m": params.m,
                                            "ef_construction": params.ef_construction,
                                            "ef_search": params.ef_search})

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        self.client.upsert_arrays(self.collection, list(ids), vectors,
                                  label_rows(labels, len(ids)))

    def wait_indexed(self, count: int) -> None:
        # an acknowledged upsert is searchable: nothing to wait for but the count
        got = self.count()
        if got != count:
            raise DriverError(f"akidb holds {got} documents after inserting {count}")

    def _filter(self, flt: Filter | None) -> dict[str, Any] | None:
        return None if flt is None else {flt.field: {_OPS[flt.op]: flt.value}}

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        return self.client.search(self.collection, vector, k=k, ef=ef,
                                  filter=self._filter(flt)).ids

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        searches = [{"vector": v, "k": k, **({"ef": ef} if ef else {})} for v in vectors]
        return [r.ids for r in self.client.search_batch(self.collection, searches)]

    def count(self) -> int:
        return int(self.client.get_collection(self.collection)["count"])

    def slowest_traces(self, n: int) -> list[dict[str, Any]]:
        """The ``n`` slowest requests the self-started server traced (see bench.traces);
        read at ``close``, when the server has stopped and flushed every span."""
        return slowest(self._spans, n)

    def memory_bytes(self) -> int | None:
        return rss_bytes(self.node.pid) if self.node and self.node.pid else None

    def drop(self) -> None:
        self.client.delete_tenant(self.collection.split("/")[0])

    def close(self) -> None:
        self.client.close()
        if self.node is not None:
            if self.traces:
                self.node.stop()  # a graceful stop flushes the batched spans
                self._spans = read_spans(self.node.log_path)
            self.node.close()
