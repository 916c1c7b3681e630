"""How command-line tools find a server: ``--url``/``--api-key`` (or ``AKIDB_URL`` /
``AKIDB_API_KEY``), or ``--data-dir`` of a local server (its server.json and admin.key)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from akidb.server.client.client import Client


class TargetError(ValueError):
    """No usable server address: the message says what to pass."""


def connect(url: str | None = None, api_key: str | None = None,
            data_dir: Path | None = None, *, grpc_target: str | None = None,
            transport: str = "rest", timeout: float = 120.0) -> Client:
    url = url or os.environ.get("AKIDB_URL")
    api_key = api_key or os.environ.get("AKIDB_API_KEY")
    if data_dir is not None:
        info_path = data_dir / "server.json"
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError) as exc:
            raise TargetError(f"no running server at {data_dir} ({info_path}: {exc})") from None
        url = url or info["rest_url"]
        grpc_target = grpc_target or info.get("grpc_target")
        if api_key is None and (data_dir / "admin.key").exists():
            api_key = (data_dir / "admin.key").read_text().strip()
    if not url:
        raise TargetError("name the server: --url URL --api-key KEY (or AKIDB_URL / "
                          "AKIDB_API_KEY), or --data-dir DIR of a local server")
    if transport == "grpc" and grpc_target is None:
        raise TargetError("--transport grpc needs --grpc-target HOST:PORT, or --data-dir "
                          "(its server.json names the gRPC port)")
    return Client(url, api_key, grpc_target, timeout=timeout, data_plane=transport,
                  ca_bundle=os.environ.get("AKIDB_CA_BUNDLE") or None)
