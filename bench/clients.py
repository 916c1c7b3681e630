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
import selectors
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

from akidb.datagen import usable_cores

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


class ResponseFramer:
    """Cuts whole HTTP/1.x responses, framed by Content-Length, off a byte stream: the
    one parser of both HTTP clients here (blocking and multiplexed)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._head: tuple[int, int, int, bool] | None = None  # status, body at, length, close

    def clear(self) -> None:
        self.buf.clear()
        self._head = None

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> tuple[int, bytes, bool] | None:
        """(status, body, server closes) of the first whole response, or None until it
        has arrived. Raises ValueError on what it cannot frame."""
        buf = self.buf
        if self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            self._head = self._parse_head(bytes(buf[:end]), end + 4)
        status, at, length, close = self._head
        if len(buf) < at + length:
            return None
        body = bytes(buf[at:at + length])
        del buf[:at + length]
        self._head = None
        return status, body, close

    @staticmethod
    def _parse_head(head: bytes, body_at: int) -> tuple[int, int, int, bool]:
        # Searched, not split into a dict: this runs once per response of a load run.
        if not (head.startswith(b"HTTP/1.") and head[8:9] == b" " and head[9:12].isdigit()):
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
        fields = head.lower()
        at = fields.find(b"\r\ncontent-length:")
        if at < 0:
            raise ValueError("response without Content-Length (chunked or close-framed); "
                             "the load client only frames by length")
        value_end = fields.find(b"\r\n", at + 17)
        length = int(fields[at + 17:value_end if value_end >= 0 else len(fields)])
        close = (fields.find(b"\r\nconnection: close") >= 0
                 or fields.find(b"\r\nconnection:close") >= 0)
        return int(head[9:12]), body_at, length, close


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that sends pre-encoded requests and reads
    whole responses framed by Content-Length: about a tenth of ``http.client``'s CPU per
    call (which parses every response's headers with the email package), so the
    clients leave the cores to the server they measure (NOTES, fifth pass)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.address = (host, port)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.framer = ResponseFramer()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.framer.clear()
        self.sock = sock
        return sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one request; (status, body) of its response. Raises OSError or
        ValueError (and drops the connection) on anything it cannot frame."""
        sock = self.sock or self.connect()
        try:
            sock.sendall(request)
            while (answer := self.framer.next()) is None:
                self.receive(sock)
        except (OSError, ValueError):
            self.close()
            raise
        status, body, close = answer
        if close:
            self.close()
        return status, body

    def receive(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection mid-response")
        self.framer.feed(chunk)


def encode_request(method: str, host: str, port: int, path: str, headers: dict[str, str],
                   body: bytes) -> bytes:
    """One HTTP/1.1 request, keep-alive, with its Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}",
             *(f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"),
             f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def _http_requests(job: dict[str, Any]) -> tuple[str, int, list[bytes]]:
    parts = urlsplit(job["url"])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    return host, port, [encode_request(job["method"], host, port, job["path"], job["headers"],
                                       base64.b64decode(b)) for b in job["bodies"]]


def _http_call(job: dict[str, Any]) -> Callable[[int], None]:
    host, port, requests = _http_requests(job)
    conn = HttpConnection(host, port)

    def call(i: int) -> None:
        status, _ = conn.exchange(requests[i % len(requests)])
        if status >= 400:
            raise RuntimeError(f"HTTP {status}")

    call(0)  # connected (and warm) before the run starts
    return call


class _InFlight:
    """One connection of a multiplexed client and the request it has in flight."""

    __slots__ = ("conn", "index", "out", "sent", "t0", "events")

    def __init__(self, conn: HttpConnection, index: int) -> None:
        self.conn, self.index = conn, index
        self.out, self.sent, self.t0, self.events = memoryview(b""), 0, 0.0, 0


class Multiplexed:
    """Several keep-alive connections driven by one process from one epoll loop, as
    ``wrk`` drives its connections: a process per connection costs a wake-up (two
    context switches) per request, and on a 2-core machine 16 such processes took
    0.29-0.31 cores from the server they measured against 0.17-0.18 for 16
    connections in one process (NOTES, tenth pass). Connection ``c`` sends requests ``first[c]``,
    ``first[c] + stride``, ...; a latency runs from a request's first byte sent to its
    response's last byte read. A failed request (a status >= 400, a dropped or
    unframeable response) is counted, its connection reopened, and the loop goes on."""

    def __init__(self, job: dict[str, Any], firsts: list[int], stride: int) -> None:
        host, port, self.requests = _http_requests(job)
        self.stride = stride
        self.selector = selectors.DefaultSelector()
        self.flights = []
        for first in firsts:
            conn = HttpConnection(host, port)
            status, _ = conn.exchange(self.requests[first % len(self.requests)])  # warm
            if status >= 400:
                raise RuntimeError(f"HTTP {status}")
            self.flights.append(_InFlight(conn, first))
        self.hist, self.errors, self.sample = histogram(), 0, ""

    def run(self, start: float, end: float) -> dict[str, Any]:
        while time.time() < start:
            time.sleep(0.0005)
        cpu0 = _cpu_s()
        retry = [f for f in self.flights if not self._begin(f)]
        while (now := time.time()) < end:
            retry = [f for f in retry if not self._begin(f)]
            for key, _ in self.selector.select(0.01 if retry else min(0.05, end - now)):
                flight = key.data
                try:
                    if not self._progress(flight):
                        continue
                except BlockingIOError:
                    continue
                except Exception as exc:  # noqa: BLE001 - a failed call is counted, not fatal
                    self.errors += 1
                    self.sample = self.sample or f"{type(exc).__name__}: {exc}"[:300]
                    self._drop(flight)
                flight.index += self.stride
                if not self._begin(flight):
                    retry.append(flight)
        cpu_s = _cpu_s() - cpu0
        for flight in self.flights:
            self._drop(flight)
        self.selector.close()
        return {"count": int(self.hist.get_total_count()), "errors": self.errors,
                "error_sample": self.sample, "cpu_s": cpu_s,
                "window_s": max(end - start, 1e-9), "histogram": self.hist.encode().decode()}

    def _begin(self, flight: _InFlight) -> bool:
        """Start the flight's next request; False when its connection cannot be opened
        (counted; tried again on the next turn of the loop)."""
        conn = flight.conn
        try:
            sock = conn.sock
            if sock is None:
                sock = conn.connect()
                sock.setblocking(False)
            flight.out = memoryview(self.requests[flight.index % len(self.requests)])
            flight.t0 = time.perf_counter()
            try:
                flight.sent = sock.send(flight.out)
            except BlockingIOError:
                flight.sent = 0
        except OSError as exc:
            self.errors += 1
            self.sample = self.sample or f"{type(exc).__name__}: {exc}"[:300]
            self._drop(flight)
            return False
        self._watch(flight, selectors.EVENT_READ if flight.sent == len(flight.out)
                    else selectors.EVENT_WRITE)
        return True

    def _progress(self, flight: _InFlight) -> bool:
        """Move the flight on after an event; True when its response is complete."""
        sock = flight.conn.sock
        assert sock is not None
        if flight.events == selectors.EVENT_WRITE:
            flight.sent += sock.send(flight.out[flight.sent:])
            if flight.sent == len(flight.out):
                self._watch(flight, selectors.EVENT_READ)
            return False
        flight.conn.receive(sock)
        answer = flight.conn.framer.next()
        if answer is None:
            return False
        status, _, close = answer
        if close:
            self._drop(flight)
        if status >= 400:
            raise RuntimeError(f"HTTP {status}")
        record_ms(self.hist, (time.perf_counter() - flight.t0) * 1000.0)
        return True

    def _watch(self, flight: _InFlight, events: int) -> None:
        sock = flight.conn.sock
        if flight.events == 0:
            self.selector.register(sock, events, flight)
        elif flight.events != events:
            self.selector.modify(sock, events, flight)
        flight.events = events

    def _drop(self, flight: _InFlight) -> None:
        if flight.events and flight.conn.sock is not None:
            self.selector.unregister(flight.conn.sock)
        flight.events = 0
        flight.conn.close()


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
    firsts = job.get("firsts", [job.get("first", 0)])
    stride = job.get("stride", 1)
    try:
        if job["kind"] == "http" and len(firsts) > 1:
            multiplexed = Multiplexed(job, firsts, stride)
            run: Callable[[float, float], dict[str, Any]] = multiplexed.run
        else:
            if job["kind"] == "http":
                call = _http_call(job)
            elif job["kind"] == "grpc":
                call, driver = _grpc_call(job)
            else:
                call, driver = _driver_call(job)

            def run(start: float, end: float) -> dict[str, Any]:
                return _loop(call, start, end, firsts[0], stride)
    except Exception as exc:  # noqa: BLE001 - the parent reports it
        out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    window = json.loads(sys.stdin.readline())
    result = run(window["start"], window["end"])
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


def client_processes(job: dict[str, Any], clients: int) -> int:
    """Processes for ``clients`` concurrent clients: one each, except HTTP clients,
    multiplexed over one process per two usable cores (``Multiplexed``: one
    drove ~3400 requests/s with 0.19 cores here, and the cores left are the server's)."""
    if job["kind"] != "http":
        return clients
    return max(1, min(clients, usable_cores() // 2))


def process_loop(job: dict[str, Any], clients: int, seconds: float,
                 python: str | None = None) -> dict[str, Any]:
    """``clients`` concurrent clients (connections) running ``job`` for ``seconds``
    from one start instant, in ``client_processes`` processes; their histograms
    merged. ``python``: the interpreter (default this one)."""
    env = {**os.environ, "PYTHONPATH": _akidb_root(), "PYTHONSAFEPATH": "1",
           "OMP_NUM_THREADS": "1"}
    procs: list[_Client] = []
    processes = client_processes(job, clients)
    try:
        for w in range(processes):
            log = Path(tempfile.mkstemp(prefix="akidb-client-", suffix=".log")[1])
            proc = subprocess.Popen([python or sys.executable, "-m", "akidb.bench.clients"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log.open("wb"), env=env, text=True)
            procs.append(_Client(proc, log))
            procs[-1].send({**job, "firsts": list(range(w, clients, processes)),
                            "stride": clients})
        for c in procs:  # every client connected and waiting before anyone sends
            c.line("it was ready")
        start = time.time() + 0.1
        for c in procs:
            c.send({"start": start, "end": start + seconds})
        results = [c.line("it reported") for c in procs]
    finally:
        for c in procs:
            c.stop()
    return {**combine(results, seconds, kind="processes"), "clients": clients,
            "processes": processes}


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
