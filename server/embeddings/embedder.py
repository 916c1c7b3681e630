"""The server's view of embeddings: in-process, a remote service, or none.

``Service`` asks ``embedder.embed(texts)`` and gets vectors or an ``Unavailable``
(503 / UNAVAILABLE) it passes on; vector operations never touch the embedder, so
they keep working whatever state it is in.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from akidb.server.config import Limits
from akidb.server.embeddings.breaker import STATE_VALUES, CircuitBreaker
from akidb.server.embeddings.model import MODEL_NAME
from akidb.server.errors import AkiError, BadRequest, PayloadTooLarge, TransportError, Unavailable

MODEL_DIM = 384
MODEL_DIMS = {"minilm": MODEL_DIM}  # collection "embedding" name → vector dimension


class Embedder(Protocol):
    model: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def status(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class DisabledEmbedder:
    """``--embedder off``: text needs a vector from the caller."""

    model = MODEL_NAME
    dim = MODEL_DIM

    def embed(self, texts: list[str]) -> np.ndarray:
        raise Unavailable("this server runs without an embedding model (--embedder off); "
                          "send vectors, or start it with --embedder inproc or URL")

    def status(self) -> dict[str, Any]:
        return {"kind": "off"}

    def close(self) -> None:
        pass


class InProcessEmbedder:
    """The encoder inside the server process, loaded on first use.

    Loading costs ~0.3 s and ~100 MB; servers that never embed (most test
    nodes) never pay it, and start-up stays fast.
    """

    model = MODEL_NAME
    dim = MODEL_DIM

    def __init__(self, backend: str = "auto", batch_size: int = 32) -> None:
        self.backend = backend
        self.batch_size = batch_size
        self._encoder: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                from akidb.server.embeddings.encoder import Encoder

                self._encoder = Encoder(self.backend, self.batch_size)
            return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._load().embed(texts)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "inproc", "loaded": self._encoder is not None}
        if self._encoder is not None:
            out.update(self._encoder.describe())
        return out

    def close(self) -> None:
        pass


class RemoteEmbedder:
    """An ``akidb embed serve`` process, called over gRPC with a timeout and a breaker."""

    model = MODEL_NAME
    dim = MODEL_DIM

    def __init__(self, target: str, timeout_s: float = 10.0, failure_threshold: int = 3,
                 reset_timeout_s: float = 5.0) -> None:
        from akidb.server.client.grpc import GrpcDataPlane

        self.target = target
        self._plane = GrpcDataPlane(target, api_key=None, timeout=timeout_s)
        self.breaker = CircuitBreaker(f"embedding service {target}", failure_threshold,
                                      reset_timeout_s)
        self.backend: str | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        try:
            result = self.breaker.call(lambda: self._plane.embed(texts), _is_service_fault)
        except Unavailable:
            raise
        except TransportError as exc:  # the client's error: answer 503, not a dead socket
            raise Unavailable(f"embedding service {self.target} is unreachable: "
                              f"{exc.message}") from None
        except AkiError as exc:
            if exc.http_status >= 500:
                raise Unavailable(f"embedding service {self.target} failed: "
                                  f"{exc.message}") from None
            raise
        self.backend = result.backend
        return result.vectors

    def status(self) -> dict[str, Any]:
        return {"kind": "remote", "target": self.target, "breaker": self.breaker.state,
                "backend": self.backend}

    def close(self) -> None:
        self._plane.close()


def _is_service_fault(exc: BaseException) -> bool:
    """Unreachable, timed out, or answering 5xx: the service's fault, not the caller's."""
    return isinstance(exc, TransportError | Unavailable) or (
        isinstance(exc, AkiError) and exc.http_status >= 500) or not isinstance(exc, AkiError)


def create_embedder(spec: str, backend: str = "auto", timeout_s: float = 10.0,
                    failure_threshold: int = 3, reset_timeout_s: float = 5.0) -> Embedder:
    """``inproc`` | ``off`` | ``grpc://HOST:PORT`` (or ``HOST:PORT``) → an embedder."""
    if spec == "inproc":
        return InProcessEmbedder(backend)
    if spec == "off":
        return DisabledEmbedder()
    target = spec.removeprefix("grpc://")
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--embedder must be inproc, off or grpc://HOST:PORT, got {spec!r}")
    return RemoteEmbedder(target, timeout_s, failure_threshold, reset_timeout_s)


def breaker_state_value(embedder: Embedder) -> float | None:
    if isinstance(embedder, RemoteEmbedder):
        return float(STATE_VALUES[embedder.breaker.state])
    return None


def check_texts(texts: list[str], limits: Limits) -> None:
    """The limits every embed entry point applies before any work."""
    if not texts:
        raise BadRequest("texts must not be empty")
    if len(texts) > limits.max_embed_texts:
        raise PayloadTooLarge(f"{len(texts)} texts in one request; the limit is "
                              f"{limits.max_embed_texts}")
    for i, text in enumerate(texts):
        if len(text.encode()) > limits.max_text_bytes:
            raise PayloadTooLarge(f"texts[{i}] is over {limits.max_text_bytes} bytes")


def backend_label(status: dict[str, Any]) -> str:
    """``numpy (scipy-openblas 0.3.31)``: the backend and BLAS, for reports beside figures."""
    backend, blas = status.get("backend"), status.get("blas")
    if backend and blas:
        return f"{backend} ({blas})"
    return str(backend or status.get("kind", "unknown"))
