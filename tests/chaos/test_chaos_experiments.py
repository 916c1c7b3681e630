"""Chaos experiments end to end on the real server, and the checker catching what it
must: a node that loses acknowledged writes, a tampered store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from akidb.bench import gate
from akidb.chaos import experiment, workload
from akidb.chaos.checker import check
from akidb.chaos.history import History, Value
from akidb.harness import Node


def _ran(result, tmp_path, name):
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["passed"] == result["passed"] and saved["checker"] == result["checker"]
    assert "<svg class='timeline'" in (tmp_path / f"{name}.html").read_text()
    assert History.load(tmp_path / f"{name}.history.jsonl").ops


@pytest.mark.parametrize("name", ["mixed-kill9", "random-faults", "log-damage", "partition",
                                  "paced-faults", "kill9-ingest"])
def test_builtin_experiments_pass(name, tmp_path):
    exp = experiment.load(name)
    result = experiment.run(exp, tmp_path, seed=exp.seed, name=name, source=name)
    assert result["passed"], experiment.render(result)
    c = result["checker"]
    assert c["valid"] and c["acknowledged"] > 0
    assert all(c[k] == 0 for k in ("lost", "stale_reads", "resurrected", "phantoms",
                                   "search_mismatches"))
    assert 0 < result["availability"] < 1  # the fault was felt, and service came back
    if exp.workload.keys:  # a mixed workload: every kind of operation was judged
        assert c["reads"] > 0 and c["searches"] > 0 and c["recall"] > 0.5
        assert set(result["operations"]) == {"upsert", "delete", "get", "search"}
    names = [p["phase"] for p in result["phases"]]
    assert names[0] == "before" and names[1].startswith("during ")
    during = [p for p in result["phases"] if p["phase"].startswith("during ")]
    assert len(during) == len(result["schedule"]) > 0
    # every operation of the run is in exactly one phase
    assert sum(p["operations"] for p in result["phases"]) == sum(
        sum(v.values()) for v in result["operations"].values())
    assert any(m.endswith("_latency_ms") for m in result["metrics"])
    _ran(result, tmp_path, name)
    metrics = gate.load_metrics(tmp_path / f"{name}.json")  # the gate reads the result
    assert not any(v.regression for v in gate.compare(metrics, metrics, {}))
    if name == "log-damage":
        logged = {k: v for a in result["actions"] for k, v in a.items()}
        assert logged["torn_tail_reported"] is True
        assert logged["corruption_detected"] is True


@pytest.mark.parametrize("name", ["disk-full", "slow-authz", "embedding-outage",
                                  "object-store-outage"])
def test_failpoint_and_embedder_experiments_pass(name, tmp_path):
    result = experiment.run(experiment.load(name), tmp_path, name=name)
    assert result["passed"], experiment.render(result)
    c = result["checker"]
    assert c["valid"] and c["acknowledged"] > 0
    during = next(p for p in result["phases"] if p["phase"].startswith("during "))
    if name == "disk-full":
        assert during["failed"] > 0 and during["availability"] < 1  # writes refused meanwhile
        assert during["ok"] > 0  # while reads went on
    if name == "slow-authz":  # served from cached decisions; the viewer never got in
        denied = result["denied_clients"]
        assert denied["attempts"] > 0 and denied["allowed"] == 0
        assert set(denied["refused"]) <= {"PermissionDenied", "Unavailable"}
        assert result["checks"]["no_wrongful_allow"] and during["availability"] >= 0.9
    if name == "object-store-outage":  # shipping stalled, the data path did not
        end = next(a for a in result["actions"] if a["action"].startswith("end "))
        assert end["shipping_state"] == "retrying"
        assert result["checks"]["shipping_caught_up"]
        assert result["object_store"]["backlog_objects"] == 0
        assert result["object_store"]["uploaded_objects"] > 0
    if name == "embedding-outage":
        assert result["checks"]["embedder_healthy_after"]
        assert result["availability"] == 1.0  # vector calls never noticed the outage
    _ran(result, tmp_path, name)


def test_failpoints_on_a_live_server(tmp_path):
    from akidb.server.errors import BadRequest, NotFound, Unavailable

    with Node(tmp_path / "off") as plain, plain.admin_client() as c:
        with pytest.raises(NotFound, match="AKIDB_FAULT_INJECTION=1"):
            c.set_faults(disk_full=1)
    with Node(tmp_path / "on", env={"AKIDB_FAULT_INJECTION": "1"}) as node, \
            node.admin_client(retries=0) as c:
        c.create_collection("t/db/c", dimension=2, create_parents=True)
        c.upsert("t/db/c", [{"id": "a", "vector": [1, 0]}])
        with pytest.raises(BadRequest, match="unknown failpoint"):
            c.set_faults(disk_ful=1)
        with pytest.raises(BadRequest, match="0..1"):
            c.set_faults(disk_full=2, authz_delay_ms=5)
        assert c.request("GET", "/v1/admin/faults")["faults"]["authz_delay_ms"] == 0
        c.set_faults(disk_full=1)
        with pytest.raises(Unavailable, match="No space left on device"):
            c.upsert("t/db/c", [{"id": "b", "vector": [0, 1]}])
        assert c.search("t/db/c", [1, 0], k=5).ids == ["a"]  # reads unaffected
        assert c.set_faults(disk_full=0, authz_delay_ms=200)["authz_delay_ms"] == 200
        assert c.upsert("t/db/c", [{"id": "b", "vector": [0, 1]}]) == 1  # (see test_authz_deadline)
        c.set_faults(authz_delay_ms=0)
        assert c.get_collection("t/db/c")["count"] == 2


def test_a_failed_hypothesis_exits_1(tmp_path):
    strict = tmp_path / "strict.toml"
    strict.write_text("""
