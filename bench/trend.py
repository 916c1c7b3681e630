"""Each metric across stored runs: is it drifting, and since when?

The gate answers "did this run regress against that one"; a trend answers the
question before it — which runs to compare. Runs are result files with raw
samples (every benchmark's JSON with ``metrics``, baselines, testkube run
folders), ordered by when they were recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from akidb.bench import changepoint, gate
from akidb.bench.results import markdown_table, markdown_to_html


class TrendError(ValueError):
    """Nothing to plot, or a named file that is not a result with samples."""


@dataclass
class Run:
    path: Path
    benchmark: str
    when: datetime
    git_sha: str | None
    metrics: dict[str, dict[str, Any]]

    @property
    def label(self) -> str:
        sha = (self.git_sha or "")[:7]
        return f"{self.when:%m-%d %H:%M}" + (f" {sha}" if sha else "")


def _read(path: Path) -> Run:
    data = gate.load_result(path)
    stamp = data.get("recorded_at")
    try:
        when = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        when = None
    if when is None:  # results written before runs were stamped: the file's time
        when = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    env = data.get("environment") if isinstance(data.get("environment"), dict) else {}
    return Run(path, str(data.get("benchmark", path.stem)), when, env.get("git_sha"),
               data["metrics"])


def collect(paths: tuple[Path, ...] | list[Path]) -> list[Run]:
    """Runs from files (each must be a result with samples) and folders (searched
    recursively; JSON without samples there is skipped), oldest first."""
    runs = []
    for path in paths:
        if path.is_dir():
            for candidate in sorted(path.rglob("*.json")):
                try:
                    runs.append(_read(candidate))
                except (gate.GateError, ValueError, OSError):
                    continue
        else:
            try:
                runs.append(_read(path))
            except gate.GateError as exc:
                raise TrendError(str(exc)) from None
    if not runs:
        raise TrendError(f"no result files with samples under {', '.join(map(str, paths))}")
    return sorted(runs, key=lambda r: r.when)


def _plot(name: str, unit: str, direction: str, rows: list[tuple[Run, np.ndarray]],
          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(rows))
    med = [float(np.median(s)) for _, s in rows]
    lo = [float(np.percentile(s, 5)) for _, s in rows]
    hi = [float(np.percentile(s, 95)) for _, s in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(rows) + 3), 4))
    ax.fill_between(x, lo, hi, alpha=0.25, label="P5-P95")
    ax.plot(x, med, marker="o", label="median")
    ax.set_xticks(x, [r.label for r, _ in rows], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"{unit} ({direction} is better)")
    ax.set_title(name)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def render(runs: list[Run], out: Path, only: set[str] | None = None
           ) -> tuple[Path, list[dict[str, Any]]]:
    """One PNG per metric and a Markdown + HTML report, with the runs where a metric
    moved (``changepoint``); returns the Markdown path and those change points."""
    names = sorted({m for r in runs for m in r.metrics})
    if only:
        missing = only - set(names)
        if missing:
            raise TrendError(f"no run has metric(s) {sorted(missing)}; there are: {names}")
        names = [n for n in names if n in only]
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Trend over {len(runs)} stored runs", "",
             f"From {runs[0].when:%Y-%m-%d %H:%M} to {runs[-1].when:%Y-%m-%d %H:%M} UTC; "
             "oldest first. Ratio is the median against the first run's; *moved* marks "
             f"the run where a median left its previous {changepoint.WINDOW} runs' range "
             f"(> {changepoint.K_SIGMA:g} sd and > {changepoint.FLOOR:.0%}).", ""]
    moved: list[dict[str, Any]] = []
    for name in names:
        rows = [(r, np.asarray(r.metrics[name]["samples"], dtype=float))
                for r in runs if name in r.metrics]
        first = rows[0][0].metrics[name]
        unit, direction = str(first.get("unit", "")), first["direction"]
        png = f"trend-{name}.png"
        _plot(name, unit, direction, rows, out / png)
        base = float(np.median(rows[0][1]))
        changes = {c.index: c for c in changepoint.detect(
            [float(np.median(s)) for _, s in rows], direction)}
        for i, c in changes.items():
            moved.append({"metric": name, "run": str(rows[i][0].path),
                          "git_sha": rows[i][0].git_sha, "ratio": c.ratio, "worse": c.worse,
                          "latest": i == len(rows) - 1})
        table = [[r.label, r.benchmark, str(len(s)), f"{np.median(s):.4g}",
                  f"{np.percentile(s, 95):.4g}",
                  f"{np.median(s) / base:.3f}" if base else "-",
                  ("**moved, worse**" if changes[i].worse else "moved, better")
                  + f" x{changes[i].ratio:.3f}" if i in changes else ""]
                 for i, (r, s) in enumerate(rows)]
        lines += [f"## {name} ({unit}, {direction} is better)", "",
                  *markdown_table(["run", "benchmark", "samples", "median", "P95", "ratio",
                                   "moved"], table), "", f"![{name}]({png})", ""]
    lines += ["## Where metrics moved", ""]
    lines += [f"- {m['metric']}: {'worse' if m['worse'] else 'better'} x{m['ratio']:.3f} at "
              f"{m['run']} (commit {m['git_sha'] or 'unknown'})" for m in moved] or ["none"]
    report = "\n".join(lines)
    md = out / "trend.md"
    md.write_text(report)
    (out / "trend.html").write_text(markdown_to_html(report, "trend"))
    (out / "changes.json").write_text(json.dumps(moved, indent=2))
    return md, moved
