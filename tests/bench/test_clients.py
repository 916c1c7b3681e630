"""Load clients: histograms merge exactly, client processes report what went wrong,
errors and saturation are counted where they happen."""

from __future__ import annotations

import base64

import numpy as np
import pytest

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
