"""The regression gate: quiet on noise, loud on a real regression, clear on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench import gate


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
    run = lambda *a: subprocess.run([sys.executable, "-m", "server", "bench", "compare", *a],  # noqa: E731
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


def test_calibration_suggests_thresholds_from_a_a_drift():
    rng = np.random.default_rng(4)
    runs = [_draw(rng, latency_scale=s) for s in (1.0, 1.2, 0.95)]
    suggestion = gate.suggest_thresholds(runs)
    drift = suggestion["search_latency_ms"]["max_drift"]
    assert 0.15 < drift < 0.4
    assert suggestion["search_latency_ms"]["threshold"] == pytest.approx(2 * drift)
    with pytest.raises(gate.GateError, match="two runs"):
        gate.suggest_thresholds(runs[:1])


def test_gate_on_the_real_server_green_on_a_a_red_on_a_10pct_slowdown(tmp_path):
    """Two servers sampled interleaved (so machine drift hits both alike); one has a
    search-path delay of 10% of the measured median latency."""
    from bench.timing import timed_calls
    from datagen import vectors
    from harness import Node

    base = vectors.clustered(2000, 64, seed=5)
    queries = vectors.queries(1000, 64, seed=5)
    fast = Node(tmp_path / "fast", fsync="none").start()
    try:
        with fast.admin_client() as c:
            c.create_collection("g/db/c", dimension=64, create_parents=True)
            c.upsert_arrays("g/db/c", [str(i) for i in range(2000)], base)
            probe, _ = timed_calls(lambda q: c.search("g/db/c", q, k=10), queries, warmup=50)
        delay_ms = 0.10 * float(np.median(probe))
        slow = Node(tmp_path / "slow", fsync="none",
                    env={"AKIDB_TEST_SEARCH_DELAY_MS": f"{delay_ms:.4f}"}).start()
        try:
            with fast.admin_client() as a, slow.admin_client() as b:
                b.create_collection("g/db/c", dimension=64, create_parents=True)
                b.upsert_arrays("g/db/c", [str(i) for i in range(2000)], base)
                samples: dict[str, list[float]] = {"a1": [], "a2": [], "b": []}
                for i, q in enumerate(queries):
                    for key, client in (("a1" if i % 2 else "a2", a), ("b", b)):
                        ms, _ = timed_calls(lambda q, cl=client: cl.search("g/db/c", q, k=10),
                                            [q])
                        samples[key].append(float(ms[0]))
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
