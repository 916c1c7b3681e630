"""Typed results returned by ``Client``, whichever transport carried the call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Hit:
    id: str
    score: float
    payload: dict[str, Any] | None = None
    text: str | None = None
    vector: list[float] | None = None


@dataclass
class SearchResult:
    hits: list[Hit] = field(default_factory=list)
    took_ms: float = 0.0

    @property
    def ids(self) -> list[str]:
        return [h.id for h in self.hits]


@dataclass
class EmbedResult:
    """Embeddings of a list of texts: ``vectors`` is (n, dim) float32, L2-normalized."""

    model: str
    dim: int
    vectors: np.ndarray
    backend: str = ""
