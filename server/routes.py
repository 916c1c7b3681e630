"""The REST API's one route table: Flask registration, the OpenAPI document and the
client's URLs are all built from it, so they cannot drift apart.

A route names its handler (``name``: the REST handler in ``api/rest.py`` and the
operation the client calls), its method and path (OpenAPI ``{param}`` style), the
request model, the success status, and whether a retry is safe (``idempotent``:
reads, searches and embeddings; never writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from akidb.server import schema
from akidb.server.config import Limits

# An upsert body may be an Arrow IPC stream instead of JSON (server/api/arrow.py).
ARROW_STREAM = "application/vnd.apache.arrow.stream"

T = "/v1/tenants/{tenant}"
D = T + "/databases/{database}"
C = D + "/collections/{collection}"


@dataclass(frozen=True)
class QueryParam:
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    summary: str
    body: type[BaseModel] | None = None
    status: int = 200
    public: bool = False          # no API key needed
    idempotent: bool = False      # safe to retry after a transport error or a 503
    query: tuple[QueryParam, ...] = ()
    text_response: bool = False   # text/plain instead of JSON

    @property
    def params(self) -> list[str]:
        return [seg[1:-1] for seg in self.path.split("/") if seg.startswith("{")]

    @property
    def flask_rule(self) -> str:
        return self.path.replace("{", "<").replace("}", ">")

    def url(self, **values: str) -> str:
        """The path with each parameter filled in and percent-encoded."""
        missing = set(self.params) - set(values)
        if missing:
            raise TypeError(f"route {self.name} needs {sorted(missing)}")
        out = self.path
        for name in self.params:
            out = out.replace("{" + name + "}", quote(str(values[name]), safe=""))
        return out


_LIST_DOCUMENTS_QUERY = (
    QueryParam("after", {"type": "string"}),
    QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": Limits.max_batch}),
    QueryParam("include", {"type": "string", "pattern": "^((vector|text|payload)(,|$))*$"}),
)

ROUTES: tuple[Route, ...] = (
    Route("health", "GET", "/health", "Liveness", public=True, idempotent=True),
    Route("ready", "GET", "/ready", "Readiness: 503 until recovery completes", public=True,
          idempotent=True),
    Route("metrics", "GET", "/metrics", "Prometheus metrics (per-collection series need the "
          "admin key or the scrape token)", public=True, idempotent=True, text_response=True),
    Route("openapi", "GET", "/openapi.json", "This document", public=True, idempotent=True),
    Route("create_tenant", "POST", "/v1/tenants", "Create a tenant", schema.TenantIn, 201),
    Route("list_tenants", "GET", "/v1/tenants", "List tenants", idempotent=True),
    Route("get_tenant", "GET", T, "Get a tenant", idempotent=True),
    Route("delete_tenant", "DELETE", T, "Delete a tenant and its data"),
    Route("create_user", "POST", T + "/users", "Create a user; its API key is shown once",
          schema.UserIn, 201),
    Route("list_users", "GET", T + "/users", "List users", idempotent=True),
    Route("delete_user", "DELETE", T + "/users/{user}", "Delete a user and revoke its keys"),
    Route("create_key", "POST", T + "/users/{user}/keys", "Create another API key", status=201),
    Route("revoke_key", "DELETE", T + "/users/{user}/keys/{key_id}", "Revoke an API key"),
    Route("put_policies", "PUT", T + "/policies", "Replace the tenant's custom Cedar policies",
          schema.PoliciesIn),
    Route("get_policies", "GET", T + "/policies", "The tenant's custom and built-in policies",
          idempotent=True),
    Route("audit_log", "GET", T + "/audit", "Audit log of denials and admin actions",
          idempotent=True, query=(QueryParam("limit", {"type": "integer", "minimum": 1,
                                                       "maximum": 10_000}),)),
    Route("create_database", "POST", T + "/databases", "Create a database", schema.DatabaseIn,
          201),
    Route("list_databases", "GET", T + "/databases", "List databases", idempotent=True),
    Route("get_database", "GET", D, "Get a database", idempotent=True),
    Route("delete_database", "DELETE", D, "Delete a database"),
    Route("create_collection", "POST", D + "/collections", "Create a collection",
          schema.CollectionIn, 201),
    Route("list_collections", "GET", D + "/collections", "List collections", idempotent=True),
    Route("get_collection", "GET", C, "Get a collection", idempotent=True),
    Route("delete_collection", "DELETE", C, "Delete a collection"),
    Route("upsert", "POST", C + "/documents", "Upsert documents (acknowledged = durable)",
          schema.UpsertIn),
    Route("list_documents", "GET", C + "/documents", "Page through documents in id order; "
          "'next' is the after of the next page", idempotent=True, query=_LIST_DOCUMENTS_QUERY),
    Route("get_document", "GET", C + "/documents/{doc_id}", "Get a document", idempotent=True),
    Route("delete_document", "DELETE", C + "/documents/{doc_id}", "Delete a document"),
    Route("search", "POST", C + "/search", "Vector, text or hybrid search", schema.SearchIn,
          idempotent=True),
    Route("search_batch", "POST", C + "/search/batch", "Many searches of one collection in "
          "one call (one authorization, results in order)", schema.SearchBatchIn,
          idempotent=True),
    Route("snapshot", "POST", C + "/snapshots", "Snapshot the index and truncate the log",
          status=201),
    Route("embed", "POST", "/v1/embed", "Embed texts with the server's model (503 while it is "
          "down)", schema.EmbedIn, idempotent=True),
    Route("faults", "GET", "/v1/admin/faults", "Failpoints (servers started with "
          "AKIDB_FAULT_INJECTION=1)", idempotent=True),
    Route("set_faults", "PUT", "/v1/admin/faults", "Set failpoints (AKIDB_FAULT_INJECTION=1)",
          schema.FaultsIn),
)

BY_NAME: dict[str, Route] = {r.name: r for r in ROUTES}


def route(name: str) -> Route:
    return BY_NAME[name]
