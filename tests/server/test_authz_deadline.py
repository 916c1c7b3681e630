"""Authorization with a deadline: a slow policy store is answered from a still-valid
cached decision or refused with 503, never allowed by default; revocation empties
the cache, even of a decision that was being evaluated when it happened."""

from __future__ import annotations

import threading
import time

import pytest

from akidb.harness import Node
from akidb.server.auth.decisions import DeadlineDecider, DecisionCache
from akidb.server.client import Client
from akidb.server.errors import PermissionDenied, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def decider(clock: Clock, *, deadline_s: float = 5.0, refresh_s: float = 1.0,
            ttl_s: float = 10.0, size: int = 100, inflight: int = 64) -> DeadlineDecider:
    return DeadlineDecider(deadline_s, DecisionCache(size, clock), refresh_s, ttl_s, inflight)


def settle(d: DeadlineDecider, key, evaluate):
    """A decision whose evaluation is fast, made with a deadline a loaded machine
    cannot miss (the tests' short deadlines are for the blocked evaluations)."""
    saved, d.deadline_s = d.deadline_s, 30.0
    try:
        return d.decide(key, evaluate)
    finally:
        d.deadline_s = saved


def test_the_cache_is_bounded_least_recently_used_first():
    clock = Clock()
    cache = DecisionCache(2, clock)
    cache.put("a", True, 0, clock())
    cache.put("b", False, 0, clock())
    assert cache.get("a") == (True, 0.0)  # a is now the most recent
    cache.put("c", True, 0, clock())
    assert cache.get("b") is None and len(cache) == 2
    clock.now += 3
    assert cache.get("c") == (True, 3.0)
    cache.clear()
    assert cache.get("a") is None and cache.generation == 1
    cache.put("a", True, 0, clock())  # evaluated before the clear: not stored
    assert cache.get("a") is None
    cache.put("a", False, 1, clock())
    assert cache.get("a") == (False, 0.0)
    assert len(DecisionCache(0, clock)) == 0
    with pytest.raises(ValueError) as err:
        DecisionCache(-1)
    assert str(err.value) == "authz cache size must be >= 0, got -1"
    one = DecisionCache(1, clock)
    one.put("a", True, 0, clock())
    assert one.get("a") == (True, 0.0)  # a cache of one holds one
    cache.clear()  # a second clear: generation 2, and generation 1 is old now too
    cache.put("z", True, 1, clock())
    assert cache.get("z") is None and cache.generation == 2


def test_fresh_decisions_come_from_the_cache_and_old_ones_are_evaluated_again():
    clock = Clock()
    d = decider(clock)
    calls = []

    def evaluate():
        calls.append(1)
        return True

    assert d.decide("k", evaluate) and d.decide("k", evaluate)
    assert len(calls) == 1 and d.counts["evaluated"] == 1 and d.counts["cache"] == 1
    clock.now += 1.5  # past refresh_s
    assert d.decide("k", evaluate) and len(calls) == 2


def _blocked():
    release = threading.Event()
    started = threading.Event()

    def evaluate():
        started.set()
        release.wait(30)
        return True

    return release, started, evaluate


def test_past_the_deadline_a_cached_decision_answers_either_way():
    clock = Clock()
    d = decider(clock, deadline_s=0.05)
    assert settle(d, "allow", lambda: True) is True
    assert settle(d, "deny", lambda: False) is False
    clock.now += 5  # older than refresh, younger than ttl
    release, started, slow = _blocked()
    assert d.decide("allow", slow) is True
    assert d.decide("deny", lambda: (release.wait(30), True)[1]) is False  # stays denied
    assert d.counts["stale_cache"] == 2
    release.set()


def test_past_the_deadline_with_nothing_cached_is_503_not_allow():
    clock = Clock()
    d = decider(clock, deadline_s=0.05)
    release, started, slow = _blocked()
    with pytest.raises(Unavailable, match="did not decide within 50 ms") as err:
        d.decide("k", slow)
    assert err.value.details == {"retry_after": 1} and d.counts["timeout"] == 1
    release.set()


