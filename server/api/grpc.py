"""gRPC transport: ``akidb.v1.DataPlane`` translated onto the same ``Service`` as REST.

Vectors arrive as packed float32 bytes and go to the service as numpy arrays
without a detour through Python floats; errors leave as gRPC status codes, with
the exact error class in the ``akidb-error-code`` trailing metadata.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np
import orjson

from akidb.server import schema
from akidb.server.api.grpc_common import ErrorsAndMetrics, embed_response
from akidb.server.api.grpc_health import Health
from akidb.server.auth.keys import KeyAuthenticator, Principal
from akidb.server.batches import UpsertBatch
from akidb.server.config import Settings
from akidb.server.errors import BadRequest
from akidb.server.metrics import Metrics
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb
from akidb.server.proto.akidb.v1 import dataplane_pb2_grpc as pb_grpc
from akidb.server.service import Service

log = logging.getLogger("akidb.grpc")


def _collection(path: str) -> tuple[str, str, str]:
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise BadRequest(f"collection must be 'tenant/database/collection', got {path!r}")
    return parts[0], parts[1], parts[2]


# orjson reads integers past 64 bits as floats; such text is re-read exactly so that
# validation refuses it as it does for REST (where pydantic keeps the integer).
_LONG_INTEGER = re.compile(r"\d{19,}")


def _json_object(raw: str, where: str) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
        if _LONG_INTEGER.search(raw):
            value = json.loads(raw)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise BadRequest(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _batch(docs: Any) -> UpsertBatch:
    """Documents → a batch; the common all-vectors case decodes in one frombuffer."""
    ids = [d.id for d in docs]
    texts = [d.text if d.HasField("text") else None for d in docs]
    payloads = [_json_object(d.payload_json, f"documents[{i}].payload_json") or {}
                for i, d in enumerate(docs)]
    lengths = {len(d.vector) for d in docs}
    for i, d in enumerate(docs):
        if len(d.vector) % 4:
            raise BadRequest(f"documents[{i}].vector bytes must be packed float32 (a multiple "
                             f"of 4), got {len(d.vector)}")
    if 0 not in lengths and len(lengths) == 1:
        size = lengths.pop()
        return UpsertBatch(ids, np.frombuffer(b"".join(d.vector for d in docs), dtype="<f4")
                           .reshape(len(docs), size // 4), texts, payloads)
    rows = [np.frombuffer(d.vector, dtype="<f4") if d.vector else None for d in docs]
    return UpsertBatch.from_rows(ids, rows, texts, payloads)


def _search(request: pb.SearchRequest) -> tuple[schema.SearchIn, np.ndarray | None]:
    """A SearchRequest as the service's SearchIn plus its packed vector, if any."""
    body, vector = _search_body(request, "")
    return schema.parse(schema.SearchIn, body), vector


def _searches(requests: Any) -> tuple[list[schema.SearchIn], list[np.ndarray | None]]:
    """A batch's SearchRequests, validated in one call (0.02 against 0.4 ms per 100 one
    by one; an error's location names the search, e.g. ``searches.3.ef``)."""
    decoded = [_search_body(r, f"searches[{i}]: ") for i, r in enumerate(requests)]
    reqs = schema.parse(schema.SearchBatchIn, {"searches": [body for body, _ in decoded]})
    return reqs.searches, [vector for _, vector in decoded]


def _search_body(request: pb.SearchRequest, where: str
                 ) -> tuple[dict[str, Any], np.ndarray | None]:
    """A SearchRequest as the JSON body it stands for, and its packed vector."""
    body: dict[str, Any] = {"k": request.k or 10, "include": list(request.include)}
    if request.HasField("text"):
        body["text"] = request.text
    if request.mode:
        body["mode"] = request.mode
    if request.HasField("ef"):
        body["ef"] = request.ef
    if request.HasField("alpha"):
        body["alpha"] = request.alpha
    flt = _json_object(request.filter_json, f"{where}filter_json")
    if flt is not None:
        body["filter"] = flt
    vector = None
    if request.vector:
        if len(request.vector) % 4:
            raise BadRequest(f"{where}vector bytes must be packed float32 (a multiple of 4)")
        vector = np.frombuffer(request.vector, dtype="<f4")
    return body, vector


