"""Load clients: histograms merge exactly, client processes report what went wrong,
errors and saturation are counted where they happen."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from akidb.bench import clients


def _hist(values_ms):
    h = clients.histogram()
    for v in values_ms:
        clients.record_ms(h, v)
    return h


def test_merged_histograms_equal_one_histogram_of_every_value():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(0.0, 1.0, 4000), rng.lognormal(1.0, 0.5, 3000)
    merged = clients.merge([_hist(a).encode().decode(), _hist(b).encode().decode()])
    whole = _hist(np.concatenate([a, b]))
    assert merged.get_total_count() == whole.get_total_count() == 7000
    assert clients.summary(merged) == clients.summary(whole)
    for q in (50, 95, 99):  # 3 significant figures: within 0.1% of the exact percentile
        exact = np.percentile(np.concatenate([a, b]), q, method="inverted_cdf")
        assert merged.get_value_at_percentile(q) / 1000.0 == pytest.approx(exact, rel=2e-3)


def test_an_empty_histogram_summarises_as_nan():
    assert all(np.isnan(v) for v in clients.summary(clients.histogram()).values())


def _result(count, cpu_s, window_s=1.0, errors=0):
    return {"histogram": _hist(np.full(count, 2.0)).encode().decode(), "cpu_s": cpu_s,
            "window_s": window_s, "errors": errors, "error_sample": "x" if errors else ""}


def test_combine_flags_a_saturated_client_and_sums_the_rest():
    quiet = clients.combine([_result(100, 0.2), _result(50, 0.3)], 1.0, "processes")
    assert (quiet["requests"], quiet["qps"], quiet["client_saturated"]) == (150, 150.0, False)
    assert quiet["client_busiest"] == pytest.approx(0.3) and quiet["p50_ms"] == 2.0
    busy = clients.combine([_result(100, 0.2), _result(50, 0.95, errors=2)], 1.0, "processes")
    assert busy["client_saturated"] and busy["errors"] == 2 and busy["error_sample"] == "x"


def test_thread_loop_counts_failed_calls_apart():
    def search(i):
        if i % 3 == 0:
            raise ValueError("refused")

    r = clients.thread_loop(search, 2, 0.3)
    assert r["client_kind"] == "threads" and r["errors"] > 0 and r["requests"] > r["errors"]
    assert r["error_sample"] == "ValueError: refused" and not r["client_saturated"]


def test_a_client_process_that_cannot_start_says_why():
    job = {"kind": "driver", "driver": "nope", "options": {}, "queries": "/nonexistent.npy",
           "k": 10}
    with pytest.raises(RuntimeError, match="unknown driver 'nope'"):
        clients.process_loop(job, 2, 0.5)
    http = {"kind": "http", "url": "http://127.0.0.1:9", "method": "GET", "path": "/",
            "bodies": [""], "headers": {}}
    with pytest.raises(RuntimeError, match="ConnectionRefusedError"):
        clients.process_loop(http, 1, 0.5)


class _ScriptedServer:
    """A loopback server answering each connection's requests with the scripted
    replies in turn (each reply a list of byte pieces sent apart), then closing."""

    def __init__(self, *connections: list[list[bytes]]) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, args=(list(connections),),
                                        daemon=True)
        self._thread.start()

    def _serve(self, connections: list[list[list[bytes]]]) -> None:
        import time

        for replies in connections:
            conn, _ = self.sock.accept()
            self.accepted += 1
            with conn:
                for pieces in replies:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.received.append(head + b"\r\n\r\n" + body)
                    for piece in pieces:
                        conn.sendall(piece)
                        time.sleep(0.01)  # separate segments: the client must reassemble

    def close(self) -> None:
        self._thread.join(timeout=5)
        self.sock.close()


def test_the_raw_http_client_frames_split_responses_and_keeps_the_connection():
    ok = [b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 11\r\ncontent-type: x\r\n\r\nhello", b" world"]
    bad = [b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}"]
    server = _ScriptedServer([ok, bad, ok])
    try:
        conn = clients.HttpConnection("127.0.0.1", server.port)
        request = clients.encode_request("POST", "127.0.0.1", server.port, "/s",
                                         {"Authorization": "Bearer k"}, b'{"k": 1}')
        assert conn.exchange(request) == (200, b"hello world")
        assert conn.exchange(request) == (404, b"{}")
        assert conn.exchange(request) == (200, b"hello world")
        conn.close()
    finally:
        server.close()
    assert server.accepted == 1  # one keep-alive connection for all three
    assert server.received[0] == (b"POST /s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: "
                                  b"Bearer k\r\nContent-Length: 8\r\n\r\n{\"k\": 1}" % server.port)


def test_the_raw_http_client_reconnects_after_close_and_refuses_what_it_cannot_frame():
    closing = [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na"]
    chunked = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"]
    cut = [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"]
    server = _ScriptedServer([closing], [chunked], [cut])
    try:
        conn = clients.HttpConnection("127.0.0.1", server.port)
        request = clients.encode_request("GET", "127.0.0.1", server.port, "/", {}, b"")
        assert conn.exchange(request) == (200, b"a")
        with pytest.raises(ValueError, match="Content-Length"):
            conn.exchange(request)  # a second connection: the first was closed
        with pytest.raises(ConnectionError, match="mid-response"):
            conn.exchange(request)
    finally:
        server.close()
    assert server.accepted == 3


def test_grpc_client_processes_send_pre_serialized_messages(akidb_cluster, tenant):
    from akidb.server.client.grpc import SEARCH_BATCH_METHOD, search_batch_request

    node = akidb_cluster.nodes[0]
    coll = f"{tenant}/db/c"
    rng = np.random.default_rng(5)
    with node.admin_client() as admin:
        admin.create_collection(coll, dimension=8, metric="cosine")
        admin.upsert_arrays(coll, [str(i) for i in range(50)],
                            rng.standard_normal((50, 8)).astype(np.float32))

    def job(collection: str) -> dict:
        message = search_batch_request(collection, [{"vector": rng.standard_normal(8),
                                                     "k": 3} for _ in range(4)])
        return {"kind": "grpc", "target": node.grpc_target, "method": SEARCH_BATCH_METHOD,
                "messages": [base64.b64encode(message.SerializeToString()).decode()],
                "metadata": {"Authorization": f"Bearer {node.admin_key}"}}

    r = clients.process_loop(job(coll), 2, 0.5)
    assert r["requests"] > 0 and r["errors"] == 0 and r["client_kind"] == "processes"
    with pytest.raises(RuntimeError, match="NOT_FOUND"):  # the warm-up call fails first
        clients.process_loop(job(f"{tenant}/db/missing"), 1, 0.5)


RESPONSES = [(200, b"hello world", False), (404, b"{}", False), (200, b"", True),
             (503, b"x" * 70_000, False)]


def _wire(status: int, body: bytes, close: bool) -> bytes:
    head = f"HTTP/1.1 {status} Whatever\r\ncontent-LENGTH: {len(body)}\r\nX-Other: 1\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


@given(st.lists(st.integers(0, 100), max_size=12), st.permutations(range(4)))
def test_the_framer_cuts_the_same_responses_wherever_the_stream_is_split(cuts, order):
    stream = b"".join(_wire(*RESPONSES[i]) for i in order)
    framer, got = clients.ResponseFramer(), []
    points = sorted({min(len(stream), c * len(stream) // 100) for c in cuts} | {len(stream)})
    at = 0
    for point in points:
        framer.feed(stream[at:point])
        at = point
        while (answer := framer.next()) is not None:
            got.append(answer)
    assert got == [RESPONSES[i] for i in order] and not framer.buf


def test_the_framer_refuses_what_it_cannot_frame():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for wire, why in ((chunked, "Content-Length"), (b"SSH-2.0-OpenSSH\r\n\r\n", "status line")):
        framer = clients.ResponseFramer()
        framer.feed(wire)
        with pytest.raises(ValueError, match=why):
            framer.next()


class _EchoServer:
    """A threaded keep-alive HTTP server answering by request body: ``ok`` 200,
    ``bad`` 404, ``close`` 200 and closes, anything else 200 with its length; it
    records every body it received whole and every connection it accepted."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[bytes] = []
        peers: set[int] = set()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                seen.append(body)
                peers.add(self.client_address[1])
                status = 404 if body == b"bad" else 200
                reply = b"%d" % len(body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                if body == b"close":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.seen, self.peers = seen, peers
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def test_multiplexed_connections_count_failures_reconnect_and_send_whole_bodies():
    import time

    big = b"y" * 3_000_000  # larger than a socket buffer: sent over several writes
    bodies = [b"ok", b"bad", b"close", big]
    server = _EchoServer()
    try:
        job = {"kind": "http", "url": server.url, "method": "POST", "path": "/",
               "headers": {}, "bodies": [base64.b64encode(b).decode() for b in bodies]}
        # 3 connections, stride 3, over 4 bodies: each one cycles through all four (and
        # none starts on "bad": a failing warm-up call stops a client before the run)
        mux = clients.Multiplexed(job, [0, 2, 3], 3)
        start = time.time() + 0.05
        r = mux.run(start, start + 1.0)
    finally:
        server.close()
    assert set(server.seen) == set(bodies)  # the big body arrived whole, every time
    assert r["errors"] > 0 and r["error_sample"] == "RuntimeError: HTTP 404"
    assert r["count"] >= 2 * r["errors"]  # three of every four answers are recorded
    assert len(server.peers) > 3  # connections closed by the server were reopened
    assert clients.summary(clients.merge([r["histogram"]]))["p50_ms"] > 0


def test_http_clients_share_processes_and_report_every_connection(akidb_cluster):
    job = {"kind": "http", "url": akidb_cluster.nodes[0].rest_url, "method": "GET",
           "path": "/health", "headers": {}, "bodies": [""]}
    r = clients.process_loop(job, 4, 0.5)
    assert r["clients"] == 4 and r["processes"] == clients.client_processes(job, 4) <= 4
    assert r["requests"] > 0 and r["errors"] == 0
    assert clients.client_processes({"kind": "grpc"}, 4) == 4  # one per gRPC client
