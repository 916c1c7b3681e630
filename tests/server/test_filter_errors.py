"""A bad filter is answered with where it is wrong and why, exactly: clients show
these messages to people, and tools match on them."""

from __future__ import annotations

import pytest

from akidb.server.errors import BadRequest
from akidb.server.query import filters

SUPPORTED = "supported: $eq $ne $gt $gte $lt $lte $in $nin $exists"
CASES = [
    ({"a": [1, 2]}, 'filter.a: a list is not a value; use {"$in": [...]}'),
    ({"a": {"$gt": "x"}}, "filter.a.$gt: $gt takes a number, got 'x'"),
    ({"a": {"$in": []}}, "filter.a.$in: $in takes a non-empty list"),
    ({"a": {"$nin": 5}}, "filter.a.$nin: $nin takes a non-empty list"),
    ({"a": {"$in": list(range(filters.MAX_IN + 1))}},
     f"filter.a.$in: $in takes at most {filters.MAX_IN} values"),
    ({"a": {"$exists": 1}}, "filter.a.$exists: $exists takes true or false"),
    ({"a": {"$regex": "x"}}, f"filter.a.$regex: unknown operator '$regex'; {SUPPORTED}"),
    ({"$and": [{"a": {"$lt": None}}]}, "filter.$and[0].a.$lt: $lt takes a number, got None"),
    ({"a": {"$eq": {"x": 1}}}, "filter.a.$eq: expected a string, number or boolean, got dict"),
    ({"a": {"$eq": [1]}}, "filter.a.$eq: expected a string, number or boolean, got list"),
    ({"$xor": []}, "filter: unknown operator '$xor' (top level takes $and, $or or fields)"),
    ({"a..b": 1}, "filter: invalid field path 'a..b'"),
    ({"$and": [{"a": i} for i in range(filters.MAX_NODES + 1)]},
     f"filter.$and[{filters.MAX_NODES - 1}]: more than {filters.MAX_NODES} conditions"),
]


@pytest.mark.parametrize("raw, message", CASES)
def test_bad_filters_name_the_place_and_the_reason(raw, message):
    with pytest.raises(BadRequest) as info:
        filters.parse(raw)
    assert str(info.value) == f"invalid filter at {message}"


def _nested(json_depth: int) -> dict:
    """A filter whose JSON is exactly ``json_depth`` levels deep."""
    inner: dict = {"a": {"$eq": 1}} if json_depth % 2 == 0 else {"a": 1}
    levels = (json_depth - (2 if json_depth % 2 == 0 else 1)) // 2
    for _ in range(levels):
        inner = {"$and": [inner]}
    return inner


def test_depth_is_checked_before_the_parser_recurses():
    limit = 4 * filters.MAX_DEPTH + 4
    # At the limit the JSON check lets it through and the parser explains its own rule...
    with pytest.raises(BadRequest) as info:
        filters.parse(_nested(limit))
    assert str(info.value).startswith("invalid filter at filter.$and[0].")
    # ... one level deeper is refused before any recursion, naming the place.
    with pytest.raises(BadRequest) as info:
        filters.parse(_nested(limit + 1))
    text = str(info.value)
    assert text.startswith("filter['$and'][0]['$and'][0]")
    assert text.endswith(f"is nested deeper than {limit} levels")
    assert filters.parse(_nested(2 * filters.MAX_DEPTH)) is not None  # deep but allowed
