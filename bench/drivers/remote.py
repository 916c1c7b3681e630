"""A driver running in another interpreter (``--driver-python PY``).

Peers pin dependencies that conflict with ours (chromadb, lancedb, milvus-lite), so
their drivers can run in a venv of their own: this side starts ``PY -m
akidb.bench.drivers.remote NAME`` with the checkout on ``PYTHONPATH`` (the driver
modules need only numpy and the peer's package; load clients and the threaded loops
run there too and need ``hdrhistogram``) and speaks JSON lines over its
stdin/stdout, vectors as base64 float32. The worker's stderr goes to a log whose
tail is in any error. Latencies measured through this pipe include it (~0.12 ms a
call here), which the report says.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from akidb.bench.drivers import DriverError, Filter, IndexParams, Unsupported


def _akidb_root() -> str:
    """The folder holding the ``akidb`` package: the checkout, or site-packages."""
    import akidb

    return str(Path(akidb.__file__).resolve().parent.parent)


def _enc(a: np.ndarray) -> dict[str, Any]:
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {"b64": base64.b64encode(a.tobytes()).decode(), "shape": list(a.shape)}


def _dec(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["b64"]), dtype=np.float32).reshape(d["shape"])


class RemoteDriver:
    """The parent side: a Driver whose calls run in the worker process."""

    def __init__(self, name: str, python: str, **options: Any) -> None:
        self.log = Path(tempfile.mkstemp(prefix=f"akidb-driver-{name}-", suffix=".log")[1])
        # in a checkout, akidb/__init__ maps akidb.bench to ./bench for the worker too
        env = {**os.environ, "PYTHONPATH": _akidb_root(), "PYTHONSAFEPATH": "1"}
        try:
            self.proc = subprocess.Popen([python, "-m", "akidb.bench.drivers.remote", name],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self.log.open("wb"), env=env, text=True)
        except OSError as exc:
            raise DriverError(f"cannot run {python} for driver {name}: {exc}") from None
        self.python = python
        self._pipe = threading.Lock()  # one call at a time (a streaming run has two threads)
        hello = self._call("open", options=options)
        self.name = hello["name"]
        self.capabilities = frozenset(hello["capabilities"])

    def _call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            with self._pipe:
                self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise DriverError(f"driver worker exited during {op}: {tail}")
        reply = json.loads(line)
        if "unsupported" in reply:
            raise Unsupported(reply["unsupported"])
        if "error" in reply:
            raise DriverError(f"driver worker failed in {op}: {reply['error']}")
        return reply.get("ok")

    def create(self, dimension: int, params: IndexParams) -> None:
        self._call("create", dimension=dimension, params=asdict(params))

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        self._call("insert", ids=list(ids), vectors=_enc(vectors),
                   labels={k: v.tolist() for k, v in (labels or {}).items()})

    def wait_indexed(self, count: int) -> None:
        self._call("wait_indexed", count=count)

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        return self._call("search", vector=_enc(vector), k=k, ef=ef,
                          flt=None if flt is None else asdict(flt))

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        return self._call("search_batch", vectors=_enc(vectors), k=k, ef=ef)

    def count(self) -> int:
        return int(self._call("count"))

    def attach_options(self) -> dict[str, Any] | None:
        return self._call("attach_options")

    def stream(self, ids: list[str], rows: np.ndarray, first: int, rate: float,
               queries: np.ndarray, k: int, ef: int | None) -> dict[str, Any]:
        """``write_scenarios.stream`` in the worker, beside the database."""
        return self._call("stream", ids=ids, rows=_enc(rows), first=first, rate=rate,
                          queries=_enc(queries), k=k, ef=ef)

    def thread_loop(self, queries: np.ndarray, k: int, ef: int | None, clients: int,
                    seconds: float) -> dict[str, Any]:
        """Closed-loop search from ``clients`` threads in the worker, where the embedded
        database lives (``akidb.bench.clients.thread_loop``)."""
        return self._call("thread_loop", queries=_enc(queries), k=k, ef=ef, clients=clients,
                          seconds=seconds)

    def memory_bytes(self) -> int | None:
        return self._call("memory_bytes")

    def drop(self) -> None:
        self._call("drop")

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._call("close")
            except DriverError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.unlink(missing_ok=True)


def _searcher(driver: Any, queries: np.ndarray, k: int, ef: int | None) -> Any:
    def search(i: int) -> None:
        driver.search(queries[i % len(queries)], k, ef)

    return search


def serve(name: str) -> int:
    """The worker side: one local driver, calls from stdin, replies on stdout."""
    from akidb.bench import drivers

    out = sys.stdout
    sys.stdout = sys.stderr  # a peer printing to stdout must not corrupt the replies
    driver: Any = None
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop("op")
        try:
            if op == "open":
                driver = drivers.open_driver(name, **req["options"])
                result: Any = {"name": driver.name, "capabilities": sorted(driver.capabilities)}
            elif op == "create":
                result = driver.create(req["dimension"], IndexParams(**req["params"]))
            elif op == "insert":
                labels = {k: np.asarray(v) for k, v in req["labels"].items()}
                result = driver.insert(req["ids"], _dec(req["vectors"]), labels)
            elif op == "search":
                flt = Filter(**req["flt"]) if req["flt"] else None
                result = driver.search(_dec(req["vector"]), req["k"], req["ef"], flt)
            elif op == "search_batch":
                result = driver.search_batch(_dec(req["vectors"]), req["k"], req["ef"])
            elif op == "wait_indexed":
                result = driver.wait_indexed(req["count"])
            elif op == "thread_loop":
                from akidb.bench.clients import thread_loop

                result = thread_loop(_searcher(driver, _dec(req["queries"]), req["k"],
                                               req["ef"]), req["clients"], req["seconds"])
            elif op == "stream":
                from akidb.bench.write_scenarios import stream

                result = stream(driver, req["ids"], _dec(req["rows"]), req["first"],
                                req["rate"], _dec(req["queries"]), req["k"], req["ef"])
            elif op in ("count", "memory_bytes", "drop", "attach_options"):
                result = getattr(driver, op)()
            elif op == "close":
                if driver is not None:
                    driver.close()
                out.write(json.dumps({"ok": None}) + "\n")
                out.flush()
                return 0
            else:
                raise ValueError(f"unknown op {op!r}")
            reply: dict[str, Any] = {"ok": result}
        except Unsupported as exc:
            reply = {"unsupported": str(exc)}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve(sys.argv[1]))
