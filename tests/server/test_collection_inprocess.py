"""One collection in-process: search strategies against brute force, and recovery."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from akidb.server import collection as collection_module
from akidb.server.collection import Collection
from akidb.server.query import filters
from akidb.server.query.plan import Query
from akidb.server.recovery import RecoveryError
from akidb.server.storage.metadata import MetadataStore
from akidb.server.storage.wal import FRAME

from .collections import brute_force, lose_documents, open_collection

DIM = 8
N = 1200


def _open(tmp_path, repair: bool = False) -> Collection:
    return open_collection(tmp_path, dim=DIM, repair=repair)


def _vec(coll: Collection, vector, k: int, ef=None, flt=None):
    return coll.search(Query("vector", k, vector, filter=flt, ef=ef))


def _close(coll: Collection) -> None:
    coll.close()
    coll.store.close()


def _docs(n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    payloads = [{"g": i % 100, "half": i % 2 == 0, "tags": [f"t{i % 7}"]} for i in range(n)]
    return [str(i) for i in range(n)], vecs, payloads


def _fill(coll: Collection, n: int = N) -> tuple[list[str], np.ndarray, list[dict]]:
    ids, vecs, payloads = _docs(n)
    texts = [f"word{i % 5} common" for i in range(n)]
    for s in range(0, n, 300):
        coll.upsert(ids[s:s + 300], vecs[s:s + 300], texts[s:s + 300],
                    [json.dumps(p) for p in payloads[s:s + 300]])
    return ids, vecs, payloads




@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    coll = _open(tmp_path_factory.mktemp("search"))
    data = _fill(coll)
    yield coll, data
    _close(coll)


@pytest.mark.parametrize("flt", [None, {"g": 5}, {"half": True}, {"g": {"$lt": 30}},
                                 {"tags": "t3"}, {"g": {"$in": [1, 2, 3]}, "half": False}])
def test_vector_search_matches_brute_force_on_every_strategy(filled, flt, monkeypatch):
    coll, (_ids, vecs, payloads) = filled
    # Small cut-offs so this collection reaches all three strategies: exact over the
    # matches, oversampling the graph, and the filtered graph walk.
    monkeypatch.setattr(collection_module, "EXACT_SEARCH_MAX", 50)
    queries = np.random.default_rng(7).standard_normal((10, DIM)).astype(np.float32)
    node = filters.parse(flt) if flt else None
    recall = []
    for q in queries:
        hits = _vec(coll, q, 10, 200, node)
        want = brute_force(vecs, payloads, q, 10, flt)
        got = [h.ext_id for h in hits]
        assert len(got) == len(want)
        assert all(node is None or filters.matches(node, payloads[int(g)]) for g in got)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)  # higher is better, best first
        recall.append(len(set(got) & set(want)) / len(want))
    assert np.mean(recall) >= 0.95, recall


def test_exact_path_is_exact_and_scores_are_negative_l2(filled):
    coll, (_ids, vecs, payloads) = filled
    q = vecs[17] + 0.01
    hits = _vec(coll, q, 5, None, filters.parse({"g": 17}))
    assert [h.ext_id for h in hits] == brute_force(vecs, payloads, q, 5, {"g": 17})
    assert hits[0].ext_id == "17"
    assert hits[0].score == pytest.approx(-float(np.linalg.norm(vecs[17] - q)), abs=1e-4)
    assert _vec(coll, q, 5, None, filters.parse({"g": 1000})) == []


def test_text_and_hybrid_search(filled):
    coll, (_ids, vecs, _payloads) = filled
    half = filters.parse({"half": True})
    text = coll.search(Query("text", 5, match='"word3"', filter=half))
    assert len(text) == 5 and all(int(h.ext_id) % 5 == 3 and int(h.ext_id) % 2 == 0
                                  for h in text)
    assert coll.search(Query("text", 5, match='"word3"', filter=filters.parse({"g": -1}))) == []
    assert len(coll.search(Query("text", 1000, match='"word3"', filter=half))) == 120
    q = vecs[8]
    vector_first = coll.search(Query("hybrid", 3, q, match='"word3"', alpha=1.0))
    assert vector_first[0].ext_id == "8"
    text_first = coll.search(Query("hybrid", 3, q, match='"word3"', alpha=0.0))
    assert int(text_first[0].ext_id) % 5 == 3
    assert coll.search(Query("hybrid", 3, q, match=""))[0].ext_id == "8"  # no words
    assert coll.search(Query("text", 3, match="")) == []


def test_short_graph_results_fall_back_to_exact_search(tmp_path):
    coll = _open(tmp_path)
    ids, vecs, _payloads = _fill(coll, 300)
    coll.delete(ids[:290])
    hits = _vec(coll, vecs[295], 50, 10)
    assert sorted(h.ext_id for h in hits) == sorted(ids[290:])
    assert hits[0].ext_id == "295"
    _close(coll)


def _state(coll: Collection) -> dict:
    return {ext: coll.store.get_document(coll.row.id, ext).payload
            for ext in coll.labels}


def test_reopen_after_snapshot_and_more_writes_is_the_same_collection(tmp_path):
    coll = _open(tmp_path)
    ids, vecs, _ = _fill(coll, 600)
    coll.snapshot()
    coll.delete(ids[:10])
    coll.upsert(["new"], np.ones((1, DIM), np.float32), [None], ['{"n": 1}'])
    before = (_state(coll), coll.next_label)
    _close(coll)
    again = _open(tmp_path)
    assert (_state(again), again.next_label) == before
    assert again.report.snapshot_seq is not None and again.report.replayed_records == 2
    assert again.index.count == again.count == 591
    assert _vec(again, np.ones(DIM, np.float32), 1, None)[0].ext_id == "new"
    assert not again.report.index_rebuilt and again.report.index_from_store == 0
    _close(again)


def test_a_damaged_last_record_is_taken_from_the_store(tmp_path):
    coll = _open(tmp_path)
    _fill(coll, 300)
    coll.snapshot()
    coll.upsert(["moved"], np.full((1, DIM), 5, np.float32), [None], ["{}"])
    _close(coll)
    (segment,) = sorted((tmp_path / "c" / "wal").glob("*.wal"))
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(bytes(data))
    again = _open(tmp_path)
    assert again.report.index_from_store == 1 and again.report.truncations
    assert _vec(again, np.full(DIM, 5, np.float32), 1, None)[0].ext_id == "moved"
    _close(again)


def test_missing_records_beyond_the_store_stop_recovery_unless_repair(tmp_path):
    coll = _open(tmp_path)
    _fill(coll, 900)  # three records of 300
    _close(coll)
    store = MetadataStore(tmp_path / "m.db")
    with store._tx() as conn:  # SQLite forgets records 2 and 3 (as a rollback would)
        conn.execute("DELETE FROM documents WHERE seq > 1")
        conn.execute("UPDATE collections SET applied_seq = 1")
    store.close()
    (segment,) = sorted((tmp_path / "c" / "wal").glob("*.wal"))
    data = segment.read_bytes()
    second = FRAME.size + FRAME.unpack_from(data, 0)[0]
    third = second + FRAME.size + FRAME.unpack_from(data, second)[0]
    segment.write_bytes(data[:second] + data[third:])  # record 2 is gone from the log too
    with pytest.raises(RecoveryError, match="log records 2..2 are missing"):
        _open(tmp_path)
    repaired = _open(tmp_path, repair=True)
    assert repaired.report.lost_records == [(2, 2)]
    assert repaired.count == 600 and repaired.index.count == 600
    assert "300" not in repaired.labels and "0" in repaired.labels and "600" in repaired.labels
    _close(repaired)


def test_an_index_that_disagrees_with_the_store_is_rebuilt(tmp_path):
    coll = _open(tmp_path)
    ids, vecs, _ = _fill(coll, 300)
    coll.snapshot()
    _close(coll)
    (meta,) = (tmp_path / "c" / "snapshots").glob("*/meta.json")
    edited = json.loads(meta.read_text())
    edited["seq"] = 0  # claims less than it holds; the CRC catches the edit
    meta.write_text(json.dumps(edited))
    again = _open(tmp_path)
    assert again.report.snapshot_seq is None and again.report.rebuilt_from_sqlite
    assert again.index.count == 300
    assert _vec(again, vecs[3], 1, None)[0].ext_id == ids[3]
    _close(again)


@pytest.mark.parametrize(("flt", "strategy"), [
    ({"g": 5}, "exact"),                      # 12 matches <= the exact cut-off
    ({"half": True}, "oversample"),           # 50% >= 25%: oversample and post-filter
    ({"g": {"$lt": 20}}, "filtered_walk"),    # 20%: walk the graph skipping the rest
])
def test_each_selectivity_picks_its_strategy(filled, flt, strategy, monkeypatch):
    coll, (_ids, vecs, payloads) = filled
    monkeypatch.setattr(collection_module, "EXACT_SEARCH_MAX", 50)
    before = dict(coll.strategies)
    hits = _vec(coll, vecs[0], 10, None, filters.parse(flt))
    assert len(hits) == 10
    changed = {k for k in coll.strategies if coll.strategies[k] != before.get(k, 0)}
    assert changed == {strategy}
    _vec(coll, vecs[0], 10, None)
    assert coll.strategies["graph"] >= 1


def test_the_snapshot_catalogue_holds_every_document_with_its_norm(tmp_path):
    coll = open_collection(tmp_path, dim=4, metric="cosine")
    store = coll.store
    vecs = np.asarray([[3, 4, 0, 0], [0, 0, 5, 12], [1, 0, 0, 0]], np.float32)
    coll.upsert(["a", "b", "c"], vecs, ["text a", None, "text c"],
                ['{"k":1}', '{}', '{"k":[1,2]}'])
    snap = coll.snapshot()
    lines = (snap.path / "documents.jsonl").read_bytes().splitlines()
    docs = sorted(json.loads(line) for line in lines)
    assert docs == [[0, "a", "text a", '{"k":1}', 5.0], [1, "b", None, "{}", 13.0],
                    [2, "c", "text c", '{"k":[1,2]}', 1.0]]
    assert snap.meta["count"] == 3 and snap.meta["metric"] == "cosine"
    assert snap.meta["dimension"] == 4 and snap.meta["next_label"] == 3
    coll.close()
    store.close()


def test_catalogue_norms_follow_replaced_vectors_and_survive_a_restart(tmp_path):
    """The norms come from memory, not from reading the vectors back: a replaced
    vector's new norm must show, and recovery (snapshot plus log) must refill them."""
    coll = open_collection(tmp_path, dim=4, metric="cosine")
    coll.upsert(["a", "b"], np.asarray([[3, 4, 0, 0], [0, 0, 5, 12]], np.float32),
                [None, None], ["{}", "{}"])
    coll.snapshot()
    coll.upsert(["a", "c"], np.asarray([[0, 6, 8, 0], [0, 0, 0, 2]], np.float32),
                [None, None], ["{}", "{}"])  # "a" replaced after the snapshot
    coll.delete(["b"])

    def catalogue_norms() -> list[tuple[str, float]]:
        lines = (coll.snapshot().path / "documents.jsonl").read_bytes().splitlines()
        return sorted((d[1], d[4]) for d in map(json.loads, lines))

    assert catalogue_norms() == [("a", 10.0), ("c", 2.0)]
    coll.upsert(["c"], np.asarray([[0, 0, 0, 3]], np.float32), [None], ["{}"])
    coll.close()
    coll.store.close()
    coll = open_collection(tmp_path, dim=4, metric="cosine")  # the last upsert is replayed
    assert catalogue_norms() == [("a", 10.0), ("c", 3.0)]
    coll.close()
    coll.store.close()


