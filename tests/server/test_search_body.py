"""The REST search body decoder (simdjson fast path) means what the canonical parse
means: the same requests, bit-identical float32 vectors, and for anything it does not
take, the canonical parse's own answer and error."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akidb.server import schema
from akidb.server.api.search_body import decode_search, decode_search_batch
from akidb.server.errors import AkiError


def _canonical(model: type, raw: bytes) -> tuple[str, object]:
    try:
        parsed = schema.parse(model, raw)
    except AkiError as exc:
        return "error", (type(exc).__name__, exc.message)
    searches = parsed.searches if model is schema.SearchBatchIn else [parsed]
    return "ok", [_meaning(s, None) for s in searches]


def _fast(model: type, raw: bytes) -> tuple[str, object]:
    try:
        if model is schema.SearchBatchIn:
            reqs, vectors = decode_search_batch(raw)
        else:
            req, vector = decode_search(raw)
            reqs, vectors = [req], [vector]
    except AkiError as exc:
        return "error", (type(exc).__name__, exc.message)
    return "ok", [_meaning(r, None if vectors is None else vectors[i])
                  for i, r in enumerate(reqs)]


def _meaning(req: schema.SearchIn, vector: np.ndarray | None) -> tuple:
    if vector is None and req.vector is not None:
        vector = schema.float32_vector(req.vector)
    fields = req.model_dump(exclude={"vector"})
    return (None if vector is None else vector.tobytes(),
            json.dumps(fields, sort_keys=True, default=str))


def _same(model: type, raw: bytes) -> None:
    assert _fast(model, raw) == _canonical(model, raw), raw[:200]


def test_a_plain_batch_takes_the_fast_path_with_identical_vectors():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    raw = orjson.dumps({"searches": [{"vector": v, "k": 5, "include": ["payload"]} for v in q]},
                       option=orjson.OPT_SERIALIZE_NUMPY)
    reqs, vectors = decode_search_batch(raw)
    assert vectors is not None  # the fast path, not the fallback
    assert all(r.vector is None and r.k == 5 and r.include == ["payload"] for r in reqs)
    assert np.array_equal(np.stack(vectors), q)
    req, vector = decode_search(orjson.dumps({"vector": q[0], "k": 3, "text": "a b"},
                                             option=orjson.OPT_SERIALIZE_NUMPY))
    assert vector is not None and np.array_equal(vector, q[0])
    assert (req.k, req.text, req.vector) == (3, "a b", None)
    _same(schema.SearchBatchIn, raw)


@pytest.mark.parametrize("raw", [
    b'{"vector": [[1, 2]], "k": 1}',          # nested array: not a vector of numbers
    b'{"vector": [[1]], "k": 1}',             # ... even where flattening fits
    b'{"vector": [1, [2]], "k": 1}',
    b'{"vector": [1, true]}', b'{"vector": [1, "2"]}', b'{"vector": [1, null]}',
    b'{"vector": [1e400]}', b'{"vector": [NaN]}', b'{"vector": [Infinity]}',
    b'{"vector": [1], "k": 99999999999999999999999}', b'{"vector": [1], "k": 18446744073709551615}',
    b'{"vector": [1], "k": 1.0}', b'{"vector": [1], "k": true}', b'{"vector": [1], "k": "1"}',
    b'{"vector": [1], "vector": [2]}', b'{"k": 1, "k": 2, "vector": [1]}',
    b'{"vector": [1], "filter": {"n": {"$gt": 1180591620717411303424}}}',
    b'{"vector": [1], "filter": {"n": {"$in": [1, 2]}}}',
    b'{"vector": [1], "text": "a [b] c"}', b'{"vector": [1], "include": ["payload", "bogus"]}',
    b'{"vector": [1], "mode": "fuzzy"}', b'{"vector": [1], "extra": 1}', b'{"vector": 5}',
    b'{"vector": null, "text": "x"}', b'{"vector": []}', b'{"vector": [1], "ef": 0}',
    b'[]', b'{}', b'', b'\xff', b'{"vector": [1]} x', b'{"vector": [1,', b'"s"', b'null',
])
def test_odd_single_bodies_mean_what_the_canonical_parse_says(raw):
    _same(schema.SearchIn, raw)


@pytest.mark.parametrize("raw", [
    b'{"searches": []}', b'{"searches": {}}', b'{"searches": [1]}', b'{"searches": [[]]}',
    b'{"searches": [{"vector": [1]}], "searches": [{"vector": [2]}]}',
    b'{"searches": [{"vector": [1]}], "extra": 1}', b'{"searches": [{"vector": [[1]]}]}',
    b'{"searches": [{"vector": [1]}, {"vector": [1, true]}]}',
    b'{"searches": [{"vector": [1]}, {"text": "]["}]}', b'[{"vector": [1]}]',
])
def test_odd_batch_bodies_mean_what_the_canonical_parse_says(raw):
    _same(schema.SearchBatchIn, raw)


_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.integers(min_value=-(2**70), max_value=2**70))
_search = st.fixed_dictionaries({}, optional={
    "vector": st.one_of(st.none(), st.lists(_numbers, max_size=8),
                        st.lists(st.one_of(_numbers, st.booleans(), st.text(max_size=2)),
                                 max_size=3)),
    "text": st.one_of(st.none(), st.text(max_size=6)),
    "k": st.one_of(st.integers(-2, 2**66), st.floats(allow_nan=False, width=32)),
    "ef": st.integers(-1, 5000),
    "mode": st.sampled_from(["vector", "text", "hybrid", "other"]),
    "include": st.lists(st.sampled_from(["payload", "text", "vector", "x"]), max_size=3),
    "alpha": st.floats(-1, 2, allow_nan=False),
    "filter": st.dictionaries(st.sampled_from(["a", "b"]), _numbers, max_size=2),
})


@settings(max_examples=300, deadline=None)
@given(searches=st.lists(_search, max_size=5))
def test_any_generated_batch_means_what_the_canonical_parse_says(searches):
    raw = json.dumps({"searches": searches}).encode()
    _same(schema.SearchBatchIn, raw)
    for search in searches:
        _same(schema.SearchIn, json.dumps(search).encode())


def test_float32_rounding_is_the_canonical_one():
    # Doubles that sit between float32 neighbours, printed with all their digits.
    values = [1 + 2**-24, 1 + 3 * 2**-25, 0.1, 1 / 3, 3.4028234663852886e38, 1e-45, -0.0]
    raw = ("{\"vector\": [" + ",".join(repr(v) for v in values) + "]}").encode()
    _, vector = decode_search(raw)
    assert vector is not None
    assert vector.tobytes() == np.fromiter(values, np.float32, len(values)).tobytes()
    assert math.copysign(1, vector[-1]) == -1
