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

from server.index.rwlock import RWLock
from server.query.filters import And, AnyOf, Cmp, Exists, Node, Not

Key = tuple[str, Any]


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
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
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

    def _range(self, path: str, op: str, bound: float) -> set[int]:
        arrays = self._sorted.get(path)
        if arrays is None:
            pairs = [(key[1], label) for key, labels in self._postings.get(path, {}).items()
                     if key[0] == "n" for label in labels]
            pairs.sort()
            arrays = (np.asarray([p[0] for p in pairs], dtype=np.float64),
                      np.asarray([p[1] for p in pairs], dtype=np.int64))
            self._sorted[path] = arrays
        values, labels = arrays
        if op in ("$gt", "$gte"):
            start = np.searchsorted(values, bound, side="right" if op == "$gt" else "left")
            return set(labels[start:].tolist())
        end = np.searchsorted(values, bound, side="left" if op == "$lt" else "right")
        return set(labels[:end].tolist())

