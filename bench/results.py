"""Where every benchmark's figures go: ``OUT/NAME.json`` (parameters, environment
fingerprint, results) and, when given, ``OUT/NAME.md``."""

from __future__ import annotations

import argparse
import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from akidb.bench.environment import fingerprint


def record(name: str, args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"benchmark": name, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "params": params, "environment": fingerprint(), **body}


def save(out: Path, rec: dict[str, Any], markdown: str | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{rec['benchmark']}.json"
    path.write_text(json.dumps(rec, indent=2))
    if markdown is not None:
        (out / f"{rec['benchmark']}.md").write_text(markdown)
    return path


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(row) + " |" for row in rows)]


def publish(out: Path, rec: dict[str, Any], lines: list[str]) -> str:
    """Save the record with its Markdown and HTML reports, print the Markdown, return it."""
    report = "\n".join(lines) + "\n"
    save(out, rec, report)
    (out / f"{rec['benchmark']}.html").write_text(markdown_to_html(report, rec["benchmark"],
                                                                      rec.get("environment")))
    print(report)
    print(f"report: {out / (rec['benchmark'] + '.md')} (and .html, .json)")
    return report


_NUM = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?|nan|inf)"
_BAR = re.compile("\u27e6bar " + " ".join([_NUM] * 5) + " ([01])\u27e7")
_INTERVAL = re.compile(r"^\[\s*([-0-9.e+]+),\s*([-0-9.e+]+)\s*\]$")
_STYLE = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
          "pre{background:#f4f4f4;padding:8px;overflow:auto}code{background:#f4f4f4}"
          "svg.bar{vertical-align:middle;margin-left:6px}")


def _with_error_bars(md_text: str) -> str:
    """In a table with an ``interval`` column (cells ``[low, high]``), mark each cell for
    an error bar drawn on one scale per table, with the ``ratio`` (or first number)
    as the point and 1.0 as the reference when the figures are ratios."""
    lines = md_text.splitlines()
    i = 0
    while i < len(lines):
        cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
        if not (lines[i].startswith("|") and "interval" in cells):
            i += 1
            continue
        col = cells.index("interval")
        point_col = cells.index("ratio") if "ratio" in cells else None
        rows, j = [], i + 2
        while j < len(lines) and lines[j].startswith("|"):
            row = [c.strip() for c in lines[j].strip().strip("|").split("|")]
            found = _INTERVAL.match(row[col]) if col < len(row) else None
            if found:
                low, high = float(found[1]), float(found[2])
                try:
                    point = float(row[point_col]) if point_col is not None else (low + high) / 2
                except ValueError:
                    point = (low + high) / 2
                rows.append((j, row, low, high, point))
            j += 1
        if rows:
            lo = min([r[2] for r in rows] + ([1.0] if point_col is not None else []))
            hi = max([r[3] for r in rows] + ([1.0] if point_col is not None else []))
            ref = int(point_col is not None)
            for index, row, low, high, point in rows:
                row[col] += f" \u27e6bar {low} {high} {point} {lo} {hi} {ref}\u27e7"
                lines[index] = "| " + " | ".join(row) + " |"
        i = j
    return "\n".join(lines)


def _bar_svg(match: re.Match[str]) -> str:
    low, high, point, lo, hi = (float(x) for x in match.groups()[:5])
    reference = match[6] == "1"
    span = (hi - lo) or 1.0
    width = 120

    def x(v: float) -> float:
        return 4 + (width - 8) * (v - lo) / span

    ref = (f"<line x1='{x(1.0):.1f}' x2='{x(1.0):.1f}' y1='0' y2='12' stroke='#999' "
           "stroke-dasharray='2'/>") if reference else ""
    return (f"<svg class='bar' width='{width}' height='12' role='img' "
            f"aria-label='interval {low:g} to {high:g}'>{ref}"
            f"<line x1='{x(low):.1f}' x2='{x(high):.1f}' y1='6' y2='6' stroke='black' "
            f"stroke-width='2'/><line x1='{x(low):.1f}' x2='{x(low):.1f}' y1='2' y2='10' "
            f"stroke='black'/><line x1='{x(high):.1f}' x2='{x(high):.1f}' y1='2' y2='10' "
            f"stroke='black'/><circle cx='{x(point):.1f}' cy='6' r='3' fill='steelblue'/>"
            "</svg>")


def _environment_html(env: dict[str, Any]) -> str:
    packages = env.get("packages") or {}
    rows = [(k, env.get(k)) for k in ("cpu", "cores", "os", "python", "git_sha")]
    rows += [(name, version) for name, version in sorted(packages.items()) if version]
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows)
    return f"<h2>Environment</h2><table class='environment'>{cells}</table>"


def markdown_to_html(md_text: str, title: str,
                     environment: dict[str, Any] | None = None, extra_html: str = "") -> str:
    """The report's Markdown rendered by markdown-it (CommonMark + tables; raw HTML in
    the text is escaped, since reports quote failure messages), with error bars for
    intervals and the environment fingerprint the figures were measured in (the
    record's own, else this machine's now). ``extra_html`` (trusted, built by the
    caller, e.g. an SVG figure) goes after the text."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(
        _with_error_bars(md_text))
    body = _BAR.sub(_bar_svg, body)
    env = environment if environment is not None else fingerprint()
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>\n{body}\n{extra_html}"
            f"{_environment_html(env)}\n</body></html>\n")
