"""A full disk (RLIMIT_FSIZE on the server) and damaged logs, through the injectors."""

from __future__ import annotations

import numpy as np
import pytest

from akidb.chaos.injectors import corrupt_wal, truncate_wal
from akidb.harness import Node, NodeError
from akidb.server.errors import Unavailable


def test_disk_full_rejects_writes_keeps_acknowledged_ones_and_recovers(tmp_path):
    node = Node(tmp_path / "d", fsync="always", max_file_bytes=2 * 1024 * 1024,
                env={"AKIDB_SNAPSHOT_WAL_BYTES": "0"})
    node.start()
    acked: dict[str, np.ndarray] = {}
    try:
        with node.admin_client() as client:
            client.create_collection("t/d/c", dimension=64, metric="l2", create_parents=True)
            rng = np.random.default_rng(0)
            with pytest.raises(Unavailable):
                for n in range(200):  # 2 MiB / (100 x 64 x 4 bytes) ≈ 80 batches fit
                    vecs = rng.standard_normal((100, 64)).astype(np.float32)
                    ids = [f"{n}-{i}" for i in range(100)]
                    client.upsert_arrays("t/d/c", ids, vecs)
                    acked.update(zip(ids, vecs, strict=True))
            assert node.is_running(), "EFBIG must not kill the server"
            assert client.get_collection("t/d/c")["count"] == len(acked)
            some = next(iter(acked))
            assert np.array_equal(client.get("t/d/c", some)["vector"], acked[some])
        node.stop()
        node.max_file_bytes = None
        node.start()
        with node.admin_client() as client:
            assert client.get_collection("t/d/c")["count"] == len(acked)
            for ext_id in list(acked)[:: max(1, len(acked) // 50)]:
                assert np.array_equal(client.get("t/d/c", ext_id)["vector"], acked[ext_id])
            client.upsert_arrays("t/d/c", ["after"], np.ones((1, 64)))  # writable again
    finally:
        node.close()


def test_injected_wal_damage(node: Node):
    with node.admin_client() as client:
        client.create_collection("t/d/c", dimension=4, metric="l2", create_parents=True)
        for n in range(3):
            client.upsert_arrays("t/d/c", [f"{n}-{i}" for i in range(5)], np.ones((5, 4)) * n)
    node.kill()
    truncate_wal(node, 3)
    node.start()  # a torn tail: truncated and reported, the server starts
    assert "torn tail" in node.log_tail(100)
    node.kill()
    corrupt_wal(node, 30)
    with pytest.raises(NodeError, match="WAL corruption"):
        node.start()
    node.extra_args = ["--repair"]
    node.start()
    with pytest.raises(RuntimeError, match="stop or kill"):
        corrupt_wal(node, 1)  # the injectors refuse to edit a live node's files
