"""Qdrant through qdrant-client: a server at ``url``, or local mode (``path``/memory).

Local mode keeps vectors in Python and searches them exhaustively (no HNSW): the
driver is named ``qdrant-local (exact)`` so nobody reads it as Qdrant's speed. Point
ids must be integers or UUIDs, so rows get integer ids and the driver maps them back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from akidb.bench.drivers import Filter, IndexParams, label_rows

_DIST = {"cosine": models.Distance.COSINE, "l2": models.Distance.EUCLID,
         "ip": models.Distance.DOT}


def _condition(flt: Filter) -> models.FieldCondition:
    if flt.op == "eq":
        return models.FieldCondition(key=flt.field, match=models.MatchValue(value=flt.value))
    rng = models.Range(gte=flt.value) if flt.op == "gte" else models.Range(lt=flt.value)
    return models.FieldCondition(key=flt.field, range=rng)


class QdrantDriver:
    name = "qdrant"
    capabilities = frozenset({"filter", "batch_search"})

    def __init__(self, url: str | None = None, collection: str | None = None) -> None:
        """``collection``: attach to one that exists on the server at ``url`` (a load
        client in another process; hits come back as the point ids)."""
        self.dir = None
        self.url = url
        if url:
            self.client = QdrantClient(url=url, timeout=600)
            self.name = "qdrant"
            self.capabilities = frozenset({"filter", "batch_search", "ef"})
        else:
            self.dir = tempfile.mkdtemp(prefix="akidb-qdrant-")
            self.client = QdrantClient(path=self.dir)
            self.name = "qdrant-local (exact)"
        self.coll = collection or f"bench_{os.getpid()}"
        self.ids: list[str] = []
        self.ef = 64

    def attach_options(self) -> dict[str, Any] | None:
        if self.url is None:
            return None  # local mode: the points live in this process
        return {"driver": "qdrant", "options": {"url": self.url, "collection": self.coll}}

    def create(self, dimension: int, params: IndexParams) -> None:
        self.client.create_collection(
            self.coll, vectors_config=models.VectorParams(size=dimension,
                                                          distance=_DIST[params.metric]),
            hnsw_config=models.HnswConfigDiff(m=params.m, ef_construct=params.ef_construction))
        self.ef = params.ef_search

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        start = len(self.ids)
        self.client.upsert(self.coll, points=models.Batch(
            ids=list(range(start, start + len(ids))), vectors=np.asarray(vectors).tolist(),
            payloads=label_rows(labels, len(ids))), wait=True)
        self.ids.extend(ids)

    def wait_indexed(self, count: int) -> None:
        got = self.count()
        if got != count:
            raise RuntimeError(f"qdrant holds {got} points after inserting {count}")

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        query_filter = None if flt is None else models.Filter(must=[_condition(flt)])
        res = self.client.query_points(self.coll, query=np.asarray(vector).tolist(), limit=k,
                                       query_filter=query_filter,
                                       search_params=models.SearchParams(hnsw_ef=ef or self.ef))
        if not self.ids:  # attached: this client did not insert, it has no id map
            return [str(p.id) for p in res.points]
        return [self.ids[int(p.id)] for p in res.points]

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        return [self.search(v, k, ef) for v in vectors]

    def count(self) -> int:
        return int(self.client.count(self.coll, exact=True).count)

    def memory_bytes(self) -> int | None:
        return None

    def drop(self) -> None:
        self.client.delete_collection(self.coll)
        self.ids = []

    def close(self) -> None:
        self.client.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
