"""Payload filters in the Mongo/Chroma style: parse → validate → a tree of nodes.

The server evaluates the tree in one place, the in-memory payload index
(``server/index/payload.py``), which resolves it to the set of matching labels;
``matches`` below is the reference semantics (the tests' oracle, and the re-check of a
search hit's stored payload). Semantics:
- ``{"f": v}`` is ``{"f": {"$eq": v}}``; several keys in one object are ANDed.
- A field path is dotted (``"meta.lang"``) and reaches into nested objects.
- Comparisons are type-strict: ``1`` equals ``1.0`` but not ``"1"`` or ``true``.
- When the field holds an array, a comparison matches if any element matches
  (``{"tags": "a"}`` matches ``{"tags": ["a", "b"]}``), as in MongoDB.
- ``$ne``/``$nin`` are the negation of ``$eq``/``$in``: documents without the
  field match them. ``$gt``/``$gte``/``$lt``/``$lte`` take numbers only.
- ``$exists: true`` matches a present field, even one holding null.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from akidb.server.errors import BadRequest
from akidb.server.schema import check_json_value

Scalar = str | int | float | bool

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$")
_RANGE_OPS = ("$gt", "$gte", "$lt", "$lte")
_SCALAR_OPS = ("$eq", "$ne", "$in", "$nin")
MAX_DEPTH = 10
MAX_NODES = 256
MAX_IN = 1024


@dataclass(frozen=True)
class Cmp:
    path: str
    op: str  # $eq or a range op
    value: Scalar


@dataclass(frozen=True)
class AnyOf:
    path: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Exists:
    path: str


@dataclass(frozen=True)
class Not:
    node: Node


@dataclass(frozen=True)
class And:
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    nodes: tuple[Node, ...]


Node = Cmp | AnyOf | Exists | Not | And | Or


def parse(raw: Any) -> Node:
    """Validate a filter document; every problem names where in the filter it is."""
    check_json_value(raw, "filter", 4 * MAX_DEPTH + 4)  # before recursing; the parser says more
    counter = [0]
    return _parse_doc(raw, "filter", 0, counter)


def _bad(where: str, message: str) -> BadRequest:
    return BadRequest(f"invalid filter at {where}: {message}")


def _parse_doc(raw: Any, where: str, depth: int, counter: list[int]) -> Node:
    if depth > MAX_DEPTH:
        raise _bad(where, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(raw, dict) or not raw:
        raise _bad(where, "expected a non-empty object")
    nodes: list[Node] = []
    for key, value in raw.items():
        counter[0] += 1
        if counter[0] > MAX_NODES:
            raise _bad(where, f"more than {MAX_NODES} conditions")
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _bad(f"{where}.{key}", "expected a non-empty list of filters")
            subs = tuple(
                _parse_doc(v, f"{where}.{key}[{i}]", depth + 1, counter)
                for i, v in enumerate(value)
            )
            nodes.append(And(subs) if key == "$and" else Or(subs))
        elif key.startswith("$"):
            raise _bad(where, f"unknown operator {key!r} (top level takes $and, $or or fields)")
        else:
            if not isinstance(key, str) or not _PATH.match(key):
                raise _bad(where, f"invalid field path {key!r}")
            nodes.append(_parse_field(key, value, f"{where}.{key}"))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(where, "NaN and infinity cannot be compared")
        return value
    raise _bad(where, f"expected a string, number or boolean, got {type(value).__name__}")


def _parse_field(path: str, value: Any, where: str) -> Node:
    if isinstance(value, list):
        raise _bad(where, "a list is not a value; use {\"$in\": [...]}")
    if not isinstance(value, dict):
        return Cmp(path, "$eq", _scalar(value, where))
    if not value:
        raise _bad(where, "expected at least one operator")
    nodes: list[Node] = []
    for op, operand in value.items():
        at = f"{where}.{op}"
        if op in ("$eq", "$ne"):
            node: Node = Cmp(path, "$eq", _scalar(operand, at))
            nodes.append(Not(node) if op == "$ne" else node)
        elif op in _RANGE_OPS:
            if isinstance(operand, bool) or not isinstance(operand, int | float):
                raise _bad(at, f"{op} takes a number, got {operand!r}")
            nodes.append(Cmp(path, op, _scalar(operand, at)))
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise _bad(at, f"{op} takes a non-empty list")
            if len(operand) > MAX_IN:
                raise _bad(at, f"{op} takes at most {MAX_IN} values")
            any_of = AnyOf(path, tuple(_scalar(v, f"{at}[{i}]") for i, v in enumerate(operand)))
            nodes.append(Not(any_of) if op == "$nin" else any_of)
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise _bad(at, "$exists takes true or false")
            nodes.append(Exists(path) if operand else Not(Exists(path)))
        else:
            raise _bad(at, f"unknown operator {op!r}; supported: $eq $ne $gt $gte $lt $lte "
                           "$in $nin $exists")
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


# -- Python ------------------------------------------------------------------------------
_MISSING = object()


def _lookup(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _elements(value: Any) -> list[Any]:
    if value is _MISSING or isinstance(value, dict) or value is None:
        return []
    return value if isinstance(value, list) else [value]


def _element_matches(op: str, element: Any, value: Scalar) -> bool:
    if _kind(element) != _kind(value):
        return False
    if op == "$eq":
        return element == value
    if _kind(element) != "number":
        return False
    return {"$gt": element > value, "$gte": element >= value,
            "$lt": element < value, "$lte": element <= value}[op]


def matches(node: Node, payload: dict[str, Any]) -> bool:
    """Evaluate a parsed filter against one payload (reference and ground-truth use)."""
    if isinstance(node, Cmp):
        return any(_element_matches(node.op, e, node.value)
                   for e in _elements(_lookup(payload, node.path)))
    if isinstance(node, AnyOf):
        elements = _elements(_lookup(payload, node.path))
        return any(_element_matches("$eq", e, v) for e in elements for v in node.values)
    if isinstance(node, Exists):
        return _lookup(payload, node.path) is not _MISSING
    if isinstance(node, Not):
        return not matches(node.node, payload)
    if isinstance(node, And):
        return all(matches(n, payload) for n in node.nodes)
    return any(matches(n, payload) for n in node.nodes)
