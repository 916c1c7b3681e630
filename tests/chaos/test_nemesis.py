"""Fault schedules (seeded, validated, shrunk), phases and paced latency: the pure
parts of chaos runs, on hand-made inputs."""

from __future__ import annotations

import itertools

import pytest

from akidb.chaos import experiment, nemesis, phases
from akidb.chaos.history import History, Op


def test_a_random_schedule_is_a_function_of_its_seed():
    a = nemesis.random_schedule(11, 20.0, count=5)
    assert a == nemesis.random_schedule(11, 20.0, count=5)
    assert a != nemesis.random_schedule(12, 20.0, count=5)
    assert len(a) == 5 and all(f.kind in nemesis.DEFAULT_RANDOM_KINDS for f in a)
    assert all(x.end_s < y.at_s for x, y in zip(a, a[1:], strict=False))  # one at a time
    assert a[-1].end_s <= 19.0
    assert len(nemesis.random_schedule(11, 2.0, count=5)) < 5  # a short run holds fewer
    with pytest.raises(ValueError, match="unknown fault kinds"):
        nemesis.random_schedule(1, 5.0, kinds=["meteor"])
    exp = experiment.load("random-faults")
    assert exp.schedule(3) == exp.schedule(3) != exp.schedule(4)


def test_shrink_finds_the_fault_that_matters():
    faults = nemesis.random_schedule(2, 30.0, count=6,
                                     kinds=["kill", "pause", "latency", "partition"])
    culprit = faults[2]
    runs = []

    def fails(candidate):
        runs.append(candidate)
        return culprit in candidate

    smaller, n = nemesis.shrink(faults, fails, max_runs=50)
    assert smaller == [culprit] and n == len(runs)
    assert nemesis.shrink(faults, fails, max_runs=2)[1] == 2  # the budget is kept
    always, _ = nemesis.shrink(faults[:2], lambda c: True)
    assert always == []  # fails with no fault at all
    toml = nemesis.to_toml([culprit])
    assert f'kind = "{culprit.kind}"' in toml and f"at_s = {culprit.at_s:g}" in toml


def test_schedules_are_checked_before_anything_runs():
    ok = [nemesis.Fault("kill", 1.0, 1.0), nemesis.Fault("pause", 2.5, 0.5)]
    nemesis.check_schedule(ok, 4.0, 1, lambda need: True)
    cases = [
        ([nemesis.Fault("meteor", 1, 1)], "unknown fault kind 'meteor'"),
        ([nemesis.Fault("kill", 1, 1, node=1)], "names node 1 but the cluster has 1"),
        ([nemesis.Fault("kill", 1, 0)], "must end inside the run"),
        ([nemesis.Fault("kill", 3.5, 1)], "must end inside the run"),
        ([nemesis.Fault("kill", 1, 1), nemesis.Fault("pause", 1.9, 1)], "overlap"),
        ([nemesis.Fault("partition", 1, 1)], "needs the cluster's proxy"),
    ]
    for faults, words in cases:
        with pytest.raises(ValueError, match=words):
            nemesis.check_schedule(faults, 4.0, 1, lambda need: need != "proxy")
    # ending exactly at the run's end is inside it
    nemesis.check_schedule([nemesis.Fault("kill", 3.0, 1.0)], 4.0, 1, lambda n: True)
    nemesis.check_schedule([nemesis.Fault("kill", 1, 1), nemesis.Fault("pause", 2, 1)], 4.0,
                           1, lambda n: True)  # back to back is not an overlap


def test_random_schedules_keep_their_bounds():
    faults = nemesis.random_schedule(5, 30.0, count=20, min_s=0.5, max_s=0.7, lead_s=2.0,
                                     tail_s=3.0, nodes=3)
    assert faults[0].at_s >= 2.0 and faults[-1].end_s <= 27.0
    assert all(0.5 <= f.for_s <= 0.7 for f in faults)
    assert {f.node for f in faults} <= {0, 1, 2} and len({f.node for f in faults}) > 1
    gaps = [b.at_s - a.end_s for a, b in zip(faults, faults[1:], strict=False)]
    assert all(0.3 <= g <= 1.0 + 1e-9 for g in gaps)
    assert all(f.attributes == nemesis.default_attributes(f.kind) for f in faults)
    with pytest.raises(ValueError, match="at least one fault kind"):
        nemesis.random_schedule(1, 5.0, kinds=[])
    assert nemesis.default_attributes("latency") == {"latency": 150, "jitter": 50}
    assert nemesis.default_attributes("kill") == {}
    assert nemesis.Fault("kill", 1.25, 2).label == "kill@1.25s"


