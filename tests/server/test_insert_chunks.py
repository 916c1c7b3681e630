"""Graph inserts take small chunks while searches come and larger ones while none do."""

from __future__ import annotations

import numpy as np

from akidb.server.index.hnsw import INSERT_CHUNK, INSERT_CHUNK_MAX, HnswIndex

DIM = 8


def _index(read_quiet_s: float) -> HnswIndex:
    index = HnswIndex(dimension=DIM, metric="l2", m=8, ef_construction=100, ef_search=200)
    index.read_quiet_s = read_quiet_s
    return index


def _rows(start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(start)
    return np.arange(start, start + n), rng.standard_normal((n, DIM)).astype(np.float32)


def test_the_chunk_doubles_up_to_its_cap_while_no_search_comes():
    index = _index(read_quiet_s=0.0)  # any search is long past: always quiet
    seen = []
    for start in range(0, 5 * INSERT_CHUNK, INSERT_CHUNK):
        index.add(*_rows(start, INSERT_CHUNK))
        seen.append(index.insert_chunk)
    assert seen == [2 * INSERT_CHUNK, 4 * INSERT_CHUNK, 8 * INSERT_CHUNK, INSERT_CHUNK_MAX,
                    INSERT_CHUNK_MAX]
    assert 8 * INSERT_CHUNK == INSERT_CHUNK_MAX


def test_a_recent_search_keeps_the_chunk_small():
    index = _index(read_quiet_s=3600.0)  # a search within the hour counts as recent
    labels, vectors = _rows(0, 3 * INSERT_CHUNK_MAX)
    index.add(labels, vectors)
    assert index.insert_chunk == INSERT_CHUNK_MAX  # no search yet: it grew
    index.search(vectors[0], 1)
    more_labels, more_vectors = _rows(len(labels), 5 * INSERT_CHUNK + 3)
    index.add(more_labels, more_vectors)
    assert index.insert_chunk == INSERT_CHUNK


def test_every_vector_goes_in_once_whatever_the_chunks():
    """Chunks of 64..512 over batches of odd sizes: each label lands exactly once."""
    index = _index(read_quiet_s=0.0)
    batches = [_rows(start, n) for start, n in ((0, 1), (1, 700), (701, 65), (766, 1300))]
    for labels, vectors in batches:
        index.add(labels, vectors)
    assert index.count == 2066
    assert sorted(index.labels().tolist()) == list(range(2066))
    labels, vectors = batches[-1]
    for i in (0, 511, 512, 1299):
        found, _ = index.search(vectors[i], 1)
        assert found[0] == labels[i]
