"""A real collection in-process (SQLite store, WAL, hnswlib) for the server's unit tests."""

from __future__ import annotations

import numpy as np

from akidb.server.collection import Collection
from akidb.server.config import Settings
from akidb.server.errors import AlreadyExists
from akidb.server.query import filters
from akidb.server.storage.metadata import MetadataStore


def open_collection(tmp_path, *, dim: int, metric: str = "l2", fsync: str = "none",
                    m: int = 16, repair: bool = False, **settings: object) -> Collection:
    """``t/d/c`` under ``tmp_path``, created on first use and recovered on later ones; the
    recovery report is kept as ``coll.report``."""
    store = MetadataStore(tmp_path / "m.db")
    try:
        store.create_tenant("t", {})
        store.create_database("t", "d")
        store.create_collection("t", "d", "c", dimension=dim, metric=metric, m=m,
                                ef_construction=64, ef_search=64)
    except AlreadyExists:
        pass
    row = store.get_collection("t", "d", "c")
    coll = Collection(row, store, tmp_path / "c",
                      Settings(data_dir=tmp_path, fsync=fsync, **settings))
    coll.report = coll.open(repair=repair)
    return coll


def brute_force(vecs: np.ndarray, payloads: list[dict], q: np.ndarray, k: int,
                flt: dict | None = None) -> list[str]:
    """The exact top-k ids (row numbers as strings) by L2 among rows matching ``flt``."""
    node = filters.parse(flt) if flt is not None else None
    keep = [i for i, p in enumerate(payloads) if node is None or filters.matches(node, p)]
    dist = np.linalg.norm(vecs[keep] - q, axis=1)
    return [str(keep[j]) for j in np.argsort(dist, kind="stable")[:k]]


def lose_documents(tmp_path, ext_ids: list[str]) -> None:
    """The store forgets these documents (as a restore of an older metadata file
    would), while the snapshot and the log still have them."""
    store = MetadataStore(tmp_path / "m.db")
    marks = ", ".join("?" * len(ext_ids))
    with store._tx() as conn:
        conn.execute(f"DELETE FROM documents WHERE ext_id IN ({marks})", ext_ids)
    store.close()
