"""MiniLM embeddings: parity with sentence-transformers, determinism, the embed API,
text ingest and query, and outage protection of a separate embedding service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from akidb.harness import Cluster, Node
from akidb.server.client.grpc import GrpcDataPlane
from akidb.server.embeddings.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen
from akidb.server.embeddings.encoder import Encoder
from akidb.server.errors import (
    BadRequest,
    PayloadTooLarge,
    TransportError,
    Unavailable,
    Unprocessable,
)


def _reference_items() -> list[dict]:
    from akidb.fixtures import load

    return load("minilm-reference")["items"]


@pytest.fixture(scope="module")
def numpy_encoder() -> Encoder:
    return Encoder("numpy")


@pytest.mark.parametrize("backend,floor", [("numpy", 0.999), ("mlx", 0.999),
                                           ("mlx-q8", 0.999)])
def test_parity_with_sentence_transformers(backend, floor):
    """Every reference sentence (long, unicode, emoji, code) within cosine ``floor``."""
    items = _reference_items()
    encoder = Encoder(backend)
    got = encoder.embed([it["text"] for it in items])
    ref = np.asarray([it["embedding"] for it in items], dtype=np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    cosines = np.sum(got * ref, axis=1)
    worst = int(np.argmin(cosines))
    print(f"\n{backend} ({encoder.blas}): min cosine {cosines.min():.6f}, "
          f"mean {cosines.mean():.6f} over {len(items)} sentences")
    assert cosines.min() >= floor, f"{items[worst]['text'][:60]!r}: {cosines[worst]:.6f}"
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_same_text_same_vector_whatever_the_batch(numpy_encoder):
    """Padding and neighbours do not leak into a vector (masked attention and pooling)."""
    probe = "A small grey cat sleeps on the warm windowsill."
    long = " ".join(["The lighthouse keeper wrote long letters every winter."] * 20)
    alone = numpy_encoder.embed([probe])[0]
    contexts = [
        [probe, long],                                  # padded to the long text's length
        ["ok", probe, "hi", long, "another sentence here"],
        [f"filler sentence number {i}" for i in range(40)] + [probe],  # two batches of 32
    ]
    for texts in contexts:
        got = numpy_encoder.embed(texts)[texts.index(probe)]
        assert np.max(np.abs(got - alone)) < 1e-5, texts[:2]
    # repeatable (BLAS may split the sums differently when the machine is busy: no
    # bit-for-bit comparison of computed floats)
    assert np.max(np.abs(numpy_encoder.embed([probe])[0] - alone)) < 1e-6
    batch1 = Encoder("numpy", batch_size=1).embed([probe, long])
    assert np.max(np.abs(batch1[0] - alone)) < 1e-5


def test_truncates_at_256_tokens(numpy_encoder):
    base = "word " * 300
    a, b = numpy_encoder.embed([base, base + " completely different ending " * 20])
    # everything past token 256 is cut off: the same input, equal up to BLAS's order
    # of summation (a bit-for-bit comparison failed once under CPU contention)
    assert np.max(np.abs(a - b)) < 1e-6
    other = numpy_encoder.embed(["word " * 200 + "completely different ending " * 20])[0]
    assert np.max(np.abs(a - other)) > 1e-3  # a difference inside the window does show


def test_circuit_breaker_opens_probes_and_closes():
    now = [0.0]
    breaker = CircuitBreaker("svc", failure_threshold=3, reset_timeout_s=5.0,
                             clock=lambda: now[0])

    def down() -> None:
        raise TransportError("connection refused")

    def is_failure(exc: BaseException) -> bool:
        return isinstance(exc, TransportError | Unavailable)

    for _ in range(2):
        with pytest.raises(TransportError):
            breaker.call(down, is_failure)
    with pytest.raises(BadRequest):  # the caller's fault: does not count
        breaker.call(lambda: (_ for _ in ()).throw(BadRequest("bad")), is_failure)
    assert breaker.state == CLOSED
    with pytest.raises(TransportError):
        breaker.call(down, is_failure)
    assert breaker.state == OPEN
    calls = []
    with pytest.raises(CircuitOpen, match="circuit open after 3 consecutive failures"):
        breaker.call(lambda: calls.append(1), is_failure)
    assert calls == []  # open: not even tried
    now[0] = 5.0
    assert breaker.state == HALF_OPEN
    with pytest.raises(TransportError):  # the probe fails: open again for 5 s
        breaker.call(down, is_failure)
    assert breaker.state == OPEN
    now[0] = 10.0
    assert breaker.call(lambda: "up", is_failure) == "up"
    assert breaker.state == CLOSED


# -- through the server -------------------------------------------------------------------
@pytest.fixture
def grpc_client(akidb_cluster):
    c = akidb_cluster.admin_client(data_plane="grpc")
    yield c
    c.close()


def test_embed_api_over_rest_and_grpc(client, grpc_client, numpy_encoder):
    texts = ["Photosynthesis turns sunlight into sugar.", "Ångström café 🍕", "ok"]
    rest = client.embed(texts)
    over_grpc = grpc_client.embed(texts)
    assert rest.model == over_grpc.model == "all-MiniLM-L6-v2"
    assert rest.dim == over_grpc.dim == 384
    assert "numpy" in rest.backend  # the backend (and BLAS) travel with the result
    assert np.allclose(rest.vectors, over_grpc.vectors, atol=1e-6)
    assert np.allclose(rest.vectors, numpy_encoder.embed(texts), atol=1e-5)


@pytest.mark.parametrize("body,error,match", [
    ({"texts": []}, BadRequest, "must not be empty"),
    ({"texts": ["ok", 3]}, BadRequest, "texts.1"),
    ({"texts": ["x"] * 1025}, PayloadTooLarge, "limit is 1024"),
    ({"texts": ["x" * 70_000]}, PayloadTooLarge, "texts\\[0\\] is over"),
    ({"text": ["x"]}, BadRequest, "texts"),
])
def test_embed_rejects_bad_input(client, body, error, match):
    with pytest.raises(error, match=match):
        client.request("POST", "/v1/embed", body)


def test_text_ingest_and_semantic_search(client, grpc_client, tenant):
    coll = f"{tenant}/db/docs"
    info = client.create_collection(coll, embedding="minilm")
    assert (info["dimension"], info["embedding"]) == (384, "minilm")
    docs = [{"id": "cat", "text": "The cat sleeps on the warm sofa all afternoon"},
            {"id": "stocks", "text": "Stock markets fell sharply after the rate decision"},
            {"id": "dog", "text": "Dogs love to play fetch in the park"}]
    assert client.upsert(coll, docs) == 3
    # Over gRPC too, mixing a text-only document with one that brings its own vector.
    own = client.embed(["Volcanoes erupt molten lava"]).vectors[0]
    assert grpc_client.upsert(coll, [{"id": "lava", "vector": own},
                                     {"id": "rain", "text": "Heavy rain flooded the streets"}]) == 2
    stored = client.get(coll, "cat")
    assert np.allclose(stored["vector"], client.embed([docs[0]["text"]]).vectors[0], atol=1e-6)
    for c in (client, grpc_client):
        assert c.search(coll, text="a kitten napping on a couch", k=1).ids == ["cat"]
        assert c.search(coll, text="equity prices dropped", k=1).ids == ["stocks"]
        assert c.search(coll, text="eruption of a volcano", k=1).ids == ["lava"]
    hybrid = client.search(coll, text="dogs playing in a park", mode="hybrid", k=2)
    assert hybrid.ids[0] == "dog"
    assert client.search(coll, text="fetch", mode="text", k=5).ids == ["dog"]  # FTS5 only


def test_text_only_documents_need_an_embedding_collection(client, tenant):
    coll = f"{tenant}/db/plain"
    client.create_collection(coll, dimension=384)
    with pytest.raises(Unprocessable, match="has no embedding model"):
        client.upsert(coll, [{"id": "a", "text": "hello"}])
    emb = f"{tenant}/db/emb"
    client.create_collection(emb, embedding="minilm")
    with pytest.raises(Unprocessable, match="neither a vector nor a text"):
        client.upsert(emb, [{"id": "ok", "text": "fine"}, {"id": "b", "payload": {"x": 1}}])
    with pytest.raises(Unprocessable, match="dimension 8"):
        client.upsert(emb, [{"id": "v", "vector": [1.0] * 8}, {"id": "t", "text": "hi"}])
    with pytest.raises(Unprocessable, match="does not match"):
        client.create_collection(f"{tenant}/db/bad", dimension=128, embedding="minilm")
    assert client.get_collection(coll)["count"] == 0
    assert client.get_collection(emb)["count"] == 0


def test_embedder_off_answers_503_and_vectors_keep_working(tmp_path):
    node = Node(tmp_path / "n", extra_args=["--embedder", "off"]).start()
    try:
        c = node.admin_client(retries=0)
        with pytest.raises(Unavailable, match="--embedder off"):
            c.embed(["hi"])
        c.create_collection("t/db/c", embedding="minilm", create_parents=True)
        with pytest.raises(Unavailable):
            c.upsert("t/db/c", [{"id": "a", "text": "hello"}])
        v = np.ones(384, dtype=np.float32)
        assert c.upsert("t/db/c", [{"id": "b", "vector": v, "text": "vector given"}]) == 1
        assert c.search("t/db/c", v, k=1).ids == ["b"]
        assert c.search("t/db/c", text="vector", mode="text", k=1).ids == ["b"]
        assert c.get_collection("t/db/c")["count"] == 1
        c.close()
    finally:
        node.close()


def test_bad_embedder_flag_is_a_usage_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "akidb", "serve", "--data-dir",
                          str(tmp_path / "d"), "--port", "0", "--embedder", "http//nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--embedder must be inproc, off or grpc://HOST:PORT" in out.stderr


def test_embed_text_cli():
    out = subprocess.run([sys.executable, "-m", "akidb", "embed", "text", "--backend", "numpy",
                          "hello world", "ok"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["text"] for r in lines] == ["hello world", "ok"]
    assert all(r["dim"] == 384 and len(r["vector"]) == 8 for r in lines)
    assert "backend numpy" in out.stderr


def _wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def _breaker_state(client) -> float:
    for line in client.metrics().splitlines():
        if line.startswith("akidb_embedder_breaker_state "):
            return float(line.split()[1])
    raise AssertionError("no breaker gauge in /metrics")


def test_embedding_service_outage_opens_the_breaker_and_vector_search_stays_up():
    env = {"AKIDB_EMBED_BREAKER_RESET_S": "3.0", "AKIDB_EMBED_TIMEOUT_S": "2.0",
           "AKIDB_EMBED_BREAKER_FAILURES": "2"}
    with Cluster(nodes=1, embed_service=True, embed_backend="numpy", env=env) as cluster:
        service = cluster.embed_service
        direct = GrpcDataPlane(service.grpc_target, None)
        assert direct.embed(["hi"]).vectors.shape == (1, 384)
        direct.close()
        c = cluster.admin_client(retries=0)
        coll = "t/db/docs"
        c.create_collection(coll, embedding="minilm", create_parents=True)
        assert c.upsert(coll, [{"id": f"d{i}", "text": f"document number {i}"}
                               for i in range(20)]) == 20
        query = c.get(coll, "d3")["vector"]
        assert _breaker_state(c) == 0

        # Traffic during the outage: vector searches and text ingests side by side.
        results = {"search_ok": 0, "search_failed": 0, "ingest_ok": 0, "ingest_503": 0}
        acknowledged: list[str] = []
        stop = threading.Event()

        def traffic() -> None:
            tc = cluster.admin_client(retries=0)
            i = 0
            while not stop.is_set():
                try:
                    tc.search(coll, query, k=3)
                    results["search_ok"] += 1
                except Exception:  # noqa: BLE001 - counted, asserted below
                    results["search_failed"] += 1
                try:
                    tc.upsert(coll, [{"id": f"live{i}", "text": f"live text {i}"}])
                    acknowledged.append(f"live{i}")
                    results["ingest_ok"] += 1
                except Unavailable:
                    results["ingest_503"] += 1
                i += 1
            tc.close()

        worker = threading.Thread(target=traffic)
        worker.start()
        _wait_for(lambda: results["ingest_ok"] >= 3)  # traffic is flowing
        service.kill()
        # Ingests fail until the breaker has seen its failures and opened.
        _wait_for(lambda: _breaker_state(c) in (1.0, 2.0))
        with pytest.raises(Unavailable, match="unavailable"):
            c.embed(["during the outage"])
        # While open, the server does not even try the service ("circuit open", not a
        # timeout): the refusal itself shows the call was not attempted.
        _wait_for(lambda: _breaker_state(c) == 2.0)
        with pytest.raises(Unavailable, match="circuit open"):
            c.upsert(coll, [{"id": "x", "text": "fails fast"}])
        searches_during_outage = results["search_ok"]
        _wait_for(lambda: results["search_ok"] > searches_during_outage + 3)
        assert results["ingest_503"] > 0  # vector search still served, text ingest refused

        service.start()
        deadline = time.monotonic() + 15
        while True:  # the half-open probe closes the breaker once the service answers
            try:
                c.embed(["after the outage"])
                break
            except Unavailable:
                assert time.monotonic() < deadline, "breaker never closed"
                time.sleep(0.3)
        assert _breaker_state(c) == 0
        stop.set()
        worker.join(10)
        assert results["search_failed"] == 0
        assert results["ingest_503"] > 0 and results["ingest_ok"] > 0
        for doc_id in acknowledged:  # nothing acknowledged was lost
            assert c.get(coll, doc_id)["id"] == doc_id
        assert c.get_collection(coll)["count"] == 20 + len(acknowledged)
        c.close()
        pids = [service.pid, cluster.nodes[0].pid]
    from akidb.harness.process import process_start_time

    assert all(process_start_time(p) is None for p in pids)  # nothing left running


def _embed_with_blas(env_value: str) -> subprocess.CompletedProcess[str]:
    """`akidb embed text --backend mlx` with AKIDB_BLAS_LIB set, in a clean environment."""
    from akidb.server.embeddings import blas

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "AKIDB_BLAS_REEXEC")}
    env[blas.BLAS_LIB_ENV] = env_value
    return subprocess.run([sys.executable, "-m", "akidb", "embed", "text", "--backend", "mlx",
                           "hello"], capture_output=True, text=True, timeout=300, env=env)


def _system_blas() -> list[Path]:
    from akidb.server.embeddings import blas

    return [p for p in blas.candidates() if p.exists()] if sys.platform == "linux" else []


def test_mlx_keeps_the_wheels_blas_when_told():
    """AKIDB_BLAS_LIB=none: no re-exec, MLX on its bundled netlib, and it says so."""
    plain = _embed_with_blas("none")
    assert plain.returncode == 0, plain.stderr
    assert "BLAS netlib" in plain.stderr
    out = json.loads(plain.stdout)
    want = Encoder("numpy").embed(["hello"])[0][:8]
    assert out["dim"] == 384 and np.allclose(out["vector"], want, atol=2e-5)


@pytest.mark.skipif(not _system_blas(), reason="needs a system OpenBLAS/BLIS/MKL "
                    "(e.g. Debian libopenblas0-pthread), which pip cannot install")
def test_mlx_gets_an_optimized_blas_when_one_is_installed():
    """`--backend mlx` re-executes once with a system BLAS preloaded, says so, and
    embeds the same as on the wheel's own BLAS."""
    found = _system_blas()[0]
    plain, fast = _embed_with_blas("none"), _embed_with_blas(str(found))
    assert fast.returncode == 0, fast.stderr
    assert f"BLAS preloaded {found}" in fast.stderr
    assert np.allclose(json.loads(fast.stdout)["vector"], json.loads(plain.stdout)["vector"],
                       atol=2e-5)  # printed rounded to 5 decimals
