"""OpenAPI 3.1 document of the REST API; request schemas come from the pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from akidb.server import __version__, schema
from pydantic import BaseModel

C = "/v1/tenants/{tenant}/databases/{database}/collections/{collection}"
_ERROR = {"$ref": "#/components/responses/Error"}
_ERRORS = {str(code): _ERROR for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)}


def _params(path: str) -> list[dict[str, Any]]:
    names = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    return [{"name": n, "in": "path", "required": True,
             "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
                        if n != "id" else "^[^/\\x00-\\x1f]{1,256}$"}} for n in names]


def _op(summary: str, path: str, body: type[BaseModel] | None = None, status: int = 200,
        public: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": _params(path),
        "responses": {str(status): {"description": "success", "content": {
            "application/json": {"schema": {"type": "object"}}}}, **_ERRORS},
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}}
    if public:
        op["security"] = []
    return op


def _list_documents_op() -> dict[str, Any]:
    op = _op("Page through documents in id order (?after=ID&limit=N&include=vector,text,"
             "payload); 'next' is the after of the next page", C + "/documents")
    op["parameters"] += [
        {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 5000}},
        {"name": "include", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": "^((vector|text|payload)(,|$))*$"}}]
    return op


@cache
def openapi_document() -> dict[str, Any]:
    models = [schema.TenantIn, schema.DatabaseIn, schema.CollectionIn, schema.UpsertIn,
              schema.SearchIn, schema.UserIn, schema.PoliciesIn, schema.EmbedIn]
    components: dict[str, Any] = {}
    for model in models:
        js = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(js.pop("$defs", {}))
        components[model.__name__] = js
    t, d = "/v1/tenants/{tenant}", "/v1/tenants/{tenant}/databases/{database}"
    paths: dict[str, Any] = {
        "/health": {"get": _op("Liveness", "/health", public=True)},
        "/ready": {"get": _op("Readiness: 503 until recovery completes", "/ready", public=True)},
        "/metrics": {"get": {**_op("Prometheus metrics", "/metrics", public=True),
                             "responses": {"200": {"description": "Prometheus text format",
                                                   "content": {"text/plain": {
                                                       "schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": _op("This document", "/openapi.json", public=True)},
        "/v1/tenants": {"post": _op("Create a tenant", "/v1/tenants", schema.TenantIn, 201),
                        "get": _op("List tenants", "/v1/tenants")},
        t: {"get": _op("Get a tenant", t), "delete": _op("Delete a tenant and its data", t)},
        t + "/users": {"post": _op("Create a user; its API key is shown once", t + "/users",
                                   schema.UserIn, 201),
                       "get": _op("List users", t + "/users")},
        t + "/users/{user}": {"delete": _op("Delete a user and revoke its keys",
                                            t + "/users/{user}")},
        t + "/users/{user}/keys": {"post": _op("Create another API key", t + "/users/{user}/keys",
                                               status=201)},
        t + "/users/{user}/keys/{key_id}": {"delete": _op("Revoke an API key",
                                                          t + "/users/{user}/keys/{key_id}")},
        t + "/policies": {"put": _op("Replace the tenant's custom Cedar policies",
                                     t + "/policies", schema.PoliciesIn),
                          "get": _op("The tenant's custom and built-in policies",
                                     t + "/policies")},
        t + "/audit": {"get": _op("Audit log of denials and admin actions", t + "/audit")},
        t + "/databases": {
            "post": _op("Create a database", t + "/databases", schema.DatabaseIn, 201),
            "get": _op("List databases", t + "/databases")},
        d: {"get": _op("Get a database", d), "delete": _op("Delete a database", d)},
        d + "/collections": {
            "post": _op("Create a collection", d + "/collections", schema.CollectionIn, 201),
            "get": _op("List collections", d + "/collections")},
        C: {"get": _op("Get a collection", C), "delete": _op("Delete a collection", C)},
        C + "/documents": {"post": _op("Upsert documents (acknowledged = durable)",
                                       C + "/documents", schema.UpsertIn),
                           "get": _list_documents_op()},
        C + "/documents/{id}": {"get": _op("Get a document", C + "/documents/{id}"),
                                "delete": _op("Delete a document", C + "/documents/{id}")},
        C + "/search": {"post": _op("Vector, text or hybrid search", C + "/search",
                                    schema.SearchIn)},
        C + "/snapshots": {"post": _op("Snapshot the index and truncate the log",
                                       C + "/snapshots", status=201)},
        "/v1/embed": {"post": _op("Embed texts with the server's model (503 while it is down)",
                                  "/v1/embed", schema.EmbedIn)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "AkiDB reference server", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {**components, "Error": {
                "type": "object", "required": ["error"],
                "properties": {"error": {"type": "object", "required": ["code", "message"],
                                         "properties": {"code": {"type": "string"},
                                                        "message": {"type": "string"}}}}}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
