"""The Toxiproxy HTTP API over ``ProxyServer``: what toxiproxy-python and the upstream
clients call (``/proxies``, ``/proxies/{name}``, ``/proxies/{name}/toxics[/{toxic}]``,
``/populate``, ``/reset``, ``/version``), with Toxiproxy's status codes."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import orjson
from flask import Flask, Response, request
from waitress import wasyncore
from waitress.server import create_server
from werkzeug.exceptions import HTTPException

from akidb.chaos.proxy import ProxyError, ProxyServer
from akidb.chaos.toxics import Toxic, ToxicError

VERSION = "2.9.0-akidb"
REQUEST_ID_HEADER = "X-Toxiproxy-Request-Id"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    """Upstream's error body: ``{"error": message, "status": code}``."""
    return _json({"error": message, "status": status}, status)


def _body() -> Any:
    try:
        return orjson.loads(request.get_data() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, f"bad request body: {exc}") from None


def _object() -> dict[str, Any]:
    body = _body()
    if not isinstance(body, dict):
        raise ProxyError(400, "bad request body: expected a JSON object")
    return body


def create_api(server: ProxyServer) -> Flask:
    """Every route, method, status code and error body of Toxiproxy 2.x's ``api.go``.
    Updates take POST (deprecated upstream) or PATCH; browsers are refused with 403
    (a cross-site page must not be able to cut a test's network)."""
    app = Flask("akidb-chaos")

    @app.before_request
    def _refuse_browsers() -> Response | None:
        if request.headers.get("User-Agent", "").startswith("Mozilla/"):
            return Response("User agent not allowed\n", status=403, mimetype="text/plain")
        return None

    @app.after_request
    def _request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = uuid.uuid4().hex[:20]
        return response

    @app.errorhandler(ProxyError)
    def _proxy_error(exc: ProxyError) -> Response:
        return _error(exc.status, str(exc))

    @app.errorhandler(ToxicError)
    def _toxic_error(exc: ToxicError) -> Response:
        return _error(400, str(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # Unknown routes and methods answer in the same JSON shape as every other error.
        response = _error(exc.code or 500, f"{exc.name}: {request.method} {request.path}")
        if exc.code == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.get("/version")
    def version() -> Response:
        return Response(orjson.dumps({"version": VERSION}) + b"\n",
                        content_type="application/json;charset=utf-8")

    @app.post("/reset")
    def reset() -> Response:
        server.reset()
        return Response(status=204)

    @app.get("/proxies")
    def proxies() -> Response:
        return _json({name: p.to_json() for name, p in server.proxies.items()})

    @app.post("/proxies")
    def create() -> Response:
        body = _object()
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ProxyError(400, "bad request body: enabled must be a boolean")
        proxy = server.create(str(body.get("name") or ""), str(body.get("listen") or ""),
                              str(body.get("upstream") or ""), enabled)
        return _json(proxy.to_json(), 201)

    @app.post("/populate")
    def populate() -> Response:
        body = _body()
        # Upstream takes a JSON array; toxiproxy-python sends {"proxies": [...]}.
        items = body.get("proxies") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise ProxyError(400, "bad request body: populate takes a list of proxies")
        made = server.populate(items)
        return _json({"proxies": [p.to_json() for p in made]}, 201)

    @app.get("/proxies/<name>")
    def get(name: str) -> Response:
        return _json(server.get(name).to_json())

    @app.route("/proxies/<name>", methods=["POST", "PATCH"])
    def update(name: str) -> Response:
        return _json(server.update(name, _object()).to_json())

    @app.delete("/proxies/<name>")
    def delete(name: str) -> Response:
        server.delete(name)
        return Response(status=204)

    @app.get("/proxies/<name>/toxics")
    def toxics(name: str) -> Response:
        return _json([t.to_json() for t in server.get(name).toxics.values()])

    @app.post("/proxies/<name>/toxics")
    def add_toxic(name: str) -> Response:
        proxy = server.get(name)
        toxic = Toxic.from_json(_body())
        if toxic.name in proxy.toxics:
            raise ProxyError(409, f"toxic already exists: {toxic.name}")
        proxy.toxics[toxic.name] = toxic
        return _json(toxic.to_json())

    def _found(name: str, toxic: str) -> Toxic:
        found = server.get(name).toxics.get(toxic)
        if found is None:
            raise ProxyError(404, f"toxic not found: {toxic}")
        return found

    @app.get("/proxies/<name>/toxics/<toxic>")
    def get_toxic(name: str, toxic: str) -> Response:
        return _json(_found(name, toxic).to_json())

    @app.route("/proxies/<name>/toxics/<toxic>", methods=["POST", "PATCH"])
    def update_toxic(name: str, toxic: str) -> Response:
        updated = _found(name, toxic).updated(_body())
        server.get(name).toxics[toxic] = updated
        return _json(updated.to_json())

    @app.delete("/proxies/<name>/toxics/<toxic>")
    def delete_toxic(name: str, toxic: str) -> Response:
        _found(name, toxic)
        server.get(name).toxics.pop(toxic, None)
        return Response(status=204)

    return app


class ChaosProxy:
    """The proxy plus its HTTP API on ``host:port`` (port 0 picks one), in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8474) -> None:
        self.server = ProxyServer()
        self.http = create_server(create_api(self.server), host=host, port=port, threads=4,
                                  ident="akidb-chaos")
        self.host = host
        self.port = int(self.http.effective_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ChaosProxy:
        self._thread = threading.Thread(target=self.http.run, name="chaos-api", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.http.task_dispatcher.shutdown(timeout=5)
        # Closing every channel (not just the listener) lets the accept loop end now. It
        # is done from the loop's own thread: closed from here, a socket could vanish
        # under the loop's select() (EBADF in the chaos-api thread, seen in a CI run).
        thread = self._thread
        if thread is not None and thread.is_alive():
            self.http.trigger.pull_trigger(lambda: wasyncore.close_all(self.http._map))
            thread.join(5)
        if thread is None or thread.is_alive():
            wasyncore.close_all(self.http._map)
        self.server.close()

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
