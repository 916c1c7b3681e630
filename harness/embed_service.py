"""``EmbedService``: an ``akidb embed serve`` process, the cluster's separate embedder.

Same lifecycle as a ``Node`` (own process group, logs, kill -9, pause, restart,
cleanup at exit). A restart keeps its port, so servers pointed at it with
``--embedder grpc://...`` find it again: that is what outage tests need.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from akidb.harness.node import Node
from akidb.harness.process import FileExists, Wait


class EmbedService(Node):
    def __init__(self, data_dir: str | Path | None = None, *, name: str = "embed",
                 backend: str = "auto", port: int = 0, **kwargs: Any) -> None:
        super().__init__(data_dir, name=name, **kwargs)
        self.backend = backend
        self.port = port
        self.log_path = self.data_dir / "embed.log"

    @property
    def target(self) -> str:
        """``grpc://HOST:PORT``, the value for ``akidb serve --embedder``."""
        return f"grpc://{self.grpc_target}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "akidb", "embed", "serve", "--port", str(self.port),
                "--backend", self.backend, "--info-file", str(self.data_dir / "server.json"),
                *self.extra_args]

    def readiness(self) -> Wait:
        """The info file of this process: written once the model is loaded and the port
        bound (the service has no HTTP readiness route)."""

        def ours(text: str) -> bool:
            if not self._info_is_ours(text):
                return False
            self.port = int(self.info["grpc_target"].rsplit(":", 1)[1])
            return True

        return FileExists(self.data_dir / "server.json", ours)

    def admin_client(self, **kwargs: Any) -> Any:
        raise TypeError("the embedding service has no REST API; use akidb.server.client.grpc."
                        "GrpcDataPlane(service.grpc_target, None).embed(texts)")
