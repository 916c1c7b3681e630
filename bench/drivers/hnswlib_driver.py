"""hnswlib in this process: no server, no network, no serialization — the limit the
other drivers are measured against. Filters are a callable over the label columns."""

from __future__ import annotations

import operator
from collections.abc import Sequence

import hnswlib
import numpy as np

from akidb.bench.drivers import Filter, IndexParams
from akidb.bench.environment import rss_bytes

_SPACES = {"cosine": "cosine", "l2": "l2", "ip": "ip"}
_OPS = {"eq": operator.eq, "gte": operator.ge, "lt": operator.lt}


class HnswlibDriver:
    name = "hnswlib"
    capabilities = frozenset({"filter", "batch_search", "memory", "ef"})

    def __init__(self, threads: int = -1) -> None:
        self.threads = threads
        self.index: hnswlib.Index | None = None
        self.ids: list[str] = []
        self.labels: dict[str, list[object]] = {}
        self.ef = 64

    def create(self, dimension: int, params: IndexParams) -> None:
        self.index = hnswlib.Index(space=_SPACES[params.metric], dim=dimension)
        self.index.init_index(max_elements=max(1024, params.expected_rows), M=params.m,
                              ef_construction=params.ef_construction)
        self.ef = params.ef_search
        self.index.set_ef(self.ef)

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        assert self.index is not None, "create() first"
        start = len(self.ids)
        need = start + len(ids)
        if need > self.index.get_max_elements():
            self.index.resize_index(max(need, 2 * self.index.get_max_elements()))
        # ids and labels first: a search from another thread can see a label as soon
        # as add_items has placed it
        self.ids.extend(ids)
        for key, col in (labels or {}).items():
            self.labels.setdefault(key, []).extend(col.tolist())
        self.index.add_items(vectors, np.arange(start, need), num_threads=self.threads)

    def wait_indexed(self, count: int) -> None:
        assert self.index is not None and self.index.get_current_count() == count

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        assert self.index is not None
        self.index.set_ef(max(ef or self.ef, k))
        keep = None
        if flt is not None:
            column, test, value = self.labels[flt.field], _OPS[flt.op], flt.value

            def keep(label: int) -> bool:
                return bool(test(column[label], value))
        k = min(k, len(self.ids))
        try:
            labels, _ = self.index.knn_query(vector, k=k, filter=keep, num_threads=1)
        except RuntimeError:
            # a selective filter can leave the graph walk short of k matches: one wider
            # try, then what it found is all there is (recall will say so)
            self.index.set_ef(max(4 * (ef or self.ef), 400))
            try:
                labels, _ = self.index.knn_query(vector, k=k, filter=keep, num_threads=1)
            except RuntimeError:
                return []
        return [self.ids[i] for i in labels[0]]

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        assert self.index is not None
        self.index.set_ef(max(ef or self.ef, k))
        labels, _ = self.index.knn_query(vectors, k=min(k, len(self.ids)),
                                         num_threads=self.threads)
        return [[self.ids[i] for i in row] for row in labels]

    def count(self) -> int:
        return 0 if self.index is None else int(self.index.get_current_count())

    def attach_options(self) -> None:
        return None  # embedded: the database lives in this process

    def memory_bytes(self) -> int | None:
        import os

        return rss_bytes(os.getpid())

    def drop(self) -> None:
        self.index, self.ids, self.labels = None, [], {}

    def close(self) -> None:
        self.drop()
