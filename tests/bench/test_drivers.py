"""Every driver that runs here passes one contract; every dataset format loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from akidb.bench import datasets, drivers
from akidb.bench.drivers import Filter, IndexParams
from akidb.bench.scenarios import closed_loop
from akidb.datagen import vectors
from akidb.datagen.groundtruth import exact_knn
from akidb.datagen.io import DatasetError, write_hdf5

AKIDB = str(Path(sys.executable).parent / "akidb")
N, DIM, Q, K = 300, 16, 20, 5


@pytest.fixture(scope="module")
def tiny():
    base = vectors.clustered(N, DIM, seed=4)
    queries = vectors.queries(Q, DIM, seed=5)
    cats = np.arange(N) % 3
    return base, queries, cats


PEER_PYTHON = os.environ.get("AKIDB_PEER_PYTHON")  # a venv with the peers installed
PG_URL = os.environ.get("AKIDB_PGVECTOR_URL")  # a PostgreSQL with the vector extension


def _importable(python: str | None, module: str) -> bool:
    return bool(python) and subprocess.run([python, "-c", f"import {module}"],
                                           capture_output=True).returncode == 0


@pytest.fixture(params=[("hnswlib", {}), ("akidb", {"transport": "rest"}),
                        ("akidb", {"transport": "grpc"}),
                        ("hnswlib", {"python": sys.executable}),
                        ("chroma", {"mode": "embedded", "python": PEER_PYTHON}),
                        ("chroma", {"mode": "server", "python": PEER_PYTHON}),
                        ("lancedb", {"python": PEER_PYTHON}),
                        ("qdrant", {"python": PEER_PYTHON}),
                        ("milvus", {"python": PEER_PYTHON}),
                        ("qdrant-edge", {"python": PEER_PYTHON}),
                        ("pgvector", {"url": PG_URL})],
                ids=["hnswlib", "akidb-rest", "akidb-grpc", "hnswlib-in-a-worker",
                     "chroma-embedded", "chroma-server", "lancedb", "qdrant-local",
                     "milvus-lite", "qdrant-edge", "pgvector"])
def driver(request):
    name, options = request.param
    if name == "pgvector":
        if not PG_URL:
            pytest.skip("set AKIDB_PGVECTOR_URL to a PostgreSQL with the vector extension")
        here = _importable(sys.executable, "psycopg")
        if not here and not _importable(PEER_PYTHON, "psycopg"):
            pytest.skip("psycopg is not installed here or in AKIDB_PEER_PYTHON")
        options = {**options, "python": None if here else PEER_PYTHON}
    module = {"chroma": "chromadb", "lancedb": "lancedb", "qdrant": "qdrant_client",
              "milvus": "milvus_lite", "qdrant-edge": "qdrant_edge"}.get(name)
    if module and not _importable(options["python"], module):
        pytest.skip(f"{module} is not installed: set AKIDB_PEER_PYTHON to the python of a "
                    "venv that has the peers (pip install chromadb lancedb qdrant-client "
                    "pymilvus milvus-lite qdrant-edge-py)")
    d = drivers.open_driver(name, **options)
    yield d
    d.close()


def test_driver_contract(driver, tiny):
    base, queries, cats = tiny
    driver.create(DIM, IndexParams("cosine", m=16, ef_construction=200, ef_search=64))
    ids = [f"d{i}" for i in range(N)]
    for s in range(0, N, 128):
        driver.insert(ids[s:s + 128], base[s:s + 128], {"cat": cats[s:s + 128],
                                                        "row": np.arange(s, min(N, s + 128))})
    driver.wait_indexed(N)
    assert driver.count() == N
    truth, _ = exact_knn(base, queries, K, "cosine")
    got = [driver.search(q, K) for q in queries]
    exact = sum(g == [ids[i] for i in t] for g, t in zip(got, truth, strict=True))
    assert exact >= Q - 1, f"only {exact}/{Q} queries gave the exact top-{K}"
    assert driver.search_batch(queries[:4], K) == got[:4]
    for flt, mask in ((Filter("cat", "eq", 1), cats == 1),
                      (Filter("row", "gte", 150), np.arange(N) >= 150),
                      (Filter("row", "lt", 30), np.arange(N) < 30)):
        ftruth, _ = exact_knn(base, queries, K, "cosine", mask=mask)
        for q, t in zip(queries[:5], ftruth[:5], strict=True):
            found = driver.search(q, K, flt=flt)
            assert all(mask[int(i[1:])] for i in found), (flt, found)
            assert set(found) == {ids[i] for i in t}
    mem = driver.memory_bytes()
    # a process's resident memory, or (pgvector) the table and its index on disk
    assert mem is None or mem > (100_000 if driver.name == "pgvector" else 1_000_000)
    # concurrent clients: processes attached to a server, threads beside an embedded one
    loop = closed_loop(driver, queries, K, None, 2, 0.5)
    server = driver.attach_options() is not None
    assert loop["client_kind"] == ("processes" if server else "threads")
    assert loop["clients"] == 2 and loop["errors"] == 0, loop["error_sample"]
    assert loop["requests"] > 2 and loop["p50_ms"] <= loop["p99_ms"]
    driver.drop()


def test_unknown_driver_is_a_driver_error():
    with pytest.raises(drivers.DriverError, match="unknown driver 'nope'"):
        drivers.open_driver("nope")
    assert {d["name"] for d in drivers.describe()} >= {"akidb", "hnswlib"}


def _vdbb(folder: Path, base, queries, neighbors: bool = True, bad_neighbor: bool = False):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    ids = list(range(1000, 1000 + len(base)))
    pq.write_table(pa.table({"id": ids, "emb": [list(map(float, v)) for v in base],
                             "label": [i % 7 for i in range(len(base))]}),
                   folder / "train.parquet")
    pq.write_table(pa.table({"id": list(range(len(queries))),
                             "emb": [list(map(float, v)) for v in queries]}),
                   folder / "test.parquet")
    if neighbors:
        truth, _ = exact_knn(base, queries, 10, "cosine")
        lists = [[ids[i] for i in row] for row in truth]
        if bad_neighbor:
            lists[0][0] = 99_999_999
        pq.write_table(pa.table({"id": list(range(len(queries))), "neighbors_id": lists}),
                       folder / "neighbors.parquet")


def test_every_dataset_format_loads_with_shapes_and_truth(tmp_path, tiny):
    base, queries, _ = tiny
    truth, _ = exact_knn(base, queries, 10, "cosine")
    fixture = datasets.load("clustered-5k-64-cosine")
    assert fixture.train.shape == (5000, 64) and fixture.test.shape[0] == 200
    assert fixture.metric == "cosine" and fixture.neighbors.shape[0] == 200
    idx, _ = exact_knn(fixture.train, fixture.test[:5], 10, "cosine")
    assert (idx == fixture.neighbors[:5, :10]).mean() > 0.99
    h5 = tmp_path / "mine.hdf5"
    write_hdf5(h5, base, queries, truth, np.zeros_like(truth, dtype=np.float32), "cosine")
    ann = datasets.load(str(h5))
    assert ann.train.shape == (N, DIM) and (ann.neighbors == truth).all()
    _vdbb(tmp_path / "vdbb", base, queries)
    v = datasets.load(str(tmp_path / "vdbb"))
    assert v.train.shape == (N, DIM) and v.ids[0] == "1000"
    assert (v.neighbors == truth).all() and set(v.labels) == {"label"}
    _vdbb(tmp_path / "vdbb-no-truth", base, queries, neighbors=False)
    computed = datasets.load(str(tmp_path / "vdbb-no-truth"))
    assert (computed.neighbors[:, :10] == truth).all()
    npy = tmp_path / "vecs.npy"
    np.save(npy, base)
    (tmp_path / "vecs.npy.ids.txt").write_text("\n".join(f"x{i}" for i in range(N)) + "\n")
    plain = datasets.load(str(npy))
    assert plain.train.shape == (N - 30, DIM) and plain.test.shape == (30, DIM)
    assert plain.ids[-1] == f"x{N - 31}"
    want, _ = exact_knn(base[:-30], base[-30:], 10, "cosine")
    assert (plain.neighbors[:, :10] == want).all()


def test_bad_dataset_files_exit_2_naming_file_and_problem(tmp_path, tiny):
    base, queries, _ = tiny
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not hdf5 at all")
    nan = tmp_path / "nan.npy"
    bad = base.copy()
    bad[3, 2] = np.nan
    np.save(nan, bad)
    _vdbb(tmp_path / "badnb", base, queries, bad_neighbor=True)
    (tmp_path / "nocols").mkdir()
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"vec": [1.0]}), tmp_path / "nocols" / "train.parquet")
    cases = [(garbage, "not a readable HDF5 file"), (nan, "NaN"),
             (tmp_path / "badnb", "99999999"),
             (tmp_path / "nocols", "missing column(s) ['id', 'emb']"),
             (tmp_path / "x.csv", "no such file")]
    for path, message in cases:
        with pytest.raises(DatasetError, match="."):
            datasets.load(str(path))
        proc = subprocess.run([AKIDB, "bench", "run", "serial", "--driver", "hnswlib",
                               "--dataset", str(path)], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and str(path.name) in proc.stderr, proc.stderr


def test_bench_run_side_by_side_on_a_fixture(tmp_path):
    proc = subprocess.run([AKIDB, "bench", "run", "serial", "--driver", "akidb",
                           "--driver", "hnswlib", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = [c.strip() for c in next(x for x in lines if x.startswith("| driver")).split("|")]
    rows = [line for line in lines if line.startswith("| akidb")
            or line.startswith("| hnswlib")]
    assert len(rows) == 2
    for row in rows:
        cells = row.split("|")
        assert float(cells[header.index("recall")]) > 0.95
        assert float(cells[header.index("to searchable s")]) >= float(
            cells[header.index("insert s")]) > 0
    assert (tmp_path / "run-serial.html").exists() and (tmp_path / "run-serial.png").exists()


def test_bench_run_keeps_the_slowest_requests_traces(tmp_path):
    proc = subprocess.run([AKIDB, "bench", "run", "serial", "--driver", "akidb", "--traces",
                           "3", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "run-serial.json").read_text())
    (slow,) = record["slowest_traces"].values()
    assert len(slow) == 3
    assert [t["ms"] for t in slow] == sorted((t["ms"] for t in slow), reverse=True)
    assert all(len(t["trace_id"]) == 32 for t in slow)
    searches = [t for t in slow if t["name"].endswith("/search")]
    for t in searches:  # a search's time is broken down into its steps
        names = [s["name"] for s in t["steps"]]
        assert "authorize" in names and "index.search" in names
        assert sum(s["ms"] for s in t["steps"]) <= t["ms"] * 1.01 + 0.01
    assert "## Slowest requests (server traces)" in proc.stdout
    bad = subprocess.run([AKIDB, "bench", "run", "serial", "--traces", "2", "--target",
                          "http://127.0.0.1:9", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--traces reads the spans of a server the run starts" in \
        bad.stderr


@pytest.mark.parametrize("argv, message", [
    (["qps", "--concurrency", "0"], "--concurrency: expected counts of at least 1"),
    (["qps", "--concurrency", "1,2000"], "--concurrency: each value must be at most 1024"),
    (["sweep", "--ef-sweep", "5,x"], "--ef-sweep: expected numbers like 1,2,4"),
    (["serial", "--driver", "pgvector"], "--driver pgvector needs --pgvector-url"),
    (["nope"], "unknown scenario 'nope'"),
])
def test_bench_run_bad_options_exit_2_naming_them(argv, message):
    env = {k: v for k, v in os.environ.items() if k != "AKIDB_PGVECTOR_URL"}
    proc = subprocess.run([AKIDB, "bench", "run", *argv], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_a_benchmarks_bad_common_option_exits_2_naming_it(capsys):
    from akidb.bench import filtered_search

    with pytest.raises(SystemExit) as exc:
        filtered_search.main(["--vectors", "0"])
    assert exc.value.code == 2
    assert "argument --vectors: must be at least 1, got 0" in capsys.readouterr().err
