"""Documents with Faker text and payloads whose filter selectivities are known.

Payload fields and what a filter on them selects (in expectation):
- ``category``: ``cat-00`` … ``cat-99``, uniform → ``{"category": c}`` selects 1%,
  ``{"category": {"$in": [m categories]}}`` selects m%;
- ``price``: uniform in [0, 100) → ``{"price": {"$lt": p}}`` selects p%;
- ``tags``: 1-3 of 10 tags; ``lang``: en 70%, de 20%, fr 10%;
- ``year`` (2000-2025) and ``created_at`` (epoch seconds) for range filters.
A Faker instance seeded from ``seed`` writes the text, so output is reproducible
for a given Faker version (recorded in dataset manifests).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from faker import Faker

CATEGORIES = [f"cat-{i:02d}" for i in range(100)]
TAGS = ["red", "green", "blue", "alpha", "beta", "gamma", "new", "sale", "eco", "pro"]
LANGS = (["en"] * 7) + (["de"] * 2) + ["fr"]
EPOCH_2020 = 1577836800


def iter_documents(n: int, *, seed: int = 0, id_prefix: str = "doc-", start: int = 0
                   ) -> Iterator[dict[str, Any]]:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, 7])))
    for i in range(start, start + n):
        n_tags = int(rng.integers(1, 4))
        tags = sorted({TAGS[int(t)] for t in rng.integers(0, len(TAGS), n_tags)})
        yield {
            "id": f"{id_prefix}{i}",
            "text": fake.paragraph(nb_sentences=3),
            "payload": {
                "category": CATEGORIES[int(rng.integers(0, 100))],
                "price": round(float(rng.random() * 100), 2),
                "tags": tags,
                "lang": LANGS[int(rng.integers(0, len(LANGS)))],
                "year": int(rng.integers(2000, 2026)),
                "created_at": EPOCH_2020 + int(rng.integers(0, 5 * 365 * 86400)),
                "author": fake.name(),
            },
        }


def documents(n: int, **kwargs: Any) -> list[dict[str, Any]]:
    return list(iter_documents(n, **kwargs))
