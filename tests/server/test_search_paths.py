"""Every way one collection answers a query, in-process, against brute force: the
exact fallback when the graph comes back short, batched searches, the ``ef`` and
depth each path asks of the graph, and hybrid fusion through ``Collection.search``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from akidb.server import collection as collection_module
from akidb.server.index.hnsw import ShortResult
from akidb.server.query import filters
from akidb.server.query.hybrid import reciprocal_rank_fusion
from akidb.server.query.plan import Query

from .collections import brute_force, open_collection

DIM = 8
N = 900




@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    coll = open_collection(tmp_path_factory.mktemp("paths"), dim=DIM)
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((N, DIM)).astype(np.float32)
    payloads = [{"g": i % 100, "half": i % 2 == 0} for i in range(N)]
    texts = [f"word{i % 5} common" for i in range(N)]
    ids = [str(i) for i in range(N)]
    for s in range(0, N, 300):
        coll.upsert(ids[s:s + 300], vecs[s:s + 300], texts[s:s + 300],
                    [json.dumps(p) for p in payloads[s:s + 300]])
    yield coll, vecs, payloads
    coll.close()
    coll.store.close()


QUERIES = np.random.default_rng(11).standard_normal((6, DIM)).astype(np.float32)


def _ids(hits) -> list[str]:
    return [h.ext_id for h in hits]


@pytest.fixture
def short_graph(filled, monkeypatch):
    """The graph search comes back short (fewer than k live neighbours), as hnswlib
    does on graphs full of deleted or filtered-out nodes: every search raises it."""
    coll = filled[0]

    def short(*args, **kwargs):
        raise ShortResult("simulated: fewer than k found")

    monkeypatch.setattr(coll.index, "search", short)
    monkeypatch.setattr(coll.index, "search_batch", short)
    return filled


@pytest.mark.parametrize("flt", [None, {"g": {"$lt": 40}}, {"half": True}])
def test_a_short_graph_answer_falls_back_to_exact_search(short_graph, flt, monkeypatch):
    coll, vecs, payloads = short_graph
    monkeypatch.setattr(collection_module, "EXACT_SEARCH_MAX", 50)  # skip the exact path
    node = filters.parse(flt) if flt else None
    before = coll.strategies["exact_fallback"]
    for q in QUERIES:
        hits = coll.search(Query("vector", 10, q, filter=node))
        assert _ids(hits) == brute_force(vecs, payloads, q, 10, flt)
        best = int(hits[0].ext_id)
        assert hits[0].score == pytest.approx(-float(np.linalg.norm(vecs[best] - q)), abs=1e-4)
    assert coll.strategies["exact_fallback"] - before == len(QUERIES)


def test_batched_searches_fall_back_one_by_one(short_graph):
    coll, vecs, payloads = short_graph
    answers = coll.search_many([Query("vector", 7, q) for q in QUERIES])
    assert [_ids(a) for a in answers] == [brute_force(vecs, payloads, q, 7) for q in QUERIES]


def test_search_many_answers_each_query_as_search_does_in_order(filled):
    coll, vecs, payloads = filled
    half = filters.parse({"half": True})
    queries = [Query("vector", 5, QUERIES[0]), Query("vector", 5, QUERIES[1]),
               Query("vector", 3, QUERIES[2]), Query("vector", 5, QUERIES[3], ef=128),
               Query("vector", 5, QUERIES[4], ef=128), Query("vector", 4, QUERIES[5],
                                                             filter=half),
               Query("text", 4, match='"word2"'), Query("hybrid", 4, QUERIES[0],
                                                        match='"word1"'),
               Query("vector", 5, QUERIES[5])]
    before = dict(coll.strategies)
    batched = coll.search_many(queries)
    graph_runs = coll.strategies["graph"] - before.get("graph", 0)
    one_by_one = [coll.search(q) for q in queries]
    assert [_ids(a) for a in batched] == [_ids(b) for b in one_by_one]
    for a, b in zip(batched, one_by_one, strict=True):
        assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    # k=5 ef=None: 3 queries in one batch; k=5 ef=128: 2; the k=3 one alone: one graph
    # search; the filtered, text and hybrid ones do not count as unfiltered graph runs.
    assert graph_runs == 3 + 2 + 1 + 1  # + the hybrid's vector side
    assert len(batched[5]) == 4 and all(int(h.ext_id) % 2 == 0 for h in batched[5])
    assert _ids(batched[0]) == brute_force(vecs, payloads, QUERIES[0], 5)


@pytest.fixture
def graph_calls(filled, monkeypatch):
    """Every (k, ef) the collection asks of the real graph."""
    coll = filled[0]
    calls: list[tuple[int, int | None, bool]] = []
    real_search, real_batch = coll.index.search, coll.index.search_batch

    def search(vector, k, ef=None, allowed=None):
        calls.append((k, ef, allowed is not None))
        return real_search(vector, k, ef, allowed=allowed)

    def search_batch(vectors, k, ef=None):
        calls.append((k, ef, False))
        return real_batch(vectors, k, ef)

    monkeypatch.setattr(coll.index, "search", search)
    monkeypatch.setattr(coll.index, "search_batch", search_batch)
    return calls


def test_the_requested_ef_reaches_the_graph_on_every_path(filled, graph_calls, monkeypatch):
    coll = filled[0]
    monkeypatch.setattr(collection_module, "EXACT_SEARCH_MAX", 50)
    coll.search(Query("vector", 5, QUERIES[0], ef=77))
    assert graph_calls[-1] == (5, 77, False)
    coll.search(Query("vector", 5, QUERIES[0], filter=filters.parse({"g": {"$lt": 10}}),
                      ef=77))  # 10% match: the filtered graph walk
    assert graph_calls[-1] == (5, 77, True)
    coll.search(Query("vector", 5, QUERIES[0], filter=filters.parse({"g": {"$lt": 90}}),
                      ef=300))  # 90% match: oversampling, ef at least what it fetches
    k, ef, filtered = graph_calls[-1]
    wanted = min(N, int(3 * 5 / 0.9) + 10)
    assert (k, ef, filtered) == (wanted, max(300, wanted), False)
    coll.search(Query("vector", 5, QUERIES[0], filter=filters.parse({"g": {"$lt": 90}})))
    assert graph_calls[-1] == (wanted, wanted, False)  # no ef: what it fetches
    coll.search_many([Query("vector", 6, q, ef=99) for q in QUERIES[:3]])
    assert graph_calls[-1] == (6, 99, False)


def test_hybrid_fuses_the_top_four_k_or_fifty_of_each_side(filled, graph_calls):
    coll, vecs, payloads = filled
    for k, depth in ((5, 50), (20, 80)):
        hits = coll.search(Query("hybrid", k, QUERIES[1], match='"word4"', ef=200,
                                 alpha=0.3))
        assert graph_calls[-1] == (depth, 200, False)
        assert len(hits) == k
        by_vector = brute_force(vecs, payloads, QUERIES[1], depth)
        by_text = [h.ext_id for h in coll.search(Query("text", depth, match='"word4"'))]
        labels = {ext: coll.labels[ext] for ext in by_vector + by_text}
        fused = reciprocal_rank_fusion([labels[e] for e in by_vector],
                                       [labels[e] for e in by_text], alpha=0.3, k=k)
        assert [h.label for h in hits] == [f[0] for f in fused]


def test_hybrid_alpha_and_filter_reach_both_sides(filled):
    coll, vecs, payloads = filled
    q = QUERIES[2]
    only_vector = coll.search(Query("hybrid", 8, q, match='"word0"', alpha=1.0))
    assert _ids(only_vector) == brute_force(vecs, payloads, q, 8)
    only_text = coll.search(Query("hybrid", 8, q, match='"word0"', alpha=0.0))
    assert all(int(h.ext_id) % 5 == 0 for h in only_text)
    odd = filters.parse({"half": False})
    both = coll.search(Query("hybrid", 30, q, match='"word0"', filter=odd))
    assert len(both) == 30 and all(int(h.ext_id) % 2 == 1 for h in both)


def test_filtered_text_search_pages_deeper_until_k_allowed_are_found(tmp_path):
    """Every document matches the word equally; the filter allows only five of them,
    ranked far down: the pages grow (64, 256, 1024 ...) until all five are found."""
    coll = open_collection(tmp_path, dim=DIM)
    n = 1500
    ids = [str(i) for i in range(n)]
    vecs = np.zeros((n, DIM), np.float32)
    coll.upsert(ids, vecs, ["same words here"] * n,
                [json.dumps({"rare": i >= n - 5}) for i in range(n)])
    ranked = [h.ext_id for h in coll.search(Query("text", n, match='"same"'))]
    assert len(ranked) == n
    rare = filters.parse({"rare": True})
    hits = coll.search(Query("text", 5, match='"same"', filter=rare))
    want = [e for e in ranked if int(e) >= n - 5]
    assert [h.ext_id for h in hits] == want
    assert ranked.index(want[0]) > 4 * 64  # past the first two pages
    fewer = coll.search(Query("text", 3, match='"same"', filter=rare))
    assert [h.ext_id for h in fewer] == want[:3]
    none_left = coll.search(Query("text", 10, match='"same"', filter=rare))
    assert [h.ext_id for h in none_left] == want  # all there are, not an endless loop
    coll.close()
    coll.store.close()


def test_the_snapshot_rule_is_a_quarter_of_the_index_or_the_floor(tmp_path, monkeypatch):
    coll = open_collection(tmp_path, dim=DIM, m=16)
    coll.upsert([str(i) for i in range(10)], np.ones((10, DIM), np.float32), [None] * 10,
                ["{}"] * 10)
    index_bytes = 10 * (DIM * 4 + 16 * 8)  # what a restart would rebuild
    for wal, floor, expected in ((index_bytes // 4, 0, False),
                                 (index_bytes // 4 + 1, 0, True),
                                 (5000, 5000, False), (5001, 5000, True)):
        monkeypatch.setattr(coll.wal, "size_bytes", lambda wal=wal: wal)
        assert coll.needs_snapshot(floor, 0.25) is expected, (wal, floor)
    monkeypatch.setattr(coll.wal, "size_bytes", lambda: 0)
    assert coll.needs_snapshot(10**9, 0.25, min_vectors=10)  # no snapshot yet, big enough
    assert not coll.needs_snapshot(10**9, 0.25, min_vectors=11)
    assert not coll.needs_snapshot(10**9, 0.25)  # min_vectors 0: that rule is off
    coll.close()
    coll.store.close()


def test_fusion_weighs_both_sides_equally_by_default():
    fused = dict(reciprocal_rank_fusion([1, 2, 3], [3, 2, 1], k=3))
    assert fused[1] == pytest.approx(0.5 / 61 + 0.5 / 63)
    assert fused[2] == pytest.approx(0.5 / 62 + 0.5 / 62)
    assert fused == dict(reciprocal_rank_fusion([1, 2, 3], [3, 2, 1], alpha=0.5, k=3))


def test_strategy_boundaries_are_inclusive(filled, monkeypatch):
    """Exactly EXACT_SEARCH_MAX matches still go exact; a selectivity of exactly
    OVERSAMPLE_MIN_SELECTIVITY still oversamples."""
    coll, vecs, payloads = filled
    nine = {"g": 5}  # 9 of the 900 documents
    monkeypatch.setattr(collection_module, "EXACT_SEARCH_MAX", 9)
    before = dict(coll.strategies)
    hits = coll.search(Query("vector", 3, QUERIES[0], filter=filters.parse(nine)))
    assert [h.ext_id for h in hits] == brute_force(vecs, payloads, QUERIES[0], 3, nine)
    assert coll.strategies["exact"] - before.get("exact", 0) == 1
    quarter = {"g": {"$lt": 25}}  # 225 of 900: a selectivity of exactly 0.25
    assert collection_module.OVERSAMPLE_MIN_SELECTIVITY == 0.25
    before = dict(coll.strategies)
    coll.search(Query("vector", 3, QUERIES[0], filter=filters.parse(quarter)))
    taken = {k: v - before.get(k, 0) for k, v in coll.strategies.items()
             if v != before.get(k, 0)}
    assert taken == {"oversample": 1}


@pytest.fixture
def batch_calls(filled, monkeypatch):
    """('batch', n queries) / ('one', k) for every call to the real graph."""
    coll = filled[0]
    calls: list[tuple[str, int]] = []
    real_search, real_batch = coll.index.search, coll.index.search_batch

    def search(vector, k, ef=None, allowed=None):
        calls.append(("one", k))
        return real_search(vector, k, ef, allowed=allowed)

    def search_batch(vectors, k, ef=None):
        calls.append(("batch", len(vectors)))
        return real_batch(vectors, k, ef)

    monkeypatch.setattr(coll.index, "search", search)
    monkeypatch.setattr(coll.index, "search_batch", search_batch)
    return calls


def test_only_unfiltered_vector_queries_sharing_k_and_ef_are_batched(filled, batch_calls):
    coll = filled[0]
    half = filters.parse({"half": True})
    coll.search_many([Query("vector", 3, QUERIES[0]),            # alone in its group
                      Query("vector", 5, QUERIES[1]), Query("vector", 5, QUERIES[2]),
                      Query("vector", 5, QUERIES[3], filter=half),  # filtered: alone
                      Query("text", 5, match='"word1"')])
    assert batch_calls.count(("batch", 2)) == 1  # the pair, after a group of one
    # the lone k=3 query goes to the graph alone; the filtered one (450 matches) is
    # answered exactly, not by the graph, and is never part of a batch
    assert [c for c in batch_calls if c[0] == "one"] == [("one", 3)]


def test_a_short_batch_falls_back_and_later_groups_still_batch(filled, batch_calls,
                                                               monkeypatch):
    coll = filled[0]
    real_batch = coll.index.search_batch

    def short_for_k7(vectors, k, ef=None):
        if k == 7:
            batch_calls.append(("batch-short", len(vectors)))
            raise ShortResult("simulated")
        batch_calls.append(("batch", len(vectors)))
        return real_batch(vectors, k, ef)

    monkeypatch.setattr(coll.index, "search_batch", short_for_k7)
    answers = coll.search_many([Query("vector", 7, QUERIES[0]), Query("vector", 7, QUERIES[1]),
                                Query("vector", 4, QUERIES[2]), Query("vector", 4, QUERIES[3])])
    assert [len(a) for a in answers] == [7, 7, 4, 4]
    assert ("batch-short", 2) in batch_calls and ("one", 7) in batch_calls
    assert ("batch", 2) in batch_calls  # the k=4 pair after the short group still batches


def test_text_pages_grow_fourfold_from_four_k_or_sixty_four(tmp_path, monkeypatch):
    coll = open_collection(tmp_path, dim=DIM)
    n = 1500
    coll.upsert([str(i) for i in range(n)], np.zeros((n, DIM), np.float32),
                ["same words here"] * n, [json.dumps({"rare": i >= n - 5}) for i in range(n)])
    limits: list[int] = []
    real = coll.store.text_search

    def text_search(collection_id, match, limit):
        limits.append(limit)
        return real(collection_id, match, limit)

    monkeypatch.setattr(coll.store, "text_search", text_search)
    rare = filters.parse({"rare": True})
    for k, want in ((5, [64, 256, 1024, 4096]), (30, [120, 480, 1920])):
        limits.clear()
        coll.search(Query("text", k, match='"same"', filter=rare))
        assert limits == want, k
    coll.close()
    coll.store.close()


def test_empty_filters_and_one_document_collections(tmp_path):
    coll = open_collection(tmp_path, dim=DIM)
    coll.upsert(["only"], np.ones((1, DIM), np.float32), [None], ['{"a": 1}'])
    hit = coll.search(Query("vector", 3, np.ones(DIM, np.float32),
                            filter=filters.parse({"a": 1})))
    assert [h.ext_id for h in hit] == ["only"]  # one document, and it matches
    before = dict(coll.strategies)
    assert coll.search(Query("vector", 3, np.ones(DIM, np.float32),
                             filter=filters.parse({"a": 2}))) == []
    assert dict(coll.strategies) == before  # nothing matches: no search at all
    assert coll.stats()["snapshot_seq"] is None  # no snapshot yet
    seen = []
    coll.on_snapshot = seen.append
    snap = coll.snapshot()
    assert seen == [snap] and coll.stats()["snapshot_seq"] == snap.seq
    rows = coll.store._reader().execute(
        "SELECT seq, path FROM snapshots WHERE collection_id = ?", (coll.row.id,)).fetchall()
    assert rows[-1] == (snap.seq, str(snap.path))
    coll.close()
    coll.store.close()
