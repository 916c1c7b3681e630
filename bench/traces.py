"""The slowest requests of a run, from the server's own trace spans.

A benchmark that starts its server with ``OTEL_TRACES_EXPORTER=console`` finds one
JSON span per line in the server's output; grouped by trace, the slowest requests
come with the time each step took (authorize, index.search, wal.fsync_wait, ...),
so a P99 outlier can be explained rather than only reported.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

# Small, frequent export batches: the exporter's JSON encoding holds the GIL, and one
# batch of 512 spans showed as a P99 spike of its own (NOTES, tracing cost).
TRACE_ENV = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "akidb-bench",
             "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32", "OTEL_BSP_SCHEDULE_DELAY": "200"}


def read_spans(log_path: Path) -> list[dict[str, Any]]:
    """Every span in a server's output (other lines, JSON logs included, are skipped)."""
    spans = []
    for line in log_path.read_text(errors="replace").splitlines():
        if not line.startswith("{") or '"span_id"' not in line:
            continue
        try:
            span = json.loads(line)
        except ValueError:
            continue
        if isinstance(span.get("context"), dict) and "start_time" in span:
            spans.append(span)
    return spans


def _ms(span: dict[str, Any]) -> float:
    start = datetime.fromisoformat(span["start_time"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(span["end_time"].replace("Z", "+00:00"))
    return (end - start).total_seconds() * 1000


def slowest(spans: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """The ``n`` slowest request (server) spans, each with its child steps in order."""
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        if span.get("parent_id"):
            children.setdefault(span["parent_id"], []).append(span)
    requests = [s for s in spans if s.get("kind") == "SpanKind.SERVER"]
    requests.sort(key=_ms, reverse=True)
    out = []
    for span in requests[:n]:
        steps = sorted(children.get(span["context"]["span_id"], []),
                       key=lambda s: s["start_time"])
        out.append({"trace_id": span["context"]["trace_id"].removeprefix("0x"),
                    "name": span["name"], "ms": round(_ms(span), 3),
                    "start": span["start_time"],
                    "steps": [{"name": s["name"], "ms": round(_ms(s), 3)} for s in steps]})
    return out


def markdown(by_driver: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["", "## Slowest requests (server traces)", "",
             "Measured with tracing on (console exporter), which adds its own cost; the "
             "steps show where each outlier spent its time.", "",
             "| driver | request | ms | steps (ms) | trace id |", "|---|---|---|---|---|"]
    for driver, traces in by_driver.items():
        for t in traces:
            steps = ", ".join(f"{s['name']} {s['ms']:.3f}" for s in t["steps"]) or "-"
            lines.append(f"| {driver} | {t['name']} | {t['ms']:.3f} | {steps} | "
                         f"`{t['trace_id']}` |")
    return lines
