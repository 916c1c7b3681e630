"""Where every benchmark's figures go: ``OUT/NAME.json`` (parameters, environment
fingerprint, results) and, when given, ``OUT/NAME.md``."""

from __future__ import annotations

import argparse
import html
import json
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
    (out / f"{rec['benchmark']}.html").write_text(markdown_to_html(report, rec["benchmark"]))
    print(report)
    print(f"report: {out / (rec['benchmark'] + '.md')} (and .html, .json)")
    return report


def markdown_to_html(md_text: str, title: str) -> str:
    """A small, dependency-free rendering of the report's Markdown (headings, lists,
    tables, code blocks, images), so the HTML says exactly what the Markdown says."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           "</title><style>body{font-family:sans-serif;max-width:70em;margin:2em auto}"
           "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
           "pre{background:#f4f4f4;padding:8px;overflow:auto}</style></head><body>"]
    in_code = in_table = in_list = False
    for line in md_text.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if in_table and not line.startswith("|"):
            out.append("</table>")
            in_table = False
        if in_list and not line.startswith("- "):
            out.append("</ul>")
            in_list = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            tag = "th" if not in_table else "td"
            if not in_table:
                out.append("<table>")
                in_table = True
            out.append("<tr>" + "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in cells)
                       + "</tr>")
        elif line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.startswith("![") and "](" in line and line.endswith(")"):
            alt, src = line[2:-1].split("](", 1)
            out.append(f"<p><img src='{html.escape(src)}' alt='{html.escape(alt)}'></p>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    out.append("</table>" if in_table else "")
    out.append("</ul>" if in_list else "")
    out.append("</body></html>")
    return "\n".join(out)

