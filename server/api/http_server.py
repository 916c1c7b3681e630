"""The REST port's HTTP server: waitress, with limits that keep it serving under abuse.

waitress reads each request completely (headers and body) in its I/O loop before a
worker thread sees it, so slow clients never hold a worker. What it lacked, and what
this adds:

- a connection limit that never stops the accept loop: past the limit the server
  still accepts and sheds the newest idle connection (one that has been connected
  for over a second without a request in progress), or the new one if none is
  idle, with a 503; waitress itself stopped accepting, so ~200 idle sockets kept
  even ``/health`` waiting;
- a bound on the time to receive one request (headers and body): slowloris-style
  dribbling keeps a connection "active" forever under an idle timeout alone;
- an idle timeout for keep-alive connections with nothing in flight;
- poll() instead of select(), which cannot watch descriptors past 1024.
"""

from __future__ import annotations

import logging
import resource
import time
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer

log = logging.getLogger("akidb.http")
# A new connection is given this long to start its request before it may be shed.
SHED_GRACE_S = 1.0
_SHED_BODY = (b'{"error": {"code": "unavailable", "message": "connection limit reached; '
              b'retry later"}}')
_SHED_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                  b"Content-Type: application/json\r\nRetry-After: 1\r\n"
                  b"Content-Length: " + str(len(_SHED_BODY)).encode() + b"\r\n\r\n"
                  + _SHED_BODY)


class _Channel(HTTPChannel):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.created = time.monotonic()
        self.request_started = 0.0  # when the request now being received began to arrive
        super().__init__(*args, **kwargs)

    def received(self, data: bytes) -> bool:
        receiving = self.request is not None
        out = super().received(data)
        if self.request is None:
            self.request_started = 0.0
        elif not receiving:
            self.request_started = time.monotonic()
        return out

    def is_idle(self) -> bool:
        return not self.requests and self.request is None and not self.total_outbufs_len


class HttpServer(TcpWSGIServer):
    channel_class = _Channel

    def __init__(self, app: Any, *, host: str, port: int, threads: int, max_body_bytes: int,
                 connection_limit: int, idle_timeout_s: float, request_timeout_s: float
                 ) -> None:
        self.connection_limit = connection_limit
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        self.shed = 0
        self.timed_out = 0
        self.idle_closed = 0
        adj = Adjustments(host=host, port=port, threads=threads,
                          max_request_body_size=max_body_bytes, ident="akidb",
                          clear_untrusted_proxy_headers=True, asyncore_use_poll=True,
                          # limits are enforced here (readable/maintenance below)
                          connection_limit=1 << 30, channel_timeout=1 << 30,
                          cleanup_interval=1)
        super().__init__(app, map={}, adj=adj)

    # waitress calls readable() every loop turn; it stops accepting past its own limit.
    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        return bool(self.accepting)

    def handle_accept(self) -> None:
        before = set(self.active_channels)
        super().handle_accept()
        if len(self.active_channels) <= self.connection_limit:
            return
        new = [c for fd, c in self.active_channels.items() if fd not in before]
        now = time.monotonic()
        idle = [c for c in self.active_channels.values()
                if c not in new and c.is_idle() and now - c.created > SHED_GRACE_S]
        self.shed += 1
        if idle:
            max(idle, key=lambda c: c.created).handle_close()
            return
        for channel in new:
            try:
                channel.socket.send(_SHED_RESPONSE)
            except OSError:
                pass
            channel.handle_close()

    def maintenance(self, now: float) -> None:
        """Close idle keep-alive connections and requests that take too long to arrive."""
        mono = time.monotonic()
        for channel in list(self.active_channels.values()):
            if channel.will_close:
                continue
            started = getattr(channel, "request_started", 0.0)
            if started and mono - started > self.request_timeout_s:
                self.timed_out += 1
                channel.will_close = True
            elif channel.is_idle() and now - channel.last_activity > self.idle_timeout_s:
                self.idle_closed += 1
                channel.will_close = True

    def close(self) -> None:
        super().close()
        self.task_dispatcher.shutdown(timeout=5)

    def stats(self) -> dict[str, int]:
        return {"open": len(self.active_channels), "shed": self.shed,
                "timed_out": self.timed_out, "idle_closed": self.idle_closed}


def raise_open_file_limit(wanted: int) -> int:
    """Lift the soft RLIMIT_NOFILE towards the hard one so ``wanted`` sockets fit beside
    the server's own files (many systems default the soft limit to 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, wanted)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
