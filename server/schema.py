"""Request shapes of the API, validated by pydantic in strict mode.

Strict mode keeps "1.5" from passing as a number and ``true`` as 1; unknown
fields are rejected so a typo ("filters") is an error instead of being ignored.
These models also generate the request schemas of the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from akidb.server.errors import BadRequest

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
# A document id: no '/' and no control characters (it is a URL segment and a log label).
ID_PATTERN = r"^[^/\x00-\x1f\x7f]{1,256}$"


def float32_vector(values: list[float]) -> np.ndarray:
    """A validated JSON vector as float32. ``fromiter`` with a count converts a list of
    Python numbers ~40% faster than ``asarray`` (measured 0.76 vs 1.25 ms per 100 x 384)."""
    return np.fromiter(values, dtype=np.float32, count=len(values))


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class TenantIn(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    quotas: dict[str, Any] = Field(default_factory=dict)


class UserIn(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    role: Literal["admin", "developer", "viewer", "auditor"]


class PoliciesIn(_Strict):
    policies: str = Field(max_length=1_000_000)


class DatabaseIn(_Strict):
    name: str = Field(pattern=NAME_PATTERN)


class HnswParams(_Strict):
    m: int = Field(32, ge=2, le=128)
    ef_construction: int = Field(200, ge=8, le=4096)
    ef_search: int = Field(64, ge=1, le=4096)


class CollectionIn(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    dimension: int | None = Field(None, ge=1, description="optional with an embedding model")
    metric: Literal["cosine", "l2", "ip"] = "cosine"
    hnsw: HnswParams = Field(default_factory=HnswParams)
    embedding: Literal["minilm"] | None = Field(
        None, description="embed text-only documents and text queries with this model")


class FaultsIn(RootModel[dict[str, float]]):
    """Failpoint name -> value (see server/faults.py for names and ranges)."""


class EmbedIn(_Strict):
    texts: list[str]


class DocumentIn(_Strict):
    id: str
    vector: list[float] | None = None
    text: str | None = None
    payload: dict[str, Any] | None = None


class UpsertIn(_Strict):
    documents: list[DocumentIn]


class SearchIn(_Strict):
    vector: list[float] | None = None
    text: str | None = None
    k: int = Field(10, ge=1)
    mode: Literal["vector", "text", "hybrid"] | None = None
    filter: dict[str, Any] | None = None
    ef: int | None = Field(None, ge=1, le=4096)
    include: list[Literal["payload", "vector", "text"]] = Field(default_factory=list)
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="hybrid: weight of the vector rank")


# JSON documents the server stores or evaluates (payloads, filters): bounded nesting,
# and integers SQLite can hold (it stores INTEGER as 64-bit; a larger one overflows in
# the driver, which used to surface as a 500 on text and hybrid searches).
MAX_JSON_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_json_value(value: Any, where: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Reject over-deep nesting and out-of-range integers, naming the offending place.

    Iterative, so a hostile 100k-deep document cannot exhaust the Python stack."""
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise BadRequest(f"{at} is nested deeper than {max_depth} levels")
            children = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in children:
                stack.append((child, f"{at}[{key!r}]" if isinstance(item, dict)
                              else f"{at}[{key}]", depth + 1))
        elif isinstance(item, int) and not isinstance(item, bool) and not (
                INT64_MIN <= item <= INT64_MAX):
            raise BadRequest(f"{at}: integer {item} is outside the 64-bit range "
                             f"[{INT64_MIN}, {INT64_MAX}]")


class SearchBatchIn(_Strict):
    searches: list[SearchIn]


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], raw: bytes | str | dict[str, Any]) -> M:
    """Validate a request body; malformed JSON and schema errors become 400."""
    try:
        if isinstance(raw, bytes | str):
            return model.model_validate_json(raw)
        return model.model_validate(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise BadRequest(f"malformed JSON: {exc.errors()[0]['msg']}") from None
        raise BadRequest(f"invalid request: {_describe(exc)}",
                         details=[{"loc": list(e["loc"]), "msg": e["msg"]}
                                  for e in exc.errors()[:20]]) from None
