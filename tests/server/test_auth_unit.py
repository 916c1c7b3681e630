"""Authentication, Cedar decisions and rate quotas, in-process (no server)."""

from __future__ import annotations

import pytest

from akidb.server.auth.cedar import ACTIONS, ROLE_ACTIONS, Authorizer, role_policies
from akidb.server.auth.keys import ADMIN, KeyAuthenticator, Principal, check_admin_key, new_key
from akidb.server.auth.quotas import RateLimiter, parse_quotas
from akidb.server.errors import BadRequest, QuotaExceeded, StartupError, Unauthenticated
from akidb.server.storage.metadata import MetadataStore

ADMIN_KEY = "admin-key-for-unit-tests-0123456789"


@pytest.fixture
def store(tmp_path):
    s = MetadataStore(tmp_path / "m.db")
    for t in ("acme", "other"):
        s.create_tenant(t, {})
        s.create_database(t, "db")
    yield s
    s.close()


def _user(store: MetadataStore, tenant: str, name: str, role: str) -> str:
    key = new_key()
    store.create_user(tenant, name, role, key.key_id, key.salt, key.hash)
    return key.secret_key


def test_headers_and_keys(store):
    auth = KeyAuthenticator(ADMIN_KEY, store)
    assert auth.authenticate(f"Bearer {ADMIN_KEY}") is ADMIN
    assert auth.authenticate(f"bearer   {ADMIN_KEY}  ") is ADMIN
    secret = _user(store, "acme", "dev", "developer")
    who = auth.authenticate(f"Bearer {secret}")
    assert (who.name, who.tenant, who.role, who.is_admin) == ("acme/dev", "acme", "developer",
                                                              False)
    assert who.tenant_id == store.get_tenant("acme")["id"]
    assert auth.authenticate(f"Bearer {secret}") == who  # from the cache now
    for header, match in ((None, "missing"), ("", "missing"), ("Basic abc", "Bearer"),
                          ("Bearer ", "Bearer"), (f"Token {ADMIN_KEY}", "Bearer"),
                          ("Bearer nonsense", "unknown"), ("Bearer akidb_x_y", "unknown"),
                          (f"Bearer {secret[:-2]}zz", "unknown"),
                          (f"Bearer {ADMIN_KEY}x", "unknown")):
        with pytest.raises(Unauthenticated, match=match):
            auth.authenticate(header)
    # A cached key with a wrong secret is still refused.
    with pytest.raises(Unauthenticated, match="unknown"):
        auth.authenticate(f"Bearer {secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}")
    assert KeyAuthenticator(ADMIN_KEY, None).authenticate(f"Bearer {ADMIN_KEY}") is ADMIN
    with pytest.raises(Unauthenticated):
        KeyAuthenticator(ADMIN_KEY, None).authenticate(f"Bearer {secret}")


def test_revocation_reaches_cached_keys_only_after_revoke_cached(store):
    auth = KeyAuthenticator(ADMIN_KEY, store)
    secret = _user(store, "acme", "dev", "developer")
    auth.authenticate(f"Bearer {secret}")
    key_id = secret.split("_")[1]
    store.revoke_keys("acme", "dev", key_id)
    auth.authenticate(f"Bearer {secret}")  # still cached: the service must call revoke
    auth.revoke_cached()
    with pytest.raises(Unauthenticated, match="revoked"):
        auth.authenticate(f"Bearer {secret}")
    other = _user(store, "acme", "dev2", "viewer")
    auth.authenticate(f"Bearer {other}")
    store.delete_tenant("acme")
    auth.revoke_cached()
    with pytest.raises(Unauthenticated, match="unknown"):
        auth.authenticate(f"Bearer {other}")


def test_admin_key_rules():
    assert check_admin_key("x" * 16, "env") == "x" * 16
    with pytest.raises(StartupError, match="at least 16"):
        check_admin_key("x" * 15, "env")
    with pytest.raises(StartupError, match="whitespace"):
        check_admin_key(" " + "x" * 20, "env")
    with pytest.raises(StartupError, match="whitespace"):
        check_admin_key("x" * 20 + "\n", "env")


