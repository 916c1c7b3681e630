"""Graph inserts in log order, outside the collection's write lock.

An upsert logs, stores and maps its documents under the collection's write lock, takes
a ticket there, and inserts into the graph after the lock is released, when every
earlier ticket is done. So batch N+1 is logged and written to SQLite while batch N's
vectors go into the graph (the graph insert is ~90% of an upsert, the rest ran beside
an idle core), and the graph still sees the batches in log order: a replaced vector
ends as the later one. Whatever else touches the graph under the write lock (delete,
snapshot, close) first waits for the turns to settle; no ticket can be issued
meanwhile, so that wait ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Turns:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._done = 0

    def ticket(self) -> int:
        """The next turn; call with the collection's write lock held, and enter
        ``turn(ticket)`` right after releasing it (an unused ticket stalls every later
        one)."""
        with self._cond:
            ticket = self._issued
            self._issued += 1
            return ticket

    @contextmanager
    def turn(self, ticket: int) -> Iterator[None]:
        """Wait until every earlier ticket is done, run the body, then pass the turn on
        (also when the body raises)."""
        with self._cond:
            while self._done != ticket:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._done += 1
                self._cond.notify_all()

    def settle(self) -> None:
        """Wait until every issued ticket is done (call with the write lock held)."""
        with self._cond:
            while self._done != self._issued:
                self._cond.wait()

    @property
    def pending(self) -> int:
        with self._cond:
            return self._issued - self._done
