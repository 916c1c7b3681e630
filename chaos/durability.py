"""A durability checker in the Jepsen spirit.

Writers record every operation as ``ok`` (acknowledged), ``fail`` (definitely not
applied: the server answered with an error) or ``info`` (indeterminate: the
connection broke, so it may or may not have been applied). After faults and
recovery the checker reads the data back and requires that

- every acknowledged write is present with exactly the value written (no loss),
- nothing is present that was never sent (no phantoms),

and reports availability: the share of attempted operations acknowledged.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from akidb.server.client import Client
from akidb.server.errors import AkiError, NotFound, TransportError


@dataclass
class Op:
    client: int
    ids: list[str]
    status: str  # ok | fail | info
    start: float
    end: float
    error: str | None = None


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)
    values: dict[str, tuple[list[float], dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def availability(self, since: float = 0.0, until: float = float("inf")) -> float:
        window = [o for o in self.ops if since <= o.start <= until]
        return sum(o.status == "ok" for o in window) / len(window) if window else 1.0


def run_writers(make_client: Any, collection: str, dim: int, writers: int, batch: int,
                stop: threading.Event, history: History, seed: int = 0) -> list[threading.Thread]:
    """Start ``writers`` threads upserting unique documents until ``stop`` is set."""

    def writer(w: int) -> None:
        client: Client = make_client()
        rng = np.random.default_rng([seed, w])
        n = 0
        while not stop.is_set():
            ids = [f"w{w}-{n}-{i}" for i in range(batch)]
            vectors = rng.standard_normal((batch, dim)).astype(np.float32)
            payloads = [{"writer": w, "n": n, "i": i} for i in range(batch)]
            with history.lock:
                for i, ext_id in enumerate(ids):
                    history.values[ext_id] = (vectors[i].tolist(), payloads[i])
            started = time.monotonic()
            try:
                client.upsert_arrays(collection, ids, vectors, payloads=payloads)
                history.record(Op(w, ids, "ok", started, time.monotonic()))
            except TransportError as exc:
                history.record(Op(w, ids, "info", started, time.monotonic(), str(exc)))
                time.sleep(0.05)
            except AkiError as exc:
                history.record(Op(w, ids, "fail", started, time.monotonic(), str(exc)))
                time.sleep(0.05)
            n += 1
        client.close()

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
    for t in threads:
        t.start()
    return threads


@dataclass
class DurabilityResult:
    acknowledged: int
    indeterminate: int
    failed: int
    lost: list[str]
    corrupted: list[str]
    phantoms: int
    count: int
    availability: float

    @property
    def ok(self) -> bool:
        return not self.lost and not self.corrupted and self.phantoms == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["lost"] = out["lost"][:20]
        out["corrupted"] = out["corrupted"][:20]
        out["ok"] = self.ok
        return out


def check(client: Client, collection: str, history: History) -> DurabilityResult:
    """Read back every written document and judge the history (see module doc)."""
    acked = {i for o in history.ops if o.status == "ok" for i in o.ids}
    maybe = {i for o in history.ops if o.status == "info" for i in o.ids}
    failed = {i for o in history.ops if o.status == "fail" for i in o.ids}
    lost, corrupted = [], []
    for ext_id in sorted(acked):
        try:
            doc = client.get(collection, ext_id)
        except NotFound:
            lost.append(ext_id)
            continue
        vector, payload = history.values[ext_id]
        if not np.array_equal(np.asarray(doc["vector"], np.float32),
                              np.asarray(vector, np.float32)) or doc["payload"] != payload:
            corrupted.append(ext_id)
    count = client.get_collection(collection)["count"]
    # Every present document must come from an acknowledged or indeterminate write.
    phantoms = max(0, count - len(acked) - len(maybe))
    return DurabilityResult(len(acked), len(maybe), len(failed), lost, corrupted, phantoms,
                            count, history.availability())
