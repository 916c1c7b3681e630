"""The Toxiproxy-compatible proxy, driven by toxiproxy-python, in front of a real node."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import orjson
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
    assert api.running() and orjson.loads(api.version())["version"].startswith("2.")
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


def test_node_clients_see_transport_errors_under_timeout_and_reset(proxied):
    """What the toxics look like to the project's own client (timing is in
    test_toxic_semantics.py): an error it can tell from a server answer, never a hang."""
    api, proxy, client = proxied
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})
    with pytest.raises(TransportError):  # no answer within the client's 2 s
        client.health()
    api.reset()
    proxy.add_toxic(type="timeout", attributes={"timeout": 200})
    with pytest.raises(TransportError) as info:
        client.health()
    assert "timed out" not in str(info.value)  # closed by the proxy, not the client's timer
    api.reset()
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 50})
    with pytest.raises(TransportError):
        client.health()
    api.reset()
    proxy.add_toxic(type="slicer", attributes={"average_size": 64, "size_variation": 16,
                                                "delay": 100})
    assert client.openapi()["openapi"].startswith("3.")
    api.reset()
    assert client.health() == {"status": "ok"}


API_ROUTES = [("GET", "/version"), ("POST", "/reset"), ("GET", "/proxies"),
              ("POST", "/proxies"), ("POST", "/populate"), ("GET", "/proxies/p"),
              ("POST", "/proxies/p"), ("PATCH", "/proxies/p"), ("DELETE", "/proxies/p"),
              ("GET", "/proxies/p/toxics"), ("POST", "/proxies/p/toxics"),
              ("GET", "/proxies/p/toxics/t"), ("POST", "/proxies/p/toxics/t"),
              ("PATCH", "/proxies/p/toxics/t"), ("DELETE", "/proxies/p/toxics/t")]


def test_http_api_conforms_to_upstream(toxiproxy, akidb_cluster):
    """Upstream api.go, route by route, as the Go client (PATCH, arrays, its user agent)
    and a browser would call it."""
    _, chaos = toxiproxy
    go = requests.Session()
    go.headers["User-Agent"] = "toxiproxy-cli"
    url = chaos.url
    upstream = akidb_cluster.nodes[0].rest_url.removeprefix("http://")

    r = go.get(f"{url}/version", timeout=5)
    assert r.headers["Content-Type"].startswith("application/json")
    assert set(r.json()) == {"version"}
    ids = set()
    for method, path in API_ROUTES:  # every route exists (no 405) and answers JSON errors
        r = go.request(method, url + path, json={}, timeout=5)
        assert r.status_code != 405, (method, path)
        ids.add(r.headers["X-Toxiproxy-Request-Id"])
        if r.status_code >= 400:
            assert r.headers["Content-Type"] == "application/json"
            assert r.json()["status"] == r.status_code and r.json()["error"]
    assert len(ids) == len(API_ROUTES)  # one id per request

    for route in ("/nope", "/proxies/p/toxics/t/x"):
        r = go.get(url + route, timeout=5)
        assert r.status_code == 404 and r.json()["status"] == 404
    r = go.put(f"{url}/proxies", timeout=5)
    assert r.status_code == 405 and r.json()["status"] == 405 and "GET" in r.headers["Allow"]
    r = requests.get(f"{url}/proxies", timeout=5, headers={
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"})
    assert r.status_code == 403 and "not allowed" in r.text

    def error(r, status: int, starts: str) -> None:
        assert r.status_code == status, r.text
        assert r.json() == {"error": r.json()["error"], "status": status}
        assert r.json()["error"].startswith(starts), r.json()

    error(go.post(f"{url}/proxies", json={"upstream": upstream}, timeout=5), 400,
          "missing required field: name")
    error(go.post(f"{url}/proxies", json={"name": "a"}, timeout=5), 400,
          "missing required field: upstream")
    error(go.post(f"{url}/proxies", data=b"{nope", timeout=5), 400, "bad request body")
    r = go.post(f"{url}/proxies", json={"name": "a", "upstream": upstream,
                                        "enabled": False}, timeout=5)
    assert r.status_code == 201
    assert r.json() == {"name": "a", "listen": "127.0.0.1:0", "upstream": upstream,
                        "enabled": False, "toxics": []}
    error(go.post(f"{url}/proxies", json={"name": "a", "upstream": upstream}, timeout=5),
          409, "proxy already exists")
    error(go.get(f"{url}/proxies/zz", timeout=5), 404, "proxy not found")

    r = go.patch(f"{url}/proxies/a", json={"enabled": True}, timeout=5)  # Go's update
    assert r.status_code == 200 and r.json()["enabled"] is True
    assert not r.json()["listen"].endswith(":0")

    # Populate as the Go client sends it (a bare array): all checked before any change.
    error(go.post(f"{url}/populate", json=[{"name": "b", "upstream": upstream},
                                           {"name": "c"}], timeout=5),
          400, "missing required field: upstream at proxy 2")
    assert set(go.get(f"{url}/proxies", timeout=5).json()) == {"a"}
    r = go.post(f"{url}/populate", json=[{"name": "b", "upstream": upstream}], timeout=5)
    assert r.status_code == 201 and [p["name"] for p in r.json()["proxies"]] == ["b"]

    # Toxics: defaults, noop, upstream's messages, PATCH changes attributes and toxicity
    # but never the type or stream.
    r = go.post(f"{url}/proxies/a/toxics", json={"type": "noop"}, timeout=5)
    assert r.status_code == 200 and r.json() == {
        "name": "noop_downstream", "type": "noop", "stream": "downstream", "toxicity": 1.0,
        "attributes": {}}
    error(go.post(f"{url}/proxies/a/toxics", json={"type": "noop"}, timeout=5), 409,
          "toxic already exists")
    error(go.post(f"{url}/proxies/a/toxics", json={"type": "quake"}, timeout=5), 400,
          "invalid toxic type")
    error(go.post(f"{url}/proxies/a/toxics", json={"type": "latency", "stream": "up"},
                  timeout=5), 400, "stream was invalid")
    error(go.post(f"{url}/proxies/a/toxics", json={"type": "latency",
                                                   "attributes": {"latency": 1.5}},
                  timeout=5), 400, "bad request body")
    r = go.post(f"{url}/proxies/a/toxics", json={"type": "latency", "stream": "upstream",
                                                 "attributes": {"latency": 5}}, timeout=5)
    assert r.json()["name"] == "latency_upstream"
    r = go.patch(f"{url}/proxies/a/toxics/latency_upstream",
                 json={"type": "bandwidth", "stream": "downstream", "toxicity": 0.5,
                       "attributes": {"jitter": 2}}, timeout=5)
    assert r.status_code == 200 and r.json() == {
        "name": "latency_upstream", "type": "latency", "stream": "upstream",
        "toxicity": 0.5, "attributes": {"latency": 5, "jitter": 2}}
    error(go.patch(f"{url}/proxies/a/toxics/zz", json={}, timeout=5), 404, "toxic not found")
    assert [t["name"] for t in go.get(f"{url}/proxies/a/toxics", timeout=5).json()] == [
        "noop_downstream", "latency_upstream"]
    assert go.delete(f"{url}/proxies/a/toxics/noop_downstream", timeout=5).status_code == 204
    error(go.delete(f"{url}/proxies/a/toxics/noop_downstream", timeout=5), 404,
          "toxic not found")
    assert go.post(f"{url}/reset", timeout=5).status_code == 204
    assert go.get(f"{url}/proxies/a", timeout=5).json()["toxics"] == []
    assert go.delete(f"{url}/proxies/a", timeout=5).status_code == 204
    error(go.delete(f"{url}/proxies/a", timeout=5), 404, "proxy not found")


def test_cli_serves_the_api():
    proc = subprocess.Popen([sys.executable, "-m", "akidb", "chaos", "proxy", "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "Toxiproxy HTTP API" in line
        url = line.split(" on ")[1].split()[0]
        assert requests.get(f"{url}/version", timeout=5).json()["version"].startswith("2.")
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


def test_proxies_follow_a_restarted_node_rest_and_grpc():
    """A node's proxy addresses survive kill()/start()/restart(): the proxies are pointed
    at the node's new ports, for REST and for gRPC."""
    from akidb.harness import Cluster

    with Cluster(nodes=1, fault_proxy=True) as cluster:
        node = cluster.nodes[0]
        rest_address, grpc_address = node.proxy_url, node.grpc_proxy_target
        assert node.grpc_proxy.upstream == node.grpc_target
        with node.proxied_client(timeout=5) as admin:
            admin.create_tenant("t")
            admin.create_database("t", "db")
            admin.create_collection("t/db/c", dimension=3)
        for step in ("kill", "start", "restart"):
            if step == "kill":
                node.kill()
                with pytest.raises(TransportError):  # down: the proxy cannot reach it
                    Client(node.proxy_url, node.admin_key, timeout=2, retries=0).health()
                continue
            node.start() if step == "start" else node.restart()
            assert (node.proxy_url, node.grpc_proxy_target) == (rest_address, grpc_address)
            assert node.proxy.upstream == node.rest_url.removeprefix("http://")
            assert node.grpc_proxy.upstream == node.grpc_target
            with node.proxied_client(data_plane="grpc", timeout=5) as client:
                client.upsert("t/db/c", [{"id": step, "vector": [1.0, 0.0, 0.0]}])
                assert step in client.search("t/db/c", [1.0, 0.0, 0.0], k=5).ids
                assert client.health() == {"status": "ok"}
        # gRPC traffic really passes its proxy: a toxic there slows gRPC calls.
        node.grpc_proxy.add_toxic(type="latency", attributes={"latency": 300})
        with node.proxied_client(data_plane="grpc", timeout=5) as client:
            client.search("t/db/c", [1.0, 0.0, 0.0], k=1)  # connect first
            assert _timed(lambda: client.search("t/db/c", [1.0, 0.0, 0.0], k=1)) >= 0.28
