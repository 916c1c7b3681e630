"""A closed-loop HTTP load generator whose clients are processes, not threads.

Each client is a keep-alive connection sending pre-encoded requests as fast as answers
come back, from processes of ``akidb.bench.clients`` that each drive several
connections from one epoll loop (as ``wrk`` does): the leanest client there is, so the
figure is the server's. Latencies come back as HdrHistograms merged
across clients; every client's CPU is recorded and a saturated one flagged.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from akidb.bench.clients import process_loop


@dataclass(frozen=True)
class Request:
    url: str              # base URL, http://host:port
    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    more_bodies: tuple[bytes, ...] = ()  # sent in turn with ``body`` (several queries)

    def job(self) -> dict[str, Any]:
        return {"kind": "http", "url": self.url, "method": self.method, "path": self.path,
                "bodies": [base64.b64encode(b).decode() for b in (self.body,
                                                                  *self.more_bodies)],
                "headers": self.headers}


def closed_loop(req: Request, clients: int, duration_s: float) -> dict[str, Any]:
    """``clients`` connections for ``duration_s``: QPS, latency percentiles, client CPU."""
    return process_loop(req.job(), clients, duration_s)
