"""The model checker on hand-written histories: each kind of anomaly is reported with
the operations involved, and what concurrency or indeterminacy allows is not."""

from __future__ import annotations

import numpy as np
import pytest

from akidb.chaos.checker import Checker, KeyModel, Write, check, matches
from akidb.chaos.history import History, Hit, Value


class H:
    """A history builder: times are plain numbers, vectors are 2-d."""

    def __init__(self) -> None:
        self.h = History()

    def put(self, key, value, inv, cmp, status="ok", vector=(0.0, 0.0), bucket=0):
        self.h.add_value(value, Value(key, list(vector), {"v": value, "bucket": bucket}))
        return self.h.record(process=0, f="upsert", keys=[key], values=[value], invoke=inv,
                             complete=cmp, status=status)

    def delete(self, key, inv, cmp, status="ok"):
        return self.h.record(process=0, f="delete", keys=[key], values=[None], invoke=inv,
                             complete=cmp, status=status)

    def get(self, key, value, inv, cmp, final=False):
        return self.h.record(process=1, f="get", keys=[key], values=[value], invoke=inv,
                             complete=cmp, status="ok", final=final)

    def search(self, query, hits, inv, cmp, k=3, flt=None):
        return self.h.record(process=2, f="search", keys=[], values=[], invoke=inv,
                             complete=cmp, status="ok", vector=list(query), filter=flt, k=k,
                             hits=[Hit(key, value, d) for key, value, d in hits])

    def check(self):
        return check(self.h)


def kinds(result):
    return {k: v for k, v in result.counts.items() if v}


def test_a_sequential_history_is_valid():
    b = H()
    b.put("a", "a1", 0, 1)
    b.get("a", "a1", 2, 3)
    b.put("a", "a2", 4, 5)
    b.get("a", "a2", 6, 7)
    b.delete("a", 8, 9)
    b.get("a", None, 10, 11)
    b.get("b", None, 10, 11)  # never written: absent is right
    b.get("a", None, 12, 12, final=True)
    r = b.check()
    assert r.valid and kinds(r) == {} and r.anomalies == []
    assert r.acknowledged == 3 and r.reads == 4 and r.indeterminate == 0


def test_a_lost_acknowledged_write_is_reported_with_its_write():
    b = H()
    w = b.put("a", "a1", 0, 1)
    final = b.get("a", None, 5, 5, final=True)
    r = b.check()
    assert not r.valid and kinds(r) == {"lost": 1}
    (a,) = r.anomalies
    assert (a.kind, a.key, a.op) == ("lost", "a", final.index) and w.index in a.writes
    assert "'a1'" in a.detail


def test_the_final_read_of_an_older_value_is_a_lost_write():
    b = H()
    b.put("a", "a1", 0, 1)
    newer = b.put("a", "a2", 2, 3)
    b.get("a", "a1", 5, 5, final=True)
    r = b.check()
    assert kinds(r) == {"lost": 1} and newer.index in r.anomalies[0].writes


def test_concurrent_writes_may_land_in_either_order():
    for final in ("a1", "a2"):
        b = H()
        b.put("a", "a1", 0, 2)
        b.put("a", "a2", 1, 3)
        b.get("a", final, 5, 5, final=True)
        assert b.check().valid, final


def test_a_stale_read_after_an_acknowledged_newer_write():
    b = H()
    b.put("a", "a1", 0, 1)
    b.put("a", "a2", 2, 3)
    b.get("a", "a1", 2.5, 4)  # overlaps the newer write: either is fine
    stale = b.get("a", "a1", 4, 5)
    r = b.check()
    assert kinds(r) == {"stale_reads": 1} and r.anomalies[0].op == stale.index


def test_read_your_writes():
    b = H()
    b.put("a", "a1", 0, 1)
    b.get("a", None, 0.5, 1.5)  # concurrent with the write: absent is allowed
    b.get("a", None, 2, 3)
    r = b.check()
    assert kinds(r) == {"stale_reads": 1} and "nothing" in r.anomalies[0].detail


def test_a_deleted_id_that_comes_back_is_resurrected():
    b = H()
    b.put("a", "a1", 0, 1)
    d = b.delete("a", 2, 3)
    b.get("a", "a1", 4, 5)
    b.get("a", "a1", 6, 6, final=True)
    r = b.check()
    assert kinds(r) == {"resurrected": 2}
    assert all(d.index in a.writes for a in r.anomalies)


