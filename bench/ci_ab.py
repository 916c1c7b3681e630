"""The project's own CI gate (``make test``): this checkout A/B against its first parent.

Search latency and ingest throughput, interleaved on this machine. Exit 1 on a real
regression unless the commit says ``Perf-Regression-Accepted: <why>``. Skipped, with
the reason, outside a git checkout, without a parent commit (a shallow clone), or
with ``AKIDB_SKIP_AB=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROUNDS = "8"
OUT = "reports/ci-ab"


def _parent() -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD^"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def main() -> int:
    if os.environ.get("AKIDB_SKIP_AB") == "1":
        print("ci A/B: skipped (AKIDB_SKIP_AB=1)")
        return 0
    parent = _parent()
    if parent is None:
        print("ci A/B: skipped (not a git checkout, or HEAD has no parent commit: a shallow "
              "clone?)")
        return 0
    from akidb.bench.cli import bench

    print(f"ci A/B: this checkout against its first parent {parent[:12]}", flush=True)
    # click exits with the command's code: 0, 1 (regression) or 2 (usage)
    bench.main(["ab", parent, ".", "--scenario", "search", "--scenario", "ingest",
                "--rounds", ROUNDS, "--out", OUT], prog_name="akidb bench")
    return 0


if __name__ == "__main__":
    sys.exit(main())