def test_l2_catalogue_norms_are_one_and_the_index_keeps_raw_vectors(tmp_path):
    coll = _open(tmp_path)
    coll.upsert(["x"], np.full((1, DIM), 2, np.float32), [None], ["{}"])
    snap = coll.snapshot()
    (line,) = (snap.path / "documents.jsonl").read_bytes().splitlines()
    assert json.loads(line) == [0, "x", None, "{}", 1.0]
    assert np.array_equal(coll.index.vectors(np.asarray([0])), np.full((1, DIM), 2, np.float32))
    _close(coll)


def test_stale_live_labels_in_the_index_are_removed_on_open(tmp_path, caplog):
    coll = _open(tmp_path)
    ids, vecs, _ = _fill(coll, 300)
    coll.snapshot()
    _close(coll)
    lose_documents(tmp_path, ["5", "6"])  # the snapshot still holds them
    caplog.set_level(logging.WARNING, "akidb.collection")
    again = _open(tmp_path)
    assert again.report.index_removed == 2 and not again.report.index_rebuilt
    assert again.index.count == again.count == 298
    assert {h.ext_id for h in _vec(again, vecs[5], 5, None)}.isdisjoint({"5", "6"})
    assert ("t/d/c: the index disagreed with the store after replay and was repaired from "
            "it: 0 documents re-indexed, 2 stale labels removed") in caplog.text
    stats = again.stats()
    assert stats["count"] == 298 and stats["snapshot_seq"] == again.last_snapshot.seq
    assert stats["last_seq"] == again.wal.last_seq and stats["wal_bytes"] == 0
    assert stats["index_capacity"] >= 300
    _close(again)


