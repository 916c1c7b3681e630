"""API keys: the global admin key, and per-user keys stored only as salted hashes.

A user key reads ``akidb_<key id>_<secret>``: the id (48 bits, hex) finds the
stored row, the secret (192 bits) is checked against ``sha256(salt + secret)`` in
constant time. Keys are random, so a fast hash is enough (there is nothing to
brute-force); the salt keeps equal secrets from producing equal rows.
The admin key lives only in ``DIR/admin.key`` (mode 0600) or ``AKIDB_ADMIN_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from akidb.server.errors import StartupError, Unauthenticated
from akidb.server.storage.metadata import MetadataStore

ADMIN_KEY_FILE = "admin.key"
ENV_ADMIN_KEY = "AKIDB_ADMIN_KEY"
ROLES = ("admin", "developer", "viewer", "auditor")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the global admin, or a user with one role in one tenant."""

    name: str
    is_admin: bool
    tenant: str | None = None
    role: str | None = None
    # The tenant's row id when the key was verified: a tenant deleted and created again
    # under the same name is another tenant, and this principal belongs to the old one.
    tenant_id: int | None = None


ADMIN = Principal("admin", True)


@dataclass(frozen=True)
class NewKey:
    key_id: str
    salt: bytes
    hash: bytes
    secret_key: str  # shown to the user once, never stored


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(24)
    salt = os.urandom(16)
    return NewKey(key_id, salt, _hash(salt, secret), f"akidb_{key_id}_{secret}")


def _hash(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


MIN_ADMIN_KEY_LENGTH = 16


def check_admin_key(key: str, source: str) -> str:
    """A key no client can send, or one short enough to guess, is refused at start-up."""
    if key != key.strip():
        raise StartupError(f"{source} starts or ends with whitespace, which an Authorization "
                           "header cannot carry, so the key could never authenticate; "
                           "remove the whitespace")
    if len(key) < MIN_ADMIN_KEY_LENGTH:
        raise StartupError(
            f"{source} is {len(key)} characters long; an admin key needs at least "
            f"{MIN_ADMIN_KEY_LENGTH} (make one with: python -c \"import secrets; "
            "print(secrets.token_urlsafe(32))\")")
    return key


def load_or_create_admin_key(data_dir: Path, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if env.get(ENV_ADMIN_KEY) is not None and env[ENV_ADMIN_KEY] != "":
        return check_admin_key(env[ENV_ADMIN_KEY], ENV_ADMIN_KEY)
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if not key:
            raise StartupError(f"{path} is empty; delete it to create a new admin key")
        return check_admin_key(key, str(path))
    key = "akidb_admin_" + secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


class KeyAuthenticator:
    """Bearer token → principal. Verified user keys are cached by id.

    Every control-plane change that can take a credential away (a revoked key, a deleted
    user, database or tenant) calls ``revoke_cached`` before it returns: the cache is
    emptied and its epoch advances, so a lookup that read the store before the change
    cannot put its stale answer back afterwards."""

    def __init__(self, admin_key: str, store: MetadataStore | None = None) -> None:
        self._admin = admin_key.encode()
        self._store = store
        self._cache: dict[str, tuple[bytes, Principal]] = {}
        self._epoch = 0
        self._lock = threading.Lock()

    def authenticate(self, header: str | None) -> Principal:
        if not header:
            raise Unauthenticated("missing Authorization header; send 'Bearer <api key>'")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("Authorization header must be 'Bearer <api key>'")
        if hmac.compare_digest(token.encode(), self._admin):
            return ADMIN
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != "akidb" or self._store is None:
            raise Unauthenticated("unknown API key")
        key_id, secret = parts[1], parts[2]
        cached = self._cache.get(key_id)
        if cached is not None:
            digest, principal = cached
            salt = digest[:16]
            if hmac.compare_digest(_hash(salt, secret), digest[16:]):
                return principal
            raise Unauthenticated("unknown API key")
        epoch = self._epoch
        row = self._store.lookup_key(key_id)
        if row is None or not hmac.compare_digest(_hash(row.salt, secret), row.hash):
            raise Unauthenticated("unknown API key")
        if row.revoked:
            raise Unauthenticated(f"API key {key_id} has been revoked")
        principal = Principal(f"{row.tenant}/{row.user}", False, row.tenant, row.role,
                              row.tenant_id)
        with self._lock:
            if epoch == self._epoch:
                self._cache[key_id] = (row.salt + row.hash, principal)
        return principal

    def revoke_cached(self) -> None:
        """Forget every verified key; the next call of each re-reads the store."""
        with self._lock:
            self._epoch += 1
            self._cache.clear()
