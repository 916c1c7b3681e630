"""Tenants, users and roles with Zipf-skewed sizes, as multi-tenant deployments have:
a few large tenants and a long tail of small ones."""

from __future__ import annotations

from typing import Any

import numpy as np

ROLES = ("admin", "developer", "viewer", "auditor")
ROLE_WEIGHTS = (0.1, 0.4, 0.4, 0.1)


def zipf_sizes(n: int, total: int, s: float = 1.1) -> list[int]:
    """Split ``total`` over ``n`` ranks with weights 1/rank^s; every tenant gets ≥ 1."""
    if n < 1 or total < n or s <= 0:
        raise ValueError(f"need n >= 1, total >= n, s > 0; got {n}, {total}, {s}")
    weights = 1.0 / np.arange(1, n + 1) ** s
    sizes = np.maximum(1, np.floor(weights / weights.sum() * total)).astype(int)
    sizes[0] += total - sizes.sum()  # rounding remainder goes to the largest
    return sizes.tolist()


def tenants(n: int, *, total_documents: int = 100_000, users_per_tenant: int = 4,
            s: float = 1.1, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 11])))
    out = []
    for rank, size in enumerate(zipf_sizes(n, total_documents, s)):
        name = f"tenant-{rank:04d}"
        roles = rng.choice(len(ROLES), size=users_per_tenant, p=ROLE_WEIGHTS)
        users = [{"name": f"{name}-user-{j}", "role": ROLES[int(r)]}
                 for j, r in enumerate(roles)]
        users[0]["role"] = "admin"  # every tenant can administer itself
        out.append({"name": name, "documents": int(size), "users": users})
    return out
