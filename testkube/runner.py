"""Run a suite: its pytest selections (xdist when parallel), bench scenarios against their
baselines, chaos experiments; collect everything into one run record.

Tests that fail are run once more: a test that then passes is recorded as
``flaky`` (reported, not failing the run). Exit code: 0 green, 1 a test failed,
a benchmark regressed or a chaos hypothesis failed (or a step could not run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from akidb.harness.process import ManagedProcess, ProcessError
from akidb.testkube import junit
from akidb.testkube.ab_step import run_ab
from akidb.testkube.config import BenchStep, Suite, expand
from akidb.testkube.pytest_plugin import RESULTS_ENV, SHARD_ENV

PYTEST_OK, PYTEST_FAILED, PYTEST_NO_TESTS = 0, 1, 5


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _run(cmd: list[str], log: Path, timeout: float, env: dict[str, str] | None = None
         ) -> tuple[int | None, float]:
    """Run a command in its own process group, output to ``log``; None on timeout."""
    started = time.perf_counter()
    step = ManagedProcess(Path(cmd[0]).name, cmd, log, env={**os.environ, **(env or {})})
    try:
        code = step.run(timeout)
    except ProcessError as exc:
        log.write_text(str(exc))
        code = 127
    return code, time.perf_counter() - started


def _read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def git_sha(cwd: Path | None = None) -> str | None:
    """The commit of the project under test (the working directory's repository)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def log_excerpt(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_pytest(suite: Suite, run_dir: Path, shard: str | None, rerun: bool,
               python: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    log = run_dir / f"pytest-{suite.name}.log"
    results_path = run_dir / f"results-{suite.name}.jsonl"
    cmd = [python, "-m", "pytest", *suite.pytest, "-p", "akidb.testkube.pytest_plugin",
           "--junitxml", str(run_dir / f"junit-{suite.name}.xml"), "-q", "-rfE"]
    if suite.markers is not None:
        cmd += ["-m", suite.markers]
    if suite.parallel:
        cmd += ["-n", str(suite.parallel)]
    env = {RESULTS_ENV: str(results_path)}
    if shard:
        env[SHARD_ENV] = shard
    code, seconds = _run(cmd, log, suite.timeout, env)
    tests = {r["nodeid"]: r for r in _read_results(results_path)}
    step = {"kind": "pytest", "suite": suite.name, "name": suite.name,
            "selection": suite.pytest,
            "exit_code": code, "duration_s": seconds, "log": str(log),
            "junit": str(run_dir / f"junit-{suite.name}.xml")}
    if code is None:
        step["outcome"], step["message"] = "error", f"timed out after {suite.timeout:.0f}s"
    elif code in (PYTEST_OK, PYTEST_NO_TESTS):
        step["outcome"] = "passed"
    elif code == PYTEST_FAILED:
        step["outcome"] = "failed"
    else:
        step["outcome"] = "error"
        step["message"] = f"pytest exited {code} (interrupted, internal or usage error)"
    failed = [n for n, r in tests.items() if r["outcome"] in ("failed", "error")]
    if rerun and failed and code == PYTEST_FAILED:
        rerun_path = run_dir / f"results-{suite.name}-rerun.jsonl"
        _run([python, "-m", "pytest", *failed, "-p", "akidb.testkube.pytest_plugin", "-q",
              "-p", "no:randomly"], run_dir / f"pytest-{suite.name}-rerun.log",
             suite.timeout, {RESULTS_ENV: str(rerun_path)})
        for r in _read_results(rerun_path):
            first = tests.get(r["nodeid"])
            if first is None:
                continue
            if r["outcome"] == "passed":
                first["outcome"], first["first_message"] = "flaky", first["message"]
                first["message"] = "failed, then passed on rerun:\n" + (first["message"] or "")
            elif r["outcome"] in ("failed", "error"):
                first["rerun_message"] = r["message"] or ""
        if not any(t["outcome"] in ("failed", "error") for t in tests.values()):
            step["outcome"] = "passed"
            step["message"] = "every failure passed on rerun (flaky)"
    junit_path = Path(step["junit"])  # pytest's file, with surefire's rerun elements
    junit.write(junit_path, [junit.pytest_suite(junit_path, suite.name, tests)])
    results = [{"kind": "test", "name": n, "outcome": r["outcome"],
                "duration_s": r["duration"], "message": r["message"]} for n, r in tests.items()]
    step["tests"] = len(results)
    return step, results


def run_bench(suite: Suite, bench: BenchStep, run_dir: Path) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
    from akidb.bench import gate

    out = run_dir / "bench" / bench.name
    log = run_dir / f"bench-{bench.name}.log"
    command = list(bench.command)
    if command[0] in ("python", "python3"):  # the interpreter testkube runs in (the venv's)
        command[0] = sys.executable
    code, seconds = _run([*command, "--out", str(out)], log, suite.timeout)
    step: dict[str, Any] = {"kind": "bench", "suite": suite.name, "name": bench.name,
                            "exit_code": code, "duration_s": seconds, "log": str(log)}
    files = sorted(out.glob("*.json")) if out.exists() else []
    if code != 0 or not files:
        step["outcome"] = "error"
        step["message"] = ("timed out" if code is None else
                           f"exited {code}" if code else "wrote no result JSON")
        return step, {"kind": "bench", "name": bench.name, "outcome": "error",
                      "duration_s": seconds, "message": step["message"]}
    step["result"] = str(files[0])
    step["outcome"] = "passed"
    if bench.baseline:
        baseline = Path(bench.baseline)
        if not baseline.exists():
            step["message"] = f"no baseline at {baseline} yet (copy {files[0]} there)"
        else:
            try:
                verdicts = gate.compare(gate.load_metrics(baseline),
                                        gate.load_metrics(files[0]), bench.thresholds)
            except gate.GateError as exc:
                step["outcome"], step["message"] = "error", f"gate: {exc}"
            else:
                step["deltas"] = gate.to_json(verdicts)
                regressed = [v.metric for v in verdicts if v.regression]
                if regressed:
                    step["outcome"] = "failed"
                    step["message"] = f"regression in {', '.join(regressed)}"
    return step, {"kind": "bench", "name": bench.name, "outcome": step["outcome"],
                  "duration_s": seconds, "message": step.get("message")}


def run_chaos(suite: Suite, name: str, run_dir: Path, python: str
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    out = run_dir / "chaos"
    log = run_dir / f"chaos-{Path(name).stem}.log"
    code, seconds = _run([python, "-m", "akidb", "chaos", "run", name, "--out", str(out)],
                         log, suite.timeout)
    outcome = {0: "passed", 1: "failed"}.get(code, "error")  # type: ignore[arg-type]
    step = {"kind": "chaos", "suite": suite.name, "name": name, "exit_code": code,
            "duration_s": seconds, "log": str(log), "outcome": outcome,
            "result": str(out / f"{Path(name).stem}.json")}
    message = {"failed": "steady-state hypothesis failed", "error": f"exited {code}"}.get(
        outcome)
    step["message"] = message
    return step, {"kind": "chaos", "name": name, "outcome": outcome, "duration_s": seconds,
                  "message": message}


def _all_suites(suites: dict[str, Suite], name: str) -> list[str]:
    """The suite and every suite it includes, at any depth (include-only ones too)."""
    seen = [name]
    for inc in suites[name].include:
        seen += [s for s in _all_suites(suites, inc) if s not in seen]
    return seen


def run_suite(suites: dict[str, Suite], name: str, reports: Path, *, shard: str | None = None,
              rerun: bool = True, python: str = sys.executable) -> dict[str, Any]:
    """Run a suite (and what it includes); returns the run record, not yet stored."""
    from akidb.bench.environment import fingerprint

    parts = expand(suites, name)
    run_id = new_run_id()
    run_dir = reports / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    steps: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for suite in parts:
        if suite.pytest:
            step, tests = run_pytest(suite, run_dir, shard, rerun, python)
            steps.append(step)
            results.extend(tests)
        if shard and not shard.startswith("1/"):
            continue  # bench and chaos steps run unsharded, on the first shard only
        for bench in suite.bench:
            step, res = run_bench(suite, bench, run_dir)
            steps.append(step)
            results.append(res)
        for experiment in suite.chaos:
            step, res = run_chaos(suite, experiment, run_dir, python)
            steps.append(step)
            results.append(res)
        if suite.ab:
            step, many = run_ab(suite, suite.ab, run_dir, _run)
            steps.append(step)
            results.extend(many)
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    bad = [s for s in steps if s["outcome"] != "passed"]
    outcome = "passed" if not bad else ("error" if all(s["outcome"] == "error" for s in bad)
                                        else "failed")
    env = fingerprint()
    record = {"id": run_id, "suite": name, "suites": _all_suites(suites, name),
              "shard": shard, "started_at": started,
              "finished_at": time.time(), "git_sha": git_sha(), "environment": env,
              "outcome": outcome, "exit_code": 0 if outcome == "passed" else 1,
              "counts": counts, "steps": steps, "results": results,
              "artifacts": str(run_dir)}
    record["junit"] = str(junit.write_run(record, run_dir))
    (run_dir / "run.json").write_text(json.dumps(record, indent=1, default=str))
    return record
