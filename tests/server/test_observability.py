"""The Grafana dashboard, the Prometheus alert rules and scrape config in
``observability/`` use only metric names a live server exposes (one that ships to an
object store and calls a remote embedder, so its conditional series exist too)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import numpy as np
import pytest

from akidb.harness import Cluster
from akidb.harness.process import free_port

OBSERVABILITY = Path(__file__).resolve().parents[2] / "observability"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")
# PromQL words that look like metric names but are not the server's.
NOT_OURS = {"up"}


def _promql_exprs() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs.append(dashboard["templating"]["list"][0]["query"]["query"])
    rules = (OBSERVABILITY / "alerts.yml").read_text()
    exprs += re.findall(r"expr: \|?\n?((?:.|\n)*?)\n\s+(?:for|labels):", rules)
    return exprs


def _families(metrics_text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", metrics_text, re.M))


def _base(name: str, families: set[str]) -> str:
    if name in families:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in families:
            return name.removesuffix(suffix)
    return name


@pytest.fixture(scope="module")
def live_metrics(tmp_path_factory):
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t",
                 aws_secret_access_key="t").create_bucket(Bucket="akidb")
    try:
        with Cluster(nodes=1, embed_service=True, embed_backend="numpy", env=AWS,
                     base_dir=tmp_path_factory.mktemp("obs"),
                     extra_args=["--s3-endpoint", endpoint, "--object-store",
                                 "s3://akidb/obs"]) as cluster:
            client = cluster.admin_client()
            client.create_collection("t/db/c", dimension=4, create_parents=True)
            client.upsert("t/db/c", [{"id": "a", "vector": np.ones(4)}])
            client.search("t/db/c", np.ones(4), k=1)
            yield client.metrics()  # the admin key gets the per-collection series too
    finally:
        moto.stop()


def test_every_dashboard_and_alert_metric_is_exposed(live_metrics):
    families = _families(live_metrics)
    assert "akidb_ready" in families and "akidb_object_store_backlog_bytes" in families
    used = {name for expr in _promql_exprs() for name in re.findall(r"\b(akidb_\w+)", expr)}
    assert len(used) >= 12
    missing = sorted(n for n in used if _base(n, families) not in families)
    assert missing == [], f"not exposed by the server: {missing}"
    # ... and the other way round: the dashboard covers each family of totals.
    uncovered = {f for f in families if f.startswith("akidb_")
                 and not f.endswith("_created")} - {
        _base(n, families) for n in used} - {"akidb_embedder_info", "akidb_recovery_repairs",
                                            "akidb_object_store_uploaded_bytes",
                                            "akidb_wal_bytes"}
    assert uncovered == set(), f"no panel or alert for {sorted(uncovered)}"


def test_dashboard_is_importable_json():
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["__inputs"][0]["type"] == "datasource"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool is not installed (Debian package prometheus)")
def test_promtool_accepts_rules_and_config(tmp_path):
    out = subprocess.run(["promtool", "check", "rules", str(OBSERVABILITY / "alerts.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    config = (OBSERVABILITY / "prometheus.yml").read_text().replace(
        "/etc/prometheus/akidb-metrics-token", str(tmp_path / "token"))
    (tmp_path / "token").write_text("secret")
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(OBSERVABILITY / "alerts.yml", tmp_path / "alerts.yml")
    out = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