@pytest.mark.parametrize("role", sorted(ROLE_ACTIONS))
def test_each_role_gets_exactly_its_actions_in_its_own_tenant(store, role):
    authz = Authorizer(store)
    me = Principal(f"acme/{role}", False, "acme", role)
    for action in ACTIONS:
        allowed = action in ROLE_ACTIONS[role]
        assert authz.is_allowed(me, action, "acme") is allowed, action
        assert authz.is_allowed(me, action, "acme", "db", "c") is allowed, action
        assert authz.is_allowed(me, action, "other", "db", "c") is False  # isolation
    assert authz.is_allowed(ADMIN, "admin", "other")


def test_custom_policies_are_validated_then_applied_and_invalidated(store):
    authz = Authorizer(store)
    viewer = Principal("acme/v", False, "acme", "viewer")
    assert not authz.is_allowed(viewer, "write", "acme", "db", "c")
    with pytest.raises(BadRequest, match="do not parse"):
        authz.validate("acme", "permit(principal, action resource);")
    with pytest.raises(BadRequest, match="do not validate"):
        authz.validate("acme", 'permit(principal, action == AkiDB::Action::"fly", resource);')
    policy = ('permit (principal in AkiDB::Role::"acme/viewer", action == AkiDB::Action::'
              '"write", resource in AkiDB::Database::"acme/db");')
    authz.validate("acme", policy)
    store.set_policies("acme", policy)
    assert not authz.is_allowed(viewer, "write", "acme", "db", "c")  # cached set
    authz.invalidate("acme")
    assert authz.is_allowed(viewer, "write", "acme", "db", "c")
    assert not authz.is_allowed(viewer, "write", "acme", "db2", "c")
    assert not authz.is_allowed(viewer, "admin", "acme")
    assert 'AkiDB::Role::"acme/admin"' in role_policies("acme")


def test_rate_limiter_bucket():
    rate = RateLimiter()
    quotas = {"requests_per_second": 0.001, "burst": 3}
    for _ in range(3):
        rate.take("t", quotas)
    with pytest.raises(QuotaExceeded) as info:
        rate.take("t", quotas)
    assert 0 < info.value.details["retry_after"] <= 1000
    rate.take("u", quotas)  # another tenant has its own bucket
    rate.forget("t")
    rate.take("t", quotas)
    for _ in range(100):
        rate.take("t", {})  # no rate quota: never limited
    default_burst = {"requests_per_second": 0.001}
    rate.take("v", default_burst)  # burst defaults to ceil(rate) = 1
    with pytest.raises(QuotaExceeded):
        rate.take("v", default_burst)


def test_quota_validation():
    assert parse_quotas({"max_vectors": 5, "burst": 2}) == {"max_vectors": 5, "burst": 2}
    assert parse_quotas({}) == {}
    for bad in ({"max_vectors": -1}, {"requests_per_second": 0}, {"burst": 0},
                {"max_vectors": "5"}, {"unknown": 1}):
        with pytest.raises(BadRequest, match="invalid quotas"):
            parse_quotas(bad)


def test_the_admin_key_file_is_created_once_private_and_reread(tmp_path):
    from akidb.server.auth.keys import ADMIN_KEY_FILE, load_or_create_admin_key

    key = load_or_create_admin_key(tmp_path, environ={})
    path = tmp_path / ADMIN_KEY_FILE
    assert key.startswith("akidb_admin_") and len(key) > 40
    assert path.read_text() == key + "\n" and (path.stat().st_mode & 0o777) == 0o600
    assert load_or_create_admin_key(tmp_path, environ={}) == key
    assert load_or_create_admin_key(tmp_path, environ={"AKIDB_ADMIN_KEY": ""}) == key
    override = "o" * 20
    assert load_or_create_admin_key(tmp_path, environ={"AKIDB_ADMIN_KEY": override}) == override
    with pytest.raises(StartupError, match="AKIDB_ADMIN_KEY"):
        load_or_create_admin_key(tmp_path, environ={"AKIDB_ADMIN_KEY": "short"})
    path.write_text("  \n")
    with pytest.raises(StartupError, match="is empty"):
        load_or_create_admin_key(tmp_path, environ={})
    path.write_text("tiny\n")
    with pytest.raises(StartupError, match="at least 16"):
        load_or_create_admin_key(tmp_path, environ={})
    other = tmp_path / "other"
    other.mkdir()
    assert load_or_create_admin_key(other, environ={}) != key  # random per directory


def test_new_keys_are_unique_and_well_formed():
    a, b = new_key(), new_key()
    assert a.key_id != b.key_id and a.secret_key != b.secret_key and a.salt != b.salt
    prefix, key_id, secret = a.secret_key.split("_", 2)
    assert prefix == "akidb" and key_id == a.key_id and len(key_id) == 12
    assert len(secret) >= 32 and len(a.salt) == 16 and len(a.hash) == 32


