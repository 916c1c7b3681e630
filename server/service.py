"""Every operation the server offers, in one place: validate, authorize, execute.

REST (and later gRPC) handlers only translate between their wire format and
these methods; no operation is implemented twice. Arguments arrive as the
schema models (or, for the hot data plane, as numpy arrays), results leave as
plain dicts ready to serialize.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from server import schema
from server.auth.keys import Principal
from server.collection import Collection, Hit
from server.config import Limits
from server.engine import Engine
from server.errors import BadRequest, PayloadTooLarge, PermissionDenied, Unprocessable
from server.query import filters

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
ID_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/]")
WORD_RE = re.compile(r"\w+", re.UNICODE)


@dataclass
class UpsertBatch:
    """A validated-shape batch: one float32 row per document."""

    ids: list[str]
    vectors: np.ndarray | None
    texts: list[str | None]
    payloads: list[dict[str, Any]]


def check_name(kind: str, name: str) -> str:
    """Names become URL segments and log labels: keep them plain (no traversal)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise BadRequest(f"invalid {kind} name {name!r}: use 1-64 letters, digits, '_' or '-',"
                         " starting with a letter or digit")
    return name


def fts_query(text: str) -> str:
    """Free text → an FTS5 query: every word quoted (no operator injection), ORed."""
    words = WORD_RE.findall(text)
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words[:64])


