"""Authorization: roles via Cedar, tenant isolation, keys, custom policies, quotas, audit."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from akidb.server.client import Client
from akidb.server.errors import (
    BadRequest,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unauthenticated,
)


@pytest.fixture
def org(client: Client, akidb_cluster):
    """A tenant with one user per role and a collection; yields (tenant, {role: Client})."""
    tenant = f"o-{uuid.uuid4().hex[:10]}"
    client.create_tenant(tenant)
    client.create_database(tenant, "db")
    client.create_collection(f"{tenant}/db/c", dimension=2, metric="l2")
    client.upsert(f"{tenant}/db/c", [{"id": "seed", "vector": [1, 0]}])
    node = akidb_cluster.nodes[0]
    users = {}
    for role in ("admin", "developer", "viewer", "auditor"):
        made = client.create_user(tenant, f"{role}-user", role)
        assert made["api_key"].startswith("akidb_") and made["role"] == role
        users[role] = Client(node.rest_url, made["api_key"], node.grpc_target)
    yield tenant, users
    for c in users.values():
        c.close()
    client.delete_tenant(tenant)


def test_roles_grant_what_they_say(org):
    tenant, u = org
    coll = f"{tenant}/db/c"
    u["developer"].upsert(coll, [{"id": "dev", "vector": [0, 1]}])
    assert u["viewer"].search(coll, [0, 1], k=1).ids == ["dev"]
    assert u["viewer"].get(coll, "dev")["id"] == "dev"
    with pytest.raises(PermissionDenied):
        u["viewer"].upsert(coll, [{"id": "v", "vector": [1, 1]}])
    with pytest.raises(PermissionDenied):
        u["auditor"].search(coll, [0, 1])
    with pytest.raises(PermissionDenied):
        u["developer"].create_collection(f"{tenant}/db/new", dimension=2)
    u["admin"].create_collection(f"{tenant}/db/new", dimension=2)
    made = u["admin"].create_user(tenant, "extra", "viewer")
    assert made["name"] == "extra"
    with pytest.raises(PermissionDenied):
        u["admin"].create_tenant("another-tenant")
    with pytest.raises(PermissionDenied):
        u["developer"].list_users(tenant)
    assert [t["name"] for t in u["viewer"].list_tenants()] == [tenant]
    assert u["developer"].get_collection(coll)["count"] == 2


def test_unknown_and_revoked_keys_are_401(org, client, akidb_cluster):
    tenant, u = org
    node = akidb_cluster.nodes[0]
    made = client.create_user(tenant, "temp", "developer")
    temp = Client(node.rest_url, made["api_key"])
    assert temp.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["seed"]  # cached now
    second = client.create_key(tenant, "temp")
    other = Client(node.rest_url, second["api_key"])
    client.revoke_key(tenant, "temp", made["key_id"])
    with pytest.raises(Unauthenticated, match="revoked"):
        temp.search(f"{tenant}/db/c", [1, 0])
    assert other.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["seed"]
    forged = made["api_key"][:-4] + "AAAA"
    for key in (forged, "akidb_000000000000_nothing", "nonsense"):
        with pytest.raises(Unauthenticated):
            Client(node.rest_url, key).get_collection(f"{tenant}/db/c")
    client.delete_user(tenant, "temp")
    with pytest.raises(Unauthenticated):
        other.search(f"{tenant}/db/c", [1, 0])
    with pytest.raises(NotFound):
        client.revoke_key(tenant, "nobody", "abc")


def test_custom_policies_are_validated_and_enforced(org, client):
    tenant, u = org
    before = client.get_policies(tenant)
    for bad, fragment in [("permit(principal, action, resource", "parse"),
                          ('permit(principal, action == AkiDB::Action::"fly", resource);',
                           "fly")]:
        with pytest.raises(BadRequest) as info:
            client.put_policies(tenant, bad)
        assert fragment in str(info.value)
    assert client.get_policies(tenant) == before
    u["viewer"].search(f"{tenant}/db/c", [1, 0])
    policy = (f'forbid (principal in AkiDB::Role::"{tenant}/viewer", '
              f'action == AkiDB::Action::"search", '
              f'resource == AkiDB::Collection::"{tenant}/db/c");')
    client.put_policies(tenant, policy)
    assert client.get_policies(tenant)["policies"] == policy
    with pytest.raises(PermissionDenied):
        u["viewer"].search(f"{tenant}/db/c", [1, 0])
    assert u["developer"].search(f"{tenant}/db/c", [1, 0], k=1).ids == ["seed"]
    with pytest.raises(PermissionDenied):
        u["developer"].put_policies(tenant, "")


def test_audit_log_records_denials_and_admin_actions(org, client):
    tenant, u = org
    with pytest.raises(PermissionDenied):
        u["viewer"].delete(f"{tenant}/db/c", "seed")
    entries = u["auditor"].audit_log(tenant)
    actions = {(e["action"], e["decision"]) for e in entries}
    assert ("write", "deny") in actions and ("create_user", "allow") in actions
    assert ("create_collection", "allow") in actions
    with pytest.raises(PermissionDenied):
        u["viewer"].audit_log(tenant)


def test_quotas_reject_whole_batches_and_rate_limit(client, akidb_cluster):
    tenant = f"q-{uuid.uuid4().hex[:10]}"
    client.create_tenant(tenant, quotas={"max_vectors": 10, "max_collections": 1,
                                         "requests_per_second": 1, "burst": 5})
    with pytest.raises(BadRequest, match="quotas"):
        client.create_tenant(f"x-{tenant}", quotas={"max_vectrs": 1})
    try:
        client.create_database(tenant, "db")
        client.create_collection(f"{tenant}/db/c", dimension=2, metric="l2")
        with pytest.raises(QuotaExceeded, match="collections"):
            client.create_collection(f"{tenant}/db/d", dimension=2)
        client.upsert_arrays(f"{tenant}/db/c", [str(i) for i in range(8)], np.ones((8, 2)))
        with pytest.raises(QuotaExceeded, match="batch rejected"):
            client.upsert_arrays(f"{tenant}/db/c", [str(i) for i in range(8, 11)],
                                 np.ones((3, 2)))
        assert client.get_collection(f"{tenant}/db/c")["count"] == 8
        client.upsert_arrays(f"{tenant}/db/c", ["0", "8"], np.ones((2, 2)))  # 1 new: fits
        node = akidb_cluster.nodes[0]
        user = client.create_user(tenant, "u", "viewer")
        viewer = Client(node.rest_url, user["api_key"], retries=0)
        statuses = []
        for _ in range(12):
            status, _body = viewer.transport.request("GET", f"/v1/tenants/{tenant}/databases")
            statuses.append(status)
        assert statuses.count(200) >= 5 and 429 in statuses
        status, _body = viewer.transport.request("GET", f"/v1/tenants/{tenant}/databases")
        assert status == 429
        with pytest.raises(QuotaExceeded):
            viewer.list_databases(tenant)
    finally:
        client.delete_tenant(tenant)


def test_rate_quota_is_charged_to_the_callers_tenant(client, akidb_cluster):
    """Another tenant's refused calls cannot drain a tenant's request budget."""
    node = akidb_cluster.nodes[0]
    victim, other = (f"{p}-{uuid.uuid4().hex[:8]}" for p in ("victim", "flooder"))
    for name in (victim, other):
        client.create_tenant(name, quotas={"requests_per_second": 1, "burst": 3})
        client.create_database(name, "db")
    try:
        own = Client(node.rest_url, client.create_user(victim, "v", "viewer")["api_key"],
                     retries=0)
        foreign = Client(node.rest_url, client.create_user(other, "f", "viewer")["api_key"],
                         retries=0)
        refused = []
        for _ in range(10):
            status, _ = foreign.transport.request("GET", f"/v1/tenants/{victim}/databases")
            refused.append(status)
        assert set(refused) <= {403, 429} and 429 in refused  # its own budget ran out
        assert [d["name"] for d in own.list_databases(victim)] == ["db"]  # budget intact
        own.close()
        foreign.close()
    finally:
        client.delete_tenant(victim)
        client.delete_tenant(other)


def test_grpc_calls_are_authorized_too(org, akidb_cluster):
    tenant, u = org
    node = akidb_cluster.nodes[0]
    viewer = Client(node.rest_url, u["viewer"].transport.headers["Authorization"][7:],
                    node.grpc_target, data_plane="grpc")
    assert viewer.search(f"{tenant}/db/c", [1, 0], k=1).ids == ["seed"]
    with pytest.raises(PermissionDenied):
        viewer.upsert_arrays(f"{tenant}/db/c", ["g"], np.ones((1, 2)))
    viewer.close()


OPERATIONS = {
    "read_collection": lambda c, t: c.get_collection(f"{t}/db/c"),
    "search": lambda c, t: c.search(f"{t}/db/c", [1, 0]),
    "get": lambda c, t: c.get(f"{t}/db/c", "seed"),
    "upsert": lambda c, t: c.upsert(f"{t}/db/c", [{"id": "x", "vector": [0, 1]}]),
    "delete": lambda c, t: c.delete(f"{t}/db/c", "seed"),
    "list_databases": lambda c, t: c.list_databases(t),
    "create_collection": lambda c, t: c.create_collection(f"{t}/db/z", dimension=2),
    "drop_collection": lambda c, t: c.delete_collection(f"{t}/db/c"),
    "create_user": lambda c, t: c.create_user(t, "intruder", "admin"),
    "policies": lambda c, t: c.put_policies(t, "permit(principal, action, resource);"),
    "audit": lambda c, t: c.audit_log(t),
    "snapshot": lambda c, t: c.snapshot(f"{t}/db/c"),
    "delete_tenant": lambda c, t: c.delete_tenant(t),
}


@pytest.fixture(scope="module")
def two_orgs(akidb_cluster):
    admin = akidb_cluster.admin_client()
    node = akidb_cluster.nodes[0]
    tenants, clients = [], {}
    for _ in range(2):
        t = f"iso-{uuid.uuid4().hex[:8]}"
        admin.create_tenant(t)
        admin.create_database(t, "db")
        admin.create_collection(f"{t}/db/c", dimension=2, metric="l2")
        admin.upsert(f"{t}/db/c", [{"id": "seed", "vector": [1, 0], "payload": {"t": t}}])
        for role in ("admin", "developer", "viewer", "auditor"):
            key = admin.create_user(t, role, role)["api_key"]
            clients[(t, role)] = Client(node.rest_url, key, retries=0)
        tenants.append(t)
    yield admin, tenants, clients
    for t in tenants:
        admin.delete_tenant(t)
    admin.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(attacker=st.integers(0, 1), role=st.sampled_from(["admin", "developer", "viewer",
                                                         "auditor"]),
       op=st.sampled_from(sorted(OPERATIONS)))
def test_no_cross_tenant_access_whatever_the_role(two_orgs, attacker, role, op):
    admin, tenants, clients = two_orgs
    me, victim = tenants[attacker], tenants[1 - attacker]
    before = (admin.get_collection(f"{victim}/db/c")["count"], admin.get(f"{victim}/db/c", "seed"),
              admin.get_policies(victim), [u["name"] for u in admin.list_users(victim)])
    with pytest.raises(PermissionDenied):
        OPERATIONS[op](clients[(me, role)], victim)
    after = (admin.get_collection(f"{victim}/db/c")["count"], admin.get(f"{victim}/db/c", "seed"),
             admin.get_policies(victim), [u["name"] for u in admin.list_users(victim)])
    assert before == after