def test_the_guard_checks_rate_incarnation_and_cedar_and_audits(store):
    from akidb.server.auth.guard import Guard
    from akidb.server.errors import NotFound, PermissionDenied

    guard = Guard(store, KeyAuthenticator(ADMIN_KEY, store))
    store.set_policies("acme", "")
    acme_id = store.get_tenant("acme")["id"]
    viewer = Principal("acme/v", False, "acme", "viewer", acme_id)
    guard.authorize(viewer, "search", "acme", "db", "c")
    with pytest.raises(PermissionDenied) as info:
        guard.authorize(viewer, "write", "acme", "db", "c")
    assert str(info.value) == "acme/v (role viewer) may not write acme/db/c"
    with pytest.raises(PermissionDenied, match="may not read other"):
        guard.authorize(viewer, "read", "other")
    entries = store.read_audit("acme", 10)
    assert [(e["principal"], e["action"], e["resource"], e["decision"]) for e in entries] == [
        ("acme/v", "read", "other", "deny"), ("acme/v", "write", "acme/db/c", "deny")]
    guard.authorize(ADMIN, "admin", "other")  # the operator may do anything
    with pytest.raises(BadRequest, match="invalid tenant name"):
        guard.authorize(viewer, "read", "../etc")
    stale = Principal("acme/v", False, "acme", "viewer", acme_id + 100)
    with pytest.raises(Unauthenticated, match="belongs to a tenant 'acme' that has been deleted"):
        guard.authorize(stale, "search", "acme")
    with pytest.raises(NotFound):
        guard.tenant("missing")


def test_the_guard_charges_the_callers_home_tenant_first(store):
    from akidb.server.auth.guard import Guard

    store.delete_tenant("other")
    store.create_tenant("other", {"requests_per_second": 0.001, "burst": 1})
    guard = Guard(store, KeyAuthenticator(ADMIN_KEY, store))
    other_id = store.get_tenant("other")["id"]
    caller = Principal("other/u", False, "other", "viewer", other_id)
    with pytest.raises(Exception, match="may not"):
        guard.authorize(caller, "read", "acme")  # refused, but the request was charged
    with pytest.raises(QuotaExceeded, match="tenant 'other' is over its request rate"):
        guard.authorize(caller, "read", "other")
    guard.charge_rate(ADMIN)  # the operator is never rate-limited
    assert guard.tenant_quotas("other") == {"requests_per_second": 0.001, "burst": 1}
    guard.rate.forget("other")
    guard.authorize(caller, "read", "other")


def test_require_admin_and_audit_admin(store):
    from akidb.server.auth.guard import Guard
    from akidb.server.errors import PermissionDenied

    guard = Guard(store, KeyAuthenticator(ADMIN_KEY, store))
    user = Principal("acme/a", False, "acme", "admin", store.get_tenant("acme")["id"])
    guard.require_admin(ADMIN, "create tenants")
    with pytest.raises(PermissionDenied) as info:
        guard.require_admin(user, "create tenants")
    assert str(info.value) == "acme/a may not create tenants: global admins only"
    guard.audit_admin(ADMIN, "create_database", "acme", "acme/db2", "detail text")
    latest, denied = store.read_audit("acme", 2)
    assert (latest["principal"], latest["action"], latest["resource"], latest["decision"],
            latest["detail"]) == ("admin", "create_database", "acme/db2", "allow", "detail text")
    assert (denied["principal"], denied["action"], denied["resource"], denied["decision"]) == (
        "acme/a", "create tenants", "*", "deny")


