"""The Toxiproxy-compatible proxy, driven by toxiproxy-python, in front of a real node."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import requests
from toxiproxy import Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from akidb.chaos.api import ChaosProxy
from akidb.server.client import Client
from akidb.server.errors import TransportError


@pytest.fixture
def toxiproxy():
    with ChaosProxy(port=0) as chaos:
        api = Toxiproxy()
        api.update_api_consumer(chaos.host, chaos.port)
        yield api, chaos


@pytest.fixture
def proxied(toxiproxy, akidb_cluster):
    """(toxiproxy API, proxy, client that talks to the node through the proxy)."""
    api, _ = toxiproxy
    node = akidb_cluster.nodes[0]
    upstream = node.rest_url.removeprefix("http://")
    proxy = api.create(upstream=upstream, name="akidb")
    client = Client(f"http://{proxy.listen}", node.admin_key, timeout=2, retries=0)
    yield api, proxy, client
    client.close()


def _timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_api_surface_matches_toxiproxy(toxiproxy, akidb_cluster):
    api, chaos = toxiproxy
    assert api.running() and api.version().startswith(b"2.")
    upstream = akidb_cluster.nodes[0].rest_url.removeprefix("http://")
    proxy = api.create(upstream=upstream, name="p1")
    assert proxy.listen.startswith("127.0.0.1:") and not proxy.listen.endswith(":0")
    assert set(api.proxies()) == {"p1"}
    with pytest.raises(ProxyExists):
        api.create(upstream=upstream, name="p1")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="earthquake")
    with pytest.raises(InvalidToxic):
        proxy.add_toxic(type="latency", attributes={"latency": -5})
    proxy.add_toxic(type="latency", attributes={"latency": 10})
    assert proxy.get_toxic("latency_downstream").attributes == {"latency": 10, "jitter": 0}
    made = api.populate([{"name": "p2", "upstream": upstream, "listen": "127.0.0.1:0"}])
    assert [p.name for p in made] == ["p2"]
    r = requests.post(f"{chaos.url}/proxies/p1/toxics/latency_downstream",
                      json={"attributes": {"latency": 20}}, timeout=5)
    assert r.status_code == 200 and r.json()["attributes"]["latency"] == 20
    assert requests.get(f"{chaos.url}/proxies/nope", timeout=5).status_code == 404
    api.reset()
    assert proxy.toxics() == {}
    api.destroy_all()
    assert api.proxies() == {}
    with pytest.raises(NotFound):
        proxy.destroy()


def test_latency_bandwidth_and_down(proxied):
    api, proxy, client = proxied
    assert client.health() == {"status": "ok"}
    base = min(_timed(client.health) for _ in range(5))
    proxy.add_toxic(type="latency", attributes={"latency": 150})
    slowed = min(_timed(client.health) for _ in range(3))
    assert slowed >= base + 0.14
    proxy.destroy_toxic("latency_downstream")
    proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 100})
    assert _timed(client.health) >= 0.1
    api.reset()
    proxy.add_toxic(type="bandwidth", attributes={"rate": 20})  # KB/s
    body_size = len(client.transport.request("GET", "/openapi.json")[1])
    took = _timed(lambda: client.transport.request("GET", "/openapi.json"))
    assert took >= 0.8 * body_size / (20 * 1024)
    api.reset()
    with proxy.down():
        with pytest.raises(TransportError):
            client.health()
    assert client.health() == {"status": "ok"}


def test_timeout_reset_peer_limit_data_slicer(proxied):
    api, proxy, client = proxied
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    with pytest.raises(TransportError):  # no answer within the client's 2 s
        client.health()
    api.reset()
    proxy.add_toxic(type="timeout", attributes={"timeout": 200})
    started = time.perf_counter()
    with pytest.raises(TransportError) as info:
        client.health()
    assert time.perf_counter() - started >= 0.15  # it held the connection that long ...
    assert "timed out" not in str(info.value)  # ... and closed it, before the client's 2 s
    api.reset()
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 50})
    with pytest.raises(TransportError) as info:
        client.health()
    assert "Reset" in str(info.value) or "reset" in str(info.value).lower() \
        or "Disconnected" in str(info.value)
    api.reset()
    proxy.add_toxic(type="limit_data", attributes={"bytes": 20})
    host, port = proxy.listen.split(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
    assert len(received) == 20 and received.startswith(b"HTTP/1.1 200")
    api.reset()
    proxy.add_toxic(type="slicer", attributes={"average_size": 64, "size_variation": 16,
                                                "delay": 100})
    assert client.openapi()["openapi"].startswith("3.")
    api.reset()
    proxy.add_toxic(type="latency", toxicity=0.0, attributes={"latency": 30_000})
    assert client.health()["status"] == "ok"  # toxicity 0: never applied (else 30 s)


def test_cli_serves_the_api():
    proc = subprocess.Popen([sys.executable, "-m", "akidb", "chaos", "proxy", "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "Toxiproxy HTTP API" in line
        url = line.split(" on ")[1].split()[0]
        assert requests.get(f"{url}/version", timeout=5).text.startswith("2.")
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_cluster_with_fault_proxies_partitions_one_node():
    from akidb.harness import Cluster

    with Cluster(nodes=2, fault_proxy=True) as cluster:
        assert cluster.toxiproxy_endpoint.kind in ("akidb-chaos", "toxiproxy-server")
        a, b = cluster.nodes
        through_a = Client(a.proxy_url, a.admin_key, timeout=1, retries=0)
        through_b = Client(b.proxy_url, b.admin_key, timeout=1, retries=0)
        assert through_a.health() == through_b.health() == {"status": "ok"}
        with a.proxy.down():  # a full partition of node0 only
            with pytest.raises(TransportError):
                through_a.health()
            assert through_b.health() == {"status": "ok"}
        assert through_a.health() == {"status": "ok"}
        api_port = cluster.toxiproxy_endpoint.port
    assert cluster.toxiproxy_endpoint is None
    with socket.socket() as sock:  # the proxy API is gone with the cluster
        assert sock.connect_ex(("127.0.0.1", api_port)) != 0
