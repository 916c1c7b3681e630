"""The same-run A/B gate: its statistics, and whole runs of real servers from two builds."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from akidb.bench import ab, changepoint
from akidb.bench.ab_sides import SideError, parse_env, resolve

REPO = Path(__file__).resolve().parents[2]
AKIDB = str(Path(sys.executable).parent / "akidb")
SMALL = ["--vectors", "400", "--dim", "16", "--queries", "30"]
SEARCH = next(m for m in ab.METRICS if m.name == "search_p50_ms")
QPS = next(m for m in ab.METRICS if m.name == "search_qps")
RECALL = next(m for m in ab.METRICS if m.name == "recall_at_10")


def test_schedule_is_balanced_abba_blocks_and_seeded():
    """Who goes first, per round: AB|BA or BA|AB per pair of rounds; within a round the
    steps alternate ABBA from that side."""
    order = ab.schedule(16, seed=3)
    assert len(order) == 16 and order.count(0) == 8
    for i in range(0, 16, 2):
        assert order[i:i + 2] in ([0, 1], [1, 0])
    assert order == ab.schedule(16, seed=3) and any(ab.schedule(16, s) != order
                                                    for s in range(1, 6))
    steps = [ab.turns(1, j) for j in range(8)]
    assert [a for a, _ in steps] == [1, 0, 0, 1, 1, 0, 0, 1]
    assert all(sorted(t) == [0, 1] for t in steps)


def test_verdict_needs_both_the_threshold_and_an_interval_clear_of_one():
    base = [1.0, 1.02, 0.98, 1.01, 0.99, 1.0]
    same = ab.verdict(SEARCH, base, base)
    assert same["ratio"] == pytest.approx(1.0) and not same["regression"]
    slower = ab.verdict(SEARCH, base, [b * 1.1 for b in base])
    assert slower["regression"] and slower["ci_low"] > 1.0
    assert slower["ratio"] == pytest.approx(1.1, rel=1e-6)
    # 3% slower every time: real, but under the 5% threshold
    assert not ab.verdict(SEARCH, base, [b * 1.03 for b in base])["regression"]
    # 10% slower on average but all over the place: the interval includes no change
    noisy = ab.verdict(SEARCH, base, [b * f for b, f in zip(base, (0.7, 1.5, 0.8, 1.4, 0.9,
                                                                   1.35), strict=True)])
    assert noisy["ratio"] > 1.05 and noisy["ci_low"] < 1.0 and not noisy["regression"]
    # throughput is higher-is-better: a drop regresses, a rise does not
    assert ab.verdict(QPS, base, [b * 0.85 for b in base])["regression"]
    assert not ab.verdict(QPS, base, [b * 1.2 for b in base])["regression"]


def test_recall_threshold_is_its_sampling_error():
    noise = ab.recall_noise(0.92, 200)
    assert 0.012 < noise < 0.014  # 2 * sqrt(0.92 * 0.08 / 2000) / 0.92
    assert ab.recall_noise(0.92, 2000) < noise / 3
    recall = dataclasses.replace(RECALL, threshold=noise)
    base = [0.92] * 6
    assert not ab.verdict(recall, base, [0.9193] * 6)["regression"]  # seen in an A/A
    assert ab.verdict(recall, base, [0.90] * 6)["regression"]  # 2.2%: a real drop
    assert not ab.verdict(recall, base, [0.92, 0.92, 0.88, 0.92, 0.92, 0.92])["regression"]


def test_changepoint_flags_the_run_where_a_metric_moved():
    rng = np.random.default_rng(0)
    values = list(1.0 + rng.normal(0, 0.01, 12)) + list(1.2 + rng.normal(0, 0.01, 8))
    changes = changepoint.detect(values, "lower")
    assert [c.index for c in changes] == [12] and changes[0].worse
    assert changes[0].ratio == pytest.approx(1.2, rel=0.05)
    assert changepoint.detect(values, "higher")[0].worse is False
    assert changepoint.detect(list(1.0 + rng.normal(0, 0.01, 30)), "lower") == []


def test_bad_sides_and_env_are_usage_errors(tmp_path):
    with pytest.raises(SideError, match="neither a checkout path nor a revision"):
        resolve("baseline", "no-such-revision-xyz", tmp_path, REPO)
    with pytest.raises(SideError, match="not a checkout"):
        resolve("baseline", str(tmp_path), tmp_path)
    with pytest.raises(SideError, match="K=V"):
        parse_env(["NOEQUALS"], "--candidate-env")


def _ab(*args: str, cwd: Path = REPO, timeout: float = 300, tmp: Path | None = None
        ) -> subprocess.CompletedProcess:
    return subprocess.run([AKIDB, "bench", "ab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=_in_tmp(tmp))


def _in_tmp(tmp: Path | None) -> dict[str, str]:
    """The environment with TMPDIR at ``tmp``: the run's work dir (its worktrees and
    server data dirs) lands there, so the checks below see this test's servers only,
    not those of a test running beside it (pytest -n)."""
    return {**os.environ, **({"TMPDIR": str(tmp)} if tmp else {})}


@pytest.mark.parametrize("args, message", [
    (["no-such-revision-xyz", "."], "neither a checkout path nor a revision"),
    ([".", "/"], "not a checkout of this project"),
    ([".", ".", "--rounds", "3"], "--rounds must be even"),
    ([".", ".", "--scenario", "nope"], "unknown scenario"),
    ([".", ".", "--candidate-env", "X"], "K=V"),
])
def test_cli_usage_errors_exit_2(args, message):
    proc = _ab(*args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr


def _servers_of(tmp: Path) -> list[int]:
    """Pids of live servers whose command line names an A/B work dir under ``tmp``."""
    workdir_prefix = f"{tmp}/akidb-ab-"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if workdir_prefix.encode() in cmd and b"serve" in cmd:
                found.append(int(entry.name))
    return found


def _no_worktrees(repo: Path, tmp: Path) -> bool:
    out = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True,
                         text=True).stdout
    return f"{tmp}/akidb-ab-" not in out


@pytest.fixture
def ab_tmp(tmp_path: Path) -> Path:
    """TMPDIR for this test's A/B runs (see ``_in_tmp``)."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


