"""A suite's A/B step: ``akidb bench ab`` of the checkout against a baseline revision.

Its verdict goes into the run record (a step with per-metric deltas, shown in the
report like a bench step's), the results (one per metric) and a JUnit XML file with
one testcase per metric (``junit.metric_cases``).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from akidb.testkube import junit
from akidb.testkube.config import ABStep, Suite


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
    junit_path = run_dir / f"junit-ab-{suite.name}.xml"
    cases = ET.Element("testsuite", name=suite.name)
    junit.metric_cases(cases, f"ab.{suite.name}", result["metrics"], seconds)
    junit.write(junit_path, [cases])
    record.update(result=str(result_path), junit=str(junit_path),
                  outcome="failed" if code == 1 else "passed")
    record["deltas"] = [{"metric": n, "baseline_median": m["baseline_median"],
                         "current_median": m["candidate_median"], "ratio": m["ratio"],
                         "ci_low": m["ci_low"], "ci_high": m["ci_high"],
                         "threshold": m["threshold"], "direction": m["direction"],
                         "regression": m["regression"], "improvement": False}
                        for n, m in result["metrics"].items()]
    if result["regressions"]:
        accepted = result.get("accepted")
        record["message"] = (f"regression in {', '.join(result['regressions'])}"
                             + (f" (accepted: {accepted})" if accepted and code == 0 else ""))
    results = [{"kind": "bench", "name": f"ab:{n}",
                "outcome": "failed" if m["regression"] and code == 1 else "passed",
                "duration_s": seconds / max(len(result["metrics"]), 1),
                "message": junit.metric_message(n, m)} for n, m in result["metrics"].items()]
    return record, results
