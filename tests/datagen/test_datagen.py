"""datagen: determinism, distributions, ground truth, file formats, CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from akidb.datagen import io, vectors
from akidb.datagen.documents import documents
from akidb.datagen.groundtruth import exact_knn, filter_mask
from akidb.datagen.tenants import tenants, zipf_sizes
from akidb.datagen.workload import workload


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("kind", ["clustered", "uniform"])
def test_vectors_are_reproducible_and_independent_of_chunking(kind):
    gen = vectors.KINDS[kind]
    whole = _digest(gen(70000, 24, seed=5))
    assert whole == _digest(gen(70000, 24, seed=5, chunk=1000))
    assert whole != _digest(gen(70000, 24, seed=6))
    assert np.concatenate(list(gen(100, 8, seed=1))).dtype == np.float32


def test_clustered_vectors_are_unit_length_and_clustered():
    x = vectors.clustered(4000, 32, clusters=4, seed=3)
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    q = vectors.queries(50, 32, clusters=4, seed=3)
    assert not np.array_equal(q, x[:50])
    # Same centres: every query has a close base neighbour.
    assert (q @ x.T).max(axis=1).min() > 0.6
    raw = vectors.clustered(100, 32, seed=3, normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1)


def test_documents_tenants_and_workloads_are_deterministic_with_known_selectivity():
    docs = documents(3000, seed=9)
    assert docs == documents(3000, seed=9) and docs != documents(3000, seed=10)
    assert len({d["id"] for d in docs}) == 3000 and all(d["text"] for d in docs)
    cat_share = np.mean([d["payload"]["category"] == "cat-07" for d in docs])
    price_share = np.mean([d["payload"]["price"] < 10 for d in docs])
    assert 0.004 < cat_share < 0.02 and 0.08 < price_share < 0.12

    t = tenants(20, total_documents=10000, seed=1)
    sizes = [x["documents"] for x in t]
    assert sum(sizes) == 10000 and sizes == sorted(sizes, reverse=True) and sizes[0] > 5 * sizes[-1]
    assert all(x["users"][0]["role"] == "admin" for x in t)
    assert zipf_sizes(3, 3) == [1, 1, 1]

    ops = workload(5000, n_query_vectors=100, seed=2)
    share = {k: np.mean([o["kind"] == k for o in ops]) for k in ("vector", "filtered", "hybrid")}
    assert abs(share["vector"] - 0.6) < 0.03 and abs(share["filtered"] - 0.3) < 0.03
    assert ops == workload(5000, n_query_vectors=100, seed=2)
    payloads = [d["payload"] for d in docs]
    for op in (o for o in ops[:300] if o["kind"] == "filtered"):
        measured = filter_mask(payloads, op["filter"]).mean()
        assert measured < op["selectivity"] * 3 + 0.01


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), q=st.integers(1, 5), k=st.integers(1, 70),
       metric=st.sampled_from(["cosine", "l2", "ip"]), seed=st.integers(0, 1000),
       blocks=st.tuples(st.integers(1, 7), st.integers(1, 25)), workers=st.integers(1, 3))
def test_ground_truth_equals_naive_sort(n, q, k, metric, seed, blocks, workers):
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 6)).astype(np.float32)
    queries = rng.standard_normal((q, 6)).astype(np.float32)
    idx, scores = exact_knn(base, queries, k, metric, query_block=blocks[0],
                            base_block=blocks[1], workers=workers)
    for row in range(q):
        if metric == "cosine":
            s = (base / np.linalg.norm(base, axis=1, keepdims=True)) @ (
                queries[row] / np.linalg.norm(queries[row]))
        elif metric == "ip":
            s = base @ queries[row]
        else:
            s = -np.linalg.norm(base - queries[row], axis=1)
        want = np.sort(s)[::-1][: min(k, n)]
        assert np.allclose(scores[row, : min(k, n)], want, atol=1e-4)
        assert np.all(idx[row, min(k, n):] == -1)


def test_filtered_ground_truth_respects_the_filter():
    docs = documents(500, seed=4)
    base = vectors.clustered(500, 16, seed=4)
    mask = filter_mask([d["payload"] for d in docs], {"lang": "de", "price": {"$lt": 50}})
    idx, _ = exact_knn(base, base[:20], 10, "cosine", mask=mask)
    allowed = set(np.flatnonzero(mask).tolist())
    assert all(i in allowed for row in idx for i in row if i >= 0)
    brute = [sorted(allowed, key=lambda j: -float(base[j] @ base[r]))[:10] for r in range(20)]
    assert [list(r[r >= 0]) for r in idx] == brute


def test_hdf5_round_trip_and_validation(tmp_path):
    train = vectors.clustered(300, 8, seed=1)
    test = vectors.queries(10, 8, seed=1)
    idx, scores = exact_knn(train, test, 5, "l2")
    p = tmp_path / "set.hdf5"
    io.write_hdf5(p, train, test, idx, scores, "l2")
    ds = io.read_hdf5(p)
    assert ds.metric == "l2" and ds.dimension == 8
    assert np.array_equal(ds.train, train) and np.array_equal(ds.neighbors, idx)
    assert np.allclose(ds.distances, -scores)

    import h5py

    with h5py.File(p, "a") as f:
        del f["neighbors"]
        f.create_dataset("neighbors", data=np.zeros((3, 5), np.int32))
    with pytest.raises(io.DatasetError, match="one row per test vector"):
        io.read_hdf5(p)
    (tmp_path / "junk.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(io.DatasetError, match="not a readable HDF5"):
        io.read_hdf5(tmp_path / "junk.hdf5")
    with h5py.File(tmp_path / "partial.hdf5", "w") as f:
        f.create_dataset("train", data=train)
    with pytest.raises(io.DatasetError, match="missing dataset"):
        io.read_hdf5(tmp_path / "partial.hdf5")


def test_npy_stream_and_jsonl(tmp_path):
    n, dim = 70000, 4
    io.write_npy_stream(tmp_path / "v.npy", vectors.iter_uniform(n, dim, seed=2), n, dim)
    assert np.array_equal(io.read_npy(tmp_path / "v.npy"), vectors.uniform(n, dim, seed=2))
    rows = documents(20, seed=1)
    io.write_jsonl(tmp_path / "d.jsonl", rows)
    assert list(io.iter_jsonl(tmp_path / "d.jsonl")) == rows
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"b": \n')
    with pytest.raises(io.DatasetError, match="bad.jsonl:2"):
        list(io.iter_jsonl(tmp_path / "bad.jsonl"))


def _akidb(*args, env=None):
    return subprocess.run([sys.executable, "-m", "akidb", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def test_datagen_cli(tmp_path):
    # Several chunks, and a progress bar that redraws on every update (its update()
    # then returns True, which once replaced the chunk written).
    env = {**os.environ, "TQDM_MININTERVAL": "0"}
    r = _akidb("datagen", "vectors", "--n", "150000", "--dim", "16", "--seed", "3",
               "--out", str(tmp_path / "b.npy"), env=env)
    assert r.returncode == 0 and "wrote 150000 x 16 clustered vectors" in r.stdout, r.stderr
    assert np.array_equal(np.load(tmp_path / "b.npy"), vectors.clustered(150000, 16, seed=3))
    r = _akidb("datagen", "vectors", "--n", "50", "--dim", "16", "--seed", "3", "--queries",
               "--out", str(tmp_path / "q.npy"))
    assert r.returncode == 0
    r = _akidb("datagen", "groundtruth", "--base", str(tmp_path / "b.npy"), "--queries",
               str(tmp_path / "q.npy"), "--k", "10", "--out", str(tmp_path / "gt.hdf5"))
    assert r.returncode == 0, r.stderr
    ds = io.read_hdf5(tmp_path / "gt.hdf5")
    assert ds.neighbors.shape == (50, 10) and ds.metric == "cosine"
    for cmd in (["docs", "--n", "30"], ["tenants", "--n", "5", "--total-documents", "100"],
                ["workload", "--n", "40", "--query-vectors", "10"]):
        r = _akidb("datagen", *cmd, "--out", str(tmp_path / f"{cmd[0]}.jsonl"))
        assert r.returncode == 0 and "wrote" in r.stdout, r.stderr
    bad = _akidb("datagen", "vectors", "--n", "0", "--dim", "4", "--out", str(tmp_path / "x.npy"))
    assert bad.returncode == 2 and "--n" in bad.stderr
    bad = _akidb("datagen", "workload", "--n", "5", "--query-vectors", "3", "--mix", "0.5,0.1,0.1",
                 "--out", str(tmp_path / "w.jsonl"))
    assert bad.returncode == 2 and "sum to 1" in bad.stderr


def test_pinned_output_hashes():
    """Same seed → same bytes on any machine: a change here means datasets drifted."""
    assert hashlib.sha256(vectors.clustered(1000, 16, seed=42).tobytes()).hexdigest() == \
        "338d8b60b063305c8905a2e477f9dd84dea7c387fe30c1a6c772f0f9d74598a4"
    assert hashlib.sha256(vectors.uniform(1000, 16, seed=42).tobytes()).hexdigest() == \
        "4b0ba68c9188fa068bb4a57a3bc0e0509107b387f5c1c4b5106469beaac49830"


@pytest.mark.parametrize("mix, message", [
    ("0.6,0.3", "takes 3 shares"), ("0.6,x,0.1", "must be numbers"),
    ("-1,1,1", "in [0, 1] and sum to 1"), ("0.5,0.3,0.1", "(sum 0.9)")])
def test_workload_mix_errors_are_explained(tmp_path, mix, message):
    out = tmp_path / "w.jsonl"
    r = _akidb("datagen", "workload", "--n", "10", "--query-vectors", "5", "--mix", mix,
               "--out", str(out))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


def test_progress_on_a_pipe_is_plain_lines_and_can_be_turned_off(tmp_path):
    r = _akidb("datagen", "vectors", "--n", "150000", "--dim", "8", "--out",
               str(tmp_path / "v.npy"))
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr  # no redraw frames in a CI log
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("vectors: ")]
    shares = [int(ln.split()[1].rstrip("%")) for ln in lines]
    assert shares == sorted(shares) and shares[-1] == 100 and len(shares) >= 3, lines
    assert "(150000/150000 vec" in lines[-1]
    for cmd in (["vectors", "--n", "150000", "--dim", "8", "--out", str(tmp_path / "w.npy")],
                ["docs", "--n", "50", "--out", str(tmp_path / "d.jsonl")]):
        quiet = _akidb("datagen", *cmd, "--no-progress")
        assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_progress_on_a_terminal_is_a_bar():
    import io as stdio

    from akidb.progress import LineProgress, progress

    class Terminal(stdio.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    bar = progress(10, "work", "item", stream=term)
    assert not isinstance(bar, LineProgress)
    bar.update(10)
    bar.close()
    assert "work" in term.getvalue() and "\r" in term.getvalue()
    piped = stdio.StringIO()
    line = progress(10, "work", "item", stream=piped, initial=5)
    for _ in range(5):
        line.update(1)
    line.close()
    assert [ln.split()[1] for ln in piped.getvalue().splitlines()] == [
        "60%", "70%", "80%", "90%", "100%"]
