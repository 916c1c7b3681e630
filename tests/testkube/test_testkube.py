"""testkube on a small synthetic project: exit codes, history, flaky detection, reports,
sharding, bench regressions through the gate, and bad configuration."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CONFIG = """
[suites.green]
pytest = ["tests/test_ok.py"]

[suites.all]
pytest = ["tests"]

[suites.toggle]
pytest = ["tests/test_toggle.py"]

[suites.perf]
bench = [{name = "lat", command = ["{python}", "measure.py"], baseline = "baseline.json"}]

[suites.ci]
include = ["green", "perf"]
"""

TESTS = {
    "test_ok.py": """
        import pytest

        @pytest.mark.parametrize("n", range(7))
        def test_number(n):
            assert n >= 0

        def test_skipped():
            pytest.skip("not today")
    """,
    "test_bad.py": """
        def test_broken():
            assert 1 + 1 == 3, "arithmetic is broken"
    """,
    "test_flaky.py": """
        from pathlib import Path

        def test_fails_first_time():
            marker = Path(__file__).with_name("ran-once")
            if not marker.exists():
                marker.write_text("x")
                raise AssertionError("first attempt fails")
    """,
    "test_toggle.py": """
        from pathlib import Path

        def test_depends_on_mode():
            assert Path(__file__).parents[1].joinpath("mode").read_text() == "pass"
    """,
}

BENCH = """
import argparse, json, pathlib
ap = argparse.ArgumentParser(); ap.add_argument("--out"); args = ap.parse_args()
scale = float(pathlib.Path("scale").read_text())
samples = [scale * (10 + (i % 5) * 0.1) for i in range(40)]
out = pathlib.Path(args.out); out.mkdir(parents=True, exist_ok=True)
(out / "lat.json").write_text(json.dumps({"metrics": {"search_ms": {
    "unit": "ms", "direction": "lower", "samples": samples}}}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    for name, body in TESTS.items():
        (tmp_path / "tests" / name).write_text(textwrap.dedent(body))
    (tmp_path / "testkube.toml").write_text(CONFIG.replace("{python}", sys.executable))
    (tmp_path / "measure.py").write_text(BENCH)
    (tmp_path / "scale").write_text("1.0")
    (tmp_path / "mode").write_text("pass")
    return tmp_path


def tk(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    akidb = str(Path(sys.executable).with_name("akidb"))  # the console script, as users run it
    return subprocess.run([akidb, "testkube", *args], cwd=project,
                          capture_output=True, text=True, timeout=300)


def _db(project: Path) -> sqlite3.Connection:
    return sqlite3.connect(project / "reports" / "testkube.db")


def test_green_suite_exits_0_and_is_recorded(project):
    out = tk(project, "run", "--suite", "green")
    assert out.returncode == 0, out.stdout + out.stderr
    runs = _db(project).execute("SELECT id, suite, outcome, exit_code, counts FROM runs"
                                ).fetchall()
    assert len(runs) == 1 and runs[0][1:4] == ("green", "passed", 0)
    assert json.loads(runs[0][4]) == {"passed": 7, "skipped": 1}
    run_dir = project / "reports" / "runs" / runs[0][0]
    assert (run_dir / "junit-green.xml").exists() and (run_dir / "report.html").exists()
    listed = tk(project, "history")
    assert runs[0][0] in listed.stdout and "passed" in listed.stdout


def test_failures_and_flaky_tests(project):
    out = tk(project, "run", "--suite", "all")
    assert out.returncode == 1
    results = dict(_db(project).execute("SELECT name, outcome FROM results").fetchall())
    assert results["tests/test_bad.py::test_broken"] == "failed"
    assert results["tests/test_flaky.py::test_fails_first_time"] == "flaky"
    assert results["tests/test_ok.py::test_number[3]"] == "passed"
    report = tk(project, "report")
    assert report.returncode == 0
    md = report.stdout
    assert "FAILED" in md and "tests/test_bad.py::test_broken" in md
    assert "arithmetic is broken" in md  # the failure's own message
    assert "`tests/test_flaky.py::test_fails_first_time`: failed, then passed on rerun" in md
    html = next((project / "reports" / "runs").glob("*/report.html")).read_text()
    assert "<table>" in html and "test_broken" in html
    run_dir = next((project / "reports" / "runs").iterdir())
    for path in (run_dir / "junit-all.xml", run_dir / "junit.xml"):
        cases = _junit_cases(path, "all")
        flaky = cases["tests.test_flaky", "test_fails_first_time"]
        assert flaky.is_passed  # a CI reading JUnit sees a pass ...
        (first,) = flaky._elem.findall("flakyFailure")  # ... that failed once, as surefire
        assert "first attempt fails" in first.get("message")
        assert "first attempt fails" in first.find("stackTrace").text
        broken = cases["tests.test_bad", "test_broken"]
        assert not broken.is_passed and "arithmetic is broken" in broken.result[0].message
        (rerun,) = broken._elem.findall("rerunFailure")  # it failed on the rerun too
        assert "arithmetic is broken" in rerun.get("message")
        assert cases["tests.test_ok", "test_number[3]"].is_passed


def _junit_cases(path: Path, suite_name: str) -> dict:
    """The testcases of the suite named ``suite_name``, read by junitparser."""
    from junitparser import JUnitXml

    xml = JUnitXml.fromfile(str(path))
    suites = {s.name: s for s in xml}
    assert suite_name in suites, (path, list(suites))
    suite = suites[suite_name]
    failed = [c for c in suite if not c.is_passed and not c.is_skipped]
    assert suite.failures + suite.errors == len(failed)  # counts agree with the cases
    return {(c.classname, c.name): c for c in suite}


def test_alternating_outcomes_are_flagged_flaky(project):
    for mode in ("pass", "fail", "pass"):
        (project / "mode").write_text(mode)
        out = tk(project, "run", "--suite", "toggle", "--no-rerun")
        assert out.returncode == (0 if mode == "pass" else 1)
    md = tk(project, "report").stdout
    assert "test_depends_on_mode`: alternates between pass and fail" in md
    assert md.count("| passed |") + md.count("| failed |") >= 3  # the trend table


def test_shards_cover_every_test_exactly_once(project):
    seen: list[str] = []
    for i in (1, 2, 3):
        out = tk(project, "run", "--suite", "green", "--shard", f"{i}/3")
        assert out.returncode == 0, out.stdout + out.stderr
    rows = _db(project).execute("SELECT r.name, runs.shard FROM results r JOIN runs ON "
                                "runs.id = r.run_id").fetchall()
    seen = [name for name, _ in rows]
    assert len(seen) == len(set(seen)) == 8  # 7 parametrized + 1 skipped, no overlap
    assert {shard for _, shard in rows} == {"1/3", "2/3", "3/3"}
    matrix = json.loads(tk(project, "matrix", "--suite", "green", "--shards", "3").stdout)
    assert [m["shard"] for m in matrix["include"]] == ["1/3", "2/3", "3/3"]


def test_bench_regression_fails_the_run(project):
    out = tk(project, "run", "--suite", "perf")
    assert out.returncode == 0 and "no baseline" in out.stdout
    produced = next((project / "reports" / "runs").glob("*/bench/lat/lat.json"))
    (project / "baseline.json").write_text(produced.read_text())
    assert tk(project, "run", "--suite", "ci").returncode == 0  # same speed: green
    (project / "scale").write_text("1.2")  # 20% slower
    out = tk(project, "run", "--suite", "ci")
    assert out.returncode == 1 and "regression in search_ms" in out.stdout
    md = tk(project, "report").stdout
    assert "REGRESSION" in md and "search_ms" in md
    run_dir = max((project / "reports" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    metric = _junit_cases(run_dir / "junit.xml", "perf")["bench.lat", "search_ms"]
    assert not metric.is_passed  # one testcase per metric, the numbers in the message
    assert "ratio 1.2" in metric.result[0].message and "vs baseline" in metric.result[0].message
    assert len(_junit_cases(run_dir / "junit.xml", "green")) == 8  # suites keep their names


def test_history_finds_a_suite_run_inside_another(project):
    assert tk(project, "run", "--suite", "ci").returncode == 0
    (run_id,) = [r[0] for r in _db(project).execute("SELECT id FROM runs")]
    for suite in ("ci", "green", "perf"):
        listed = tk(project, "history", "--suite", suite)
        assert run_id in listed.stdout, (suite, listed.stdout)
    assert run_id not in tk(project, "history", "--suite", "toggle").stdout


def test_thresholds_take_the_gate_format(project):
    config = CONFIG.replace("{python}", sys.executable)
    for good in ('"15%"', "0.15"):
        (project / "testkube.toml").write_text(config.replace(
            'baseline = "baseline.json"}',
            f'baseline = "baseline.json", thresholds = {{ search_ms = {good} }}}}'))
        assert tk(project, "run", "--suite", "perf").returncode == 0
    (project / "testkube.toml").write_text(config.replace(
        'baseline = "baseline.json"}', 'baseline = "baseline.json", thresholds = '
        '{ search_ms = "150%" }}'))
    out = tk(project, "run", "--suite", "perf")
    assert out.returncode == 2 and "thresholds: threshold must be in [0, 1)" in out.stderr


@pytest.mark.parametrize("args,message", [
    (["run", "--suite", "nope"], "no suite 'nope'"),
    (["run", "--suite", "green", "--shard", "4/3"], "1 <= i <= n"),
    (["run", "--suite", "green", "--config", "missing.toml"], "not found"),
    (["report", "no-such-run"], "no run"),
])
def test_usage_errors_exit_2(project, args, message):
    out = tk(project, *args)
    assert out.returncode == 2 and message in out.stderr


def test_bad_config_exits_2(project):
    (project / "testkube.toml").write_text('[suites.a]\npytest = "tests"\n')
    out = tk(project, "run", "--suite", "a")
    assert out.returncode == 2 and "[suites.a].pytest must be a list" in out.stderr
    (project / "testkube.toml").write_text('[suites.a]\ninclude = ["b"]\n[suites.b]\n'
                                           'include = ["a"]\n')
    out = tk(project, "run", "--suite", "a")
    assert out.returncode == 2 and "cycle" in out.stderr


REPO = Path(__file__).resolve().parents[2]


def test_ab_step_verdict_in_record_report_and_junit(project):
    """An A/B step of this repository against itself, the candidate's searches slowed
    5 ms: the run fails, the record and the report carry the verdict, and the JUnit
    file has one testcase per metric with the regression as a failure."""
    small = '"--vectors", "400", "--dim", "16", "--queries", "30"'
    (project / "testkube.toml").write_text(f"""
[suites.same.ab]
baseline = "{REPO}"
candidate = "{REPO}"
scenarios = ["search", "ingest"]
rounds = 2
args = [{small}, "--threshold", "search_p50_ms=50%", "--threshold", "ingest_vectors_per_s=90%"]

[suites.slow.ab]
baseline = "{REPO}"
candidate = "{REPO}"
scenarios = ["search"]
rounds = 2
args = [{small}, "--candidate-env", "AKIDB_TEST_SEARCH_DELAY_MS=5"]
""")
    assert tk(project, "run", "--suite", "same").returncode == 0
    out = tk(project, "run", "--suite", "slow")
    assert out.returncode == 1, out.stdout + out.stderr
    run_dir = max((project / "reports" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    record = json.loads((run_dir / "run.json").read_text())
    step = next(s for s in record["steps"] if s["kind"] == "ab")
    assert step["outcome"] == "failed" and "search_p50_ms" in step["message"]
    assert {r["name"]: r["outcome"] for r in record["results"]} == {"ab:search_p50_ms":
                                                                    "failed"}
    (case,) = _junit_cases(run_dir / "junit-ab-slow.xml", "slow").values()
    assert case.name == "search_p50_ms" and not case.is_passed
    assert "ratio" in case.result[0].message and "threshold" in case.result[0].message
    assert _junit_cases(run_dir / "junit.xml", "slow")["ab.ab-slow", "search_p50_ms"]
    md = tk(project, "report").stdout
    assert "REGRESSION" in md and "search_p50_ms" in md


@pytest.mark.parametrize("body, message", [
    ("ab = 3", "must be a table with baseline"),
    ('ab = { baseline = "HEAD^", rounds = 3 }', "rounds must be an even integer"),
    ('ab = { baseline = "HEAD^", scenarios = [] }', "non-empty list"),
    ('ab = { baseline = "HEAD^", speed = 1 }', "unknown key"),
])
def test_bad_ab_step_config_exits_2(project, body, message):
    (project / "testkube.toml").write_text(f"[suites.a]\n{body}\n")
    out = tk(project, "run", "--suite", "a")
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_chaos_hypotheses_become_testcases(tmp_path):
    """A chaos step's checks, one testcase each; a failed one carries the figures."""
    from akidb.testkube import junit

    result = {"checks": {"steady_state_before": True, "checker": False},
              "checker": {"acknowledged": 120, "lost": 1, "stale_reads": 0, "resurrected": 2,
                          "phantoms": 0, "search_mismatches": 0, "indeterminate": 3,
                          "valid": False},
              "availability": 0.97, "seed": 42}
    (tmp_path / "kill9-ingest.json").write_text(json.dumps(result))
    run = {"steps": [{"kind": "chaos", "suite": "chaos", "name": "kill9-ingest",
                      "duration_s": 4.0, "outcome": "failed",
                      "result": str(tmp_path / "kill9-ingest.json")},
                     {"kind": "chaos", "suite": "chaos", "name": "pause", "duration_s": 1.0,
                      "outcome": "error", "message": "exited 2"}]}
    cases = _junit_cases(junit.write_run(run, tmp_path), "chaos")
    assert cases["chaos.kill9-ingest", "steady_state_before"].is_passed
    lost = cases["chaos.kill9-ingest", "checker"]
    assert not lost.is_passed
    assert "acknowledged 120, lost 1, stale reads 0, resurrected 2" in lost.result[0].message
    assert "availability 0.970, seed 42" in lost.result[0].message
    assert "exited 2" in cases["chaos.pause", "experiment"].result[0].message
