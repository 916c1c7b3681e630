"""``run_import``: read a file, validate each row, send batches, checkpoint, resume.

Validation is done here, once for every format, against the target collection:
an id, a vector of the collection's dimension with finite values (or, in a
collection with an embedding model, a text to embed). By default the first bad
row stops the import: the good rows before it are sent, nothing after it is,
and the error names the row. ``skip_bad`` writes bad rows to a reject file
instead and goes on. Reading runs in a thread ahead of sending, so parsing
overlaps with the server's work.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from akidb.bulk import checkpoint as ckpt
from akidb.bulk.readers import Fields, Rejected, Row, count_rows, parse_vector_text, read
from akidb.datagen.io import DatasetError
from akidb.progress import progress as make_progress
from akidb.server.client import Client


class BadRowError(DatasetError):
    """The import stopped at a bad row (the message names it and the reason)."""


@dataclass
class ImportSummary:
    imported: int = 0
    rejected: int = 0
    resumed_after: int = 0  # rows skipped because an earlier run had done them
    batches: int = 0
    repeated_ids: int = 0  # rows whose id an earlier row of the same batch had
    seconds: float = 0.0
    reject_file: str | None = None
    queries_file: str | None = None

    @property
    def rows_per_s(self) -> float:
        return self.imported / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Batch:
    ids: list[str] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0  # data rows this batch accounts for, rejected ones included
    seen: set[str] = field(default_factory=set)


def _check(row: Row, dim: int, embeds: bool) -> tuple[str, np.ndarray | None] | str:
    """(id, vector) of a good row, or the reason it is bad."""
    ext_id = row.id
    if isinstance(ext_id, int | np.integer) and not isinstance(ext_id, bool):
        ext_id = str(ext_id)
    if not isinstance(ext_id, str) or not ext_id:
        return "missing id" if ext_id in (None, "") else \
            f"id must be a string or integer, got {type(ext_id).__name__}"
    raw = row.vector
    if raw is None:
        if embeds and row.text:
            return ext_id, None
        return f"id {ext_id!r}: no vector" + ("" if not embeds else " and no text to embed")
    try:
        if isinstance(raw, str):
            raw = parse_vector_text(raw)
        vector = np.asarray(raw, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        return f"id {ext_id!r}: unparsable vector ({str(exc)[:80]})"
    if vector.ndim != 1 or vector.shape[0] != dim:
        got = vector.shape[0] if vector.ndim == 1 else "x".join(map(str, vector.shape))
        return f"id {ext_id!r}: vector has {got} values, the collection expects {dim}"
    if not np.isfinite(vector).all():
        return f"id {ext_id!r}: vector contains NaN or infinity"
    return ext_id, vector


def _prefetch(rows: Iterator[Row | Rejected], depth: int = 4096) -> Iterator[Row | Rejected]:
    """Read ahead in a thread (file parsing overlaps with sending)."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def pump() -> None:
        try:
            for item in rows:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            q.put(exc)

    thread = threading.Thread(target=pump, name="import-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def run_import(client: Client, path: Path, fmt: str, collection: str, *,
               fields: Fields | None = None, batch: int = 1000, skip_bad: bool = False,
               reject_path: Path | None = None, checkpoint_path: Path | None = None,
               resume: bool = False, progress: bool = True,
               queries_out: Path | None = None) -> ImportSummary:
    fields = fields or Fields()
    if batch < 1:
        raise DatasetError(f"--batch must be >= 1, got {batch}")
    info = client.get_collection(collection)
    dim, embeds = int(info["dimension"]), info.get("embedding") is not None
    checkpoint_path = checkpoint_path or ckpt.default_path(path, collection)
    state = (ckpt.load_for_resume(checkpoint_path, path, collection) if resume
             else ckpt.Checkpoint.fresh(path, collection))
    summary = ImportSummary(resumed_after=state.rows_done if resume else 0)
    if fmt == "hdf5" and queries_out is not None:
        summary.queries_file = str(_save_query_set(path, queries_out))
    reject_fh = None
    if skip_bad:
        reject_path = reject_path or path.with_name(path.name + ".rejects.jsonl")
        reject_fh = open(reject_path, "ab" if resume else "wb")
        summary.reject_file = str(reject_path)
    total = count_rows(path, fmt)
    bar = make_progress(total, f"import {path.name}", "rows", enabled=progress,
                        initial=state.rows_done)
    started = time.perf_counter()
    pending = _Batch()

    def flush() -> None:
        if pending.ids:
            if all(v is not None for v in pending.vectors):
                client.upsert_arrays(collection, pending.ids, np.stack(pending.vectors),
                                     pending.payloads, pending.texts)
            else:
                client.upsert(collection, [
                    {"id": i, "vector": v, "text": t, "payload": p} for i, v, t, p in
                    zip(pending.ids, pending.vectors, pending.texts, pending.payloads,
                        strict=True)])
            summary.batches += 1
        state.rows_done += pending.rows
        state.imported += len(pending.ids)
        summary.imported += len(pending.ids)
        state.save(checkpoint_path)
        bar.update(pending.rows)
        pending.__init__()  # type: ignore[misc]

    try:
        for item in _prefetch(read(path, fmt, fields, state.rows_done)):
            reason = item.reason if isinstance(item, Rejected) else None
            checked = None if reason else _check(item, dim, embeds)
            if isinstance(checked, str):
                reason = checked
            if reason is not None:
                if reject_fh is None:
                    flush()
                    raise BadRowError(
                        f"{path}: {item.where}: {reason}. Stopped there: {state.imported} "
                        f"rows imported before it, nothing after it sent (--skip-bad writes "
                        "bad rows to a reject file and goes on)")
                raw = item.raw if item.raw is not None or isinstance(item, Rejected) else {
                    "id": item.id, "text": item.text, "payload": item.payload}
                reject_fh.write(orjson.dumps({"where": item.where, "reason": reason,
                                              "row": raw}, default=str,
                                             option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
                state.rejected += 1
                summary.rejected += 1
                pending.rows += 1
                continue
            ext_id, vector = checked  # type: ignore[misc]
            if ext_id in pending.seen:
                # A file may repeat an id; as across batches, the later row wins, so the
                # earlier one is sent first (one batch may not hold an id twice).
                summary.repeated_ids += 1
                flush()
            pending.seen.add(ext_id)
            pending.ids.append(ext_id)
            pending.vectors.append(vector)
            pending.texts.append(item.text)
            pending.payloads.append(item.payload)
            pending.rows += 1
            if len(pending.ids) >= batch:
                flush()
        flush()
    finally:
        summary.seconds = time.perf_counter() - started
        bar.close()
        if reject_fh is not None:
            reject_fh.close()
    return summary


def _save_query_set(path: Path, out: Path) -> Path:
    """Keep an ann-benchmarks file's test/neighbors/distances for ``akidb bench``."""
    import h5py

    with h5py.File(path, "r") as src:
        missing = [k for k in ("test", "neighbors", "distances") if k not in src]
        if missing:
            raise DatasetError(f"{path}: no {missing} dataset(s) to keep as the query set")
        with h5py.File(out, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for key in ("test", "neighbors", "distances"):
                dst.create_dataset(key, data=src[key][()], track_times=False)
    return out


