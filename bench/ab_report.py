"""``DIR/ab.json``, ``DIR/ab.md`` and ``DIR/ab.html`` (with a plot of per-round ratios)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from akidb.bench.results import markdown_table, markdown_to_html


def _plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["metrics"])
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))
    for row, name in enumerate(names):
        m = result["metrics"][name]
        ax.scatter(m["pair_ratios"], [row] * len(m["pair_ratios"]), s=14, alpha=0.7,
                   color="crimson" if m["regression"] else "steelblue")
        ax.plot([m["ci_low"], m["ci_high"]], [row, row], color="black", linewidth=2)
        ax.plot([m["ratio"]], [row], marker="|", markersize=14, color="black")
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("candidate / baseline, per pair of rounds (bar: interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(result: dict[str, Any]) -> list[str]:
    b, c = result["baseline"], result["candidate"]
    lines = ["# A/B: candidate against baseline, same machine, interleaved rounds", "",
             *(f"- {label}: `{x['spec']}` {x['commit'] or ''}"
               + (" + uncommitted changes" if x.get("dirty") else "")
               + (f" {x['env']}" if x["env"] else "")
               for label, x in (("baseline", b), ("candidate", c))),
             f"- {result['rounds']} rounds after a warm-up, both servers up in each, "
             "measured in turn; first: "
             f"{' '.join('A' if s == 'baseline' else 'B' for s in result['first'])}, "
             f"{result['seconds']:.0f} s; interval {result['confidence']:.0%} (bootstrap "
             "over rounds)"]
    if not result["dependencies_match"]:
        lines.append("- the two sides declare different dependencies; both ran in this "
                     "venv")
    if result["client_saturated"]:
        lines.append("- the load generator's busiest client saturated in some round: "
                     "throughput may be the client's limit")
    rows = []
    for name, m in result["metrics"].items():
        rows.append([name, f"{m['baseline_median']:.4g}", f"{m['candidate_median']:.4g}",
                     f"{m['ratio']:.3f}", f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]",
                     f"{m['threshold']:.0%} ({m['direction']} is better)",
                     "**REGRESSION**" if m["regression"] else "ok"])
    lines += ["", *markdown_table(["metric", "baseline", "candidate", "ratio", "interval",
                                   "threshold", "verdict"], rows), "", "![](ab.png)", ""]
    if result["regressions"]:
        accepted = result.get("accepted")
        lines.append(f"Regression in {', '.join(result['regressions'])}"
                     + (f" — accepted by the candidate's commit: {accepted}" if accepted
                        else "."))
    else:
        lines.append("No regression beyond the thresholds.")
    return lines


def write(result: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "ab.json").write_text(json.dumps(result, indent=2))
    _plot(result, out / "ab.png")
    text = "\n".join(markdown(result)) + "\n"
    (out / "ab.md").write_text(text)
    (out / "ab.html").write_text(markdown_to_html(text, "A/B"))
    return out / "ab.json"
