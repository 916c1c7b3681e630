"""The regression gate: quiet on noise, loud on a real regression, clear on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from akidb.bench import gate


def _metrics(latency, throughput):
    return {"search_latency_ms": {"unit": "ms", "direction": "lower", "samples": latency},
            "ingest_vectors_per_s": {"unit": "vectors/s", "direction": "higher",
                                     "samples": throughput}}


def _draw(rng, n=300, latency_scale=1.0, throughput_scale=1.0):
    latency = (rng.lognormal(0.0, 0.35, n) * latency_scale).tolist()
    throughput = (rng.normal(4000, 300, 40) * throughput_scale).tolist()
    return _metrics(latency, throughput)


def test_a_a_runs_raise_no_false_alarm():
    """A/A calibration: 200 pairs of samples from one distribution, gate at 5% / 99%."""
    rng = np.random.default_rng(1)
    alarms = sum(any(v.regression for v in gate.compare(_draw(rng), _draw(rng), seed=i,
                                                        n_boot=500))
                 for i in range(200))
    assert alarms <= 2  # observed false-alarm rate must stay around 1% or below


def test_real_regressions_are_caught_and_all_reported():
    rng = np.random.default_rng(2)
    base = _draw(rng)
    slower = _draw(rng, latency_scale=1.3, throughput_scale=0.8)
    verdicts = {v.metric: v for v in gate.compare(base, slower)}
    assert verdicts["search_latency_ms"].regression
    assert verdicts["ingest_vectors_per_s"].regression
    faster = _draw(rng, latency_scale=0.7)
    verdicts = {v.metric: v for v in gate.compare(base, faster)}
    assert verdicts["search_latency_ms"].improvement and not verdicts[
        "search_latency_ms"].regression
    # A 3% slowdown with a 10% threshold for that metric is not a regression.
    small = _draw(rng, latency_scale=1.03)
    assert not any(v.regression for v in gate.compare(base, small,
                                                      {"search_latency_ms": 0.10}))


def test_cli_exit_codes(tmp_path):
    rng = np.random.default_rng(3)
    files = {}
    for name, scale in (("base", 1.0), ("same", 1.0), ("slow", 1.5)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps({"metrics": _draw(rng, latency_scale=scale)}))
    run = lambda *a: subprocess.run([sys.executable, "-m", "akidb", "bench", "compare", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    ok = run(str(files["base"]), str(files["same"]))
    assert ok.returncode == 0 and "no regression" in ok.stderr
    bad = run(str(files["base"]), str(files["slow"]), "--threshold", "search_latency_ms=10%")
    assert bad.returncode == 1 and "REGRESSION" in bad.stdout
    (tmp_path / "empty.json").write_text("{}")
    usage = run(str(files["base"]), str(tmp_path / "empty.json"))
    assert usage.returncode == 2 and "metrics" in usage.stderr
    with pytest.raises(gate.GateError, match="unknown metrics"):
        gate.compare(_draw(rng), _draw(rng), {"nope": 0.1})


def test_thresholds_config_file(tmp_path):
    """Per-metric thresholds from a file; --threshold overrides it; a bad file is exit 2."""
    rng = np.random.default_rng(5)
    base, slow = tmp_path / "base.json", tmp_path / "slow.json"
    base.write_text(json.dumps({"metrics": _draw(rng)}))
    slow.write_text(json.dumps({"metrics": _draw(rng, latency_scale=1.3)}))
    run = lambda *a: subprocess.run([sys.executable, "-m", "akidb", "bench", "compare",  # noqa: E731
                                     str(base), str(slow), *a],
                                    capture_output=True, text=True, timeout=120)
    loose = tmp_path / "loose.toml"
    gate.write_config(loose, {"search_latency_ms": 0.5}, "calibrated by a test")
    assert gate.load_config(loose).thresholds == {"search_latency_ms": 0.5}
    assert run("--config", str(loose)).returncode == 0  # 30% slower is within its 50%
    assert run("--config", str(loose), "--threshold", "search_latency_ms=10%").returncode == 1
    strict = tmp_path / "strict.toml"
    strict.write_text('default = "2%"\nconfidence = 0.95\n[thresholds]\n'
                      'search_latency_ms = 0.1\n')
    cfg = gate.load_config(strict)
    assert (cfg.default_threshold, cfg.confidence, cfg.thresholds) == (
        0.02, 0.95, {"search_latency_ms": 0.1})
    assert run("--config", str(strict)).returncode == 1
    for text, message in (('[thresholds]\nsearch_latency_ms = "150%"\n', "[0, 1)"),
                          ('[thresholds]\nsearch_latency_ms = "fast"\n', "fraction"),
                          ("limit = 3\n", "unknown keys"),
                          ("confidence = 2\n", "confidence"),
                          ("[thresholds\n", "not TOML")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(gate.GateError, match=message.replace("[", r"\[").replace(
                "(", r"\(").replace(")", r"\)")):
            gate.load_config(bad)
        result = run("--config", str(bad))
        assert result.returncode == 2 and str(bad) in result.stderr


def test_trend_across_stored_runs(tmp_path):
    """Runs ordered by their stamp (not by file name), one plot per metric, ratios."""
    from akidb.bench import trend

    rng = np.random.default_rng(6)
    for i, (stamp, scale) in enumerate((("2026-01-03T00:00:00+00:00", 1.2),
                                        ("2026-01-01T00:00:00+00:00", 1.0),
                                        ("2026-01-02T00:00:00+00:00", 1.1))):
        (tmp_path / "runs" / str(i)).mkdir(parents=True)
        (tmp_path / "runs" / str(i) / "server_baseline.json").write_text(json.dumps({
            "benchmark": "server_baseline", "recorded_at": stamp,
            "environment": {"git_sha": f"{i}" * 40},
            "metrics": _draw(rng, latency_scale=scale)}))
    (tmp_path / "runs" / "notes.json").write_text("{}")  # no samples: skipped in folders
    runs = trend.collect([tmp_path / "runs"])
    assert [r.when.day for r in runs] == [1, 2, 3]
    md, _moved = trend.render(runs, tmp_path / "out", {"search_latency_ms"})
    text = md.read_text()
    assert "## search_latency_ms (ms, lower is better)" in text and "ingest" not in text
    ratios = [float(line.split("|")[6]) for line in text.splitlines()
              if line.startswith("| 01-0")]
    assert ratios[0] == 1.0 and ratios[2] > ratios[1] > 1.0  # the slowdown shows
    assert (tmp_path / "out" / "trend-search_latency_ms.png").stat().st_size > 1000
    assert '<img src="trend-search_latency_ms.png"' in (tmp_path / "out" / "trend.html"
                                                       ).read_text()
    with pytest.raises(trend.TrendError, match="no run has"):
        trend.render(runs, tmp_path / "out", {"nope"})
    with pytest.raises(trend.TrendError, match="metrics"):
        trend.collect([tmp_path / "runs" / "notes.json"])
    result = subprocess.run([sys.executable, "-m", "akidb", "bench", "trend",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no result files" in result.stderr


def test_calibration_suggests_thresholds_from_a_a_drift():
    rng = np.random.default_rng(4)
    runs = [_draw(rng, latency_scale=s) for s in (1.0, 1.2, 0.95)]
    suggestion = gate.suggest_thresholds(runs)
    drift = suggestion["search_latency_ms"]["max_drift"]
    assert 0.15 < drift < 0.4
    assert suggestion["search_latency_ms"]["threshold"] == pytest.approx(2 * drift)
    with pytest.raises(gate.GateError, match="two runs"):
        gate.suggest_thresholds(runs[:1])


@pytest.mark.slow  # a performance claim: measured by the A/B calibration, not asserted here
def test_gate_on_the_real_server_green_on_a_a_red_on_a_10pct_slowdown(tmp_path):
    """Two servers sampled interleaved (so machine drift hits both alike); one has a
    search-path delay of 10% of the measured median latency."""
    from akidb.bench.samples import Samples
    from akidb.datagen import vectors
    from akidb.harness import Node

    base = vectors.clustered(2000, 64, seed=5)
    queries = vectors.queries(1000, 64, seed=5)
    fast = Node(tmp_path / "fast", fsync="none").start()
    try:
        with fast.admin_client() as c:
            c.create_collection("g/db/c", dimension=64, create_parents=True)
            c.upsert_arrays("g/db/c", [str(i) for i in range(2000)], base)
            probe, _ = Samples.timed(lambda q: c.search("g/db/c", q, k=10), queries,
                                     warmup=50)
        delay_ms = 0.10 * probe.p50
        slow = Node(tmp_path / "slow", fsync="none",
                    env={"AKIDB_TEST_SEARCH_DELAY_MS": f"{delay_ms:.4f}"}).start()
        try:
            with fast.admin_client() as a, slow.admin_client() as b:
                b.create_collection("g/db/c", dimension=64, create_parents=True)
                b.upsert_arrays("g/db/c", [str(i) for i in range(2000)], base)
                samples: dict[str, list[float]] = {"a1": [], "a2": [], "b": []}
                for i, q in enumerate(queries):
                    for key, client in (("a1" if i % 2 else "a2", a), ("b", b)):
                        ms, _ = Samples.timed(
                            lambda q, cl=client: cl.search("g/db/c", q, k=10), [q])
                        samples[key].append(float(ms.values[0]))
        finally:
            slow.close()
    finally:
        fast.close()

    def metrics(s):
        return {"search_latency_ms": {"unit": "ms", "direction": "lower", "samples": s}}

    a_a = gate.compare(metrics(samples["a1"]), metrics(samples["a2"]))
    assert not a_a[0].regression, a_a
    slowed = gate.compare(metrics(samples["a1"] + samples["a2"]), metrics(samples["b"]),
                          default_threshold=0.02)
    assert slowed[0].regression, slowed


def test_trend_fail_on_change_flags_the_newest_run_with_its_commit(tmp_path):
    """Nightly mode: eight stored runs, the newest 30% slower -> exit 1 naming its
    commit; without the jump -> exit 0 and no change."""
    rng = np.random.default_rng(9)
    akidb = str(Path(sys.executable).with_name("akidb"))
    for i in range(8):
        scale = 1.3 if i == 7 else 1.0
        run = tmp_path / "runs" / f"r{i}"
        run.mkdir(parents=True)
        (run / "server_baseline.json").write_text(json.dumps({
            "benchmark": "server_baseline", "recorded_at": f"2026-01-0{i + 1}T00:00:00+00:00",
            "environment": {"git_sha": f"{i}abc" * 10},
            "metrics": _draw(rng, latency_scale=scale)}))
    out = subprocess.run([akidb, "bench", "trend", str(tmp_path / "runs"), "--fail-on-change",
                          "--metric", "search_latency_ms", "--out", str(tmp_path / "t")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "search_latency_ms moved worse" in out.stdout and "7abc" in out.stdout
    changes = json.loads((tmp_path / "t" / "changes.json").read_text())
    assert [c["latest"] for c in changes] == [True]
    (tmp_path / "runs" / "r7" / "server_baseline.json").unlink()
    calm = subprocess.run([akidb, "bench", "trend", str(tmp_path / "runs"), "--fail-on-change",
                           "--metric", "search_latency_ms", "--out", str(tmp_path / "t2")],
                          capture_output=True, text=True, timeout=120)
    assert calm.returncode == 0 and "moved" not in calm.stdout, calm.stdout
