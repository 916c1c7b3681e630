"""OpenTelemetry tracing, switched on only by the standard OTEL_* variables: a request
with a W3C traceparent (REST header, gRPC metadata, or the client's own active span)
gets a server span under the caller's, with child spans for the steps it took."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import requests

from akidb.harness import Node
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb
from akidb.server.proto.akidb.v1 import dataplane_pb2_grpc as pb_grpc

DIM = 4
COLL = "t/db/c"
PATH = "/v1/tenants/t/databases/db/collections"


@pytest.fixture(scope="module")
def traced(tmp_path_factory, request):
    if request.config.getoption("--akidb-url"):
        pytest.skip("reads the server's own output: needs a server this run starts")
    node = Node(tmp_path_factory.mktemp("traced"), env={
        "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "akidb-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50"})  # spans are exported in batches; soon, here
    node.start()
    with node.admin_client() as admin:
        admin.create_collection(COLL, dimension=DIM, create_parents=True)
    yield node
    node.close()


def _spans(node: Node, trace_id: str, want: set[str], timeout: float = 10) -> list[dict]:
    """The spans of one trace in the server's output, once every wanted name is there."""
    deadline = time.monotonic() + timeout
    while True:
        spans = []
        for line in node.log_path.read_text(errors="replace").splitlines():
            if '"trace_id"' not in line:
                continue
            try:
                span = json.loads(line)
            except ValueError:
                continue
            if span.get("context", {}).get("trace_id") == f"0x{trace_id}":
                spans.append(span)
        # Batched export: children end (and may be written) before their request span.
        complete = any(s["kind"] == "SpanKind.SERVER" for s in spans)
        if (complete and want <= {s["name"] for s in spans}) or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


def _post(node: Node, path: str, body: dict, traceparent: str,
          timeout: float = 10) -> requests.Response:
    return requests.post(f"{node.rest_url}{path}", json=body, timeout=timeout,
                         headers={"Authorization": f"Bearer {node.admin_key}",
                                  "traceparent": traceparent})


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent, f"00-{trace_id}-{parent}-01"


def _tree(spans: list[dict]) -> tuple[dict, dict[str, list[str]]]:
    by_id = {s["context"]["span_id"]: s for s in spans}
    (root,) = [s for s in spans if s.get("parent_id") not in by_id]
    children: dict[str, list[str]] = {}
    for s in spans:
        if s is not root:
            children.setdefault(by_id[s["parent_id"]]["name"], []).append(s["name"])
    return root, children


def test_rest_search_with_traceparent_has_a_server_span_and_children(traced):
    trace_id, parent, header = _traceparent()
    r = _post(traced, f"{PATH}/c/search", {"vector": [1, 0, 0, 0], "k": 1}, header)
    assert r.status_code == 200, r.text
    assert r.headers["X-Request-Id"] == trace_id  # logs and traces join on it
    spans = _spans(traced, trace_id, {"authorize", "index.search"})
    root, children = _tree(spans)
    assert root["parent_id"] == f"0x{parent}"  # under the caller's span
    assert root["kind"] == "SpanKind.SERVER"
    assert root["name"] == "POST /v1/tenants/<tenant>/databases/<database>/collections/" \
        "<collection>/search"
    assert root["attributes"]["http.response.status_code"] == 200
    assert root["resource"]["attributes"]["service.name"] == "akidb-test"
    assert {"authorize", "index.search"} <= set(children[root["name"]])


def test_rest_upsert_shows_wal_sqlite_index_and_fsync_spans(traced):
    trace_id, _, header = _traceparent()
    r = _post(traced, f"{PATH}/c/documents",
              {"documents": [{"id": "a", "vector": [1, 2, 3, 4]}]}, header)
    assert r.status_code == 200, r.text
    want = {"authorize", "wal.append", "sqlite.apply", "index.insert", "wal.fsync_wait"}
    root, children = _tree(_spans(traced, trace_id, want))
    assert want <= set(children[root["name"]])


def test_grpc_metadata_traceparent_is_the_parent(traced):
    trace_id, parent, header = _traceparent()
    with grpc.insecure_channel(traced.grpc_target) as channel:
        stub = pb_grpc.DataPlaneStub(channel)
        stub.Search(pb.SearchRequest(collection=COLL, k=1,
                                     vector=np.ones(DIM, "<f4").tobytes()),
                    metadata=(("authorization", f"Bearer {traced.admin_key}"),
                              ("traceparent", header)), timeout=10)
    root, children = _tree(_spans(traced, trace_id, {"index.search"}))
    assert root["name"] == "/akidb.v1.DataPlane/Search" and root["parent_id"] == f"0x{parent}"
    assert root["attributes"]["rpc.grpc.status"] == "OK"
    assert "index.search" in children[root["name"]]


@pytest.mark.parametrize("data_plane", ["rest", "grpc"])
def test_the_client_propagates_its_active_span(traced, data_plane):
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("test-client")
    with traced.admin_client(data_plane=data_plane) as client, \
            tracer.start_as_current_span("client-operation") as mine:
        client.search(COLL, np.ones(DIM), k=1)
        trace_id = format(mine.get_span_context().trace_id, "032x")
        span_id = format(mine.get_span_context().span_id, "016x")
    root, _ = _tree(_spans(traced, trace_id, {"index.search"}))
    assert root["parent_id"] == f"0x{span_id}"


def test_tracing_is_off_by_default(node):
    with node.admin_client() as client:
        client.create_collection(COLL, dimension=DIM, create_parents=True)
        client.search(COLL, np.ones(DIM), k=1)
    r = requests.get(f"{node.rest_url}/health", timeout=10,
                     headers={"traceparent": _traceparent()[2]})
    assert re.fullmatch(r"[0-9a-f]{16}", r.headers["X-Request-Id"])  # not a trace id
    assert '"trace_id"' not in node.log_path.read_text()


def test_an_unknown_exporter_is_a_usage_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "akidb", "serve", "--data-dir",
                          str(tmp_path), "--port", "0"], capture_output=True, text=True,
                         timeout=60, env={**__import__("os").environ,
                                          "OTEL_TRACES_EXPORTER": "zipkin"})
    assert out.returncode == 2 and "OTEL_TRACES_EXPORTER: unknown exporter 'zipkin'" in \
        out.stderr


def test_embedding_has_its_span(traced):
    trace_id, _, header = _traceparent()
    r = _post(traced, "/v1/embed", {"texts": ["a traced sentence"]}, header, timeout=120)
    assert r.status_code == 200, r.text
    root, children = _tree(_spans(traced, trace_id, {"embed"}))
    assert "embed" in children[root["name"]]


def test_a_failed_requests_log_line_carries_the_trace_id(traced):
    trace_id, _, header = _traceparent()
    r = _post(traced, f"{PATH}/nope/search", {"vector": [1, 0, 0, 0], "k": 1}, header)
    assert r.status_code == 404
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in traced.log_path.read_text().splitlines()
                 if '"request failed"' in line]
        mine = [line for line in lines if line.get("request_id") == trace_id]
        if mine or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mine and mine[0]["status"] == 404 and mine[0]["level"] == "info"
    root, _ = _tree(_spans(traced, trace_id, set()))
    assert root["attributes"]["http.response.status_code"] == 404
