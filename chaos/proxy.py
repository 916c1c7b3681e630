"""The proxies: asyncio TCP forwarders whose two directions pass through toxics.

Toxics are read per chunk, so adding or removing one takes effect on live
connections, as in Toxiproxy. ``ProxyServer`` owns the event loop (in a thread)
and every proxy; the HTTP API calls into it from other threads.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from akidb.chaos.toxics import Chunk, CloseConnection, Toxic

CHUNK = 32 * 1024
QUEUE_CHUNKS = 1024  # upstream's latency buffer; the reader waits when it is full
TIMEOUT_POLL_S = 0.01
IDLE_POLL_S = 0.1


class ProxyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _check_fields(name: str, upstream: str, where: str = "") -> None:
    for field, value in (("name", name), ("upstream", upstream)):
        if not value:
            raise ProxyError(400, f"missing required field: {field}{where}")
    _split(upstream)


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ProxyError(400, f"address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


class Proxy:
    def __init__(self, name: str, listen: str, upstream: str, enabled: bool) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.enabled = enabled
        self.toxics: dict[str, Toxic] = {}
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._rng = random.Random()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.to_json() for t in self.toxics.values()]}

    async def start(self) -> None:
        host, port = _split(self.listen)
        try:
            self._server = await asyncio.start_server(self._accept, host, port,
                                                      reuse_address=True)
        except OSError as exc:
            raise ProxyError(409 if exc.errno == 98 else 400,
                             f"cannot listen on {self.listen}: {exc.strerror}") from None
        bound = self._server.sockets[0].getsockname()
        self.listen = f"{host}:{bound[1]}"
        self.enabled = True

    async def stop(self) -> None:
        """Stop listening and drop every connection (disable / delete)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.enabled = False

    async def _accept(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        host, port = _split(self.upstream)
        try:
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            self._connections.discard(task)
            return
        chosen: dict[str, bool] = {}  # toxicity is rolled once per connection and toxic
        parts = [asyncio.ensure_future(self._pump(client_r, upstream_w, "upstream", chosen,
                                                  client_w)),
                 asyncio.ensure_future(self._pump(upstream_r, client_w, "downstream", chosen,
                                                  client_w)),
                 asyncio.ensure_future(self._watch_timeouts(chosen))]
        try:
            # The connection ends when either direction ends (close, reset or error).
            await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # stop() drops the connection. End quietly: this task is the server's
            # connection callback, and on Python 3.11 a callback task that ends
            # cancelled is logged as an error by asyncio's stream protocol.
            pass
        finally:
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
            for writer in (client_w, upstream_w):
                writer.close()
            self._connections.discard(task)

    def _active(self, stream: str | None, chosen: dict[str, bool]) -> list[Toxic]:
        return [t for t in list(self.toxics.values())
                if (stream is None or t.stream == stream)
                and chosen.setdefault(t.name, t.applies(self._rng))]

    async def _watch_timeouts(self, chosen: dict[str, bool]) -> None:
        """``timeout`` toxics close the connection ``timeout`` ms after they started on
        it, and at once when removed (upstream's Cleanup); data flow plays no part."""
        loop = asyncio.get_running_loop()
        started: dict[str, tuple[Toxic, float]] = {}
        while True:
            now = loop.time()
            for toxic in self._active(None, chosen):
                if toxic.type == "timeout":
                    first = started.setdefault(toxic.name, (toxic, now))[1]
                    if toxic.attributes["timeout"] and \
                            now - first >= toxic.attributes["timeout"] / 1000:
                        return
            if any(self.toxics.get(name) is None or self.toxics[name].type != "timeout"
                   for name in started):
                return
            # Closely while a timeout toxic is on this connection; otherwise rarely (a new
            # one starts its timer at most IDLE_POLL_S late), so idle connections cost little.
            await asyncio.sleep(TIMEOUT_POLL_S if started else IDLE_POLL_S)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    stream: str, chosen: dict[str, bool], client: asyncio.StreamWriter) -> None:
        """One direction: a reader stamps chunks as they arrive; the writer passes each
        through the toxics active now (so changes reach live connections) in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize=QUEUE_CHUNKS)

        async def read() -> None:
            while chunk := await reader.read(CHUNK):
                await queue.put(Chunk(chunk, loop.time()))
            await queue.put(None)

        states: dict[str, dict[str, Any]] = {}
        reading = asyncio.ensure_future(read())
        try:
            while True:
                chunk = await queue.get()
                active = self._active(stream, chosen)
                if chunk is None:
                    for toxic in active:
                        if toxic.type == "slow_close":
                            await asyncio.sleep(toxic.attributes["delay"] / 1000)
                    raise CloseConnection()
                pieces: AsyncIterator[Chunk] = _one(chunk)
                for toxic in active:
                    pieces = toxic.pipe(pieces, states.setdefault(toxic.name, {}))
                async for piece in pieces:
                    writer.write(piece.data)
                    await writer.drain()
                if any(state.pop("close", False) for state in states.values()):
                    raise CloseConnection()
        except CloseConnection as close:
            if close.reset:
                _reset(client)
            raise
        finally:
            reading.cancel()


async def _one(chunk: Chunk) -> AsyncIterator[Chunk]:
    yield chunk


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0), as reset_peer promises."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ProxyServer:
    """All proxies, on one event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="chaos-proxy",
                                        daemon=True)
        self._thread.start()
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def create(self, name: str, listen: str, upstream: str, enabled: bool = True) -> Proxy:
        _check_fields(name, upstream)
        with self._lock:
            if name in self.proxies:
                raise ProxyError(409, f"proxy already exists: {name}")
            proxy = Proxy(name, listen or "127.0.0.1:0", upstream, False)
            if enabled:
                self.run(proxy.start())
            self.proxies[name] = proxy
        return proxy

    def populate(self, items: list[Any]) -> list[Proxy]:
        """Create or replace each proxy; a proxy whose fields are unchanged keeps its
        connections and toxics. Every entry is checked before any is touched."""
        for i, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise ProxyError(400, f"bad request body: proxy {i} is not an object")
            _check_fields(str(item.get("name") or ""), str(item.get("upstream") or ""),
                          f" at proxy {i}")
            if "enabled" in item and not isinstance(item["enabled"], bool):
                raise ProxyError(400, f"bad request body: enabled at proxy {i} is not a "
                                      "boolean")
        made = []
        for item in items:
            existing = self.proxies.get(item["name"])
            if existing and (existing.upstream != item["upstream"]
                             or existing.listen != item.get("listen", existing.listen)):
                self.delete(existing.name)
                existing = None
            made.append(existing or self.create(item["name"], item.get("listen", ""),
                                                item["upstream"], item.get("enabled", True)))
        return made

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ProxyError(404, f"proxy not found: {name}")
        return proxy

    def update(self, name: str, body: dict[str, Any]) -> Proxy:
        """Changing ``listen`` or ``upstream`` restarts the proxy and drops its
        connections; ``enabled`` false takes it down, true brings it back."""
        proxy = self.get(name)
        for key in ("listen", "upstream"):
            if key in body:
                if not isinstance(body[key], str):
                    raise ProxyError(400, f"bad request body: {key} must be a string")
                _split(body[key])
        if "enabled" in body and not isinstance(body["enabled"], bool):
            raise ProxyError(400, "bad request body: enabled must be a boolean")
        with self._lock:
            restart = False
            for key in ("listen", "upstream"):
                if key in body and body[key] != getattr(proxy, key):
                    setattr(proxy, key, body[key])
                    restart = True
            enabled = body.get("enabled", proxy.enabled)
            if proxy.enabled and (restart or not enabled):
                self.run(proxy.stop())
            if enabled and not proxy.enabled:
                self.run(proxy.start())
        return proxy

    def delete(self, name: str) -> None:
        proxy = self.get(name)
        with self._lock:
            self.run(proxy.stop())
            del self.proxies[name]

    def reset(self) -> None:
        """Re-enable every proxy and remove every toxic."""
        for proxy in list(self.proxies.values()):
            proxy.toxics.clear()
            if not proxy.enabled:
                self.run(proxy.start())

    def close(self) -> None:
        for name in list(self.proxies):
            self.delete(name)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
