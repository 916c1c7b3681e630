"""How results leave the service: plain dicts, ready for any transport to serialize."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from akidb.server.collection import Collection, Hit


def public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("id",)}


def collection_info(coll: Collection) -> dict[str, Any]:
    row = coll.row
    return {"name": row.name, "tenant": row.tenant, "database": row.database,
            "dimension": row.dimension, "metric": row.metric, "count": coll.count,
            "hnsw": {"m": row.m, "ef_construction": row.ef_construction,
                     "ef_search": row.ef_search},
            "embedding": row.embedding,
            "created_at": row.created_at, **{k: v for k, v in coll.stats().items()
                                             if k != "count"}}


def vector_list(blob: bytes | None) -> list[float] | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).tolist()


def hit_dicts(hits: Sequence[Hit], include: Sequence[str]) -> list[dict[str, Any]]:
    """Hits as the API returns them (one loop for the lot: a call per hit showed in the
    profile of a 100-query batch); a non-finite score (an ip/l2 overflow) becomes null,
    which JSON can carry."""
    isfinite = math.isfinite
    out = []
    for hit in hits:
        item: dict[str, Any] = {"id": hit.ext_id,
                                "score": hit.score if isfinite(hit.score) else None}
        doc = hit.document
        if doc is not None:
            if "payload" in include:
                item["payload"] = doc.payload
            if "text" in include:
                item["text"] = doc.text
            if "vector" in include:
                item["vector"] = vector_list(doc.vector)
        out.append(item)
    return out
