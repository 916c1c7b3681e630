"""The HTML report of a chaos run: the Markdown summary and a timeline, one row per
client, every operation a bar from invocation to completion coloured by outcome,
faults shaded, anomalies marked (hover for the checker's words)."""

from __future__ import annotations

import html as _html
from typing import Any

from akidb.bench.results import markdown_to_html
from akidb.chaos.history import History

WIDTH, ROW, LEFT, TOP = 1100, 16, 70, 28
COLOURS = {"ok": "#3a9a4a", "fail": "#d23c3c", "info": "#f0a020"}
READ_OK = "#3a6fd2"


def timeline_svg(result: dict[str, Any], history: History) -> str:
    live = [o for o in history.ops if not o.final]
    processes = sorted({o.process for o in live})
    fault_end = max((f["at_s"] + f["for_s"] for f in result.get("faults", [])), default=0.0)
    end = max([o.complete for o in live] + [fault_end, 1e-3])
    scale = (WIDTH - LEFT - 10) / end
    height = TOP + ROW * len(processes) + 30
    row_of = {p: i for i, p in enumerate(processes)}

    def x(t: float) -> float:
        return LEFT + max(0.0, t) * scale

    parts = [f"<svg class='timeline' xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' "
             f"height='{height}' font-family='sans-serif' font-size='11'>"]
    for f in result.get("faults", []):
        x0, x1 = x(f["at_s"]), x(f["at_s"] + f["for_s"])
        parts.append(f"<rect x='{x0:.1f}' y='{TOP - 14}' width='{max(x1 - x0, 1):.1f}' "
                     f"height='{height - TOP}' fill='#f6d5d5' opacity='0.7'><title>"
                     f"{_html.escape(f['kind'])} node{f['node']} {f['at_s']:g}s for "
                     f"{f['for_s']:g}s</title></rect>")
        parts.append(f"<text x='{x0 + 2:.1f}' y='{TOP - 4}'>{_html.escape(f['kind'])}</text>")
    for p, i in row_of.items():
        parts.append(f"<text x='4' y='{TOP + i * ROW + 11}'>client {p}</text>")
    for o in live:
        colour = COLOURS[o.status]
        if o.status == "ok" and o.f in ("get", "search"):
            colour = READ_OK
        y = TOP + row_of[o.process] * ROW + 3
        parts.append(f"<rect x='{x(o.invoke):.1f}' y='{y}' width='"
                     f"{max(x(o.complete) - x(o.invoke), 0.8):.1f}' height='{ROW - 6}' "
                     f"fill='{colour}'><title>#{o.index} {o.f} {o.status} "
                     f"{o.latency_ms:.1f} ms</title></rect>")
    by_index = {o.index: o for o in history.ops}
    for a in result["checker"]["anomalies"]:
        op = by_index.get(a["op"])
        if op is None:
            continue
        row = row_of.get(op.process, len(processes) - 1)
        parts.append(f"<circle cx='{x(op.complete):.1f}' cy='{TOP + row * ROW + ROW / 2}' r='5'"
                     f" fill='none' stroke='#900' stroke-width='2'><title>"
                     f"{_html.escape(a['kind'])}: {_html.escape(a['detail'])}</title></circle>")
    axis_y = TOP + ROW * len(processes) + 14
    step = max(0.5, round(end / 10, 1))
    t = 0.0
    while t <= end:
        parts.append(f"<text x='{x(t):.1f}' y='{axis_y}'>{t:g}s</text>")
        t += step
    parts.append("</svg>")
    legend = ("<p>Green: acknowledged write; blue: successful read or search; red: failed; "
              "orange: indeterminate. Shaded: faults. Circles: anomalies.</p>")
    return "<h2>Timeline</h2>" + legend + "".join(parts)


def html(result: dict[str, Any], history: History) -> str:
    from akidb.chaos.experiment import render

    return markdown_to_html(render(result), f"chaos: {result['experiment']}",
                            extra_html=timeline_svg(result, history))
