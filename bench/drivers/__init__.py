"""One small interface per database under test, so every scenario runs on any of them.

A driver creates a collection with HNSW parameters, inserts batches, waits until what
it inserted is searchable, searches (k, ef, a filter), counts and drops, and says what
it supports. A filter it cannot express raises ``Unsupported``: a scenario then marks
the case unsupported for that driver instead of running it unfiltered. A driver of a
server can also say how another process attaches to its collection, so load clients
run as processes of their own (``akidb.bench.clients``).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Unsupported(Exception):
    """The driver cannot do this (a filter kind, batch search, ...)."""


class DriverError(ValueError):
    """A driver that is unknown, not installed, or misconfigured (usage: exit 2)."""


@dataclass(frozen=True)
class Filter:
    """A scalar condition on a label column: ``field op value``."""
    field: str
    op: str       # "eq" | "gte" | "lt"
    value: int | float | str


@dataclass(frozen=True)
class IndexParams:
    metric: str = "cosine"
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    expected_rows: int = 0  # a sizing hint (hnswlib pre-allocates: no resize mid-stream)


class Driver(Protocol):
    name: str
    capabilities: frozenset[str]   # subset of CAPABILITIES

    def create(self, dimension: int, params: IndexParams) -> None: ...
    def insert(self, ids: Sequence[str], vectors: np.ndarray,
               labels: dict[str, np.ndarray] | None) -> None: ...
    def wait_indexed(self, count: int) -> None: ...
    def search(self, vector: np.ndarray, k: int, ef: int | None = None,
               flt: Filter | None = None) -> list[str]: ...
    def search_batch(self, vectors: np.ndarray, k: int, ef: int | None = None
                     ) -> list[list[str]]: ...
    def count(self) -> int: ...
    def memory_bytes(self) -> int | None: ...
    def attach_options(self) -> dict[str, Any] | None:
        """``{"driver": NAME, "options": {...}}`` with which ``open_driver`` in another
        process opens a client of this same collection (load clients as processes);
        None for a database that lives in this process."""
    def drop(self) -> None: ...
    def close(self) -> None: ...


CAPABILITIES = ("filter", "batch_search", "memory", "rest", "grpc",
                "ef")  # ef: a search-time ef is honoured (the recall/QPS sweep)


def filter_expression(flt: Filter, eq: str = "=") -> str:
    """A filter as the SQL-like string LanceDB (``=``) and Milvus (``==``) take."""
    value = repr(flt.value) if isinstance(flt.value, str) else flt.value
    op = {"eq": eq, "gte": ">=", "lt": "<"}[flt.op]
    return f"{flt.field} {op} {value}"


def label_rows(labels: dict[str, np.ndarray] | None, n: int) -> list[dict[str, Any]] | None:
    """Label columns as one dict per row (the payload/metadata shape most databases
    take), with plain Python values; None without labels."""
    if not labels:
        return None
    cols = {k: v.tolist() for k, v in labels.items()}
    return [{k: cols[k][i] for k in cols} for i in range(n)]

# name -> (module, class, what it is, how to install)
REGISTRY: dict[str, tuple[str, str, str, str]] = {
    "akidb": ("akidb.bench.drivers.akidb_driver", "AkiDBDriver",
              "AkiDB over REST or gRPC (self-started, or --target URL)", "built in"),
    "hnswlib": ("akidb.bench.drivers.hnswlib_driver", "HnswlibDriver",
                "hnswlib in this process: the limit on these cores", "built in"),
    "chroma": ("akidb.bench.drivers.chroma_driver", "ChromaDriver",
               "chromadb, embedded or `chroma run` (mode=embedded|server)",
               "pip install chromadb here, or in its own venv and --driver-python PY"),
    "lancedb": ("akidb.bench.drivers.lancedb_driver", "LanceDBDriver",
                "LanceDB embedded (IVF_HNSW_SQ from 10k rows, exact scan below)",
                "pip install lancedb, or --driver-python PY"),
    "qdrant": ("akidb.bench.drivers.qdrant_driver", "QdrantDriver",
               "Qdrant via qdrant-client: a server (url=...) or local mode (exact search)",
               "pip install qdrant-client, or --driver-python PY"),
    "pgvector": ("akidb.bench.drivers.pgvector_driver", "PgvectorDriver",
                 "PostgreSQL + pgvector at --pgvector-url (HNSW built after the load)",
                 "pip install 'psycopg[binary]' (here or --driver-python PY), and a "
                 "PostgreSQL with the vector extension"),
    "qdrant-edge": ("akidb.bench.drivers.qdrant_edge_driver", "QdrantEdgeDriver",
                    "Qdrant Edge: the Qdrant engine in-process (HNSW, payload indexes; beta)",
                    "pip install qdrant-edge-py==0.9.0, or --driver-python PY"),
    "milvus": ("akidb.bench.drivers.milvus_driver", "MilvusLiteDriver",
               "Milvus Lite (embedded; FLAT/IVF indexes, no HNSW)",
               "pip install pymilvus milvus-lite, or --driver-python PY"),
}


def names() -> list[str]:
    return sorted(REGISTRY)


def open_driver(name: str, python: str | None = None, **options: Any) -> Driver:
    """A driver by name; options are driver-specific (target, transport, mode, ...).
    With ``python``, the driver runs in that interpreter (``remote``)."""
    if name not in REGISTRY:
        raise DriverError(f"unknown driver {name!r}; available here: {', '.join(names())}")
    if python is not None:
        from akidb.bench.drivers.remote import RemoteDriver

        return RemoteDriver(name, python, **options)
    module, cls, _what, install = REGISTRY[name]
    try:
        factory = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        raise DriverError(f"driver {name} is not installed ({exc}); {install}") from None
    return factory(**options)


def describe() -> list[dict[str, Any]]:
    rows = []
    for name in names():
        module, cls, what, install = REGISTRY[name]
        try:
            caps = sorted(getattr(importlib.import_module(module), cls).capabilities)
            available = True
        except ImportError:
            caps, available = [], False
        rows.append({"name": name, "what": what, "capabilities": caps,
                     "available": available, "install": install})
    return rows
