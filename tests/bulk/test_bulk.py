"""Bulk import/export: round trips per format, kill + --resume, bad rows with their position."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from akidb.datagen import vectors
from akidb.datagen.io import write_hdf5

DIM = 8
N = 300


def _data(n: int = N, dim: int = DIM, seed: int = 0):
    vecs = vectors.clustered(n, dim, seed=seed)
    payloads = [{"cat": f"c{i % 7}", "price": round(i * 0.5, 2), "tags": ["a", "b"][: i % 3],
                 "ok": i % 2 == 0} for i in range(n)]
    return [f"doc-{i:04d}" for i in range(n)], vecs, payloads


def _write(fmt: str, path, ids, vecs, payloads) -> None:
    if fmt == "jsonl":
        with open(path, "wb") as fh:
            for i, v, p in zip(ids, vecs, payloads, strict=True):
                fh.write(orjson.dumps({"id": i, "vector": v, "payload": p, "text": f"text {i}"},
                                      option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    elif fmt == "csv":
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "vector", "text", "payload"])
            for i, v, p in zip(ids, vecs, payloads, strict=True):
                w.writerow([i, json.dumps(v.tolist()), f"text {i}", json.dumps(p)])
    elif fmt == "parquet":
        table = pa.table({
            "id": ids,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()),
                                                        vecs.shape[1]),
            "text": [f"text {i}" for i in ids],
            "cat": [p["cat"] for p in payloads], "price": [p["price"] for p in payloads]})
        pq.write_table(table, path, row_group_size=100)
    elif fmt == "npy":
        np.save(path, vecs)
    elif fmt == "hdf5":
        write_hdf5(path, vecs, vecs[:5], np.zeros((5, 3), np.int32),
                   np.zeros((5, 3), np.float32), "cosine")


def _akidb(node, *args: str, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess[str]:
    # Run in a scratch directory: an import without --checkpoint keeps its checkpoint
    # under ./.akidb-import, which must not land in the repository.
    return subprocess.run([sys.executable, "-m", "akidb", *args, "--url", node.rest_url,
                           "--api-key", node.admin_key, "--no-progress"],
                          capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or tempfile.gettempdir())


@pytest.fixture
def node(akidb_cluster):
    return akidb_cluster.nodes[0]


def _export_jsonl(node, coll, path) -> dict[str, dict]:
    out = _akidb(node, "export", "--collection", coll, "--format", "jsonl", "--out", str(path))
    assert out.returncode == 0, out.stderr
    return {d["id"]: d for d in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "npy", "hdf5"])
def test_round_trip(fmt, node, tenant, tmp_path):
    ids, vecs, payloads = _data()
    src = tmp_path / f"in.{fmt}"
    _write(fmt, src, ids, vecs, payloads)
    coll = f"{tenant}/db/{fmt}"
    args = ["import", str(src), "--collection", coll, "--create", "--batch", "64",
            "--checkpoint", str(tmp_path / "ckpt.json")]
    if fmt in ("jsonl", "csv", "parquet"):
        args += ["--dimension", str(DIM)]
    if fmt == "parquet":
        args += ["--payload-fields", "cat,price"]
    out = _akidb(node, *args)
    assert out.returncode == 0, out.stderr
    assert f"imported {N} rows" in out.stdout
    if fmt in ("npy", "hdf5"):  # ids are row numbers
        ids = [str(i) for i in range(N)]
        payloads = [{}] * N
    elif fmt == "parquet":
        payloads = [{"cat": p["cat"], "price": p["price"]} for p in payloads]
    got = _export_jsonl(node, coll, tmp_path / "out.jsonl")
    assert sorted(got) == sorted(ids)
    for i, v, p in zip(ids, vecs, payloads, strict=True):
        assert np.array_equal(np.asarray(got[i]["vector"], np.float32), v), i  # float32-exact
        assert got[i]["payload"] == p
    if fmt == "hdf5":
        kept = tmp_path / "in.queries.hdf5"
        assert "query set kept" in out.stdout and kept.exists()
        with h5py.File(kept) as f:
            assert f["test"].shape == (5, DIM) and f.attrs["distance"] == "angular"


def test_export_parquet_and_npy_round_trip(node, tenant, tmp_path):
    ids, vecs, payloads = _data()
    src = tmp_path / "in.jsonl"
    _write("jsonl", src, ids, vecs, payloads)
    coll = f"{tenant}/db/c"
    assert _akidb(node, "import", str(src), "--collection", coll, "--create", "--dimension",
                  str(DIM)).returncode == 0
    pq_out = tmp_path / "out.parquet"
    out = _akidb(node, "export", "--collection", coll, "--format", "parquet", "--out",
                 str(pq_out), "--page", "50")
    assert out.returncode == 0, out.stderr
    table = pq.read_table(pq_out)
    assert table.num_rows == N and table.column("id").to_pylist() == sorted(ids)
    order = [ids.index(i) for i in table.column("id").to_pylist()]
    got = table.column("vector").combine_chunks().flatten().to_numpy().reshape(N, DIM)
    assert np.array_equal(got, vecs[order])
    assert [json.loads(p) for p in table.column("payload").to_pylist()] == \
        [payloads[i] for i in order]
    assert table.column("text").to_pylist() == [f"text {ids[i]}" for i in order]
    # ... and the Parquet export imports back into a fresh collection unchanged.
    back = f"{tenant}/db/back"
    out = _akidb(node, "import", str(pq_out), "--collection", back, "--create", "--dimension",
                 str(DIM), "--checkpoint", str(tmp_path / "c2.json"))
    assert out.returncode == 0, out.stderr
    again = _export_jsonl(node, back, tmp_path / "again.jsonl")
    first = _export_jsonl(node, coll, tmp_path / "first.jsonl")
    assert again == first

    npy_out = tmp_path / "out.npy"
    # .npy cannot hold the payloads and texts: refused, nothing written, unless asked
    refused = _akidb(node, "export", "--collection", coll, "--format", "npy", "--out",
                     str(npy_out))
    assert refused.returncode == 1 and "--vectors-only" in refused.stderr, refused.stderr
    assert not npy_out.exists() and not list(tmp_path.glob("out.npy*"))
    out = _akidb(node, "export", "--collection", coll, "--format", "npy", "--out", str(npy_out),
                 "--vectors-only")
    assert out.returncode == 0, out.stderr
    exported_ids = (tmp_path / "out.npy.ids.txt").read_text().splitlines()
    assert exported_ids == sorted(ids)
    assert np.array_equal(np.load(npy_out), vecs[[ids.index(i) for i in exported_ids]])
    # ... and imports back under the same ids (not renumbered 0..n-1)
    vec_back = f"{tenant}/db/vecback"
    out = _akidb(node, "import", str(npy_out), "--collection", vec_back, "--create",
                 "--checkpoint", str(tmp_path / "c3.json"))
    assert out.returncode == 0, out.stderr
    got = _export_jsonl(node, vec_back, tmp_path / "vecback.jsonl")
    assert sorted(got) == sorted(ids)
    for i, v in zip(ids, vecs, strict=True):
        assert np.array_equal(np.asarray(got[i]["vector"], np.float32), v), i
    (tmp_path / "out.npy.ids.txt").write_text("only-one\n")
    bad = _akidb(node, "import", str(npy_out), "--collection", f"{tenant}/db/vecbad",
                 "--create", "--checkpoint", str(tmp_path / "c4.json"))
    assert bad.returncode == 2 and f"1 ids for the {N} rows" in bad.stderr, bad.stderr


def test_killed_import_resumes_without_duplicates_or_gaps(node, tenant, tmp_path):
    n, dim = 40_000, 16
    src = tmp_path / "big.npy"
    data = vectors.clustered(n, dim, seed=3)
    np.save(src, data)
    coll = f"{tenant}/db/big"
    ckpt = tmp_path / "big.ckpt.json"
    cmd = [sys.executable, "-m", "akidb", "import", str(src), "--collection", coll, "--create",
           "--batch", "500", "--checkpoint", str(ckpt), "--url", node.rest_url, "--api-key",
           node.admin_key, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if ckpt.exists() and json.loads(ckpt.read_text())["rows_done"] >= 5000:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = json.loads(ckpt.read_text())["rows_done"]
    assert 0 < done < n, "the import should have been interrupted mid-way"
    # Mark rows the checkpoint says are done: a resume that sent them again would
    # overwrite the marks.
    client = node.admin_client()
    marked = [str(i) for i in range(0, done, max(1, done // 50))]
    marks = np.full((len(marked), dim), 7.0, np.float32)
    client.upsert_arrays(coll, marked, marks)
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after {done} rows" in resumed.stdout
    assert f"imported {n - done} rows" in resumed.stdout
    assert client.get_collection(coll)["count"] == n
    for doc_id in marked:
        assert client.get(coll, doc_id)["vector"] == [7.0] * dim, "a done row was sent again"
    for i in range(done, n, 997):
        assert np.array_equal(np.asarray(client.get(coll, str(i))["vector"], np.float32),
                              data[i]), i
    client.close()
    # A resume against a file that changed since is refused.
    np.save(src, vectors.clustered(n + 1, dim, seed=3))
    changed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert changed.returncode == 2 and "differs" in changed.stderr


BAD = {
    # format -> (how to break the data, expected position, expected reason)
    "jsonl": ("dim", "line 4", "vector has 3 values, the collection expects 8"),
    "csv": ("nan", "line 5", "unparsable vector"),  # NaN is not JSON
    "parquet": ("noid", "row 2", "missing id"),
    "npy": ("nan", "row 6", "NaN or infinity"),
    "hdf5": ("inf", "row 3", "NaN or infinity"),
}


def _broken(fmt: str, path) -> None:
    ids, vecs, payloads = _data(10)
    kind = BAD[fmt][0]
    if fmt == "jsonl":
        rows = [{"id": i, "vector": v.tolist(), "payload": p} for i, v, p in
                zip(ids, vecs, payloads, strict=True)]
        rows[3]["vector"] = [1.0, 2.0, 3.0]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    if kind == "nan":
        vecs[{"csv": 3, "npy": 6}[fmt], 2] = np.nan
    if kind == "inf":
        vecs[3, 0] = np.inf
    if kind == "noid":
        ids[2] = None
    _write(fmt, path, ids, vecs, payloads)


@pytest.mark.parametrize("fmt", list(BAD))
def test_bad_row_stops_the_import_and_names_it(fmt, node, tenant, tmp_path):
    src = tmp_path / f"bad.{fmt}"
    _broken(fmt, src)
    coll = f"{tenant}/db/bad{fmt}"
    _, where, reason = BAD[fmt]
    out = _akidb(node, "import", str(src), "--collection", coll, "--create", "--dimension",
                 str(DIM), "--batch", "2", "--checkpoint", str(tmp_path / "c.json"))
    assert out.returncode == 2
    assert f"{src}: {where}: " in out.stderr and reason in out.stderr
    client = node.admin_client()
    before = int(where.split()[1]) - (2 if where.startswith("line 5") else
                                      1 if where.startswith("line") else 0)
    assert client.get_collection(coll)["count"] == before  # rows before it; none after
    skipped = _akidb(node, "import", str(src), "--collection", coll, "--skip-bad",
                     "--checkpoint", str(tmp_path / "c2.json"), "--reject-file",
                     str(tmp_path / "rejects.jsonl"))
    assert skipped.returncode == 0, skipped.stderr
    assert "imported 9 rows" in skipped.stdout and "rejected 1" in skipped.stdout
    rejects = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert [(r["where"], reason in r["reason"]) for r in rejects] == [(where, True)]
    assert client.get_collection(coll)["count"] == 9
    client.close()


def test_unusable_files_and_arguments_exit_2(node, tenant, tmp_path):
    garbage = tmp_path / "x.parquet"
    garbage.write_bytes(b"not parquet at all")
    out = _akidb(node, "import", str(garbage), "--collection", f"{tenant}/db/x", "--create",
                 "--dimension", "4")
    assert out.returncode == 2 and "not a readable Parquet file" in out.stderr
    client = node.admin_client()
    assert client.list_collections(tenant, "db") == []  # nothing was created
    client.close()
    out = _akidb(node, "import", str(tmp_path / "missing.npy"), "--collection",
                 f"{tenant}/db/x")
    assert out.returncode == 2 and "no such file" in out.stderr
    weird = tmp_path / "data.xyz"
    weird.write_text("{}")
    out = _akidb(node, "import", str(weird), "--collection", f"{tenant}/db/x")
    assert out.returncode == 2 and "--format" in out.stderr
    np.save(tmp_path / "v.npy", np.ones((3, 4), np.float32))
    out = _akidb(node, "import", str(tmp_path / "v.npy"), "--collection", f"{tenant}/db/nope")
    assert out.returncode == 2 and "--create" in out.stderr
    out = _akidb(node, "import", str(tmp_path / "v.npy"), "--collection", "not-a-path")
    assert out.returncode == 2 and "TENANT/DB/COLLECTION" in out.stderr
    out = subprocess.run([sys.executable, "-m", "akidb", "export", "--collection",
                          f"{tenant}/db/x", "--out", str(tmp_path / "o.jsonl")],
                         capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("AKIDB_")})
    assert out.returncode == 2 and "--url" in out.stderr


def test_text_only_rows_are_embedded_over_grpc(node, tenant, tmp_path):
    src = tmp_path / "texts.jsonl"
    src.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n" for i, t in
                           enumerate(["a cat on a sofa", "stock prices fell", "rain in Spain"])))
    coll = f"{tenant}/db/emb"
    out = _akidb(node, "import", str(src), "--collection", coll, "--create", "--embedding",
                 "minilm", "--transport", "grpc", "--grpc-target", node.grpc_target,
                 "--checkpoint", str(tmp_path / "c.json"))
    assert out.returncode == 0, out.stderr
    client = node.admin_client()
    assert client.get_collection(coll)["count"] == 3
    assert client.search(coll, text="kitten on a couch", k=1).ids == ["t0"]
    client.close()


def test_document_pages_cover_the_collection_once(client, tenant):
    from akidb.server.errors import BadRequest, Unprocessable

    coll = f"{tenant}/db/pages"
    client.create_collection(coll, dimension=2)
    ids = [f"id-{i:03d}" for i in range(25)]
    client.upsert_arrays(coll, ids, np.ones((25, 2), np.float32))
    seen = [d["id"] for page in client.iter_documents(coll, page=7, include=()) for d in page]
    assert seen == sorted(ids)
    with pytest.raises(Unprocessable, match="limit must be"):
        client.list_documents(coll, limit=0)
    with pytest.raises(BadRequest, match="include may name"):
        client.list_documents(coll, include=("vectors",))