def _op(index, f, invoke, complete, status="ok", process=0, scheduled=None):
    return Op(index=index, process=process, f=f, keys=["a"] if f != "search" else [],
              values=[None] if f != "search" else [], invoke=invoke, complete=complete,
              status=status, scheduled=scheduled)


def test_phases_cut_the_run_at_the_faults_as_applied():
    faults = [nemesis.Fault("kill", 1.0, 1.0), nemesis.Fault("pause", 3.0, 0.5)]
    assert phases.windows(faults, 5.0) == [
        ("before", 0.0, 1.0), ("during kill#1", 1.0, 2.0), ("after kill#1", 2.0, 3.0),
        ("during pause#2", 3.0, 3.5), ("after pause#2", 3.5, 5.0)]
    assert phases.windows([], 5.0) == [("run", 0.0, 5.0)]
    h = History(ops=[_op(0, "upsert", 0.1, 0.2), _op(1, "get", 0.5, 0.6),
                     _op(2, "upsert", 1.2, 1.9, "info"), _op(3, "upsert", 2.1, 2.4, "fail"),
                     _op(4, "upsert", 2.5, 2.6), _op(5, "search", 5.2, 5.3)])
    out = {p["phase"]: p for p in phases.phases(h, faults, 5.0, {5: 0.5})}
    assert out["before"]["operations"] == 2 and out["before"]["availability"] == 1.0
    assert out["before"]["p50_ms"] == pytest.approx(100.0)
    assert out["during kill#1"]["indeterminate"] == 1 and out["during kill#1"]["ok"] == 0
    assert out["during kill#1"]["p50_ms"] is None
    assert out["after kill#1"]["failed"] == 1 and out["after kill#1"]["availability"] == 0.5
    assert out["after pause#2"]["operations"] == 1  # invoked after the nominal end: last phase
    assert out["after pause#2"]["recall"] == 0.5 and out["during pause#2"]["operations"] == 0
    assert phases.recovery_times(h, faults) == {"kill#1": pytest.approx(0.6),
                                                "pause#2": None}


def test_gate_metrics_per_phase_need_two_samples():
    faults = [nemesis.Fault("kill", 1.0, 1.0)]
    h = History(ops=[_op(i, "upsert", 0.1 * i, 0.1 * i + 0.01) for i in range(8)]
                + [_op(8, "search", 0.2, 0.25), _op(9, "search", 0.3, 0.35)])
    m = phases.metrics(h, faults, 3.0, {8: 1.0, 9: 0.5})
    assert m["chaos_before_latency_ms"]["direction"] == "lower"
    assert len(m["chaos_before_latency_ms"]["samples"]) == 10
    assert m["chaos_before_availability"] == {"unit": "ratio", "direction": "higher",
                                              "samples": [1.0, 1.0]}
    assert m["chaos_before_recall"]["samples"] == [1.0, 0.5]
    assert "chaos_during_kill1_latency_ms" not in m  # nothing ran there


def test_paced_latency_counts_from_when_the_operation_was_due():
    late = _op(0, "get", invoke=2.0, complete=2.01, scheduled=1.0)
    assert late.latency_ms == pytest.approx(1010.0)
    assert _op(1, "get", 2.0, 2.01).latency_ms == pytest.approx(10.0)
    early = _op(2, "get", invoke=2.0, complete=2.01, scheduled=2.5)  # never negative
    assert early.latency_ms == pytest.approx(10.0)


def test_as_applied_takes_the_real_times():
    planned = [nemesis.Fault("kill", 1.0, 1.0), nemesis.Fault("pause", 3.0, 0.5)]
    log = [{"at_s": 1.01, "action": "start kill node0"}, {"at_s": 2.3, "action": "end kill node0"},
           {"at_s": 2.0, "action": "kill node0"},
           {"at_s": 3.4, "action": "start pause node0"}, {"at_s": 3.9, "action": "end pause node0"}]
    applied = experiment.as_applied(planned, log)
    assert [(f.at_s, round(f.for_s, 3)) for f in applied] == [(1.01, 1.29), (3.4, 0.5)]
    assert experiment.as_applied(planned, log[:2]) == planned  # incomplete: the plan


