"""``akidb embed serve``: the embedding model as its own gRPC service.

It answers the ``Embed`` RPC of ``akidb.v1.DataPlane`` (the only one it serves),
so the server's remote embedder and any client reach it with the same stub.
It has no API keys: bind it to loopback or a private network.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from akidb.server.api.grpc_common import ErrorsAndMetrics, embed_response
from akidb.server.config import Limits
from akidb.server.embeddings.embedder import backend_label, check_texts
from akidb.server.embeddings.encoder import Encoder
from akidb.server.errors import MethodNotAllowed
from akidb.server.metrics import Metrics
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb
from akidb.server.proto.akidb.v1 import dataplane_pb2_grpc as pb_grpc

log = logging.getLogger("akidb.embed")


class EmbedServicer(pb_grpc.DataPlaneServicer):
    def __init__(self, encoder: Encoder, limits: Limits) -> None:
        self.encoder = encoder
        self.limits = limits
        self.label = backend_label(encoder.describe())

    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext  # noqa: N802
              ) -> pb.EmbedResponse:
        texts = list(request.texts)
        check_texts(texts, self.limits)
        vectors = self.encoder.embed(texts)
        return embed_response(vectors, {"model": self.encoder.model, "dim": self.encoder.dim,
                                        "backend": self.label})

    def _only_embed(self, *_args: Any) -> Any:
        raise MethodNotAllowed("this is an embedding service: it answers Embed only")

    Upsert = Search = SearchBatch = Get = Delete = _only_embed  # noqa: N815


def serve(host: str, port: int, backend: str, batch_size: int, threads: int,
          info_file: Path | None, limits: Limits | None = None) -> int:
    """Load the model, bind, write ``info_file`` when ready, serve until SIGTERM/SIGINT."""
    limits = limits or Limits()
    encoder = Encoder(backend, batch_size)
    metrics = Metrics(None)
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="embed"),
        interceptors=[ErrorsAndMetrics(metrics)],
        options=[("grpc.max_receive_message_length", limits.max_body_bytes),
                 ("grpc.max_send_message_length", limits.max_body_bytes),
                 ("grpc.so_reuseport", 0)])
    pb_grpc.add_DataPlaneServicer_to_server(EmbedServicer(encoder, limits), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind the embedding service to {host}:{port}")
    # A flag, not a threading.Event: setting an Event from a signal handler can deadlock
    # when the signal lands while this (main) thread holds the Event's lock in wait().
    stopping: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(1))
    server.start()
    target = f"{host}:{bound}"
    if info_file is not None:
        tmp = info_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"grpc_target": target, "pid": os.getpid(),
                                   **encoder.describe()}))
        os.replace(tmp, info_file)
    log.info("embedding service ready", extra={"grpc_target": target, **encoder.describe()})
    while not stopping:
        time.sleep(0.1)
    server.stop(grace=2).wait(5)
    if info_file is not None:
        info_file.unlink(missing_ok=True)
    return 0
