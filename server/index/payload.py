"""In-memory payload index: filter → set of labels without scanning documents.

Scanning SQLite JSON for every filtered search cost 30-60 ms at 20k documents
here (measured); inverted postings answer the same filter in well under a
millisecond, and give the exact matching count that picks the search strategy.

Postings map ``path → (kind, value) → labels`` for every scalar reachable
through objects (array elements included, as the filter semantics say);
``present`` records which paths exist (for ``$exists``); numeric values also
feed a sorted array per path, rebuilt lazily after writes, for range queries.
The semantics are those of ``server.query.filters.matches``.

A filter's answer is a boolean mask over labels (``Matches``), built from cached
numpy arrays of each posting list and combined with numpy ``&``/``|``: evaluating a
50% price band at 100k documents built a 50k-element Python set under the GIL
(7.1 ms; a 50-category ``$in`` 3.9 ms); as a mask it is a slice assignment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
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


class Matches:
    """The labels a filter matched: a boolean mask indexed by label (labels past its
    end, written after the filter was evaluated, do not match)."""

    __slots__ = ("mask", "count")

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self.count = int(np.count_nonzero(mask))

    def __len__(self) -> int:
        return self.count

    def __contains__(self, label: object) -> bool:
        return (isinstance(label, int | np.integer) and 0 <= label < len(self.mask)
                and bool(self.mask[label]))

    def __iter__(self) -> Iterator[int]:
        return iter(self.labels().tolist())

    def labels(self) -> np.ndarray:
        """The matching labels, ascending (int64)."""
        return np.flatnonzero(self.mask)

    def keep(self, labels: np.ndarray) -> np.ndarray:
        """For each of ``labels`` (int64), whether it matches."""
        inside = (labels >= 0) & (labels < len(self.mask))
        out = np.zeros(len(labels), dtype=bool)
        out[inside] = self.mask[labels[inside]]
        return out

    def padded(self, size: int) -> np.ndarray:
        """The mask extended with False to at least ``size`` labels."""
        if len(self.mask) >= size:
            return self.mask
        out = np.zeros(size, dtype=bool)
        out[: len(self.mask)] = self.mask
        return out


class PayloadIndex:
    def __init__(self) -> None:
        self.lock = RWLock()
        self._postings: dict[str, dict[Key, set[int]]] = defaultdict(lambda: defaultdict(set))
        self._present: dict[str, set[int]] = defaultdict(set)
        self._doc: dict[int, list[tuple[str, Key | None]]] = {}
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
        # Posting lists, present-path lists and the live set as int64 arrays, built on
        # first use after a write touched them (readers may race to build one: benign).
        self._arrays: dict[tuple[str, Key | None], np.ndarray] = {}
        self._live_array: np.ndarray | None = None
        self._size = 0  # one past the highest label ever put
        self.live: set[int] = set()

    # -- writes (caller holds the collection's write lock) -----------------------------
    def put(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        with self.lock.write():
            self._live_array = None
            for label, payload in items:
                self._remove(label)
                self._size = max(self._size, label + 1)
                entries: list[tuple[str, Key | None]] = []
                for path, value in _flatten(payload):
                    self._present[path].add(label)
                    self._arrays.pop((path, None), None)
                    entries.append((path, None))
                    elements = value if isinstance(value, list) else [value]
                    for element in elements:
                        key = _key(element)
                        if key is not None:
                            self._postings[path][key].add(label)
                            self._arrays.pop((path, key), None)
                            entries.append((path, key))
                            if key[0] == "n":
                                self._sorted.pop(path, None)
                if entries:
                    self._doc[label] = entries
                self.live.add(label)

    def remove(self, labels: list[int]) -> None:
        with self.lock.write():
            self._live_array = None
            for label in labels:
                self._remove(label)

    def _remove(self, label: int) -> None:
        self.live.discard(label)
        for path, key in self._doc.pop(label, ()):
            self._arrays.pop((path, key), None)
            if key is None:
                self._present[path].discard(label)
            else:
                self._postings[path][key].discard(label)
                if key[0] == "n":
                    self._sorted.pop(path, None)

    # -- reads -------------------------------------------------------------------------
    def evaluate(self, node: Node) -> Matches:
        """Labels of live documents matching a parsed filter."""
        with self.lock.read():
            return Matches(self._eval(node))

    def _mask(self, *arrays: np.ndarray) -> np.ndarray:
        mask = np.zeros(self._size, dtype=bool)
        for labels in arrays:
            mask[labels] = True
        return mask

    def _array(self, path: str, key: Key | None) -> np.ndarray:
        """The labels holding ``key`` at ``path`` (``None``: the labels where it exists)."""
        cached = self._arrays.get((path, key))
        if cached is None:
            labels = (self._present.get(path, ()) if key is None
                      else self._postings.get(path, {}).get(key, ()))
            cached = np.fromiter(labels, dtype=np.int64, count=len(labels))
            self._arrays[(path, key)] = cached
        return cached

    def _live(self) -> np.ndarray:
        live = self._live_array
        if live is None:
            live = np.fromiter(self.live, dtype=np.int64, count=len(self.live))
            self._live_array = live
        return live

    def _eval(self, node: Node) -> np.ndarray:
        if isinstance(node, Cmp):
            if node.op == "$eq":
                key = _key(node.value)
                return self._mask(self._array(node.path, key)) if key is not None \
                    else self._mask()
            return self._range(node.path, node.op, float(node.value))
        if isinstance(node, AnyOf):
            keys = [k for k in map(_key, node.values) if k is not None]
            return self._mask(*(self._array(node.path, k) for k in keys))
        if isinstance(node, Exists):
            return self._mask(self._array(node.path, None))
        if isinstance(node, Not):
            out = self._mask(self._live())
            out &= ~self._eval(node.node)
            return out
        if isinstance(node, And):
            # Range bounds on one path become a single slice of its sorted values: a
            # 10% price band is then 10% of the labels, not the intersection of two
            # masks holding most of them.
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
            result = parts[0]
            for p in parts[1:]:
                result &= p
            return result
        parts = [self._eval(n) for n in node.nodes]
        result = parts[0]
        for p in parts[1:]:
            result |= p
        return result

    def _band(self, path: str, cmps: list[Cmp]) -> np.ndarray:
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
        return self._mask(labels[start:end]) if start < end else self._mask()

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

    def _range(self, path: str, op: str, bound: float) -> np.ndarray:
        values, labels, _ = self._sorted_arrays(path)
        if op in ("$gt", "$gte"):
            start = np.searchsorted(values, bound, side="right" if op == "$gt" else "left")
            return self._mask(labels[start:])
        end = np.searchsorted(values, bound, side="left" if op == "$lt" else "right")
        return self._mask(labels[:end])
