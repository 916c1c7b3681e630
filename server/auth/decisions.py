"""Authorization decisions with a deadline and a bounded cache: a slow policy store
degrades to cached answers or 503, never to "allow".

A Cedar decision depends only on the tenant's policies and the caller's role, and
every change to either revokes (``Guard.revoke``), so a cached decision is the
decision a fresh evaluation would make until then. Decisions younger than
``refresh_s`` are answered from the cache; older ones are re-evaluated. An
evaluation runs on a thread of its own and the request waits at most
``deadline_s`` for it. Past the deadline the request is answered from a cached
decision still younger than ``ttl_s`` (whatever it was: allow or deny), or refused
with ``Unavailable`` (503, retry later). The late evaluation still finishes and
refreshes the cache, unless a revocation came in between. Concurrent misses of one
decision share one evaluation, so a slow store is not stampeded, and while one
request waits for a refresh the others are answered from the still-valid decision
at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from akidb.server.errors import Unavailable

SOURCES = ("cache", "evaluated", "stale_cache", "timeout")


class DecisionCache:
    """At most ``size`` decisions, least recently used first out; ``clear`` starts a
    new generation, and a decision evaluated in an older one is never stored."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 0:
            raise ValueError(f"authz cache size must be >= 0, got {size}")
        self.size = size
        self.clock = clock
        self.generation = 0
        self._entries: OrderedDict[Hashable, tuple[bool, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> tuple[bool, float] | None:
        """(allowed, age in seconds), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0], self.clock() - entry[1]

    def put(self, key: Hashable, allowed: bool, generation: int, made_at: float) -> None:
        with self._lock:
            if generation != self.generation or self.size == 0:
                return
            self._entries[key] = (allowed, made_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class DeadlineDecider:
    def __init__(self, deadline_s: float, cache: DecisionCache, refresh_s: float,
                 ttl_s: float, max_inflight: int = 64) -> None:
        if deadline_s <= 0 or refresh_s < 0 or ttl_s < refresh_s:
            raise ValueError("authz deadline must be > 0 and 0 <= refresh <= ttl, got "
                             f"deadline {deadline_s}, refresh {refresh_s}, ttl {ttl_s}")
        self.deadline_s = deadline_s
        self.cache = cache
        self.refresh_s = refresh_s
        self.ttl_s = ttl_s
        self.max_inflight = max_inflight
        self._inflight: dict[tuple[int, Hashable], Future[bool]] = {}
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter(dict.fromkeys(SOURCES, 0))

    def decide(self, key: Hashable, evaluate: Callable[[], bool]) -> bool:
        cached = self.cache.get(key)
        if cached is not None and cached[1] < self.refresh_s:
            self.counts["cache"] += 1
            return cached[0]
        usable = cached is not None and cached[1] < self.ttl_s
        if usable and (self.cache.generation, key) in self._inflight:
            self.counts["stale_cache"] += 1  # someone already waits on the store for it
            return cached[0]  # type: ignore[index]
        future = self._evaluation(key, evaluate)
        try:
            if future is None:
                raise FutureTimeout  # too many evaluations already waiting on the store
            allowed = future.result(timeout=self.deadline_s)
        except FutureTimeout:
            if usable:
                self.counts["stale_cache"] += 1
                return cached[0]  # type: ignore[index]
            self.counts["timeout"] += 1
            raise Unavailable(f"authorization did not decide within "
                              f"{self.deadline_s * 1000:g} ms and no recent decision is "
                              "cached; retry later", details={"retry_after": 1}) from None
        self.counts["evaluated"] += 1
        return allowed

    def _evaluation(self, key: Hashable, evaluate: Callable[[], bool]) -> Future[bool] | None:
        """The running evaluation of ``key`` in this generation, or a new one on a daemon
        thread (a stuck store then never holds up the server's exit); None when
        ``max_inflight`` evaluations are already running."""
        with self._lock:
            slot = (self.cache.generation, key)
            future = self._inflight.get(slot)
            if future is None:
                if len(self._inflight) >= self.max_inflight:
                    return None
                future = Future()
                self._inflight[slot] = future
                threading.Thread(target=self._evaluate, args=(slot, evaluate, future),
                                 name="authz-decision", daemon=True).start()
            return future

    def _evaluate(self, slot: tuple[int, Hashable], evaluate: Callable[[], bool],
                  future: Future[bool]) -> None:
        made_at = self.cache.clock()
        try:
            allowed = evaluate()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
            self._done(slot)
            future.set_exception(exc)
        else:
            self.cache.put(slot[1], allowed, slot[0], made_at)
            self._done(slot)
            future.set_result(allowed)

    def _done(self, slot: tuple[int, Hashable]) -> None:
        """Out of the in-flight table before anyone sees the result, so a finished
        evaluation is never joined by a later request (that one reads the cache)."""
        with self._lock:
            self._inflight.pop(slot, None)

    def revoke(self) -> None:
        self.cache.clear()
