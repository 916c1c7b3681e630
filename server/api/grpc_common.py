"""What every gRPC server of the project shares: typed errors as status codes (with the
error class in trailing metadata), per-method metrics, and the Embed response."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np

from akidb.server import tracing
from akidb.server.errors import GRPC_ERROR_CODE_KEY, AkiError, Internal
from akidb.server.metrics import Metrics
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb

log = logging.getLogger("akidb.grpc")


def embed_response(vectors: np.ndarray, info: dict[str, Any]) -> pb.EmbedResponse:
    return pb.EmbedResponse(model=info["model"], dim=info["dim"], backend=info["backend"],
                            embeddings=np.ascontiguousarray(vectors, dtype="<f4").tobytes())



class ErrorsAndMetrics(grpc.ServerInterceptor):
    """Every handler: typed errors → status + trailing code, and per-method metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap(handler.unary_unary, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._wrap(handler.stream_unary, method))
        return handler

    def _wrap(self, fn: Callable[..., Any], method: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            if tracing.ENABLED:  # a server span, child of the caller's traceparent metadata
                with tracing.server_span(method, dict(context.invocation_metadata()),
                                         **{"rpc.system": "grpc", "rpc.method": method}) as s:
                    return self._call(fn, method, request, context, s)
            return self._call(fn, method, request, context, None)

        return wrapper

    def _call(self, fn: Callable[..., Any], method: str, request: Any,
              context: grpc.ServicerContext, span: Any) -> Any:
        started = time.perf_counter()
        status = "OK"
        try:
            return fn(request, context)
        except AkiError as exc:
            status = exc.grpc_status
            _abort(context, exc)
        except grpc.RpcError:
            status = "CANCELLED"
            raise
        except Exception:
            status = "INTERNAL"
            log.exception("unhandled error in %s", method)
            _abort(context, Internal(f"internal error in {method}; see server log"))
        finally:
            self.metrics.observe(method, "GRPC", status, time.perf_counter() - started)
            if span is not None:
                tracing.set_status(span, status == "OK", **{"rpc.grpc.status": status})


def _abort(context: grpc.ServicerContext, exc: AkiError) -> None:
    context.set_trailing_metadata(((GRPC_ERROR_CODE_KEY, exc.code),))
    context.abort(getattr(grpc.StatusCode, exc.grpc_status), exc.message)


