"""Batch search: the same answers as one search at a time, one authorization per call."""

from __future__ import annotations

import numpy as np
import pytest

from akidb.server.client import Client
from akidb.server.errors import BadRequest, PayloadTooLarge, Unprocessable

DIM = 8


@pytest.fixture
def coll(client, tenant):
    path = f"{tenant}/db/b"
    client.create_collection(path, dimension=DIM, metric="cosine")
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((300, DIM)).astype(np.float32)
    client.upsert_arrays(path, [f"d{i}" for i in range(300)], vecs,
                         payloads=[{"g": i % 10} for i in range(300)],
                         texts=[f"word{i % 7} shared" for i in range(300)])
    return path


def _searches(n: int = 12) -> list[dict]:
    rng = np.random.default_rng(5)
    qs = rng.standard_normal((n, DIM)).astype(np.float32)
    out: list[dict] = [{"vector": q, "k": 5} for q in qs]
    out += [{"vector": qs[0], "k": 3, "ef": 200}, {"vector": qs[1], "k": 4, "filter": {"g": 3}},
            {"text": "word3", "mode": "text", "k": 5},
            {"vector": qs[2], "text": "word4", "k": 5, "alpha": 0.7, "include": ["payload"]}]
    return out


@pytest.mark.parametrize("data_plane", ["rest", "grpc"])
def test_a_batch_answers_exactly_as_single_searches(akidb_cluster, coll, data_plane):
    node = akidb_cluster.nodes[0]
    c = node.admin_client(data_plane=data_plane)
    searches = _searches()
    batch = c.search_batch(coll, searches)
    singles = [c.search(coll, **s) for s in searches]
    assert [r.ids for r in batch] == [r.ids for r in singles]
    for b, s in zip(batch, singles, strict=True):
        assert [h.score for h in b.hits] == pytest.approx([h.score for h in s.hits], abs=1e-6)
    assert batch[-1].hits[0].payload is not None
    assert all(len(r.ids) == s["k"] for r, s in zip(batch[:12], searches, strict=False))
    # Only plain vector searches: planned as one matrix, answered by one graph batch
    # per (k, ef).
    plain = [{**s, "include": ["payload"]} if i % 3 == 0 else s
             for i, s in enumerate(searches[:13])]
    answers = c.search_batch(coll, plain)
    assert [r.ids for r in answers] == [c.search(coll, **s).ids for s in plain]
    assert answers[0].hits[0].payload is not None and answers[1].hits[0].payload is None
    c.close()


def test_concurrent_batches_answer_as_a_lone_batch(akidb_cluster, coll):
    """Batches in flight together share the index threads (one each instead of all):
    the answers must not change with that, nor any call fail."""
    from concurrent.futures import ThreadPoolExecutor

    node = akidb_cluster.nodes[0]
    rng = np.random.default_rng(21)
    searches = [{"vector": q, "k": 7} for q in rng.standard_normal((64, DIM)).astype(np.float32)]
    with node.admin_client() as c:
        alone = [r.ids for r in c.search_batch(coll, searches)]

    def call(_: int) -> list[list[str]]:
        with node.admin_client() as c:
            return [[r.ids for r in c.search_batch(coll, searches)] for _ in range(5)]

    with ThreadPoolExecutor(4) as pool:
        answers = [a for runs in pool.map(call, range(4)) for a in runs]
    assert len(answers) == 20
    assert all(a == alone for a in answers)


def test_bad_searches_are_named_and_limits_hold(client, coll):
    good = {"vector": np.ones(DIM), "k": 3}
    with pytest.raises(Unprocessable, match=r"searches\[1\]: query vector has dimension 3"):
        client.search_batch(coll, [good, {"vector": np.ones(3), "k": 3}])
    with pytest.raises(BadRequest, match=r"searches\[2\]: invalid filter"):
        client.search_batch(coll, [good, good, {"vector": np.ones(DIM), "filter": {"$x": 1}}])
    with pytest.raises(Unprocessable, match=r"searches\[0\]: k=5000 exceeds"):
        client.search_batch(coll, [{"vector": np.ones(DIM), "k": 5000}])
    # Plain vector batches are checked as one matrix first; a failing check still names
    # its search.
    with pytest.raises(Unprocessable, match=r"searches\[3\]: a zero query vector"):
        client.search_batch(coll, [good, good, good, {"vector": np.zeros(DIM), "k": 3}])
    with pytest.raises(Unprocessable, match=r"searches\[0\]: k=5000 exceeds"):
        client.search_batch(coll, [{"vector": np.ones(DIM), "k": 5000}, good])
    with pytest.raises(BadRequest, match="must not be empty"):
        client.search_batch(coll, [])
    with pytest.raises(PayloadTooLarge, match="1025 searches in one call; the limit is 1024"):
        client.search_batch(coll, [good] * 1025)


def test_a_non_finite_vector_in_a_packed_batch_is_named(akidb_cluster, coll):
    """gRPC's packed float32 vectors can carry NaN and infinity, which JSON cannot."""
    node = akidb_cluster.nodes[0]
    with node.admin_client(data_plane="grpc") as c:
        good = {"vector": np.ones(DIM, np.float32), "k": 3}
        for bad in (np.nan, np.inf):
            vector = np.ones(DIM, np.float32)
            vector[5] = bad
            with pytest.raises(Unprocessable, match=r"searches\[2\]: query vector contains NaN"):
                c.search_batch(coll, [good, good, {"vector": vector, "k": 3}, good])
        with pytest.raises(Unprocessable, match=r"searches\[1\]: query vector has dimension 7"):
            c.search_batch(coll, [good, {"vector": np.ones(7, np.float32), "k": 3}])
        assert [len(r.ids) for r in c.search_batch(coll, [good] * 3)] == [3, 3, 3]


@pytest.mark.parametrize("data_plane", ["rest", "grpc"])
def test_a_field_out_of_range_names_its_search(akidb_cluster, coll, data_plane):
    node = akidb_cluster.nodes[0]
    with node.admin_client(data_plane=data_plane) as c:
        good = {"vector": np.ones(DIM, np.float32), "k": 3}
        with pytest.raises(BadRequest, match=r"searches\.2\.ef: Input should be less than"):
            c.search_batch(coll, [good, good, {**good, "ef": 5000}])
        with pytest.raises(BadRequest, match=r"searches\.1\.include\.0: Input should be"):
            c.search_batch(coll, [good, {**good, "include": ["vectors"]}])


def test_one_batch_is_one_authorization_and_one_rate_token(client, tenant, akidb_cluster):
    client.delete_tenant(tenant)
    client.create_tenant(tenant, quotas={"requests_per_second": 0.001, "burst": 1})
    client.create_database(tenant, "db")
    client.create_collection(f"{tenant}/db/b", dimension=DIM, metric="l2")
    client.upsert(f"{tenant}/db/b", [{"id": "a", "vector": np.ones(DIM)}])
    key = client.create_user(tenant, "v", "viewer")["api_key"]
    viewer = Client(akidb_cluster.nodes[0].rest_url, key, retries=0)
    out = viewer.search_batch(f"{tenant}/db/b", [{"vector": np.ones(DIM), "k": 1}] * 50)
    assert [r.ids for r in out] == [["a"]] * 50
    viewer.close()
