"""An S3 API for chaos experiments whose node ships to an object store, behind a
fault proxy so the nemesis can cut it off (``object_store_outage``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests

from akidb.server.client import Client

BUCKET = "akidb-chaos"
ENDPOINT_ENV = "AKIDB_CHAOS_S3_ENDPOINT"
# Ship small sealed segments often and retry fast, so an outage shows in a short run.
SHIPPING_ENV = {"AKIDB_WAL_SEGMENT_BYTES": "16384", "AKIDB_SHIP_MAX_BACKOFF_S": "0.5"}
_TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}


class ObjectStoreUnavailable(RuntimeError):
    """No S3 endpoint given and moto is not installed (a usage error)."""


@contextmanager
def s3_endpoint() -> Iterator[tuple[str, dict[str, str]]]:
    """(endpoint URL, environment for the server): ``AKIDB_CHAOS_S3_ENDPOINT`` with the
    caller's AWS_* credentials, else an in-process moto server with test ones."""
    given = os.environ.get(ENDPOINT_ENV)
    if given:
        yield given, {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        return
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise ObjectStoreUnavailable(
            f"an object_store experiment needs {ENDPOINT_ENV}=URL (an S3 API with a bucket "
            f"{BUCKET!r}) or moto (pip install -e '.[test]')") from None
    from akidb.harness.process import free_port

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                     aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        yield url, dict(_TEST_CREDENTIALS)
    finally:
        server.stop()


class S3Proxy:
    """A proxy in front of the S3 endpoint on a Toxiproxy API of its own, driven over
    HTTP by URL: toxiproxy-python keeps one API address per process, which the
    cluster's own proxy endpoint takes."""

    def __init__(self, api_url: str, listen: str) -> None:
        self.api_url = api_url
        self.listen = listen

    def _set(self, enabled: bool) -> None:
        answer = requests.post(f"{self.api_url}/proxies/s3", json={"enabled": enabled},
                               timeout=10)
        answer.raise_for_status()

    def disable(self) -> None:
        self._set(False)

    def enable(self) -> None:
        self._set(True)


@contextmanager
def proxied(endpoint: str) -> Iterator[S3Proxy]:
    """A fault proxy in front of ``endpoint``."""
    from akidb.chaos.endpoint import ToxiproxyEndpoint

    api = ToxiproxyEndpoint().start()
    try:
        host = endpoint.split("://", 1)[-1].rstrip("/")
        answer = requests.post(f"{api.url}/proxies", json={
            "name": "s3", "listen": "127.0.0.1:0", "upstream": host, "enabled": True},
            timeout=10)
        answer.raise_for_status()
        yield S3Proxy(api.url, answer.json()["listen"])
    finally:
        api.close()


def drained(admin: Client, within_s: float = 30.0) -> dict[str, Any]:
    """The node's shipping status once its backlog is empty (or when time runs out)."""
    deadline = time.monotonic() + within_s
    while True:
        status = admin.request("GET", "/ready")["object_store"]
        if status["backlog_objects"] == 0 or time.monotonic() > deadline:
            return status
        time.sleep(0.2)
