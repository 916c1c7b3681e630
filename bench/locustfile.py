"""Locust users for ``bench.load``: the hybrid query mix, paced open-loop.

Each user sends at fixed intended times (a random phase, then every
``users / qps`` seconds), so the users together offer the target rate whatever
the server does. Latency is measured from the intended send time, not from
when the request actually left (no coordinated omission): a slow server shows
up as latency, not as a lower offered rate. Run by ``python -m akidb.bench.load``,
which sets the ``AKIDB_LOAD_*`` variables; usable with the ``locust`` command
directly, headless or with its web UI, single-process or ``--master``/``--worker``.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import gevent
from locust import User, events, task

from akidb.datagen import vectors
from akidb.datagen.workload import workload
from akidb.server.client import Client

URL = os.environ.get("AKIDB_LOAD_URL", "http://127.0.0.1:8080")
KEY = os.environ.get("AKIDB_LOAD_KEY")
COLLECTION = os.environ.get("AKIDB_LOAD_COLLECTION", "bench/db/load")
QPS = float(os.environ.get("AKIDB_LOAD_QPS", "100"))
USERS = int(os.environ.get("AKIDB_LOAD_USERS", "50"))
DIM = int(os.environ.get("AKIDB_LOAD_DIM", "512"))
SEED = int(os.environ.get("AKIDB_LOAD_SEED", "0"))
SAMPLES_DIR = os.environ.get("AKIDB_LOAD_SAMPLES_DIR")

QUERIES = vectors.queries(1000, DIM, seed=SEED)
OPS = workload(10_000, n_query_vectors=len(QUERIES), seed=SEED)
_samples: list[tuple[str, float, float, bool]] = []  # kind, intended time, ms, ok


class AkiDBUser(User):
    """One paced sender; ``USERS`` of them offer ``QPS`` together."""

    def on_start(self) -> None:
        self.api = Client(URL, KEY, timeout=10, retries=0)
        self.interval = USERS / QPS
        self.next_at = time.time() + random.random() * self.interval
        self.cursor = random.randrange(len(OPS))

    def on_stop(self) -> None:
        self.api.close()

    @task
    def paced_query(self) -> None:
        delay = self.next_at - time.time()
        if delay > 0:
            gevent.sleep(delay)
        intended = self.next_at
        self.next_at += self.interval
        op = OPS[self.cursor % len(OPS)]
        self.cursor += 1
        exc = None
        try:
            self.api.search(COLLECTION, QUERIES[op["vector"]], k=op["k"],
                            filter=op.get("filter"), text=op.get("text"),
                            mode="hybrid" if op["kind"] == "hybrid" else None)
        except Exception as e:  # noqa: BLE001 - every failure is an error sample
            exc = e
        ms = (time.time() - intended) * 1000.0
        _samples.append((op["kind"], intended, ms, exc is None))
        self.environment.events.request.fire(request_type="search", name=op["kind"],
                                             response_time=ms, response_length=0,
                                             exception=exc, context={})


@events.test_stop.add_listener
def _save(environment, **_kwargs) -> None:  # noqa: ANN001
    if SAMPLES_DIR and _samples:
        path = Path(SAMPLES_DIR) / f"samples-{os.getpid()}.json"
        path.write_text(json.dumps(_samples))
