"""Fuzz the REST API from its own /openapi.json with schemathesis: no 5xx, no accepted
malformed request, only documented status codes and content types, 405 for others."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from akidb.harness import Node

CHECKS = ("not_a_server_error,negative_data_rejection,status_code_conformance,"
          "content_type_conformance,unsupported_method")


def test_schemathesis_finds_nothing(tmp_path):
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis is a test dependency (pip install -e '.[test]')"
    with Node(tmp_path / "data", fsync="none") as node, node.admin_client() as client:
        client.create_collection("fuzz/db/c", dimension=4, create_parents=True)
        client.upsert("fuzz/db/c", [{"id": "a", "vector": [1, 0, 0, 0]}])
        result = subprocess.run(
            [cli, "run", f"{node.rest_url}/openapi.json", "-H",
             f"Authorization: Bearer {node.admin_key}", "--checks", CHECKS,
             "--max-examples", "15", "--generation-deterministic", "--no-color"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)
        server_log = node.log_tail(100_000)
    assert "unhandled error" not in server_log
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
