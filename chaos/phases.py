"""Performance under faults: the run cut into phases (before, during and after each
fault), with latency percentiles, errors, availability and search recall per phase,
recovery times, and the same figures as the regression gate's metric records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from akidb.chaos.history import OK, History, Op
from akidb.chaos.nemesis import Fault


def windows(faults: Sequence[Fault], duration_s: float) -> list[tuple[str, float, float]]:
    """(name, start, end) covering [0, duration_s]: ``before``, then ``during K#i`` and
    ``after K#i`` for each fault in time order (``run`` when there is none)."""
    ordered = sorted(faults, key=lambda f: f.at_s)
    if not ordered:
        return [("run", 0.0, duration_s)]
    out = [("before", 0.0, ordered[0].at_s)]
    for i, f in enumerate(ordered, 1):
        nxt = ordered[i].at_s if i < len(ordered) else duration_s
        out += [(f"during {f.kind}#{i}", f.at_s, f.end_s), (f"after {f.kind}#{i}", f.end_s, nxt)]
    return out


def _summary(ops: list[Op], recalls: list[float], span_s: float) -> dict[str, Any]:
    ok = [o for o in ops if o.status == OK]
    lat = np.asarray([o.latency_ms for o in ok], dtype=np.float64)

    def pct(q: float) -> float | None:
        return round(float(np.percentile(lat, q)), 3) if len(lat) else None

    return {"operations": len(ops), "ok": len(ok),
            "failed": sum(o.status == "fail" for o in ops),
            "indeterminate": sum(o.status == "info" for o in ops),
            "availability": round(len(ok) / len(ops), 4) if ops else None,
            "throughput_per_s": round(len(ok) / span_s, 1) if span_s > 0 else None,
            "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "searches": len(recalls),
            "recall": round(float(np.mean(recalls)), 4) if recalls else None}


def phases(history: History, faults: Sequence[Fault], duration_s: float,
           recall_of: Mapping[int, float]) -> list[dict[str, Any]]:
    """Every operation counts in the phase its invocation falls in (the last phase
    also takes what was invoked after the run's nominal end). ``recall_of``: each
    search's recall by operation index, as the checker judged it."""
    live = [o for o in history.ops if not o.final]
    out = []
    for name, start, end in windows(faults, duration_s):
        last = end >= duration_s
        ops = [o for o in live if start <= o.invoke < end or (last and o.invoke >= end)]
        recalls = [recall_of[o.index] for o in ops if o.index in recall_of]
        out.append({"phase": name, "start_s": round(start, 3), "end_s": round(end, 3),
                    **_summary(ops, recalls, end - start)})
    return out


def recovery_times(history: History, faults: Sequence[Fault]) -> dict[str, float | None]:
    """Seconds from each fault's end to the first acknowledged write invoked after it
    (None when there was none). A restart at a kill's end holds up the schedule, so
    when the next fault follows at once this time runs on through it."""
    out: dict[str, float | None] = {}
    ordered = sorted(faults, key=lambda f: f.at_s)
    for i, f in enumerate(ordered, 1):
        after = [o.complete for o in history.ops if not o.final and o.status == OK
                 and o.f == "upsert" and o.invoke >= f.end_s]
        out[f"{f.kind}#{i}"] = round(min(after) - f.end_s, 3) if after else None
    return out


def metrics(history: History, faults: Sequence[Fault], duration_s: float,
            recall_of: Mapping[int, float]) -> dict[str, dict[str, Any]]:
    """Gate metric records per phase: latency of acknowledged operations (ms, lower),
    availability per 0.5 s window (higher) and recall per search (higher)."""
    live = [o for o in history.ops if not o.final]
    out: dict[str, dict[str, Any]] = {}
    for name, start, end in windows(faults, duration_s):
        slug = name.replace(" ", "_").replace("#", "")
        ops = [o for o in live if start <= o.invoke < end]
        lat = [round(o.latency_ms, 4) for o in ops if o.status == OK]
        bins = np.arange(start, end, 0.5)
        avail = []
        for b in bins:
            inside = [o for o in ops if b <= o.invoke < b + 0.5]
            if inside:
                avail.append(round(sum(o.status == OK for o in inside) / len(inside), 4))
        recalls = [recall_of[o.index] for o in ops if o.index in recall_of]
        for metric, unit, direction, samples in (
                (f"chaos_{slug}_latency_ms", "ms", "lower", lat),
                (f"chaos_{slug}_availability", "ratio", "higher", avail),
                (f"chaos_{slug}_recall", "ratio", "higher", recalls)):
            if len(samples) >= 2:
                out[metric] = {"unit": unit, "direction": direction, "samples": samples}
    return out
