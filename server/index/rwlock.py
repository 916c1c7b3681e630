"""Readers-writer lock: hnswlib allows parallel searches or parallel inserts, never both."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """Many readers or one writer, phase-fair.

    A waiting writer blocks new readers (readers cannot starve it), and when a
    writer releases, every reader already waiting gets in before the next writer
    does. Without that turn, a writer applying a large batch chunk by chunk would
    re-take the lock before the woken readers ran, and searches would wait for the
    whole batch instead of one chunk.
    """

    def __init__(self) -> None:
        # Held through the mutex itself: ``with`` on the Condition adds two Python-level
        # calls (its __enter__/__exit__) to every search.
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._read_side = _ReadSide(self)
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._readers_turn = False
        self.last_read = float("-inf")  # monotonic time of the latest read acquisition

    def read(self) -> _ReadSide:
        """``with lock.read():`` -- a plain context object, not a generator: a search
        takes it once, and ``@contextmanager`` cost more than the lock itself."""
        return self._read_side

    def _acquire_read(self) -> None:
        with self._mutex:
            if not (self._writer or self._writers_waiting):  # nobody to wait for
                self._readers += 1
                self.last_read = time.monotonic()
                return
            self._readers_waiting += 1
            while self._writer or (self._writers_waiting and not self._readers_turn):
                self._cond.wait()
            self._readers_waiting -= 1
            self._readers += 1
            self.last_read = time.monotonic()
            if self._readers_waiting == 0 and self._readers_turn:
                self._readers_turn = False  # every reader that waited is in
                self._cond.notify_all()

    def _release_read(self) -> None:
        with self._mutex:
            self._readers -= 1
            # Only writers wait for the reader count; nobody to wake otherwise.
            if self._readers == 0 and self._writers_waiting:
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._mutex:
            self._writers_waiting += 1
            while self._writer or self._readers or self._readers_turn:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._mutex:
                self._writer = False
                self._readers_turn = self._readers_waiting > 0
                self._cond.notify_all()


class _ReadSide:
    __slots__ = ("_lock",)

    def __init__(self, lock: RWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock._release_read()
