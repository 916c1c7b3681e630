"""Check a chaos history against a model of the collection: a register per key.

Every upsert writes a value no other write uses, so a read (a get, a search hit,
the final read-back) names the write it saw. A read over ``[start, end]`` may
see the value of write ``w`` when

- ``w`` began before the read ended (``w.invoke < end``), and
- no acknowledged write of the same key began after ``w`` completed and completed
  before the read began (nothing provably replaced ``w`` before the read).

Absence is the value of the initial state and of every delete. Indeterminate
writes (``info``) never complete, so they may take effect at any time after they
began, or never: either way is allowed, as in Jepsen. What no such ``w`` explains
is an anomaly:

- ``lost``: the read-back after the run misses an acknowledged write (absent, or
  an older value);
- ``stale_reads``: a get during the run saw a value an acknowledged write had
  already replaced, or nothing after an acknowledged upsert (read-your-writes);
- ``resurrected``: a read saw a value an acknowledged delete had removed;
- ``phantoms``: a read saw a value that was never written (or not yet, or with
  other contents);
- ``search_mismatches``: a search hit that is any of those, that does not match
  the search's filter, or whose distance is not its document's.

Recall is judged on the keys whose value was determinate for the whole search
(no write of them overlapped it): every such document the model ranks among the
top k and clearly closer than the server's last hit (ties may go either way) must
be among the hits. It is reported, not an anomaly: the
index is approximate.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from akidb.chaos.history import FAIL, INFO, OK, WRITES, History, Op

INF = float("inf")
KINDS = ("lost", "stale_reads", "resurrected", "phantoms", "search_mismatches")
ANOMALIES_KEPT = 50  # in the JSON result; the counts are complete


@dataclass(frozen=True)
class Write:
    op: int  # -1: the initial state (absent)
    value: str | None  # None: a delete (or the initial state)
    invoke: float
    complete: float  # INF when indeterminate
    acknowledged: bool


INITIAL = Write(-1, None, -INF, -INF, True)


class KeyModel:
    """The writes of one key, indexed for the two questions the checker asks."""

    def __init__(self, writes: Iterable[Write]) -> None:
        writes = list(writes)
        self.by_value = {w.value: w for w in writes if w.value is not None}
        self.deletes = [w for w in writes if w.value is None]
        self.acked = sorted((w for w in writes if w.acknowledged), key=lambda w: w.complete)
        self.acked_complete = [w.complete for w in self.acked]
        self.prefix_max_invoke: list[float] = []
        for w in self.acked:
            prev = self.prefix_max_invoke[-1] if self.prefix_max_invoke else -INF
            self.prefix_max_invoke.append(max(prev, w.invoke))
        self.suffix_min_invoke = [INF] * (len(self.acked) + 1)
        for i in range(len(self.acked) - 1, -1, -1):
            self.suffix_min_invoke[i] = min(self.suffix_min_invoke[i + 1], self.acked[i].invoke)
        self.first_indeterminate = min((w.invoke for w in writes if not w.acknowledged),
                                       default=INF)

    def superseders(self, w: Write, before: float) -> list[Write]:
        """Acknowledged writes that began after ``w`` completed and completed before
        ``before``: proof that ``w`` was replaced by then."""
        n = bisect.bisect_left(self.acked_complete, before)
        if n == 0 or self.prefix_max_invoke[n - 1] <= w.complete:
            return []
        return [y for y in self.acked[:n] if y.invoke > w.complete]

    def possible(self, w: Write, start: float, end: float) -> bool:
        return w.invoke < end and not self.superseders(w, start)

    def determinate(self, start: float, end: float) -> tuple[bool, str | None]:
        """(True, value) when the key held one known value throughout [start, end]."""
        if self.first_indeterminate < end:
            return False, None
        n = bisect.bisect_left(self.acked_complete, start)
        if self.suffix_min_invoke[n] < end:
            return False, None  # an acknowledged write overlapped the interval
        if n == 0:
            return True, None
        latest_start = self.prefix_max_invoke[n - 1]
        # Writes that completed after the latest start are mutually unordered.
        unordered = n - bisect.bisect_left(self.acked_complete, latest_start, 0, n)
        return (True, self.acked[n - 1].value) if unordered == 1 else (False, None)


@dataclass
class Anomaly:
    kind: str
    key: str
    op: int
    writes: list[int]
    detail: str


@dataclass
class CheckerResult:
    acknowledged: int
    failed: int
    indeterminate: int
    reads: int
    searches: int
    recall: float | None
    anomalies: list[Anomaly] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def valid(self) -> bool:
        return not any(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"acknowledged": self.acknowledged, **self.counts,
                "indeterminate": self.indeterminate, "valid": self.valid,
                "failed": self.failed, "reads": self.reads, "searches": self.searches,
                "recall": self.recall,
                "anomalies": [asdict(a) for a in self.anomalies[:ANOMALIES_KEPT]]}


def matches(payload: Mapping[str, Any], flt: Mapping[str, Any] | None) -> bool:
    """The workload's filters: ``{field: value}`` and ``{field: {"$in": [...]}}``."""
    for name, cond in (flt or {}).items():
        have = payload.get(name)
        if isinstance(cond, Mapping):
            if set(cond) != {"$in"}:
                raise ValueError(f"the checker understands equality and $in, not {cond}")
            if have not in cond["$in"]:
                return False
        elif have != cond:
            return False
    return True


