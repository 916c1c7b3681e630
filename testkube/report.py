"""Run reports in Markdown and HTML: summary, failures with log excerpts, bench deltas,
trends across recent runs, and flaky tests (flaky on rerun, or alternating across runs)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from akidb.bench.results import markdown_to_html
from akidb.testkube.history import History, alternating
from akidb.testkube.runner import log_excerpt


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def build(history: History, run: dict[str, Any], trend_runs: int = 10) -> dict[str, Any]:
    """The report's content, once, for both renderings."""
    tests = [r for r in run["results"] if r["kind"] == "test"]
    failures = [r for r in run["results"] if r["outcome"] in ("failed", "error")]
    step_errors = [s for s in run["steps"] if s["outcome"] != "passed"]
    seq = history.outcomes(run["suite"], run["started_at"], trend_runs)
    flaky_rerun = sorted(r["name"] for r in tests if r["outcome"] == "flaky")
    flaky_alternating = sorted(n for n, outcomes in seq.items() if alternating(outcomes))
    deltas = [(s["name"], d) for s in run["steps"] if s["kind"] in ("bench", "ab")
              for d in s.get("deltas", [])]
    return {"run": run, "tests": tests, "failures": failures, "step_errors": step_errors,
            "flaky_rerun": flaky_rerun, "flaky_alternating": flaky_alternating,
            "deltas": deltas, "trend": history.runs(run["suite"], trend_runs)}


def markdown(content: dict[str, Any]) -> str:
    run = content["run"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(run["counts"].items())) or "no results"
    lines = [f"# testkube run {run['id']}: {run['outcome'].upper()}", "",
             f"- suite `{run['suite']}`" + (f", shard {run['shard']}" if run["shard"] else ""),
             f"- git {run.get('git_sha') or 'unknown'}",
             f"- started {_when(run['started_at'])}, took "
             f"{run['finished_at'] - run['started_at']:.1f}s",
             f"- results: {counts}", "", "## Steps", "",
             "| kind | name | outcome | seconds | note |", "|---|---|---|---|---|"]
    for s in run["steps"]:
        lines.append(f"| {s['kind']} | {s['name']} | {s['outcome']} | {s['duration_s']:.1f} | "
                     f"{(s.get('message') or '').replace('|', '/')} |")
    if content["failures"]:
        lines += ["", "## Failures", ""]
        for f in content["failures"]:
            lines += [f"### {f['kind']} `{f['name']}` ({f['outcome']})", "", "```",
                      (f.get("message") or "").strip()[-3000:], "```", ""]
    for s in content["step_errors"]:
        if s.get("log") and s["kind"] != "pytest":
            lines += [f"### log of {s['kind']} {s['name']} (last lines)", "", "```",
                      log_excerpt(Path(s["log"])), "```", ""]
    if content["deltas"]:
        lines += ["", "## Bench deltas vs baseline", "",
                  "| step | metric | baseline | current | ratio | interval | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for name, d in content["deltas"]:
            verdict = "REGRESSION" if d["regression"] else (
                "improvement" if d["improvement"] else "same")
            lines.append(f"| {name} | {d['metric']} | {d['baseline_median']:.4g} | "
                         f"{d['current_median']:.4g} | {d['ratio']:.3f} | "
                         f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}] | {verdict} |")
    lines += ["", "## Flaky tests", ""]
    if content["flaky_rerun"] or content["flaky_alternating"]:
        lines += [f"- `{n}`: failed, then passed on rerun" for n in content["flaky_rerun"]]
        lines += [f"- `{n}`: alternates between pass and fail across recent runs"
                  for n in content["flaky_alternating"]]
    else:
        lines.append("none")
    lines += ["", "## Trend (recent runs of this suite)", "",
              "| run | started | outcome | results | seconds |", "|---|---|---|---|---|"]
    for r in content["trend"]:
        res = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))
        lines.append(f"| {r['id']} | {_when(r['started_at'])} | {r['outcome']} | {res} | "
                     f"{r['finished_at'] - r['started_at']:.1f} |")
    return "\n".join(lines) + "\n"


def write(history: History, run: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    md_text = markdown(build(history, run))
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text(md_text)
    html_path.write_text(markdown_to_html(md_text, f"testkube run {run['id']}",
                                                 run.get("environment")))
    return md_path, html_path