class DataPlaneServicer(pb_grpc.DataPlaneServicer):
    def __init__(self, service: Service, auth: KeyAuthenticator, metrics: Metrics) -> None:
        self.service = service
        self.auth = auth
        self.metrics = metrics

    def _principal(self, context: grpc.ServicerContext) -> Principal:
        metadata = dict(context.invocation_metadata())
        return self.auth.authenticate(metadata.get("authorization"))

    def Upsert(self, request_iterator: Iterator[pb.UpsertRequest],  # noqa: N802
               context: grpc.ServicerContext) -> pb.UpsertResponse:
        """A stream of batches, each applied whole, in stream order. Two are in flight:
        the next batch is read and logged while the previous one goes into the graph
        (one loader alone left a core idle for the log and store phase). A batch that
        fails validation or storage stops the stream with nothing of it applied; one
        whose graph insert fails after the next batch was logged leaves that next one
        applied too (both are in the log, so a restart applies them either way)."""
        principal = self._principal(context)
        path: str | None = None
        upserted = batches = 0
        inflight: deque[Future[dict[str, Any]]] = deque()
        # Leaving the pool waits for every batch in flight (durably applied or failed)
        # before the stream answers, also when a later batch raised.
        with ThreadPoolExecutor(STREAM_DEPTH, thread_name_prefix="grpc-stream") as pool:
            for request in request_iterator:
                if request.collection:
                    if path is not None and request.collection != path:
                        raise BadRequest(f"one stream writes one collection: {path!r}, then "
                                         f"{request.collection!r}")
                    path = request.collection
                if path is None:
                    raise BadRequest("the first UpsertRequest of a stream must name the "
                                     "collection")
                docs = request.documents
                if not docs:
                    raise BadRequest(f"batch {batches} of the stream has no documents")
                batch = _batch(docs)
                while len(inflight) >= STREAM_DEPTH:
                    upserted += inflight.popleft().result()["upserted"]
                inflight.append(_logged_upsert(pool, self.service.upsert, principal,
                                               *_collection(path), batch))
                batches += 1
            for fut in inflight:
                upserted += fut.result()["upserted"]
        return pb.UpsertResponse(upserted=upserted, batches=batches)

    def Search(self, request: pb.SearchRequest,  # noqa: N802
               context: grpc.ServicerContext) -> pb.SearchResponse:
        principal = self._principal(context)
        req, vector = _search(request)
        out = self.service.search(principal, *_collection(request.collection), req,
                                  vector=vector)
        response = pb.SearchResponse(took_ms=out["took_ms"])
        _add_hits(response.results, out["results"])
        return response

    def SearchBatch(self, request: pb.SearchBatchRequest,  # noqa: N802
                    context: grpc.ServicerContext) -> pb.SearchBatchResponse:
        principal = self._principal(context)
        reqs, vectors = _searches(request.searches)
        out = self.service.search_batch(principal, *_collection(request.collection),
                                        reqs, vectors)
        response = pb.SearchBatchResponse(took_ms=out["took_ms"])
        for search in out["searches"]:
            _add_hits(response.searches.add().results, search["results"])
        return response

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext  # noqa: N802
            ) -> pb.GetResponse:
        doc = self.service.get_document(self._principal(context),
                                        *_collection(request.collection), request.id)
        return pb.GetResponse(id=doc["id"], text=doc["text"],
                              payload_json=orjson.dumps(doc["payload"]).decode(),
                              vector=np.asarray(doc["vector"] or [], "<f4").tobytes())

    def Delete(self, request: pb.DeleteRequest, context: grpc.ServicerContext  # noqa: N802
               ) -> pb.DeleteResponse:
        out = self.service.delete_document(self._principal(context),
                                           *_collection(request.collection), request.id)
        return pb.DeleteResponse(deleted=out["deleted"])


    def Embed(self, request: pb.EmbedRequest, context: grpc.ServicerContext  # noqa: N802
              ) -> pb.EmbedResponse:
        vectors, info = self.service.embed(self._principal(context),
                                           schema.EmbedIn(texts=list(request.texts)))
        return embed_response(vectors, info)


# Batches of one upsert stream in flight at once (see DataPlaneServicer.Upsert).
STREAM_DEPTH = 2


def _logged_upsert(pool: ThreadPoolExecutor, upsert: Callable[..., dict[str, Any]],
                   *args: Any) -> Future[dict[str, Any]]:
    """Run ``upsert(*args, on_logged=...)`` on the pool and return once the batch holds
    its place in the log or has failed, so the stream's next batch is logged after it
    (stream order is log order). Raises at once what failed before that point."""
    logged = threading.Event()
    ctx = contextvars.copy_context()  # the request's trace and log context
    fut = pool.submit(ctx.run, upsert, *args, on_logged=logged.set)
    fut.add_done_callback(lambda _: logged.set())
    logged.wait()
    if fut.done() and fut.exception() is not None:
        fut.result()
    return fut


def _add_hits(results: Any, hits: list[dict[str, Any]]) -> None:
    """Result dicts appended to a repeated ``Hit`` field in place; a null score
    (non-finite) travels as NaN. ``add`` on the container cost 0.53 ms per 100 x 10
    hits against 0.89 ms for building ``Hit`` objects and passing the lists."""
    nan = float("nan")
    add = results.add
    for h in hits:
        score = h["score"]
        hit = add(id=h["id"], score=nan if score is None else score)
        if len(h) == 2:
            continue  # id and score only: nothing was asked to be included
        if "payload" in h:
            hit.payload_json = orjson.dumps(h["payload"]).decode()
        if h.get("vector") is not None:
            hit.vector = np.asarray(h["vector"], "<f4").tobytes()
        if h.get("text") is not None:
            hit.text = h["text"]


def create_grpc_server(service: Service, auth: KeyAuthenticator, metrics: Metrics,
                       settings: Settings) -> tuple[grpc.Server, int, Health]:
    """A started-later gRPC server bound to ``settings.grpc_port``, with the health
    service (NOT_SERVING until ``Health.serving()``) and reflection;
    returns (server, port, health)."""
    limit = settings.limits.max_body_bytes
    server = grpc.server(
        ThreadPoolExecutor(max_workers=settings.grpc_threads, thread_name_prefix="grpc"),
        interceptors=[ErrorsAndMetrics(metrics)],
        options=[("grpc.max_receive_message_length", limit),
                 ("grpc.max_send_message_length", limit),
                 ("grpc.keepalive_time_ms", 30_000),
                 ("grpc.keepalive_timeout_ms", 10_000),
                 ("grpc.keepalive_permit_without_calls", 1),
                 ("grpc.http2.min_ping_interval_without_data_ms", 10_000)])
    pb_grpc.add_DataPlaneServicer_to_server(DataPlaneServicer(service, auth, metrics), server)
    health = Health(server)
    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    if port == 0:
        raise OSError(f"cannot bind gRPC to {settings.host}:{settings.grpc_port}")
    return server, port, health
