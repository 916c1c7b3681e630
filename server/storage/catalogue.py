"""The catalogue in SQLite: tenants, databases, users and API keys, Cedar policies, the
audit log, and collections."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from akidb.server.errors import AlreadyExists, NotFound
from akidb.server.storage.sqlite import SqliteStore


@dataclass(frozen=True)
class UserKey:
    """What an API key id resolves to."""

    key_id: str
    user: str
    tenant: str
    role: str
    salt: bytes
    hash: bytes
    revoked: bool
    tenant_id: int = 0


@dataclass(frozen=True)
class CollectionRow:
    id: int
    tenant: str
    database: str
    name: str
    dimension: int
    metric: str
    m: int
    ef_construction: int
    ef_search: int
    applied_seq: int
    created_at: float
    embedding: str | None = None

    @property
    def path(self) -> str:
        return f"{self.tenant}/{self.database}/{self.name}"


class Catalogue(SqliteStore):
    # -- tenants and databases ---------------------------------------------------------
    def create_tenant(self, name: str, quotas: dict[str, Any]) -> dict[str, Any]:
        try:
            with self._tx(durable=True) as conn:
                conn.execute(
                    "INSERT INTO tenants (name, quotas, created_at) VALUES (?, ?, ?)",
                    (name, json.dumps(quotas), time.time()),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"tenant {name!r} already exists") from None
        return self.get_tenant(name)

    def get_tenant(self, name: str) -> dict[str, Any]:
        row = self._reader().execute(
            "SELECT id, name, quotas, created_at FROM tenants WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise NotFound(f"tenant {name!r} not found")
        return {"id": row[0], "name": row[1], "quotas": json.loads(row[2]), "created_at": row[3]}

    def list_tenants(self) -> list[dict[str, Any]]:
        rows = self._reader().execute("SELECT name FROM tenants ORDER BY name").fetchall()
        return [self.get_tenant(r[0]) for r in rows]

    def delete_tenant(self, name: str) -> list[int]:
        """Delete a tenant and everything under it; returns the dropped collection ids."""
        tenant = self.get_tenant(name)
        with self._tx(durable=True) as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT c.id FROM collections c JOIN databases d ON d.id = c.database_id"
                    " WHERE d.tenant_id = ?",
                    (tenant["id"],),
                )
            ]
            for cid in ids:
                conn.execute("DELETE FROM documents WHERE collection_id = ?", (cid,))
            conn.execute("DELETE FROM tenants WHERE id = ?", (tenant["id"],))
        return ids

    def create_database(self, tenant: str, name: str) -> dict[str, Any]:
        tenant_id = self.get_tenant(tenant)["id"]
        try:
            with self._tx(durable=True) as conn:
                conn.execute(
                    "INSERT INTO databases (tenant_id, name, created_at) VALUES (?, ?, ?)",
                    (tenant_id, name, time.time()),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"database {tenant}/{name} already exists") from None
        return self.get_database(tenant, name)

    def get_database(self, tenant: str, name: str) -> dict[str, Any]:
        row = self._reader().execute(
            "SELECT d.id, d.name, d.created_at FROM databases d JOIN tenants t"
            " ON t.id = d.tenant_id WHERE t.name = ? AND d.name = ?",
            (tenant, name),
        ).fetchone()
        if row is None:
            self.get_tenant(tenant)
            raise NotFound(f"database {tenant}/{name} not found")
        return {"id": row[0], "tenant": tenant, "name": row[1], "created_at": row[2]}

    def list_databases(self, tenant: str) -> list[dict[str, Any]]:
        self.get_tenant(tenant)
        rows = self._reader().execute(
            "SELECT d.name FROM databases d JOIN tenants t ON t.id = d.tenant_id"
            " WHERE t.name = ? ORDER BY d.name",
            (tenant,),
        ).fetchall()
        return [self.get_database(tenant, r[0]) for r in rows]

    def delete_database(self, tenant: str, name: str) -> list[int]:
        db = self.get_database(tenant, name)
        with self._tx(durable=True) as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM collections WHERE database_id = ?", (db["id"],)
                )
            ]
            for cid in ids:
                conn.execute("DELETE FROM documents WHERE collection_id = ?", (cid,))
            conn.execute("DELETE FROM databases WHERE id = ?", (db["id"],))
        return ids

    # -- users, keys, policies, audit ---------------------------------------------------
    def create_user(self, tenant: str, name: str, role: str, key_id: str, salt: bytes,
                    key_hash: bytes) -> dict[str, Any]:
        tenant_id = self.get_tenant(tenant)["id"]
        now = time.time()
        try:
            with self._tx(durable=True) as conn:
                cur = conn.execute(
                    "INSERT INTO users (tenant_id, name, role, created_at) VALUES (?, ?, ?, ?)",
                    (tenant_id, name, role, now))
                conn.execute(
                    "INSERT INTO api_keys (key_id, user_id, salt, hash, created_at)"
                    " VALUES (?, ?, ?, ?, ?)", (key_id, cur.lastrowid, salt, key_hash, now))
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"user {name!r} already exists in tenant {tenant!r}") from None
        return {"id": int(cur.lastrowid), "name": name, "role": role, "tenant": tenant}

    def list_users(self, tenant: str) -> list[dict[str, Any]]:
        tenant_id = self.get_tenant(tenant)["id"]
        rows = self._reader().execute(
            "SELECT u.id, u.name, u.role, u.created_at, COUNT(k.key_id) FROM users u"
            " LEFT JOIN api_keys k ON k.user_id = u.id AND k.revoked_at IS NULL"
            " WHERE u.tenant_id = ? GROUP BY u.id ORDER BY u.name", (tenant_id,)).fetchall()
        return [{"id": r[0], "name": r[1], "role": r[2], "created_at": r[3], "active_keys": r[4]}
                for r in rows]

    def _user_id(self, tenant: str, user: str) -> int:
        row = self._reader().execute(
            "SELECT u.id FROM users u JOIN tenants t ON t.id = u.tenant_id"
            " WHERE t.name = ? AND u.name = ?", (tenant, user)).fetchone()
        if row is None:
            self.get_tenant(tenant)
            raise NotFound(f"user {user!r} not found in tenant {tenant!r}")
        return int(row[0])

    def add_key(self, tenant: str, user: str, key_id: str, salt: bytes, key_hash: bytes) -> None:
        user_id = self._user_id(tenant, user)
        with self._tx(durable=True) as conn:
            conn.execute("INSERT INTO api_keys (key_id, user_id, salt, hash, created_at)"
                         " VALUES (?, ?, ?, ?, ?)", (key_id, user_id, salt, key_hash, time.time()))

    def revoke_keys(self, tenant: str, user: str, key_id: str | None = None) -> list[str]:
        """Revoke one key of a user, or all of them; returns the revoked key ids."""
        user_id = self._user_id(tenant, user)
        with self._tx(durable=True) as conn:
            sql = "SELECT key_id FROM api_keys WHERE user_id = ? AND revoked_at IS NULL"
            params: tuple[Any, ...] = (user_id,)
            if key_id is not None:
                sql += " AND key_id = ?"
                params += (key_id,)
            ids = [r[0] for r in conn.execute(sql, params)]
            if key_id is not None and not ids:
                raise NotFound(f"no active key {key_id!r} for user {user!r}")
            conn.executemany("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?",
                             [(time.time(), k) for k in ids])
        return ids

    def delete_user(self, tenant: str, user: str) -> list[str]:
        revoked = self.revoke_keys(tenant, user)
        with self._tx(durable=True) as conn:
            conn.execute("DELETE FROM users WHERE id = ?", (self._user_id(tenant, user),))
        return revoked

    def lookup_key(self, key_id: str) -> UserKey | None:
        row = self._reader().execute(
            "SELECT k.key_id, u.name, t.name, u.role, k.salt, k.hash, k.revoked_at, t.id"
            " FROM api_keys k JOIN users u ON u.id = k.user_id JOIN tenants t"
            " ON t.id = u.tenant_id WHERE k.key_id = ?", (key_id,)).fetchone()
        if row is None:
            return None
        return UserKey(row[0], row[1], row[2], row[3], row[4], row[5], row[6] is not None,
                       row[7])

    def set_policies(self, tenant: str, policies: str) -> None:
        tenant_id = self.get_tenant(tenant)["id"]
        with self._tx(durable=True) as conn:
            conn.execute(
                "INSERT INTO tenant_policies (tenant_id, policies, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (tenant_id) DO UPDATE SET policies = excluded.policies,"
                " updated_at = excluded.updated_at", (tenant_id, policies, time.time()))

    def get_policies(self, tenant: str) -> str:
        tenant_id = self.get_tenant(tenant)["id"]
        row = self._reader().execute(
            "SELECT policies FROM tenant_policies WHERE tenant_id = ?", (tenant_id,)).fetchone()
        return row[0] if row else ""

    def audit(self, tenant: str | None, principal: str, action: str, resource: str,
              decision: str, detail: str | None = None) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO audit_log (ts, tenant, principal, action, resource, decision,"
                " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), tenant, principal, action, resource, decision, detail))

    def read_audit(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._reader().execute(
            "SELECT ts, principal, action, resource, decision, detail FROM audit_log"
            " WHERE tenant = ? ORDER BY id DESC LIMIT ?", (tenant, limit)).fetchall()
        return [dict(zip(("ts", "principal", "action", "resource", "decision", "detail"), r,
                         strict=True)) for r in rows]

    # -- collections -------------------------------------------------------------------
    _COLLECTION_SELECT = (
        "SELECT c.id, t.name, d.name, c.name, c.dimension, c.metric, c.m, c.ef_construction,"
        " c.ef_search, c.applied_seq, c.created_at, c.embedding FROM collections c"
        " JOIN databases d ON d.id = c.database_id JOIN tenants t ON t.id = d.tenant_id"
    )

    def create_collection(
        self,
        tenant: str,
        database: str,
        name: str,
        *,
        dimension: int,
        metric: str,
        m: int,
        ef_construction: int,
        ef_search: int,
        embedding: str | None = None,
        collection_id: int | None = None,
        created_at: float | None = None,
    ) -> CollectionRow:
        """A new collection row; ``collection_id`` is given only when the catalogue is
        rebuilt and must match the collection's existing directory."""
        db_id = self.get_database(tenant, database)["id"]
        try:
            with self._tx(durable=True) as conn:
                conn.execute(
                    "INSERT INTO collections (id, database_id, name, dimension, metric, m,"
                    " ef_construction, ef_search, created_at, embedding)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (collection_id, db_id, name, dimension, metric, m, ef_construction,
                     ef_search, created_at or time.time(), embedding),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"collection {tenant}/{database}/{name} already exists") from None
        return self.get_collection(tenant, database, name)

    def get_collection(self, tenant: str, database: str, name: str) -> CollectionRow:
        row = self._reader().execute(
            self._COLLECTION_SELECT + " WHERE t.name = ? AND d.name = ? AND c.name = ?",
            (tenant, database, name),
        ).fetchone()
        if row is None:
            self.get_database(tenant, database)
            raise NotFound(f"collection {tenant}/{database}/{name} not found")
        return CollectionRow(*row)

    def list_collections(self, tenant: str | None = None, database: str | None = None
                         ) -> list[CollectionRow]:
        if tenant is None:
            rows = self._reader().execute(self._COLLECTION_SELECT + " ORDER BY c.id").fetchall()
        else:
            self.get_database(tenant, database or "")
            rows = self._reader().execute(
                self._COLLECTION_SELECT + " WHERE t.name = ? AND d.name = ? ORDER BY c.name",
                (tenant, database),
            ).fetchall()
        return [CollectionRow(*r) for r in rows]

    def delete_collection(self, collection_id: int) -> None:
        with self._tx(durable=True) as conn:
            conn.execute("DELETE FROM documents WHERE collection_id = ?", (collection_id,))
            conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))

