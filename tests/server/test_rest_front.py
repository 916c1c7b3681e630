"""The REST front answers a hot route (search, batch search, upsert) through Flask the
first time its path is seen and straight from the handler afterwards
(server/api/rest_front.py). Both answers must be the same: status, body, headers,
request ids, metrics, every error, and the failure log."""

from __future__ import annotations

import http.client
import json
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.test import Client as WsgiClient

from akidb.harness import Node
from akidb.server.api.flask_app import AkiFlask
from akidb.server.api.rest import _flask_view
from akidb.server.api.rest_front import RestFront
from akidb.server.client import Client
from akidb.server.errors import PermissionDenied, QuotaExceeded

BODY_LIMIT = 64 * 1024 * 1024


def _send(url: str, method: str, path: str, body: bytes | None,
          headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw)
    finally:
        conn.close()


def _twice(url: str, path: str, body: bytes | None, headers: dict[str, str]
           ) -> tuple[tuple[int, dict[str, str], Any], tuple[int, dict[str, str], Any]]:
    """The same request on a path nothing has asked for yet (Flask), then again (hot)."""
    first = _send(url, "POST", path, body, headers)
    second = _send(url, "POST", path, body, headers)
    return first, second


def _timeless(answer: Any) -> Any:
    return {k: v for k, v in answer.items() if k != "took_ms"}


def _same(first: tuple[int, dict[str, str], Any], second: tuple[int, dict[str, str], Any],
          *, request_id: str | None = None) -> None:
    assert first[0] == second[0]
    assert _timeless(first[2]) == _timeless(second[2])
    for name in ("content-type", "retry-after", "allow"):
        assert first[1].get(name) == second[1].get(name), name
    for _, headers, _ in (first, second):
        rid = headers["x-request-id"]
        assert rid == request_id if request_id else re.fullmatch(r"[0-9a-f]{16}", rid)
    if request_id is None:
        assert first[1]["x-request-id"] != second[1]["x-request-id"]


