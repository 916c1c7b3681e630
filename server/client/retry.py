"""The client's one retry policy for idempotent calls (reads, searches, embeddings).

Transport errors and 503 (recovering, a dependency down, a connection shed) are
retried with exponential backoff and full jitter; a 503's Retry-After is not waited
for beyond the backoff cap. Writes are never retried: a failed write stays visible.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from akidb.server.errors import TransportError, Unavailable

R = TypeVar("R")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 2
    backoff_s: float = 0.05

    def run(self, call: Callable[[], R]) -> R:
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (TransportError, Unavailable):
                if attempt == self.retries:
                    raise
                time.sleep(random.uniform(0, self.backoff_s * 2**attempt))
        raise AssertionError("unreachable")
