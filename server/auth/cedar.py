"""Cedar authorization, sliced per tenant.

Every tenant has its own parsed ``cedarpy.PolicySet``: the role grants below plus
the tenant's custom policies. A decision evaluates only the caller's tenant's
set, so its cost does not grow with the number of tenants (one set of 10k
policies took ~19 ms per decision here; see ``bench.authz``). Tenant isolation is
checked before Cedar as well, so no custom policy can open another tenant.
"""

from __future__ import annotations

import threading
from typing import Any

import cedarpy

from akidb.server.auth.keys import Principal
from akidb.server.errors import BadRequest
from akidb.server.storage.metadata import MetadataStore

SCHEMA = """
namespace AkiDB {
  entity Tenant;
  entity Database in [Tenant];
  entity Collection in [Database];
  entity Role;
  entity User in [Role];
  action read, write, search, admin, audit appliesTo {
    principal: [User],
    resource: [Tenant, Database, Collection]
  };
}
"""

ROLE_ACTIONS = {
    "admin": ("read", "write", "search", "admin", "audit"),
    "developer": ("read", "write", "search"),
    "viewer": ("read", "search"),
    "auditor": ("read", "audit"),
}
ACTIONS = ("read", "write", "search", "admin", "audit")


def role_policies(tenant: str) -> str:
    """The built-in grants of a tenant: each role's actions on the tenant's resources."""
    out = []
    for role, actions in ROLE_ACTIONS.items():
        acts = ", ".join(f'AkiDB::Action::"{a}"' for a in actions)
        out.append(f'@id("{tenant}/role/{role}")\npermit (principal in AkiDB::Role::'
                   f'"{tenant}/{role}", action in [{acts}], resource in '
                   f'AkiDB::Tenant::"{tenant}");')
    return "\n".join(out) + "\n"


def entities_for(principal: Principal, tenant: str, database: str | None,
              collection: str | None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    role = {"type": "AkiDB::Role", "id": f"{tenant}/{principal.role}"}
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "AkiDB::User", "id": principal.name}, "attrs": {}, "parents": [role]},
        {"uid": role, "attrs": {}, "parents": []},
        {"uid": {"type": "AkiDB::Tenant", "id": tenant}, "attrs": {}, "parents": []},
    ]
    resource = {"type": "AkiDB::Tenant", "id": tenant}
    if database is not None:
        db = {"type": "AkiDB::Database", "id": f"{tenant}/{database}"}
        entities.append({"uid": db, "attrs": {}, "parents": [resource]})
        resource = db
        if collection is not None:
            coll = {"type": "AkiDB::Collection", "id": f"{tenant}/{database}/{collection}"}
            entities.append({"uid": coll, "attrs": {}, "parents": [db]})
            resource = coll
    return entities, resource


class Authorizer:
    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.schema = cedarpy.Schema.from_str(SCHEMA)
        self._sets: dict[str, Any] = {}
        self._lock = threading.Lock()

    def policy_set(self, tenant: str) -> Any:
        ps = self._sets.get(tenant)
        if ps is None:
            text = role_policies(tenant) + self.store.get_policies(tenant)
            ps = cedarpy.PolicySet.from_str(text)
            with self._lock:
                self._sets[tenant] = ps
        return ps

    def invalidate(self, tenant: str) -> None:
        with self._lock:
            self._sets.pop(tenant, None)

    def validate(self, tenant: str, policies: str) -> None:
        """Reject policies that do not parse or do not fit the schema, with Cedar's words."""
        try:
            cedarpy.PolicySet.from_str(role_policies(tenant) + policies)
        except ValueError as exc:
            raise BadRequest(f"policies do not parse: {exc}") from None
        result = cedarpy.validate_policies(role_policies(tenant) + policies, self.schema)
        if not result.validation_passed:
            errors = [str(e) for e in result.errors]
            raise BadRequest("policies do not validate against the AkiDB schema: "
                             + "; ".join(errors[:5]), details=errors)

    def is_allowed(self, principal: Principal, action: str, tenant: str,
                   database: str | None = None, collection: str | None = None) -> bool:
        if principal.is_admin:
            return True
        if principal.tenant != tenant:
            return False  # tenant isolation, whatever the policies say
        entities, resource = entities_for(principal, tenant, database, collection)
        request = {"principal": {"type": "AkiDB::User", "id": principal.name},
                   "action": {"type": "AkiDB::Action", "id": action},
                   "resource": resource, "context": {}}
        return cedarpy.is_authorized(request, self.policy_set(tenant), entities).allowed
