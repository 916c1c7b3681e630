"""Deterministic data: vectors, documents and exact ground truth, all seeded."""

import os


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the host's count), which
    sizes the generators' and the ground truth's thread pools."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
