"""The clients of a chaos experiment: a seeded mix of upserts (of new and existing
ids), deletes, gets, vector searches and filtered searches, each operation recorded
in a ``History`` with its invocation, completion and outcome.

Each client is a thread with its own connection and a random stream seeded from
``(seed, client)``, so the same seed issues the same operations in the same order.
Clients never retry: one attempt is one operation in the history. A transport
error (connection refused or cut, timeout) is ``info``, since the request may
have been applied; an error answer from the server is ``fail``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from akidb.chaos.history import FAIL, INFO, OK, History, Hit, Value
from akidb.server.client import Client
from akidb.server.errors import AkiError, NotFound, TransportError

OPERATIONS = ("upsert", "delete", "get", "search", "filtered_search")
BUCKETS = 10  # payload "bucket" values; a filtered search asks for one of them


@dataclass
class Workload:
    clients: int = 3
    batch: int = 20  # documents per upsert (mixed workloads draw 1..batch)
    dimension: int = 16
    keys: int = 0  # 0: every upsert writes new ids; N: all clients share ids k0..k{N-1}
    mix: Mapping[str, float] = field(default_factory=lambda: {"upsert": 1.0})
    rate: float = 0.0  # operations per second per client; 0: as fast as answers come
    k: int = 10
    seed: int = 0


def observed(doc: Mapping[str, Any], history: History, with_vector: bool = True) -> str:
    """The value id a document shows: its payload's ``v``, marked ``!v`` when the
    contents differ from that write's, ``?`` when it carries none."""
    payload = doc.get("payload") or {}
    value_id = payload.get("v")
    value = history.values.get(value_id) if isinstance(value_id, str) else None
    if value is None:
        return "?" if value_id is None else str(value_id)
    same = payload == value.payload and (not with_vector or np.array_equal(
        np.asarray(doc.get("vector"), np.float32), np.asarray(value.vector, np.float32)))
    return value_id if same else f"!{value_id}"


