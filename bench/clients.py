"""Load clients for closed-loop runs: one process per client, latencies merged as
HdrHistograms, every client's CPU recorded.

A Python client thread shares its GIL with every other thread of its process, so a
threaded load generator tops out near what one core can drive (~1.2k requests/s here)
and reports that ceiling as the server's. So each client here is its own process
(``python -m akidb.bench.clients``, in any interpreter: a peer's driver runs in its own
venv), connected before the run starts, sending as fast as answers come back between
one start and one end instant shared by all. A client reports an HdrHistogram of its
latencies (microseconds, 3 significant figures; encoded, so histograms from any number
of processes or runs add up exactly) and its own CPU time; a client on CPU for more
than ``SATURATED`` of the window was the bottleneck, and the result says so.

What a client sends is a job: ``http`` (pre-encoded requests sent in turn, the
leanest client there is), ``grpc`` (pre-serialized messages of one unary method, the
answers left undecoded: what the REST client does, over gRPC) or ``driver`` (a driver
attached to a collection another process created; see ``Driver.attach_options``). A
database that lives inside its client's process
(hnswlib, embedded chroma, LanceDB, Milvus Lite, qdrant local) cannot be shared by
processes: ``thread_loop`` drives it from threads in that process, and its CPU figure
is the database's and the clients' together.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from hdrh.histogram import HdrHistogram

SATURATED = 0.9   # a client on CPU for this share of the run could not go faster
HIGHEST_US = 3_600_000_000  # one hour: any latency a run can see
SIGNIFICANT = 3


def histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds (the one shape every run uses, so
    any two can be added)."""
    return HdrHistogram(1, HIGHEST_US, SIGNIFICANT)


def record_ms(hist: HdrHistogram, ms: float) -> None:
    hist.record_value(min(HIGHEST_US, max(1, round(ms * 1000.0))))


def merge(encoded: list[str]) -> HdrHistogram:
    """One histogram from many clients' (or runs') encoded ones."""
    total = histogram()
    for e in encoded:
        total.decode_and_add(e)
    return total