def test_revoke_drops_keys_decisions_and_the_tenant_cache(store):
    from akidb.server.auth.guard import Guard

    auth = KeyAuthenticator(ADMIN_KEY, store)
    guard = Guard(store, auth)
    secret = _user(store, "acme", "dev", "developer")
    auth.authenticate(f"Bearer {secret}")
    first_id = guard.tenant("acme")["id"]
    guard.authz.policy_set("acme")
    store.delete_tenant("acme")
    store.create_tenant("acme", {})
    assert guard.tenant("acme")["id"] == first_id  # cached until revoked
    guard.revoke("acme")
    assert guard.tenant("acme")["id"] != first_id
    assert "acme" not in guard.authz._sets
    with pytest.raises(Unauthenticated):
        auth.authenticate(f"Bearer {secret}")


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_refills_at_its_rate_and_says_how_long_to_wait(monkeypatch):
    from akidb.server.auth import quotas as quotas_module

    clock = _Clock()
    monkeypatch.setattr(quotas_module.time, "monotonic", clock)
    rate = RateLimiter()
    q = {"requests_per_second": 3, "burst": 2}
    rate.take("t", q)
    rate.take("t", q)  # the burst is spent: 0 tokens
    with pytest.raises(QuotaExceeded) as info:
        rate.take("t", q)
    assert info.value.details == {"retry_after": 0.333}  # (1 - 0) / 3, to the millisecond
    assert str(info.value) == "tenant 't' is over its request rate of 3/s"
    clock.now += 0.2  # 0.6 tokens refilled
    with pytest.raises(QuotaExceeded) as info:
        rate.take("t", q)
    assert info.value.details == {"retry_after": round(0.4 / 3, 3)}
    clock.now += 0.2  # 1.2 tokens now: one call passes, leaving 0.2
    rate.take("t", q)
    with pytest.raises(QuotaExceeded) as info:
        rate.take("t", q)
    assert info.value.details == {"retry_after": round(0.8 / 3, 3)}
    clock.now += 10  # refills cap at the burst
    rate.take("t", q)
    rate.take("t", q)
    with pytest.raises(QuotaExceeded):
        rate.take("t", q)


@pytest.mark.parametrize("header, message", [
    (None, "missing Authorization header; send 'Bearer <api key>'"),
    ("", "missing Authorization header; send 'Bearer <api key>'"),
    ("Basic abc", "Authorization header must be 'Bearer <api key>'"),
    ("Bearer ", "Authorization header must be 'Bearer <api key>'"),
    ("Bearer akidb_onlytwo", "unknown API key"),   # two parts, our prefix
    ("Bearer other_a_b", "unknown API key"),        # three parts, another prefix
    ("Bearer akidb_nosuchid_secret", "unknown API key"),
])
def test_authentication_errors_say_exactly_what_is_wrong(store, header, message):
    with pytest.raises(Unauthenticated) as info:
        KeyAuthenticator(ADMIN_KEY, store).authenticate(header)
    assert str(info.value) == message


def test_a_wrong_secret_for_a_known_key_is_unknown_cached_or_not(store):
    auth = KeyAuthenticator(ADMIN_KEY, store)
    secret = _user(store, "acme", "dev", "developer")
    wrong = f"{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    for _ in ("not cached yet", "cached"):
        with pytest.raises(Unauthenticated) as info:
            auth.authenticate(f"Bearer {wrong}")
        assert str(info.value) == "unknown API key"
        auth.authenticate(f"Bearer {secret}")


def test_policies_can_single_out_one_collection_or_one_database(store):
    authz = Authorizer(store)
    dev = Principal("acme/dev", False, "acme", "developer")
    policy = ('forbid (principal, action, resource == AkiDB::Collection::"acme/db/secret");\n'
              'forbid (principal, action == AkiDB::Action::"read", '
              'resource == AkiDB::Database::"acme/closed");')
    authz.validate("acme", policy)
    store.set_policies("acme", policy)
    authz.invalidate("acme")
    assert authz.is_allowed(dev, "read", "acme", "db", "open")
    assert not authz.is_allowed(dev, "read", "acme", "db", "secret")  # that collection only
    assert not authz.is_allowed(dev, "write", "acme", "db", "secret")
    assert authz.is_allowed(dev, "read", "acme", "db")  # its database is not the collection
    assert not authz.is_allowed(dev, "read", "acme", "closed")  # the database itself
    assert authz.is_allowed(dev, "read", "acme", "closed", "c")  # == names it, not its children
    assert authz.is_allowed(dev, "read", "acme")
    other = Authorizer(store)  # another tenant's set is not the one invalidated
    authz.invalidate("other")
    assert not authz.is_allowed(dev, "read", "acme", "db", "secret")
    assert not other.is_allowed(dev, "read", "acme", "db", "secret")


