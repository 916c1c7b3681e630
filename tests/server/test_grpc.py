"""The gRPC data plane: generated code, parity with REST, bad input, cut-off streams."""

from __future__ import annotations

import filecmp
import re
import threading
import time

import grpc
import numpy as np
import pytest

from akidb.server.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    Unprocessable,
)
from akidb.server.proto import generate
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb
from akidb.server.proto.akidb.v1 import dataplane_pb2_grpc as pb_grpc

DIM = 8


def test_generated_code_is_up_to_date(tmp_path):
    fresh = generate.generate(tmp_path)
    committed = generate.HERE / "akidb" / "v1"
    for name in ("dataplane_pb2.py", "dataplane_pb2.pyi", "dataplane_pb2_grpc.py"):
        assert filecmp.cmp(fresh / name, committed / name, shallow=False), \
            f"{name} is stale: run python -m akidb.server.proto.generate"


@pytest.fixture
def clients(akidb_cluster):
    node = akidb_cluster.nodes[0]
    rest = node.admin_client()
    grpc_client = node.admin_client(data_plane="grpc")
    yield rest, grpc_client
    rest.close()
    grpc_client.close()


def _ops(client, path):
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((60, DIM)).astype(np.float32)
    client.upsert_arrays(path, [f"d{i}" for i in range(30)], vecs[:30],
                         payloads=[{"i": i, "odd": bool(i % 2)} for i in range(30)],
                         texts=[f"text number {i}" for i in range(30)])
    client.upsert_stream(path, [([f"d{i}" for i in range(30, 45)], vecs[30:45], None, None),
                                ([f"d{i}" for i in range(45, 60)], vecs[45:60], None, None)])
    # A vector of its own: an exact tie with another document would make the order of
    # the two depend on the graph walk rather than on the transport.
    client.upsert(path, [{"id": "d3", "vector": vecs[59] + 0.5, "payload": {"moved": 1}}])
    client.delete(path, "d7")
    return vecs


def _state(client, path, vecs):
    docs = {}
    for i in range(60):
        try:
            docs[f"d{i}"] = client.get(path, f"d{i}")
        except NotFound:
            docs[f"d{i}"] = None
    searches = [client.search(path, q, k=5, include=["payload"]) for q in vecs[:10]]
    searches += [client.search(path, q, k=5, include=["payload", "text", "vector"])
                 for q in vecs[28:32]]  # documents with and without text
    filtered = [client.search(path, q, k=5, filter={"odd": True}) for q in vecs[:5]]
    text = client.search(path, vecs[0], text="number 12", k=5, mode="hybrid")
    return docs, searches, filtered, text


def test_rest_and_grpc_give_identical_state_and_results(clients, tenant):
    rest, over_grpc = clients
    rest.create_collection(f"{tenant}/db/r", dimension=DIM, metric="cosine")
    rest.create_collection(f"{tenant}/db/g", dimension=DIM, metric="cosine")
    vecs = _ops(rest, f"{tenant}/db/r")
    _ops(over_grpc, f"{tenant}/db/g")
    r_docs, r_search, r_filtered, r_text = _state(rest, f"{tenant}/db/r", vecs)
    g_docs, g_search, g_filtered, g_text = _state(over_grpc, f"{tenant}/db/g", vecs)
    assert any(h.text for h in r_search[-1].hits) and r_search[-1].hits[0].vector
    assert r_docs == g_docs and r_docs["d7"] is None and r_docs["d3"]["payload"] == {"moved": 1}
    for a, b in zip(r_search + r_filtered + [r_text], g_search + g_filtered + [g_text],
                    strict=True):
        assert a.ids == b.ids
        assert [h.payload for h in a.hits] == [h.payload for h in b.hits]
        assert [h.text for h in a.hits] == [h.text for h in b.hits]
        assert [h.vector is None for h in a.hits] == [h.vector is None for h in b.hits]
        for x, y in zip(a.hits, b.hits, strict=True):
            if x.vector is not None:
                assert np.allclose(x.vector, y.vector, atol=1e-6)
        assert np.allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-6)
    assert rest.get_collection(f"{tenant}/db/r")["count"] == 59
    assert rest.get_collection(f"{tenant}/db/g")["count"] == 59


