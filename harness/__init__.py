"""Test clusters: real AkiDB server processes on free loopback ports, always cleaned up."""

from akidb.harness.cluster import Cluster
from akidb.harness.embed_service import EmbedService
from akidb.harness.node import Node, NodeError

__all__ = ["Cluster", "EmbedService", "Node", "NodeError"]
