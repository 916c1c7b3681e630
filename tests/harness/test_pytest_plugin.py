"""The pytest plugin as a user sees it, run in a separate pytest (pytester)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
def test_uses_the_cluster(akidb_cluster, akidb_client):
    akidb_client.create_collection("t/d/c", dimension=2, create_parents=True)
    akidb_client.upsert("t/d/c", [{"id": "a", "vector": [1, 0]}])
    assert akidb_client.search("t/d/c", [1, 0], k=1).ids == ["a"]
    assert len(akidb_cluster.nodes) == 2

def test_that_fails(akidb_client):
    assert akidb_client.health() == {"status": "broken"}
"""


def _server_pids_under(root: Path) -> list[int]:
    """Live akidb server processes whose data dir lies under ``root``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        text = " ".join(a.decode(errors="replace") for a in args)
        if "akidb serve" in text and str(root) in text and state != "Z":
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def isolated_tmp(tmp_path, monkeypatch):
    """A TMPDIR of our own, so leftovers of the inner run are visible."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    return root


def test_failing_user_test_leaves_no_process_or_dir(pytester, isolated_tmp):
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("--akidb-nodes", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert _server_pids_under(isolated_tmp) == []
    assert list(isolated_tmp.iterdir()) == []


def test_keep_failed_keeps_data_and_logs(pytester, isolated_tmp):
    pytester.makepyfile(USER_TESTS)
    result = pytester.runpytest_subprocess("--akidb-nodes", "2", "--akidb-keep-failed", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*kept data and logs*"])
    kept = [p for p in isolated_tmp.iterdir() if p.name.startswith("akidb-")]
    assert len(kept) == 1 and (kept[0] / "node0" / "server.log").exists()
    assert _server_pids_under(isolated_tmp) == []


def test_external_server_option(pytester, akidb_cluster):
    node = akidb_cluster.nodes[0]
    pytester.makepyfile("""
        def test_external(akidb_client):
            assert akidb_client.is_ready()
            akidb_client.list_tenants()

        def test_kills_its_node(akidb_cluster):
            akidb_cluster.nodes[0].kill()

        def test_restarts_its_node(akidb_cluster):
            akidb_cluster.nodes[0].restart()
    """)
    result = pytester.runpytest_subprocess("--akidb-url", node.rest_url,
                                           "--akidb-api-key", node.admin_key, "-rs")
    result.assert_outcomes(passed=1, skipped=2)  # skipped with the reason, not errors
    result.stdout.fnmatch_lines(["*kill() needs a server this run starts*",
                                 "*restart() needs a server this run starts*"])
    assert node.is_running()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_or_killed_runner_leaves_no_server(pytester, isolated_tmp, sig):
    pytester.makepyfile("""
        import time
        def test_long(akidb_client):
            time.sleep(600)
    """)
    log = pytester.path / "runner.log"
    with log.open("wb") as out:
        # Ctrl-C as from a terminal: a suite started in the background by a
        # non-interactive shell inherits SIGINT ignored, and Python then leaves it so
        # (that made this test fail in a backgrounded fresh-clone run).
        runner = subprocess.Popen([sys.executable, "-m", "pytest", "-q", str(pytester.path)],
                                  cwd=pytester.path, env=os.environ.copy(), stdout=out,
                                  stderr=subprocess.STDOUT,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while not list(isolated_tmp.glob("akidb-*/node0/server.json")):
            assert time.monotonic() < deadline and runner.poll() is None, "server never started"
            time.sleep(0.05)
        assert _server_pids_under(isolated_tmp)
        runner.send_signal(sig)  # Ctrl-C, or a runner killed outright
        # The inner test sleeps far longer than this wait, so only a runner that acted
        # on the signal ends in time.
        try:
            runner.wait(60)
        except subprocess.TimeoutExpired:
            runner.send_signal(signal.SIGABRT)  # pytest's faulthandler dumps every stack
            runner.wait(30)
            pytest.fail(f"runner still running 60 s after {sig!r}; its output:\n"
                        f"{log.read_text(errors='replace')[-6000:]}")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    deadline = time.monotonic() + 30
    while _server_pids_under(isolated_tmp) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _server_pids_under(isolated_tmp) == []
    if sig == signal.SIGINT:  # teardown ran: the temp dirs are gone too
        assert list(isolated_tmp.iterdir()) == []


OPTION_TESTS = """
SEEN = []

def test_first(akidb_cluster):
    assert len(akidb_cluster.nodes) == 2
    assert all(n.fsync == "batch" for n in akidb_cluster.nodes)
    assert all(n.proxy is not None for n in akidb_cluster.nodes)
    c = akidb_cluster.admin_client()
    assert c.health()["status"] == "ok"
    from akidb.server.client import Client
    through = Client(akidb_cluster.nodes[0].proxy_url, akidb_cluster.nodes[0].admin_key)
    assert through.health()["status"] == "ok"
    SEEN.append(str(akidb_cluster.base_dir))

def test_second(akidb_cluster):
    SEEN.append(str(akidb_cluster.base_dir))
    assert SEEN[0] != SEEN[1], "function scope gives every test its own cluster"
"""


def test_plugin_options_shape_the_cluster(pytester, isolated_tmp):
    pytester.makepyfile(OPTION_TESTS)
    result = pytester.runpytest_subprocess(
        "--akidb-nodes", "2", "--akidb-fsync", "batch", "--akidb-fault-proxy",
        "--akidb-scope", "function", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert _server_pids_under(isolated_tmp) == []
    bad = pytester.runpytest_subprocess("--akidb-fsync", "sometimes")
    assert bad.ret != 0
    bad.stderr.fnmatch_lines(["*--akidb-fsync*invalid choice*"])
