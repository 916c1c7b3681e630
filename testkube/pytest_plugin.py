"""Loaded into the suite's pytest run (``-p testkube.pytest_plugin``).

``TESTKUBE_SHARD=i/n`` keeps every n-th test of the sorted node ids, starting at
the i-th: each test lands in exactly one shard, the same one on every machine.
``TESTKUBE_RESULTS=FILE`` appends one JSON line per test (node id, outcome,
duration, failure excerpt) for the history; with xdist the controller writes it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

SHARD_ENV = "TESTKUBE_SHARD"
RESULTS_ENV = "TESTKUBE_RESULTS"


def parse_shard(value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 2/4), got {value!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"shard {value!r}: need 1 <= i <= n")
    return i, n


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = os.environ.get(SHARD_ENV)
    if not shard:
        return
    i, n = parse_shard(shard)
    order = sorted(range(len(items)), key=lambda k: items[k].nodeid)
    keep = {order[k] for k in range(i - 1, len(order), n)}
    deselected = [item for k, item in enumerate(items) if k not in keep]
    items[:] = [item for k, item in enumerate(items) if k in keep]
    config.hook.pytest_deselected(items=deselected)


_phase_outcomes: dict[str, dict[str, Any]] = {}
_worker = False


def pytest_configure(config: pytest.Config) -> None:
    # An xdist worker has ``workerinput``; the environment variable is not enough (a
    # testkube run started from inside another xdist run inherits it).
    global _worker
    _worker = hasattr(config, "workerinput")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    path = os.environ.get(RESULTS_ENV)
    if not path or _worker:  # with xdist the controller sees every report too
        return
    rec = _phase_outcomes.setdefault(report.nodeid, {"nodeid": report.nodeid,
                                                     "outcome": "passed", "duration": 0.0,
                                                     "message": None})
    rec["duration"] += report.duration
    if report.failed:
        rec["outcome"] = "failed" if report.when == "call" else "error"
        rec["message"] = str(report.longrepr)[-4000:]
    elif report.skipped and rec["outcome"] == "passed":
        rec["outcome"] = "skipped"
    if report.when == "teardown":
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(_phase_outcomes.pop(report.nodeid)) + "\n")

