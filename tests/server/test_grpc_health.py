"""The standard gRPC health service follows recovery; reflection lists the services."""

from __future__ import annotations

import re
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from akidb.harness import Node

SERVICES = ("", "akidb.v1.DataPlane")


def _status(target: str, service: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def test_health_is_not_serving_while_recovering_then_serving_and_reflection_lists(tmp_path):
    gate = tmp_path / "recovery-may-start"  # absent: recovery waits for it
    node = Node(tmp_path / "data", env={"AKIDB_TEST_RECOVERY_GATE": str(gate)})
    node.start(wait=False)
    try:
        target = None
        deadline = time.monotonic() + 30
        while target is None and time.monotonic() < deadline:
            found = re.search(r'"grpc_target": "([^"]+)"', node.log_path.read_text())
            target = found.group(1) if found else None
            time.sleep(0.01)
        assert target, node.log_tail()
        for service in SERVICES:
            assert _status(target, service) == health_pb2.HealthCheckResponse.NOT_SERVING
        gate.touch()
        node.wait_ready()
        for service in SERVICES:
            assert _status(target, service) == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            replies = stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
            names = {s.name for r in replies for s in r.list_services_response.service}
        assert {"akidb.v1.DataPlane", "grpc.health.v1.Health"} <= names
        with grpc.insecure_channel(target) as channel:
            try:
                health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
            else:
                raise AssertionError("an unknown service must be NOT_FOUND")
    finally:
        node.close()
