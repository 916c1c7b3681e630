"""Export then import, every export format, generated documents: what comes back is
exactly what went in (ids, float32 vectors bit for bit, texts, payloads), or the
export refuses (``.npy`` cannot hold texts or payloads unless told to drop them)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from akidb.bulk.exporter import EXPORT_FORMATS, ExportError, run_export
from akidb.bulk.importer import run_import

DIM = 4
# Ids as the server accepts them: 1-256 characters, no '/', no control characters.
ids = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
              min_size=1, max_size=40)
floats32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
vectors = st.lists(floats32, min_size=DIM, max_size=DIM)
json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                           max_leaves=8)
payloads = st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=4)
texts = st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
documents = st.lists(st.tuples(ids, vectors, texts, payloads), min_size=1, max_size=25,
                     unique_by=lambda d: d[0])


def _documents(client, collection: str) -> dict[str, dict]:
    return {d["id"]: d for page in client.iter_documents(collection) for d in page}


def _upsert(client, collection: str, docs) -> None:
    body = []
    for doc_id, vector, text, payload in docs:
        doc = {"id": doc_id, "vector": vector}
        if text is not None:
            doc["text"] = text
        if payload is not None:
            doc["payload"] = payload
        body.append(doc)
    client.upsert(collection, body)


def _bits(vector) -> bytes:
    return np.asarray(vector, np.float32).tobytes()


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(docs=documents)
def test_export_then_import_round_trips_exactly(fmt, docs, akidb_client, tenant, tmp_path):
    run = uuid.uuid4().hex[:8]
    source, copy = f"{tenant}/db/src-{run}", f"{tenant}/db/dst-{run}"
    for name in (source, copy):
        akidb_client.create_collection(name, dimension=DIM, metric="l2")
    _upsert(akidb_client, source, docs)
    before = _documents(akidb_client, source)
    out = tmp_path / f"{run}.{fmt}"
    lossy = fmt == "npy" and any(t is not None or p for _, _, t, p in docs)
    if lossy:  # .npy holds ids and vectors only: it refuses rather than drop data
        with pytest.raises(ExportError, match="vectors-only"):
            run_export(akidb_client, source, fmt, out, progress=False)
        assert not out.exists()
        run_export(akidb_client, source, fmt, out, progress=False, vectors_only=True)
    else:
        run_export(akidb_client, source, fmt, out, progress=False)
    summary = run_import(akidb_client, out, fmt, copy, progress=False,
                         checkpoint_path=tmp_path / f"{run}.ckpt")
    assert summary.imported == len(docs)
    after = _documents(akidb_client, copy)
    assert sorted(after) == sorted(before)  # same ids, none renumbered
    for doc_id, want in before.items():
        got = after[doc_id]
        assert _bits(got["vector"]) == _bits(want["vector"]), doc_id
        if lossy:
            continue
        assert got.get("text") == want.get("text"), doc_id
        assert (got.get("payload") or {}) == (want.get("payload") or {}), doc_id
    for name in (source, copy):
        akidb_client.delete_collection(name)