def test_reads_deletes_and_segment_bookkeeping(tmp_path):
    coll = _open(tmp_path)
    ids, vecs, payloads = _fill(coll, 30)
    doc = coll.get("7")
    assert doc.ext_id == "7" and doc.payload == payloads[7] and doc.text == "word2 common"
    assert np.array_equal(np.frombuffer(doc.vector, np.float32), vecs[7])
    with pytest.raises(collection_module.NotFound, match="'nope' not found in t/d/c"):
        coll.get("nope")
    query = Query("vector", 2, vecs[3])
    hits = coll.attach_documents(_vec(coll, vecs[3], 2, None), query)
    assert hits[0].document.ext_id == "3" and hits[0].document.payload == payloads[3]
    assert coll.delete(["3", "4"]) == 2
    assert "3" not in coll.labels and coll.count == 28 and coll.index.count == 28
    with pytest.raises(collection_module.NotFound, match="'3' not found"):
        coll.delete(["3"])
    assert sorted(coll._live_labels().tolist()) == sorted(coll.ext_ids)
    rows = coll.store._reader().execute(
        "SELECT start_seq, sealed FROM wal_segments WHERE collection_id = ?",
        (coll.row.id,)).fetchall()
    assert rows == [(1, 0)]  # recorded at open: one open segment
    coll.snapshot()
    rows = coll.store._reader().execute(
        "SELECT start_seq FROM wal_segments WHERE collection_id = ?", (coll.row.id,)).fetchall()
    assert rows == [(coll.wal.last_seq + 1,)]
    _close(coll)


