"""A closed-loop HTTP load generator whose clients are processes, not threads.

A Python client thread shares one GIL with every other thread of its process, so a
threaded load generator tops out near the rate one core can build requests (~1.2k/s
here) and reports that ceiling as the server's. Each client here is its own process
with one keep-alive connection, sending a pre-encoded request as fast as answers come
back. Every client reports its latencies and its own CPU time; a client busy more than
``SATURATED`` of the wall time was the bottleneck, and the result says so.
"""

from __future__ import annotations

import http.client
import multiprocessing as mp
import resource
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

SATURATED = 0.9  # a client on CPU for this share of the run could not go faster


@dataclass(frozen=True)
class Request:
    url: str              # base URL, http://host:port
    method: str
    path: str
    body: bytes
    headers: dict[str, str]


def _client(req: Request, ready: Any, go: Any, window: Any, out: Any) -> None:
    parts = urlsplit(req.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    latencies: list[float] = []
    errors = 0
    ready.put(1)
    go.wait()
    # Every client stops at the same instant: a late starter shortens its own run
    # rather than stretching the window the rate is computed over.
    start, end = window[0], window[1]
    while time.time() < start:
        time.sleep(0.001)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    while True:
        t0 = time.time()
        if t0 >= end:
            break
        try:
            conn.request(req.method, req.path, body=req.body, headers=req.headers)
            response = conn.getresponse()
            response.read()
            if response.status >= 400:
                errors += 1
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            continue
        latencies.append(time.time() - t0)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out.put((np.asarray(latencies, dtype=np.float64), errors, cpu, max(end - start, 1e-9)))


def closed_loop(req: Request, clients: int, duration_s: float) -> dict[str, Any]:
    """``clients`` processes for ``duration_s``: QPS, latency percentiles, client CPU."""
    ctx = mp.get_context("spawn")
    out, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    window = ctx.Array("d", 2, lock=False)
    procs = [ctx.Process(target=_client, args=(req, ready, go, window, out), daemon=True)
             for _ in range(clients)]
    for p in procs:
        p.start()
    for _ in procs:  # every process connected and waiting before anyone sends
        ready.get(timeout=120)
    window[0] = time.time() + 0.05
    window[1] = window[0] + duration_s
    go.set()
    results = [out.get(timeout=duration_s + 120) for _ in procs]
    for p in procs:
        p.join(30)
    lat = np.concatenate([r[0] for r in results]) * 1000.0
    wall = duration_s
    cpu = [r[2] / r[3] if r[3] else 0.0 for r in results]
    return {"clients": clients, "requests": int(len(lat)),
            "errors": int(sum(r[1] for r in results)),
            "qps": len(lat) / wall if wall else 0.0,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "client_cpu_s": float(sum(r[2] for r in results)),
            "client_busiest": float(max(cpu)),
            "client_saturated": bool(max(cpu) > SATURATED)}
