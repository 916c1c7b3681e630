"""``akidb cluster up|status|down`` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from akidb.harness.process import process_start_time


def _akidb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "akidb", *args], capture_output=True,
                          text=True, timeout=120)


def test_up_status_down(tmp_path):
    d = tmp_path / "c"
    up = _akidb("cluster", "up", "--nodes", "2", "--dir", str(d))
    try:
        assert up.returncode == 0, up.stderr
        record = json.loads((d / "cluster.json").read_text())
        pids = [n["pid"] for n in record["nodes"]]
        assert len(pids) == 2 and all(process_start_time(p) for p in pids)
        for n in record["nodes"]:
            assert n["rest_url"] in up.stdout
            assert (tmp_path / "c" / n["name"] / "admin.key").read_text().strip() in up.stdout
        status = _akidb("cluster", "status", "--dir", str(d))
        assert status.returncode == 0 and status.stdout.count("ready") == 2
        again = _akidb("cluster", "up", "--dir", str(d))
        assert again.returncode == 2 and "already running" in again.stderr

        # A record whose start time no longer matches names someone else's process:
        # down must leave it alone.
        real = json.loads((d / "cluster.json").read_text())
        fake = json.loads(json.dumps(real))
        fake["nodes"][0]["start_time"] += 1
        (d / "cluster.json").write_text(json.dumps(fake))
        status = _akidb("cluster", "status", "--dir", str(d))
        assert status.returncode == 1 and "stopped" in status.stdout
        partial = _akidb("cluster", "down", "--dir", str(d))
        assert partial.returncode == 0 and "1 processes stopped" in partial.stdout
        assert process_start_time(pids[0]) is not None
        assert process_start_time(pids[1]) is None
        (d / "cluster.json").write_text(json.dumps(real))
    finally:
        down = _akidb("cluster", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
    assert all(process_start_time(p) is None for p in pids)
    assert (d / "node0" / "metadata.db").exists()  # data is kept
    gone = _akidb("cluster", "status", "--dir", str(d))
    assert gone.returncode == 2 and "no cluster" in gone.stderr
    again = _akidb("cluster", "down", "--dir", str(d))  # as docker compose down: not an error
    assert again.returncode == 0 and "nothing running" in again.stdout


def test_bad_arguments_exit_2(tmp_path):
    result = _akidb("cluster", "up", "--nodes", "0", "--dir", str(tmp_path))
    assert result.returncode == 2 and "--nodes" in result.stderr
    result = _akidb("serve", "--data-dir", str(tmp_path), "--fsync", "sometimes")
    assert result.returncode == 2 and "--fsync" in result.stderr


def test_up_with_an_embedding_service(tmp_path):
    """Nodes embed through the separate service; down stops it with them."""
    from akidb.server.client import Client

    d = tmp_path / "c"
    up = _akidb("cluster", "up", "--dir", str(d), "--embed-service")
    record = json.loads((d / "cluster.json").read_text()) if up.returncode == 0 else {}
    try:
        assert up.returncode == 0, up.stderr
        svc = record["embed_service"]
        assert f"grpc://{svc['grpc_target']}" in up.stdout
        node = record["nodes"][0]
        key = (d / "node0" / "admin.key").read_text().strip()
        with Client(node["rest_url"], key) as client:
            assert client.embed(["through the service"]).vectors.shape == (1, 384)
            status = client.request("GET", "/ready")["embedder"]
        assert status == {"kind": "remote", "target": svc["grpc_target"],
                          "breaker": "closed", "backend": status["backend"]}
        assert "numpy" in status["backend"]
        out = _akidb("cluster", "status", "--dir", str(d))
        assert out.returncode == 0 and "running" in out.stdout
    finally:
        down = _akidb("cluster", "down", "--dir", str(d))
    assert down.returncode == 0, down.stderr
    assert "2 processes stopped" in down.stdout
    assert process_start_time(svc["pid"]) is None
