"""An optional REST front on granian (a Rust HTTP server): ``akidb serve --http-server granian``.

Connections, HTTP parsing and response writes run in Rust threads; only the Flask app
holds the GIL, so throughput rises with concurrent clients where the waitress front
(its I/O loop is Python) flattens. The trade-off, measured (NOTES, hardening): a slow
request body holds one of granian's Python worker threads with no timeout, and past
its concurrency limit it stops accepting, where the waitress front sheds connections
and times slow requests out. With its default of 2 request threads (fewer GIL
contenders: a shorter tail, see config.DEFAULT_THREADS) two such bodies stall it.
The default stays waitress; pick this one behind a proxy that buffers request bodies,
or for benchmarks of the database rather than its front.

granian's thread-worker server refuses to start on a Python with the GIL (it was made
for free-threaded builds); the check is lifted here, which is safe for one worker: the
app runs on granian's blocking threads like any WSGI server's.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("akidb.http")


class GranianFront:
    def __init__(self, app: Any, *, host: str, port: int, threads: int,
                 connection_limit: int, request_timeout_s: float) -> None:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings
        from granian.server.common import AbstractServer
        from granian.server.mt import MTServer

        from akidb.harness.process import free_port

        class _Server(MTServer):  # type: ignore[misc]
            def _check_gil(self) -> None:
                pass

            def serve(self, *args: Any, **kwargs: Any) -> None:
                AbstractServer.serve(self, *args, **kwargs)

        # granian binds the socket itself: a port of 0 is resolved here first.
        self.port = port or free_port(host)
        self.host = host
        self.app = app
        timeout_ms = int(min(max(request_timeout_s, 0.001), 60.0) * 1000)
        self._server = _Server(
            "akidb", address=host, port=self.port, interface=Interfaces.WSGI,
            blocking_threads=threads, backpressure=connection_limit, http=HTTPModes.http1,
            http1_settings=HTTP1Settings(header_read_timeout=timeout_ms),
            log_enabled=False, websockets=False)

    @property
    def effective_port(self) -> int:
        return self.port

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (granian installs its own handlers)."""
        self._server.serve(target_loader=lambda *_a, **_k: whole_bodies(self.app),
                           wrap_loader=False)

    def stop(self) -> None:
        self._server.signal_handler_interrupt()

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, int]:
        return {"open": 0, "shed": 0, "timed_out": 0, "idle_closed": 0}


def whole_bodies(app: Any) -> Any:
    """The WSGI app, answering with a one-item list. granian sends a list in one call
    but walks any other iterable from Rust, taking the GIL back for every item; Flask
    returns werkzeug's ``ClosingIterator`` even for a buffered JSON body, and that walk
    was ~9% of the GIL time of a search under load (py-spy). The API's bodies are
    built whole anyway (JSON, the metrics exposition), so nothing streams."""

    def app_with_whole_body(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        chunks = app(environ, start_response)
        try:
            return [b"".join(chunks)]
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    return app_with_whole_body