@pytest.fixture
def clone(tmp_path):
    """A clone of this repository with one more commit that slows every search 3 ms in
    the code itself, not through the environment: each side must run its own code."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout of the project")
    dest = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(dest)],
                   check=True)
    for name in subprocess.run(["git", "-C", str(REPO), "ls-files", "-m", "-o",
                                "--exclude-standard"], capture_output=True, text=True,
                               check=True).stdout.split():
        if (REPO / name).is_file():  # the working tree as it is, uncommitted work included
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-C", str(dest), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "base"], check=True)
    faults = dest / "server" / "faults.py"
    text = faults.read_text()
    assert '"AKIDB_TEST_SEARCH_DELAY_MS", "0"' in text
    faults.write_text(text.replace('"AKIDB_TEST_SEARCH_DELAY_MS", "0"',
                                   '"AKIDB_TEST_SEARCH_DELAY_MS", "3"'))
    subprocess.run([*git, "commit", "--quiet", "-am", "slower searches\n\n"
                    "Perf-Regression-Accepted: searches wait 3 ms on purpose"], check=True)
    return dest


def test_a_slower_candidate_commit_fails_and_a_trailer_accepts_it(clone, tmp_path, ab_tmp):
    out = tmp_path / "ab"
    proc = _ab("HEAD~1", "HEAD", "--scenario", "search", "--rounds", "2", *SMALL,
               "--ignore-accepted", "--out", str(out), cwd=clone, tmp=ab_tmp)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads((out / "ab.json").read_text())
    m = result["metrics"]["search_p50_ms"]
    assert m["regression"] and m["candidate_median"] > m["baseline_median"] + 2.0
    assert result["candidate"]["commit"] != result["baseline"]["commit"]
    for key in ("baseline_median", "candidate_median", "ratio", "ci_low", "ci_high",
                "threshold", "regression"):
        assert key in m
    assert (out / "ab.md").read_text().count("REGRESSION") == 1
    assert '<img src="ab.png"' in (out / "ab.html").read_text()
    assert (out / "ab.png").stat().st_size > 1000
    accepted = _ab("HEAD~1", "HEAD", "--scenario", "search", "--rounds", "2", *SMALL,
                   "--out", str(tmp_path / "ab2"), cwd=clone, tmp=ab_tmp)
    assert accepted.returncode == 0, accepted.stderr
    assert "accepted" in accepted.stderr and "3 ms on purpose" in accepted.stderr
    assert _no_worktrees(clone, ab_tmp) and not _servers_of(ab_tmp)


def test_aa_stays_green_and_injected_delay_fails(tmp_path, ab_tmp):
    """A/A at a threshold far above this machine's noise passes; the same build with a
    5 ms search delay (several times the search itself) fails on search latency only."""
    aa = _ab(".", ".", "--scenario", "search", "--scenario", "recall", "--rounds", "2",
             *SMALL, "--threshold", "search_p50_ms=50%", "--out", str(tmp_path / "aa"), tmp=ab_tmp)
    assert aa.returncode == 0, aa.stdout + aa.stderr
    slow = _ab(".", ".", "--scenario", "search", "--scenario", "recall", "--rounds", "2",
               *SMALL, "--candidate-env", "AKIDB_TEST_SEARCH_DELAY_MS=5",
               "--out", str(tmp_path / "slow"), tmp=ab_tmp)
    assert slow.returncode == 1, slow.stdout + slow.stderr
    result = json.loads((tmp_path / "slow" / "ab.json").read_text())
    assert result["regressions"] == ["search_p50_ms"]
    assert result["candidate"]["env"] == {"AKIDB_TEST_SEARCH_DELAY_MS": "5"}
    assert not _servers_of(ab_tmp)


def test_interrupted_run_stops_both_sides_servers_and_removes_worktrees(tmp_path, ab_tmp):
    proc = subprocess.Popen([AKIDB, "bench", "ab", "HEAD", ".", "--rounds", "20", *SMALL,
                             "--out", str(tmp_path / "ab")], cwd=REPO, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**_in_tmp(ab_tmp), "PYTHONUNBUFFERED": "1"})
    try:
        for line in proc.stderr:
            if "warm-up" in line:
                break
        deadline = time.monotonic() + 30
        while not _servers_of(ab_tmp) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _servers_of(ab_tmp), "no A/B server seen running"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 30
    while _servers_of(ab_tmp) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _servers_of(ab_tmp)
    assert _no_worktrees(REPO, ab_tmp)
