"""Prometheus metrics: per-route request counts and latency, index and log sizes, recovery.

Each server owns its registry (not prometheus_client's global one), so several
servers in one test process never collide.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from akidb.server.embeddings.embedder import Embedder, breaker_state_value
from akidb.server.engine import Engine

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class _EmbedderCollector(Collector):
    """Which embedder serves (and on what backend/BLAS), and the remote breaker's state."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self.embedder.status()
        info = GaugeMetricFamily("akidb_embedder_info", "Embedder in use (value 1)",
                                 labels=["kind", "model", "backend", "blas", "loaded"])
        info.add_metric([status.get("kind", ""), self.embedder.model,
                         str(status.get("backend") or ""), str(status.get("blas") or ""),
                         str(status.get("loaded", "")).lower()], 1.0)
        yield info
        state = breaker_state_value(self.embedder)
        if state is not None:
            yield GaugeMetricFamily("akidb_embedder_breaker_state",
                                    "Remote embedder circuit: 0 closed, 1 half-open, 2 open",
                                    value=state)


class _CollectionsCollector(Collector):
    """Per-collection series: their labels name tenants, so only authorized scrapes
    (the scrape token or the admin key) get them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        vectors = GaugeMetricFamily("akidb_collection_vectors", "Live vectors per collection",
                                    labels=["collection"])
        wal = GaugeMetricFamily("akidb_wal_bytes", "Write-ahead log bytes per collection",
                                labels=["collection"])
        for coll in self.engine.collections():
            vectors.add_metric([coll.row.path], coll.count)
            wal.add_metric([coll.row.path], coll.wal.size_bytes())
        yield vectors
        yield wal


class _EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        collections = self.engine.collections()
        yield GaugeMetricFamily("akidb_collections", "Open collections",
                                value=len(collections))
        yield GaugeMetricFamily("akidb_vectors", "Live vectors in all collections",
                                value=sum(c.count for c in collections))
        yield GaugeMetricFamily("akidb_wal_total_bytes", "Write-ahead log bytes, all "
                                "collections", value=sum(c.wal.size_bytes() for c in collections))
        strategies = CounterMetricFamily("akidb_search_strategy", "Vector searches by how "
                                         "they were answered (graph, exact over a filter's "
                                         "matches, oversample, filtered_walk, exact_fallback)",
                                         labels=["strategy"])
        totals: Tally[str] = Tally()
        for c in collections:
            totals.update(c.strategies)
        for name in sorted(totals):
            strategies.add_metric([name], totals[name])
        yield strategies
        repairs = GaugeMetricFamily("akidb_recovery_repairs", "What start-up recovery had to "
                                    "repair (see the log for which collection)", labels=["kind"])
        for kind, count in self.engine.recovery_repairs().items():
            repairs.add_metric([kind], count)
        yield repairs
        yield GaugeMetricFamily("akidb_ready", "1 once recovery has finished",
                                value=1.0 if self.engine.ready else 0.0)
        shipper = self.engine.shipper
        if shipper is not None:
            status = shipper.status()
            yield GaugeMetricFamily("akidb_object_store_backlog_objects",
                                    "Files waiting to be shipped to the object store",
                                    value=status["backlog_objects"])
            yield GaugeMetricFamily("akidb_object_store_backlog_bytes",
                                    "Bytes waiting to be shipped to the object store",
                                    value=status["backlog_bytes"])
            yield GaugeMetricFamily("akidb_object_store_uploaded_bytes",
                                    "Bytes shipped since start", value=status["uploaded_bytes"])
            yield GaugeMetricFamily("akidb_object_store_failing",
                                    "1 while uploads are failing and being retried",
                                    value=1.0 if status["state"] == "retrying" else 0.0)
        if self.engine.recovery_seconds is not None:
            yield GaugeMetricFamily("akidb_recovery_seconds", "Duration of start-up recovery",
                                    value=self.engine.recovery_seconds)


class _HttpCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.stats()
        yield GaugeMetricFamily("akidb_http_connections", "Open REST connections",
                                value=s["open"])
        closed = CounterMetricFamily("akidb_http_connections_closed", "REST connections the "
                                     "server closed: shed past the limit, request too slow "
                                     "to arrive, idle", labels=["reason"])
        for reason in ("shed", "timed_out", "idle_closed"):
            closed.add_metric([reason], s[reason])
        yield closed


class _AuthzCollector(Collector):
    """How authorization decisions were answered (server/auth/decisions.py)."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "akidb_authz_decisions", "Authorization decisions by source: cache (fresh), "
            "evaluated (Cedar within the deadline), stale_cache (past the deadline, answered "
            "from a still-valid decision), timeout (past the deadline, refused with 503)",
            labels=["source"])
        for source, n in sorted(self.counts.items()):
            family.add_metric([source], n)
        yield family


class Metrics:
    def __init__(self, engine: Engine | None, embedder: Embedder | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("akidb_requests", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("akidb_request_seconds", "HTTP request latency",
                                 ["route", "method"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self._children: dict[tuple[str, str, int | str], tuple[Any, Any]] = {}
        self.detail_registry = CollectorRegistry()
        if engine is not None:
            self.registry.register(_EngineCollector(engine))
            self.detail_registry.register(_CollectionsCollector(engine))
        if embedder is not None:
            self.registry.register(_EmbedderCollector(embedder))

    def watch_authz(self, counts: Mapping[str, int]) -> None:
        self.registry.register(_AuthzCollector(counts))

    def watch_http(self, stats: Callable[[], dict[str, int]]) -> None:
        """Report the HTTP server's connection counters (open, shed, timed out)."""
        self.registry.register(_HttpCollector(stats))

    def observe(self, route: str, method: str, status: int | str, seconds: float) -> None:
        # The labelled children are looked up once per (route, method, status): the
        # lookup (a lock and a tuple of label strings) was ~10 us of every request.
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)),
                        self.latency.labels(route, method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self, detail: bool = False) -> bytes:
        """The exposition; ``detail`` adds the per-collection series (tenant names)."""
        out = generate_latest(self.registry)
        return out + generate_latest(self.detail_registry) if detail else out
