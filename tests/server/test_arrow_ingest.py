"""REST binary ingest (Arrow IPC stream): the same documents as JSON, the same refusals."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pytest

from akidb.server.client.arrow import encode_upsert
from akidb.server.errors import BadRequest, Unprocessable
from akidb.server.routes import ARROW_STREAM

DIM = 6


def _docs(n: int):
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    ids = [f"d{i}" for i in range(n)]
    payloads = [{"i": i, "tags": ["x", i % 3]} for i in range(n)]
    texts = [f"text {i}" if i % 2 else None for i in range(n)]
    return ids, vecs, payloads, texts


def _post(client, coll: str, body: bytes):
    t, d, c = coll.split("/")
    return client._send("POST", f"/v1/tenants/{t}/databases/{d}/collections/{c}/documents",
                        raw=body, content_type=ARROW_STREAM)


def _stream(columns: dict) -> bytes:
    batch = pa.record_batch(list(columns.values()), names=list(columns))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def test_arrow_ingest_equals_json_ingest(client, tenant):
    ids, vecs, payloads, texts = _docs(200)
    for name in ("json", "arrow", "lists"):
        client.create_collection(f"{tenant}/db/{name}", dimension=DIM, metric="l2")
    client.upsert(f"{tenant}/db/json", [{"id": i, "vector": v, "payload": p, "text": t}
                                        for i, v, p, t in zip(ids, vecs, payloads, texts,
                                                              strict=True)])
    assert _post(client, f"{tenant}/db/arrow", encode_upsert(ids, vecs, payloads, texts)) == \
        {"upserted": 200}
    lists = _stream({"id": pa.array(ids), "vector": pa.array(vecs.tolist(),
                                                              pa.list_(pa.float32())),
                     "payload": pa.array([orjson.dumps(p).decode() for p in payloads]),
                     "text": pa.array(texts, pa.string())})
    assert _post(client, f"{tenant}/db/lists", lists) == {"upserted": 200}
    for name in ("arrow", "lists"):
        for i in (0, 1, 57, 199):
            assert client.get(f"{tenant}/db/{name}", ids[i]) == \
                client.get(f"{tenant}/db/json", ids[i])
        assert client.search(f"{tenant}/db/{name}", vecs[5], k=3, filter={"tags": 2}).ids == \
            client.search(f"{tenant}/db/json", vecs[5], k=3, filter={"tags": 2}).ids


def test_the_client_sends_large_columnar_batches_as_arrow(client, tenant):
    ids, vecs, payloads, texts = _docs(300)
    path = f"{tenant}/db/auto"
    client.create_collection(path, dimension=DIM, metric="l2")
    assert client.upsert_arrays(path, ids, vecs, payloads, texts) == 300
    got = client.get(path, "d7")
    assert got["payload"] == payloads[7] and got["text"] == "text 7"
    assert np.array_equal(np.asarray(got["vector"], np.float32), vecs[7])


@pytest.mark.parametrize(("make", "error", "fragment"), [
    (lambda ids, v: _stream({"id": pa.array(range(len(ids))), "vector": _fixed(v)}),
     BadRequest, "'id' must be utf8"),
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": _fixed(v),
                             "colour": pa.array(ids)}), BadRequest, "unknown Arrow columns"),
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": _fixed(v[:, :4])}),
     Unprocessable, "expects 6"),
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": _fixed(_with_nan(v))}),
     Unprocessable, "NaN"),
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": pa.array(
        [r.tolist()[: 6 if i else 5] for i, r in enumerate(v)], pa.list_(pa.float32()))}),
     Unprocessable, "different lengths"),
    (lambda ids, v: encode_upsert(ids, v)[:-40], BadRequest, "not a readable Arrow"),
    (lambda ids, v: b"definitely not arrow", BadRequest, "not a readable Arrow"),
    (lambda ids, v: _stream({"id": pa.array([None, *ids[1:]], pa.string()),
                             "vector": _fixed(v)}), BadRequest, "null"),
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": _fixed(v),
                             "payload": pa.array(["[1]"] * len(ids))}), BadRequest,
     "must be a JSON object"),
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": pa.array(
        v.astype(np.float64).tolist(), pa.list_(pa.float64()))}), BadRequest, "float32"),
    # A null vector row is a document without a vector (no embedding model here): it
    # must be found as such, not stored as zeros.
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(v.reshape(-1)), v.shape[1], mask=pa.array([i == 4 for i in range(len(v))]))}),
     Unprocessable, r"documents\[4\] \(id 'd4'\) has no vector"),
    (lambda ids, v: _stream({"id": pa.array(ids), "vector": pa.array(
        [None if i == 7 else r.tolist() for i, r in enumerate(v)], pa.list_(pa.float32()))}),
     Unprocessable, r"documents\[7\] \(id 'd7'\) has no vector"),
])
def test_bad_arrow_bodies_are_refused_and_change_nothing(client, tenant, make, error,
                                                         fragment):
    path = f"{tenant}/db/bad"
    client.create_collection(path, dimension=DIM, metric="l2")
    client.upsert(path, [{"id": "keep", "vector": np.ones(DIM)}])
    ids, vecs, _p, _t = _docs(10)
    with pytest.raises(error, match=fragment):
        _post(client, path, make(ids, vecs))
    assert client.get_collection(path)["count"] == 1


def _fixed(v: np.ndarray):
    return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])


def _with_nan(v: np.ndarray) -> np.ndarray:
    out = v.copy()
    out[3, 2] = np.nan
    return out
