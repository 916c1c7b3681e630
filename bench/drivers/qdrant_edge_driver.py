"""Qdrant Edge (``qdrant-edge-py``): the Qdrant engine embedded in this process, with
its HNSW index and payload filters: what qdrant-client's local mode is not.

Points are written as they come; ``wait_indexed`` runs the optimizer, which builds
the HNSW index over every segment (Edge indexes only when asked), so a load becomes
searchable there. Label columns get payload indexes, so a selective filter uses
Qdrant's own planning. Point ids are integers, mapped back to the dataset's ids.
Edge is in beta (pinned: 0.9.0, the version measured here).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from akidb.bench.drivers import DriverError, Filter, IndexParams

_DISTANCE = {"cosine": qe.Distance.Cosine, "l2": qe.Distance.Euclid, "ip": qe.Distance.Dot}


def _condition(flt: Filter) -> qe.FieldCondition:
    if flt.op == "eq":
        return qe.FieldCondition(key=flt.field, match=qe.MatchValue(flt.value))
    bound = {"gte": flt.value} if flt.op == "gte" else {"lt": flt.value}
    return qe.FieldCondition(key=flt.field, range=qe.RangeFloat(**bound))


class QdrantEdgeDriver:
    name = "qdrant-edge"
    capabilities = frozenset({"filter", "batch_search", "ef"})

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="akidb-qdrant-edge-")
        self.shard: qe.EdgeShard | None = None
        self.ids: list[str] = []
        self.indexed_fields: set[str] = set()
        self.ef = 64

    def create(self, dimension: int, params: IndexParams) -> None:
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dimension, distance=_DISTANCE[params.metric]),
            hnsw_config=qe.HnswIndexConfig(m=params.m, ef_construct=params.ef_construction,
                                           full_scan_threshold=10),
            # index whatever is there when optimize() runs (threshold in KB)
            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1, default_segment_number=1))
        self.shard = qe.EdgeShard.create(self.dir, config)
        self.ef = params.ef_search

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        if self.shard is None:
            raise DriverError("create() first")
        start = len(self.ids)
        self.ids.extend(ids)  # before the write: a concurrent search may see it at once
        cols = {k: v.tolist() for k, v in (labels or {}).items()}
        for key, col in (labels or {}).items():
            if key not in self.indexed_fields:
                kind = (qe.PayloadSchemaType.Float if col.dtype.kind == "f" else
                        qe.PayloadSchemaType.Integer if col.dtype.kind in "iu" else
                        qe.PayloadSchemaType.Keyword)
                self.shard.update(qe.UpdateOperation.create_field_index(key, kind))
                self.indexed_fields.add(key)
        rows = np.asarray(vectors, dtype=np.float32).tolist()
        points = [qe.Point(start + i, rows[i], {k: c[i] for k, c in cols.items()} or None)
                  for i in range(len(ids))]
        self.shard.update(qe.UpdateOperation.upsert_points(points))

    def wait_indexed(self, count: int) -> None:
        assert self.shard is not None
        self.shard.optimize()
        got = self.count()
        if got != count:
            raise DriverError(f"qdrant-edge holds {got} points after inserting {count}")

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        assert self.shard is not None
        request = qe.QueryRequest(
            limit=k, query=qe.Query.Nearest(np.asarray(vector, np.float32).tolist()),
            params=qe.SearchParams(hnsw_ef=max(ef or self.ef, k)),
            filter=None if flt is None else qe.Filter(must=[_condition(flt)]))
        return [self.ids[int(p.id)] for p in self.shard.query(request)]

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        return [self.search(v, k, ef) for v in vectors]

    def count(self) -> int:
        return 0 if self.shard is None else int(self.shard.count(qe.CountRequest()))

    def attach_options(self) -> None:
        return None  # embedded: the shard lives in this process

    def memory_bytes(self) -> int | None:
        return None

    def drop(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None
        self.ids, self.indexed_fields = [], set()
        shutil.rmtree(self.dir, ignore_errors=True)  # create() needs an empty folder
        Path(self.dir).mkdir()

    def close(self) -> None:
        self.drop()
        shutil.rmtree(self.dir, ignore_errors=True)
