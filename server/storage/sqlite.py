"""The SQLite connection discipline every store part shares.

SQLite runs in WAL journal mode with STRICT tables. One writer connection is shared
under a lock; each reader thread has its own connection, so searches never wait for a
write transaction. ``_tx(durable=True)`` commits with ``synchronous=FULL`` for changes
no log covers (the control plane); document writes use ``synchronous=NORMAL``, because
the project's own write-ahead log is what makes them durable.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn



class SqliteStore:
    """Connections, transactions, migrations and backups of one SQLite file."""

    def __init__(self, path: Path, migrations: list[str]) -> None:
        self.path = path
        self.migrations = migrations
        self._write = connect(path)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._migrate()

    # -- connections -------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _tx(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        with self._write_lock:
            conn = self._write
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                if durable:
                    conn.execute("PRAGMA synchronous=NORMAL")

    def close(self) -> None:
        with self._write_lock:
            self._write.close()
        with self._readers_lock:
            for conn in self._readers:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._readers.clear()

    def backup(self, dest: Path) -> None:
        """A consistent copy of the whole database (SQLite's online backup), for shipping."""
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.unlink(missing_ok=True)
        src = sqlite3.connect(self.path)
        try:
            dst = sqlite3.connect(tmp)
            with dst:
                src.backup(dst)
            dst.close()
        finally:
            src.close()
        os.replace(tmp, dest)

    def checkpoint(self) -> None:
        """Make every committed transaction durable in the main database file."""
        with self._write_lock:
            self._write.execute("PRAGMA synchronous=FULL")
            self._write.execute("PRAGMA wal_checkpoint(FULL)")
            self._write.execute("PRAGMA synchronous=NORMAL")

    def _migrate(self) -> None:
        with self._tx(durable=True) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY, applied_at REAL NOT NULL) STRICT"
            )
            current = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()[0]
            if current > len(self.migrations):
                raise RuntimeError(
                    f"{self.path}: schema version {current} is newer than this server "
                    f"({len(self.migrations)}); upgrade akidb"
                )
            for version, script in enumerate(self.migrations[current:], start=current + 1):
                for statement in split_sql(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (version, time.time()),
                )

    def schema_version(self) -> int:
        return self._reader().execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]


def split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        candidate = "\n".join(buf).strip()
        if candidate.endswith(";") and sqlite3.complete_statement(candidate):
            statements.append(candidate)
            buf = []
    if "".join(buf).strip():
        statements.append("\n".join(buf))
    return statements
