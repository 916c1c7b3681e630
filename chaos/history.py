"""A Jepsen-style history: every operation a chaos workload issued, with its
invocation and completion times and its outcome.

Outcomes are ``ok`` (acknowledged), ``fail`` (the server answered with an error,
so it definitely did not apply) and ``info`` (indeterminate: the connection broke
or timed out, so it may take effect at any time later, or never). Every upsert
writes a value that is unique in the whole run (``value`` ids such as ``"2-17"``,
kept in each document's payload), so any document read back names the one write
that produced it. The history is what ``chaos.checker`` judges; it is saved as
JSON lines so a checker can be re-run on a recorded run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Container
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OK, FAIL, INFO = "ok", "fail", "info"
WRITES = ("upsert", "delete")


@dataclass
class Value:
    """One upserted value: its key, vector and payload (the payload's ``v`` is its id)."""

    key: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass
class Hit:
    """A search hit as observed: the key, the value id its payload carried (None when the
    payload had none) and the distance the server reported."""

    key: str
    value: str | None
    distance: float


@dataclass
class Op:
    """One operation. ``keys``/``values`` line up: for an upsert the values written, for
    a delete ``None`` each, for a get the value read (``None``: absent). ``complete``
    is when the client saw the outcome (for ``info`` the effect is unknown from
    ``invoke`` onwards). ``final`` marks the read-back after the run."""

    index: int
    process: int
    f: str
    keys: list[str]
    values: list[str | None]
    invoke: float
    complete: float
    status: str
    error: str | None = None
    vector: list[float] | None = None
    filter: dict[str, Any] | None = None
    k: int = 0
    hits: list[Hit] = field(default_factory=list)
    final: bool = False
    scheduled: float | None = None  # when a paced client meant to send it

    @property
    def latency_ms(self) -> float:
        """From when the operation was due (paced clients) or sent, to its outcome."""
        start = self.invoke if self.scheduled is None else min(self.scheduled, self.invoke)
        return (self.complete - start) * 1000.0


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    values: dict[str, Value] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_value(self, value_id: str, value: Value) -> None:
        with self.lock:
            if value_id in self.values:
                raise ValueError(f"value {value_id!r} written twice: values must be unique")
            self.values[value_id] = value

    def record(self, **fields: Any) -> Op:
        with self.lock:
            op = Op(index=len(self.ops), **fields)
            self.ops.append(op)
        return op

    def availability(self, since: float = float("-inf"), until: float = float("inf"),
                     processes: Container[int] | None = None) -> float:
        """Share of the operations invoked in [since, until] (by ``processes``, default
        all) that were acknowledged."""
        window = [o for o in self.ops if not o.final and since <= o.invoke <= until
                  and (processes is None or o.process in processes)]
        return sum(o.status == OK for o in window) / len(window) if window else 1.0

    def save(self, path: Path) -> None:
        with path.open("w") as out:
            for value_id, value in self.values.items():
                out.write(json.dumps({"value": value_id, **asdict(value)}) + "\n")
            for op in self.ops:
                out.write(json.dumps({"op": asdict(op)}) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        history = cls()
        for n, line in enumerate(path.read_text().splitlines(), 1):
            try:
                row = json.loads(line)
                if "op" in row:
                    op = row["op"]
                    op["hits"] = [Hit(**h) for h in op.get("hits", [])]
                    if len(op["keys"]) != len(op["values"]):
                        raise ValueError("keys and values differ in length")
                    history.ops.append(Op(**op))
                else:
                    value_id = row.pop("value")
                    history.values[value_id] = Value(**row)
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"{path}:{n}: not a history line ({exc})") from None
        return history
