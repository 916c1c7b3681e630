"""JUnit XML as CI systems read it, for every kind of step of a run.

- pytest steps: pytest's own file, with the ``<testsuite>`` named after the testkube
  suite, and reruns written as surefire does: a test that failed and then passed is
  a *passing* testcase holding ``<flakyFailure>``; one that failed again keeps its
  ``<failure>`` and gains a ``<rerunFailure>``.
- bench steps and A/B steps: one testcase per metric, a regression being a
  ``<failure>`` whose message carries the numbers.
- chaos steps: one testcase per hypothesis check, a failed check carrying the
  durability figures.

``write_run`` puts all of a run into ``junit.xml``, one ``<testsuite>`` per testkube
suite (the names in testkube.toml).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def junit_names(nodeid: str) -> tuple[str, str]:
    """pytest's (classname, name) for a node id, as its junitxml plugin writes them."""
    path, *rest = nodeid.split("::")
    module = path.removesuffix(".py").replace("/", ".")
    return ".".join([module, *rest[:-1]]), rest[-1] if rest else path


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    error = next((ln[2:].strip() for ln in lines if ln.startswith("E ")), None)
    return (error or (lines[-1] if lines else "failed"))[:500]


def _rerun_element(tag: str, message: str | None) -> ET.Element:
    element = ET.Element(tag, message=_first_line(message), type="AssertionError")
    ET.SubElement(element, "stackTrace").text = message or ""
    return element


def pytest_suite(junit: Path, suite: str, tests: dict[str, dict[str, Any]]) -> ET.Element:
    """The ``<testsuite>`` of one pytest step, renamed and with reruns folded in
    (``tests``: node id -> the runner's record, with ``first_message`` and
    ``rerun_message`` where it was rerun)."""
    if junit.exists():
        root = ET.parse(junit).getroot()
        found = root if root.tag == "testsuite" else root.find("testsuite")
        element = found if found is not None else ET.Element("testsuite")
    else:  # pytest could not write one (crashed, timed out): the records say what ran
        element = ET.Element("testsuite")
    element.set("name", suite)
    by_names = {junit_names(nodeid): record for nodeid, record in tests.items()}
    for case in element.iter("testcase"):
        record = by_names.get((case.get("classname", ""), case.get("name", "")))
        if record is None:
            continue
        if record["outcome"] == "flaky":
            for failed in [*case.findall("failure"), *case.findall("error")]:
                case.remove(failed)
            case.append(_rerun_element("flakyFailure", record.get("first_message")))
        elif record.get("rerun_message") is not None:
            case.append(_rerun_element("rerunFailure", record["rerun_message"]))
    _recount(element)
    return element


def _recount(suite: ET.Element) -> None:
    cases = list(suite.iter("testcase"))
    suite.set("tests", str(len(cases)))
    for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        suite.set(attr, str(sum(1 for c in cases if c.find(tag) is not None)))


def metric_message(name: str, m: dict[str, Any]) -> str:
    current = m.get("current_median", m.get("candidate_median"))
    return (f"{name}: {current:.4g} vs baseline {m['baseline_median']:.4g} (ratio "
            f"{m['ratio']:.3f}, interval [{m['ci_low']:.3f}, {m['ci_high']:.3f}], "
            f"threshold {m['threshold']:.0%}"
            + (f", {m['direction']} is better" if m.get("direction") else "") + ")")


def metric_cases(suite: ET.Element, classname: str, metrics: dict[str, dict[str, Any]],
                 seconds: float) -> None:
    """One testcase per metric under ``suite``; a regression fails with its numbers."""
    for name, m in metrics.items():
        case = ET.SubElement(suite, "testcase", classname=classname, name=name,
                             time=f"{seconds / max(len(metrics), 1):.3f}")
        if m["regression"]:
            ET.SubElement(case, "failure", message=metric_message(name, m),
                          type="PerformanceRegression").text = json.dumps(m, default=str)
        else:
            ET.SubElement(case, "system-out").text = metric_message(name, m)


def chaos_cases(suite: ET.Element, name: str, result: dict[str, Any] | None,
                seconds: float, message: str | None) -> None:
    """One testcase per hypothesis check of a chaos experiment."""
    classname = f"chaos.{Path(name).stem}"
    if result is None:  # the experiment did not finish: one error case says why
        case = ET.SubElement(suite, "testcase", classname=classname, name="experiment",
                             time=f"{seconds:.3f}")
        ET.SubElement(case, "error", message=message or "no result")
        return
    d = result.get("checker", {})
    figures = (f"acknowledged {d.get('acknowledged')}, lost {d.get('lost')}, stale reads "
               f"{d.get('stale_reads')}, resurrected {d.get('resurrected')}, phantoms "
               f"{d.get('phantoms')}, search mismatches {d.get('search_mismatches')}, "
               f"indeterminate {d.get('indeterminate')}, availability "
               f"{result.get('availability', 0):.3f}, seed {result.get('seed')}")
    checks = result.get("checks", {})
    for check, ok in checks.items():
        case = ET.SubElement(suite, "testcase", classname=classname, name=check,
                             time=f"{seconds / max(len(checks), 1):.3f}")
        if not ok:
            ET.SubElement(case, "failure", message=f"{check} failed: {figures}",
                          type="HypothesisFailed").text = json.dumps(d, default=str)
        else:
            ET.SubElement(case, "system-out").text = figures


def write(path: Path, suites: list[ET.Element]) -> Path:
    root = ET.Element("testsuites")
    for suite in suites:
        _recount(suite)
        root.append(suite)
    for attr in ("tests", "failures", "errors", "skipped"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in suites)))
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="unicode", xml_declaration=True)
    return path


def write_run(run: dict[str, Any], run_dir: Path) -> Path:
    """``run_dir/junit.xml`` for the whole run, from its steps' files and results."""
    suites: dict[str, ET.Element] = {}

    def suite_of(name: str) -> ET.Element:
        return suites.setdefault(name, ET.Element("testsuite", name=name))

    for step in run["steps"]:
        name, seconds = step["suite"], float(step.get("duration_s") or 0)
        if step["kind"] == "pytest":
            part = pytest_suite(Path(step["junit"]), name, {})  # reruns already folded in
            target = suite_of(name)
            for key, value in part.attrib.items():
                if key not in ("tests", "failures", "errors", "skipped"):
                    target.set(key, value)
            target.extend(list(part))
        elif step["kind"] in ("bench", "ab"):
            if step.get("deltas"):
                metric_cases(suite_of(name), f"{step['kind']}.{step['name']}",
                             {d["metric"]: d for d in step["deltas"]}, seconds)
            else:  # no comparison (no baseline yet, or the step failed): one case
                case = ET.SubElement(suite_of(name), "testcase",
                                     classname=f"{step['kind']}.{step['name']}",
                                     name=step["name"], time=f"{seconds:.3f}")
                if step["outcome"] != "passed":
                    ET.SubElement(case, "error", message=step.get("message") or "failed")
        elif step["kind"] == "chaos":
            result_path = Path(step.get("result") or "")
            result = json.loads(result_path.read_text()) if result_path.is_file() else None
            chaos_cases(suite_of(name), step["name"], result, seconds, step.get("message"))
    return write(run_dir / "junit.xml", list(suites.values()))
