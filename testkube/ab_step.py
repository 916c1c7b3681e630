"""A suite's A/B step: ``akidb bench ab`` of the checkout against a baseline revision.

Its verdict goes into the run record (a step with per-metric deltas, shown in the
report like a bench step's), the results (one per metric) and a JUnit XML file with
one testcase per metric, a regression being a failure that carries the numbers.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from akidb.testkube.config import ABStep, Suite


def _message(name: str, m: dict[str, Any]) -> str:
    return (f"{name}: candidate {m['candidate_median']:.4g} vs baseline "
            f"{m['baseline_median']:.4g} (ratio {m['ratio']:.3f}, interval "
            f"{m['ci_low']:.3f}-{m['ci_high']:.3f}, threshold {m['threshold']:.0%}, "
            f"{m['direction']} is better)")


def write_junit(path: Path, suite: str, result: dict[str, Any], seconds: float) -> None:
    metrics = result["metrics"]
    failed = [n for n, m in metrics.items() if m["regression"]]
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=f"ab-{suite}", tests=str(len(metrics)),
                       failures=str(len(failed)), errors="0", time=f"{seconds:.1f}")
    for name, m in metrics.items():
        case = ET.SubElement(ts, "testcase", classname=f"ab.{suite}", name=name,
                             time=f"{seconds / max(len(metrics), 1):.1f}")
        if m["regression"]:
            ET.SubElement(case, "failure", message=_message(name, m)).text = json.dumps(m)
        else:
            ET.SubElement(case, "system-out").text = _message(name, m)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)


def run_ab(suite: Suite, step: ABStep, run_dir: Path, run: Any
           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``run`` is the runner's command runner: (cmd, log, timeout) -> (code, seconds)."""
    out = run_dir / f"ab-{suite.name}"
    log = run_dir / f"ab-{suite.name}.log"
    cmd = [sys.executable, "-m", "akidb", "bench", "ab", step.baseline, step.candidate,
           "--rounds", str(step.rounds), "--out", str(out),
           *(arg for s in step.scenarios for arg in ("--scenario", s)), *step.args]
    code, seconds = run(cmd, log, suite.timeout)
    record: dict[str, Any] = {"kind": "ab", "suite": suite.name, "name": f"ab-{suite.name}",
                              "exit_code": code, "duration_s": seconds, "log": str(log)}
    result_path = out / "ab.json"
    if code not in (0, 1) or not result_path.exists():
        record["outcome"] = "error"
        record["message"] = "timed out" if code is None else f"bench ab exited {code}"
        return record, [{"kind": "bench", "name": record["name"], "outcome": "error",
                         "duration_s": seconds, "message": record["message"]}]
    result = json.loads(result_path.read_text())
    junit = run_dir / f"junit-ab-{suite.name}.xml"
    write_junit(junit, suite.name, result, seconds)
    record.update(result=str(result_path), junit=str(junit),
                  outcome="failed" if code == 1 else "passed")
    record["deltas"] = [{"metric": n, "baseline_median": m["baseline_median"],
                         "current_median": m["candidate_median"], "ratio": m["ratio"],
                         "ci_low": m["ci_low"], "ci_high": m["ci_high"],
                         "regression": m["regression"], "improvement": False}
                        for n, m in result["metrics"].items()]
    if result["regressions"]:
        accepted = result.get("accepted")
        record["message"] = (f"regression in {', '.join(result['regressions'])}"
                             + (f" (accepted: {accepted})" if accepted and code == 0 else ""))
    results = [{"kind": "bench", "name": f"ab:{n}",
                "outcome": "failed" if m["regression"] and code == 1 else "passed",
                "duration_s": seconds / max(len(result["metrics"]), 1),
                "message": _message(n, m)} for n, m in result["metrics"].items()]
    return record, results