class MixedClient:
    def __init__(self, process: int, make_client: Callable[[int], Client], collection: str,
                 workload: Workload, history: History, t0: float) -> None:
        self.process = process
        self.make_client = make_client
        self.collection = collection
        self.w = workload
        self.history = history
        self.t0 = t0
        self.rng = np.random.default_rng([workload.seed, process])
        names = [f for f in OPERATIONS if workload.mix.get(f, 0) > 0]
        weights = np.asarray([workload.mix[f] for f in names], dtype=np.float64)
        self.names, self.weights = names, weights / weights.sum()
        self.n = 0
        self.due: float | None = None  # when a paced client meant to send

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self, stop: threading.Event) -> None:
        """Closed loop by default. With a ``rate``, operation n is due at n / rate: a
        client that falls behind (a slow or dead node) sends at once until it has
        caught up, and latency counts from when the operation was due, so a stall
        shows in the percentiles (no coordinated omission)."""
        client = self.make_client(self.process)
        first = time.monotonic()
        try:
            while not stop.is_set():
                if self.w.rate > 0:
                    due = first + self.n / self.w.rate
                    if stop.wait(max(0.0, due - time.monotonic())):
                        break
                    self.due = due - self.t0
                else:
                    self.due = None
                f = self.names[int(self.rng.choice(len(self.names), p=self.weights))]
                status = getattr(self, f"_{f}")(client)
                self.n += 1
                if status != OK and not self.w.rate:
                    time.sleep(0.05)  # no tight loop against a node that is down
        finally:
            client.close()

    def _record(self, **fields: Any) -> None:
        self.history.record(process=self.process, scheduled=self.due, **fields)

    def _call(self, call: Callable[[], Any]) -> tuple[str, Any, str | None, float, float]:
        invoke = self.now()
        try:
            out = call()
            return OK, out, None, invoke, self.now()
        except TransportError as exc:
            return INFO, None, f"{type(exc).__name__}: {exc}", invoke, self.now()
        except AkiError as exc:
            return FAIL, exc, f"{type(exc).__name__}: {exc}", invoke, self.now()

    def _key(self) -> str:
        return f"k{int(self.rng.integers(self.w.keys))}"

    def _upsert(self, client: Client) -> str:
        if self.w.keys:
            size = int(self.rng.integers(1, min(self.w.batch, self.w.keys) + 1))
            keys = [f"k{i}" for i in self.rng.choice(self.w.keys, size, replace=False)]
        else:
            keys = [f"c{self.process}-{self.n}-{i}" for i in range(self.w.batch)]
        vectors = self.rng.standard_normal((len(keys), self.w.dimension)).astype(np.float32)
        values, payloads = [], []
        for i, key in enumerate(keys):
            value_id = f"{self.process}-{self.n}-{i}"
            payload = {"v": value_id, "bucket": int(self.rng.integers(BUCKETS))}
            self.history.add_value(value_id, Value(key, vectors[i].tolist(), payload))
            values.append(value_id)
            payloads.append(payload)
        status, _, error, invoke, complete = self._call(
            lambda: client.upsert_arrays(self.collection, keys, vectors, payloads=payloads))
        self._record(f="upsert", keys=keys, values=values,
                            invoke=invoke, complete=complete, status=status, error=error)
        return status

    def _delete(self, client: Client) -> str:
        key = self._key() if self.w.keys else f"c{self.process}-{max(self.n - 1, 0)}-0"
        status, out, error, invoke, complete = self._call(
            lambda: client.delete(self.collection, key))
        if isinstance(out, NotFound):
            # Absent already: the key's state after this call is "absent", as after any
            # delete, so it is recorded as one (a wrong 404 then shows as a resurrection).
            status, error = OK, None
        self._record(f="delete", keys=[key], values=[None],
                            invoke=invoke, complete=complete, status=status, error=error)
        return status

    def _get(self, client: Client) -> str:
        key = self._key() if self.w.keys else f"c{self.process}-{max(self.n - 1, 0)}-0"
        status, out, error, invoke, complete = self._call(
            lambda: client.get(self.collection, key))
        value: str | None = None
        if isinstance(out, NotFound):
            status, error = OK, None  # absent is an answer
        elif status == OK:
            value = observed(out, self.history)
        self._record(f="get", keys=[key], values=[value],
                            invoke=invoke, complete=complete, status=status, error=error)
        return status

    def _search(self, client: Client, flt: dict[str, Any] | None = None) -> str:
        query = self.rng.standard_normal(self.w.dimension).astype(np.float32)
        status, out, error, invoke, complete = self._call(
            lambda: client.search(self.collection, query, k=self.w.k, filter=flt,
                                  include=("payload",)))
        hits = [] if status != OK else [
            Hit(h.id, observed({"payload": h.payload}, self.history, with_vector=False)
                if h.payload and "v" in h.payload else None, -h.score) for h in out.hits]
        self._record(f="search", keys=[], values=[],
                            invoke=invoke, complete=complete, status=status, error=error,
                            vector=query.tolist(), filter=flt, k=self.w.k, hits=hits)
        return status

    def _filtered_search(self, client: Client) -> str:
        return self._search(client, {"bucket": int(self.rng.integers(BUCKETS))})


def start(make_client: Callable[[int], Client], collection: str, workload: Workload,
          history: History, stop: threading.Event, t0: float, first: int = 0
          ) -> list[threading.Thread]:
    """Start the workload's clients (numbered from ``first``); they run until ``stop``
    is set."""
    threads = []
    for process in range(first, first + workload.clients):
        client = MixedClient(process, make_client, collection, workload, history, t0)
        threads.append(threading.Thread(target=client.run, args=(stop,), daemon=True,
                                        name=f"chaos-client-{process}"))
    for t in threads:
        t.start()
    return threads


def final_read(client: Client, collection: str, history: History, t0: float) -> None:
    """Read every document back after the run, as one final read of every key the
    history wrote and every id the server holds."""
    invoke = time.monotonic() - t0
    seen: dict[str, str] = {}
    for page in client.iter_documents(collection, include=("vector", "payload")):
        for doc in page:
            seen[doc["id"]] = observed(doc, history)
    keys = sorted({k for op in history.ops for k in op.keys} | set(seen))
    history.record(process=-1, f="get", keys=keys, values=[seen.get(k) for k in keys],
                   invoke=invoke, complete=time.monotonic() - t0, status=OK, final=True)
