"""fixtures: manifest, checksums, loaders, cache building, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from akidb.datagen.groundtruth import exact_knn, recall_at_k
from akidb.server.storage.wal import WalCorruption, WriteAheadLog

from akidb import fixtures


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AKIDB_FIXTURES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_committed_fixture_matches_its_manifest_entry():
    committed = [e for e in fixtures.manifest() if e["storage"] == "repo"]
    assert sum(e["bytes"] for e in committed) <= 20 * 2**20
    for e in committed:
        assert fixtures.verify(e["name"]).name == e["file"]
        assert e["license"] and e["provenance"] and e["description"]


@pytest.mark.parametrize("name, metric", [("clustered-5k-64-cosine", "cosine"),
                                          ("clustered-5k-64-l2", "l2")])
def test_ann_fixtures_carry_exact_ground_truth(name, metric):
    ds = fixtures.load(name)
    assert ds.metric == metric and ds.train.shape == (5000, 64) and ds.neighbors.shape[1] == 100
    idx, _ = exact_knn(ds.train, ds.test[:20], 10, metric)
    assert recall_at_k(idx, ds.neighbors[:20], 10) == 1.0


def test_documents_fixture():
    docs = fixtures.load("docs-2k")
    assert len(docs) == 2000 and all(d["text"] and d["payload"] for d in docs)


def test_documents_fixture_embeddings_match_the_encoder():
    docs = fixtures.load("docs-2k")
    emb = fixtures.load("docs-2k-minilm")
    assert emb.shape == (2000, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    from akidb.server.embeddings.encoder import Encoder

    rows = [0, 1, 999, 1999]
    fresh = Encoder("numpy").embed([docs[i]["text"] for i in rows])
    assert np.allclose(fresh, emb[rows], atol=1e-5)


def test_cedar_policies_are_built_on_first_use_and_parse(cache):
    import cedarpy

    assert not fixtures.location("cedar-policies-10k").exists()
    text = fixtures.load("cedar-policies-10k")
    assert fixtures.location("cedar-policies-10k").exists()
    cedarpy.PolicySet.from_str(text)  # raises ValueError on any parse error
    assert len(json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]) == 10000
    assert len({line.split('"')[1].rsplit("-", 1)[0] for line in text.splitlines()
                if line.startswith("@id")}) >= 100


def test_wal_samples_behave_as_described(tmp_path):
    for name, records, error in [("wal-valid", 6, None), ("wal-torn-tail", 5, None),
                                 ("wal-corrupt-middle", None, WalCorruption)]:
        d = tmp_path / name
        d.mkdir()
        shutil.copy(fixtures.path(name), d / f"{1:020d}.wal")
        wal = WriteAheadLog(d)
        if error:
            with pytest.raises(error):
                wal.open()
            continue
        report = wal.open()
        assert report.records == records
        assert bool(report.truncations) == (name == "wal-torn-tail")
        wal.close()


def test_reference_embeddings_fixture():
    ref = fixtures.load("minilm-reference")
    assert ref["dim"] == 384 and len(ref["items"]) > 0
    vec = np.asarray(ref["items"][0]["embedding"])
    assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-3


def test_modified_file_fails_verification(cache):
    fixtures.path("cedar-policies-10k")
    target = fixtures.location("cedar-policies-10k")
    target.write_text(target.read_text().replace("permit", "forbid", 1))
    with pytest.raises(fixtures.FixtureError, match="does not match the manifest"):
        fixtures.load("cedar-policies-10k")
    with pytest.raises(fixtures.FixtureError, match="unknown fixture"):
        fixtures.load("nope")


def test_fixtures_cli(cache):
    run = lambda *a: subprocess.run([sys.executable, "-m", "akidb", "fixtures", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    listing = run("list")
    assert listing.returncode == 0 and "docs-2k" in listing.stdout
    p = run("path", "docs-2k")
    assert p.returncode == 0 and p.stdout.strip().endswith("docs-2k.jsonl")
    assert run("verify", "wal-valid", "cedar-policies-10k").returncode == 0
    target = fixtures.location("cedar-policies-10k")
    target.write_text("tampered")
    bad = run("verify", "cedar-policies-10k")
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout
    unknown = run("path", "nope")
    assert unknown.returncode == 2 and "unknown fixture" in unknown.stderr


def test_loader_reads_a_user_supplied_ann_file(tmp_path):
    src = fixtures.path("clustered-5k-64-l2")
    ds = fixtures.load_ann(shutil.copy(src, tmp_path / "mine.hdf5"))
    assert ds.metric == "l2" and ds.dimension == 64
