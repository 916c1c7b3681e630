"""Reciprocal rank fusion of a vector ranking and a text ranking.

RRF needs no score calibration between cosine similarities and BM25 values, which
live on unrelated scales; only ranks matter. ``alpha`` weights the vector side.
"""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60


def reciprocal_rank_fusion(vector_ranked: Sequence[int], text_ranked: Sequence[int],
                           *, alpha: float = 0.5, k: int, rrf_k: int = RRF_K
                           ) -> list[tuple[int, float]]:
    """Fused top-k of two rankings of labels, best first, as (label, fused score)."""
    scores: dict[int, float] = {}
    for rank, label in enumerate(vector_ranked):
        scores[label] = scores.get(label, 0.0) + alpha / (rrf_k + rank + 1)
    for rank, label in enumerate(text_ranked):
        scores[label] = scores.get(label, 0.0) + (1.0 - alpha) / (rrf_k + rank + 1)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]