def test_the_late_evaluation_fills_the_cache():
    clock = Clock()
    d = decider(clock, deadline_s=0.05)
    release, started, slow = _blocked()
    with pytest.raises(Unavailable):
        d.decide("k", slow)
    release.set()
    d._inflight and next(iter(d._inflight.values())).result(10)
    assert d.decide("k", lambda: False) is True  # answered from the now-cached decision


def test_concurrent_misses_share_one_evaluation():
    clock = Clock()
    d = decider(clock)
    release, started, slow = _blocked()
    calls = []

    def counted():
        calls.append(1)
        return slow()

    answers = []
    threads = [threading.Thread(target=lambda: answers.append(d.decide("k", counted)))
               for _ in range(5)]
    for t in threads:
        t.start()
    assert started.wait(10)
    release.set()
    for t in threads:
        t.join(10)
    assert answers == [True] * 5 and len(calls) == 1


def test_a_decision_in_flight_during_a_revocation_is_neither_cached_nor_shared():
    clock = Clock()
    d = decider(clock, deadline_s=0.05)
    release, started, slow = _blocked()
    with pytest.raises(Unavailable):
        d.decide("k", slow)  # an evaluation under the old policies is still running
    d.revoke()
    assert settle(d, "k", lambda: False) is False  # a new evaluation, not the old one
    release.set()
    for future in list(d._inflight.values()):
        future.result(10)
    assert d.cache.get("k") == (False, 0.0)  # the old "allow" did not overwrite it


def test_too_many_waiting_evaluations_are_refused_without_another_thread():
    clock = Clock()
    d = decider(clock, deadline_s=0.05, inflight=1)
    release, started, slow = _blocked()
    with pytest.raises(Unavailable):
        d.decide("a", slow)
    with pytest.raises(Unavailable):
        d.decide("b", lambda: True)  # the one slot is taken: refused at once
    release.set()


def test_bad_settings_are_refused_and_edges_accepted():
    with pytest.raises(ValueError) as err:
        DeadlineDecider(0.1, DecisionCache(1), 10, 5)
    assert str(err.value) == ("authz deadline must be > 0 and 0 <= refresh <= ttl, got "
                              "deadline 0.1, refresh 10, ttl 5")
    for bad in ((0, 1, 5), (0.1, -1, 5)):
        with pytest.raises(ValueError):
            DeadlineDecider(bad[0], DecisionCache(1), bad[1], bad[2])
    for good in ((0.1, 0, 0), (0.1, 0.5, 0.5)):  # no refresh; refresh equal to the ttl
        assert DeadlineDecider(good[0], DecisionCache(1), good[1], good[2]).ttl_s == good[2]
    assert DeadlineDecider(0.1, DecisionCache(1), 1, 5).max_inflight == 64
    assert dict(DeadlineDecider(0.1, DecisionCache(1), 1, 5).counts) == {
        "cache": 0, "evaluated": 0, "stale_cache": 0, "timeout": 0}


def test_every_answer_is_counted_by_where_it_came_from():
    clock = Clock()
    d = decider(clock, deadline_s=0.05, refresh_s=1.0, ttl_s=10.0)
    for key in ("a", "b"):
        settle(d, key, lambda: True)  # evaluated
    d.decide("a", lambda: True)
    d.decide("b", lambda: True)  # cache, twice
    clock.now += 1.0  # exactly refresh_s old: evaluated again, not cached
    assert settle(d, "a", lambda: False) is False
    release, started, slow = _blocked()
    clock.now += 1.5
    d.decide("a", slow)  # stale, the store is slow
    d.decide("b", slow)
    clock.now += 10.0
    for key in ("c", "d"):
        with pytest.raises(Unavailable) as err:
            d.decide(key, slow)
    assert err.value.message == ("authorization did not decide within 50 ms and no recent "
                                 "decision is cached; retry later")
    release.set()
    assert dict(d.counts) == {"cache": 2, "evaluated": 3, "stale_cache": 2, "timeout": 2}


def test_a_decision_ttl_old_or_older_is_no_longer_used():
    clock = Clock()
    d = decider(clock, deadline_s=0.05, refresh_s=1.0, ttl_s=10.0)
    settle(d, "k", lambda: True)
    clock.now += 10.0
    release, started, slow = _blocked()
    with pytest.raises(Unavailable):
        d.decide("k", slow)
    release.set()


