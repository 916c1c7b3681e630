"""The Toxiproxy HTTP API over ``ProxyServer``: what toxiproxy-python and the upstream
clients call (``/proxies``, ``/proxies/{name}``, ``/proxies/{name}/toxics[/{toxic}]``,
``/populate``, ``/reset``, ``/version``), with Toxiproxy's status codes."""

from __future__ import annotations

import threading
from typing import Any

import orjson
from flask import Flask, Response, request
from waitress import wasyncore
from waitress.server import create_server

from akidb.chaos.proxy import ProxyError, ProxyServer
from akidb.chaos.toxics import Toxic, ToxicError

VERSION = "2.9.0-akidb"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message, "status": status}, status)


def _body() -> Any:
    try:
        return orjson.loads(request.get_data() or b"{}")
    except orjson.JSONDecodeError as exc:
        raise ProxyError(400, f"bad request body: {exc}") from None


def create_api(server: ProxyServer) -> Flask:
    app = Flask("akidb-chaos")

    @app.errorhandler(ProxyError)
    def _proxy_error(exc: ProxyError) -> Response:
        return _error(exc.status, str(exc))

    @app.errorhandler(ToxicError)
    def _toxic_error(exc: ToxicError) -> Response:
        return _error(400, str(exc))

    @app.get("/version")
    def version() -> Response:
        return Response(VERSION, mimetype="text/plain")

    @app.post("/reset")
    def reset() -> Response:
        server.reset()
        return Response(status=204)

    @app.get("/proxies")
    def proxies() -> Response:
        return _json({name: p.to_json() for name, p in server.proxies.items()})

    @app.post("/proxies")
    def create() -> Response:
        body = _body()
        if not isinstance(body, dict):
            raise ProxyError(400, "proxy must be a JSON object")
        proxy = server.create(str(body.get("name", "")), str(body.get("listen", "")),
                              str(body.get("upstream", "")), bool(body.get("enabled", True)))
        return _json(proxy.to_json(), 201)

    @app.post("/populate")
    def populate() -> Response:
        body = _body()
        items = body.get("proxies", body) if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise ProxyError(400, "populate takes a list of proxies")
        made = []
        for item in items:
            existing = server.proxies.get(item.get("name", ""))
            if existing and (existing.upstream != item.get("upstream")
                             or existing.listen != item.get("listen", existing.listen)):
                server.delete(existing.name)
                existing = None
            proxy = existing or server.create(item.get("name", ""), item.get("listen", ""),
                                              item.get("upstream", ""),
                                              bool(item.get("enabled", True)))
            made.append(proxy.to_json())
        return _json({"proxies": made}, 201)

    @app.get("/proxies/<name>")
    def get(name: str) -> Response:
        return _json(server.get(name).to_json())

    @app.post("/proxies/<name>")
    def update(name: str) -> Response:
        return _json(server.update(name, _body()).to_json())

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
            raise ProxyError(409, f"toxic {toxic.name} already exists")
        proxy.toxics[toxic.name] = toxic
        return _json(toxic.to_json())

    @app.get("/proxies/<name>/toxics/<toxic>")
    def get_toxic(name: str, toxic: str) -> Response:
        found = server.get(name).toxics.get(toxic)
        if found is None:
            raise ProxyError(404, f"toxic not found: {toxic}")
        return _json(found.to_json())

    @app.post("/proxies/<name>/toxics/<toxic>")
    def update_toxic(name: str, toxic: str) -> Response:
        proxy = server.get(name)
        found = proxy.toxics.get(toxic)
        if found is None:
            raise ProxyError(404, f"toxic not found: {toxic}")
        updated = Toxic.from_json({**_body(), "name": toxic}, existing=found)
        proxy.toxics[toxic] = updated
        return _json(updated.to_json())

    @app.delete("/proxies/<name>/toxics/<toxic>")
    def delete_toxic(name: str, toxic: str) -> Response:
        if server.get(name).toxics.pop(toxic, None) is None:
            raise ProxyError(404, f"toxic not found: {toxic}")
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
        # Closing every channel (not just the listener) lets the accept loop end now.
        wasyncore.close_all(self.http._map)
        if self._thread is not None:
            self._thread.join(5)
        self.server.close()

    def __enter__(self) -> ChaosProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
