"""chromadb, embedded (in the driver's process) or as a server (``chroma run``).

Install it where it fits: ``pip install chromadb`` in this venv, or in a venv of its
own used through ``--driver-python`` (its dependencies are its own). The server mode
starts ``chroma run`` from the driver's interpreter's bin folder on a free port, or
uses ``url``. Filters map onto chroma's ``where`` (``$eq``, ``$gte``, ``$lt`` on
metadata numbers); HNSW parameters onto the collection configuration.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np

from akidb.bench.drivers import DriverError, Filter, IndexParams, label_rows
from akidb.bench.environment import rss_bytes

_SPACE = {"cosine": "cosine", "l2": "l2", "ip": "ip"}
_OPS = {"eq": "$eq", "gte": "$gte", "lt": "$lt"}


class ChromaDriver:
    name = "chroma"
    capabilities = frozenset({"filter", "batch_search", "memory"})

    def __init__(self, mode: str = "embedded", url: str | None = None,
                 collection: str | None = None) -> None:
        """``collection``: attach to one that exists on the server at ``url`` (a load
        client in another process)."""
        if mode not in ("embedded", "server"):
            raise DriverError(f"chroma mode must be embedded or server, got {mode!r}")
        self.name = f"chroma-{mode}"
        self.server: subprocess.Popen[bytes] | None = None
        self.dir = tempfile.mkdtemp(prefix="akidb-chroma-")
        if mode == "embedded":
            self.client: Any = chromadb.PersistentClient(path=self.dir)
        else:
            if url is None:
                url = self._start_server()
            host, _, port = url.removeprefix("http://").partition(":")
            self.client = chromadb.HttpClient(host=host, port=int(port or 8000))
        self.url = url
        self.coll: Any = None
        if collection is not None:
            if mode != "server":
                raise DriverError("chroma attaches to a collection only in server mode")
            self.coll = self.client.get_collection(collection)

    def attach_options(self) -> dict[str, Any] | None:
        if self.url is None or self.coll is None:
            return None  # embedded: the database lives in this process
        return {"driver": "chroma", "options": {"mode": "server", "url": self.url,
                                                "collection": self.coll.name}}

    def _start_server(self) -> str:
        exe = Path(sys.executable).with_name("chroma")
        if not exe.exists():
            found = shutil.which("chroma")
            if not found:
                raise DriverError("chroma server mode needs the `chroma` command")
            exe = Path(found)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = subprocess.Popen([str(exe), "run", "--path", self.dir, "--host",
                                        "127.0.0.1", "--port", str(port)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1)
                return f"http://127.0.0.1:{port}"
            except OSError:
                if self.server.poll() is not None:
                    raise DriverError(f"chroma run exited with {self.server.returncode}"
                                      ) from None
                time.sleep(0.2)
        raise DriverError("chroma run did not answer its heartbeat within 60 s")

    def create(self, dimension: int, params: IndexParams) -> None:
        self.coll = self.client.create_collection(
            f"bench-{os.getpid()}-{time.monotonic_ns()}", embedding_function=None,
            configuration={"hnsw": {"space": _SPACE[params.metric],
                                    "max_neighbors": params.m,
                                    "ef_construction": params.ef_construction,
                                    "ef_search": params.ef_search}})

    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None:
        self.coll.add(ids=list(ids), embeddings=np.asarray(vectors, np.float32),
                      metadatas=label_rows(labels, len(ids)))

    def wait_indexed(self, count: int) -> None:
        got = self.coll.count()
        if got != count:
            raise DriverError(f"chroma holds {got} vectors after inserting {count}")

    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]:
        where = None if flt is None else {flt.field: {_OPS[flt.op]: flt.value}}
        out = self.coll.query(query_embeddings=np.asarray(vector, np.float32)[None, :],
                              n_results=k, where=where, include=[])
        return list(out["ids"][0])

    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]:
        out = self.coll.query(query_embeddings=np.asarray(vectors, np.float32),
                              n_results=k, include=[])
        return [list(r) for r in out["ids"]]

    def count(self) -> int:
        return int(self.coll.count())

    def memory_bytes(self) -> int | None:
        return rss_bytes(self.server.pid if self.server else os.getpid())

    def drop(self) -> None:
        if self.coll is not None:
            self.client.delete_collection(self.coll.name)
            self.coll = None

    def close(self) -> None:
        if self.server is None and self.url is not None:
            self.coll = None  # a client attached to a server it did not start
        if self.server is not None:
            self.server.terminate()
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
