"""Test clusters: real AkiDB server processes on free loopback ports, always cleaned up."""

from harness.cluster import Cluster
from harness.embed_service import EmbedService
from harness.node import Node, NodeError

__all__ = ["Cluster", "EmbedService", "Node", "NodeError"]
