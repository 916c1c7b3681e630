"""``Client``: typed calls for every REST route, over a swappable transport."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np
import orjson
from akidb.server.client.rest import RestTransport
from akidb.server.client.results import EmbedResult, Hit, SearchResult
from akidb.server.errors import TransportError, Unavailable, error_from_response


class Transport(Protocol):
    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]: ...

    def close(self) -> None: ...


def parse_collection_path(path: str) -> tuple[str, str, str]:
    """``"TENANT/DB/COLLECTION"`` → its three parts."""
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"collection must be TENANT/DB/COLLECTION, got {path!r}")
    return parts[0], parts[1], parts[2]


def _c(collection: str) -> str:
    t, d, c = parse_collection_path(collection)
    return f"/v1/tenants/{quote(t)}/databases/{quote(d)}/collections/{quote(c)}"


# orjson writes float32 arrays with float32's shortest repr: ~20x faster than json.dumps of
# Python floats (measured 0.2 s vs 4.1 s for 20k x 384) and exact after the server's cast.
_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def _vector(v: Any) -> np.ndarray:
    return np.ascontiguousarray(v, dtype=np.float32)


class Client:
    """``Client(rest_url, api_key, grpc_target)``; collections are ``"tenant/db/coll"``.

    ``data_plane="grpc"`` sends upserts, searches, gets and deletes over gRPC (packed
    float32) and everything else over REST. Idempotent calls (reads and searches)
    are retried ``retries`` times on transport errors and 503, with exponential
    backoff and full jitter; writes never are, so a failed write stays visible.
    """

    def __init__(self, rest_url: str, api_key: str | None = None, grpc_target: str | None = None,
                 *, timeout: float = 30.0, transport: Transport | None = None,
                 data_plane: str = "rest", retries: int = 2, backoff_s: float = 0.05) -> None:
        if data_plane not in ("rest", "grpc"):
            raise ValueError(f"data_plane must be 'rest' or 'grpc', got {data_plane!r}")
        if data_plane == "grpc" and not grpc_target:
            raise ValueError("data_plane='grpc' needs grpc_target (see server.json)")
        self.rest_url = rest_url
        self.grpc_target = grpc_target
        self.transport: Transport = transport or RestTransport(rest_url, api_key, timeout)
        self.retries = retries
        self.backoff_s = backoff_s
        self.grpc = None
        if data_plane == "grpc":
            from akidb.server.client.grpc import GrpcDataPlane

            self.grpc = GrpcDataPlane(grpc_target, api_key, timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.transport.close()
        if self.grpc is not None:
            self.grpc.close()

    def _idempotent(self, fn: Callable[[], Any]) -> Any:
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (TransportError, Unavailable):
                if attempt == self.retries:
                    raise
                time.sleep(random.uniform(0, self.backoff_s * 2**attempt))
        raise AssertionError("unreachable")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (None if body is None else
                                            orjson.dumps(body, option=_ORJSON_OPTS))
        status, payload = self.transport.request(method, path, data)
        if path in ("/metrics",) and status == 200:
            return payload.decode()
        try:
            decoded = orjson.loads(payload) if payload else None
        except ValueError:
            decoded = payload.decode(errors="replace")
        if status >= 400:
            raise error_from_response(status, decoded)
        return decoded

    # -- operational -------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._idempotent(lambda: self._call("GET", "/health"))

    def is_ready(self) -> bool:
        status, _ = self.transport.request("GET", "/ready")
        return status == 200

    def metrics(self) -> str:
        return self._call("GET", "/metrics")

    def openapi(self) -> dict[str, Any]:
        return self._call("GET", "/openapi.json")

    # -- control plane -----------------------------------------------------------------
    def create_tenant(self, name: str, quotas: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if quotas:
            body["quotas"] = dict(quotas)
        return self._call("POST", "/v1/tenants", body)

    def list_tenants(self) -> list[dict[str, Any]]:
        return self._idempotent(lambda: self._call("GET", "/v1/tenants"))["tenants"]

    def get_tenant(self, tenant: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/tenants/{quote(tenant)}")

    def delete_tenant(self, tenant: str) -> None:
        self._call("DELETE", f"/v1/tenants/{quote(tenant)}")

    def create_user(self, tenant: str, name: str, role: str) -> dict[str, Any]:
        """Create a user; the returned ``api_key`` is shown only this once."""
        return self._call("POST", f"/v1/tenants/{quote(tenant)}/users",
                          {"name": name, "role": role})

    def list_users(self, tenant: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/tenants/{quote(tenant)}/users")["users"]

    def delete_user(self, tenant: str, user: str) -> None:
        self._call("DELETE", f"/v1/tenants/{quote(tenant)}/users/{quote(user)}")

    def create_key(self, tenant: str, user: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/tenants/{quote(tenant)}/users/{quote(user)}/keys")

    def revoke_key(self, tenant: str, user: str, key_id: str) -> None:
        self._call("DELETE",
                   f"/v1/tenants/{quote(tenant)}/users/{quote(user)}/keys/{quote(key_id)}")

    def put_policies(self, tenant: str, policies: str) -> dict[str, Any]:
        return self._call("PUT", f"/v1/tenants/{quote(tenant)}/policies",
                          {"policies": policies})

    def get_policies(self, tenant: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/tenants/{quote(tenant)}/policies")

    def audit_log(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/tenants/{quote(tenant)}/audit?limit={int(limit)}")[
            "entries"]

    def create_database(self, tenant: str, name: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/tenants/{quote(tenant)}/databases", {"name": name})

    def list_databases(self, tenant: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/tenants/{quote(tenant)}/databases")["databases"]

    def delete_database(self, tenant: str, database: str) -> None:
        self._call("DELETE", f"/v1/tenants/{quote(tenant)}/databases/{quote(database)}")

    def create_collection(self, collection: str, *, dimension: int | None = None,
                          metric: str = "cosine", hnsw: Mapping[str, int] | None = None,
                          embedding: str | None = None, create_parents: bool = False
                          ) -> dict[str, Any]:
        """Create ``tenant/db/name``; ``create_parents`` also creates a missing tenant/db.

        With ``embedding="minilm"`` the dimension follows the model and documents or
        queries may carry text only."""
        t, d, c = parse_collection_path(collection)
        if create_parents:
            self.ensure_database(t, d)
        body: dict[str, Any] = {"name": c, "metric": metric}
        if dimension is not None:
            body["dimension"] = dimension
        if embedding is not None:
            body["embedding"] = embedding
        if hnsw:
            body["hnsw"] = dict(hnsw)
        return self._call("POST", f"/v1/tenants/{quote(t)}/databases/{quote(d)}/collections",
                          body)

    def ensure_database(self, tenant: str, database: str) -> None:
        from akidb.server.errors import AlreadyExists

        for create in (lambda: self.create_tenant(tenant),
                       lambda: self.create_database(tenant, database)):
            try:
                create()
            except AlreadyExists:
                pass

    def get_collection(self, collection: str) -> dict[str, Any]:
        return self._idempotent(lambda: self._call("GET", _c(collection)))

    def list_collections(self, tenant: str, database: str) -> list[dict[str, Any]]:
        return self._call(
            "GET", f"/v1/tenants/{quote(tenant)}/databases/{quote(database)}/collections"
        )["collections"]

    def delete_collection(self, collection: str) -> None:
        self._call("DELETE", _c(collection))

    def snapshot(self, collection: str) -> dict[str, Any]:
        return self._call("POST", _c(collection) + "/snapshots")

    # -- data plane --------------------------------------------------------------------
    def upsert(self, collection: str, documents: Iterable[Mapping[str, Any]]) -> int:
        """Upsert documents (``id``, ``vector``, optional ``text``/``payload``)."""
        if self.grpc is not None:
            return self.grpc.upsert_documents(collection, documents)
        docs = []
        for doc in documents:
            d = dict(doc)
            if d.get("vector") is not None:
                d["vector"] = _vector(d["vector"])
            docs.append(d)
        return self._call("POST", _c(collection) + "/documents", {"documents": docs})["upserted"]

    def upsert_arrays(self, collection: str, ids: Sequence[str], vectors: np.ndarray,
                      payloads: Sequence[Mapping[str, Any]] | None = None,
                      texts: Sequence[str | None] | None = None) -> int:
        """Columnar upsert for bulk loaders: ids and an (n, dim) float array."""
        if self.grpc is not None:
            return self.grpc.upsert_stream(collection, [(ids, vectors, payloads, texts)])
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        docs: list[dict[str, Any]] = []
        for i, ext_id in enumerate(ids):
            d: dict[str, Any] = {"id": ext_id, "vector": rows[i]}
            if payloads is not None:
                d["payload"] = payloads[i]
            if texts is not None and texts[i] is not None:
                d["text"] = texts[i]
            docs.append(d)
        return self._call("POST", _c(collection) + "/documents", {"documents": docs})["upserted"]

    def upsert_stream(self, collection: str,
                      batches: Iterable[tuple[Sequence[str], np.ndarray,
                                              Sequence[Mapping[str, Any]] | None,
                                              Sequence[str | None] | None]]) -> int:
        """Upsert many (ids, vectors, payloads, texts) batches: one gRPC stream, or one
        REST request per batch. Each batch is applied whole."""
        if self.grpc is not None:
            return self.grpc.upsert_stream(collection, batches)
        return sum(self.upsert_arrays(collection, *batch) for batch in batches)

    def list_documents(self, collection: str, *, after: str | None = None, limit: int = 1000,
                       include: Sequence[str] = ("vector", "text", "payload")
                       ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of documents in id order and the cursor of the next (None at the end)."""
        query = f"?limit={limit}&include={','.join(include)}"
        if after is not None:
            query += f"&after={quote(after, safe='')}"
        out = self._idempotent(lambda: self._call("GET", _c(collection) + "/documents" + query))
        return out["documents"], out["next"]

    def iter_documents(self, collection: str, *, page: int = 1000,
                       include: Sequence[str] = ("vector", "text", "payload")
                       ) -> Iterator[list[dict[str, Any]]]:
        """Every document, a page at a time (memory stays at one page)."""
        after: str | None = None
        while True:
            docs, after = self.list_documents(collection, after=after, limit=page,
                                              include=include)
            if docs:
                yield docs
            if after is None:
                return

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        if self.grpc is not None:
            return self._idempotent(lambda: self.grpc.get(collection, doc_id))
        path = _c(collection) + f"/documents/{quote(doc_id, safe='')}"
        return self._idempotent(lambda: self._call("GET", path))

    def delete(self, collection: str, doc_id: str) -> None:
        if self.grpc is not None:
            self.grpc.delete(collection, doc_id)
            return
        self._call("DELETE", _c(collection) + f"/documents/{quote(doc_id, safe='')}")

    def search(self, collection: str, vector: Any = None, *, k: int = 10, text: str | None = None,
               mode: str | None = None, filter: Mapping[str, Any] | None = None,
               ef: int | None = None, include: Sequence[str] = (), alpha: float | None = None
               ) -> SearchResult:
        if self.grpc is not None:
            grpc = self.grpc
            return self._idempotent(lambda: grpc.search(collection, vector, k, text, mode,
                                                        filter, ef, include, alpha))
        body: dict[str, Any] = {"k": k}
        if vector is not None:
            body["vector"] = _vector(vector)
        for key, value in (("text", text), ("mode", mode), ("filter", filter), ("ef", ef),
                           ("alpha", alpha)):
            if value is not None:
                body[key] = value
        if include:
            body["include"] = list(include)
        out = self._idempotent(lambda: self._call("POST", _c(collection) + "/search", body))
        return SearchResult([Hit(**h) for h in out["results"]], out["took_ms"])

    def set_faults(self, **failpoints: float) -> dict[str, float]:
        """Switch failpoints (authz_delay_ms, search_delay_ms, disk_full) on a server
        started with AKIDB_FAULT_INJECTION=1; 0 turns one off."""
        return self._call("PUT", "/v1/admin/faults", failpoints)["faults"]

    def embed(self, texts: Sequence[str]) -> EmbedResult:
        """Embed texts with the server's model (idempotent, so retried on 503)."""
        if self.grpc is not None:
            grpc = self.grpc
            return self._idempotent(lambda: grpc.embed(texts))
        out = self._idempotent(lambda: self._call("POST", "/v1/embed", {"texts": list(texts)}))
        vectors = np.asarray(out["embeddings"], dtype=np.float32).reshape(len(texts), out["dim"])
        return EmbedResult(out["model"], out["dim"], vectors, out.get("backend", ""))

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        """A raw call (for tests of bad input): returns the decoded body or raises."""
        return self._call(method, path, body, raw)
