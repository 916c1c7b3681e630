"""Credentials die with what they belong to: keys, users and tenants, on REST and gRPC.

The state machine at the end drives a real server through random create / use /
revoke / delete / re-create sequences and checks every call against a model of
which key may do what.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from akidb.server.client import Client
from akidb.server.errors import AkiError, NotFound, PermissionDenied, Unauthenticated


def _clients(node, key: str) -> tuple[Client, Client]:
    """The same key over REST and over gRPC (data plane)."""
    return (Client(node.rest_url, key, retries=0),
            Client(node.rest_url, key, node.grpc_target, data_plane="grpc", retries=0))


def _setup_tenant(admin: Client, tenant: str, seed_id: str) -> None:
    admin.create_tenant(tenant)
    admin.create_database(tenant, "db")
    admin.create_collection(f"{tenant}/db/c", dimension=2, metric="l2")
    admin.upsert(f"{tenant}/db/c", [{"id": seed_id, "vector": [1, 0]}])


def test_a_deleted_tenants_keys_die_at_once_and_do_not_open_its_successor(client,
                                                                            akidb_cluster):
    node = akidb_cluster.nodes[0]
    tenant = f"tc-{uuid.uuid4().hex[:8]}"
    _setup_tenant(client, tenant, "old")
    key = client.create_user(tenant, "boss", "admin")["api_key"]
    rest, grpc = _clients(node, key)
    try:
        # Used once on each transport, so the key is verified and cached.
        assert rest.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["old"]
        assert grpc.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["old"]
        client.delete_tenant(tenant)
        _setup_tenant(client, tenant, "new")
        for c in (rest, grpc):
            with pytest.raises(Unauthenticated):
                c.search(f"{tenant}/db/c", [1, 0], k=1)
            with pytest.raises(Unauthenticated):
                c.get(f"{tenant}/db/c", "new")
        with pytest.raises(Unauthenticated):
            rest.create_user(tenant, "intruder", "admin")
        with pytest.raises(Unauthenticated):
            rest.list_databases(tenant)
        assert [u["name"] for u in client.list_users(tenant)] == []
    finally:
        rest.close()
        grpc.close()
        client.delete_tenant(tenant)


def test_a_deleted_users_and_a_revoked_keys_calls_fail_on_both_transports(client,
                                                                          akidb_cluster):
    node = akidb_cluster.nodes[0]
    tenant = f"tu-{uuid.uuid4().hex[:8]}"
    _setup_tenant(client, tenant, "seed")
    gone = client.create_user(tenant, "gone", "developer")["api_key"]
    keep = client.create_user(tenant, "keep", "viewer")
    extra = client.create_key(tenant, "keep")
    pairs = [_clients(node, k) for k in (gone, keep["api_key"], extra["api_key"])]
    try:
        for rest, grpc in pairs:
            assert rest.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["seed"]
            assert grpc.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["seed"]
        client.delete_user(tenant, "gone")
        client.revoke_key(tenant, "keep", keep["key_id"])
        for rest, grpc in pairs[:2]:
            for c in (rest, grpc):
                with pytest.raises(Unauthenticated):
                    c.search(f"{tenant}/db/c", [1, 0], k=1)
        rest, grpc = pairs[2]  # the user's other key still works
        assert grpc.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["seed"]
        assert rest.get(f"{tenant}/db/c", "seed")["id"] == "seed"
    finally:
        for rest, grpc in pairs:
            rest.close()
            grpc.close()
        client.delete_tenant(tenant)


def test_a_deleted_tenants_keys_stay_dead_across_a_restart(node):
    admin = node.admin_client()
    _setup_tenant(admin, "tr", "old")
    key = admin.create_user("tr", "boss", "admin")["api_key"]
    Client(node.rest_url, key).get_tenant("tr")
    admin.delete_tenant("tr")
    node.restart()
    admin = node.admin_client()
    _setup_tenant(admin, "tr", "new")
    rest, grpc = _clients(node, key)
    try:
        for c in (rest, grpc):
            with pytest.raises(Unauthenticated):
                c.search("tr/db/c", [1, 0], k=1)
    finally:
        rest.close()
        grpc.close()


# -- the lifecycle state machine ---------------------------------------------------------
TENANTS = ("la", "lb")
ROLE_CAN = {"admin": {"search", "write", "admin"}, "developer": {"search", "write"},
            "viewer": {"search"}, "auditor": set()}


class Lifecycle(RuleBasedStateMachine):
    """Model: live tenants and users (each with an incarnation) and each key's owner."""

    def __init__(self) -> None:
        super().__init__()
        self.node = Lifecycle.node
        self.admin = self.node.admin_client()
        self.prefix = uuid.uuid4().hex[:6]
        self.tenants: dict[str, int] = {}                          # short -> incarnation
        self.users: dict[tuple[str, str], tuple[int, str]] = {}    # (t, u) -> (inc, role)
        self.key_owner: dict[str, tuple[str, str, int]] = {}       # key -> (t, u, user inc)
        self.revoked: set[str] = set()
        self.incarnation = 0
        self.clients: dict[str, tuple[Client, Client]] = {}

    def _t(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    @initialize()
    def start(self) -> None:
        for short in TENANTS:
            self.create_tenant(short)

    @rule(short=st.sampled_from(TENANTS))
    def create_tenant(self, short: str) -> None:
        if short in self.tenants:
            return
        _setup_tenant(self.admin, self._t(short), "seed")
        self.incarnation += 1
        self.tenants[short] = self.incarnation

    @rule(short=st.sampled_from(TENANTS))
    def delete_tenant(self, short: str) -> None:
        if short not in self.tenants:
            return
        self.admin.delete_tenant(self._t(short))
        del self.tenants[short]
        self.users = {k: v for k, v in self.users.items() if k[0] != short}

    @rule(short=st.sampled_from(TENANTS))
    def recreate_tenant(self, short: str) -> None:
        """The dangerous case: a tenant deleted and at once created again by name."""
        self.delete_tenant(short)
        self.create_tenant(short)

    @rule(short=st.sampled_from(TENANTS), user=st.sampled_from(["u1", "u2"]),
          role=st.sampled_from(sorted(ROLE_CAN)))
    def create_user_or_key(self, short: str, user: str, role: str) -> None:
        if short not in self.tenants:
            return
        if (short, user) in self.users:
            made = self.admin.create_key(self._t(short), user)
        else:
            made = self.admin.create_user(self._t(short), user, role)
            self.incarnation += 1
            self.users[(short, user)] = (self.incarnation, role)
        self.key_owner[made["api_key"]] = (short, user, self.users[(short, user)][0])

    @rule(short=st.sampled_from(TENANTS), user=st.sampled_from(["u1", "u2"]))
    def delete_user(self, short: str, user: str) -> None:
        if (short, user) not in self.users:
            return
        self.admin.delete_user(self._t(short), user)
        del self.users[(short, user)]

    @precondition(lambda self: self.key_owner)
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.key_owner)))
        if self._role(key) is None:
            return  # revoked already, or its user or tenant is gone
        short, user, _inc = self.key_owner[key]
        self.admin.revoke_key(self._t(short), user, key.split("_")[1])
        self.revoked.add(key)

    def _role(self, key: str) -> str | None:
        """The role the key may act with now, or None when it must be refused (401)."""
        if key in self.revoked:
            return None
        short, user, inc = self.key_owner[key]
        live = self.users.get((short, user))
        return live[1] if live is not None and live[0] == inc else None

    @precondition(lambda self: self.key_owner)
    @rule(data=st.data(), target_short=st.sampled_from(TENANTS),
          op=st.sampled_from(["search", "write", "admin"]), transport=st.integers(0, 1))
    def use(self, data: st.DataObject, target_short: str, op: str, transport: int) -> None:
        key = data.draw(st.sampled_from(sorted(self.key_owner)))
        Lifecycle.used += 1
        if key not in self.clients:
            self.clients[key] = _clients(self.node, key)
        c = self.clients[key][transport if op != "admin" else 0]
        tenant = self._t(target_short)
        coll = f"{tenant}/db/c"
        calls = {"search": lambda: c.search(coll, [1, 0], k=1),
                 "write": lambda: c.upsert(coll, [{"id": "w", "vector": [0, 1]}]),
                 "admin": lambda: c.create_database(tenant, f"d{uuid.uuid4().hex[:6]}")}
        role = self._role(key)
        owner = self.key_owner[key][0]
        allowed = role is not None and owner == target_short and op in ROLE_CAN[role]
        try:
            calls[op]()
        except Unauthenticated:
            assert role is None, f"a live {role} key of {owner} was refused"
            return
        except (PermissionDenied, NotFound):
            assert not allowed, f"{role} of {owner} was refused {op} on {target_short}"
            return
        except AkiError as exc:
            raise AssertionError(f"unexpected {exc!r}") from None
        assert allowed, f"key of {owner} (now {role}) was allowed {op} on {target_short}"

    def teardown(self) -> None:
        for rest, grpc in self.clients.values():
            rest.close()
            grpc.close()
        for short in list(self.tenants):
            self.admin.delete_tenant(self._t(short))
        self.admin.close()


def test_no_key_ever_authorizes_what_it_should_not(akidb_cluster):
    Lifecycle.node = akidb_cluster.nodes[0]
    Lifecycle.used = 0
    run_state_machine_as_test(Lifecycle, settings=settings(
        max_examples=60, stateful_step_count=30, deadline=None, database=None,
        derandomize=True, suppress_health_check=[HealthCheck.too_slow]))
    # the machine really exercised keys (derandomized: the same steps on every run,
    # so this count does not vary with the draw)
    assert Lifecycle.used > 20
