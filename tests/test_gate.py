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
