"""OpenAPI 3.1 document of the REST API, built from the route table (server/routes.py);
request schemas come from the routes' pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from akidb.server import __version__, schema
from akidb.server.routes import ROUTES, Route

_ERROR = {"$ref": "#/components/responses/Error"}
_ERRORS = {str(code): _ERROR for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)}


def _parameters(route: Route) -> list[dict[str, Any]]:
    out = [{"name": n, "in": "path", "required": True,
            "schema": {"type": "string",
                       "pattern": schema.ID_PATTERN if n == "doc_id" else schema.NAME_PATTERN}}
           for n in route.params]
    out += [{"name": q.name, "in": "query", "required": False, "schema": q.schema}
            for q in route.query]
    return out


def _operation(route: Route) -> dict[str, Any]:
    content = ({"text/plain": {"schema": {"type": "string"}}} if route.text_response
               else {"application/json": {"schema": {"type": "object"}}})
    op: dict[str, Any] = {
        "operationId": route.name,
        "summary": route.summary,
        "parameters": _parameters(route),
        "responses": {str(route.status): {"description": "success", "content": content},
                      **_ERRORS},
    }
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}}}}
    if route.public:
        op["security"] = []
    return op


@cache
def openapi_document() -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        if route.body is not None and route.body.__name__ not in components:
            js = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[route.body.__name__] = js
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
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