def test_a_write_after_the_delete_is_no_resurrection():
    b = H()
    b.put("a", "a1", 0, 1)
    b.delete("a", 2, 3)
    b.put("a", "a2", 4, 5)
    b.get("a", "a2", 6, 7)
    b.get("a", None, 3.5, 4.5)
    assert b.check().valid


def test_indeterminate_writes_are_allowed_either_way():
    for seen in ("a1", None):
        b = H()
        b.put("a", "a1", 0, 1, status="info")
        b.get("a", seen, 9, 9, final=True)
        r = b.check()
        assert r.valid and r.indeterminate == 1 and r.acknowledged == 0
    b = H()
    b.put("a", "a1", 0, 1)
    b.delete("a", 2, 3, status="info")
    b.get("a", "a1", 9, 9, final=True)
    assert b.check().valid
    b = H()
    b.put("a", "a1", 0, 1, status="fail")  # definitely not applied: absent is required
    b.get("a", None, 9, 9, final=True)
    assert b.check().valid and b.check().failed == 1


def test_a_failed_write_that_shows_up_is_a_phantom():
    b = H()
    b.put("a", "a1", 0, 1, status="fail")
    b.get("a", "a1", 9, 9, final=True)
    assert kinds(b.check()) == {"phantoms": 1}


@pytest.mark.parametrize("seen, words", [("?", "never written"),
                                         ("!a1", "contents differ"),
                                         ("b1", "written to 'b'")])
def test_values_never_written_are_phantoms(seen, words):
    b = H()
    b.put("a", "a1", 0, 1)
    b.put("b", "b1", 0, 1)
    b.get("a", seen, 2, 3)
    r = b.check()
    assert kinds(r) == {"phantoms": 1} and words in r.anomalies[0].detail


def test_reading_a_value_before_its_write_began_is_a_phantom():
    b = H()
    b.get("a", "a1", 0, 1)
    b.put("a", "a1", 2, 3)
    r = b.check()
    assert kinds(r) == {"phantoms": 1} and "before its write began" in r.anomalies[0].detail


def _scene():
    b = H()
    b.put("near", "n1", 0, 1, vector=(1.0, 0.0), bucket=1)
    b.put("mid", "m1", 0, 1, vector=(2.0, 0.0), bucket=2)
    b.put("far", "f1", 0, 1, vector=(5.0, 0.0), bucket=1)
    return b


def test_searches_that_agree_with_the_model_are_valid_with_recall_1():
    b = _scene()
    b.search((0.0, 0.0), [("near", "n1", 1.0), ("mid", "m1", 2.0)], 2, 3, k=2)
    b.search((0.0, 0.0), [("near", "n1", 1.0), ("far", "f1", 5.0)], 2, 3, k=5,
             flt={"bucket": 1})
    r = b.check()
    assert r.valid and r.searches == 2 and r.recall == pytest.approx(1.0)


@pytest.mark.parametrize("hits, flt, words", [
    ([("gone", "g1", 0.5)], None, "after an acknowledged delete"),
    ([("mid", "m1", 2.0)], {"bucket": 1}, "does not match"),
    ([("near", "n1", 1.5)], None, "vector is at 1"),
    ([("near", None, 1.0)], None, "carries no value id"),
    ([("near", "m1", 2.0)], None, "written to 'mid'"),
])
def test_wrong_search_hits_are_search_mismatches(hits, flt, words):
    b = _scene()
    b.put("gone", "g1", 0, 1, vector=(0.5, 0.0))
    b.delete("gone", 1.2, 1.5)
    b.search((0.0, 0.0), hits, 2, 3, k=1, flt=flt)
    r = b.check()
    assert kinds(r) == {"search_mismatches": 1} and words in r.anomalies[0].detail


def test_recall_counts_stable_documents_the_server_missed():
    b = _scene()
    # "near" is closer than the last hit and was stable, so missing it costs recall.
    b.search((0.0, 0.0), [("mid", "m1", 2.0), ("far", "f1", 5.0)], 2, 3, k=2)
    r = b.check()
    assert r.valid and r.recall == pytest.approx(0.5)


def test_documents_written_during_a_search_do_not_count_for_recall():
    b = _scene()
    b.put("new", "x1", 1.5, 2.5, vector=(0.1, 0.0))
    b.search((0.0, 0.0), [("near", "n1", 1.0), ("mid", "m1", 2.0)], 2, 3, k=2)
    assert b.check().recall == pytest.approx(1.0)
    c = _scene()
    c.put("new", "x1", 1.5, 1.8, vector=(0.1, 0.0))  # done before the search: it counts
    c.search((0.0, 0.0), [("near", "n1", 1.0), ("mid", "m1", 2.0)], 2, 3, k=2)
    assert c.check().recall == pytest.approx(0.5)


