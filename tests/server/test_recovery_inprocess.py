"""Start-up recovery in-process, for the cases a crash leaves: SQLite behind the log,
a snapshot plus later upserts and deletes, no snapshot and no log (labels rebuilt
from the store alone). After each, the collection must be the same one: documents,
vectors, labels that new writes never reuse, and a report that says what happened."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from akidb.server.query import filters
from akidb.server.query.plan import Query
from akidb.server.storage.metadata import MetadataStore

from .collections import lose_documents, open_collection

DIM = 8


def _open(tmp_path, repair: bool = False):
    return open_collection(tmp_path, dim=DIM, repair=repair)


def _close(coll) -> None:
    coll.close()
    coll.store.close()


def _fill(coll, start: int, n: int, batch: int = 100) -> np.ndarray:
    vecs = np.random.default_rng(start).standard_normal((n, DIM)).astype(np.float32)
    for s in range(0, n, batch):
        ids = [str(start + s + i) for i in range(min(batch, n - s))]
        coll.upsert(ids, vecs[s:s + batch], [None] * len(ids),
                    [json.dumps({"n": start + s + i}) for i in range(len(ids))])
    return vecs


def _snapshot_of(coll) -> dict:
    """What a user can see: every document's label, vector and payload, and where new
    labels will start."""
    docs = {}
    for ext, label in coll.labels.items():
        doc = coll.get(ext)
        docs[ext] = (label, np.frombuffer(doc.vector, np.float32).tobytes(), doc.payload)
    return {"docs": docs, "next_label": coll.next_label, "count": coll.count}


def _forget_after(tmp_path, seq: int) -> None:
    """SQLite as a crash between the log's fsync and the store's commit leaves it."""
    store = MetadataStore(tmp_path / "m.db")
    with store._tx() as conn:
        conn.execute("DELETE FROM documents WHERE seq > ?", (seq,))
        conn.execute("UPDATE collections SET applied_seq = ?", (seq,))
    store.close()


def _exact_ids(coll, vecs_by_id: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[str]:
    ids = list(vecs_by_id)
    dist = np.linalg.norm(np.stack([vecs_by_id[i] for i in ids]) - q, axis=1)
    return [ids[j] for j in np.argsort(dist, kind="stable")[:k]]


def test_sqlite_behind_a_whole_log_is_brought_up_to_it(tmp_path):
    coll = _open(tmp_path)
    vecs = _fill(coll, 0, 300)  # records 1, 2, 3
    coll.delete(["5"])           # record 4
    want = _snapshot_of(coll)
    _close(coll)
    _forget_after(tmp_path, 1)
    again = _open(tmp_path)
    report = again.report
    assert report.collection == "t/d/c" and report.sqlite_seq == 1
    assert report.replayed_records == 3 and report.lost_records == []  # records 2..4
    assert report.snapshot_seq is None and report.rebuilt_from_sqlite
    assert again.store.get_collection("t", "d", "c").applied_seq == 4
    assert _snapshot_of(again) == want
    # The exact vectors are back for every path that reads them (filtered search).
    live = {str(i): vecs[i] for i in range(300) if i != 5}
    q = vecs[7] + 0.01
    node = filters.parse({"n": {"$lt": 40}})
    hits = again.search(Query("vector", 5, q, filter=node))
    assert [h.ext_id for h in hits] == _exact_ids(
        again, {k: v for k, v in live.items() if int(k) < 40}, q, 5)
    _close(again)


def test_labels_are_never_reused_after_recovery(tmp_path):
    coll = _open(tmp_path)
    _fill(coll, 0, 200)
    coll.delete(["199"])  # the highest label is free again, and must stay unused
    _close(coll)
    _forget_after(tmp_path, 1)
    again = _open(tmp_path)
    assert again.next_label == 200
    fresh = np.full((1, DIM), 9, np.float32)
    again.upsert(["new"], fresh, [None], ["{}"])
    assert again.labels["new"] == 200
    assert len(set(again.labels.values())) == len(again.labels) == 200
    hit = again.search(Query("vector", 1, fresh[0]))[0]
    assert hit.ext_id == "new" and hit.label == 200
    # An existing id keeps its label when written again after recovery.
    label_of_7 = again.labels["7"]
    again.upsert(["7"], np.full((1, DIM), -9, np.float32), [None], ["{}"])
    assert again.labels["7"] == label_of_7 and again.count == 200
    assert again.search(Query("vector", 1, np.full(DIM, -9, np.float32)))[0].ext_id == "7"
    _close(again)


def test_snapshot_then_upserts_and_deletes_replay_into_the_index(tmp_path):
    coll = _open(tmp_path)
    vecs = _fill(coll, 0, 300)
    coll.snapshot()
    late = _fill(coll, 1000, 50)        # after the snapshot
    coll.delete(["3", "1010"])          # one from before it, one from after
    want = _snapshot_of(coll)
    _close(coll)
    again = _open(tmp_path)
    assert again.report.snapshot_seq is not None and not again.report.rebuilt_from_sqlite
    assert again.report.replayed_records == 2 and again.report.index_from_store == 0
    assert again.report.index_removed == 0  # the replayed delete came after its upsert
    assert _snapshot_of(again) == want
    assert again.index.count == again.count == 348
    found = again.search(Query("vector", 1, late[20]))[0]
    assert found.ext_id == "1020"
    for gone in ("3", "1010"):
        q = vecs[3] if gone == "3" else late[10]
        assert gone not in {h.ext_id for h in again.search(Query("vector", 10, q))}
    _close(again)


def test_without_snapshot_or_log_the_store_alone_gives_labels_back(tmp_path, caplog):
    coll = _open(tmp_path)
    _fill(coll, 0, 150)
    coll.snapshot()                      # the log is cut back to after the snapshot
    want = _snapshot_of(coll)
    _close(coll)
    shutil.rmtree(tmp_path / "c" / "snapshots")  # and then the snapshot is lost
    caplog.set_level(logging.WARNING, "akidb.collection")
    again = _open(tmp_path)
    assert again.report.snapshot_seq is None and again.report.rebuilt_from_sqlite
    assert again.report.replayed_records == 0
    assert _snapshot_of(again) == want and again.next_label == 150
    again.upsert(["after"], np.full((1, DIM), 4, np.float32), [None], ["{}"])
    assert again.labels["after"] == 150 and again.get("149").payload == {"n": 149}
    _close(again)


def test_an_empty_collection_reopens_empty_and_says_it_rebuilt_nothing(tmp_path):
    _close(_open(tmp_path))
    again = _open(tmp_path)
    r = again.report
    assert (r.snapshot_seq, r.sqlite_seq, r.replayed_records, r.rebuilt_from_sqlite) == (
        None, 0, 0, False)
    assert again.count == again.index.count == 0 and again.next_label == 0
    _close(again)


@pytest.mark.parametrize("rebuilt", [False, True])
def test_the_repair_warning_says_whether_the_whole_index_was_rebuilt(tmp_path, caplog,
                                                                     rebuilt):
    coll = _open(tmp_path)
    _fill(coll, 0, 100)
    coll.snapshot()
    seq = coll.wal.last_seq
    _close(coll)
    store = MetadataStore(tmp_path / "m.db")
    if rebuilt:  # a document the index never got: only a rebuild brings it in
        store.apply_upsert(1, seq, [("stray", 100, None, "{}",
                                     np.full(DIM, 7, np.float32).tobytes())])
    store.close()
    if not rebuilt:  # two documents the store lost: removed from the index, no rebuild
        lose_documents(tmp_path, ["5", "6"])
    caplog.set_level(logging.WARNING, "akidb.collection")
    again = _open(tmp_path)
    assert again.report.index_rebuilt is rebuilt
    message = [r.getMessage() for r in caplog.records if "disagreed" in r.getMessage()]
    assert len(message) == 1
    assert message[0].endswith(", whole index rebuilt") is rebuilt
    if not rebuilt:
        assert message[0].endswith("2 stale labels removed")
    _close(again)


def test_failing_segment_bookkeeping_is_logged_and_not_fatal(tmp_path, caplog, monkeypatch):
    coll = _open(tmp_path)
    _fill(coll, 0, 10)

    def refuse(*args, **kwargs):
        raise OSError("disk I/O error")

    monkeypatch.setattr(coll.store, "set_wal_segments", refuse)
    caplog.set_level(logging.WARNING, "akidb.collection")
    coll.snapshot()  # records the segments left after the log is cut: that fails
    assert ["could not record WAL segments of t/d/c: disk I/O error"] == [
        r.getMessage() for r in caplog.records if "WAL segments" in r.getMessage()]
    assert coll.count == 10 and coll.get("3").payload == {"n": 3}
    _close(coll)


def test_a_lost_segment_the_store_holds_entirely_loses_nothing(tmp_path):
    coll = open_collection(tmp_path, dim=DIM, wal_segment_bytes=1)  # one record a segment
    _fill(coll, 0, 100)  # record 1
    coll.snapshot()      # the index as of record 1; the log starts after it
    _fill(coll, 100, 300)  # records 2..4, one segment each
    want = _snapshot_of(coll)
    segments = coll.wal.segments()
    _close(coll)
    _forget_after(tmp_path, 3)  # the store applied 1..3; record 4 is only in the log
    (third,) = [p for p in segments if int(p.stem) == 3]
    third.unlink()  # record 3 is gone from the log, but the store has it
    again = open_collection(tmp_path, dim=DIM, wal_segment_bytes=1)
    assert again.report.lost_records == [] and again.report.replayed_records == 2
    # The index is complete only up to record 2; what came after is re-read from the store.
    assert again.report.index_from_store == 200
    assert _snapshot_of(again) == want and again.index.count == 400
    _close(again)


def test_stale_labels_are_counted_once_even_after_earlier_deletes(tmp_path):
    coll = _open(tmp_path)
    _fill(coll, 0, 200)
    coll.delete([str(i) for i in range(20)])  # the index carries 20 deletion marks
    coll.snapshot()
    _close(coll)
    lose_documents(tmp_path, ["50", "51", "52"])  # the snapshot still has them
    again = _open(tmp_path)
    assert again.report.index_removed == 3 and not again.report.index_rebuilt
    assert again.index.count == again.count == 177
    _close(again)


def test_failed_appends_and_syncs_are_refused_with_the_cause(tmp_path, monkeypatch):
    from akidb.server import faults
    from akidb.server.errors import Unavailable

    coll = _open(tmp_path)
    _fill(coll, 0, 10)
    monkeypatch.setattr(faults, "ENABLED", True)  # as AKIDB_FAULT_INJECTION=1 would
    faults.update({"disk_full": 1})
    try:
        for write in (lambda: coll.upsert(["x"], np.ones((1, DIM), np.float32), [None],
                                          ["{}"]),
                      lambda: coll.delete(["3"])):
            with pytest.raises(Unavailable) as info:
                write()
            assert str(info.value) == ("write-ahead log append failed: [Errno 28] No space "
                                       "left on device (injected failpoint disk_full)")
    finally:
        faults.update({"disk_full": 0})
    assert coll.count == 10 and "3" in coll.labels and coll.broken is None

    def failing_sync(token: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(coll.wal, "wait_durable", failing_sync)
    with pytest.raises(Unavailable) as info:
        coll.delete(["4"])
    assert str(info.value) == ("fsync of the write-ahead log failed: [Errno 5] "
                               "Input/output error")
    assert coll.broken == "fsync failed: [Errno 5] Input/output error"
    with pytest.raises(Unavailable, match="read-only after a storage failure"):
        coll.upsert(["y"], np.ones((1, DIM), np.float32), [None], ["{}"])
    _close(coll)


def test_a_deleted_label_no_longer_maps_back_to_its_id(tmp_path):
    coll = _open(tmp_path)
    _fill(coll, 0, 10)
    label = coll.labels["4"]
    coll.delete(["4"])
    assert label not in coll.ext_ids and "4" not in coll.labels
    assert len(coll.ext_ids) == len(coll.labels) == 9
    _close(coll)


def test_the_collection_uses_the_configured_index_threads_and_segment_size(tmp_path):
    coll = open_collection(tmp_path, dim=DIM, index_threads=1, wal_segment_bytes=4096)
    assert coll.index.threads == 1 and coll.wal.segment_bytes == 4096
    _close(coll)


def test_a_gap_after_replayed_records_names_only_the_missing_ones(tmp_path):
    coll = open_collection(tmp_path, dim=DIM, wal_segment_bytes=1)  # one record a segment
    _fill(coll, 0, 400)  # records 1..4
    segments = coll.wal.segments()
    _close(coll)
    _forget_after(tmp_path, 1)  # the store applied record 1 only
    (third,) = [p for p in segments if int(p.stem) == 3]
    third.unlink()  # 2 replays, 3 is gone everywhere, 4 is in the log
    from akidb.server.recovery import RecoveryError

    with pytest.raises(RecoveryError, match="log records 3..3 are missing"):
        open_collection(tmp_path, dim=DIM, wal_segment_bytes=1)
    repaired = open_collection(tmp_path, dim=DIM, wal_segment_bytes=1, repair=True)
    assert repaired.report.lost_records == [(3, 3)] and repaired.count == 300
    _close(repaired)


def test_recovery_refuses_a_gap_unless_asked_to_repair(tmp_path):
    """open() without arguments is the safe default: a gap stops it."""
    coll = open_collection(tmp_path, dim=DIM, wal_segment_bytes=1)
    _fill(coll, 0, 300)
    segments = coll.wal.segments()
    _close(coll)
    _forget_after(tmp_path, 1)
    segments[1].unlink()
    from akidb.server.collection import Collection
    from akidb.server.config import Settings
    from akidb.server.recovery import RecoveryError

    store = MetadataStore(tmp_path / "m.db")
    row = store.get_collection("t", "d", "c")
    coll = Collection(row, store, tmp_path / "c",
                      Settings(data_dir=tmp_path, fsync="none", wal_segment_bytes=1))
    with pytest.raises(RecoveryError):
        coll.open()
    store.close()


def test_a_lost_log_directory_continues_numbering_after_the_store(tmp_path):
    coll = _open(tmp_path)
    _fill(coll, 0, 200)
    coll.snapshot()
    applied = coll.store.get_collection("t", "d", "c").applied_seq
    _close(coll)
    shutil.rmtree(tmp_path / "c" / "wal")  # every segment gone; store and snapshot intact
    again = _open(tmp_path)
    assert again.wal.last_seq == applied  # numbering continues after the store's records
    again.upsert(["new"], np.full((1, DIM), 3, np.float32), [None], ["{}"])
    assert again.wal.last_seq == applied + 1
    _close(again)
    third = _open(tmp_path)  # the new record is replayed, not skipped as old
    assert third.get("new").payload == {} and third.count == 201
    assert third.search(Query("vector", 1, np.full(DIM, 3, np.float32)))[0].ext_id == "new"
    _close(third)


def test_mid_log_corruption_stops_recovery_and_repair_keeps_the_store(tmp_path, caplog):
    from akidb.server.storage.wal import WalCorruption

    coll = _open(tmp_path)
    _fill(coll, 0, 300)  # records 1..3 in one segment, all applied to the store
    want = _snapshot_of(coll)
    (segment,) = coll.wal.segments()
    _close(coll)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside record 2: record 3 is still valid after it
    segment.write_bytes(bytes(data))
    with pytest.raises(WalCorruption):
        _open(tmp_path)
    caplog.set_level(logging.WARNING)
    repaired = _open(tmp_path, repair=True)
    truncation = repaired.report.truncations[0]
    assert truncation["dropped_bytes"] > 0
    assert _snapshot_of(repaired) == want  # the store had every record
    warning = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warning) == 1 and warning[0].startswith(f"{segment}: repair at offset ")
    assert f"({truncation['reason']}); dropped {truncation['dropped_bytes']} bytes" in warning[0]
    _close(repaired)


def test_a_gap_straddling_the_store_names_only_what_the_store_lacks(tmp_path, caplog):
    coll = open_collection(tmp_path, dim=DIM, wal_segment_bytes=1)
    _fill(coll, 0, 100)  # record 1
    coll.snapshot()
    _fill(coll, 100, 400)  # records 2..5
    segments = coll.wal.segments()
    _close(coll)
    _forget_after(tmp_path, 3)  # the store applied through 3
    for path in segments:
        if int(path.stem) in (2, 3, 4):
            path.unlink()  # records 2..4 gone from the log; the store has 2 and 3
    from akidb.server.recovery import RecoveryError

    with pytest.raises(RecoveryError, match=r"log records 4\.\.4 are missing"):
        open_collection(tmp_path, dim=DIM, wal_segment_bytes=1)
    caplog.set_level(logging.ERROR, "akidb.collection")
    repaired = open_collection(tmp_path, dim=DIM, wal_segment_bytes=1, repair=True)
    assert repaired.report.lost_records == [(4, 4)]
    assert [r.getMessage() for r in caplog.records if "missing" in r.getMessage()] == [
        f"t/d/c: log records 4..4 are missing from {tmp_path / 'c' / 'wal'} and the "
        "metadata store holds records only up to 3; --repair: continuing without them"]
    _close(repaired)
