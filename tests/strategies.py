"""Hypothesis strategies for payloads and filters in the CONTRACT operators."""

from __future__ import annotations

from hypothesis import strategies as st

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
