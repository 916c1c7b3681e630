"""Start-up recovery of one collection: snapshot, log replay, index agreeing with the store.

SQLite holds every applied record (its ``applied_seq`` and each document's ``seq``
say which), so a record the index missed — a log cut by ``--repair``, a torn or
damaged last record, a deleted segment, a snapshot that fails its checks — is taken
from the store instead, and reported. Only records that neither the log nor the
store holds are lost, and those stop start-up unless ``repair``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from akidb.server.storage import snapshot as snapshots
from akidb.server.storage.wal import OP_UPSERT

if TYPE_CHECKING:
    from akidb.server.collection import Collection

log = logging.getLogger("akidb.collection")


class RecoveryError(Exception):
    """The collection cannot be brought back without losing acknowledged writes."""



@dataclass
class RecoveryReport:
    collection: str
    snapshot_seq: int | None = None
    sqlite_seq: int = 0
    replayed_records: int = 0
    rebuilt_from_sqlite: bool = False
    truncations: list[dict[str, Any]] = field(default_factory=list)
    # The index repaired from the store after replay (see Collection.open).
    index_from_store: int = 0
    index_removed: int = 0
    index_rebuilt: bool = False
    lost_records: list[tuple[int, int]] = field(default_factory=list)
    seconds: float = 0.0



class Recovery:
    """The recovery half of ``Collection`` (kept apart: it runs once, at start-up)."""

    def open(self: Collection, *, repair: bool = False) -> RecoveryReport:
        """Snapshot + log replay, then make the index agree with the store.

        SQLite holds every applied record (its ``applied_seq`` and each document's
        ``seq`` say which), so a record the index missed — a log cut by ``--repair``, a
        torn or damaged last record, a deleted segment, a snapshot that fails its checks
        — is taken from the store instead, and reported. Only records that neither the
        log nor the store holds are lost, and those stop start-up unless ``repair``."""
        started = time.perf_counter()
        report = RecoveryReport(self.row.path)
        db_seq = self.row.applied_seq
        wal_report = self.wal.open(min_seq=db_seq, repair=repair)
        report.truncations = [t.__dict__ for t in wal_report.truncations]
        report.sqlite_seq = db_seq

        snap = snapshots.load_latest(self.dir / "snapshots")
        index_seq = 0
        if snap is not None:
            self.index.load(snap.index_path, deleted=int(snap.meta.get("deleted", 0)))
            self.next_label = int(snap.meta.get("next_label", 0))
            report.snapshot_seq = index_seq = snap.seq
            self.last_snapshot = snap
        start = db_seq if snap is None else min(snap.seq, db_seq)
        pending: dict[int, np.ndarray] = {}
        previous = start
        for record in self.wal.replay(start, self.row.dimension):
            if record.seq != previous + 1:
                self._gap(previous + 1, record.seq - 1, db_seq, repair, report)
            previous = record.seq
            report.replayed_records += 1
            if record.seq > db_seq:
                self._apply_store(record)
            if record.op == OP_UPSERT:
                self.next_label = max(self.next_label, max(record.meta["labels"]) + 1)
            if snap is not None and record.seq > snap.seq:
                if record.seq == index_seq + 1:
                    index_seq = record.seq  # the index is complete up to here
                if record.op == OP_UPSERT:
                    for label, vector in zip(record.meta["labels"], record.vectors, strict=True):
                        pending[label] = vector
                else:
                    self._flush_pending(pending)
                    self.index.delete(record.meta["labels"])
        self._flush_pending(pending)

        # SQLite now holds every acknowledged document: load the exact vectors, and
        # without a snapshot rebuild the graph from them too.
        report.rebuilt_from_sqlite = snap is None and db_seq > 0
        for rows in self.store.iter_vectors(self.row.id):
            labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vectors = self._rows_to_array(rows)
            self.flat.put(labels, vectors)
            if snap is None:
                self.index.add(labels, vectors)
        if snap is not None:
            stale = self.store.vectors_after(self.row.id, index_seq)
            if stale:
                labels = np.fromiter((r[0] for r in stale), dtype=np.int64, count=len(stale))
                self.index.add(labels, self._rows_to_array(stale))
                report.index_from_store = len(stale)

        items = []
        for label, ext_id, payload in self.store.id_map(self.row.id):
            self.labels[ext_id] = label
            self.ext_ids[label] = ext_id
            self.next_label = max(self.next_label, label + 1)
            items.append((label, orjson.loads(payload)))
        self.payloads.put(items)
        self._reconcile_index(report)
        if report.index_from_store or report.index_removed or report.index_rebuilt:
            log.warning("%s: the index disagreed with the store after replay and was repaired "
                        "from it: %d documents re-indexed, %d stale labels removed%s",
                        self.row.path, report.index_from_store, report.index_removed,
                        ", whole index rebuilt" if report.index_rebuilt else "")
        self._record_segments()
        report.seconds = time.perf_counter() - started
        return report

    def _gap(self, first: int, last: int, db_seq: int, repair: bool,
             report: RecoveryReport) -> None:
        """Records ``first..last`` are absent from the log. Those SQLite applied are
        recovered from it; any beyond ``db_seq`` are acknowledged writes that are gone."""
        if last <= db_seq:
            return
        lost = (max(first, db_seq + 1), last)
        message = (f"{self.row.path}: log records {lost[0]}..{lost[1]} are missing from "
                   f"{self.wal.dir} and the metadata store holds records only up to {db_seq}")
        if not repair:
            raise RecoveryError(message + "; restore the missing segment, or start with "
                                "--repair to accept losing those writes")
        log.error("%s; --repair: continuing without them", message)
        report.lost_records.append(lost)

    def _rows_to_array(self, rows: Sequence[tuple[int, bytes]]) -> np.ndarray:
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return vectors.reshape(len(rows), self.row.dimension)

    def _reconcile_index(self, report: RecoveryReport) -> None:
        """Drop live labels the store does not hold; if counts still differ, rebuild."""
        if self.index.count != len(self.labels):
            extra = np.setdiff1d(self.index.labels(), self._live_labels())
            before = self.index.deleted
            self.index.delete(extra.tolist())
            report.index_removed = self.index.deleted - before
        if self.index.count != len(self.labels):
            self.index.clear()
            for rows in self.store.iter_vectors(self.row.id):
                labels = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                self.index.add(labels, self._rows_to_array(rows))
            report.index_rebuilt = True
        if self.index.count != len(self.labels):
            raise RecoveryError(f"{self.row.path}: the index holds {self.index.count} live "
                                f"vectors after a rebuild from the store's {len(self.labels)} "
                                "documents; the store itself is inconsistent")

    def _flush_pending(self, pending: dict[int, np.ndarray]) -> None:
        if pending:
            labels = np.fromiter(pending.keys(), dtype=np.int64, count=len(pending))
            self.index.add(labels, np.stack(list(pending.values())))
            pending.clear()

