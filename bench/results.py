"""Where every benchmark's figures go: ``OUT/NAME.json`` (parameters, environment
fingerprint, results) and, when given, ``OUT/NAME.md``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.environment import fingerprint


def record(name: str, args: argparse.Namespace, body: dict[str, Any]) -> dict[str, Any]:
    params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"benchmark": name, "params": params, "environment": fingerprint(), **body}


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
    """Save the record with its Markdown report, print the report, and return it."""
    report = "\n".join(lines) + "\n"
    save(out, rec, report)
    print(report)
    return report