class Service:
    def __init__(self, engine: Engine, limits: Limits) -> None:
        self.engine = engine
        self.store = engine.store
        self.limits = limits

    # -- authorization -----------------------------------------------------------------
    def _authorize(self, principal: Principal, action: str, tenant: str | None = None) -> None:
        if not principal.is_admin:
            raise PermissionDenied(f"{principal.name} may not {action}"
                                   + (f" in tenant {tenant!r}" if tenant else ""))

    # -- status ------------------------------------------------------------------------
    def ready(self) -> bool:
        return self.engine.ready

    # -- tenants -----------------------------------------------------------------------
    def create_tenant(self, principal: Principal, req: schema.TenantIn) -> dict[str, Any]:
        self._authorize(principal, "create tenants")
        return _public(self.store.create_tenant(check_name("tenant", req.name), req.quotas))

    def list_tenants(self, principal: Principal) -> list[dict[str, Any]]:
        self._authorize(principal, "list tenants")
        return [_public(t) for t in self.store.list_tenants()]

    def get_tenant(self, principal: Principal, tenant: str) -> dict[str, Any]:
        self._authorize(principal, "read tenants", tenant)
        return _public(self.store.get_tenant(check_name("tenant", tenant)))

    def delete_tenant(self, principal: Principal, tenant: str) -> None:
        self._authorize(principal, "delete tenants", tenant)
        self.engine.drop_collections(self.store.delete_tenant(check_name("tenant", tenant)))

    # -- databases ---------------------------------------------------------------------
    def create_database(self, principal: Principal, tenant: str, req: schema.DatabaseIn
                        ) -> dict[str, Any]:
        self._authorize(principal, "create databases", tenant)
        return _public(self.store.create_database(check_name("tenant", tenant),
                                                  check_name("database", req.name)))

    def list_databases(self, principal: Principal, tenant: str) -> list[dict[str, Any]]:
        self._authorize(principal, "list databases", tenant)
        return [_public(d) for d in self.store.list_databases(check_name("tenant", tenant))]

    def get_database(self, principal: Principal, tenant: str, database: str) -> dict[str, Any]:
        self._authorize(principal, "read databases", tenant)
        return _public(self.store.get_database(check_name("tenant", tenant),
                                               check_name("database", database)))

    def delete_database(self, principal: Principal, tenant: str, database: str) -> None:
        self._authorize(principal, "delete databases", tenant)
        self.engine.drop_collections(self.store.delete_database(
            check_name("tenant", tenant), check_name("database", database)))

    # -- collections -------------------------------------------------------------------
    def create_collection(self, principal: Principal, tenant: str, database: str,
                          req: schema.CollectionIn) -> dict[str, Any]:
        self._authorize(principal, "create collections", tenant)
        if req.dimension > self.limits.max_dimension:
            raise Unprocessable(f"dimension {req.dimension} exceeds the limit of "
                                f"{self.limits.max_dimension}")
        coll = self.engine.create_collection(
            check_name("tenant", tenant), check_name("database", database),
            check_name("collection", req.name), dimension=req.dimension, metric=req.metric,
            m=req.hnsw.m, ef_construction=req.hnsw.ef_construction, ef_search=req.hnsw.ef_search)
        return _collection_info(coll)

    def _collection(self, tenant: str, database: str, name: str) -> Collection:
        return self.engine.collection(check_name("tenant", tenant),
                                      check_name("database", database),
                                      check_name("collection", name))

    def get_collection(self, principal: Principal, tenant: str, database: str, name: str
                       ) -> dict[str, Any]:
        self._authorize(principal, "read collections", tenant)
        return _collection_info(self._collection(tenant, database, name))

    def list_collections(self, principal: Principal, tenant: str, database: str
                         ) -> list[dict[str, Any]]:
        self._authorize(principal, "list collections", tenant)
        rows = self.store.list_collections(check_name("tenant", tenant),
                                           check_name("database", database))
        return [_collection_info(self.engine.collection(r.tenant, r.database, r.name))
                for r in rows]

    def delete_collection(self, principal: Principal, tenant: str, database: str, name: str
                          ) -> None:
        self._authorize(principal, "delete collections", tenant)
        coll = self._collection(tenant, database, name)
        self.store.delete_collection(coll.row.id)
        self.engine.drop_collections([coll.row.id])

    # -- documents ---------------------------------------------------------------------
    def batch_from_request(self, req: schema.UpsertIn) -> UpsertBatch:
        docs = req.documents
        if not docs:
            raise BadRequest("documents must not be empty")
        for i, d in enumerate(docs):
            if d.vector is None:
                raise Unprocessable(f"documents[{i}] (id {d.id!r}) has no vector; this "
                                    "collection has no embedding model to make one")
        lengths = sorted({len(d.vector) for d in docs})  # type: ignore[arg-type]
        if len(lengths) > 1:
            raise Unprocessable(f"documents have vectors of different lengths: {lengths}")
        vectors = np.asarray([d.vector for d in docs], dtype=np.float32)
        return UpsertBatch([d.id for d in docs], vectors, [d.text for d in docs],
                           [d.payload or {} for d in docs])

    def upsert(self, principal: Principal, tenant: str, database: str, name: str,
               batch: UpsertBatch) -> dict[str, Any]:
        self._authorize(principal, "write documents", tenant)
        coll = self._collection(tenant, database, name)
        lim = self.limits
        n = len(batch.ids)
        if n == 0:
            raise BadRequest("documents must not be empty")
        if n > lim.max_batch:
            raise PayloadTooLarge(f"{n} documents in one request; the limit is {lim.max_batch}")
        seen: set[str] = set()
        for i, ext_id in enumerate(batch.ids):
            if not ext_id or len(ext_id) > lim.max_id_length or ID_FORBIDDEN.search(ext_id):
                raise BadRequest(f"documents[{i}].id {ext_id[:80]!r} is invalid: 1-"
                                 f"{lim.max_id_length} characters, no '/' or control characters")
            if ext_id in seen:
                raise BadRequest(f"documents[{i}].id {ext_id!r} appears twice in the batch")
            seen.add(ext_id)
        vectors = batch.vectors
        dim = coll.row.dimension
        if vectors is None or vectors.ndim != 2 or vectors.shape[0] != n:
            raise Unprocessable("every document needs a vector")
        if vectors.shape[1] != dim:
            raise Unprocessable(f"vectors have dimension {vectors.shape[1]}, collection "
                                f"{coll.row.path} expects {dim}")
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            i = int(np.argmin(finite))
            raise Unprocessable(f"documents[{i}] (id {batch.ids[i]!r}): vector contains NaN or "
                                "infinity (or a value too large for float32)")
        if coll.row.metric == "cosine":
            zero = ~np.any(vectors != 0, axis=1)
            if zero.any():
                i = int(np.argmax(zero))
                raise Unprocessable(f"documents[{i}] (id {batch.ids[i]!r}): a zero vector has "
                                    "no direction for cosine similarity")
        payloads: list[str] = []
        for i, (payload, text) in enumerate(zip(batch.payloads, batch.texts, strict=True)):
            encoded = _canonical_json(payload, f"documents[{i}].payload")
            if len(encoded) > lim.max_payload_bytes:
                raise PayloadTooLarge(f"documents[{i}].payload is {len(encoded)} bytes; the "
                                      f"limit is {lim.max_payload_bytes}")
            if text is not None and len(text.encode()) > lim.max_text_bytes:
                raise PayloadTooLarge(f"documents[{i}].text is over {lim.max_text_bytes} bytes")
            payloads.append(encoded)
        upserted = coll.upsert(batch.ids, np.ascontiguousarray(vectors), batch.texts, payloads)
        return {"upserted": upserted}

    def get_document(self, principal: Principal, tenant: str, database: str, name: str,
                     ext_id: str) -> dict[str, Any]:
        self._authorize(principal, "read documents", tenant)
        doc = self._collection(tenant, database, name).get(ext_id)
        return {"id": doc.ext_id, "text": doc.text, "payload": doc.payload,
                "vector": _vector_list(doc.vector)}

    def delete_document(self, principal: Principal, tenant: str, database: str, name: str,
                        ext_id: str) -> dict[str, Any]:
        self._authorize(principal, "write documents", tenant)
        return {"deleted": self._collection(tenant, database, name).delete([ext_id])}

    # -- search ------------------------------------------------------------------------
    def search(self, principal: Principal, tenant: str, database: str, name: str,
               req: schema.SearchIn, vector: np.ndarray | None = None) -> dict[str, Any]:
        """``vector`` may be passed pre-decoded (packed float32 transports)."""
        started = time.perf_counter()
        self._authorize(principal, "search", tenant)
        coll = self._collection(tenant, database, name)
        if req.k > self.limits.max_k:
            raise Unprocessable(f"k={req.k} exceeds the limit of {self.limits.max_k}")
        if vector is None and req.vector is not None:
            vector = np.asarray(req.vector, dtype=np.float32)
        mode = req.mode or ("hybrid" if vector is not None and req.text else
                            "vector" if vector is not None else "text" if req.text else None)
        if mode is None:
            raise BadRequest("search needs a vector, a text, or both")
        if mode in ("vector", "hybrid"):
            if vector is None:
                raise BadRequest(f"mode {mode!r} needs a vector")
            if vector.shape != (coll.row.dimension,):
                raise Unprocessable(f"query vector has dimension {vector.shape[0]}, collection "
                                    f"{coll.row.path} expects {coll.row.dimension}")
            if not np.isfinite(vector).all():
                raise Unprocessable("query vector contains NaN or infinity")
            if coll.row.metric == "cosine" and not vector.any():
                raise Unprocessable("a zero query vector has no direction for cosine")
        if mode in ("text", "hybrid") and not req.text:
            raise BadRequest(f"mode {mode!r} needs a text")
        flt = filters.parse(req.filter) if req.filter is not None else None

        if mode == "vector":
            hits = coll.vector_search(vector, req.k, req.ef, flt)
        else:
            # Text ranking runs in SQLite (FTS5), so the filter goes along as SQL there.
            where = filters.to_sql(flt) if flt is not None else ("1", [])
            match = fts_query(req.text or "")
            if not match:
                hits = [] if mode == "text" else coll.vector_search(vector, req.k, req.ef, flt)
            elif mode == "text":
                hits = coll.text_search(match, req.k, where)
            else:
                hits = coll.hybrid_search(vector, match, req.k, req.ef, flt, where, req.alpha)
        if req.include:
            coll.attach_documents(hits)
        return {"results": [_hit_dict(h, req.include) for h in hits],
                "took_ms": (time.perf_counter() - started) * 1000.0}

    # -- snapshots ---------------------------------------------------------------------
    def create_snapshot(self, principal: Principal, tenant: str, database: str, name: str
                        ) -> dict[str, Any]:
        self._authorize(principal, "create snapshots", tenant)
        coll = self._collection(tenant, database, name)
        snap = coll.snapshot()
        return {"id": snap.path.name, "seq": snap.seq, "count": snap.meta["count"],
                "bytes": snap.meta["index_bytes"], "created_at": snap.meta["created_at"]}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("id",)}


def _collection_info(coll: Collection) -> dict[str, Any]:
    row = coll.row
    return {"name": row.name, "tenant": row.tenant, "database": row.database,
            "dimension": row.dimension, "metric": row.metric, "count": coll.count,
            "hnsw": {"m": row.m, "ef_construction": row.ef_construction,
                     "ef_search": row.ef_search},
            "created_at": row.created_at, **{k: v for k, v in coll.stats().items()
                                             if k != "count"}}


def _canonical_json(payload: dict[str, Any], where: str) -> str:
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, sort_keys=True)
    except ValueError:
        raise Unprocessable(f"{where} contains NaN or infinity, which JSON cannot hold") from None


def _vector_list(blob: bytes | None) -> list[float] | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).tolist()


def _hit_dict(hit: Hit, include: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": hit.ext_id, "score": hit.score if math.isfinite(hit.score)
                           else None}
    doc = hit.document
    if doc is not None:
        if "payload" in include:
            out["payload"] = doc.payload
        if "text" in include:
            out["text"] = doc.text
        if "vector" in include:
            out["vector"] = _vector_list(doc.vector)
    return out
