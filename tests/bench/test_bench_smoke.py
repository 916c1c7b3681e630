"""Every benchmark the README lists runs at tiny sizes and reports honestly.

Not a performance check: each run must finish, write its JSON (parameters,
environment fingerprint, results), Markdown and HTML, and every figure in it must
be a real number (no NaN, no infinity, no negative time or rate).
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from typing import Any

import pytest

SMOKE: dict[str, list[str]] = {
    "server_baseline": ["--vectors", "1500", "--dim", "16", "--queries", "50", "--batch", "250",
                        "--recovery-vectors", "1000", "--wal-records", "50"],
    "filtered_search": ["--vectors", "1500", "--dim", "16", "--queries", "20"],
    "cluster_startup": ["--nodes", "2", "--repeat", "1"],
    "authz": ["--decisions", "50", "--naive-decisions", "5", "--queries", "20"],
    "grpc_vs_rest": ["--vectors", "1000", "--dim", "16", "--batch", "250", "--queries", "50"],
    "datagen_throughput": ["--n", "20000", "--dim", "32", "--gt-base", "4000",
                           "--gt-queries", "50", "--gt-dim", "16", "--k", "10"],
    "object_store": ["--vectors", "1500", "--dim", "16", "--batch", "500"],
    "import_throughput": ["--vectors", "1500", "--dim", "16", "--batch", "500"],
    "embeddings": ["--sentences", "20", "--batch", "8", "--backends", "numpy",
                   "--ingest-docs", "10"],
    "throughput": ["--vectors", "1500", "--dim", "16", "--seconds", "0.5", "--clients", "1,2",
                   "--fronts", "waitress", "--rounds", "2"],
    "tracing_cost": ["--vectors", "500", "--dim", "16", "--queries", "30", "--rounds", "2"],
    "ab_calibrate": ["--aa", "2", "--runs", "1", "--slowdowns", "20", "--rounds", "2",
                     "--trials", "20", "--vectors", "400", "--dim", "16", "--queries", "30"],
}


def _numbers(value: Any, where: str = "") -> list[tuple[str, float]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [(where, float(value))]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _numbers(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _numbers(v, f"{where}[{i}]")]
    return []


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_benchmark_runs_small_and_reports_honestly(name, tmp_path, capsys):
    module = importlib.import_module(f"akidb.bench.{name}")
    assert module.main([*SMOKE[name], "--out", str(tmp_path)]) == 0
    (json_file,) = [p for p in tmp_path.glob("*.json") if p.stem == name] or \
        list(tmp_path.glob("*.json"))[:1]
    record = json.loads(json_file.read_text())
    assert record["environment"]["python"] and record["params"]
    body = {k: v for k, v in record.items()
            if k not in ("params", "environment", "benchmark", "recorded_at")}
    assert body, "no results recorded"
    figures = _numbers(body)
    assert figures, "the results hold no figures"
    bad = [(w, v) for w, v in figures if not math.isfinite(v)]
    assert not bad, f"figures that are not numbers: {bad[:5]}"
    negative = [(w, v) for w, v in figures if v < 0 and not w.endswith("score")]
    assert not negative, f"negative figures: {negative[:5]}"
    assert json_file.with_suffix(".md").exists()
    assert json_file.with_suffix(".html").exists()
    if name == "throughput":
        _check_throughput_rounds(record, json_file.with_suffix(".md").read_text())
    assert capsys.readouterr().out.strip(), "nothing printed"


def test_bench_calibrate_writes_a_thresholds_file(tmp_path):
    config = tmp_path / "thresholds.toml"
    done = subprocess.run([sys.executable, "-m", "akidb", "bench", "calibrate", "--runs", "2",
                           "--vectors", "800", "--out", str(tmp_path / "cal"),
                           "--write-config", str(config)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    text = config.read_text()
    assert "search_latency_ms" in text and "%" in text
    bad = subprocess.run([sys.executable, "-m", "akidb", "bench", "calibrate", "--runs", "1"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2



def test_the_median_round_is_a_measured_one_with_the_range_beside_it():
    from akidb.bench.throughput import median_round

    trials = [{"ratio": r, "qps": 100 * r} for r in (0.9, 0.7, 1.1, 0.8)]
    m = median_round(trials)
    assert (m["ratio"], m["qps"]) == (0.8, 80.0)  # the lower middle one, not an average
    assert (m["ratio_min"], m["ratio_max"], m["rounds"]) == (0.7, 1.1, trials)
    assert median_round(trials[:3])["ratio"] == 0.9


def _check_throughput_rounds(record: dict, report: str) -> None:
    """The smoke run asks for 2 rounds: each ingest and batch figure carries both."""
    front = record["results"]["fronts"]["waitress"]
    for figure in [front["ingest"]["arrow"], front["ingest"]["json"],
                   *front["batch100"]["rest"], *front["batch100"]["grpc"]]:
        assert len(figure["rounds"]) == 2
        assert figure["ratio_min"] <= figure["ratio"] <= figure["ratio_max"]
        assert figure["ratio"] in [t["ratio"] for t in figure["rounds"]]
    assert "(median of 2: " in report
