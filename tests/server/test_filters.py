"""Filters: validation errors, and the SQL form agreeing with the Python reference."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from akidb.datagen.strategies import filters as filter_docs
from akidb.datagen.strategies import payloads
from akidb.server.errors import BadRequest
from akidb.server.index.payload import PayloadIndex
from akidb.server.query import filters
from akidb.server.storage.metadata import MetadataStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    s = MetadataStore(tmp_path_factory.mktemp("meta") / "m.db")
    s.create_tenant("t", {})
    s.create_database("t", "d")
    row = s.create_collection("t", "d", "c", dimension=2, metric="l2", m=8,
                              ef_construction=16, ef_search=16)
    yield s, row.id
    s.close()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(docs=st.lists(payloads(), min_size=1, max_size=25), flt=filter_docs)
def test_the_payload_index_equals_the_python_reference(store, docs, flt):
    s, cid = store
    s.apply_delete(cid, 1, [f"d{i}" for i in range(100)])
    rows = [(f"d{i}", i, "common words", json.dumps(p), np.zeros(2, np.float32).tobytes())
            for i, p in enumerate(docs)]
    s.apply_upsert(cid, 2, rows)
    node = filters.parse(flt)
    want = [i for i, p in enumerate(docs) if filters.matches(node, p)]
    # In-memory payload index, after a round of updates and deletes to exercise removal.
    index = PayloadIndex()
    index.put([(i, {"junk": i, "tags": ["a", i]}) for i in range(len(docs) + 3)])
    index.put(list(enumerate(json.loads(json.dumps(p)) for p in docs)))
    index.remove([len(docs), len(docs) + 1, len(docs) + 2])
    assert sorted(index.evaluate(node)) == want, (flt, docs)


def test_semantics_on_a_worked_example():
    docs = {
        "a": {"cat": "books", "price": 3, "tags": ["x", "y"]},
        "b": {"cat": "toys", "price": 7.5, "flag": True},
        "c": {"cat": "books", "price": "3"},
        "d": {"n": 1},
    }

    def ids(flt):
        node = filters.parse(flt)
        return sorted(k for k, p in docs.items() if filters.matches(node, p))

    assert ids({"cat": "books"}) == ["a", "c"]
    assert ids({"price": {"$gte": 3, "$lt": 8}}) == ["a", "b"]  # "3" is not a number
    assert ids({"tags": "x"}) == ["a"]
    assert ids({"cat": {"$ne": "books"}}) == ["b", "d"]  # missing field matches $ne
    assert ids({"flag": {"$exists": True}}) == ["b"]
    assert ids({"$or": [{"tags": {"$in": ["y"]}}, {"n": 1}]}) == ["a", "d"]
    assert ids({"flag": 1}) == []  # true is not 1


@pytest.mark.parametrize("bad, fragment", [
    ({}, "non-empty object"),
    ([], "non-empty object"),
    ({"$and": {}}, "non-empty list"),
    ({"$not": [{"a": 1}]}, "unknown operator"),
    ({"a": {"$regex": "x"}}, "unknown operator"),
    ({"a": {"$gt": "x"}}, "takes a number"),
    ({"a": {"$gt": True}}, "takes a number"),
    ({"a": {"$in": []}}, "non-empty list"),
    ({"a": [1, 2]}, "use {\"$in\""),
    ({"a": {"$exists": 1}}, "true or false"),
    ({"a b": 1}, "invalid field path"),
    ({"a'); DROP TABLE documents; --": 1}, "invalid field path"),
    ({"a": None}, "expected a string, number or boolean"),
    ({"a": {"$eq": {"b": 1}}}, "expected a string, number or boolean"),
])
def test_invalid_filters_are_rejected_with_the_place(bad, fragment):
    with pytest.raises(BadRequest) as info:
        filters.parse(bad)
    assert fragment in str(info.value)


def test_range_band_keeps_any_element_semantics_for_arrays():
    """{"$gte": 5, "$lt": 6} on an array field: each bound may be met by a different
    element (as filters.matches says); on scalar fields one band answers both."""
    from akidb.server.index.payload import PayloadIndex
    from akidb.server.query import filters as f

    idx = PayloadIndex()
    idx.put([(1, {"p": [1, 10]}), (2, {"p": 5.5}), (3, {"p": 7}), (4, {"q": 5.5}),
             (5, {"q": 9})])
    band = {"$gte": 5, "$lt": 6}
    for path, docs in (("p", {1: [1, 10], 2: 5.5, 3: 7}), ("q", {4: 5.5, 5: 9})):
        node = f.parse({path: band})
        expected = {label for label, v in docs.items() if f.matches(node, {path: v})}
        assert set(idx.evaluate(node)) == expected
    assert set(idx.evaluate(f.parse({"p": band}))) == {1, 2}
    assert set(idx.evaluate(f.parse({"q": band}))) == {4}


def test_limits_on_depth_conditions_and_list_sizes():
    deep = {"a": 1}
    for _ in range(filters.MAX_DEPTH):
        deep = {"$and": [deep]}
    filters.parse(deep)  # exactly the limit
    with pytest.raises(BadRequest, match=f"deeper than {filters.MAX_DEPTH} levels"):
        filters.parse({"$and": [deep]})
    many = {f"f{i}": i for i in range(filters.MAX_NODES)}
    filters.parse(many)
    with pytest.raises(BadRequest, match=f"more than {filters.MAX_NODES} conditions"):
        filters.parse({**many, "extra": 1})
    filters.parse({"a": {"$in": list(range(filters.MAX_IN))}})
    with pytest.raises(BadRequest, match=f"at most {filters.MAX_IN} values"):
        filters.parse({"a": {"$nin": list(range(filters.MAX_IN + 1))}})


def test_parsed_shapes_and_error_places():
    assert filters.parse({"a": 1}) == filters.Cmp("a", "$eq", 1)
    assert filters.parse({"a": {"$ne": "x"}}) == filters.Not(filters.Cmp("a", "$eq", "x"))
    assert filters.parse({"a": {"$gt": 1, "$lte": 2.5}}) == filters.And(
        (filters.Cmp("a", "$gt", 1), filters.Cmp("a", "$lte", 2.5)))
    assert filters.parse({"a": {"$in": [1, "b"]}}) == filters.AnyOf("a", (1, "b"))
    assert filters.parse({"a": {"$nin": [True]}}) == filters.Not(filters.AnyOf("a", (True,)))
    assert filters.parse({"a": {"$exists": False}}) == filters.Not(filters.Exists("a"))
    assert filters.parse({"$or": [{"a": 1}, {"b": 2}]}) == filters.Or(
        (filters.Cmp("a", "$eq", 1), filters.Cmp("b", "$eq", 2)))
    assert filters.parse({"a": 1, "b": 2}) == filters.And(
        (filters.Cmp("a", "$eq", 1), filters.Cmp("b", "$eq", 2)))
    assert filters.parse({"m.k-2": 1}) == filters.Cmp("m.k-2", "$eq", 1)
    for bad, message in [
        ({"$and": [{"a": 1}, 5]}, "invalid filter at filter.$and[1]: expected a non-empty object"),
        ({"a": {"$in": [1, [2]]}}, "invalid filter at filter.a.$in[1]: expected a string"),
        ({"a": {"$gt": float("nan")}}, "invalid filter at filter.a.$gt: NaN"),
        ({"a": float("inf")}, "invalid filter at filter.a: NaN and infinity"),
        ({"$or": []}, "invalid filter at filter.$or: expected a non-empty list"),
        ({"a": {}}, "invalid filter at filter.a: expected at least one operator"),
        ({"$nor": [{"a": 1}]}, "unknown operator '$nor' (top level takes $and, $or or fields)"),
        ({"a": {"$in": "x"}}, "$in takes a non-empty list"),
        ({"a": {"$lt": "3"}}, "$lt takes a number, got '3'"),
        ({"1a": 1}, "invalid field path '1a'"),
        ({"a.": 1}, "invalid field path 'a.'"),
    ]:
        with pytest.raises(BadRequest) as info:
            filters.parse(bad)
        assert message in str(info.value), (bad, str(info.value))


def test_matches_of_labels_written_after_the_evaluation_are_false():
    """A document written after a filter was evaluated lies past the end of its mask:
    it does not match, whichever way it is asked (membership, a batch of graph labels,
    the padded mask the graph walk reads)."""
    import numpy as np

    from akidb.server.index.payload import PayloadIndex
    from akidb.server.query import filters as f

    idx = PayloadIndex()
    idx.put([(0, {"a": 1}), (1, {"a": 2}), (2, {"a": 1})])
    matched = idx.evaluate(f.parse({"a": 1}))
    idx.put([(3, {"a": 1}), (7, {"a": 1})])
    assert len(matched) == 2 and list(matched) == [0, 2]
    assert 0 in matched and 1 not in matched and 3 not in matched and 7 not in matched
    assert matched.keep(np.array([2, 3, 1, 0, 99])).tolist() == [True, False, False, True,
                                                                 False]
    assert np.flatnonzero(matched.padded(16)).tolist() == [0, 2]
    assert list(idx.evaluate(f.parse({"a": 1}))) == [0, 2, 3, 7]  # evaluated anew
    idx.remove([0])
    assert list(idx.evaluate(f.parse({"a": {"$ne": 1}}))) == [1]  # Not over the live set
    assert list(idx.evaluate(f.parse({"a": {"$in": [1, 2]}}))) == [1, 2, 3, 7]