def test_a_failing_evaluation_fails_the_request_and_the_next_one_evaluates_again():
    d = decider(Clock())

    def broken():
        raise RuntimeError("policy store exploded")

    with pytest.raises(RuntimeError, match="policy store exploded"):
        d.decide("k", broken)
    assert d.decide("k", lambda: True) is True and not d._inflight


def test_evaluations_run_on_named_daemon_threads():
    d = decider(Clock(), deadline_s=0.05)
    release, started, slow = _blocked()
    before = set(threading.enumerate())
    with pytest.raises(Unavailable):
        d.decide("k", slow)
    (thread,) = [t for t in threading.enumerate() if t not in before]
    assert thread.name == "authz-decision"
    assert thread.daemon  # a stuck store never holds up the server's exit
    release.set()
    thread.join(10)


def eventually(call, within_s: float = 20.0):
    """``call()`` once it stops answering 503 (an evaluation still under way)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return call()
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_slow_policy_store_on_the_server_never_allows_by_default(tmp_path):
    env = {"AKIDB_FAULT_INJECTION": "1", "AKIDB_AUTHZ_DEADLINE_MS": "100",
           "AKIDB_AUTHZ_CACHE_REFRESH_S": "0"}
    with Node(tmp_path / "n", env=env) as node, node.admin_client(retries=0) as admin:
        admin.create_collection("t/db/c", dimension=2, create_parents=True)
        admin.create_user("t", "dev", "developer")
        admin.create_user("t", "ro", "viewer")
        dev = Client(node.rest_url, admin.create_key("t", "dev")["api_key"], retries=0)
        ro = Client(node.rest_url, admin.create_key("t", "ro")["api_key"], retries=0)
        admin.set_faults(authz_delay_ms=1000)
        with pytest.raises(Unavailable, match="did not decide within 100 ms"):
            dev.upsert("t/db/c", [{"id": "a", "vector": [1, 0]}])  # nothing cached yet
        status, body = dev.transport.request(
            "POST", "/v1/tenants/t/databases/db/collections/c/documents",
            b'{"documents": [{"id": "a", "vector": [1, 0]}]}')
        assert status == 503 and b'"unavailable"' in body
        admin.set_faults(authz_delay_ms=0)
        # the slow evaluation under way finishes in its own time; then decisions flow
        assert eventually(lambda: dev.upsert("t/db/c", [{"id": "a", "vector": [1, 0]}])) == 1
        with pytest.raises(PermissionDenied):
            eventually(lambda: ro.upsert("t/db/c", [{"id": "b", "vector": [0, 1]}]))
        admin.set_faults(authz_delay_ms=3000)
        assert dev.upsert("t/db/c", [{"id": "c", "vector": [0, 1]}]) == 1  # stale allow
        with pytest.raises(PermissionDenied):
            ro.upsert("t/db/c", [{"id": "b", "vector": [0, 1]}])  # stale deny, still deny
        admin.put_policies("t", "")  # a policy change empties the cache
        with pytest.raises(Unavailable):
            dev.upsert("t/db/c", [{"id": "d", "vector": [1, 1]}])
        with pytest.raises(Unavailable):
            ro.upsert("t/db/c", [{"id": "b", "vector": [0, 1]}])
        admin.set_faults(authz_delay_ms=0)
        metrics = admin.metrics()
        assert 'akidb_authz_decisions_total{source="timeout"}' in metrics
        assert sorted(d["id"] for page in admin.iter_documents("t/db/c") for d in page) == \
            ["a", "c"]
        dev.close()
        ro.close()


def test_while_one_request_waits_for_a_refresh_the_others_use_the_cached_decision():
    clock = Clock()
    d = decider(clock, deadline_s=5.0)
    d.decide("k", lambda: True)
    clock.now += 2  # stale: the next request refreshes
    release, started, slow = _blocked()
    waiter = threading.Thread(target=d.decide, args=("k", slow))
    waiter.start()
    assert started.wait(10)
    assert d.decide("k", lambda: False) is True  # answered at once, no second evaluation
    assert d.decide("k", lambda: False) is True
    assert d.counts["stale_cache"] == 2
    release.set()
    waiter.join(10)
