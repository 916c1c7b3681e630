"""Per-tenant quotas: vectors, collections and request rate (token bucket)."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from akidb.server.errors import BadRequest, QuotaExceeded


class Quotas(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    max_vectors: int | None = Field(None, ge=0)
    max_collections: int | None = Field(None, ge=0)
    requests_per_second: float | None = Field(None, gt=0)
    burst: int | None = Field(None, ge=1)


def parse_quotas(raw: dict[str, Any]) -> dict[str, Any]:
    try:
        return Quotas.model_validate(raw).model_dump(exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BadRequest(f"invalid quotas: {problems}") from None


class RateLimiter:
    """One token bucket per tenant; refills continuously at the tenant's rate."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, tenant: str, quotas: dict[str, Any]) -> None:
        rate = quotas.get("requests_per_second")
        if not rate:
            return
        burst = float(quotas.get("burst") or max(1, math.ceil(rate)))
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(tenant, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens < 1:
                self._buckets[tenant] = (tokens, now)
                wait = (1 - tokens) / rate
                raise QuotaExceeded(f"tenant {tenant!r} is over its request rate of {rate}/s",
                                    details={"retry_after": round(wait, 3)})
            self._buckets[tenant] = (tokens - 1, now)

    def forget(self, tenant: str) -> None:
        with self._lock:
            self._buckets.pop(tenant, None)
