"""The index lock: readers and writers exclude each other, and neither starves."""

from __future__ import annotations

import threading
import time

from akidb.server.index.rwlock import RWLock


def test_readers_waiting_get_in_before_the_writers_next_chunk():
    """A writer applying a batch chunk by chunk re-takes the lock at once; a search
    that waited must run between two chunks, not after the whole batch."""
    lock = RWLock()
    events: list[str] = []
    first_chunk = threading.Event()

    def writer() -> None:
        for i in range(5):
            with lock.write():
                events.append(f"w{i}")
                if i == 0:
                    first_chunk.set()
                    _wait_for(lambda: lock._readers_waiting == 1)  # the reader queued up

    def reader() -> None:
        first_chunk.wait()
        with lock.read():
            events.append("r")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert events.index("r") == 1, events  # right after the chunk it waited for


def _wait_for(condition, timeout: float = 10.0) -> None:
    """Wait on a condition with a deadline (never a fixed sleep as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.0005)


def test_a_waiting_writer_is_not_starved_by_a_stream_of_readers():
    lock = RWLock()
    stop = threading.Event()
    wrote = threading.Event()
    entered = threading.Semaphore(0)

    def reader() -> None:
        while not stop.is_set():
            with lock.read():
                entered.release()
                time.sleep(0.002)  # hold the read lock a while: overlapping readers

    readers = [threading.Thread(target=reader) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for _ in range(20):  # the readers are overlapping by now
            assert entered.acquire(timeout=10)

        def writer() -> None:
            with lock.write():
                wrote.set()

        w = threading.Thread(target=writer)
        w.start()
        assert wrote.wait(5), "writer starved by overlapping readers"
        w.join(5)
    finally:
        stop.set()
        for t in readers:
            t.join(5)


def test_exclusion_holds_under_contention():
    lock = RWLock()
    state = {"readers": 0, "writers": 0, "violations": 0}
    guard = threading.Lock()

    def enter(kind: str) -> None:
        with guard:
            state[kind] += 1
            if state["writers"] > 1 or (state["writers"] and state["readers"]):
                state["violations"] += 1

    def leave(kind: str) -> None:
        with guard:
            state[kind] -= 1

    def work(write: bool) -> None:
        for _ in range(200):
            with lock.write() if write else lock.read():
                enter("writers" if write else "readers")
                time.sleep(0)
                leave("writers" if write else "readers")

    threads = [threading.Thread(target=work, args=(i % 3 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert state["violations"] == 0
