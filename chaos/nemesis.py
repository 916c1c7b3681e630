"""Nemeses: faults as windows in time, composed into schedules a seed can replay.

A ``Fault`` is one kind of trouble on one node from ``at_s`` for ``for_s`` seconds.
Each kind knows how to start and how to end (``KINDS``); an experiment lists
faults by hand, or asks for a random schedule: ``random_schedule(seed, ...)``
draws kinds, durations and gaps from ``random.Random(seed)`` alone, so the same
seed gives the same schedule on any machine. ``shrink`` looks for a shorter
schedule that still fails, removing one fault at a time, as a property-based
tester shrinks a failing input.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# kind -> what it needs from the cluster ("" = nothing beyond a node)
KINDS: dict[str, str] = {
    "kill": "",  # SIGKILL, restarted when the window ends
    "terminate": "",  # SIGTERM (graceful), restarted when the window ends
    "pause": "",  # SIGSTOP ... SIGCONT
    "partition": "proxy",  # REST and gRPC proxies refuse connections
    "latency": "proxy",  # +latency (and jitter) on every answer, REST and gRPC
    "disk_full": "failpoints",  # every WAL append fails with ENOSPC
    "slow_authz": "failpoints",  # every authorization decision is slow
    "torn_tail": "",  # SIGKILL, then a torn frame at the end of the log
    "corrupt_log": "",  # SIGKILL, then one byte of the log flipped before its tail
    "embedder_outage": "embed_service",  # the embedding service is killed
    "object_store_outage": "object_store",  # the S3 endpoint is cut off
}
DEFAULT_RANDOM_KINDS = ("kill", "pause", "partition", "latency", "disk_full", "slow_authz",
                        "torn_tail")


@dataclass
class Fault:
    kind: str
    at_s: float
    for_s: float
    node: int = 0
    attributes: dict[str, int] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        return self.at_s + self.for_s

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.at_s:g}s"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_attributes(kind: str) -> dict[str, int]:
    return {"latency": {"latency": 150, "jitter": 50},
            "slow_authz": {"authz_delay_ms": 400}}.get(kind, {})


def random_schedule(seed: int, duration_s: float, *, kinds: Sequence[str] = DEFAULT_RANDOM_KINDS,
                    count: int = 3, nodes: int = 1, min_s: float = 0.3, max_s: float = 1.2,
                    lead_s: float = 0.5, tail_s: float = 1.0) -> list[Fault]:
    """Up to ``count`` non-overlapping faults inside ``[lead_s, duration_s - tail_s]``,
    from ``seed`` alone (fewer when the run is too short to hold them)."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {sorted(KINDS)}")
    if not kinds:
        raise ValueError("a random schedule needs at least one fault kind")
    rng = random.Random(seed)
    faults: list[Fault] = []
    # whole milliseconds: the same draws give the same times on every platform
    t, lo, hi = round(lead_s * 1000), round(min_s * 1000), round(max_s * 1000)
    for _ in range(count):
        kind = rng.choice(list(kinds))
        length = rng.randint(lo, hi)
        if t + length > (duration_s - tail_s) * 1000:
            break
        faults.append(Fault(kind, t / 1000, length / 1000, rng.randrange(nodes),
                            default_attributes(kind)))
        t += length + rng.randint(300, 1000)
    return faults


def check_schedule(faults: Sequence[Fault], duration_s: float, nodes: int,
                   has: Callable[[str], bool]) -> None:
    """ValueError naming the first fault that cannot run as given."""
    ordered = sorted(faults, key=lambda f: f.at_s)
    for f in ordered:
        if f.kind not in KINDS:
            raise ValueError(f"unknown fault kind {f.kind!r}; known: {sorted(KINDS)}")
        if f.node >= nodes:
            raise ValueError(f"fault {f.label} names node {f.node} but the cluster has {nodes}")
        need = KINDS[f.kind]
        if need and not has(need):
            raise ValueError(f"fault {f.kind} needs the cluster's {need} (see README: chaos)")
        if f.for_s <= 0 or f.end_s > duration_s:
            raise ValueError(f"fault {f.label} must end inside the run ({duration_s:g}s)")
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.at_s < a.end_s:
            raise ValueError(f"faults {a.label} and {b.label} overlap; schedule them one "
                             "after another")


def shrink(faults: Sequence[Fault], fails: Callable[[list[Fault]], bool],
           max_runs: int = 8, progress: Callable[[str], None] = lambda _: None
           ) -> tuple[list[Fault], int]:
    """A smaller schedule for which ``fails`` still holds, trying to drop one fault at a
    time (last first) until none can go or ``max_runs`` runs are spent. An empty
    result means the run fails with no fault at all."""
    current = list(faults)
    runs = 0
    changed = True
    while changed and current:
        changed = False
        for i in range(len(current) - 1, -1, -1):
            if runs >= max_runs:
                return current, runs
            candidate = current[:i] + current[i + 1:]
            runs += 1
            progress(f"shrink run {runs}: {', '.join(f.label for f in candidate) or 'no faults'}")
            if fails(candidate):
                current = candidate
                changed = True
                break
    return current, runs



def to_toml(faults: Sequence[Fault]) -> str:
    """``[[fault]]`` entries for an experiment file (to replay a shrunk schedule)."""
    out = []
    for f in faults:
        attrs = ", ".join(f"{k} = {v}" for k, v in f.attributes.items())
        out.append(f'[[fault]]\nkind = "{f.kind}"\nat_s = {f.at_s:g}\nfor_s = {f.for_s:g}\n'
                   f"node = {f.node}\nattributes = {{ {attrs} }}\n")
    return "\n".join(out)