name = "partition with a promise it cannot keep"
[workload]
writers = 1
duration_s = 2.0
[[method]]
action = "partition"
at_s = 0.5
[[method]]
action = "heal"
at_s = 1.2
[hypothesis]
min_availability = 1.0
""")
    run = subprocess.run([sys.executable, "-m", "akidb", "chaos", "run", str(strict),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert (tmp_path / "out" / "strict.json").exists()
    assert "FAILED" in run.stdout and "| availability | FAILED |" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "akidb", "chaos", "run", "no-such-thing"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "kill9-ingest" in bad.stderr


MIXED = workload.Workload(clients=2, batch=3, dimension=4, keys=20, seed=5,
                          mix={"upsert": 3, "delete": 1, "get": 2, "search": 1,
                               "filtered_search": 1})


def _run_workload(node: Node, history: History, ops_per_client: int) -> None:
    """The mixed workload against a live node until every client did enough work."""
    stop = threading.Event()
    with node.admin_client() as admin:
        admin.create_collection("c/db/x", dimension=4, metric="l2", create_parents=True)
    threads = workload.start(lambda _: node.admin_client(retries=0), "c/db/x", MIXED, history,
                             stop, t0=0.0)
    deadline = threading.Event()
    while not deadline.wait(0.05):
        done = [sum(o.process == p for o in history.ops) for p in range(MIXED.clients)]
        if min(done) >= ops_per_client:
            break
    stop.set()
    for t in threads:
        t.join(10)


def test_checker_reports_lost_resurrected_and_phantom_documents_on_a_real_store(tmp_path):
    with Node(tmp_path / "d", fsync="none") as node, node.admin_client() as admin:
        history = History()
        _run_workload(node, history, 40)
        clean = History(ops=list(history.ops), values=dict(history.values))
        workload.final_read(admin, "c/db/x", clean, t0=0.0)
        assert check(clean).valid, check(clean).anomalies[:3]

        def recorded(f, key, value, call):  # one acknowledged write, nothing concurrent
            invoke = time.monotonic()
            call()
            history.record(process=9, f=f, keys=[key], values=[value], invoke=invoke,
                           complete=time.monotonic(), status="ok")

        for key in ("t1", "t2"):
            value = Value(key, [float(len(key)), 0.0, 1.0, 2.0], {"v": f"{key}-v"})
            history.add_value(f"{key}-v", value)
            recorded("upsert", key, f"{key}-v", lambda k=key, v=value: admin.upsert(
                "c/db/x", [{"id": k, "vector": v.vector, "payload": v.payload}]))
        recorded("delete", "t2", None, lambda: admin.delete("c/db/x", "t2"))
        # Now behind the history's back: an acknowledged write disappears, a deleted
        # document comes back exactly as it was, and one that was never sent appears.
        admin.delete("c/db/x", "t1")
        t2 = history.values["t2-v"]
        admin.upsert("c/db/x", [{"id": "t2", "vector": t2.vector, "payload": t2.payload}])
        admin.upsert("c/db/x", [{"id": "stranger", "vector": [1, 1, 1, 1]}])
        workload.final_read(admin, "c/db/x", history, t0=0.0)
    result = check(history)
    assert not result.valid
    assert {(a.kind, a.key) for a in result.anomalies} == {
        ("lost", "t1"), ("resurrected", "t2"), ("phantoms", "stranger")}


def test_the_same_seed_issues_the_same_operations(tmp_path):
    runs = []
    for n in range(2):
        with Node(tmp_path / f"n{n}") as node:
            history = History()
            _run_workload(node, history, 25)
        # what was sent (a get's answer depends on the other client's timing)
        runs.append({p: [(o.f, o.keys, o.values if o.f == "upsert" else None, o.filter,
                          o.vector) for o in history.ops if o.process == p][:25]
                     for p in range(MIXED.clients)})
    assert runs[0] == runs[1]
    kinds = {f for ops in runs[0].values() for f, *_ in ops}
    assert kinds == {"upsert", "delete", "get", "search"}


@pytest.mark.parametrize("body, words", [
    ('[[fault]]\nkind = "meteor"\nat_s = 1\nfor_s = 1', "fault.0.kind"),
    ('[[fault]]\nkind = "kill"\nat_s = 1\nfor_s = 1\n[[fault]]\nkind = "pause"\n'
     'at_s = 1.5\nfor_s = 1', "overlap"),
    ('[[fault]]\nkind = "kill"\nat_s = 2.5\nfor_s = 1', "must end inside the run"),
    ('[[fault]]\nkind = "embedder_outage"\nat_s = 1\nfor_s = 1', "embed_service"),
    ('[[fault]]\nkind = "kill"\nat_s = 1\nfor_s = 1\nnode = 3', "names node 3"),
    ('[workload]\nmix = { delete = 1 }', "keys = N"),
    ('[nemesis]\nmin_s = 2\nmax_s = 1', "min_s is above"),
])
def test_bad_schedules_exit_2(tmp_path, body, words):
    spec = tmp_path / "bad.toml"
    spec.write_text(f'name = "bad"\n[workload]\nduration_s = 3.0\n{body}\n'
                    if not body.startswith("[workload]") else f'name = "bad"\n{body}\n')
    done = subprocess.run([sys.executable, "-m", "akidb", "chaos", "run", str(spec)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and words in done.stderr, done.stderr


def test_an_experiment_whose_node_loses_acknowledged_writes_fails_with_exit_1(tmp_path):
    """The verdict must follow the checker: a node that acknowledges writes it never
    makes (the lose_acked_writes failpoint) fails the run, names its seed, and a
    shrink finds that no network or process fault is needed for it."""
    spec = tmp_path / "lossy.toml"
    spec.write_text('''name = "lossy node"
description = "acknowledges writes without making them for half a second"
[workload]
clients = 2
batch = 5
duration_s = 1.5
[[method]]
action = "fault"
at_s = 0.3
attributes = {lose_acked_writes = 1}
[[method]]
action = "clear_faults"
at_s = 0.8
[[fault]]
kind = "latency"
at_s = 1.0
for_s = 0.3
''')
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "akidb", "chaos", "run", str(spec), "--out",
                           str(out), "--seed", "9", "--shrink", "3"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((out / "lossy.json").read_text())
    assert not result["passed"] and not result["checks"]["checker"]
    assert result["checker"]["lost"] > 0 and not result["checker"]["valid"]
    assert result["checker"]["anomalies"][0]["kind"] == "lost"
    assert result["seed"] == 9 and "--seed 9" in result["replay"]
    assert f"replay: akidb chaos run {spec} --seed 9" in done.stderr
    assert result["shrunk"]["schedule"] == []  # the method's failpoint alone loses writes
    assert "FAILED" in done.stdout
