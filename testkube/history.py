"""The run history: one SQLite file (``reports/testkube.db``), one row per run and per result."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    shard TEXT,
    started_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    git_sha TEXT,
    environment TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('passed', 'failed', 'error')),
    exit_code INTEGER NOT NULL,
    counts TEXT NOT NULL,
    steps TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('test', 'bench', 'chaos')),
    name TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_s REAL NOT NULL,
    message TEXT,
    PRIMARY KEY (run_id, kind, name)
) STRICT;
CREATE INDEX IF NOT EXISTS results_name ON results (kind, name);
-- Every suite a run ran, itself and what it includes (a run of `ci` ran `server` too).
CREATE TABLE IF NOT EXISTS run_suites (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    suite TEXT NOT NULL,
    PRIMARY KEY (run_id, suite)
) STRICT;
"""
# A run "of" S: S itself, or a suite that included S.
_OF_SUITE = "(suite = ? OR id IN (SELECT run_id FROM run_suites WHERE suite = ?))"


class History:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def add(self, run: dict[str, Any]) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run["id"], run["suite"], run.get("shard"), run["started_at"],
                 run["finished_at"], run.get("git_sha"), json.dumps(run["environment"]),
                 run["outcome"], run["exit_code"], json.dumps(run["counts"]),
                 json.dumps(run["steps"])))
            self.conn.executemany(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                [(run["id"], r["kind"], r["name"], r["outcome"], r["duration_s"],
                  r.get("message")) for r in run["results"]])
            parts = {run["suite"], *run.get("suites", []),
                     *(s["suite"] for s in run["steps"] if s.get("suite"))}
            self.conn.executemany("INSERT OR IGNORE INTO run_suites VALUES (?, ?)",
                                  [(run["id"], s) for s in sorted(parts)])

    def runs(self, suite: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        sql = "SELECT id, suite, shard, started_at, finished_at, git_sha, outcome, exit_code," \
              " counts FROM runs"
        args: tuple[Any, ...] = ()
        if suite:
            sql += " WHERE " + _OF_SUITE
            args = (suite, suite)
        rows = self.conn.execute(sql + " ORDER BY started_at DESC LIMIT ?", (*args, limit))
        keys = ("id", "suite", "shard", "started_at", "finished_at", "git_sha", "outcome",
                "exit_code", "counts")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for r in out:
            r["counts"] = json.loads(r["counts"])
        return out

    def run(self, run_id: str | None) -> dict[str, Any] | None:
        """A run with its results; the latest when ``run_id`` is None."""
        if run_id is None:
            row = self.conn.execute("SELECT id FROM runs ORDER BY started_at DESC LIMIT 1"
                                    ).fetchone()
            if row is None:
                return None
            run_id = row[0]
        row = self.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        cols = [d[0] for d in self.conn.execute("SELECT * FROM runs LIMIT 0").description]
        run = dict(zip(cols, row, strict=True))
        for key in ("environment", "counts", "steps"):
            run[key] = json.loads(run[key])
        run["results"] = [
            {"kind": k, "name": n, "outcome": o, "duration_s": d, "message": m}
            for k, n, o, d, m in self.conn.execute(
                "SELECT kind, name, outcome, duration_s, message FROM results WHERE run_id = ?"
                " ORDER BY kind, name", (run_id,))]
        return run

    def outcomes(self, suite: str, before: float, limit: int = 10
                 ) -> dict[str, list[str]]:
        """Per test, its outcomes in the last ``limit`` runs of the suite (oldest first)."""
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM runs WHERE {_OF_SUITE} AND started_at <= ? ORDER BY started_at "
            "DESC LIMIT ?", (suite, suite, before, limit))][::-1]
        seq: dict[str, list[str]] = {}
        for run_id in ids:
            for name, outcome in self.conn.execute(
                    "SELECT name, outcome FROM results WHERE run_id = ? AND kind = 'test'",
                    (run_id,)):
                seq.setdefault(name, []).append(outcome)
        return seq


def alternating(outcomes: list[str], min_flips: int = 2) -> bool:
    """Flaky across runs: passed and failed alternate (at least ``min_flips`` changes)."""
    relevant = ["failed" if o in ("failed", "error") else "passed" for o in outcomes
                if o in ("passed", "failed", "error", "flaky")]
    flips = sum(a != b for a, b in zip(relevant, relevant[1:], strict=False))
    return flips >= min_flips