def test_a_write_the_store_refuses_is_cut_from_the_log(tmp_path, monkeypatch):
    coll = _open(tmp_path)
    _fill(coll, 10)
    size = coll.wal.size_bytes()

    def refuse(*_args, **_kwargs):
        raise collection_module.Unavailable("disk full")

    monkeypatch.setattr(coll.store, "apply_upsert", refuse)
    with pytest.raises(collection_module.Unavailable, match="was not applied"):
        coll.upsert(["z"], np.ones((1, DIM), np.float32), [None], ["{}"])
    assert coll.wal.size_bytes() == size and "z" not in coll.labels and coll.broken is None
    monkeypatch.undo()
    coll.upsert(["z"], np.ones((1, DIM), np.float32), [None], ["{}"])
    assert coll.get("z").ext_id == "z"
    _close(coll)


def test_strategy_counts_add_up(filled, monkeypatch):
    coll, (_ids, vecs, _payloads) = filled
    monkeypatch.setattr(collection_module, "EXACT_SEARCH_MAX", 50)
    for flt, name in (({"g": 5}, "exact"), ({"half": True}, "oversample"),
                      ({"g": {"$lt": 20}}, "filtered_walk"), (None, "graph")):
        before = coll.strategies[name]
        for _ in range(3):
            _vec(coll, vecs[1], 5, None, filters.parse(flt) if flt else None)
        assert coll.strategies[name] == before + 3, name