class Checker:
    def __init__(self, history: History, distance_tolerance: float = 1e-3) -> None:
        self.history = history
        self.tolerance = distance_tolerance
        writes: dict[str, list[Write]] = defaultdict(list)
        for op in history.ops:
            if op.f in WRITES and op.status != FAIL:
                complete = op.complete if op.status == OK else INF
                for key, value in zip(op.keys, op.values, strict=True):
                    writes[key].append(Write(op.index, value, op.invoke, complete,
                                             op.status == OK))
        self.models = {key: KeyModel(ws) for key, ws in writes.items()}
        self.value_ids = list(history.values)
        self.value_row = {v: i for i, v in enumerate(self.value_ids)}
        self.vectors = np.asarray([history.values[v].vector for v in self.value_ids],
                                  dtype=np.float64)

    def model(self, key: str) -> KeyModel:
        return self.models.get(key) or KeyModel([])

    def judge_read(self, key: str, value: str | None, start: float, end: float
                   ) -> tuple[str, list[int], str] | None:
        """None when some write explains the read, else (kind, writes, detail); kind is
        ``stale`` for a replaced value, to be named by the kind of read."""
        model = self.model(key)
        if value is not None:
            w = model.by_value.get(value)
            if w is None:
                written = self.history.values.get(value)
                why = ("its contents differ from what was written" if value.startswith("!")
                       else f"it was written to {written.key!r}" if written else
                       "it was never written")
                return "phantoms", [], f"read value {value!r} of {key!r}: {why}"
            if w.invoke >= end:
                return "phantoms", [w.op], (f"read value {value!r} of {key!r} before its "
                                            "write began")
            candidates = [w]
        else:
            candidates = [INITIAL, *model.deletes]
        if any(model.possible(w, start, end) for w in candidates):
            return None
        newest = max(candidates, key=lambda w: w.complete)
        replaced_by = model.superseders(newest, start)
        ops = [w.op for w in candidates if w.op >= 0] + [y.op for y in replaced_by]
        if value is not None and any(y.value is None for y in replaced_by):
            return "resurrected", ops, (f"read value {value!r} of {key!r} after an "
                                        "acknowledged delete")
        # (every replacing write here is an upsert: a delete after the newest candidate
        # would itself be a candidate for "absent", and deletes replacing a value are
        # the resurrection above)
        shown = "nothing" if value is None else f"value {value!r}"
        newer = ", ".join(repr(y.value) for y in replaced_by)
        return "stale", ops, (f"read {shown} of {key!r} after acknowledged write(s) "
                              f"{newer} had replaced it")

    def check(self) -> CheckerResult:
        ops = self.history.ops
        result = CheckerResult(
            acknowledged=sum(len(o.keys) for o in ops if o.f in WRITES and o.status == OK),
            failed=sum(o.status == FAIL for o in ops if not o.final),
            indeterminate=sum(o.status == INFO for o in ops),
            reads=sum(o.f == "get" and o.status == OK and not o.final for o in ops),
            searches=sum(o.f == "search" and o.status == OK for o in ops), recall=None)
        self.recalls: dict[int, float] = {}
        for op in ops:
            if op.status != OK:
                continue
            if op.f == "get":
                self._check_get(op, result)
            elif op.f == "search":
                self._check_search(op, result)
                recall = self.recall(op)
                if recall is not None:
                    self.recalls[op.index] = recall
        result.recall = float(np.mean(list(self.recalls.values()))) if self.recalls else None
        return result

    def _report(self, result: CheckerResult, kind: str, key: str, op: Op, writes: list[int],
                detail: str) -> None:
        result.counts[kind] += 1
        result.anomalies.append(Anomaly(kind, key, op.index, writes, detail))

    def _check_get(self, op: Op, result: CheckerResult) -> None:
        for key, value in zip(op.keys, op.values, strict=True):
            verdict = self.judge_read(key, value, op.invoke, op.complete)
            if verdict is not None:
                kind, writes, detail = verdict
                if kind == "stale":
                    kind = "lost" if op.final else "stale_reads"
                self._report(result, kind, key, op, writes, detail)

    def _check_search(self, op: Op, result: CheckerResult) -> None:
        query = np.asarray(op.vector, dtype=np.float64)
        for hit in op.hits:
            problem, verdict = None, None
            if hit.value is None:
                problem = f"hit {hit.key!r} carries no value id: no write of this run made it"
            elif (verdict := self.judge_read(hit.key, hit.value, op.invoke, op.complete)):
                problem = verdict[2]
            elif not matches(self.history.values[hit.value].payload, op.filter):
                problem = f"hit {hit.key!r} (value {hit.value!r}) does not match {op.filter}"
            else:
                expected = float(np.linalg.norm(self.vectors[self.value_row[hit.value]] - query))
                if abs(expected - hit.distance) > self.tolerance * max(1.0, expected):
                    problem = (f"hit {hit.key!r} at distance {hit.distance:.6g}, but its "
                               f"vector is at {expected:.6g}")
            if problem is not None:
                self._report(result, "search_mismatches", hit.key, op,
                             verdict[1] if verdict else [], problem)

    def recall(self, op: Op) -> float | None:
        """Share of the stable documents the model ranks inside the server's top-k that
        the server returned (None when no stable document qualifies)."""
        rows, keys = [], []
        for key, model in self.models.items():
            stable, value = model.determinate(op.invoke, op.complete)
            if stable and value is not None and matches(self.history.values[value].payload,
                                                        op.filter):
                rows.append(self.value_row[value])
                keys.append(key)
        if not rows:
            return None
        dist = np.linalg.norm(self.vectors[rows] - np.asarray(op.vector, np.float64), axis=1)
        order = np.argsort(dist, kind="stable")[:op.k]
        if len(op.hits) >= op.k and op.hits:
            # only documents clearly closer than the last hit: a tie may go either way
            last = op.hits[-1].distance
            order = [i for i in order if dist[i] < last - self.tolerance * max(1.0, last)]
        if len(order) == 0:
            return None
        returned = {h.key for h in op.hits}
        return sum(keys[i] in returned for i in order) / len(order)


def check(history: History) -> CheckerResult:
    return Checker(history).check()
