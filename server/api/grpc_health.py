"""The standard gRPC health service and server reflection beside the data plane.

``grpc.health.v1.Health`` answers NOT_SERVING until start-up recovery is done and again
once shutdown begins, so grpc_health_probe and Kubernetes gRPC probes see what
``/ready`` says over REST; reflection lets grpcurl list and call the services
without the .proto file.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb

DATA_PLANE = pb.DESCRIPTOR.services_by_name["DataPlane"].full_name  # "akidb.v1.DataPlane"
_SERVICES = ("", DATA_PLANE)  # "" is the server as a whole


class Health:
    def __init__(self, server: grpc.Server) -> None:
        self.servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        reflection.enable_server_reflection(
            (DATA_PLANE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), server)
        self._set(health_pb2.HealthCheckResponse.NOT_SERVING)

    def _set(self, status: int) -> None:
        for name in _SERVICES:
            self.servicer.set(name, status)

    def serving(self) -> None:
        self._set(health_pb2.HealthCheckResponse.SERVING)

    def shutting_down(self) -> None:
        self.servicer.enter_graceful_shutdown()
