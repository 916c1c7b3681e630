"""REST search bodies, with their vectors decoded straight to float32.

A 384-d search body is mostly numbers. pydantic's JSON parser makes a Python float of
each before the service copies them into float32: for a batch of 100 searches 2.1-2.2
ms of a ~20 ms call from one client, all of it holding the GIL while a core idles.
simdjson parses the body and hands each vector over as one buffer of doubles (no
Python floats); pydantic then validates the other fields, which are few: 1.0 ms for the
same batch, identical vectors (a JSON number is read correctly rounded to a double
either way, then rounded once to float32).

The fast path only takes bodies whose meaning it can prove equal to the canonical
parse (``schema.parse``): no filter (filters keep their exact-integer checks), no
repeated keys, no array other than the vectors, ``include`` and a batch's
``searches`` — counted against the ``[`` in the raw bytes, so a nested array inside a
vector, or a ``[`` inside a string, sends the body the canonical way. Anything the fast
path does not take, including every invalid body, is parsed canonically, so the
accepted inputs and the error messages are those of ``schema.parse``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simdjson
from pydantic import ValidationError

from akidb.server import schema

_Array, _Object = simdjson.Array, simdjson.Object


class _Refused(Exception):
    """The body is for the canonical parser."""


def _search_fields(obj: Any, arrays: list[int]) -> tuple[dict[str, Any], np.ndarray | None]:
    """One search object's fields (without the vector) and its vector as float32."""
    if not isinstance(obj, _Object):
        raise _Refused
    keys = list(obj.keys())
    if len(set(keys)) != len(keys):
        raise _Refused  # simdjson's lookup keeps the first of a repeated key, JSON parsers the last
    fields: dict[str, Any] = {}
    vector = None
    for key in keys:
        value = obj[key]  # lazy: an array stays simdjson's until asked for
        if key == "vector" and isinstance(value, _Array):
            arrays[0] += 1
            # TypeError for anything but numbers (strings, booleans, nulls).
            vector = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64
                                   ).astype(np.float32)
        elif key == "include" and isinstance(value, _Array):
            arrays[0] += 1
            fields[key] = value.as_list()
        elif isinstance(value, _Array | _Object):
            raise _Refused  # a filter, or a field of the wrong shape
        elif key != "vector" or value is not None:
            fields[key] = value
    return fields, vector


def _document(raw: bytes) -> Any:
    try:
        return simdjson.Parser().parse(raw)
    except (ValueError, RuntimeError, TypeError) as exc:  # malformed, big integers, UTF-8
        raise _Refused from exc


def _check_arrays(raw: bytes, arrays: list[int]) -> None:
    if raw.count(b"[") != arrays[0]:
        raise _Refused


def decode_search(raw: bytes) -> tuple[schema.SearchIn, np.ndarray | None]:
    """A search body as its validated request and its vector (None: the canonical parse,
    whose request carries the vector as a list)."""
    try:
        arrays = [0]
        fields, vector = _search_fields(_document(raw), arrays)
        _check_arrays(raw, arrays)
        return schema.SearchIn.model_validate(fields), vector
    except (_Refused, TypeError, ValidationError):
        return schema.parse(schema.SearchIn, raw), None


def decode_search_batch(raw: bytes
                        ) -> tuple[list[schema.SearchIn], list[np.ndarray | None] | None]:
    """A batch search body as its validated requests and their vectors (None: the
    canonical parse)."""
    try:
        doc = _document(raw)
        if not isinstance(doc, _Object) or list(doc.keys()) != ["searches"]:
            raise _Refused
        searches = doc["searches"]
        if not isinstance(searches, _Array):
            raise _Refused
        arrays = [1]
        decoded = [_search_fields(obj, arrays) for obj in searches]
        _check_arrays(raw, arrays)
        reqs = schema.SearchBatchIn.model_validate(
            {"searches": [fields for fields, _ in decoded]}).searches
        return reqs, [vector for _, vector in decoded]
    except (_Refused, TypeError, ValidationError):
        return schema.parse(schema.SearchBatchIn, raw).searches, None
