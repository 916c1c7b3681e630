"""Every operation the server offers, in one place: validate, authorize, execute.

REST (and later gRPC) handlers only translate between their wire format and
these methods; no operation is implemented twice. Arguments arrive as the
schema models (or, for the hot data plane, as numpy arrays), results leave as
plain dicts ready to serialize.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from akidb.server import faults, schema, tracing, views
from akidb.server.auth.cedar import role_policies
from akidb.server.auth.guard import Guard
from akidb.server.auth.keys import KeyAuthenticator, Principal, new_key
from akidb.server.auth.quotas import parse_quotas
from akidb.server.batches import UpsertBatch, canonical_payloads, check_ids, check_vectors
from akidb.server.collection import Collection, Hit
from akidb.server.config import Limits
from akidb.server.embeddings.embedder import (
    MODEL_DIMS,
    DisabledEmbedder,
    Embedder,
    backend_label,
    check_texts,
)
from akidb.server.engine import Engine
from akidb.server.errors import (
    AkiError,
    BadRequest,
    PayloadTooLarge,
    QuotaExceeded,
    Unprocessable,
)
from akidb.server.names import check_name
from akidb.server.query import filters
from akidb.server.query.plan import Query, fts_query

MAX_AUDIT_ENTRIES = 10_000


class Service:
    def __init__(self, engine: Engine, limits: Limits, auth: KeyAuthenticator,
                 embedder: Embedder | None = None) -> None:
        self.engine = engine
        self.embedder: Embedder = embedder or DisabledEmbedder()
        self.store = engine.store
        self.limits = limits
        self.auth = auth
        self.guard = Guard(self.store, auth, engine.settings.authz)
        self.authz = self.guard.authz

    # -- status ------------------------------------------------------------------------
    def ready(self) -> bool:
        return self.engine.ready

    # -- tenants -----------------------------------------------------------------------
    def create_tenant(self, principal: Principal, req: schema.TenantIn) -> dict[str, Any]:
        self.guard.require_admin(principal, "create tenants")
        quotas = parse_quotas(req.quotas)
        out = views.public(self.store.create_tenant(check_name("tenant", req.name), quotas))
        self.guard.audit_admin(principal, "create_tenant", req.name, req.name)
        return out

    def list_tenants(self, principal: Principal) -> list[dict[str, Any]]:
        if principal.is_admin:
            return [views.public(t) for t in self.store.list_tenants()]
        return [self.get_tenant(principal, principal.tenant or "")]

    def get_tenant(self, principal: Principal, tenant: str) -> dict[str, Any]:
        self.guard.authorize(principal, "read", tenant)
        return views.public(self.store.get_tenant(tenant))

    def delete_tenant(self, principal: Principal, tenant: str) -> None:
        self.guard.require_admin(principal, "delete tenants")
        self.engine.drop_collections(self.store.delete_tenant(check_name("tenant", tenant)))
        self.guard.revoke(tenant)
        self.guard.rate.forget(tenant)
        self.guard.audit_admin(principal, "delete_tenant", tenant, tenant)

    # -- users, keys and policies ------------------------------------------------------
    def create_user(self, principal: Principal, tenant: str, req: schema.UserIn
                    ) -> dict[str, Any]:
        self.guard.authorize(principal, "admin", tenant)
        key = new_key()
        user = self.store.create_user(tenant, check_name("user", req.name), req.role,
                                      key.key_id, key.salt, key.hash)
        self.guard.audit_admin(principal, "create_user", tenant, f"{tenant}/{req.name}", req.role)
        return {**user, "key_id": key.key_id, "api_key": key.secret_key}

    def list_users(self, principal: Principal, tenant: str) -> list[dict[str, Any]]:
        self.guard.authorize(principal, "admin", tenant)
        return self.store.list_users(tenant)

    def delete_user(self, principal: Principal, tenant: str, user: str) -> None:
        self.guard.authorize(principal, "admin", tenant)
        self.store.delete_user(tenant, user)
        self.guard.revoke()
        self.guard.audit_admin(principal, "delete_user", tenant, f"{tenant}/{user}")

    def create_key(self, principal: Principal, tenant: str, user: str) -> dict[str, Any]:
        self.guard.authorize(principal, "admin", tenant)
        key = new_key()
        self.store.add_key(tenant, user, key.key_id, key.salt, key.hash)
        self.guard.audit_admin(principal, "create_key", tenant, f"{tenant}/{user}", key.key_id)
        return {"key_id": key.key_id, "api_key": key.secret_key}

    def revoke_key(self, principal: Principal, tenant: str, user: str, key_id: str) -> None:
        self.guard.authorize(principal, "admin", tenant)
        self.store.revoke_keys(tenant, user, key_id)
        self.guard.revoke()
        self.guard.audit_admin(principal, "revoke_key", tenant, f"{tenant}/{user}", key_id)

    def put_policies(self, principal: Principal, tenant: str, req: schema.PoliciesIn) -> None:
        self.guard.authorize(principal, "admin", tenant)
        self.authz.validate(tenant, req.policies)  # a bad set never replaces the old one
        self.store.set_policies(tenant, req.policies)
        self.guard.revoke(tenant)  # cached decisions may now be wrong either way
        self.guard.audit_admin(principal, "put_policies", tenant, tenant,
                          f"{len(req.policies)} characters")

    def get_policies(self, principal: Principal, tenant: str) -> dict[str, Any]:
        self.guard.authorize(principal, "read", tenant)
        return {"policies": self.store.get_policies(tenant), "builtin": role_policies(tenant)}

    def audit_log(self, principal: Principal, tenant: str, limit: int = 100
                  ) -> list[dict[str, Any]]:
        self.guard.authorize(principal, "audit", tenant)
        if not 1 <= limit <= MAX_AUDIT_ENTRIES:
            raise BadRequest(f"limit must be 1..{MAX_AUDIT_ENTRIES}, got {limit}")
        return self.store.read_audit(tenant, limit)

    # -- databases ---------------------------------------------------------------------
    def create_database(self, principal: Principal, tenant: str, req: schema.DatabaseIn
                        ) -> dict[str, Any]:
        self.guard.authorize(principal, "admin", tenant)
        out = views.public(self.store.create_database(tenant, check_name("database", req.name)))
        self.guard.audit_admin(principal, "create_database", tenant, f"{tenant}/{req.name}")
        return out

    def list_databases(self, principal: Principal, tenant: str) -> list[dict[str, Any]]:
        self.guard.authorize(principal, "read", tenant)
        return [views.public(d) for d in self.store.list_databases(tenant)]

    def get_database(self, principal: Principal, tenant: str, database: str) -> dict[str, Any]:
        self.guard.authorize(principal, "read", tenant, check_name("database", database))
        return views.public(self.store.get_database(tenant, database))

    def delete_database(self, principal: Principal, tenant: str, database: str) -> None:
        self.guard.authorize(principal, "admin", tenant, check_name("database", database))
        self.engine.drop_collections(self.store.delete_database(tenant, database))
        self.guard.revoke(tenant)
        self.guard.audit_admin(principal, "delete_database", tenant, f"{tenant}/{database}")

    # -- collections -------------------------------------------------------------------
    def create_collection(self, principal: Principal, tenant: str, database: str,
                          req: schema.CollectionIn) -> dict[str, Any]:
        self.guard.authorize(principal, "admin", tenant, check_name("database", database))
        max_collections = self.guard.tenant_quotas(tenant).get("max_collections")
        if max_collections is not None and sum(
                c.row.tenant == tenant for c in self.engine.collections()) >= max_collections:
            raise QuotaExceeded(f"tenant {tenant!r} already has its quota of {max_collections} "
                                "collections")
        dimension = req.dimension
        if req.embedding is not None:
            model_dim = MODEL_DIMS[req.embedding]
            if dimension is not None and dimension != model_dim:
                raise Unprocessable(f"embedding {req.embedding!r} makes {model_dim}-d vectors; "
                                    f"dimension {dimension} does not match (omit it)")
            dimension = model_dim
        if dimension is None:
            raise BadRequest("dimension is required unless an embedding model is named")
        if dimension > self.limits.max_dimension:
            raise Unprocessable(f"dimension {dimension} exceeds the limit of "
                                f"{self.limits.max_dimension}")
        coll = self.engine.create_collection(
            check_name("tenant", tenant), check_name("database", database),
            check_name("collection", req.name), dimension=dimension, metric=req.metric,
            m=req.hnsw.m, ef_construction=req.hnsw.ef_construction, ef_search=req.hnsw.ef_search,
            embedding=req.embedding)
        self.guard.audit_admin(principal, "create_collection", tenant, coll.row.path)
        return views.collection_info(coll)

    def _collection(self, tenant: str, database: str, name: str) -> Collection:
        return self.engine.collection(check_name("tenant", tenant),
                                      check_name("database", database),
                                      check_name("collection", name))

    def get_collection(self, principal: Principal, tenant: str, database: str, name: str
                       ) -> dict[str, Any]:
        self.guard.authorize(principal, "read", tenant, database, name)
        return views.collection_info(self._collection(tenant, database, name))

    def list_collections(self, principal: Principal, tenant: str, database: str
                         ) -> list[dict[str, Any]]:
        self.guard.authorize(principal, "read", tenant, check_name("database", database))
        rows = self.store.list_collections(tenant, database)
        return [views.collection_info(self.engine.collection(r.tenant, r.database, r.name))
                for r in rows]

    def delete_collection(self, principal: Principal, tenant: str, database: str, name: str
                          ) -> None:
        self.guard.authorize(principal, "admin", tenant, database, name)
        coll = self._collection(tenant, database, name)
        self.store.delete_collection(coll.row.id)
        self.engine.drop_collections([coll.row.id])
        self.guard.audit_admin(principal, "delete_collection", tenant, coll.row.path)

    # -- documents ---------------------------------------------------------------------
    def _embed_missing(self, coll: Collection, batch: UpsertBatch) -> np.ndarray | None:
        """Fill the rows of documents sent without a vector from their text."""
        if not batch.missing:
            return batch.vectors
        texts = []
        for i in batch.missing:
            if coll.row.embedding is None:
                raise Unprocessable(f"documents[{i}] (id {batch.ids[i]!r}) has no vector; "
                                    f"collection {coll.row.path} has no embedding model to "
                                    "make one")
            text = batch.texts[i]
            if not text or not text.strip():
                raise Unprocessable(f"documents[{i}] (id {batch.ids[i]!r}) has neither a "
                                    "vector nor a text to embed")
            if len(text.encode()) > self.limits.max_text_bytes:
                raise PayloadTooLarge(f"documents[{i}].text is over "
                                      f"{self.limits.max_text_bytes} bytes")
            texts.append(text)
        with tracing.span("embed", **{"akidb.texts": len(texts)}):
            embedded = self.embedder.embed(texts)
        vectors = batch.vectors
        if vectors is None:
            vectors = np.zeros((len(batch.ids), embedded.shape[1]), dtype=np.float32)
        elif vectors.shape[1] != embedded.shape[1]:
            raise Unprocessable(f"vectors have dimension {vectors.shape[1]}, collection "
                                f"{coll.row.path} expects {coll.row.dimension}")
        vectors[batch.missing] = embedded
        return vectors

    def upsert(self, principal: Principal, tenant: str, database: str, name: str,
               batch: UpsertBatch, on_logged: Callable[[], None] | None = None
               ) -> dict[str, Any]:
        """Validate and durably apply one batch (``on_logged``: see Collection.upsert)."""
        self.guard.authorize(principal, "write", tenant, database, name)
        coll = self._collection(tenant, database, name)
        check_ids(batch.ids, self.limits)
        vectors = check_vectors(batch, self._embed_missing(coll, batch), coll.row.dimension,
                                coll.row.metric, coll.row.path)
        payloads = canonical_payloads(batch, self.limits)
        max_vectors = self.guard.tenant_quotas(tenant).get("max_vectors")
        if max_vectors is not None:
            current = sum(c.count for c in self.engine.collections() if c.row.tenant == tenant)
            fresh = sum(ext_id not in coll.labels for ext_id in batch.ids)
            if current + fresh > max_vectors:
                raise QuotaExceeded(f"tenant {tenant!r} holds {current} vectors; {fresh} more "
                                    f"would exceed its quota of {max_vectors} (batch rejected)")
        upserted = coll.upsert(batch.ids, vectors, batch.texts, payloads, on_logged)
        return {"upserted": upserted}

    def get_document(self, principal: Principal, tenant: str, database: str, name: str,
                     ext_id: str) -> dict[str, Any]:
        self.guard.authorize(principal, "read", tenant, database, name)
        doc = self._collection(tenant, database, name).get(ext_id)
        return {"id": doc.ext_id, "text": doc.text, "payload": doc.payload,
                "vector": views.vector_list(doc.vector)}

    def list_documents(self, principal: Principal, tenant: str, database: str, name: str,
                       after: str | None, limit: int, include: Sequence[str]
                       ) -> dict[str, Any]:
        """A page of documents in id order; ``next`` is the ``after`` of the next page."""
        self.guard.authorize(principal, "read", tenant, database, name)
        coll = self._collection(tenant, database, name)
        if not 1 <= limit <= self.limits.max_batch:
            raise Unprocessable(f"limit must be 1..{self.limits.max_batch}, got {limit}")
        unknown = sorted(set(include) - {"vector", "text", "payload"})
        if unknown:
            raise BadRequest(f"include may name vector, text and payload, not {unknown}")
        rows = self.store.list_documents(coll.row.id, after, limit, text="text" in include,
                                         payload="payload" in include,
                                         vector="vector" in include)
        docs = []
        for doc in rows:
            out: dict[str, Any] = {"id": doc.ext_id}
            if "vector" in include:
                out["vector"] = (None if doc.vector is None
                                 else np.frombuffer(doc.vector, dtype=np.float32))
            if "text" in include:
                out["text"] = doc.text
            if "payload" in include:
                out["payload"] = doc.payload
            docs.append(out)
        return {"documents": docs, "next": rows[-1].ext_id if len(rows) == limit else None}

    def delete_document(self, principal: Principal, tenant: str, database: str, name: str,
                        ext_id: str) -> dict[str, Any]:
        self.guard.authorize(principal, "write", tenant, database, name)
        return {"deleted": self._collection(tenant, database, name).delete([ext_id])}

    # -- search ------------------------------------------------------------------------
    def search(self, principal: Principal, tenant: str, database: str, name: str,
               req: schema.SearchIn, vector: np.ndarray | None = None) -> dict[str, Any]:
        """``vector`` may be passed pre-decoded (packed float32 transports)."""
        started = time.perf_counter()
        self.guard.authorize(principal, "search", tenant, database, name)
        coll = self._collection(tenant, database, name)
        results = self._answer(coll, req, vector)
        return {"results": results, "took_ms": (time.perf_counter() - started) * 1000.0}

    def search_batch(self, principal: Principal, tenant: str, database: str, name: str,
                     reqs: Sequence[schema.SearchIn],
                     vectors: Sequence[np.ndarray | None] | None = None) -> dict[str, Any]:
        """Many searches of one collection: one authorization, each search validated as a
        single one would be (an error names the search), plain vector searches with the
        same k and ef answered by one batched graph query."""
        started = time.perf_counter()
        self.guard.authorize(principal, "search", tenant, database, name)
        coll = self._collection(tenant, database, name)
        if not reqs:
            raise BadRequest("searches must not be empty")
        if len(reqs) > self.limits.max_batch_searches:
            raise PayloadTooLarge(f"{len(reqs)} searches in one call; the limit is "
                                  f"{self.limits.max_batch_searches}")
        queries = []
        for i, req in enumerate(reqs):
            try:
                queries.append(self._plan(coll, req, vectors[i] if vectors else None))
            except AkiError as exc:
                raise type(exc)(f"searches[{i}]: {exc.message}", details=exc.details) from None
        results = []
        for req, query, hits in zip(reqs, queries, coll.search_many(queries), strict=True):
            results.append({"results": self._shape(coll, req, query, hits)})
        return {"searches": results, "took_ms": (time.perf_counter() - started) * 1000.0}

    def _answer(self, coll: Collection, req: schema.SearchIn, vector: np.ndarray | None
                ) -> list[dict[str, Any]]:
        query = self._plan(coll, req, vector)
        return self._shape(coll, req, query, coll.search(query))

    def _shape(self, coll: Collection, req: schema.SearchIn, query: Query, hits: list[Hit]
               ) -> list[dict[str, Any]]:
        if req.include:
            hits = coll.attach_documents(hits, query)
        faults.delay("search_delay_ms")
        return views.hit_dicts(hits, req.include)

    def _plan(self, coll: Collection, req: schema.SearchIn, vector: np.ndarray | None
              ) -> Query:
        """Validate one search against its collection and say what is asked."""
        if req.k > self.limits.max_k:
            raise Unprocessable(f"k={req.k} exceeds the limit of {self.limits.max_k}")
        if vector is None and req.vector is not None:
            vector = schema.float32_vector(req.vector)
        if (vector is None and req.text and coll.row.embedding is not None
                and req.mode in (None, "vector", "hybrid")):
            # A text query on an embedding collection is semantic by default; "hybrid"
            # adds the FTS5 ranking, "text" uses FTS5 alone (and needs no model).
            vector = self.embed_texts([req.text])[0]
            mode = req.mode or "vector"
        else:
            mode = req.mode
        mode = mode or ("hybrid" if vector is not None and req.text else
                        "vector" if vector is not None else "text" if req.text else None)
        if mode is None:
            raise BadRequest("search needs a vector, a text, or both")
        if mode in ("vector", "hybrid"):
            if vector is None:
                raise BadRequest(f"mode {mode!r} needs a vector")
            if vector.shape != (coll.row.dimension,):
                raise Unprocessable(f"query vector has dimension {vector.shape[0]}, collection "
                                    f"{coll.row.path} expects {coll.row.dimension}")
            # count_nonzero is a C call; all() and any() go through numpy's Python
            # wrappers (~4% of a search's GIL time under load, py-spy).
            if np.count_nonzero(np.isfinite(vector)) != vector.size:
                raise Unprocessable("query vector contains NaN or infinity")
            if coll.row.metric == "cosine" and not np.count_nonzero(vector):
                raise Unprocessable("a zero query vector has no direction for cosine")
        if mode in ("text", "hybrid") and not req.text:
            raise BadRequest(f"mode {mode!r} needs a text")
        return Query(mode=mode, k=req.k, vector=vector if mode != "text" else None,
                     match=fts_query(req.text or "") if mode != "vector" else "",
                     filter=filters.parse(req.filter) if req.filter is not None else None,
                     ef=req.ef, alpha=req.alpha)

    # -- embeddings --------------------------------------------------------------------
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Validated texts → (n, dim) float32 from the embedder (Unavailable if it is down)."""
        check_texts(texts, self.limits)
        with tracing.span("embed", **{"akidb.texts": len(texts)}):
            return self.embedder.embed(texts)

    def embed(self, principal: Principal, req: schema.EmbedIn) -> tuple[np.ndarray,
                                                                         dict[str, Any]]:
        """Any authenticated caller may embed; tenant users count against their rate quota."""
        self.guard.charge_rate(principal)
        vectors = self.embed_texts(req.texts)
        status = self.embedder.status()
        return vectors, {"model": self.embedder.model, "dim": int(vectors.shape[1]),
                         "backend": backend_label(status)}

    # -- snapshots ---------------------------------------------------------------------
    def create_snapshot(self, principal: Principal, tenant: str, database: str, name: str
                        ) -> dict[str, Any]:
        self.guard.authorize(principal, "admin", tenant, database, name)
        coll = self._collection(tenant, database, name)
        snap = coll.snapshot()
        self.guard.audit_admin(principal, "snapshot", tenant, coll.row.path, str(snap.seq))
        return {"id": snap.path.name, "seq": snap.seq, "count": snap.meta["count"],
                "bytes": snap.meta["index_bytes"], "created_at": snap.meta["created_at"]}


