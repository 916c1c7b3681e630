"""Search quality through the real server: recall at defaults, filtered recall, filter exactness."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from akidb.datagen import vectors
from akidb.datagen.groundtruth import exact_knn, recall_at_k
from akidb.datagen.strategies import filters as filter_docs
from akidb.datagen.strategies import payloads
from akidb.server.client import Client
from akidb.server.query import filters

N, DIM, NQ = 20000, 384, 200
CATEGORIES = 100  # category c holds 1% of the docs; "c < 10" selects 10%


@pytest.fixture(scope="module")
def big(akidb_cluster):
    client = akidb_cluster.admin_client(timeout=120)
    tenant = f"q-{uuid.uuid4().hex[:8]}"
    path = f"{tenant}/db/big"
    client.create_collection(path, dimension=DIM, metric="cosine", create_parents=True)
    base = vectors.clustered(N, DIM, clusters=100, seed=42)
    cats = np.arange(N) % CATEGORIES
    for start in range(0, N, 1000):
        ids = [str(i) for i in range(start, start + 1000)]
        client.upsert_arrays(path, ids, base[start : start + 1000],
                             payloads=[{"cat": int(c)} for c in cats[start : start + 1000]])
    yield client, path, base, cats
    client.delete_tenant(tenant)
    client.close()


def _search_all(client, path, queries, k, flt=None):
    return [[int(i) for i in client.search(path, q, k=k, filter=flt).ids] for q in queries]


def test_recall_at_10_with_default_parameters(big):
    client, path, base, _ = big
    queries = vectors.queries(NQ, DIM, clusters=100, seed=42)
    truth, _ = exact_knn(base, queries, 10, "cosine")
    recall = recall_at_k(_search_all(client, path, queries, 10), truth, 10)
    print(f"recall@10 (M=32, efC=200, ef=64, {N} x {DIM}) = {recall:.4f}")
    assert recall >= 0.95


@pytest.mark.parametrize("flt, selectivity", [
    ({"cat": {"$lt": 50}}, 0.5),
    ({"cat": {"$lt": 10}}, 0.1),
    ({"cat": 7}, 0.01),
    ({"cat": {"$in": [3, 99]}}, 0.02),
])
def test_filtered_recall_stays_high(big, flt, selectivity):
    client, path, base, cats = big
    queries = vectors.queries(50, DIM, clusters=100, seed=42)
    node = filters.parse(flt)
    mask = np.array([filters.matches(node, {"cat": int(c)}) for c in cats])
    assert abs(mask.mean() - selectivity) < 1e-9
    truth, _ = exact_knn(base, queries, 10, "cosine", mask=mask)
    found = _search_all(client, path, queries, 10, flt)
    assert all(mask[i] for row in found for i in row), "a result violates the filter"
    recall = recall_at_k(found, truth, 10)
    print(f"filtered recall@10 at {selectivity:.0%} selectivity = {recall:.4f}")
    assert recall >= 0.95


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(docs=st.lists(payloads(), min_size=1, max_size=30), flt=filter_docs)
def test_server_filter_results_equal_brute_force(client: Client, tenant: str, docs, flt):
    path = f"{tenant}/db/f{uuid.uuid4().hex[:8]}"
    client.create_collection(path, dimension=3, metric="l2")
    rng = np.random.default_rng(len(docs))
    vecs = rng.standard_normal((len(docs), 3)).astype(np.float32)
    client.upsert_arrays(path, [str(i) for i in range(len(docs))], vecs, payloads=docs)
    node = filters.parse(flt)
    mask = np.array([filters.matches(node, p) for p in docs])
    got = client.search(path, [0.1, 0.2, 0.3], k=len(docs), filter=flt)
    assert sorted(int(i) for i in got.ids) == sorted(np.flatnonzero(mask).tolist())
    k = 3
    _, truth_scores = exact_knn(vecs, np.array([[0.1, 0.2, 0.3]], np.float32), k, "l2",
                                mask=mask)
    top = client.search(path, [0.1, 0.2, 0.3], k=k, filter=flt)
    # The same distances in order (ids could swap only within an exact tie).
    want = [float(s) for s in truth_scores[0] if np.isfinite(s)]
    assert len(top.ids) == len(want) and all(mask[int(i)] for i in top.ids)
    assert np.allclose([h.score for h in top.hits], want, atol=1e-5)
    client.delete_collection(path)