def test_fewer_hits_than_k_must_include_every_stable_match():
    b = _scene()
    b.search((0.0, 0.0), [("near", "n1", 1.0)], 2, 3, k=10, flt={"bucket": 1})
    assert b.check().recall == pytest.approx(0.5)


def test_determinate_follows_the_order_of_acknowledged_writes():
    def w(op, value, inv, cmp, ok=True):
        return Write(op, value, inv, cmp if ok else float("inf"), ok)

    m = KeyModel([w(0, "x", 0, 1), w(1, "y", 2, 3)])
    assert m.determinate(4, 5) == (True, "y")
    assert m.determinate(1.5, 1.8) == (True, "x")
    assert m.determinate(-1, -0.5) == (True, None)
    assert m.determinate(2.5, 4)[0] is False  # y completes inside
    assert m.determinate(0.5, 0.8)[0] is False  # x in flight
    overlapping = KeyModel([w(0, "x", 0, 2), w(1, "y", 1, 3)])
    assert overlapping.determinate(4, 5) == (False, None)  # either may be last
    later = KeyModel([w(0, "x", 0, 2), w(1, "y", 1, 3), w(2, None, 4, 5)])
    assert later.determinate(6, 7) == (True, None)  # the delete orders after both
    assert KeyModel([w(0, "x", 0, 1), w(1, "y", 2, 3, ok=False)]).determinate(9, 10)[0] \
        is False
    assert KeyModel([w(0, "x", 0, 1), w(1, "y", 2, 3, ok=False)]).determinate(1.5, 1.9) \
        == (True, "x")


def test_matches_understands_the_workload_filters_only():
    assert matches({"bucket": 1}, {"bucket": 1}) and not matches({"bucket": 2}, {"bucket": 1})
    assert matches({"bucket": 2}, {"bucket": {"$in": [1, 2]}})
    assert not matches({"bucket": 3}, {"bucket": {"$in": [1, 2]}})
    assert matches({"bucket": 3}, None) and matches({}, {})
    with pytest.raises(ValueError, match="equality and \\$in"):
        matches({"bucket": 3}, {"bucket": {"$gt": 1}})


