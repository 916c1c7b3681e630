"""Hybrid search: ``alpha`` weighs the vector ranking against the text ranking."""

from __future__ import annotations

import numpy as np
import pytest

from akidb.server.query.hybrid import reciprocal_rank_fusion


def test_fusion_weighs_the_two_rankings_by_alpha():
    vec, text = [1, 2, 3, 4], [4, 3, 5]
    assert [x for x, _ in reciprocal_rank_fusion(vec, text, alpha=1.0, k=4)] == [1, 2, 3, 4]
    assert [x for x, _ in reciprocal_rank_fusion(vec, text, alpha=0.0, k=3)] == [4, 3, 5]
    fused = reciprocal_rank_fusion(vec, text, alpha=0.5, k=10)
    score = dict(fused)
    assert score[4] == pytest.approx(0.5 / 64 + 0.5 / 61)
    assert score[3] == pytest.approx(0.5 / 63 + 0.5 / 62)
    assert score[5] == pytest.approx(0.5 / 63)
    assert [x for x, _ in fused] == [4, 3, 1, 2, 5]  # best first (4 edges out 3)
    assert len(reciprocal_rank_fusion(vec, text, k=2)) == 2
    assert reciprocal_rank_fusion([], [], k=5) == []
    # Equal fused scores are ordered by label, so results are deterministic.
    assert [x for x, _ in reciprocal_rank_fusion([7], [6], alpha=0.5, k=2)] == [6, 7]
    assert reciprocal_rank_fusion([1], [], alpha=0.5, k=1, rrf_k=0)[0][1] == pytest.approx(0.5)


@pytest.fixture
def hybrid_coll(client, tenant):
    coll = f"{tenant}/db/h"
    client.create_collection(coll, dimension=2, metric="cosine")
    docs = [{"id": "vec", "vector": [1.0, 0.0], "text": "zebra stripes"},
            {"id": "txt", "vector": [-1.0, 0.05], "text": "apple apple apple apple"}]
    for i in range(8):
        angle = 0.2 + 0.3 * i
        docs.append({"id": f"o{i}", "vector": [float(np.cos(angle)), float(np.sin(angle))],
                     "text": "apple " + " ".join(["filler"] * (i + 1))})
    client.upsert(coll, docs)
    return coll


def _rrf(vector_ids: list[str], text_ids: list[str], alpha: float) -> list[str]:
    """An independent oracle: reciprocal rank fusion with k=60, ties by id."""
    score: dict[str, float] = {}
    for rank, doc in enumerate(vector_ids, start=1):
        score[doc] = score.get(doc, 0.0) + alpha / (60 + rank)
    for rank, doc in enumerate(text_ids, start=1):
        score[doc] = score.get(doc, 0.0) + (1 - alpha) / (60 + rank)
    return sorted(score, key=lambda d: (-score[d], d))


def test_alpha_moves_hybrid_between_the_vector_and_the_text_order(client, hybrid_coll):
    q = [1.0, 0.0]
    by_vector = client.search(hybrid_coll, q, k=10, mode="vector").ids
    by_text = client.search(hybrid_coll, text="apple", k=10, mode="text").ids
    assert by_vector[0] == "vec" and by_text[0] == "txt" and "vec" not in by_text

    def hybrid(alpha: float) -> list[str]:
        return client.search(hybrid_coll, q, text="apple", k=10, mode="hybrid",
                             alpha=alpha).ids

    assert hybrid(1.0) == by_vector
    assert hybrid(0.0)[:len(by_text)] == by_text
    assert hybrid(0.99)[0] == "vec"
    assert hybrid(0.01)[0] == "txt"
    for alpha in (0.25, 0.5, 0.75):
        assert hybrid(alpha) == _rrf(by_vector, by_text, alpha)[:10], alpha
    assert hybrid(0.5)[0] not in ("vec", "txt")  # a document good at both wins
