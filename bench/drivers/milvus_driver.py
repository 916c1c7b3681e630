"""Milvus Lite (``pymilvus`` + ``milvus-lite``): Milvus's embedded build in a local file.

Milvus Lite offers FLAT, IVF_FLAT and AUTOINDEX only — not HNSW — so the driver is
named ``milvus-lite`` and its figures are not Milvus's server HNSW. The HNSW
parameters are ignored, which the report says by the name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence

import numpy as np
from pymilvus import MilvusClient

from akidb.bench.drivers import Filter, IndexParams, filter_expression, label_rows

_METRIC = {"cosine": "COSINE", "l2": "L2", "ip": "IP"}


class MilvusLiteDriver:
    name = "milvus-lite"
    capabilities = frozenset({"filter", "batch_search"})

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="akidb-milvus-")
        self.client = MilvusClient(os.path.join(self.dir, "milvus.db"))
        self.coll = f"bench_{os.getpid()}"

    def create(self, dimension: int, params: IndexParams) -> None:
        self.client.create_collection(self.coll, dimension=dimension,
                                      metric_type=_METRIC[params.metric], id_type="string",
                                      max_length=512, auto_id=False)

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        extra = label_rows(labels, len(ids)) or [{}] * len(ids)
        rows = [{"id": ids[i], "vector": vectors[i].tolist(), **extra[i]}
                for i in range(len(ids))]
        self.client.insert(self.coll, rows)

    def wait_indexed(self, count: int) -> None:
        self.client.flush(self.coll)
        got = self.count()
        if got != count:
            raise RuntimeError(f"milvus-lite holds {got} rows after inserting {count}")

    def _expr(self, flt: Filter | None) -> str:
        return "" if flt is None else filter_expression(flt, eq="==")

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        res = self.client.search(self.coll, data=[np.asarray(vector).tolist()], limit=k,
                                 filter=self._expr(flt), output_fields=[])
        return [str(hit["id"]) for hit in res[0]]

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        res = self.client.search(self.coll, data=np.asarray(vectors).tolist(), limit=k,
                                 output_fields=[])
        return [[str(hit["id"]) for hit in row] for row in res]

    def count(self) -> int:
        res = self.client.query(self.coll, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def attach_options(self) -> None:
        return None  # embedded: the database lives in this process

    def memory_bytes(self) -> int | None:
        return None

    def drop(self) -> None:
        self.client.drop_collection(self.coll)

    def close(self) -> None:
        self.client.close()
        shutil.rmtree(self.dir, ignore_errors=True)