def test_labels_survive_a_snapshot_after_the_newest_documents_were_deleted(tmp_path):
    """next_label and the deleted count come from the snapshot: a reopened collection must
    not hand out labels that the graph still holds as deleted."""
    coll = _open(tmp_path)
    ids, vecs, _ = _fill(coll, 300)
    coll.delete(ids[-3:])
    coll.snapshot()
    _close(coll)
    again = _open(tmp_path)
    assert again.next_label == 300 and again.index.deleted == 3
    assert again.index.count == 297 and not again.report.index_rebuilt
    assert again.report.sqlite_seq == again.row.applied_seq
    assert 0 <= again.report.seconds < 60
    again.upsert(["fresh"], np.full((1, DIM), 9, np.float32), [None], ["{}"])
    assert again.labels["fresh"] == 300
    assert _vec(again, np.full(DIM, 9, np.float32), 1, None)[0].ext_id == "fresh"
    _close(again)


def test_upserting_an_existing_id_keeps_its_label(tmp_path):
    coll = _open(tmp_path)
    coll.upsert(["a", "b"], np.ones((2, DIM), np.float32), [None, None], ["{}", "{}"])
    label = coll.labels["a"]
    coll.upsert(["a"], np.full((1, DIM), 3, np.float32), [None], ['{"v":2}'])
    assert coll.labels["a"] == label and coll.count == 2 and coll.index.count == 2
    assert coll.next_label == 2 and coll.ext_ids[label] == "a"
    assert _vec(coll, np.full(DIM, 3, np.float32), 1, None)[0].ext_id == "a"
    _close(coll)


def test_batch_upserts_wait_for_the_group_sync(tmp_path):
    coll = open_collection(tmp_path, dim=DIM, fsync="batch")
    coll.upsert(["a"], np.ones((1, DIM), np.float32), [None], ["{}"])
    assert coll.wal._durable == coll.wal._written == 1
    coll.delete(["a"])
    assert coll.wal._durable == 2
    _close(coll)


def test_a_gap_names_the_whole_missing_range_and_repair_logs_it(tmp_path, caplog):
    coll = _open(tmp_path)
    _fill(coll, 1200)  # four records of 300
    _close(coll)
    store = MetadataStore(tmp_path / "m.db")
    with store._tx() as conn:
        conn.execute("DELETE FROM documents WHERE seq > 1")
        conn.execute("UPDATE collections SET applied_seq = 1")
    store.close()
    (segment,) = sorted((tmp_path / "c" / "wal").glob("*.wal"))
    data = segment.read_bytes()
    ends = [0]
    while ends[-1] < len(data):
        ends.append(ends[-1] + FRAME.size + FRAME.unpack_from(data, ends[-1])[0])
    segment.write_bytes(data[:ends[1]] + data[ends[3]:])  # records 2 and 3 are gone
    with pytest.raises(RecoveryError) as info:
        _open(tmp_path)
    text = str(info.value)
    assert "t/d/c: log records 2..3 are missing from" in text
    assert "the metadata store holds records only up to 1" in text
    assert "restore the missing segment, or start with --repair" in text
    caplog.set_level(logging.ERROR, "akidb.collection")
    repaired = _open(tmp_path, repair=True)
    assert repaired.report.lost_records == [(2, 3)] and repaired.count == 600
    assert "log records 2..3 are missing" in caplog.text
    assert "--repair: continuing without them" in caplog.text
    _close(repaired)


