"""The REST API's WSGI callable: per-request bookkeeping around the Flask app, and the
data-plane routes answered without Flask's per-request machinery.

Measured in process (the WSGI app called directly, 20k x 384, one thread), a vector
search through Flask cost 525-806 us against 394-523 us for the same parse, service
call and JSON encoding called directly: Flask's request and app contexts, its hook
walk, the werkzeug ``Request``/``Response`` objects and ~15 context-local lookups per
request were as much Python as the search itself, all of it holding the GIL that the
request threads share.

So, for every request, this front does what hooks did (a request id, the latency and
status metrics, the failure log, the ``X-Request-Id`` header), and for the routes in
``hot`` (search, batch search, upsert) whose path Flask has matched before (the
remembered table of ``flask_app.AkiFlask``) it calls the route's one handler itself
with the view arguments from that match. Everything else, including the first request
on each path, a body without a plain ``Content-Length`` and every request while
tracing is on (its spans live in Flask's hooks), goes through Flask, which calls the
same handlers. Answers, errors and headers are the same either way: both paths encode
errors with ``error_answer``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import orjson
from flask import Response, request

from akidb.server import tracing
from akidb.server.api.flask_app import AkiFlask
from akidb.server.errors import AkiError, Internal
from akidb.server.metrics import Metrics

log = logging.getLogger("akidb.rest")

REQUEST_ID = "akidb.request_id"
"""The environ key of the request's id: the client's ``X-Request-Id`` if it sent one,
else a fresh one (a trace id when tracing is on)."""
ROUTE = "akidb.route"
"""The environ key of the matched route's rule (set by Flask's hook, or here)."""

HotHandler = Callable[..., Any]
"""``handler(environ, **view_args) -> JSON-able answer`` (status 200)."""

JSON = "application/json"
_STATUS_LINES: dict[int, str] = {}


def status_line(code: int) -> str:
    line = _STATUS_LINES.get(code)
    if line is None:
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Unknown"
        line = _STATUS_LINES[code] = f"{code} {phrase}"
    return line


def new_request_id(environ: dict[str, Any]) -> str:
    # Not os.urandom: it releases the GIL around its syscall, one more hand-off per
    # request for threads that queue to take it back (py-spy: 11% of the request
    # threads' samples under load). Ids need to be unique, not secret.
    return environ.get("HTTP_X_REQUEST_ID") or f"{random.getrandbits(64):016x}"


def json_body(answer: Any) -> bytes:
    """A JSON answer's bytes (numpy arrays and scalars as numbers): one encoding for both
    paths and every route."""
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


def error_answer(exc: AkiError) -> tuple[int, list[tuple[str, str]], bytes]:
    """An API error as (status, headers, JSON body): one encoding for both paths."""
    headers = [("Content-Type", JSON)]
    if isinstance(exc.details, dict) and "retry_after" in exc.details:
        headers.append(("Retry-After", str(max(1, math.ceil(exc.details["retry_after"])))))
    return exc.http_status, headers, orjson.dumps(exc.to_dict())


def internal_error(request_id: str | None) -> Internal:
    """What an unexpected exception becomes, logged with its traceback."""
    log.exception("unhandled error", extra={"request_id": request_id})
    return Internal(f"internal error (request id {request_id}); see server log")


class RestFront:
    """WSGI callable: bookkeeping for every request, hot routes straight to handlers."""

    def __init__(self, flask: AkiFlask, hot: dict[str, HotHandler], metrics: Metrics) -> None:
        self.flask = flask
        self.hot = hot
        self.metrics = metrics
        _install_flask_side(flask)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        environ[REQUEST_ID] = new_request_id(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        handler, view_args = self._hot_route(environ, method)
        status: int
        if handler is not None:
            status, headers, body = self._answer(handler, environ, view_args)
            headers.append(("Content-Length", str(len(body))))
            headers.append(("X-Request-Id", environ[REQUEST_ID]))
            start_response(status_line(status), headers)
            chunks: Iterable[bytes] = [body]
        else:
            seen: list[str] = []

            def start(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                seen.append(line)
                # Read now, not before: tracing's hook replaces the id with the trace id.
                headers.append(("X-Request-Id", environ[REQUEST_ID]))
                return start_response(line, headers, exc_info)

            chunks = self.flask(environ, start)
            status = int(seen[-1][:3]) if seen else 500
        elapsed = time.perf_counter() - started
        self.metrics.observe(environ.get(ROUTE, "unmatched"), method, status, elapsed)
        if status >= 400:
            log.info("request failed", extra={"request_id": environ[REQUEST_ID],
                                              "method": method,
                                              "path": environ.get("PATH_INFO", ""),
                                              "status": status, "ms": round(elapsed * 1000, 3)})
        return chunks

    def _hot_route(self, environ: dict[str, Any], method: str
                   ) -> tuple[HotHandler | None, dict[str, Any]]:
        if tracing.ENABLED:
            return None, {}
        hit = self.flask.remembered_routes.get((method, environ.get("PATH_INFO", "")))
        if hit is None:
            return None, {}
        handler = self.hot.get(hit[0].endpoint)
        length = environ.get("CONTENT_LENGTH") or ""
        if handler is None or not (length.isascii() and length.isdigit()):
            return None, {}
        environ[ROUTE] = hit[0].rule
        return handler, hit[1]

    def _answer(self, handler: HotHandler, environ: dict[str, Any], view_args: dict[str, Any]
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            answer = handler(environ, **view_args)
            return 200, [("Content-Type", JSON)], json_body(answer)
        except AkiError as exc:
            return error_answer(exc)
        except Exception:
            return error_answer(internal_error(environ.get(REQUEST_ID)))


def _install_flask_side(flask: AkiFlask) -> None:
    """What Flask's path needs from the front: the matched route recorded for the
    metrics (first of the app's hooks, so an early refusal keeps its route), and API
    errors and unexpected exceptions encoded as the hot path encodes them."""

    def record_route() -> None:
        rule = request.url_rule
        if rule is not None:
            request.environ[ROUTE] = rule.rule

    flask.before_request_funcs.setdefault(None, []).insert(0, record_route)

    @flask.errorhandler(AkiError)
    def _api_error(exc: AkiError) -> Response:
        status, headers, content = error_answer(exc)
        return Response(content, status=status, headers=headers)

    @flask.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return _api_error(internal_error(request.environ.get(REQUEST_ID)))
