"""Graph inserts outside the write lock: in log order, settled before deletes and
snapshots, and a failed insert does not stall the writers after it."""

from __future__ import annotations

import threading
import time

import hnswlib
import numpy as np
import pytest

from akidb.server.index.turns import Turns
from akidb.server.query.plan import Query

from .collections import open_collection

DIM = 8


def test_turns_run_in_ticket_order_whatever_order_threads_arrive_in():
    turns = Turns()
    tickets = [turns.ticket() for _ in range(6)]
    ran: list[int] = []

    def run(ticket: int) -> None:
        with turns.turn(ticket):
            ran.append(ticket)

    threads = [threading.Thread(target=run, args=(t,)) for t in reversed(tickets)]
    for t in threads:
        t.start()
        time.sleep(0.01)  # the later tickets are already waiting when the first arrives
    for t in threads:
        t.join(timeout=10)
    assert ran == tickets and turns.pending == 0


def test_a_failed_turn_passes_on_and_settle_waits_for_the_running_one():
    turns = Turns()
    first, second = turns.ticket(), turns.ticket()
    with pytest.raises(RuntimeError), turns.turn(first):
        raise RuntimeError("insert failed")
    settled = threading.Event()
    with turns.turn(second):  # not stalled by the failed one
        waiter = threading.Thread(target=lambda: (turns.settle(), settled.set()))
        waiter.start()
        assert not settled.wait(0.2)  # this turn still runs
    waiter.join(timeout=10)
    assert settled.is_set() and turns.pending == 0


def _upsert(coll, ids, vectors):
    coll.upsert(ids, vectors, [None] * len(ids), ["{}"] * len(ids))


def test_concurrent_replaces_leave_the_graph_with_the_stored_vectors(tmp_path):
    """Writers replacing the same ids from 4 threads: whatever order the log took, the
    graph must end with the vector the store kept (the last one logged) for every id."""
    coll = open_collection(tmp_path, dim=DIM)
    ids = [str(i) for i in range(40)]
    _upsert(coll, ids, np.zeros((40, DIM), np.float32) + 1.0)

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(25):
            _upsert(coll, ids, rng.standard_normal((40, DIM)).astype(np.float32))

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    labels = np.asarray([coll.labels[i] for i in ids], np.int64)
    stored = np.stack([np.frombuffer(coll.get(i).vector, np.float32) for i in ids])
    np.testing.assert_array_equal(coll.index.vectors(labels), stored)
    for i, vector in zip(ids, stored, strict=True):
        assert coll.search(Query("vector", 1, vector))[0].ext_id == i
    coll.close()
    coll.store.close()


def test_deletes_and_snapshots_during_ingest_lose_nothing(tmp_path):
    coll = open_collection(tmp_path, dim=DIM)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((2000, DIM)).astype(np.float32)
    errors: list[BaseException] = []

    def load(part: range) -> None:
        try:
            for s in part:
                _upsert(coll, [str(i) for i in range(s, s + 100)], vectors[s:s + 100])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    loaders = [threading.Thread(target=load, args=(range(o, 2000, 200),)) for o in (0, 100)]
    for t in loaders:
        t.start()
    snaps = 0
    while any(t.is_alive() for t in loaders):
        snap = coll.snapshot()
        saved = hnswlib.Index(space="l2", dim=DIM)
        saved.load_index(str(snap.index_path))
        # the saved graph holds every document logged up to the snapshot's seq
        assert saved.element_count == snap.meta["count"]
        snaps += 1
    for t in loaders:
        t.join()
    assert not errors and snaps >= 1
    coll.delete([str(i) for i in range(0, 2000, 2)])
    coll.snapshot()
    coll.close()
    coll.store.close()

    again = open_collection(tmp_path, dim=DIM)
    assert again.count == again.index.count == 1000
    for i in (1, 999, 1999):
        assert again.search(Query("vector", 1, vectors[i]))[0].ext_id == str(i)
    assert all(h.ext_id not in {"0", "1000", "1998"}
               for h in again.search(Query("vector", 10, vectors[1000])))
    again.close()
    again.store.close()
