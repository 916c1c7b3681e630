"""A circuit breaker for the remote embedding service.

closed: calls go through; ``failure_threshold`` consecutive failures open it.
open: calls fail at once (no timeout wait piles up behind a dead service) until
``reset_timeout_s`` has passed. half-open: one probe call goes through; success
closes the breaker, failure opens it again for another ``reset_timeout_s``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from akidb.server.errors import Unavailable

T = TypeVar("T")
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # for the /metrics gauge


class CircuitOpen(Unavailable):
    """Raised without calling while the breaker is open."""


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int = 3, reset_timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
                return HALF_OPEN
            return self._state

    def call(self, fn: Callable[[], T], is_failure: Callable[[BaseException], bool]) -> T:
        """Run ``fn`` unless open; ``is_failure`` tells service faults from caller errors
        (a bad request must not open the breaker)."""
        with self._lock:
            if self._state == OPEN:
                waited = self._clock() - self._opened_at
                if waited < self.reset_timeout_s or self._probing:
                    raise CircuitOpen(
                        f"{self.name} is unavailable (circuit open after {self._failures} "
                        f"consecutive failures; last: {self.last_error}); next probe in "
                        f"{max(0.0, self.reset_timeout_s - waited):.1f} s")
                self._probing = True  # half-open: this call is the probe
            probe = self._probing
        try:
            result = fn()
        except BaseException as exc:
            with self._lock:
                if probe:
                    self._probing = False
                if is_failure(exc):
                    self._failures += 1
                    self.last_error = str(exc)[:200]
                    if probe or self._failures >= self.failure_threshold:
                        self._state = OPEN
                        self._opened_at = self._clock()
            raise
        with self._lock:
            self._state = CLOSED
            self._failures = 0
            self._probing = False
        return result
