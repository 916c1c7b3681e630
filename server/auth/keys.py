"""The admin API key: created on first start, kept only in ``DIR/admin.key`` (mode 0600)."""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from server.errors import Unauthenticated

ADMIN_KEY_FILE = "admin.key"
ENV_ADMIN_KEY = "AKIDB_ADMIN_KEY"


@dataclass(frozen=True)
class Principal:
    """Who is calling; only the global admin exists until users and roles arrive."""

    name: str
    is_admin: bool


ADMIN = Principal("admin", True)


def load_or_create_admin_key(data_dir: Path, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get(ENV_ADMIN_KEY):
        return env[ENV_ADMIN_KEY]
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if not key:
            raise ValueError(f"{path} is empty; delete it to create a new admin key")
        return key
    key = "akidb_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


class KeyAuthenticator:
    """Maps a bearer token to a principal, comparing in constant time."""

    def __init__(self, admin_key: str) -> None:
        self._admin = admin_key.encode()

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthenticated("missing Authorization header; send 'Bearer <api key>'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Authorization header must be 'Bearer <api key>'")
        if hmac.compare_digest(token.strip().encode(), self._admin):
            return ADMIN
        raise Unauthenticated("unknown API key")