def test_a_saved_history_checks_the_same(tmp_path):
    b = _scene()
    b.delete("mid", 1.2, 1.5)
    b.put("near", "n2", 2, 3, status="info")
    b.search((0.0, 0.0), [("mid", "m1", 2.0)], 4, 5, k=1)
    b.get("far", None, 6, 6, final=True)
    before = b.check().to_dict()
    b.h.save(tmp_path / "h.jsonl")
    loaded = History.load(tmp_path / "h.jsonl")
    assert Checker(loaded).check().to_dict() == before
    assert before["search_mismatches"] == 1 and before["lost"] == 1
    assert before["indeterminate"] == 1 and before["valid"] is False
    (tmp_path / "bad.jsonl").write_text('{"op": {"nope": 1}}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        History.load(tmp_path / "bad.jsonl")


def test_values_are_unique_per_run():
    h = History()
    h.add_value("v", Value("a", [0.0], {"v": "v"}))
    with pytest.raises(ValueError, match="written twice"):
        h.add_value("v", Value("b", [0.0], {"v": "v"}))


def test_the_checker_keeps_up_with_a_long_history():
    """10k operations over 200 keys check in one pass (no quadratic blow-up per read)."""
    rng = np.random.default_rng(0)
    b = H()
    t = 0.0
    for n in range(10_000):
        key = f"k{rng.integers(200)}"
        t += 1
        if n % 3 == 0:
            b.put(key, f"v{n}", t, t + 0.5, vector=tuple(rng.standard_normal(2)))
        elif n % 3 == 1:
            b.get(key, None, t, t + 0.5)
        else:
            b.h.record(process=2, f="search", keys=[], values=[], invoke=t, complete=t + 0.5,
                       status="ok", vector=[0.0, 0.0], filter=None, k=3, hits=[])
    r = b.check()
    assert r.searches == 3333 and r.reads == 3333


def test_a_long_concurrent_write_does_not_hide_a_replaced_value():
    """The write that completed last started first: the one before it still replaced
    the value a later read shows."""
    b = H()
    b.put("a", "a1", 0, 1)
    b.put("a", "a2", 2, 3)  # strictly after a1: a1 is replaced
    b.put("a", "a3", 0.5, 10)  # overlaps both, completes last
    stale = b.get("a", "a1", 11, 12)
    r = b.check()
    assert kinds(r) == {"stale_reads": 1} and r.anomalies[0].op == stale.index
    assert r.anomalies[0].writes == [0, 1]


def test_touching_intervals_are_concurrent():
    """A write that begins the instant another completes is not after it; a read that
    ends the instant a write begins cannot see it."""
    b = H()
    b.put("a", "a1", 0, 1)
    b.put("a", "a2", 1, 2)
    b.get("a", "a1", 3, 4)  # a2 may have taken effect first
    assert b.check().valid
    c = H()
    c.get("a", "a1", 0, 1)
    c.put("a", "a1", 1, 2)
    r = c.check()
    assert kinds(r) == {"phantoms": 1}
    assert r.anomalies[0].detail == "read value 'a1' of 'a' before its write began"
    d = H()
    d.put("a", "a1", 0, 1)
    d.delete("a", 3, 4)
    d.get("a", None, 2, 3)  # ends as the delete begins: the delete cannot explain it
    r = d.check()
    assert kinds(r) == {"stale_reads": 1}


def test_an_indeterminate_write_may_land_after_a_later_acknowledged_one():
    b = H()
    b.put("a", "a1", 0, 1, status="info")
    b.put("a", "a2", 2, 3)
    b.get("a", "a1", 9, 9, final=True)
    assert b.check().valid


def test_anomalies_name_the_writes_involved_and_say_what_happened():
    b = H()
    b.put("a", "a1", 0, 1)  # op 0
    b.put("a", "a2", 2, 3)  # op 1
    b.get("a", "a1", 4, 5)  # op 2
    (a,) = b.check().anomalies
    assert a.writes == [0, 1]
    assert a.detail == "read value 'a1' of 'a' after acknowledged write(s) 'a2' had replaced it"
    c = H()
    c.put("a", "a1", 0, 1)  # op 0
    c.delete("a", 2, 3)  # op 1
    c.put("a", "a2", 4, 5)  # op 2
    c.get("a", None, 6, 7)  # op 3
    (a,) = c.check().anomalies
    assert a.writes == [1, 2] and a.detail == (
        "read nothing of 'a' after acknowledged write(s) 'a2' had replaced it")
    d = H()
    d.put("a", "a1", 0, 1)
    d.delete("a", 2, 3)
    d.delete("a", 3.5, 4)  # an acknowledged delete after the first
    d.get("a", None, 5, 6)
    assert d.check().valid
    e = H()
    e.put("b", "b1", 0, 1)
    e.get("a", "?", 2, 3)
    e.get("a", "!b1", 2, 3)
    details = [x.detail for x in e.check().anomalies]
    assert details == ["read value '?' of 'a': it was never written",
                       "read value '!b1' of 'a': its contents differ from what was written"]


def test_search_mismatches_name_the_hit_and_its_writes():
    b = _scene()
    gone = b.put("gone", "g1", 0, 1, vector=(0.5, 0.0))
    d = b.delete("gone", 1.2, 1.5)
    b.search((0.0, 0.0), [("gone", "g1", 0.5)], 2, 3, k=1)
    (a,) = b.check().anomalies
    assert (a.kind, a.key, a.writes) == ("search_mismatches", "gone", [gone.index, d.index])
    c = _scene()
    c.search((0.0, 0.0), [("near", "n1", 1.5)], 2, 3, k=1)
    (a,) = c.check().anomalies
    assert a.writes == [] and a.detail == "hit 'near' at distance 1.5, but its vector is at 1"


def test_distances_are_measured_from_the_query():
    b = _scene()
    b.search((1.0, 3.0), [("near", "n1", 3.0), ("mid", "m1", 3.1622776601683795)], 2, 3, k=2)
    r = b.check()
    assert r.valid and r.recall == pytest.approx(1.0)


def test_the_distance_tolerance_scales_with_the_distance():
    far = H()
    far.put("x", "x1", 0, 1, vector=(10.0, 0.0))
    far.search((0.0, 0.0), [("x", "x1", 10.005)], 2, 3, k=1)  # within 1e-3 of 10
    assert far.check().valid
    near = H()
    near.put("x", "x1", 0, 1, vector=(1.0, 0.0))
    near.search((0.0, 0.0), [("x", "x1", 1.0015)], 2, 3, k=1)  # beyond 1e-3 of 1
    assert kinds(near.check()) == {"search_mismatches": 1}
    edge = H()
    edge.put("x", "x1", 0, 1, vector=(1.0, 0.0))
    edge.search((0.0, 0.0), [("x", "x1", 1.5)], 2, 3, k=1)
    assert Checker(edge.h, distance_tolerance=0.5).check().valid  # exactly at the bound


def test_recall_ignores_ties_with_the_last_hit_and_unstable_hits():
    b = H()
    b.put("p", "p1", 0, 1, vector=(2.0, 0.0))
    b.put("q", "q1", 0, 1, vector=(0.0, 2.0))  # as far as p: a tie
    b.put("r", "r1", 0, 1, vector=(1.998, 0.0))  # closer, by exactly the tolerance
    b.search((0.0, 0.0), [("q", "q1", 2.0)], 2, 3, k=1)
    assert b.check().recall is None  # nothing clearly closer than the hit: no expectation
    c = H()
    c.put("p", "p1", 0, 1, vector=(1.0, 0.0))
    c.put("s", "s1", 0, 1, vector=(2.0, 0.0))
    c.put("u", "u1", 1.5, 2.5, vector=(1.5, 0.0))  # written during the search
    c.search((0.0, 0.0), [("p", "p1", 1.0), ("u", "u1", 1.5)], 2, 3, k=2)
    assert c.check().recall == pytest.approx(1.0)  # s is farther than the last hit
    d = H()
    d.put("p", "p1", 0, 1, vector=(0.5, 0.0))
    d.put("s", "s1", 0, 1, vector=(0.9, 0.0))
    d.search((0.0, 0.0), [("p", "p1", 0.5), ("t", None, 1.0)], 2, 3, k=2)
    assert d.check().recall == pytest.approx(0.5)  # s was clearly closer than 1.0


def test_the_result_has_the_contract_fields():
    r = _scene().check().to_dict()
    assert list(r) == ["acknowledged", "lost", "stale_reads", "resurrected", "phantoms",
                       "search_mismatches", "indeterminate", "valid", "failed", "reads",
                       "searches", "recall", "anomalies"]
    assert (r["acknowledged"], r["failed"], r["reads"], r["searches"]) == (3, 0, 0, 0)


def test_a_history_whose_keys_and_values_disagree_is_refused(tmp_path):
    path = tmp_path / "h.jsonl"
    path.write_text('{"op": {"index": 0, "process": 0, "f": "get", "keys": ["a", "b"], '
                    '"values": [null], "invoke": 0, "complete": 1, "status": "ok"}}\n')
    with pytest.raises(ValueError, match="h.jsonl:1: .*keys and values differ"):
        History.load(path)


def test_boundaries_of_what_replaced_a_value_and_what_is_stable():
    b = H()
    b.put("a", "a1", 0, 1)  # op 0
    b.put("a", "a2", 1, 2)  # op 1: touching a1, so not after it
    b.put("a", "a3", 1.5, 2.5)  # op 2: after a1
    b.get("a", "a1", 3, 4)
    (a,) = b.check().anomalies
    assert a.writes == [0, 2]  # a2 began as a1 completed: it did not replace it
    assert a.detail == "read value 'a1' of 'a' after acknowledged write(s) 'a3' had replaced it"
    c = H()
    c.put("a", "a1", 0, 1)
    c.put("a", "a2", 2, 3)
    c.put("a", "a3", 2.5, 3.5)
    c.get("a", "a1", 4, 5)
    assert c.check().anomalies[0].detail == (
        "read value 'a1' of 'a' after acknowledged write(s) 'a2', 'a3' had replaced it")

    def w(op, value, inv, cmp, ok=True):
        return Write(op, value, inv, cmp if ok else float("inf"), ok)

    x = w(0, "x", 0, 1)
    assert KeyModel([x, w(1, "y", 3, 9, ok=False)]).determinate(2, 3) == (True, "x")
    assert KeyModel([x, w(1, "y", 3, 4)]).determinate(2, 3) == (True, "x")  # y starts at end
    long_write = KeyModel([x, w(1, "y", 3, 4), w(2, "z", 2.5, 10)])
    assert long_write.determinate(2, 2.8) == (False, None)  # z began inside, finishes late


def test_recall_tolerance_has_a_floor_of_one():
    b = H()
    b.put("p", "p1", 0, 1, vector=(0.9985, 0.0))  # clearly closer than 1.0 at 1e-3
    b.search((0.0, 0.0), [("q", None, 1.0)], 2, 3, k=1)
    assert b.check().recall == 0.0
