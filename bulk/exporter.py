"""``run_export``: page through a collection (id order) into JSONL, Parquet or .npy.

Memory stays at one page. ``.npy`` holds only vectors, so the ids go beside it
in ``FILE.ids.txt`` (line i = row i); JSONL and Parquet carry id, vector (float32,
exact), text and payload (Parquet: JSON text, so any payload shape round-trips).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from akidb.progress import progress as make_progress
from akidb.server.client import Client

EXPORT_FORMATS = ("jsonl", "parquet", "npy")


class ExportError(RuntimeError):
    pass


@dataclass
class ExportSummary:
    exported: int
    seconds: float
    files: list[str]


def _check_npy_row(collection: str, doc: dict[str, Any], vectors_only: bool) -> None:
    if "\n" in doc["id"] or "\r" in doc["id"]:
        raise ExportError(f"{collection}: id {doc['id']!r} holds a line break, which "
                          "FILE.ids.txt cannot; export as jsonl or parquet")
    if not vectors_only and (doc.get("payload") or doc.get("text") is not None):
        raise ExportError(f"{collection}: document {doc['id']!r} has a payload or text, "
                          ".npy holds only ids and vectors; export as jsonl or parquet "
                          "(exact round trip), or pass --vectors-only to drop them")


def _vector(doc: dict[str, Any], dim: int) -> np.ndarray:
    vec = doc.get("vector")
    if vec is None:
        return np.full(dim, np.nan, dtype=np.float32)
    return np.asarray(vec, dtype=np.float32)


def run_export(client: Client, collection: str, fmt: str, out: Path, *, page: int = 1000,
               progress: bool = True, vectors_only: bool = False) -> ExportSummary:
    """``vectors_only``: allow a .npy export to drop payloads and texts (it holds ids
    and vectors only; without the flag such a document stops the export)."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {EXPORT_FORMATS}, got {fmt!r}")
    info = client.get_collection(collection)
    dim, total = int(info["dimension"]), int(info["count"])
    bar = make_progress(total, f"export {out.name}", "rows", enabled=progress)
    started = time.perf_counter()
    tmp = out.with_name(out.name + ".partial")
    ids_path = out.with_name(out.name + ".ids.txt")
    ids_tmp = ids_path.with_name(ids_path.name + ".partial")
    files = [str(out)]
    count = 0
    try:
        pages = client.iter_documents(collection, page=page)
        if fmt == "jsonl":
            with open(tmp, "wb") as fh:
                for docs in pages:
                    for d in docs:
                        fh.write(orjson.dumps(d, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
                    count += len(docs)
                    bar.update(len(docs))
        elif fmt == "parquet":
            count = _parquet(pages, tmp, dim, bar)
        else:
            files.append(str(ids_path))
            matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                               shape=(total, dim))
            with open(ids_tmp, "w", encoding="utf-8") as ids:
                for docs in pages:
                    if count + len(docs) > total:
                        raise ExportError(f"{collection} grew during the export (more than "
                                          f"{total} documents); export it again when writes "
                                          "have stopped")
                    for d in docs:
                        _check_npy_row(collection, d, vectors_only)
                    matrix[count:count + len(docs)] = [_vector(d, dim) for d in docs]
                    ids.writelines(d["id"] + "\n" for d in docs)
                    count += len(docs)
                    bar.update(len(docs))
            matrix.flush()
            del matrix
            if count != total:
                raise ExportError(f"{collection} shrank during the export ({count} of "
                                  f"{total} documents); export it again when writes stopped")
        if fmt == "npy":
            os.replace(ids_tmp, ids_path)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        ids_tmp.unlink(missing_ok=True)
        bar.close()
    return ExportSummary(count, time.perf_counter() - started, files)


def _parquet(pages: Any, tmp: Path, dim: int, bar: Any) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dim)),
                        ("text", pa.string()), ("payload", pa.string())])
    count = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for docs in pages:
            flat = np.concatenate([_vector(d, dim) for d in docs])
            table = pa.Table.from_arrays([
                pa.array([d["id"] for d in docs], pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
                pa.array([d.get("text") for d in docs], pa.string()),
                pa.array([orjson.dumps(d.get("payload") or {}).decode() for d in docs],
                         pa.string())], schema=schema)
            writer.write_table(table)
            count += len(docs)
            bar.update(len(docs))
    return count
