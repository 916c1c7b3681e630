"""Hypothesis strategies for vectors, payloads, filters and API request bodies.

Valid bodies are accepted by the server as they are; each invalid body breaks
exactly one rule, and ``invalid_upserts`` says which status it must get.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

FIELDS = ["cat", "n", "price", "tags", "flag", "meta.lang"]
scalars = st.one_of(
    st.sampled_from(["a", "b", "c", "books", ""]),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
)


@st.composite
def payloads(draw) -> dict:
    out: dict = {}
    for name in ("cat", "n", "price", "flag"):
        if draw(st.booleans()):
            out[name] = draw(st.one_of(scalars, st.none()))
    if draw(st.booleans()):
        out["tags"] = draw(st.lists(scalars, max_size=4))
    if draw(st.booleans()):
        out["meta"] = {"lang": draw(st.sampled_from(["en", "de", 1]))}
    return out


def _field_condition():
    numbers = st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False, width=32))
    return st.one_of(
        scalars,
        st.fixed_dictionaries({"$eq": scalars}),
        st.fixed_dictionaries({"$ne": scalars}),
        st.fixed_dictionaries({"$in": st.lists(scalars, min_size=1, max_size=4)}),
        st.fixed_dictionaries({"$nin": st.lists(scalars, min_size=1, max_size=4)}),
        st.fixed_dictionaries({"$exists": st.booleans()}),
        st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), numbers,
                        min_size=1, max_size=2),
    )


leaf_filters = st.builds(lambda f, c: {f: c}, st.sampled_from(FIELDS), _field_condition())
filters = st.recursive(
    leaf_filters,
    lambda children: st.one_of(
        st.builds(lambda xs: {"$and": xs}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda xs: {"$or": xs}, st.lists(children, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)


def vectors(dim: int, *, nonzero: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Finite float32 vectors; ``nonzero`` keeps them usable with cosine."""
    elements = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=32)
    strategy = hnp.arrays(np.float32, dim, elements=elements)
    return strategy.filter(lambda v: v.any()) if nonzero else strategy


doc_ids = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
                  min_size=1, max_size=40)


@st.composite
def upsert_bodies(draw, dim: int, max_docs: int = 10) -> dict:
    """A valid ``POST .../documents`` body for a collection of dimension ``dim``."""
    ids = draw(st.lists(doc_ids, min_size=1, max_size=max_docs, unique=True))
    docs = []
    for ext_id in ids:
        doc = {"id": ext_id, "vector": draw(vectors(dim)).tolist()}
        if draw(st.booleans()):
            doc["payload"] = draw(payloads())
        if draw(st.booleans()):
            doc["text"] = draw(st.text(max_size=50))
        docs.append(doc)
    return {"documents": docs}


@st.composite
def invalid_upserts(draw, dim: int) -> tuple[dict, int]:
    """(body, expected HTTP status): a valid body with exactly one rule broken."""
    body = draw(upsert_bodies(dim, max_docs=3))
    doc = body["documents"][0]
    rule = draw(st.sampled_from(["dimension", "unknown_field", "missing_id", "id_type",
                                 "vector_type", "duplicate", "empty", "slash_id"]))
    if rule == "dimension":
        doc["vector"] = doc["vector"] + [1.0]
        return body, 422
    if rule == "unknown_field":
        doc["colour"] = "red"
    elif rule == "missing_id":
        del doc["id"]
    elif rule == "id_type":
        doc["id"] = 123
    elif rule == "vector_type":
        doc["vector"] = ["1"] * dim
    elif rule == "duplicate":
        body["documents"].append(dict(doc))
    elif rule == "empty":
        body["documents"] = []
    else:
        doc["id"] = "a/b"
    return body, 400
