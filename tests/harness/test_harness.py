"""The harness: real processes started, killed, paused, restarted and always cleaned up."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from akidb.harness import Cluster, Node, NodeError
from akidb.server.errors import TransportError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; Popen.wait() reaps, so this is belt and braces.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_cluster_start_and_teardown_leaves_nothing():
    with Cluster(nodes=2) as cluster:
        urls = {n.rest_url for n in cluster.nodes}
        pids = [n.pid for n in cluster.nodes]
        base = cluster.base_dir
        assert len(urls) == 2 and all(u.startswith("http://127.0.0.1:") for u in urls)
        for i in range(len(cluster.nodes)):
            with cluster.admin_client(i) as client:
                assert client.is_ready()
                client.create_tenant(f"n{i}")
                assert [t["name"] for t in client.list_tenants()] == [f"n{i}"]
    assert not any(_alive(p) for p in pids)
    assert not base.exists()


def test_kill_restart_and_pause(tmp_path):
    node = Node(tmp_path / "d")
    node.start()
    try:
        with node.admin_client() as client:
            client.create_collection("t/d/c", dimension=2, metric="l2", create_parents=True)
            client.upsert("t/d/c", [{"id": "x", "vector": [1, 2]}])
        first = node.pid
        assert node.kill() == -9 and not _alive(first)
        node.start()
        assert node.pid != first
        node.pause()
        with node.admin_client(timeout=0.5) as client, pytest.raises(TransportError):
            client.health()
        node.resume()
        with node.admin_client() as client:
            assert np.array_equal(client.get("t/d/c", "x")["vector"], [1, 2])
        node.restart()
        assert node.stop() == 0  # SIGTERM: graceful exit code
    finally:
        node.close()
    assert (tmp_path / "d").exists()  # a given data dir is the caller's and is kept


def test_start_failure_and_ready_timeout_carry_the_log_tail(tmp_path):
    node = Node(tmp_path / "bad", extra_args=["--threads", "0"])
    with pytest.raises(NodeError) as info:
        node.start()
    assert "exited with code 2" in str(info.value) and "--threads" in str(info.value)
    node.close()
    slow = Node(tmp_path / "slow", ready_timeout=0.05)
    with pytest.raises(NodeError) as info:
        slow.start()
    assert "not ready within 0.1s" in str(info.value) and "last log lines" in str(info.value)
    pid = slow.pid
    slow.close()
    assert not _alive(pid)


def test_a_second_server_on_the_same_data_dir_is_refused(node: Node):
    other = Node(node.data_dir, name="other")
    with pytest.raises(NodeError) as info:
        other.start()
    assert "in use by another akidb server" in str(info.value)
    other.close()
    with node.admin_client() as client:
        assert client.is_ready()


def test_automatic_snapshot_bounds_the_log(tmp_path):
    env = {"AKIDB_SNAPSHOT_WAL_BYTES": "20000", "AKIDB_SNAPSHOT_CHECK_S": "0.05"}
    node = Node(tmp_path / "d", env=env)
    node.start()
    try:
        with node.admin_client() as client:
            client.create_collection("t/d/c", dimension=16, metric="l2", create_parents=True)
            vecs = np.random.default_rng(1).standard_normal((600, 16)).astype(np.float32)
            for s in range(0, 600, 100):
                client.upsert_arrays("t/d/c", [str(i) for i in range(s, s + 100)],
                                     vecs[s : s + 100])
            deadline = time.monotonic() + 10
            while client.get_collection("t/d/c")["snapshot_seq"] is None:
                assert time.monotonic() < deadline, node.log_tail()
                time.sleep(0.05)
        node.kill()
        node.start()
        with node.admin_client() as client:
            info = client.get_collection("t/d/c")
            assert info["count"] == 600 and info["snapshot_seq"] is not None
            assert client.search("t/d/c", vecs[123], k=1).ids == ["123"]
    finally:
        node.close()


def test_automatic_snapshot_once_a_collection_without_one_grows(tmp_path):
    """A small log but many vectors and no snapshot: a restart would rebuild the whole
    graph, so the vector-count rule takes a snapshot although the log rule would not."""
    env = {"AKIDB_SNAPSHOT_WAL_BYTES": str(1 << 30), "AKIDB_SNAPSHOT_MIN_VECTORS": "300",
           "AKIDB_SNAPSHOT_CHECK_S": "0.05"}
    with Node(tmp_path / "d", env=env) as node, node.admin_client() as client:
        client.create_collection("t/d/c", dimension=4, create_parents=True)
        vecs = np.random.default_rng(2).standard_normal((400, 4)).astype(np.float32)
        client.upsert_arrays("t/d/c", [str(i) for i in range(200)], vecs[:200])
        # (That 200 < 300 takes no snapshot is the rule's own test, in test_snapshot_rules.)
        client.upsert_arrays("t/d/c", [str(i) for i in range(200, 400)], vecs[200:])
        deadline = time.monotonic() + 10
        while client.get_collection("t/d/c")["snapshot_seq"] is None:
            assert time.monotonic() < deadline, node.log_tail()
            time.sleep(0.05)
