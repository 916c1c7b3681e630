"""The REST front remembers URL matches (server/api/flask_app.py); every routing answer
must stay what werkzeug gives: the right handler per method, each path's own view
arguments, 404 and 405 (with ``Allow``) on paths already matched, a bounded table."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest
from flask import g

from akidb.server.api import flask_app
from akidb.server.api.flask_app import AkiFlask
from akidb.server.client import Client
from akidb.server.errors import NotFound


def _raw(url: str, key: str, method: str, path: str) -> tuple[int, dict, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def test_a_remembered_path_still_dispatches_by_method_and_answers_405(client: Client,
                                                                     tenant: str,
                                                                     akidb_cluster):
    node = akidb_cluster.nodes[0]
    path = f"/v1/tenants/{tenant}/databases/db/collections/c"
    client.create_collection(f"{tenant}/db/c", dimension=2)
    for _ in range(3):  # the first GET fills the table, the others answer from it
        status, _, body = _raw(node.rest_url, node.admin_key, "GET", path)
        assert status == 200 and body["name"] == "c"
    status, headers, body = _raw(node.rest_url, node.admin_key, "PUT", path)
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    assert set(headers["Allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}
    status, _, body = _raw(node.rest_url, node.admin_key, "DELETE", path)
    assert status == 200 and body == {"deleted": "c"}
    with pytest.raises(NotFound):
        client.get_collection(f"{tenant}/db/c")
    status, _, body = _raw(node.rest_url, node.admin_key, "GET", path + "/nothing/here")
    assert status == 404 and "no route" in body["error"]["message"]


def test_each_path_keeps_its_own_view_arguments(client: Client, tenant: str):
    names = [f"c{i}" for i in range(4)]
    for name in names:
        client.create_collection(f"{tenant}/db/{name}", dimension=2)
    for _ in range(2):
        assert [client.get_collection(f"{tenant}/db/{n}")["name"] for n in names] == names


def _toy_app() -> AkiFlask:
    app = AkiFlask("toy")

    @app.get("/things/<name>")
    def get_thing(name: str) -> dict:
        return {"got": name}

    @app.delete("/things/<name>")
    def drop_thing(name: str) -> dict:
        return {"dropped": name}

    @app.url_value_preprocessor
    def take_lang(endpoint: str | None, values: dict | None) -> None:
        # Flask lets this pop view arguments from request.view_args; the table must
        # hand out a copy, or the next request on the path would find it gone.
        if values is not None and "lang" in values:
            g.lang = values.pop("lang")

    @app.get("/<lang>/hello")
    def hello() -> dict:
        return {"lang": g.get("lang")}

    return app


def test_the_table_is_bounded_and_hands_out_copies(monkeypatch):
    monkeypatch.setattr(flask_app, "MAX_REMEMBERED_ROUTES", 3)
    app = _toy_app()
    web = app.test_client()
    for i in range(10):
        assert web.get(f"/things/t{i}").get_json() == {"got": f"t{i}"}
        assert len(app.remembered_routes) <= 3
    for _ in range(3):
        assert web.get("/fr/hello").get_json() == {"lang": "fr"}
    assert web.delete("/things/t9").get_json() == {"dropped": "t9"}
    assert web.get("/things/t9").get_json() == {"got": "t9"}
    assert web.post("/things/t9").status_code == 405
    assert web.get("/things/t9/more").status_code == 404
    assert ("GET", "/things/t9") in app.remembered_routes
    assert ("POST", "/things/t9") not in app.remembered_routes  # failures are not kept
