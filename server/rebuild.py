"""Rebuild a lost metadata store from what each collection keeps beside its data.

``collection.json`` names the collection (tenant, database, name, dimension, metric,
HNSW parameters, embedding); the newest snapshot holds the index and the documents
catalogue (label, id, text, payload, vector norm) at its sequence number; the log
holds every record after it. The catalogue rows and the snapshot's documents are
written here; the normal recovery that follows replays the log on top.

What cannot come back: users, API keys, quotas and Cedar policies (only metadata.db
held them) and, for cosine collections, the exact original vectors (hnswlib keeps
unit vectors; the norm restores them to within float32 rounding).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import orjson

from akidb.server.errors import AlreadyExists
from akidb.server.index.hnsw import HnswIndex
from akidb.server.storage import snapshot as snapshots
from akidb.server.storage.metadata import MetadataStore

log = logging.getLogger("akidb.rebuild")
BATCH = 5000


def rebuild_catalogue(store: MetadataStore, directories: list[Path]) -> int:
    """Fill an empty store from collection directories; returns collections rebuilt."""
    rebuilt = 0
    for directory in directories:
        manifest = directory / "collection.json"
        if not manifest.exists():
            log.error("%s has no collection.json (written by servers from this version on); "
                      "it cannot be rebuilt and will be quarantined", directory)
            continue
        row = json.loads(manifest.read_text())
        if str(row["id"]) != directory.name:
            log.error("%s: collection.json names id %s; skipping it", directory, row["id"])
            continue
        try:
            store.create_tenant(row["tenant"], {})
        except AlreadyExists:
            pass
        try:
            store.create_database(row["tenant"], row["database"])
        except AlreadyExists:
            pass
        store.create_collection(
            row["tenant"], row["database"], row["name"], dimension=row["dimension"],
            metric=row["metric"], m=row["m"], ef_construction=row["ef_construction"],
            ef_search=row["ef_search"], embedding=row.get("embedding"),
            collection_id=int(row["id"]), created_at=row.get("created_at"))
        count = _load_snapshot_documents(store, int(row["id"]), directory, row)
        log.warning("rebuilt the catalogue entry of %s/%s/%s from %s: %d documents from its "
                    "snapshot; the log after it is replayed next", row["tenant"],
                    row["database"], row["name"], directory, count)
        rebuilt += 1
    log.warning("metadata rebuilt for %d collection(s). Users, API keys, quotas and policies "
                "were only in the lost metadata.db: recreate them with the admin key", rebuilt)
    return rebuilt


def _load_snapshot_documents(store: MetadataStore, collection_id: int, directory: Path,
                             row: dict) -> int:
    snap = snapshots.load_latest(directory / "snapshots")
    if snap is None:
        return 0  # the log must then reach back to record 1; recovery checks it
    catalogue = snapshots.verify_documents(snap)
    index = HnswIndex(dimension=row["dimension"], metric=row["metric"], m=row["m"],
                      ef_construction=row["ef_construction"], ef_search=row["ef_search"])
    index.load(snap.index_path, deleted=int(snap.meta.get("deleted", 0)))
    count = 0
    with open(catalogue, "rb") as fh:
        while lines := fh.readlines(BATCH * 256):
            docs = [orjson.loads(line) for line in lines]
            labels = np.asarray([d[0] for d in docs], dtype=np.int64)
            vectors = index.vectors(labels)
            if row["metric"] == "cosine":
                vectors = vectors * np.asarray([d[4] for d in docs], np.float32)[:, None]
            store.apply_upsert(collection_id, snap.seq, [
                (d[1], d[0], d[2], d[3], vectors[i].astype(np.float32).tobytes())
                for i, d in enumerate(docs)])
            count += len(docs)
    if count == 0:
        store.apply_upsert(collection_id, snap.seq, [])
    return count