def test_faults_describe_themselves():
    f = nemesis.Fault("slow_authz", 1.5, 2.0, 1, {"authz_delay_ms": 400})
    assert f.to_dict() == {"kind": "slow_authz", "at_s": 1.5, "for_s": 2.0, "node": 1,
                           "attributes": {"authz_delay_ms": 400}}
    assert f.end_s == 3.5
    assert nemesis.default_attributes("slow_authz") == {"authz_delay_ms": 400}
    two = [nemesis.Fault("latency", 1, 0.5, 0, {"latency": 100, "jitter": 20}),
           nemesis.Fault("kill", 2.25, 1)]
    assert nemesis.to_toml(two) == (
        '[[fault]]\nkind = "latency"\nat_s = 1\nfor_s = 0.5\nnode = 0\n'
        'attributes = { latency = 100, jitter = 20 }\n\n'
        '[[fault]]\nkind = "kill"\nat_s = 2.25\nfor_s = 1\nnode = 0\nattributes = {  }\n')


def test_the_default_random_schedule():
    seen_nodes, lengths, ends, counts = set(), [], [], []
    for seed in range(200):
        faults = nemesis.random_schedule(seed, 4.0)
        counts.append(len(faults))
        if faults:
            assert faults[0].at_s == 0.5  # the lead before the first fault
        for f in faults:
            seen_nodes.add(f.node)
            lengths.append(f.for_s)
            ends.append(f.end_s)
            assert round(f.at_s, 3) == f.at_s and round(f.for_s, 3) == f.for_s
        gaps = [b.at_s - a.end_s for a, b in zip(faults, faults[1:], strict=False)]
        assert all(round(g, 3) == pytest.approx(g, abs=1e-9) for g in gaps)
    assert seen_nodes == {0}
    assert min(lengths) >= 0.3 and max(lengths) <= 1.2
    assert max(ends) <= 3.0 and max(ends) > 2.0  # a 1 s tail, and the room before it used
    long_run = nemesis.random_schedule(1, 100.0)
    assert len(long_run) == 3


def test_shrink_tries_each_fault_once_per_pass_and_keeps_its_budget():
    faults = [nemesis.Fault(k, float(i * 2), 1.0) for i, k in enumerate("abc")]
    tried, lines = [], []

    def never(candidate):
        tried.append([f.kind for f in candidate])
        return False

    smaller, runs = nemesis.shrink(faults, never, max_runs=50, progress=lines.append)
    assert smaller == faults and runs == 3
    assert tried == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert lines == ["shrink run 1: a@0s, b@2s", "shrink run 2: a@0s, c@4s",
                     "shrink run 3: b@2s, c@4s"]
    ten = [nemesis.Fault("kill", float(i * 2), 1.0) for i in range(10)]
    assert nemesis.shrink(ten, lambda c: False)[1] == 8  # the default budget
    lines.clear()
    nemesis.shrink(faults[:1], lambda c: True, progress=lines.append)
    assert lines == ["shrink run 1: no faults"]


def test_an_overlap_is_named():
    with pytest.raises(ValueError) as err:
        nemesis.check_schedule([nemesis.Fault("kill", 1, 1), nemesis.Fault("pause", 1.5, 1)],
                               5.0, 1, lambda n: True)
    assert str(err.value) == ("faults kill@1s and pause@1.5s overlap; schedule them one "
                              "after another")
    with pytest.raises(ValueError) as err:
        nemesis.random_schedule(1, 5.0, kinds=[])
    assert str(err.value) == "a random schedule needs at least one fault kind"


def test_a_seed_means_the_same_schedule_in_every_version():
    """Seeds in bug reports must keep replaying: this one is pinned."""
    assert [f.to_dict() for f in nemesis.random_schedule(7, 10.0)] == [
        {"kind": "partition", "at_s": 0.5, "for_s": 0.454, "node": 0, "attributes": {}},
        {"kind": "kill", "at_s": 1.92, "for_s": 0.374, "node": 0, "attributes": {}},
        {"kind": "disk_full", "at_s": 2.968, "for_s": 0.359, "node": 0, "attributes": {}}]


def test_a_fault_may_end_exactly_where_the_tail_begins():
    (f,) = nemesis.random_schedule(1, 2.0, count=1, min_s=0.5, max_s=0.5)
    assert (f.at_s, f.end_s) == (0.5, 1.0)


def test_schedule_parameters_are_taken_exactly():
    faults = nemesis.random_schedule(3, 60.0, count=5, lead_s=2.0, min_s=2.0, max_s=2.0)
    assert faults[0].at_s == 2.0 and [f.for_s for f in faults] == [2.0] * 5
    assert nemesis.random_schedule(1, 20.0, count=1, lead_s=18.51, min_s=0.5,
                                   max_s=0.5) == []  # would end 10 ms into the tail
    gaps = [b.at_s - a.end_s for seed in range(1000)
            for a, b in itertools.pairwise(nemesis.random_schedule(seed, 1000.0, count=10))]
    assert round(min(gaps), 6) == 0.3 and round(max(gaps), 6) == 1.0  # both ends drawn
