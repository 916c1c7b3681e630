"""Hand-written truth tables for every filter operator, checked on every evaluation path.

The property tests elsewhere compare each path with ``filters.matches``; a bug in the
parser would fool both sides. Here the expected ids are written out by hand from the
documented semantics (type-strict, any-element for arrays, $ne/$nin match missing
fields, $exists counts null as present) and every path must produce exactly them:
the Python oracle, the in-memory payload index (the server's one evaluator), and the
server over REST in vector mode (exact/graph search over the matching set) and text
mode (BM25 ranking kept to the matching set).
"""

from __future__ import annotations

import json

import pytest

from akidb.server.index.payload import PayloadIndex
from akidb.server.query import filters

DOCS: dict[str, dict] = {
    "d1": {"n": 1, "s": "a", "b": True, "arr": [1, 2], "sarr": ["x", "y"],
           "nested": {"k": 5}},
    "d2": {"n": 2.5, "s": "b", "b": False, "arr": [3], "sarr": ["y"], "nested": {"k": "5"}},
    "d3": {"n": "1", "s": "a", "arr": [], "nested": {}},
    "d4": {"s": None, "b": 1},
    "d5": {},
    "d6": {"n": 1.0, "arr": [1, "1", True], "sarr": "x"},
}
ALL = set(DOCS)

TABLE: list[tuple[dict, set[str]]] = [
    # scalars: numbers are type-strict (the string "1" is not 1, 1.0 is 1)
    ({"n": 1}, {"d1", "d6"}),
    ({"n": {"$eq": 1}}, {"d1", "d6"}),
    ({"n": {"$ne": 1}}, {"d2", "d3", "d4", "d5"}),
    ({"n": {"$gt": 1}}, {"d2"}),
    ({"n": {"$gte": 1}}, {"d1", "d2", "d6"}),
    ({"n": {"$lt": 2}}, {"d1", "d6"}),
    ({"n": {"$lte": 1}}, {"d1", "d6"}),
    ({"n": {"$gt": 0, "$lt": 2}}, {"d1", "d6"}),
    ({"n": {"$in": [1, "1"]}}, {"d1", "d3", "d6"}),
    ({"n": {"$nin": [1, "1"]}}, {"d2", "d4", "d5"}),
    ({"n": {"$exists": True}}, {"d1", "d2", "d3", "d6"}),
    ({"n": {"$exists": False}}, {"d4", "d5"}),
    # strings, and null counting as present
    ({"s": "a"}, {"d1", "d3"}),
    ({"s": {"$ne": "a"}}, {"d2", "d4", "d5", "d6"}),
    ({"s": {"$in": ["a", "b"]}}, {"d1", "d2", "d3"}),
    ({"s": {"$nin": ["a"]}}, {"d2", "d4", "d5", "d6"}),
    ({"s": {"$exists": True}}, {"d1", "d2", "d3", "d4"}),
    # booleans are not numbers
    ({"b": True}, {"d1"}),
    ({"b": False}, {"d2"}),
    ({"b": 1}, {"d4"}),
    ({"b": {"$ne": True}}, {"d2", "d3", "d4", "d5", "d6"}),
    # arrays: a comparison matches when any element does; negations when none does
    ({"arr": 1}, {"d1", "d6"}),
    ({"arr": {"$ne": 1}}, {"d2", "d3", "d4", "d5"}),
    ({"arr": {"$gt": 2}}, {"d2"}),
    ({"arr": {"$gte": 2, "$lt": 3}}, {"d1"}),
    ({"arr": {"$in": [2, 3]}}, {"d1", "d2"}),
    ({"arr": {"$nin": [2, 3]}}, {"d3", "d4", "d5", "d6"}),
    ({"arr": True}, {"d6"}),
    ({"arr": "1"}, {"d6"}),
    ({"arr": {"$exists": True}}, {"d1", "d2", "d3", "d6"}),
    ({"sarr": "x"}, {"d1", "d6"}),
    ({"sarr": {"$nin": ["y"]}}, {"d3", "d4", "d5", "d6"}),
    ({"sarr": {"$ne": "y"}}, {"d3", "d4", "d5", "d6"}),
    # nested paths
    ({"nested.k": 5}, {"d1"}),
    ({"nested.k": "5"}, {"d2"}),
    ({"nested.k": {"$gte": 5}}, {"d1"}),
    ({"nested.k": {"$ne": 5}}, {"d2", "d3", "d4", "d5", "d6"}),
    ({"nested.k": {"$exists": True}}, {"d1", "d2"}),
    ({"nested": {"$exists": True}}, {"d1", "d2", "d3"}),
    # logic
    ({"$and": [{"s": "a"}, {"n": 1}]}, {"d1"}),
    ({"s": "a", "arr": {"$exists": True}}, {"d1", "d3"}),
    ({"$or": [{"s": "b"}, {"b": 1}]}, {"d2", "d4"}),
    ({"$or": [{"n": {"$nin": [1]}}, {"arr": 3}]}, {"d2", "d3", "d4", "d5"}),
    ({"$and": [{"n": {"$exists": False}}, {"s": {"$exists": True}}]}, {"d4"}),
]

IDS = sorted(DOCS)
LABEL = {doc_id: i for i, doc_id in enumerate(IDS)}


def _names(labels) -> set[str]:
    return {IDS[int(label)] for label in labels}


@pytest.fixture(scope="module")
def payload_index():
    index = PayloadIndex()
    index.put([(LABEL[d], {"junk": 1, "arr": ["old"]}) for d in IDS])  # replaced below
    index.put([(LABEL[d], p) for d, p in DOCS.items()])
    return index


@pytest.fixture(scope="module")
def server_collection(akidb_cluster):
    client = akidb_cluster.admin_client()
    coll = "truth-table/db/c"
    client.create_collection(coll, dimension=2, metric="l2", create_parents=True)
    client.upsert(coll, [{"id": d, "vector": [1.0, float(i)], "text": "common", "payload": p}
                         for i, (d, p) in enumerate(DOCS.items())])
    yield client, coll
    client.delete_tenant("truth-table")
    client.close()


def test_the_table_covers_every_operator():
    used = json.dumps([flt for flt, _ in TABLE])
    for op in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$and",
               "$or"):
        assert op in used, op


CASES = pytest.mark.parametrize(("flt", "want"), TABLE, ids=[json.dumps(f) for f, _ in TABLE])


@CASES
def test_every_in_process_path_gives_the_hand_written_answer(flt, want, payload_index):
    node = filters.parse(flt)
    assert {d for d, p in DOCS.items() if filters.matches(node, p)} == want, "oracle"
    assert _names(payload_index.evaluate(node)) == want, "payload index"


@CASES
def test_the_server_gives_the_hand_written_answer(flt, want, server_collection):
    client, coll = server_collection
    assert set(client.search(coll, [1.0, 0.0], k=10, filter=flt).ids) == want, "REST vector"
    assert set(client.search(coll, text="common", mode="text", k=10, filter=flt).ids) \
        == want, "REST text"
    assert want <= ALL
