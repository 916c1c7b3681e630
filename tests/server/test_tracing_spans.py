"""The spans each step records, in-process, with an in-memory exporter: names and
attributes are what dashboards and trace queries select on."""

from __future__ import annotations

import json

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from akidb.server import tracing
from akidb.server.query import filters
from akidb.server.query.plan import Query

from .collections import open_collection


@pytest.fixture
def spans(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "ENABLED", True)
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    return exporter


def _named(exporter: InMemorySpanExporter) -> dict[str, dict]:
    return {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}


def test_writes_and_searches_record_their_steps(tmp_path, spans):
    coll = open_collection(tmp_path, dim=4, fsync="batch")
    coll.upsert(["a", "b"], np.eye(2, 4, dtype=np.float32), [None, None],
                [json.dumps({"n": 1}), "{}"])
    seen = _named(spans)
    assert seen["wal.append"] == {"akidb.documents": 2}
    assert seen["index.insert"] == {"akidb.documents": 2}
    assert seen["sqlite.apply"] == {"akidb.seq": 1}
    assert "wal.fsync_wait" in seen
    spans.clear()
    coll.search(Query("vector", 1, np.ones(4, np.float32), filter=filters.parse({"n": 1})))
    assert _named(spans)["index.search"] == {"akidb.mode": "vector", "akidb.k": 1,
                                             "akidb.filtered": True}
    spans.clear()
    coll.delete(["b"])
    assert _named(spans)["wal.append"] == {"akidb.documents": 1}
    coll.close()
    coll.store.close()


def test_authorization_records_the_action_and_resource(tmp_path, spans):
    from akidb.server.auth.guard import Guard
    from akidb.server.auth.keys import ADMIN, KeyAuthenticator
    from akidb.server.storage.metadata import MetadataStore

    store = MetadataStore(tmp_path / "m.db")
    store.create_tenant("acme", {})
    guard = Guard(store, KeyAuthenticator("admin-key-for-span-tests-0123456", store))
    guard.authorize(ADMIN, "search", "acme", "db", "c")
    assert _named(spans)["authorize"] == {"akidb.action": "search",
                                          "akidb.resource": "acme/db/c"}
    store.close()


def test_off_means_no_span_and_no_trace_id(monkeypatch):
    monkeypatch.setattr(tracing, "ENABLED", False)
    with tracing.span("anything", x=1) as inside:
        assert inside is None
    assert tracing.trace_id() is None