def test_the_guard_asks_about_the_exact_resource_and_never_rates_the_operator(store):
    from akidb.server.auth.guard import Guard
    from akidb.server.errors import PermissionDenied

    store.delete_tenant("acme")
    store.create_tenant("acme", {"requests_per_second": 0.001, "burst": 1})
    store.create_database("acme", "db")
    policy = 'forbid (principal, action, resource == AkiDB::Collection::"acme/db/secret");'
    store.set_policies("acme", policy)
    guard = Guard(store, KeyAuthenticator(ADMIN_KEY, store))
    for _ in range(5):  # the operator: no rate quota applies, whatever the tenant's
        guard.authorize(ADMIN, "read", "acme", "db", "secret")
    dev = Principal("acme/dev", False, "acme", "developer", store.get_tenant("acme")["id"])
    with pytest.raises(PermissionDenied) as info:
        guard.authorize(dev, "read", "acme", "db", "secret")
    assert str(info.value) == "acme/dev (role developer) may not read acme/db/secret"
    guard.rate.forget("acme")
    guard.authorize(dev, "read", "acme", "db", "open")  # the neighbour is allowed


def test_the_admin_key_comes_from_the_environment_by_default(tmp_path, monkeypatch):
    from akidb.server.auth.keys import ADMIN_KEY_FILE, load_or_create_admin_key

    override = "from-the-process-environment-0123"
    monkeypatch.setenv("AKIDB_ADMIN_KEY", override)
    assert load_or_create_admin_key(tmp_path) == override  # os.environ when none is given
    assert not (tmp_path / ADMIN_KEY_FILE).exists()
    monkeypatch.delenv("AKIDB_ADMIN_KEY")
    (tmp_path / ADMIN_KEY_FILE).write_text("short\n")
    with pytest.raises(StartupError) as info:
        load_or_create_admin_key(tmp_path)
    assert str(info.value).startswith(f"{tmp_path / ADMIN_KEY_FILE} is 5 characters long")


def test_a_revocation_during_a_key_lookup_keeps_that_key_out_of_the_cache(store, monkeypatch):
    """A lookup that raced a revocation must not cache what it read, however many
    revocations came before."""
    auth = KeyAuthenticator(ADMIN_KEY, store)
    secret = _user(store, "acme", "dev", "developer")
    auth.revoke_cached()  # an earlier, unrelated revocation
    lookups = []
    real_lookup = store.lookup_key

    def racing_lookup(key_id):
        lookups.append(key_id)
        row = real_lookup(key_id)
        auth.revoke_cached()  # arrives while this lookup is in flight
        return row

    monkeypatch.setattr(store, "lookup_key", racing_lookup)
    auth.authenticate(f"Bearer {secret}")
    auth.authenticate(f"Bearer {secret}")
    assert len(lookups) == 2  # not served from a cache filled by the racing lookup


def test_forgetting_what_was_never_known_is_fine(store):
    from akidb.server.auth.guard import Guard

    RateLimiter().forget("never-seen")
    Guard(store, KeyAuthenticator(ADMIN_KEY, store)).revoke("never-seen")


def test_bad_quotas_name_each_field(store):
    with pytest.raises(BadRequest) as info:
        parse_quotas({"requests_per_second": -1, "burst": "many"})
    text = str(info.value)
    assert text.startswith("invalid quotas: requests_per_second: ")
    parts = text.removeprefix("invalid quotas: ").split("; ")
    assert [p.split(": ", 1)[0] for p in parts] == ["requests_per_second", "burst"]


def test_keys_whose_secret_holds_underscores_authenticate(store):
    from akidb.server.auth.keys import new_key

    auth = KeyAuthenticator(ADMIN_KEY, store)
    keys = (new_key() for _ in range(200))  # '_' is in ~40% of 32-character secrets
    key = next((k for k in keys if "_" in k.secret_key.split("_", 2)[2]), None)
    assert key is not None, "no secret with an underscore in 200 keys"
    store.create_user("acme", "under", "viewer", key.key_id, key.salt, key.hash)
    assert auth.authenticate(f"Bearer {key.secret_key}").name == "acme/under"


def test_the_guard_takes_its_decision_settings(tmp_path):
    from akidb.server.auth.guard import Guard
    from akidb.server.auth.keys import KeyAuthenticator
    from akidb.server.config import AuthzSettings
    from akidb.server.storage.metadata import MetadataStore

    store = MetadataStore(tmp_path / "m.db")
    guard = Guard(store, KeyAuthenticator("k" * 32, store), AuthzSettings(250.0, 7, 2.0, 30.0))
    d = guard.decider
    assert (d.deadline_s, d.cache.size, d.refresh_s, d.ttl_s) == (0.25, 7, 2.0, 30.0)
    store.close()