def test_bad_input_over_grpc_gets_status_codes_and_changes_nothing(clients, tenant):
    rest, over_grpc = clients
    path = f"{tenant}/db/bad"
    rest.create_collection(path, dimension=DIM, metric="l2")
    rest.upsert(path, [{"id": "keep", "vector": np.ones(DIM), "payload": {"a": 1}}])
    before = rest.get(path, "keep")
    cases = [
        (lambda: over_grpc.upsert_arrays(path, ["x"], np.ones((1, DIM + 1))), Unprocessable,
         "dimension"),
        (lambda: over_grpc.upsert_arrays(path, ["x"], np.full((1, DIM), np.nan)), Unprocessable,
         "NaN"),
        (lambda: over_grpc.upsert(path, [{"id": "x"}]), Unprocessable, "no vector"),
        (lambda: over_grpc.upsert_arrays(f"{tenant}/db/nope", ["x"], np.ones((1, DIM))),
         NotFound, "not found"),
        (lambda: over_grpc.search(path, np.ones(DIM), filter={"a": {"$regex": 1}}), BadRequest,
         "unknown operator"),
        (lambda: over_grpc.search(path, np.ones(DIM + 2)), Unprocessable, "dimension"),
        (lambda: over_grpc.upsert_arrays(path, ["big"], np.ones((1, 17_000_000))),
         PayloadTooLarge, ""),
    ]
    for call, error, fragment in cases:
        with pytest.raises(error) as info:
            call()
        assert fragment in str(info.value)
    assert rest.get(path, "keep") == before
    assert rest.get_collection(path)["count"] == 1
    channel = grpc.insecure_channel(over_grpc.grpc_target)
    stub = pb_grpc.DataPlaneStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(pb.SearchRequest(collection=path, vector=np.ones(DIM, "<f4").tobytes()),
                    metadata=(("authorization", "Bearer wrong"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(pb.SearchRequest(collection=path, vector=b"\x00\x01\x02"),
                    metadata=over_grpc.grpc.metadata)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()
    with pytest.raises(Unauthenticated):
        from akidb.server.client import Client

        Client(over_grpc.rest_url, "wrong", over_grpc.grpc_target, data_plane="grpc").search(
            path, np.ones(DIM))
    # gRPC calls are in /metrics beside the REST ones, by method and status code.
    metrics = rest.metrics()
    for status in ("INVALID_ARGUMENT", "UNAUTHENTICATED", "NOT_FOUND"):
        assert re.search(r'akidb_requests_total\{method="GRPC",route="/akidb\.v1\.DataPlane/'
                         rf'\w+",status="{status}"\}} [1-9]', metrics), status
    assert re.search(r'akidb_request_seconds_count\{method="GRPC",route="/akidb\.v1\.'
                     r'DataPlane/Search"\} [1-9]', metrics)


def test_a_stream_cut_off_mid_way_keeps_exactly_the_batches_applied(clients, tenant):
    """Each batch of a stream is applied as it arrives: once the server has applied N
    batches the client dies, and exactly those N batches remain (not 0, not a part)."""
    rest, over_grpc = clients
    path = f"{tenant}/db/cut"
    rest.create_collection(path, dimension=DIM, metric="l2")
    size, batches = 50, 3
    applied = threading.Event()

    def requests():
        for b in range(batches):
            vecs = np.random.default_rng(b).standard_normal((size, DIM)).astype("<f4")
            docs = [pb.Document(id=f"b{b}-{i}", vector=vecs[i].tobytes()) for i in range(size)]
            yield pb.UpsertRequest(collection=path if b == 0 else "", documents=docs)
        # Wait (on the server's own count, with a deadline) until every batch sent so
        # far is applied, while the stream is still open; then the client dies.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if rest.get_collection(path)["count"] == batches * size:
                applied.set()
                break
        raise ConnectionAbortedError("client dies mid-stream")

    stub = pb_grpc.DataPlaneStub(over_grpc.grpc.channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Upsert(requests(), metadata=over_grpc.grpc.metadata, timeout=60)
    assert info.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
    assert applied.is_set(), "batches were not applied while the stream was open"
    assert rest.get_collection(path)["count"] == batches * size
    for b in range(batches):
        for i in (0, size - 1):
            rest.get(path, f"b{b}-{i}")


def test_a_stream_applies_its_batches_in_order_and_stops_at_a_bad_one(clients, tenant):
    """Batches of one stream are pipelined (the next is logged while the previous is
    indexed), yet applied in stream order: the same ids replaced by every batch end with
    the last good batch's vectors; a bad batch stops the stream and what follows it is
    never applied."""
    rest, over_grpc = clients
    path = f"{tenant}/db/order"
    rest.create_collection(path, dimension=DIM, metric="l2")
    rng = np.random.default_rng(11)
    good = [rng.standard_normal((20, DIM)).astype("<f4") for _ in range(6)]

    def batch(b: int, vecs: np.ndarray) -> pb.UpsertRequest:
        docs = [pb.Document(id=f"s{i}", vector=vecs[i].tobytes()) for i in range(len(vecs))]
        docs.append(pb.Document(id=f"marker{b}", vector=vecs[0].tobytes()))
        return pb.UpsertRequest(collection=path if b == 0 else "", documents=docs)

    def requests():
        yield from (batch(b, good[b]) for b in range(4))
        yield batch(4, np.ones((20, DIM + 1), "<f4"))  # wrong dimension
        yield batch(5, good[5])

    stub = pb_grpc.DataPlaneStub(over_grpc.grpc.channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Upsert(requests(), metadata=over_grpc.grpc.metadata, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "dimension" in info.value.details()
    assert rest.get_collection(path)["count"] == 20 + 4
    for i in range(20):
        assert rest.get(path, f"s{i}")["vector"] == pytest.approx(good[3][i].tolist())
        assert rest.search(path, good[3][i], k=1).ids[0] in (f"s{i}", "marker3")
    with pytest.raises(NotFound):
        rest.get(path, "marker5")
    assert over_grpc.upsert_stream(path, [([f"s{i}" for i in range(20)], good[5], None, None)
                                          for _ in range(3)]) == 60
