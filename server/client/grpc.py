"""gRPC data-plane transport for ``Client``: the same calls, packed float32 on the wire."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import orjson

from akidb.server.client.results import EmbedResult, Hit, SearchResult
from akidb.server.client.tracecontext import carrier
from akidb.server.errors import GRPC_ERROR_CODE_KEY, AkiError, TransportError, error_from_grpc
from akidb.server.proto.akidb.v1 import dataplane_pb2 as pb
from akidb.server.proto.akidb.v1 import dataplane_pb2_grpc as pb_grpc

# The server enforces its own limit (64 MiB by default) and answers RESOURCE_EXHAUSTED;
# the client lets larger messages go so that answer is the one users see.
MAX_SEND = 1024 * 1024 * 1024
MAX_RECEIVE = 256 * 1024 * 1024


def _error(exc: grpc.RpcError) -> AkiError:
    code = exc.code()
    trailing = dict(exc.trailing_metadata() or ())
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
            and GRPC_ERROR_CODE_KEY not in trailing:
        return TransportError(f"gRPC {code.name}: {exc.details()}")
    return error_from_grpc(code.name, exc.details() or "", trailing.get(GRPC_ERROR_CODE_KEY))


def _documents(ids: Sequence[str], vectors: np.ndarray,
               payloads: Sequence[Mapping[str, Any]] | None,
               texts: Sequence[str | None] | None) -> list[pb.Document]:
    rows = np.ascontiguousarray(vectors, dtype="<f4")
    docs = []
    for i, ext_id in enumerate(ids):
        doc = pb.Document(id=ext_id, vector=rows[i].tobytes())
        if payloads is not None and payloads[i]:
            doc.payload_json = orjson.dumps(payloads[i],
                                            option=orjson.OPT_SERIALIZE_NUMPY).decode()
        if texts is not None and texts[i] is not None:
            doc.text = texts[i]
        docs.append(doc)
    return docs


# The method's path on the wire, from the generated descriptor (for raw channel calls).
SEARCH_BATCH_METHOD = f"/{pb.DESCRIPTOR.services_by_name['DataPlane'].full_name}/SearchBatch"


def search_batch_request(collection: str, searches: Sequence[Mapping[str, Any]]
                         ) -> pb.SearchBatchRequest:
    """The ``SearchBatch`` message for searches given as REST search bodies (public so a
    load generator can serialize one once and send its bytes)."""
    return pb.SearchBatchRequest(collection=collection,
                                 searches=[_search_request("", s) for s in searches])


def _search_request(collection: str, search: Mapping[str, Any]) -> pb.SearchRequest:
    req = pb.SearchRequest(collection=collection, k=search.get("k", 10),
                           include=list(search.get("include") or ()))
    if search.get("vector") is not None:
        req.vector = np.ascontiguousarray(search["vector"], dtype="<f4").tobytes()
    if search.get("text") is not None:
        req.text = search["text"]
    if search.get("mode"):
        req.mode = search["mode"]
    if search.get("filter") is not None:
        req.filter_json = orjson.dumps(search["filter"]).decode()
    if search.get("ef") is not None:
        req.ef = search["ef"]
    if search.get("alpha") is not None:
        req.alpha = search["alpha"]
    return req


def _hits(results: Any, include: Sequence[str]) -> list[Hit]:
    hits = []
    for h in results:
        hit = Hit(h.id, h.score)
        if "payload" in include:
            hit.payload = orjson.loads(h.payload_json) if h.payload_json else {}
        if "vector" in include:
            hit.vector = np.frombuffer(h.vector, "<f4").tolist()
        if "text" in include:
            hit.text = h.text if h.HasField("text") else None
        hits.append(hit)
    return hits


class GrpcDataPlane:
    def __init__(self, target: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", MAX_SEND),
            ("grpc.max_receive_message_length", MAX_RECEIVE)])
        self.stub = pb_grpc.DataPlaneStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            trace = carrier()
            metadata = (*self.metadata, *trace.items()) if trace else self.metadata
            return method(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            raise _error(exc) from None

    def upsert_stream(self, collection: str,
                      batches: Iterable[tuple[Sequence[str], np.ndarray,
                                              Sequence[Mapping[str, Any]] | None,
                                              Sequence[str | None] | None]]) -> int:
        """Stream (ids, vectors, payloads, texts) batches; each is applied whole."""

        def requests() -> Iterator[pb.UpsertRequest]:
            for i, (ids, vectors, payloads, texts) in enumerate(batches):
                yield pb.UpsertRequest(collection=collection if i == 0 else "",
                                       documents=_documents(ids, vectors, payloads, texts))

        return int(self._call(self.stub.Upsert, requests()).upserted)

    def upsert_documents(self, collection: str, documents: Iterable[Mapping[str, Any]]) -> int:
        """Upsert document dicts (``id``, ``vector``, ``text``, ``payload``) in one batch."""
        docs = []
        for d in documents:
            doc = pb.Document(id=d["id"])
            if d.get("vector") is not None:
                doc.vector = np.ascontiguousarray(d["vector"], dtype="<f4").tobytes()
            if d.get("payload"):
                doc.payload_json = orjson.dumps(d["payload"],
                                                option=orjson.OPT_SERIALIZE_NUMPY).decode()
            if d.get("text") is not None:
                doc.text = d["text"]
            docs.append(doc)
        request = pb.UpsertRequest(collection=collection, documents=docs)
        return int(self._call(self.stub.Upsert, iter([request])).upserted)

    def search(self, collection: str, vector: Any, k: int, text: str | None, mode: str | None,
               filter: Mapping[str, Any] | None, ef: int | None, include: Sequence[str],
               alpha: float | None) -> SearchResult:
        req = _search_request(collection, {"vector": vector, "k": k, "text": text,
                                           "mode": mode, "filter": filter, "ef": ef,
                                           "include": include, "alpha": alpha})
        out = self._call(self.stub.Search, req)
        return SearchResult(_hits(out.results, include), out.took_ms)

    def search_batch(self, collection: str, searches: Sequence[Mapping[str, Any]]
                     ) -> list[SearchResult]:
        out = self._call(self.stub.SearchBatch, search_batch_request(collection, searches))
        return [SearchResult(_hits(r.results, s.get("include") or ()), out.took_ms)
                for r, s in zip(out.searches, searches, strict=True)]

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        out = self._call(self.stub.Get, pb.GetRequest(collection=collection, id=doc_id))
        return {"id": out.id, "text": out.text if out.HasField("text") else None,
                "payload": orjson.loads(out.payload_json) if out.payload_json else {},
                "vector": np.frombuffer(out.vector, "<f4").tolist()}

    def delete(self, collection: str, doc_id: str) -> None:
        self._call(self.stub.Delete, pb.DeleteRequest(collection=collection, id=doc_id))

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        out = self._call(self.stub.Embed, pb.EmbedRequest(texts=list(texts)))
        vectors = np.frombuffer(out.embeddings, "<f4").reshape(len(texts), out.dim)
        return EmbedResult(out.model, out.dim, vectors, out.backend)
