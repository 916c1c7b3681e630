"""LanceDB, embedded (a local folder). Below ``INDEX_MIN_ROWS`` it has no vector
index and scans exactly; from there ``wait_indexed`` builds an IVF_HNSW_SQ index
with the run's M and ef_construction (LanceDB's HNSW lives inside IVF partitions, and
its vectors are scalar-quantized: not the same index as the others')."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa

from akidb.bench.drivers import Filter, IndexParams, filter_expression

INDEX_MIN_ROWS = 10_000
_METRIC = {"cosine": "cosine", "l2": "l2", "ip": "dot"}


class LanceDBDriver:
    name = "lancedb"
    capabilities = frozenset({"filter", "batch_search", "ef"})  # ef from INDEX_MIN_ROWS

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="akidb-lancedb-")
        self.db = lancedb.connect(self.dir)
        self.table: Any = None
        self.params = IndexParams()

    def create(self, dimension: int, params: IndexParams) -> None:
        self.dimension, self.params = dimension, params

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        vec = np.ascontiguousarray(vectors, dtype=np.float32)
        cols: dict[str, Any] = {
            "id": pa.array(list(ids), pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), vec.shape[1])}
        for key, col in (labels or {}).items():
            cols[key] = pa.array(col.tolist())
        batch = pa.table(cols)
        if self.table is None:
            self.table = self.db.create_table(f"bench_{os.getpid()}", batch)
        else:
            self.table.add(batch)

    def wait_indexed(self, count: int) -> None:
        if count >= INDEX_MIN_ROWS:
            self.table.create_index(metric=_METRIC[self.params.metric],
                                    index_type="IVF_HNSW_SQ", m=self.params.m,
                                    ef_construction=self.params.ef_construction)
        got = self.count()
        if got != count:
            raise RuntimeError(f"lancedb holds {got} rows after inserting {count}")

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        q = (self.table.search(np.asarray(vector, np.float32))
             .distance_type(_METRIC[self.params.metric]).limit(k).select(["id"]))
        if len(self) >= INDEX_MIN_ROWS:
            q = q.ef(ef or self.params.ef_search)
        if flt is not None:
            q = q.where(filter_expression(flt), prefilter=True)
        return [row["id"] for row in q.to_list()]

    def __len__(self) -> int:
        return 0 if self.table is None else self.table.count_rows()

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        return [self.search(v, k, ef) for v in vectors]

    def count(self) -> int:
        return len(self)

    def attach_options(self) -> None:
        return None  # embedded: the database lives in this process

    def memory_bytes(self) -> int | None:
        return None

    def drop(self) -> None:
        if self.table is not None:
            self.db.drop_table(self.table.name)
            self.table = None

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