def test_a_document_the_index_never_got_forces_a_rebuild(tmp_path):
    coll = _open(tmp_path)
    _fill(coll, 300)
    coll.snapshot()
    seq = coll.wal.last_seq
    _close(coll)
    store = MetadataStore(tmp_path / "m.db")
    stray = np.full(DIM, 7, np.float32)
    store.apply_upsert(1, seq, [("stray", 300, None, "{}", stray.tobytes())])
    store.close()
    again = _open(tmp_path)
    assert again.report.index_rebuilt and again.report.index_from_store == 0
    assert again.index.count == again.count == 301
    assert _vec(again, stray, 1, None)[0].ext_id == "stray"
    _close(again)


def test_a_write_that_cannot_be_undone_leaves_the_collection_read_only(tmp_path,
                                                                      monkeypatch, caplog):
    coll = _open(tmp_path)
    _fill(coll, 10)

    def refuse(*_args, **_kwargs):
        raise OSError("I/O error")

    monkeypatch.setattr(coll.store, "apply_upsert", refuse)
    monkeypatch.setattr(coll.wal, "undo", lambda seq: False)
    caplog.set_level(logging.ERROR, "akidb.collection")
    with pytest.raises(collection_module.Unavailable, match="may be applied on restart"):
        coll.upsert(["z"], np.ones((1, DIM), np.float32), [None], ["{}"])
    assert coll.broken == "applying record 2: I/O error"
    assert [r.getMessage() for r in caplog.records] == [
        "collection t/d/c: applying record 2: I/O error"]
    monkeypatch.undo()
    with pytest.raises(collection_module.Unavailable, match="read-only after a storage failure"):
        coll.upsert(["y"], np.ones((1, DIM), np.float32), [None], ["{}"])
    with pytest.raises(collection_module.Unavailable, match="read-only"):
        coll.delete(["1"])
    _close(coll)


def test_hits_whose_document_changed_during_the_search_stay_consistent(tmp_path):
    """The index scored a document; before its row was read it was deleted, or
    rewritten with a payload that fails the filter or with another vector. The hit
    is dropped, or rescored from what is stored, never returned half old, half new."""
    coll = _open(tmp_path)
    ids, vecs, payloads = _fill(coll, 30)
    flt = filters.parse({"half": True})
    query = Query("vector", 5, vecs[4], filter=flt)
    hits = coll.search(query)  # scored now; the writes below land before the read
    assert hits[0].ext_id == "4" and len(hits) == 5
    before = {h.ext_id: h.score for h in hits}
    coll.delete([hits[1].ext_id])
    gone = hits[1].ext_id
    flipped = hits[2].ext_id  # now fails the filter
    coll.upsert([flipped], vecs[int(flipped)][None], [None], [json.dumps({"half": False})])
    moved = hits[3].ext_id  # now far away: its stored vector is scored, not the old one
    far = (vecs[4] + 50).astype(np.float32)
    coll.upsert([moved], far[None], [None], [json.dumps({"half": True})])
    kept = coll.attach_documents(hits, query)
    names = [h.ext_id for h in kept]
    assert gone not in names and flipped not in names and names[0] == "4"
    assert all(h.document.payload["half"] is True for h in kept)
    assert names[-1] == moved  # rescored from the stored vector, ranked last
    expected = -float(np.linalg.norm(far - vecs[4]))
    assert kept[-1].score == pytest.approx(expected, rel=1e-5)
    assert kept[0].score == pytest.approx(before["4"], abs=1e-5)
    assert [h.score for h in kept] == sorted((h.score for h in kept), reverse=True)
    _close(coll)


def test_text_hits_keep_their_ranking_scores_when_documents_are_attached(tmp_path):
    from akidb.server.query.plan import fts_query

    coll = _open(tmp_path)
    _fill(coll, 30)
    query = Query("text", 5, match=fts_query("word2"))
    hits = coll.search(query)
    scores = [h.score for h in hits]
    kept = coll.attach_documents(hits, query)
    assert [h.score for h in kept] == scores and all(h.document for h in kept)
    assert all("word2" in h.document.text for h in kept)
    _close(coll)
