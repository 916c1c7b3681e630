"""Raw hnswlib, the limit every server figure is compared with: one helper for every
benchmark that builds the reference index, feeds it in batches and drives it from
every core (its queries release the GIL, so threads scale)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import hnswlib
import numpy as np

from akidb.bench.samples import Samples
from akidb.datagen import usable_cores


@dataclass
class RawIndex:
    index: hnswlib.Index
    ingest_s: float          # add_items of every batch

    @property
    def ingest_per_s(self) -> float:
        return self.index.get_current_count() / self.ingest_s if self.ingest_s else 0.0

    def search(self, query: np.ndarray, k: int) -> list[int]:
        return self.index.knn_query(query, k=k, num_threads=1)[0][0].tolist()

    def serial(self, queries: np.ndarray, k: int, warmup: int = 0
               ) -> tuple[Samples, list[list[int]]]:
        """One query at a time from one thread: latencies and the hits."""
        return Samples.timed(lambda q: self.search(q, k), queries, warmup)

    def threaded_qps(self, queries: np.ndarray, k: int, seconds: float,
                     threads: int | None = None) -> float:
        """Single-query ``knn_query`` back to back from ``threads`` (default every
        usable core) for ``seconds``."""
        done = [0] * (threads or usable_cores())

        def run(w: int) -> None:
            end, i = time.perf_counter() + seconds, w
            while time.perf_counter() < end:
                self.index.knn_query(queries[i % len(queries)], k=k, num_threads=1)
                done[w] += 1
                i += len(done)

        started = time.perf_counter()
        pool = [threading.Thread(target=run, args=(w,)) for w in range(len(done))]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        return sum(done) / (time.perf_counter() - started)

    def batch_qps(self, queries: np.ndarray, k: int, seconds: float, size: int = 100,
                  threads: int | None = None) -> float:
        """Queries per second answered by ``size``-query ``knn_query`` calls on
        ``threads`` (default every usable core) for ``seconds``."""
        block, calls = queries[:size], 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            self.index.knn_query(block, k=k, num_threads=threads or usable_cores())
            calls += 1
        return calls * len(block) / (time.perf_counter() - started)


def build(base: np.ndarray, *, metric: str = "cosine", m: int = 32,
          ef_construction: int = 200, ef: int = 64, batch: int | None = None,
          threads: int = 2, seed: int = 100) -> RawIndex:
    """The reference index over ``base`` (labels = row numbers), fed in ``batch``-row
    ``add_items`` calls (all at once without), timed."""
    index = hnswlib.Index(space={"ip": "ip", "l2": "l2"}.get(metric, "cosine"),
                          dim=base.shape[1])
    index.init_index(max_elements=max(1, len(base)), M=m, ef_construction=ef_construction,
                     random_seed=seed)
    index.set_num_threads(threads)
    step = batch or max(1, len(base))
    started = time.perf_counter()
    for s in range(0, len(base), step):
        index.add_items(base[s:s + step], np.arange(s, min(s + step, len(base))))
    took = time.perf_counter() - started
    index.set_ef(ef)
    return RawIndex(index, took)