def summary(hist: HdrHistogram) -> dict[str, float]:
    """Percentiles in ms from a histogram (NaN when it is empty)."""
    if hist.get_total_count() == 0:
        return {k: float("nan") for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "mean_ms")}
    at = hist.get_value_at_percentile
    return {"p50_ms": at(50) / 1000.0, "p95_ms": at(95) / 1000.0, "p99_ms": at(99) / 1000.0,
            "max_ms": hist.get_max_value() / 1000.0, "mean_ms": hist.get_mean_value() / 1000.0}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _loop(call: Callable[[int], None], start: float, end: float, first: int, stride: int
          ) -> dict[str, Any]:
    """Call ``call(i)`` back to back from ``start`` to ``end`` (wall clock, shared by
    every client); i runs first, first+stride, ..."""
    hist, errors, sample, i = histogram(), 0, "", first
    while time.time() < start:
        time.sleep(0.0005)
    cpu0 = _cpu_s()
    while True:
        t0 = time.perf_counter()
        if time.time() >= end:
            break
        try:
            call(i)
        except Exception as exc:  # noqa: BLE001 - a failed call is counted, not fatal
            errors += 1
            sample = sample or f"{type(exc).__name__}: {exc}"[:300]
        else:
            record_ms(hist, (time.perf_counter() - t0) * 1000.0)
        i += stride
    return {"count": int(hist.get_total_count()), "errors": errors, "error_sample": sample,
            "cpu_s": _cpu_s() - cpu0, "window_s": max(end - start, 1e-9),
            "histogram": hist.encode().decode()}


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that sends pre-encoded requests and reads
    whole responses framed by Content-Length: about a tenth of ``http.client``'s CPU per
    call (which parses every response's headers with the email package), so the
    clients leave the cores to the server they measure (NOTES, fifth pass)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf.clear()
        self.sock = sock
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; (status, body) of its response. Raises OSError or
        ValueError (and drops the connection) on anything it cannot frame."""
        sock = self.sock or self._connect()
        try:
            sock.sendall(request)
            return self._response(sock)
        except (OSError, ValueError):
            self.close()
            raise

    def _response(self, sock: socket.socket) -> tuple[int, bytes]:
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            self._fill(sock)
        head = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        status_line = head[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x status line: {head[0][:80]!r}")
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "content-length" not in fields:
            raise ValueError("response without Content-Length (chunked or close-framed); "
                             "the load client only frames by length")
        length = int(fields["content-length"])
        while len(buf) < length:
            self._fill(sock)
        body = bytes(buf[:length])
        del buf[:length]
        if fields.get("connection", "").lower() == "close":
            self.close()
        return int(status_line[1]), body

    def _fill(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-response")
        self.buf += chunk


def encode_request(method: str, host: str, port: int, path: str, headers: dict[str, str],
                   body: bytes) -> bytes:
    """One HTTP/1.1 request, keep-alive, with its Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
             *(f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"),
             f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def _http_call(job: dict[str, Any]) -> Callable[[int], None]:
    parts = urlsplit(job["url"])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [encode_request(job["method"], host, port, job["path"], job["headers"],
                               base64.b64decode(b)) for b in job["bodies"]]
    conn = HttpConnection(host, port)

    def call(i: int) -> None:
        status, _ = conn.exchange(requests[i % len(requests)])
        if status >= 400:
            raise RuntimeError(f"HTTP {status}")

    call(0)  # connected (and warm) before the run starts
    return call


def _grpc_call(job: dict[str, Any]) -> tuple[Callable[[int], None], Any]:
    import grpc

    channel = grpc.insecure_channel(job["target"], options=[
        ("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)])
    method = channel.unary_unary(job["method"])  # bytes in, bytes out: nothing decoded
    messages = [base64.b64decode(m) for m in job["messages"]]
    metadata = tuple((k.lower(), v) for k, v in job.get("metadata", {}).items())

    def call(i: int) -> None:
        method(messages[i % len(messages)], timeout=30.0, metadata=metadata)

    call(0)
    return call, channel


def _driver_call(job: dict[str, Any]) -> tuple[Callable[[int], None], Any]:
    from akidb.bench import drivers
    from akidb.bench.drivers import Filter

    driver = drivers.open_driver(job["driver"], **job["options"])
    queries = np.load(job["queries"])
    k, ef = job["k"], job.get("ef")
    flt = Filter(**job["filter"]) if job.get("filter") else None
    batch = int(job.get("batch", 1))  # > 1: each call is one batch search of that many

    def call(i: int) -> None:
        if batch > 1:
            first = (i * batch) % len(queries)
            driver.search_batch(queries[first:first + batch], k, ef)
        else:
            driver.search(queries[i % len(queries)], k, ef, flt)

    call(0)
    return call, driver


def serve() -> int:
    """The client process: a job on stdin, ``ready``, a window, the result on stdout."""
    out = sys.stdout
    sys.stdout = sys.stderr  # a driver printing must not corrupt the protocol
    job = json.loads(sys.stdin.readline())
    driver = None
    try:
        if job["kind"] == "http":
            call = _http_call(job)
        elif job["kind"] == "grpc":
            call, driver = _grpc_call(job)
        else:
            call, driver = _driver_call(job)
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    window = json.loads(sys.stdin.readline())
    result = _loop(call, window["start"], window["end"], job.get("first", 0),
                   job.get("stride", 1))
    if driver is not None:
        driver.close()
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0


def _akidb_root() -> str:
    import akidb

    return str(Path(akidb.__file__).resolve().parent.parent)


@dataclass
class _Client:
    proc: subprocess.Popen[str]
    log: Path

    def line(self, what: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"a load client exited before {what}: {tail}")
        reply = json.loads(text)
        if "error" in reply:
            raise RuntimeError(f"a load client failed before {what}: {reply['error']}")
        return reply

    def send(self, obj: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.unlink(missing_ok=True)


def process_loop(job: dict[str, Any], clients: int, seconds: float,
                 python: str | None = None) -> dict[str, Any]:
    """``clients`` processes running ``job`` for ``seconds`` from one start instant;
    their histograms merged. ``python``: the interpreter (default this one)."""
    env = {**os.environ, "PYTHONPATH": _akidb_root(), "PYTHONSAFEPATH": "1",
           "OMP_NUM_THREADS": "1"}
    procs: list[_Client] = []
    try:
        for w in range(clients):
            log = Path(tempfile.mkstemp(prefix="akidb-client-", suffix=".log")[1])
            proc = subprocess.Popen([python or sys.executable, "-m", "akidb.bench.clients"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log.open("wb"), env=env, text=True)
            procs.append(_Client(proc, log))
            procs[-1].send({**job, "first": w, "stride": clients})
        for c in procs:  # every client connected and waiting before anyone sends
            c.line("it was ready")
        start = time.time() + 0.1
        for c in procs:
            c.send({"start": start, "end": start + seconds})
        results = [c.line("it reported") for c in procs]
    finally:
        for c in procs:
            c.stop()
    return combine(results, seconds, kind="processes")


def thread_loop(search: Callable[[int], None], clients: int, seconds: float
                ) -> dict[str, Any]:
    """``clients`` threads of this process calling ``search(i)`` for ``seconds``: for a
    database that lives in this process. The CPU figure is the whole process's."""
    start = time.time() + 0.05
    end = start + seconds
    results: list[dict[str, Any]] = [{} for _ in range(clients)]
    cpu0 = _cpu_s()

    def run(w: int) -> None:
        results[w] = _loop(search, start, end, w, clients)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = combine(results, seconds, kind="threads")
    # the clients' CPU cannot be told from the database's here: the process's share
    # of all cores is what there is, and no client is called saturated on it
    out["client_cpu_s"] = _cpu_s() - cpu0
    out["client_busiest"] = out["client_cpu_s"] / (end - start) / (os.cpu_count() or 1)
    out["client_saturated"] = False
    return out


def combine(results: list[dict[str, Any]], seconds: float, kind: str) -> dict[str, Any]:
    """One figure from every client's result: QPS over the common window, merged
    percentiles, the clients' CPU and whether one of them saturated."""
    hist = merge([r["histogram"] for r in results])
    busy = [r["cpu_s"] / r["window_s"] for r in results]
    samples = [r["error_sample"] for r in results if r.get("error_sample")]
    return {"clients": len(results), "client_kind": kind,
            "requests": int(hist.get_total_count()),
            "errors": int(sum(r["errors"] for r in results)),
            "error_sample": samples[0] if samples else "",
            "qps": hist.get_total_count() / seconds, **summary(hist),
            "client_cpu_s": float(sum(r["cpu_s"] for r in results)),
            "client_busiest": float(max(busy)), "client_saturated": bool(max(busy) > SATURATED),
            "histogram": hist.encode().decode()}


if __name__ == "__main__":
    raise SystemExit(serve())
