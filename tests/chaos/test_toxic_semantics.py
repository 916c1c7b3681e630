"""Each toxic against Toxiproxy 2.x's semantics (``toxics/*.go``), through the real proxy
to a plain TCP peer. Times are bounded from the configured values with wide margins:
lower bounds are what the toxic promises; the few upper bounds only tell one
behaviour from another (e.g. per-chunk latency that does not add up), at >= 2x."""

from __future__ import annotations

import random
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
from toxiproxy import Toxiproxy

from akidb.chaos.api import ChaosProxy
from akidb.chaos.toxics import Toxic


class _Peer(socketserver.BaseRequestHandler):
    """``SEND n`` -> n bytes then close; ``HOLD n`` -> n bytes, stay open;
    ``ECHO`` -> echo every later chunk."""

    def handle(self) -> None:
        line = b""
        while not line.endswith(b"\n"):
            got = self.request.recv(1)
            if not got:
                return
            line += got
        verb, _, arg = line.decode().strip().partition(" ")
        if verb in ("SEND", "HOLD"):
            self.request.sendall(bytes(i % 251 for i in range(int(arg))))
            if verb == "HOLD":
                self.request.recv(1)  # until the client goes
        elif verb == "ECHO":
            while chunk := self.request.recv(65536):
                self.request.sendall(chunk)


@pytest.fixture
def peer() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Peer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(peer):
    with ChaosProxy(port=0) as chaos:
        api = Toxiproxy()
        api.update_api_consumer(chaos.host, chaos.port)
        yield api.create(upstream=peer, name="peer")


def _connect(proxy, line: bytes, timeout: float = 10) -> socket.socket:
    host, port = proxy.listen.split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(line)
    return sock


def _receive(sock: socket.socket) -> list[tuple[float, int]]:
    """(seconds since the call, bytes) per recv until EOF."""
    started, got = time.perf_counter(), []
    with sock:
        while chunk := sock.recv(65536):
            got.append((time.perf_counter() - started, len(chunk)))
    got.append((time.perf_counter() - started, 0))
    return got


def test_noop_passes_everything(proxy):
    proxy.add_toxic(type="noop")
    assert sum(n for _, n in _receive(_connect(proxy, b"SEND 100000\n"))) == 100_000


def test_bandwidth_trickles_at_its_rate(proxy):
    rate_kb, size = 20, 40_000  # 20 KB/s (1 KB = 1000 bytes, as upstream): >= 2 s
    proxy.add_toxic(type="bandwidth", attributes={"rate": rate_kb})
    got = _receive(_connect(proxy, f"SEND {size}\n".encode()))
    total = got[-1][0]
    assert sum(n for _, n in got) == size
    assert total >= 0.9 * size / (rate_kb * 1000)
    # Trickled, not held then burst: data arrives early and spread over the transfer.
    first = got[0][0]
    half = next(t for t, n in _cumulative(got) if n >= size / 2)
    assert first <= 0.5 * total and half >= 0.25 * total, got
    # Never ahead of the rate (one 100 ms piece of slack).
    for t, n in _cumulative(got):
        assert n <= rate_kb * 1000 * (t + 0.1) + rate_kb * 100


def _cumulative(got: list[tuple[float, int]]) -> Iterator[tuple[float, int]]:
    total = 0
    for t, n in got:
        total += n
        yield t, total


def test_latency_is_per_chunk_and_does_not_add_up(proxy):
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 300})
    with _connect(proxy, b"ECHO\n") as sock:
        started = time.perf_counter()
        for _ in range(8):  # 8 chunks sent together: each is delayed 300 ms, not 8 x 300
            sock.sendall(b"x" * 100)
            time.sleep(0.01)
        received = 0
        while received < 800:
            received += len(sock.recv(65536))
        took = time.perf_counter() - started
    assert took >= 0.3
    assert took < 1.2, f"{took:.2f}s: latency added up per chunk (8 x 0.3 s = 2.4 s)"


