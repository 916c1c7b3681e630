"""Failpoints: faults a chaos experiment switches on while the server runs.

``authz_delay_ms`` slows every authorization decision, ``search_delay_ms`` every
search, ``disk_full`` (1/0) makes every WAL append fail with ENOSPC as a full
disk would, and ``lose_acked_writes`` (1/0) is a deliberately broken server: upserts
are acknowledged without being written, so checkers can be shown to catch a lost
acknowledged write. The admin route ``PUT /v1/admin/faults`` sets them only when the
server was started with ``AKIDB_FAULT_INJECTION=1``; otherwise it answers 404
and every check is one dict lookup of a zero. ``AKIDB_TEST_SEARCH_DELAY_MS``
presets the search delay (the regression gate's power test uses it), and
``AKIDB_TEST_RECOVERY_GATE=PATH`` holds start-up recovery until PATH exists, so a test
can observe the recovering state without racing it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import Any

from akidb.server.errors import BadRequest, NotFound

ENABLED = os.environ.get("AKIDB_FAULT_INJECTION") == "1"
_LIMITS = {"authz_delay_ms": 60_000.0, "search_delay_ms": 60_000.0, "disk_full": 1.0,
           "lose_acked_writes": 1.0}
_values: dict[str, float] = dict.fromkeys(_LIMITS, 0.0)
_values["search_delay_ms"] = float(os.environ.get("AKIDB_TEST_SEARCH_DELAY_MS", "0") or 0)
_lock = threading.Lock()


def current() -> dict[str, float]:
    return dict(_values)


def update(changes: Any) -> dict[str, float]:
    """Validate all, then apply all (a bad request changes nothing)."""
    if not ENABLED:
        raise NotFound("fault injection is off (start the server with AKIDB_FAULT_INJECTION=1)")
    if not isinstance(changes, dict) or not changes:
        raise BadRequest(f"send an object of failpoints: {sorted(_LIMITS)}")
    for name, value in changes.items():
        if name not in _LIMITS:
            raise BadRequest(f"unknown failpoint {name!r}; known: {sorted(_LIMITS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not 0 <= value <= _LIMITS[name]:
            raise BadRequest(f"failpoint {name} takes a number 0..{_LIMITS[name]:g}")
    with _lock:
        _values.update({k: float(v) for k, v in changes.items()})
    return current()


def delay(name: str) -> None:
    """Sleep for the failpoint's time; the last millisecond is spun, as a sleep that
    short overshoots by tens of microseconds (the A/B gate's power test injects
    fractions of a millisecond and must get what it asked for)."""
    ms = _values[name]
    if ms:
        deadline = time.perf_counter() + ms / 1000.0
        if ms > 1.0:
            time.sleep((ms - 1.0) / 1000.0)
        while time.perf_counter() < deadline:
            pass


def check_disk() -> None:
    if _values["disk_full"]:
        raise OSError(errno.ENOSPC, "No space left on device (injected failpoint disk_full)")


def lose_write() -> bool:
    """True while the broken mode that acknowledges writes without making them is on."""
    return bool(_values["lose_acked_writes"])


def hold_recovery(timeout_s: float = 120.0) -> None:
    """Wait for the test gate file (``AKIDB_TEST_RECOVERY_GATE``), if one is named."""
    gate = os.environ.get("AKIDB_TEST_RECOVERY_GATE")
    deadline = time.monotonic() + timeout_s
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
