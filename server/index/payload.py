"""In-memory payload index: filter → set of labels without scanning documents.

Scanning SQLite JSON for every filtered search cost 30-60 ms at 20k documents
here (measured); inverted postings answer the same filter in well under a
millisecond, and give the exact matching count that picks the search strategy.

Postings map ``path → (kind, value) → labels`` for every scalar reachable
through objects (array elements included, as the filter semantics say);
``present`` records which paths exist (for ``$exists``); numeric values also
feed a sorted array per path, rebuilt lazily after writes, for range queries.
The semantics are those of ``server.query.filters.matches``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from akidb.server.index.rwlock import RWLock
from akidb.server.query.filters import And, AnyOf, Cmp, Exists, Node, Not

Key = tuple[str, Any]
_RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")


def _key(value: Any) -> Key | None:
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", value)
    return None


def _flatten(payload: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(path, value) for every key reachable through objects, parents included."""
    out: list[tuple[str, Any]] = []
    for name, value in payload.items():
        path = f"{prefix}{name}"
        out.append((path, value))
        if isinstance(value, dict):
            out.extend(_flatten(value, path + "."))
    return out


class PayloadIndex:
    def __init__(self) -> None:
        self.lock = RWLock()
        self._postings: dict[str, dict[Key, set[int]]] = defaultdict(lambda: defaultdict(set))
        self._present: dict[str, set[int]] = defaultdict(set)
        self._doc: dict[int, list[tuple[str, Key | None]]] = {}
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
        self.live: set[int] = set()

    # -- writes (caller holds the collection's write lock) -----------------------------
    def put(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        with self.lock.write():
            for label, payload in items:
                self._remove(label)
                entries: list[tuple[str, Key | None]] = []
                for path, value in _flatten(payload):
                    self._present[path].add(label)
                    entries.append((path, None))
                    elements = value if isinstance(value, list) else [value]
                    for element in elements:
                        key = _key(element)
                        if key is not None:
                            self._postings[path][key].add(label)
                            entries.append((path, key))
                            if key[0] == "n":
                                self._sorted.pop(path, None)
                if entries:
                    self._doc[label] = entries
                self.live.add(label)

    def remove(self, labels: list[int]) -> None:
        with self.lock.write():
            for label in labels:
                self._remove(label)

    def _remove(self, label: int) -> None:
        self.live.discard(label)
        for path, key in self._doc.pop(label, ()):
            if key is None:
                self._present[path].discard(label)
            else:
                self._postings[path][key].discard(label)
                if key[0] == "n":
                    self._sorted.pop(path, None)

    # -- reads -------------------------------------------------------------------------
    def evaluate(self, node: Node) -> set[int]:
        """Labels of live documents matching a parsed filter."""
        with self.lock.read():
            return self._eval(node)

    def _eval(self, node: Node) -> set[int]:
        if isinstance(node, Cmp):
            if node.op == "$eq":
                key = _key(node.value)
                postings = self._postings.get(node.path, {})
                return set(postings.get(key, ())) if key is not None else set()
            return self._range(node.path, node.op, float(node.value))
        if isinstance(node, AnyOf):
            postings = self._postings.get(node.path, {})
            out: set[int] = set()
            for value in node.values:
                out |= postings.get(_key(value), set())  # type: ignore[arg-type]
            return out
        if isinstance(node, Exists):
            return set(self._present.get(node.path, ()))
        if isinstance(node, Not):
            return self.live - self._eval(node.node)
        if isinstance(node, And):
            # Range bounds on one path become a single slice of its sorted values: a
            # 10% price band is then 10% of the labels, not the intersection of two
            # sets holding most of them (19 ms -> ~1 ms at 100k documents here).
            ranges: dict[str, list[Cmp]] = defaultdict(list)
            rest: list[Node] = []
            for n in node.nodes:
                if isinstance(n, Cmp) and n.op in _RANGE_OPS:
                    ranges[n.path].append(n)
                else:
                    rest.append(n)
            parts = []
            for path, cmps in ranges.items():
                if len(cmps) > 1 and not self._sorted_arrays(path)[2]:
                    parts.append(self._band(path, cmps))
                else:  # one bound, or an array-valued path: each bound may match a
                    # different element (filter semantics), so no single band
                    parts.extend(self._eval(c) for c in cmps)
            parts += [self._eval(n) for n in rest]
        else:
            parts = [self._eval(n) for n in node.nodes]
        if isinstance(node, And):
            parts.sort(key=len)
            result = parts[0]
            for p in parts[1:]:
                result &= p
            return result
        result = parts[0]
        for p in parts[1:]:
            result |= p
        return result

    def _band(self, path: str, cmps: list[Cmp]) -> set[int]:
        """Labels whose numeric value at ``path`` satisfies every range bound in ``cmps``."""
        values, labels, _ = self._sorted_arrays(path)
        start, end = 0, len(values)
        for c in cmps:
            bound = float(c.value)
            if c.op in ("$gt", "$gte"):
                side = "right" if c.op == "$gt" else "left"
                start = max(start, int(np.searchsorted(values, bound, side=side)))
            else:
                side = "left" if c.op == "$lt" else "right"
                end = min(end, int(np.searchsorted(values, bound, side=side)))
        return set(labels[start:end].tolist()) if start < end else set()

    def _sorted_arrays(self, path: str) -> tuple[np.ndarray, np.ndarray, bool]:
        """(values, labels) sorted by value, and whether a label holds several values."""
        arrays = self._sorted.get(path)
        if arrays is None:
            pairs = [(key[1], label) for key, labels in self._postings.get(path, {}).items()
                     if key[0] == "n" for label in labels]
            pairs.sort()
            labels = np.asarray([p[1] for p in pairs], dtype=np.int64)
            arrays = (np.asarray([p[0] for p in pairs], dtype=np.float64), labels,
                      len(np.unique(labels)) != len(labels))
            self._sorted[path] = arrays
        return arrays

    def _range(self, path: str, op: str, bound: float) -> set[int]:
        values, labels, _ = self._sorted_arrays(path)
        if op in ("$gt", "$gte"):
            start = np.searchsorted(values, bound, side="right" if op == "$gt" else "left")
            return set(labels[start:].tolist())
        end = np.searchsorted(values, bound, side="left" if op == "$lt" else "right")
        return set(labels[:end].tolist())

