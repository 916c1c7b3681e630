"""The REST API of CONTRACT.md against a real server process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from akidb.server.client import Client
from akidb.server.errors import (
    AlreadyExists,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
    Unprocessable,
)


def _docs(n, dim=4, seed=0, start=0):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    return [{"id": f"doc-{start + i}", "vector": vecs[i],
             "text": f"document number {start + i} about {'cats' if i % 2 else 'dogs'}",
             "payload": {"i": start + i, "parity": "odd" if i % 2 else "even"}}
            for i in range(n)]


@pytest.fixture
def coll(client: Client, tenant: str) -> str:
    path = f"{tenant}/db/c"
    client.create_collection(path, dimension=4, metric="cosine")
    client.upsert(path, _docs(20))
    return path


def _state(client: Client, path: str) -> tuple[int, list]:
    info = client.get_collection(path)
    res = client.search(path, [1, 0, 0, 0], k=100, include=["payload", "vector", "text"])
    return info["count"], [(h.id, h.payload, h.vector, h.text) for h in res.hits]


def test_health_ready_metrics_openapi(client: Client):
    assert client.health() == {"status": "ok"}
    assert client.is_ready()
    assert "akidb_requests_total" in client.metrics()
    doc = client.openapi()
    assert doc["openapi"].startswith("3.")
    assert "/v1/tenants/{tenant}/databases/{database}/collections/{collection}/search" in \
        doc["paths"]
    assert "SearchIn" in doc["components"]["schemas"]


def test_hierarchy_crud(client: Client, tenant: str):
    assert tenant in [t["name"] for t in client.list_tenants()]
    with pytest.raises(AlreadyExists):
        client.create_tenant(tenant)
    client.create_database(tenant, "other")
    assert {d["name"] for d in client.list_databases(tenant)} == {"db", "other"}
    info = client.create_collection(f"{tenant}/other/v", dimension=8, metric="l2",
                                    hnsw={"m": 8, "ef_construction": 50, "ef_search": 20})
    assert info["hnsw"] == {"m": 8, "ef_construction": 50, "ef_search": 20}
    assert [c["name"] for c in client.list_collections(tenant, "other")] == ["v"]
    with pytest.raises(AlreadyExists):
        client.create_collection(f"{tenant}/other/v", dimension=8)
    client.delete_database(tenant, "other")
    with pytest.raises(NotFound):
        client.get_collection(f"{tenant}/other/v")
    with pytest.raises(NotFound):
        client.create_database("no-such-tenant", "x")


def test_upsert_get_search_delete(client: Client, coll: str):
    docs = _docs(20)
    got = client.get(coll, "doc-3")
    assert got["payload"] == {"i": 3, "parity": "odd"}
    assert np.array_equal(np.asarray(got["vector"], np.float32), docs[3]["vector"])
    res = client.search(coll, docs[5]["vector"], k=3, include=["payload"])
    assert res.hits[0].id == "doc-5" and res.hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert res.hits[0].payload == {"i": 5, "parity": "odd"}
    assert [h.score for h in res.hits] == sorted((h.score for h in res.hits), reverse=True)
    # upsert replaces
    client.upsert(coll, [{"id": "doc-5", "vector": [0, 0, 0, 1], "payload": {"new": True}}])
    assert client.get(coll, "doc-5")["payload"] == {"new": True}
    assert client.search(coll, [0, 0, 0, 1], k=1).ids == ["doc-5"]
    assert client.get_collection(coll)["count"] == 20
    client.delete(coll, "doc-5")
    assert "doc-5" not in client.search(coll, [0, 0, 0, 1], k=20).ids
    with pytest.raises(NotFound):
        client.get(coll, "doc-5")
    with pytest.raises(NotFound):
        client.delete(coll, "doc-5")
    assert client.get_collection(coll)["count"] == 19


def test_filtered_text_and_hybrid_search(client: Client, coll: str):
    res = client.search(coll, [1, 0, 0, 0], k=20, filter={"parity": "odd"}, include=["payload"])
    assert len(res.hits) == 10 and all(h.payload["parity"] == "odd" for h in res.hits)
    res = client.search(coll, [1, 0, 0, 0], k=5, filter={"i": {"$gte": 15}})
    assert set(res.ids) == {f"doc-{i}" for i in range(15, 20)}
    res = client.search(coll, text="cats", k=20)
    assert len(res.hits) == 10 and all(int(i.split("-")[1]) % 2 == 1 for i in res.ids)
    res = client.search(coll, [1, 0, 0, 0], text="number 7", k=5, mode="hybrid")
    assert "doc-7" in res.ids
    res = client.search(coll, text="cats", k=20, filter={"i": {"$lt": 5}})
    assert set(res.ids) == {"doc-1", "doc-3"}


def test_scores_are_higher_is_better_for_every_metric(client: Client, tenant: str):
    for metric in ("cosine", "l2", "ip"):
        path = f"{tenant}/db/{metric}"
        client.create_collection(path, dimension=2, metric=metric)
        client.upsert(path, [{"id": "near", "vector": [1, 0.1]}, {"id": "far", "vector": [-1, 0]}])
        res = client.search(path, [1, 0], k=2)
        assert res.ids == ["near", "far"], metric
        assert res.hits[0].score > res.hits[1].score


BAD_UPSERTS = [
    (b'{"documents": [', BadRequest, "malformed JSON"),
    (b"[]", BadRequest, "invalid request"),
    (b'{"docs": []}', BadRequest, "docs"),
    (b'{"documents": []}', BadRequest, "must not be empty"),
    (b'{"documents": [{"id": "x", "vector": [1, 2, 3]}]}', Unprocessable, "dimension 3"),
    (b'{"documents": [{"id": "x", "vector": [1, 2, 3, NaN]}]}', Unprocessable, "NaN"),
    (b'{"documents": [{"id": "x", "vector": [1, 2, 3, 1e39]}]}', Unprocessable, "NaN or inf"),
    (b'{"documents": [{"id": "x", "vector": [0, 0, 0, 0]}]}', Unprocessable, "zero vector"),
    (b'{"documents": [{"id": "x", "vector": ["1", 2, 3, 4]}]}', BadRequest, "valid number"),
    (b'{"documents": [{"id": 5, "vector": [1, 2, 3, 4]}]}', BadRequest, "valid string"),
    (b'{"documents": [{"id": "", "vector": [1, 2, 3, 4]}]}', BadRequest, "invalid"),
    (b'{"documents": [{"id": "a/b", "vector": [1, 2, 3, 4]}]}', BadRequest, "invalid"),
    (b'{"documents": [{"id": "x"}]}', Unprocessable, "no vector"),
    (b'{"documents": [{"id": "x", "vector": [1, 2, 3, 4], "colour": 1}]}', BadRequest,
     "colour"),
    (b'{"documents": [{"id": "x", "vector": [1, 2, 3, 4]}, {"id": "x", "vector": [1, 2, 3, 4]}]}',
     BadRequest, "twice"),
    (b'{"documents": [{"id": "ok", "vector": [1, 2, 3, 4]}, {"id": "y", "vector": [1, 2, 3]}]}',
     Unprocessable, "different lengths"),
]


@pytest.mark.parametrize("raw, error, fragment", BAD_UPSERTS)
def test_bad_upserts_are_rejected_and_change_nothing(client, coll, raw, error, fragment):
    before = _state(client, coll)
    with pytest.raises(error) as info:
        client.request("POST", "/v1/tenants/{}/databases/{}/collections/{}/documents".format(
            *coll.split("/")), raw=raw)
    assert fragment in str(info.value)
    assert _state(client, coll) == before


BAD_SEARCHES = [
    ({"vector": [1, 2, 3], "k": 5}, Unprocessable, "dimension 3"),
    ({"vector": [1, 2, 3, 4], "k": 0}, BadRequest, "k"),
    ({"vector": [1, 2, 3, 4], "k": 100000}, Unprocessable, "limit"),
    ({"k": 5}, BadRequest, "needs a vector"),
    ({"vector": [1, 2, 3, 4], "mode": "text"}, BadRequest, "needs a text"),
    ({"vector": [1, 2, 3, 4], "filter": {"a": {"$bad": 1}}}, BadRequest, "unknown operator"),
    ({"vector": [1, 2, 3, 4], "include": ["secrets"]}, BadRequest, "include"),
    ({"vector": [1, 2, 3, 4], "ef": -1}, BadRequest, "ef"),
]


@pytest.mark.parametrize("body, error, fragment", BAD_SEARCHES)
def test_bad_searches_are_rejected(client, coll, body, error, fragment):
    with pytest.raises(error) as info:
        client.request("POST", "/v1/tenants/{}/databases/{}/collections/{}/search".format(
            *coll.split("/")), body)
    assert fragment in str(info.value)


def test_bad_names_limits_and_auth(client, tenant, akidb_cluster):
    for bad in ("../etc", "a b", "-x", "x" * 65, ""):
        with pytest.raises((BadRequest, NotFound)):
            client.request("POST", "/v1/tenants", {"name": bad})
    with pytest.raises(BadRequest):
        client.create_collection(f"{tenant}/db/..", dimension=4)
    with pytest.raises(Unprocessable):
        client.create_collection(f"{tenant}/db/huge", dimension=100000)
    with pytest.raises(BadRequest):
        client.create_collection(f"{tenant}/db/x", dimension=4, metric="hamming")
    path = f"{tenant}/db/lim"
    client.create_collection(path, dimension=2, metric="l2")
    with pytest.raises(PayloadTooLarge):
        client.upsert(path, [{"id": str(i), "vector": [1, 2]} for i in range(5001)])
    with pytest.raises(PayloadTooLarge):
        client.upsert(path, [{"id": "p", "vector": [1, 2], "payload": {"x": "y" * 70000}}])
    assert client.get_collection(path)["count"] == 0
    anon = Client(akidb_cluster.nodes[0].rest_url, "wrong-key")
    with pytest.raises(Unauthenticated):
        anon.list_tenants()
    with pytest.raises(Unauthenticated):
        Client(akidb_cluster.nodes[0].rest_url).list_tenants()


def test_error_format_for_unknown_routes_and_methods(client):
    with pytest.raises(NotFound) as info:
        client.request("GET", "/v2/nothing")
    assert "no route" in str(info.value)
    status, body = client.transport.request("PUT", "/v1/tenants")
    assert status == 405 and json.loads(body)["error"]["code"] == "method_not_allowed"


def test_text_index_follows_updates_and_deletes(client: Client, tenant: str):
    path = f"{tenant}/db/fts"
    client.create_collection(path, dimension=2, metric="l2")
    client.upsert(path, [{"id": "a", "vector": [1, 0], "text": "red apple"},
                         {"id": "b", "vector": [0, 1]}])
    assert client.search(path, text="apple", k=5).ids == ["a"]
    client.upsert(path, [{"id": "a", "vector": [1, 0], "text": "green pear"},
                         {"id": "b", "vector": [0, 1], "text": "yellow apple"}])
    assert client.search(path, text="apple", k=5).ids == ["b"]
    assert client.search(path, text="pear", k=5).ids == ["a"]
    client.upsert(path, [{"id": "a", "vector": [1, 0]}])
    assert client.search(path, text="pear", k=5).ids == []
    client.delete(path, "b")
    assert client.search(path, text="apple", k=5).ids == []
