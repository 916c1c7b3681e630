"""Chaos experiments end to end, and the durability checker catching what it must."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from akidb.chaos import experiment
from akidb.chaos.durability import History, check, run_writers
from akidb.harness import Node


@pytest.mark.parametrize("name", ["kill9-ingest", "partition"])
def test_builtin_experiments_pass(name, tmp_path):
    result = experiment.run(experiment.load(name), tmp_path)
    assert result["passed"], result
    d = result["durability"]
    assert d["acknowledged"] > 0 and d["lost"] == [] and d["phantoms"] == 0
    assert 0 < d["availability"] < 1  # the fault was felt, and service came back
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["passed"] and "PASSED" in (tmp_path / "result.md").read_text()


@pytest.mark.parametrize("name", ["disk-full", "slow-authz", "embedding-outage"])
def test_failpoint_and_embedder_experiments_pass(name, tmp_path):
    result = experiment.run(experiment.load(name), tmp_path)
    assert result["passed"], result
    d = result["durability"]
    assert d["acknowledged"] > 0 and d["lost"] == [] and d["corrupted"] == []
    if name == "disk-full":
        assert d["failed"] > 0 and d["availability"] < 1  # writes were refused meanwhile
    if name == "embedding-outage":
        assert result["checks"]["embedder_healthy_after"]
        assert d["availability"] == 1.0  # vector writes never noticed the outage
    assert [a["action"] for a in result["actions"]][0] in ("fault", "kill_embedder")


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
        c.set_faults(disk_full=0, authz_delay_ms=200)
        started = time.perf_counter()
        assert c.upsert("t/db/c", [{"id": "b", "vector": [0, 1]}]) == 1
        assert time.perf_counter() - started >= 0.2  # the decision waited
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
    assert "FAILED" in run.stdout and "| availability | FAILED |" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "akidb", "chaos", "run", "no-such-thing"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "kill9-ingest" in bad.stderr


def test_checker_reports_lost_and_corrupted_writes(tmp_path):
    with Node(tmp_path / "d", fsync="none") as node, node.admin_client() as admin:
        admin.create_collection("c/db/x", dimension=4, metric="l2", create_parents=True)
        history = History()
        stop = threading.Event()
        threads = run_writers(node.admin_client, "c/db/x", 4, 2, 5, stop, history)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(10)
        assert check(admin, "c/db/x", history).ok
        acked = [i for o in history.ops if o.status == "ok" for i in o.ids]
        admin.delete("c/db/x", acked[0])  # an acknowledged write disappears
        admin.upsert("c/db/x", [{"id": acked[1], "vector": [9, 9, 9, 9]}])  # another changes
        admin.upsert("c/db/x", [{"id": f"never-sent-{i}", "vector": [1, 1, 1, 1]}
                                for i in range(3)])
        result = check(admin, "c/db/x", history)
    assert not result.ok
    assert result.lost == [acked[0]] and result.corrupted == [acked[1]]
    assert result.indeterminate == 0 and result.phantoms == 2  # 3 strangers, 1 loss


def test_an_experiment_whose_node_loses_acknowledged_writes_fails_with_exit_1(tmp_path):
    """The verdict must follow the checker: a node that acknowledges writes it never
    makes (the lose_acked_writes failpoint) fails the run."""
    spec = tmp_path / "lossy.toml"
    spec.write_text('''name = "lossy node"
description = "acknowledges writes without making them for half a second"
[workload]
writers = 2
batch = 5
duration_s = 1.5
[[method]]
action = "fault"
at_s = 0.3
attributes = {lose_acked_writes = 1}
[[method]]
action = "clear_faults"
at_s = 0.8
''')
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "akidb", "chaos", "run", str(spec), "--out",
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads((out / "result.json").read_text())
    assert not result["passed"] and not result["checks"]["durability"]
    assert len(result["durability"]["lost"]) > 0
    assert "FAILED" in done.stdout
