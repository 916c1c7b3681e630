"""Every call's gate: the caller's rate quota, tenant incarnation and Cedar decision,
the audit log, and revocation of cached credentials and decisions. The service asks it
first. Decisions have a deadline and a cache (``auth/decisions.py``)."""

from __future__ import annotations

from typing import Any

from akidb.server import faults, tracing
from akidb.server.auth.cedar import Authorizer
from akidb.server.auth.decisions import DeadlineDecider, DecisionCache
from akidb.server.auth.keys import KeyAuthenticator, Principal
from akidb.server.auth.quotas import RateLimiter
from akidb.server.config import AuthzSettings
from akidb.server.errors import PermissionDenied, Unauthenticated
from akidb.server.names import check_name
from akidb.server.storage.metadata import MetadataStore


class Guard:
    def __init__(self, store: MetadataStore, auth: KeyAuthenticator,
                 settings: AuthzSettings | None = None) -> None:
        self.store = store
        self.auth = auth
        self.authz = Authorizer(store)
        s = settings or AuthzSettings()
        self.decider = DeadlineDecider(s.deadline_ms / 1000.0, DecisionCache(s.cache_size),
                                       s.cache_refresh_s, s.cache_ttl_s)
        self.rate = RateLimiter()
        self._tenants: dict[str, dict[str, Any]] = {}

    def require_admin(self, principal: Principal, what: str) -> None:
        if not principal.is_admin:
            self.store.audit(principal.tenant, principal.name, what, "*", "deny")
            raise PermissionDenied(f"{principal.name} may not {what}: global admins only")

    def authorize(self, principal: Principal, action: str, tenant: str,
                   database: str | None = None, collection: str | None = None) -> None:
        """The caller's request-rate quota, then the Cedar decision for the call.

        The rate binds a tenant's own users (not the global operator managing it) and is
        charged to the caller's home tenant, so another tenant's calls can never drain
        it; it comes first so a flood past the quota is refused before the costlier
        policy evaluation."""
        check_name("tenant", tenant)
        if (not principal.is_admin and principal.tenant == tenant
                and principal.tenant_id != self.tenant(tenant)["id"]):
            raise Unauthenticated(f"the API key of {principal.name} belongs to a tenant "
                                  f"{tenant!r} that has been deleted")
        self.charge_rate(principal)
        resource = "/".join(x for x in (tenant, database, collection) if x)
        with tracing.span("authorize", **{"akidb.action": action, "akidb.resource": resource}):
            if principal.is_admin:
                allowed = True
            elif principal.tenant != tenant:
                allowed = False  # tenant isolation, whatever the policies say
            else:
                allowed = self.decider.decide(
                    (principal.name, principal.role, principal.tenant_id, action, tenant,
                     database, collection),
                    lambda: self._evaluate(principal, action, tenant, database, collection))
        if not allowed:
            self.store.audit(principal.tenant or tenant, principal.name, action, resource,
                             "deny")
            raise PermissionDenied(f"{principal.name} (role {principal.role}) may not "
                                   f"{action} {resource}")

    def _evaluate(self, principal: Principal, action: str, tenant: str, database: str | None,
                  collection: str | None) -> bool:
        """One Cedar decision (the ``authz_delay_ms`` failpoint makes it a slow one)."""
        faults.delay("authz_delay_ms")
        return self.authz.is_allowed(principal, action, tenant, database, collection)

    def charge_rate(self, principal: Principal) -> None:
        """One request against the caller's home tenant's rate quota (429 past it)."""
        if not principal.is_admin and principal.tenant:
            self.rate.take(principal.tenant, self.tenant_quotas(principal.tenant))

    def tenant(self, tenant: str) -> dict[str, Any]:
        """The tenant's row (id, quotas), cached until the tenant is deleted."""
        row = self._tenants.get(tenant)
        if row is None:
            row = self.store.get_tenant(tenant)
            self._tenants[tenant] = row
        return row

    def tenant_quotas(self, tenant: str) -> dict[str, Any]:
        return self.tenant(tenant)["quotas"]

    def revoke(self, tenant: str | None = None) -> None:
        """After a change that takes access away: every cached key and decision goes.

        Called before the change's call returns, on every transport (REST and gRPC
        share this service), so no request that starts afterwards sees the old answer."""
        self.auth.revoke_cached()
        self.decider.revoke()
        if tenant is not None:
            self.authz.invalidate(tenant)
            self._tenants.pop(tenant, None)

    def audit_admin(self, principal: Principal, action: str, tenant: str, resource: str,
                     detail: str | None = None) -> None:
        self.store.audit(tenant, principal.name, action, resource, "allow", detail)

