"""Short end-to-end runs of the load and recall benchmarks: they run, report, and their
results carry what the gate and the reports need (not performance assertions)."""

from __future__ import annotations

import json

from akidb.bench import load, recall_sweep


def test_load_scenario_open_loop_with_locust(tmp_path):
    assert load.main(["--vectors", "2000", "--dim", "16", "--qps", "40", "--users", "10",
                      "--duration", "3", "--warmup", "1", "--find-max", "20,40",
                      "--step-duration", "2", "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "load.json").read_text())
    res = rec["results"]
    assert res["requests"] > 0 and res["errors"] == 0
    assert {"vector", "filtered", "hybrid"} <= set(res)  # the 60/30/10 mix was sent
    for kind in ("all", "vector"):
        assert res[kind]["p50"] <= res[kind]["p95"] <= res[kind]["p99"] <= res[kind]["max"]
    m = rec["metrics"]["load_latency_ms"]
    assert m["direction"] == "lower" and len(m["samples"]) == res["requests"]
    assert rec["environment"]["python"] and rec["params"]["qps"] == 40
    assert (tmp_path / "latency.png").stat().st_size > 1000
    html = (tmp_path / "load.html").read_text()
    assert '<img src="latency.png"' in html and "<table>" in html
    # --find-max: the rates in order, stopping after the first that missed
    steps = res["find_max"]["steps"]
    assert [x["qps"] for x in steps] == [20, 40][:len(steps)]
    for x in steps:
        assert x["held"] == (x["p99"] < 50 and x["errors"] == 0)
        assert x["offered_qps"] > 0 and x["generator_cores"] > 0
    assert all(x["held"] for x in steps[:-1])
    held = [x["qps"] for x in steps if x["held"]]
    assert res["find_max"]["highest_held_qps"] == (max(held) if held else None)
    assert "Highest held" in (tmp_path / "load.md").read_text()


def test_recall_sweep_curve(tmp_path):
    assert recall_sweep.main(["--vectors", "2000", "--dim", "16", "--queries", "50",
                              "--ef", "10,80", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "recall_sweep.json").read_text())["results"]
    for name in ("raw hnswlib", "akidb server"):
        low, high = res[name]
        assert (low["ef"], high["ef"]) == (10, 80)
        assert 0 < low["recall"] <= high["recall"] <= 1.0  # more ef, no worse recall
        assert high["recall"] > 0.9
    assert (tmp_path / "recall_qps.png").stat().st_size > 1000


def test_peers_side_by_side(tmp_path):
    from akidb.bench import peers

    assert peers.main(["--vectors", "1500", "--dim", "16", "--queries", "40",
                       "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "peers.json").read_text())
    res = rec["results"]
    for name in ("hnswlib", "akidb-rest", "akidb-grpc"):
        assert res[name]["recall"] > 0.9 and 0 < res[name]["p50_ms"] <= res[name]["p99_ms"]
        assert res[name]["vectors"] == 1500 and res[name]["queries"] == 40
    assert "chroma-embedded" in res or any(n.startswith("chromadb: ") for n in rec["notes"])


def test_chaos_figures_scenario(tmp_path):
    import math

    from akidb.bench import chaos_faults

    assert chaos_faults.main(["--dim", "8", "--partition-s", "1.5", "--recovery-vectors",
                              "2000", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "chaos_faults.json").read_text())["results"]
    assert res["proxy"]["proxy_p50_ms"] > 0 and res["proxy"]["direct_mb_per_s"] > 0
    part = res["partition"]
    assert part["write_availability"] < 1.0  # the partition was felt
    assert part["read_availability_overall"] > part["read_availability"]
    assert math.isfinite(part["first_read_after_heal_s"])  # and service came back
    assert res["recovery"]["count_after"] == 2000


def test_metadata_query_scenario(tmp_path):
    from akidb.bench import metadata_query

    assert metadata_query.main(["--tenants", "2", "--databases", "2", "--collections", "3",
                                "--documents", "500", "--samples", "30",
                                "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "metadata_query.json").read_text())
    ops = {"get_tenant", "list_databases", "list_collections", "get_collection",
           "get_document", "list_payloads_100"}
    assert set(rec["results"]) == ops
    for op in ops:
        p = rec["results"][op]
        assert 0 < p["50"] <= p["95"] <= p["99"]
        assert len(rec["metrics"][f"metadata_{op}_ms"]["samples"]) == 30
    assert "target P99 < 5 ms" in (tmp_path / "metadata_query.md").read_text()


def test_metadata_query_against_an_external_target(tmp_path, akidb_cluster):
    """--target: the scenario runs on a server it did not start, and cleans up after."""
    from akidb.bench import metadata_query

    node = akidb_cluster.nodes[0]
    assert metadata_query.main(["--tenants", "1", "--databases", "1", "--collections", "2",
                                "--documents", "50", "--samples", "5", "--out", str(tmp_path),
                                "--target", node.rest_url, "--api-key", node.admin_key]) == 0
    with node.admin_client() as admin:
        assert not [t for t in admin.list_tenants() if t["name"].startswith("mq")]


def test_tenants_isolation_and_quota_scenario(tmp_path):
    from akidb.bench import tenants

    assert tenants.main(["--tenants", "3", "--documents", "600", "--duration", "5",
                         "--quiet-qps", "4", "--noisy-quota", "20", "--noisy-procs", "1",
                         "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "tenants.json").read_text())["results"]
    assert res["alone"]["n"] > 0 and res["with_noisy"]["errors"] == 0
    assert res["alone"]["leaks"] == res["with_noisy"]["leaks"] == 0
    assert res["flood"]["quota"] > 0  # the flood hit its rate quota ...
    assert res["noisy_quota_ratio"] < 1.5  # ... and the bucket held it near 20/s
    assert res["vector_quota_refused"] and res["count_before"] == res["count_after"]
    assert res["cross_tenant_refused"] == res["cross_tenant_tried"] == 3


def test_query_latency_scenario(tmp_path):
    from akidb.bench import query_latency

    assert query_latency.main(["--vectors", "1500", "--dim", "16", "--queries", "20",
                               "--concurrency", "1,2", "--seconds", "0.5",
                               "--freshness-trials", "5", "--write-batch", "50",
                               "--out", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "query_latency.json").read_text())
    res = rec["results"]
    for kind in ("top10", "top100", "filtered_10pct", "filtered_1pct", "hybrid", "text",
                 "freshness", "top10_quiet", "top10_during_writes"):
        p = res["latency"][kind]
        assert 0 < p["50"] <= p["95"] <= p["99"]
    assert set(res["qps_by_clients"]) == {"1", "2"}
    assert all(s["qps"] > 0 for s in res["qps_by_clients"].values())
    assert res["write_rate_per_s"] > 0
    assert len(rec["metrics"]["query_top100_ms"]["samples"]) == 20
    assert len(rec["metrics"]["freshness_ms"]["samples"]) == 5