def test_jitter_stays_within_latency_plus_minus_jitter(proxy):
    proxy.add_toxic(type="latency", attributes={"latency": 200, "jitter": 100})
    for _ in range(5):
        got = _receive(_connect(proxy, b"SEND 10\n"))
        assert got[0][0] >= 0.095  # at least latency - jitter


def test_slow_close_delays_only_the_close(proxy):
    proxy.add_toxic(type="slow_close", attributes={"delay": 400})
    got = _receive(_connect(proxy, b"SEND 1000\n"))
    assert sum(n for _, n in got) == 1000
    assert got[-1][0] - got[-2][0] >= 0.38  # EOF came >= delay after the last data
    assert got[0][0] < got[-1][0] - 0.38  # ... while the data itself was not held


def test_timeout_drops_data_and_closes_after_timeout(proxy):
    proxy.add_toxic(type="timeout", attributes={"timeout": 400})
    got = _receive(_connect(proxy, b"HOLD 1000\n"))  # the peer stays connected
    assert [n for _, n in got] == [0]  # nothing got through
    assert got[-1][0] >= 0.35
    # The timer runs from the toxic's start on the connection, without any data.
    host, port = proxy.listen.split(":")
    started = time.perf_counter()
    with socket.create_connection((host, int(port)), timeout=10) as idle:
        assert idle.recv(10) == b""
    assert time.perf_counter() - started >= 0.35


def test_timeout_zero_holds_until_removed_then_closes(proxy):
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    sock = _connect(proxy, b"HOLD 1000\n", timeout=0.5)
    with pytest.raises(TimeoutError):
        sock.recv(10)  # dropped, connection open
    sock.settimeout(10)
    proxy.destroy_toxic("timeout_downstream")
    assert sock.recv(10) == b""  # removal closes it, as upstream's Cleanup does
    sock.close()
    assert sum(n for _, n in _receive(_connect(proxy, b"SEND 1000\n"))) == 1000


def test_reset_peer_resets_after_its_timeout(proxy):
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 200})
    sock = _connect(proxy, b"SEND 1000\n")
    started = time.perf_counter()
    with sock, pytest.raises(ConnectionResetError):
        while sock.recv(65536):
            pass
    assert time.perf_counter() - started >= 0.15


def test_limit_data_closes_after_exactly_that_many_bytes(proxy):
    proxy.add_toxic(type="limit_data", attributes={"bytes": 2500})
    got = _receive(_connect(proxy, b"HOLD 100000\n"))
    assert sum(n for _, n in got) == 2500


def test_slicer_cuts_data_into_small_delayed_pieces(proxy):
    proxy.add_toxic(type="slicer", attributes={"average_size": 100, "size_variation": 20,
                                                "delay": 20_000})
    got = _receive(_connect(proxy, b"SEND 2000\n"))
    assert sum(n for _, n in got) == 2000
    assert len(got) - 1 >= 5  # arrived in many reads: 20 ms between pieces
    assert got[-1][0] >= 0.1  # 16+ pieces x 20 ms, at least partly observed


def test_slicer_piece_sizes_follow_upstream():
    random.seed(7)
    toxic = Toxic.from_json({"type": "slicer", "attributes": {"average_size": 100,
                                                              "size_variation": 20}})
    cuts = toxic._slices(0, 10_000)
    sizes = [end - start for start, end in zip(cuts[::2], cuts[1::2], strict=True)]
    assert sum(sizes) == 10_000 and cuts[0] == 0 and cuts[-1] == 10_000
    assert all(cut == nxt for cut, nxt in zip(cuts[1:-1:2], cuts[2::2], strict=True))
    assert max(sizes) <= 120 and min(sizes) >= 1 and len(sizes) >= 10_000 // 120
    wide = Toxic.from_json({"type": "slicer", "attributes": {"average_size": 3,
                                                             "size_variation": 50}})
    cuts = wide._slices(0, 500)  # variation above the average still terminates
    assert cuts[0] == 0 and cuts[-1] == 500


def test_toxicity_zero_never_applies(proxy):
    proxy.add_toxic(type="timeout", toxicity=0.0, attributes={"timeout": 0})
    assert sum(n for _, n in _receive(_connect(proxy, b"SEND 500\n"))) == 500