CASES = {
    "a good search": ("search", {"vector": [1.0, 0.0], "k": 2}, 200, None),
    "a good batch": ("search/batch", {"searches": [{"vector": [0.0, 1.0], "k": 1}]}, 200, None),
    "a good upsert": ("documents", {"documents": [{"id": "z", "vector": [0.5, 0.5]}]}, 200,
                      None),
    "malformed JSON": ("search", b"{not json", 400, "bad_request"),
    "the wrong dimension": ("search", {"vector": [1.0, 0.0, 0.0]}, 422, "unprocessable"),
    "k over the limit": ("search", {"vector": [1.0, 0.0], "k": 10**6}, 422, "unprocessable"),
    "an empty body": ("search", b"", 400, "bad_request"),
    "a bad batch entry": ("search/batch", {"searches": [{"vector": [1.0]}]}, 422,
                          "unprocessable"),
    "a NaN in an upsert": ("documents", b'{"documents": [{"id": "n", "vector": [NaN, 1]}]}',
                           422, "unprocessable"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_first_and_later_requests_on_a_path_answer_alike(client: Client, tenant: str,
                                                         akidb_cluster, case: str):
    node = akidb_cluster.nodes[0]
    leaf, body, status, code = CASES[case]
    name = f"c{abs(hash(case)) % 10**8}"
    client.create_collection(f"{tenant}/db/{name}", dimension=2)
    client.upsert(f"{tenant}/db/{name}", [{"id": "a", "vector": [1.0, 0.0]},
                                          {"id": "b", "vector": [0.0, 1.0]}])
    path = f"/v1/tenants/{tenant}/databases/db/collections/{name}/{leaf}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {node.admin_key}", "Content-Type": "application/json"}
    first, second = _twice(node.rest_url, path, data, headers)
    _same(first, second)
    assert first[0] == status
    if code is not None:
        assert first[2]["error"]["code"] == code
    if case == "a good search":
        assert [h["id"] for h in second[2]["results"]] == ["a", "b"]
    echoed = _send(node.rest_url, "POST", path, data, {**headers, "X-Request-Id": "mine-1"})
    assert echoed[0] == status and echoed[1]["x-request-id"] == "mine-1"


def test_auth_and_missing_collections_are_refused_on_the_hot_path(client: Client, tenant: str,
                                                                  akidb_cluster):
    node = akidb_cluster.nodes[0]
    client.create_collection(f"{tenant}/db/c", dimension=2)
    path = f"/v1/tenants/{tenant}/databases/db/collections/c/search"
    body = json.dumps({"vector": [1.0, 0.0]}).encode()
    good = {"Authorization": f"Bearer {node.admin_key}", "Content-Type": "application/json"}
    assert _send(node.rest_url, "POST", path, body, good)[0] == 200  # the path is now hot
    for headers, status, code in (
            ({"Content-Type": "application/json"}, 401, "unauthenticated"),
            ({**good, "Authorization": "Bearer akidb_nope_nope"}, 401, "unauthenticated"),
            ({**good, "Authorization": "Basic abc"}, 401, "unauthenticated")):
        got = _send(node.rest_url, "POST", path, body, headers)
        assert (got[0], got[2]["error"]["code"]) == (status, code)
    missing = path.replace("/c/search", "/nothing/search")
    first, second = _twice(node.rest_url, missing, body, good)
    _same(first, second)
    assert first[0] == 404 and first[2]["error"]["code"] == "not_found"
    over = f"/v1/tenants/{tenant}/databases/db/collections/big/search"
    client.create_collection(f"{tenant}/db/big", dimension=2)
    first, second = _twice(node.rest_url, over, b" " * (BODY_LIMIT + 1), good)
    _same(first, second)
    assert first[0] == 413 and first[2]["error"]["code"] == "payload_too_large"


def test_metrics_count_both_paths_under_the_route(client: Client, tenant: str, akidb_cluster):
    node = akidb_cluster.nodes[0]
    client.create_collection(f"{tenant}/db/m", dimension=2)
    path = f"/v1/tenants/{tenant}/databases/db/collections/m/search"
    route = "/v1/tenants/<tenant>/databases/<database>/collections/<collection>/search"
    series = re.compile(r'akidb_requests_total\{method="POST",route="' + re.escape(route)
                        + r'",status="(\d+)"\} (\S+)')

    def counts() -> dict[str, float]:
        text = client.metrics()
        return {m.group(1): float(m.group(2)) for m in series.finditer(text)}

    before = counts()
    headers = {"Authorization": f"Bearer {node.admin_key}", "Content-Type": "application/json"}
    for body in (b'{"vector": [1, 0]}', b'{"vector": [1, 0]}', b'{"vector": [1]}',
                 b'{"vector": [1]}'):
        _send(node.rest_url, "POST", path, body, headers)
    after = counts()
    assert after.get("200", 0) - before.get("200", 0) == 2
    assert after.get("422", 0) - before.get("422", 0) == 2


def test_granian_serves_the_hot_path_alike(tmp_path):
    node = Node(tmp_path / "data", fsync="batch", extra_args=["--http-server", "granian"])
    node.start()
    try:
        with node.admin_client() as c:
            for name in ("g", "h"):
                c.create_collection(f"t/db/{name}", dimension=2, create_parents=True)
                c.upsert(f"t/db/{name}", [{"id": "a", "vector": [1.0, 0.0]}])
        headers = {"Authorization": f"Bearer {node.admin_key}",
                   "Content-Type": "application/json"}
        for name, body, status in (("g", b'{"vector": [1, 0], "k": 1}', 200),
                                   ("h", b'{"vector": [1]}', 422)):
            path = f"/v1/tenants/t/databases/db/collections/{name}/search"
            first, second = _twice(node.rest_url, path, body, headers)
            _same(first, second)
            assert first[0] == status
    finally:
        node.close()


def _toy_front(fail: BaseException) -> RestFront:
    """A real front around a two-route app; its one hot handler raises ``fail``."""

    class Metrics:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str, int]] = []

        def observe(self, route: str, method: str, status: int, seconds: float) -> None:
            self.seen.append((route, method, status))

    def boom(environ: dict[str, Any], name: str) -> Any:
        raise fail

    app = AkiFlask("toy")

    app.config["flask_requests"] = 0

    @app.before_request
    def _count() -> None:
        app.config["flask_requests"] += 1

    app.add_url_rule("/things/<name>", "boom", _flask_view(boom), methods=["POST"])
    return RestFront(app, {"boom": boom}, Metrics())  # type: ignore[arg-type]


@pytest.mark.parametrize("fail,status", [(RuntimeError("bug"), 500),
                                         (PermissionDenied("no"), 403),
                                         (QuotaExceeded("slow down", details={"retry_after": 2.5}),
                                          429)])
def test_errors_from_a_hot_handler_match_flasks(fail, status, caplog):
    front = _toy_front(fail)
    web = WsgiClient(front)
    with caplog.at_level(logging.INFO, logger="akidb.rest"):
        answers = [web.post("/things/x", data=b"{}") for _ in range(2)]
    assert front.flask.config["flask_requests"] == 1  # the second went the hot way
    for r in answers:
        assert r.status_code == status
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers.get("Retry-After") == ("3" if status == 429 else None)
    bodies = [json.loads(r.data) for r in answers]
    if status == 500:
        for r, b in zip(answers, bodies, strict=True):
            assert r.headers["X-Request-Id"] in b["error"]["message"]
        assert sum("unhandled error" in m for m in caplog.messages) == 2
    else:
        assert bodies[0] == bodies[1]
    assert sum("request failed" in m for m in caplog.messages) == 2
    assert front.metrics.seen == [("/things/<name>", "POST", status)] * 2  # type: ignore
