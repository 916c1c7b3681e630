"""Query workloads: the load-test mix (60% vector, 30% filtered, 10% hybrid).

Filters are drawn over the payload schema of ``datagen.documents`` at the
selectivities asked for, so a benchmark can report latency per selectivity.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from akidb.datagen.documents import CATEGORIES

DEFAULT_MIX = {"vector": 0.6, "filtered": 0.3, "hybrid": 0.1}
WORDS = ["data", "system", "market", "history", "science", "policy", "music", "travel",
         "health", "energy", "water", "city", "game", "family", "report", "future"]


def selective_filter(selectivity: float, rng: np.random.Generator) -> dict[str, Any]:
    """A filter matching ``selectivity`` of ``datagen.documents`` payloads in expectation."""
    if not 0 < selectivity <= 1:
        raise ValueError(f"selectivity must be in (0, 1], got {selectivity}")
    percent = selectivity * 100
    if percent == int(percent) and int(percent) <= 100 and rng.random() < 0.5:
        chosen = rng.choice(len(CATEGORIES), size=int(percent), replace=False)
        cats = sorted(CATEGORIES[int(i)] for i in chosen)
        return {"category": cats[0]} if len(cats) == 1 else {"category": {"$in": cats}}
    low = float(rng.random() * (100 - percent))
    return {"price": {"$gte": round(low, 4), "$lt": round(low + percent, 4)}}


def workload(n: int, *, n_query_vectors: int, mix: dict[str, float] | None = None,
             selectivities: tuple[float, ...] = (0.5, 0.1, 0.01), k: int = 10, seed: int = 0
             ) -> list[dict[str, Any]]:
    """``n`` operations; ``vector`` is an index into a query-vector set of the given size."""
    mix = dict(mix or DEFAULT_MIX)
    if set(mix) - set(DEFAULT_MIX) or abs(sum(mix.values()) - 1) > 1e-9:
        raise ValueError(f"mix must use {sorted(DEFAULT_MIX)} and sum to 1, got {mix}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 13])))
    kinds = list(mix)
    picks = rng.choice(len(kinds), size=n, p=[mix[k_] for k_ in kinds])
    ops = []
    for pick in picks:
        kind = kinds[int(pick)]
        op: dict[str, Any] = {"kind": kind, "k": k,
                              "vector": int(rng.integers(0, n_query_vectors))}
        if kind == "filtered":
            sel = float(selectivities[int(rng.integers(0, len(selectivities)))])
            op["selectivity"] = sel
            op["filter"] = selective_filter(sel, rng)
        elif kind == "hybrid":
            op["text"] = " ".join(WORDS[int(i)] for i in rng.choice(len(WORDS), 2,
                                                                    replace=False))
        ops.append(op)
    return ops
