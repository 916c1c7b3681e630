"""Durability against power loss, not just kill -9: every crash state is recovered.

The server runs with the fsync-recording shim (chaos.crashstates); afterwards each
sampled crash state (what the disk could hold had power failed at that moment) is
started and checked: under ``always`` and ``batch`` every write acknowledged before
the crash is back, exactly; under ``none`` the server still recovers and the test
reports how much it lost. ``make test-slow`` explores every state.
"""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from akidb.chaos.crashstates import CrashLog, ShimUnavailable, build_shim, pick, shim_env
from akidb.harness import Node
from akidb.server.errors import NotFound

DIM = 4
COLL = "t/db/c"
LATE_COLL = "t/db/late"  # created during the recorded run: its directories must be durable
SAMPLED_STATES = 5


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    try:
        return build_shim(tmp_path_factory.mktemp("shim"))
    except ShimUnavailable as exc:
        pytest.skip(str(exc))


def _record_run(tmp_path, shim, fsync: str, writers: int = 2, per_writer: int = 30
                ) -> tuple[CrashLog, list[tuple[str, np.ndarray, int]],
                                                    set[str], int]:
    data = tmp_path / "data"
    node = Node(data, fsync=fsync)
    node.start()
    with node.admin_client() as admin:
        admin.create_collection(COLL, dimension=DIM, metric="l2", create_parents=True)
    node.stop()
    initial = tmp_path / "initial"
    shutil.copytree(data, initial)
    log_dir = tmp_path / "log"
    node = Node(data, fsync=fsync, env=shim_env(shim, data, log_dir))
    node.start()
    with node.admin_client() as admin:
        admin.create_collection(LATE_COLL, dimension=DIM, metric="l2")
    acked: list[tuple[str, np.ndarray, int]] = [("", np.zeros(0), time.monotonic_ns())]
    sent: set[str] = set()
    lock = threading.Lock()

    def writer(w: int) -> None:
        rng = np.random.default_rng(w)
        with node.admin_client(retries=0) as client:
            for i in range(per_writer):
                doc_id = f"w{w}-{i}"
                vector = rng.standard_normal(DIM).astype(np.float32)
                with lock:
                    sent.add(doc_id)
                client.upsert(COLL if w % 2 == 0 else LATE_COLL,
                              [{"id": doc_id, "vector": vector, "payload": {"i": i}}])
                with lock:
                    acked.append((doc_id, vector, time.monotonic_ns()))
                if w == 0 and i == per_writer // 2:
                    client.snapshot(COLL)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    end = time.monotonic_ns()
    node.kill()
    node.close()
    return CrashLog.load(data, initial, log_dir), acked, sent, end


def _explore(tmp_path, shim, fsync: str, states: int) -> dict[str, int]:
    log, acked, sent, end = _record_run(tmp_path, shim, fsync)
    assert log.sync_times(), "the shim recorded no syncs at all"
    lost_total = 0
    explored = 0
    for i, t in enumerate(pick([*log.sync_times(), end], states)):
        state = tmp_path / f"state-{i}"
        log.materialize(t, state)
        node = Node(state, fsync=fsync)
        node.start()  # every crash state must recover
        with node.admin_client() as client:
            present = {}
            for coll in (COLL, LATE_COLL):
                try:
                    found = {d["id"]: np.asarray(d["vector"], np.float32)
                             for page in client.iter_documents(coll, include=["vector"])
                             for d in page}
                except NotFound:
                    created = acked[0][2]
                    assert fsync == "none" or coll == LATE_COLL and t < created, \
                        f"{coll} vanished in crash state {i}"
                    continue
                assert len(client.search(coll, np.zeros(DIM), k=100).ids) == len(found)
                present.update(found)
            assert set(present) <= sent, "a document that was never sent appeared"
            due = [(d, v) for d, v, at in acked[1:] if at <= t]
            lost = [d for d, v in due if d not in present or not np.array_equal(present[d], v)]
        node.close()
        explored += 1
        lost_total += len(lost)
        if fsync != "none":
            assert not lost, f"{len(lost)} acknowledged writes lost in crash state {i}: {lost}"
    return {"states": explored, "lost": lost_total, "acked": len(acked) - 1}


@pytest.mark.parametrize("fsync", ["always", "batch", "none"])
def test_every_sampled_power_loss_state_recovers_what_was_acknowledged(tmp_path, shim, fsync):
    result = _explore(tmp_path, shim, fsync, SAMPLED_STATES)
    print(f"fsync={fsync}: {result}")
    assert result["states"] == SAMPLED_STATES


@pytest.mark.slow
@pytest.mark.parametrize("fsync", ["always", "batch", "none"])
def test_every_power_loss_state_recovers_what_was_acknowledged(tmp_path, shim, fsync):
    result = _explore(tmp_path, shim, fsync, 10_000)
    print(f"fsync={fsync}: {result}")


@pytest.mark.parametrize("fsync", ["always", "batch"])
def test_every_acknowledgement_follows_a_sync_that_covers_it(tmp_path, shim, fsync):
    """At the syscall boundary: each acknowledged document is inside a copy of its log
    segment synced before the acknowledgement; under ``batch`` writers share syncs."""
    log, acked, _sent, _end = _record_run(tmp_path, shim, fsync, writers=8, per_writer=10)
    wal_syncs = [e for e in log.events if e.kind == "sync" and e.path.endswith(".wal")]
    contents = [(e.t_ns, open(e.other, "rb").read()) for e in wal_syncs]
    for doc_id, _vector, acked_at in acked[1:]:
        needle = f'"{doc_id}"'.encode()
        covering = [t for t, data in contents if needle in data]
        assert covering and min(covering) <= acked_at, f"{doc_id} acknowledged before a sync"
    writes = len(acked) - 1
    if fsync == "batch":
        assert len(wal_syncs) < writes, f"{len(wal_syncs)} syncs for {writes} writes"
    else:
        assert len(wal_syncs) >= writes
