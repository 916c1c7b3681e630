"""REST transport: Flask routes that translate HTTP to ``Service`` calls and back."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from flask import Response, g, request
from werkzeug.exceptions import HTTPException

from akidb.server import faults, schema, tracing
from akidb.server.api import arrow, search_body
from akidb.server.api.flask_app import AkiFlask
from akidb.server.api.openapi import openapi_document
from akidb.server.api.rest_front import REQUEST_ID, RestFront, json_body
from akidb.server.auth.keys import KeyAuthenticator, Principal
from akidb.server.batches import UpsertBatch
from akidb.server.errors import (
    AkiError,
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from akidb.server.metrics import Metrics
from akidb.server.routes import ARROW_STREAM, BY_NAME, ROUTES
from akidb.server.service import Service


def _json(body: Any, status: int = 200) -> Response:
    return Response(json_body(body), status=status, mimetype="application/json")


# Answered by RestFront without Flask once their path has been matched (rest_front.py).
HOT_ROUTES = ("search", "search_batch", "upsert")


def create_app(service: Service, auth: KeyAuthenticator, metrics: Metrics,
               max_body_bytes: int, metrics_token: str = "") -> RestFront:
    app = AkiFlask("akidb")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    # Handlers read the WSGI environ itself: werkzeug's header view, content-length
    # parsing and limited stream were ~9% of the GIL time of a search under load (py-spy).
    # Hot handlers are handed the environ; the others read Flask's request's.
    def principal(environ: dict[str, Any] | None = None) -> Principal:
        environ = request.environ if environ is None else environ
        return auth.authenticate(environ.get("HTTP_AUTHORIZATION"))

    def body(environ: dict[str, Any] | None = None) -> bytes:
        environ = request.environ if environ is None else environ
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isascii() and length.isdigit():
            size = int(length)
            if size > max_body_bytes:
                raise PayloadTooLarge(f"request body is {size} bytes; the limit is "
                                      f"{max_body_bytes}")
            data = environ["wsgi.input"].read(size) if size else b""
            if len(data) != size:
                raise BadRequest(f"request body ended after {len(data)} of {size} bytes")
        else:  # chunked or a malformed length (never a hot route's): werkzeug decides
            data = request.get_data(cache=False)
        if not data:
            raise BadRequest("request body is empty; send a JSON object")
        return data

    def needs_ready() -> None:
        if not service.ready():
            raise Unavailable("server is recovering; retry when /ready answers 200")

    if tracing.ENABLED:  # hooks only when tracing is on: off, a request pays nothing
        @app.before_request
        def _start_span() -> None:
            # The request's span, child of the caller's traceparent; its trace id is the
            # request id, so logs and traces join up.
            route = request.url_rule.rule if request.url_rule is not None else "unmatched"
            g.span_scope = tracing.server_span(f"{request.method} {route}", request.headers,
                                               **{"http.request.method": request.method,
                                                  "http.route": route})
            g.span = g.span_scope.__enter__()
            trace_id = tracing.trace_id()
            if trace_id:
                request.environ[REQUEST_ID] = trace_id

        @app.after_request
        def _span_status(response: Response) -> Response:
            if "span" in g:
                tracing.set_status(g.span, response.status_code < 500,
                                   **{"http.response.status_code": response.status_code})
            return response

        @app.teardown_request
        def _end_span(exc: BaseException | None) -> None:
            scope = g.pop("span_scope", None)
            if scope is not None:
                scope.__exit__(None, None, None)

    # Request ids, metrics, the failure log and the encoding of API errors and
    # unexpected exceptions are RestFront's (rest_front.py), for every request.
    @app.before_request
    def _readiness() -> None:
        if request.environ.get("PATH_INFO", "").startswith("/v1/"):
            needs_ready()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        mapped: AkiError
        if exc.code == 404:
            mapped = NotFound(f"no route {request.method} {request.path}")
        elif exc.code == 405:
            mapped = MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
            response = _json(mapped.to_dict(), 405)
            allowed = getattr(exc, "valid_methods", None) or []
            response.headers["Allow"] = ", ".join(sorted(allowed))
            return response
        elif exc.code == 413:
            mapped = PayloadTooLarge(f"request body exceeds the limit of {max_body_bytes} bytes")
        else:
            mapped = BadRequest(exc.description or str(exc))
            mapped.http_status = exc.code or 400
        return _json(mapped.to_dict(), mapped.http_status)

    # -- operational -------------------------------------------------------------------
    def health() -> Response:
        return _json({"status": "ok"})

    def ready() -> Response:
        if service.ready():
            body: dict[str, Any] = {"status": "ready", "embedder": service.embedder.status()}
            if service.engine.shipper is not None:
                body["object_store"] = service.engine.shipper.status()
            return _json(body)
        return _json(Unavailable("recovering").to_dict(), 503)

    def metrics_() -> Response:
        # Anonymous scrapes get totals only; per-collection series name tenants, so they
        # need the scrape token (Prometheus `authorization` / bearer_token) or the admin
        # key. With a token configured, anonymous scrapes are refused altogether.
        header = request.headers.get("Authorization")
        detail = False
        if header is not None or metrics_token:
            scheme, _, token = (header or "").partition(" ")
            if metrics_token and scheme.lower() == "bearer" and hmac.compare_digest(
                    token.strip().encode(), metrics_token.encode()):
                detail = True
            else:
                detail = auth.authenticate(header).is_admin
        return Response(metrics.render(detail), mimetype="text/plain; version=0.0.4")

    def openapi() -> Response:
        return _json(openapi_document())

    # -- tenants and databases ---------------------------------------------------------
    def create_tenant() -> Response:
        return _json(service.create_tenant(principal(), schema.parse(schema.TenantIn, body())),
                     201)

    def list_tenants() -> Response:
        return _json({"tenants": service.list_tenants(principal())})

    def get_tenant(tenant: str) -> Response:
        return _json(service.get_tenant(principal(), tenant))

    def delete_tenant(tenant: str) -> Response:
        service.delete_tenant(principal(), tenant)
        return _json({"deleted": tenant})

    def create_user(tenant: str) -> Response:
        who = principal()
        return _json(service.create_user(who, tenant, schema.parse(schema.UserIn, body())), 201)

    def list_users(tenant: str) -> Response:
        return _json({"users": service.list_users(principal(), tenant)})

    def delete_user(tenant: str, user: str) -> Response:
        service.delete_user(principal(), tenant, user)
        return _json({"deleted": user})

    def create_key(tenant: str, user: str) -> Response:
        return _json(service.create_key(principal(), tenant, user), 201)

    def revoke_key(tenant: str, user: str, key_id: str) -> Response:
        service.revoke_key(principal(), tenant, user, key_id)
        return _json({"revoked": key_id})

    def put_policies(tenant: str) -> Response:
        who = principal()
        service.put_policies(who, tenant, schema.parse(schema.PoliciesIn, body()))
        return _json(service.get_policies(who, tenant))

    def get_policies(tenant: str) -> Response:
        return _json(service.get_policies(principal(), tenant))

    def audit_log(tenant: str) -> Response:
        who = principal()
        try:
            limit = int(request.args.get("limit", "100"))
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        return _json({"entries": service.audit_log(who, tenant, limit)})

    def create_database(tenant: str) -> Response:
        req = schema.parse(schema.DatabaseIn, body())
        return _json(service.create_database(principal(), tenant, req), 201)

    def list_databases(tenant: str) -> Response:
        return _json({"databases": service.list_databases(principal(), tenant)})

    def get_database(tenant: str, database: str) -> Response:
        return _json(service.get_database(principal(), tenant, database))

    def delete_database(tenant: str, database: str) -> Response:
        service.delete_database(principal(), tenant, database)
        return _json({"deleted": database})

    # -- collections -------------------------------------------------------------------
    def create_collection(tenant: str, database: str) -> Response:
        req = schema.parse(schema.CollectionIn, body())
        return _json(service.create_collection(principal(), tenant, database, req), 201)

    def list_collections(tenant: str, database: str) -> Response:
        return _json({"collections": service.list_collections(principal(), tenant, database)})

    def get_collection(tenant: str, database: str, collection: str) -> Response:
        return _json(service.get_collection(principal(), tenant, database, collection))

    def delete_collection(tenant: str, database: str, collection: str) -> Response:
        service.delete_collection(principal(), tenant, database, collection)
        return _json({"deleted": collection})

    # -- documents, search, snapshots --------------------------------------------------
    # Hot handlers: (environ, view args) -> the JSON answer (status 200).
    def upsert(environ: dict[str, Any], tenant: str, database: str, collection: str) -> Any:
        who = principal(environ)
        content_type = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if content_type == ARROW_STREAM:
            batch = arrow.decode_upsert(body(environ))
        else:
            batch = batch_from_request(schema.parse(schema.UpsertIn, body(environ)))
        return service.upsert(who, tenant, database, collection, batch)

    def list_documents(tenant: str, database: str, collection: str) -> Response:
        try:
            limit = int(request.args.get("limit", "1000"))
        except ValueError:
            raise BadRequest(f"limit must be an integer, got {request.args['limit']!r}") from None
        include = [x for x in request.args.get("include", "vector,text,payload").split(",") if x]
        return _json(service.list_documents(principal(), tenant, database, collection,
                                            request.args.get("after"), limit, include))

    def get_document(tenant: str, database: str, collection: str, doc_id: str) -> Response:
        return _json(service.get_document(principal(), tenant, database, collection, doc_id))

    def delete_document(tenant: str, database: str, collection: str, doc_id: str) -> Response:
        return _json(service.delete_document(principal(), tenant, database, collection, doc_id))

    def search(environ: dict[str, Any], tenant: str, database: str, collection: str) -> Any:
        who = principal(environ)
        req, vector = search_body.decode_search(body(environ))
        return service.search(who, tenant, database, collection, req, vector)

    def search_batch(environ: dict[str, Any], tenant: str, database: str,
                     collection: str) -> Any:
        who = principal(environ)
        reqs, vectors = search_body.decode_search_batch(body(environ))
        return service.search_batch(who, tenant, database, collection, reqs, vectors)

    def snapshot(tenant: str, database: str, collection: str) -> Response:
        return _json(service.create_snapshot(principal(), tenant, database, collection), 201)

    def faults_() -> Response:
        service.guard.require_admin(principal(), "inject faults")
        return _json({"enabled": faults.ENABLED, "faults": faults.current()})

    def set_faults() -> Response:
        service.guard.require_admin(principal(), "inject faults")
        try:
            changes = orjson.loads(body())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"malformed JSON: {exc}") from None
        return _json({"enabled": True, "faults": faults.update(changes)})

    def embed() -> Response:
        who = principal()
        vectors, info = service.embed(who, schema.parse(schema.EmbedIn, body()))
        return _json({**info, "embeddings": vectors})

    handlers = {name.rstrip("_"): fn for name, fn in locals().items()
                if callable(fn) and name.rstrip("_") in BY_NAME}
    missing = set(BY_NAME) - set(handlers)
    if missing:
        raise RuntimeError(f"routes without a REST handler: {sorted(missing)}")
    hot = {name: handlers[name] for name in HOT_ROUTES}
    for r in ROUTES:
        view = handlers[r.name]
        if r.name in hot:  # the first request on a path, and all while tracing
            view = _flask_view(view)
        app.add_url_rule(r.flask_rule, r.name, view, methods=[r.method])
    return RestFront(app, hot, metrics)


def _flask_view(handler: Any) -> Any:
    def view(**view_args: str) -> Response:
        return _json(handler(request.environ, **view_args))

    return view


def batch_from_request(req: schema.UpsertIn) -> UpsertBatch:
    """The JSON documents of an upsert request as one batch (REST's decoding)."""
    docs = req.documents
    if not docs:
        raise BadRequest("documents must not be empty")
    rows = [None if d.vector is None else schema.float32_vector(d.vector) for d in docs]
    return UpsertBatch.from_rows([d.id for d in docs], rows, [d.text for d in docs],
                                 [d.payload or {} for d in docs])
