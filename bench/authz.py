"""Authorization latency at 10k Cedar policies over 100 tenants, measured in one run.

- naive: one ``PolicySet`` holding all 10k policies, every decision evaluates it;
- sliced: the server's ``Authorizer`` (one parsed set per tenant: built-in role
  grants + that tenant's 100 policies from the ``cedar-policies-10k`` fixture);
- end to end: single-client REST search as a tenant user (Cedar on every call) vs
  the global admin key (no Cedar evaluation).

Target: sliced P99 < 1 ms. Run: ``python -m akidb.bench.authz [--decisions N]``.
"""

from __future__ import annotations

import random
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import cedarpy
import numpy as np

from akidb import fixtures
from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.harness import Node
from akidb.server.auth.cedar import Authorizer, entities_for, role_policies
from akidb.server.auth.keys import Principal
from akidb.server.storage.metadata import MetadataStore

POLICY_START = re.compile(r'^@id\("(tenant-\d+)-', re.M)


def slice_by_tenant(text: str) -> dict[str, str]:
    starts = [(m.start(), m.group(1)) for m in POLICY_START.finditer(text)]
    out: dict[str, list[str]] = defaultdict(list)
    for (start, tenant), (end, _) in zip(starts, [*starts[1:], (len(text), "")], strict=True):
        out[tenant].append(text[start:end])
    return {t: "".join(parts) for t, parts in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, queries=1000, out="reports/authz")
    ap.add_argument("--decisions", type=int, default=2000)
    ap.add_argument("--naive-decisions", type=int, default=200)
    args = ap.parse_args(argv)
    text = fixtures.load("cedar-policies-10k")
    sliced = slice_by_tenant(text)
    rng = random.Random(0)
    tenants = sorted(sliced)
    roles = ("admin", "developer", "viewer", "auditor")
    actions = ("read", "write", "search", "admin", "audit")

    def draw() -> tuple[Principal, str, str, str, str]:
        t = rng.choice(tenants)
        user = Principal(f"{t}/user-{rng.randrange(50)}", False, t, rng.choice(roles))
        return user, rng.choice(actions), t, "db", f"coll-{rng.randrange(20)}"

    with tempfile.TemporaryDirectory() as tmp:
        store = MetadataStore(Path(tmp) / "m.db")
        authz = Authorizer(store)
        for t, policies in sliced.items():
            store.create_tenant(t, {})
            authz.validate(t, policies)
            store.set_policies(t, policies)
        requests = [draw() for _ in range(args.decisions)]
        for t in tenants:
            authz.policy_set(t)  # every tenant's set parsed once, as on a warm server
        for r in requests[:200]:
            authz.is_allowed(*r)
        fast_ms, decisions = Samples.timed(lambda r: authz.is_allowed(*r), requests)
        naive_set = cedarpy.PolicySet.from_str("".join(role_policies(t) for t in tenants)
                                               + text)

        def naive(r: tuple[Principal, str, str, str, str]) -> bool:
            principal, action, t, db, coll = r
            entities, resource = entities_for(principal, t, db, coll)
            request = {"principal": {"type": "AkiDB::User", "id": principal.name},
                       "action": {"type": "AkiDB::Action", "id": action},
                       "resource": resource, "context": {}}
            return cedarpy.is_authorized(request, naive_set, entities).allowed

        naive_ms, naive_decisions = Samples.timed(naive, requests[: args.naive_decisions])
        store.close()
    agree = decisions[: args.naive_decisions] == naive_decisions

    node = Node(fsync="none")
    try:
        node.start()
        admin = node.admin_client()
        admin.create_collection("bench/db/c", dimension=384, create_parents=True)
        base = np.random.default_rng(0).standard_normal((5000, 384)).astype(np.float32)
        admin.upsert_arrays("bench/db/c", [str(i) for i in range(5000)], base)
        user = admin.create_user("bench", "dev", "developer")
        dev = node.admin_client()
        dev.transport.headers["Authorization"] = f"Bearer {user['api_key']}"
        queries = base[: args.queries]
        off_ms, _ = Samples.timed(lambda q: admin.search("bench/db/c", q, k=10), queries, 50)
        on_ms, _ = Samples.timed(lambda q: dev.search("bench/db/c", q, k=10), queries, 50)
    finally:
        node.close()

    result = {
        "naive_p50_ms": naive_ms.percentile(50), "naive_p99_ms": naive_ms.percentile(99),
        "sliced_p50_ms": fast_ms.percentile(50), "sliced_p99_ms": fast_ms.percentile(99),
        "decisions_agree": agree,
        "search_auth_off_p50_ms": off_ms.percentile(50),
        "search_auth_on_p50_ms": on_ms.percentile(50),
        "search_auth_on_p99_ms": on_ms.percentile(99),
        "search_auth_off_p99_ms": off_ms.percentile(99),
    }
    def ms(key: str) -> list[str]:
        return [f"{result[key + '_p50_ms']:.3f}", f"{result[key + '_p99_ms']:.3f}"]

    lines = [
        f"# Authorization at {len(text.splitlines()) // 2} Cedar policies over "
        f"{len(tenants)} tenants", "",
        *markdown_table(["figure", "P50 ms", "P99 ms"], [
            ["naive: one PolicySet of every policy", *ms("naive")],
            ["sliced per tenant (server Authorizer)", *ms("sliced")],
            ["REST search, admin key (no Cedar)", *ms("search_auth_off")],
            ["REST search, tenant user (Cedar per call)", *ms("search_auth_on")]]),
        "",
        f"sliced ÷ naive P99: {result['sliced_p99_ms'] / result['naive_p99_ms']:.3f}; "
        f"auth overhead on search P50: "
        f"{result['search_auth_on_p50_ms'] / result['search_auth_off_p50_ms']:.2f}x; "
        f"naive and sliced decisions agree: {agree} (target: sliced P99 < 1 ms)",
    ]
    publish(args.out, record("authz", args, {"results": result}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
