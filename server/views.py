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


def hit_dict(hit: Hit, include: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": hit.ext_id, "score": hit.score if math.isfinite(hit.score)
                           else None}
    doc = hit.document
    if doc is not None:
        if "payload" in include:
            out["payload"] = doc.payload
        if "text" in include:
            out["text"] = doc.text
        if "vector" in include:
            out["vector"] = vector_list(doc.vector)
    return out

