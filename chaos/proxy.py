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
from collections.abc import Coroutine
from typing import Any

from akidb.chaos.toxics import CloseConnection, Toxic

CHUNK = 32 * 1024


class ProxyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
        pumps = [asyncio.ensure_future(self._pump(client_r, upstream_w, "upstream", chosen,
                                                  client_w)),
                 asyncio.ensure_future(self._pump(upstream_r, client_w, "downstream", chosen,
                                                  client_w))]
        try:
            # The connection ends when either direction ends (close, reset or error).
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, upstream_w):
                writer.close()
            self._connections.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    stream: str, chosen: dict[str, bool], client: asyncio.StreamWriter) -> None:
        state: dict[str, Any] = {"toxics": self.toxics}
        try:
            while True:
                chunk = await reader.read(CHUNK)
                active = [t for t in list(self.toxics.values()) if t.stream == stream
                          and chosen.setdefault(t.name, t.applies(self._rng))]
                if not chunk:
                    for toxic in active:
                        if toxic.type == "slow_close":
                            await asyncio.sleep(toxic.attributes["delay"] / 1000)
                    raise CloseConnection()
                pieces = [chunk]
                for toxic in active:
                    pieces = [out for piece in pieces
                              for out in await toxic.transform(piece, state)]
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    if state.get("slice_delay"):
                        await asyncio.sleep(state["slice_delay"])
                if state.pop("close_after", False):
                    raise CloseConnection()
        except CloseConnection as close:
            if close.reset:
                _reset(client)
            raise


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
        if not name:
            raise ProxyError(400, "proxy name is required")
        _split(upstream)
        with self._lock:
            if name in self.proxies:
                raise ProxyError(409, f"proxy {name} already exists")
            proxy = Proxy(name, listen or "127.0.0.1:0", upstream, False)
            if enabled:
                self.run(proxy.start())
            self.proxies[name] = proxy
        return proxy

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise ProxyError(404, f"proxy not found: {name}")
        return proxy

    def update(self, name: str, body: dict[str, Any]) -> Proxy:
        proxy = self.get(name)
        with self._lock:
            restart = False
            for key in ("listen", "upstream"):
                if key in body and body[key] != getattr(proxy, key):
                    _split(body[key])
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
