"""Graph inserts take small chunks while searches come and larger ones while none do."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from akidb.server.index.hnsw import INSERT_CHUNK, INSERT_CHUNK_MAX, HnswIndex

from .collections import open_collection

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


def test_a_cap_of_64_or_less_keeps_every_chunk_at_the_cap():
    for cap in (64, 16):
        index = HnswIndex(dimension=DIM, metric="l2", m=8, ef_construction=100,
                          ef_search=200, insert_chunk_max=cap)
        index.read_quiet_s = 0.0
        index.add(*_rows(0, 700))
        assert index.insert_chunk == cap
        assert index.count == 700


def test_the_server_setting_reaches_the_collections_index(tmp_path):
    (tmp_path / "small").mkdir()
    (tmp_path / "default").mkdir()
    coll = open_collection(tmp_path / "small", dim=DIM, index_insert_chunk_max=64)
    default = open_collection(tmp_path / "default", dim=DIM)
    try:
        for c in (coll, default):
            c.index.read_quiet_s = 0.0
            labels, vectors = _rows(0, 700)
            c.upsert([str(i) for i in labels], vectors, [None] * 700, ["{}"] * 700)
        assert coll.index.insert_chunk == 64
        assert default.index.insert_chunk == INSERT_CHUNK_MAX
    finally:
        for c in (coll, default):
            c.close()
            c.store.close()


@pytest.mark.parametrize("value", ["0", "100001", "many"])
def test_a_bad_chunk_setting_stops_serve_with_exit_2(tmp_path, value):
    done = subprocess.run([sys.executable, "-m", "akidb", "serve", "--data-dir",
                           str(tmp_path / "data"), "--port", "0"],
                          env={**os.environ, "AKIDB_INDEX_INSERT_CHUNK_MAX": value},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "INDEX_INSERT_CHUNK_MAX" in done.stderr.upper() and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "metadata.db").exists()
