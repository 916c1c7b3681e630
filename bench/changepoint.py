"""Where a metric moved in a history of runs: a rolling-window threshold.

Each run's median is compared with the runs just before it (``window`` of them): it is a
change when its log distance from their mean exceeds both ``k`` of their standard
deviations and a relative ``floor`` (so a history of near-identical runs does not flag
a 1% wobble). After a shift, the following runs keep exceeding the old level until the
window has filled with the new one; only the first of such a streak is reported, as
the run where the metric moved (the commit to look at).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 5
K_SIGMA = 3.0
FLOOR = 0.05


@dataclass(frozen=True)
class Change:
    index: int        # the run where the metric moved
    ratio: float      # its value over the window's geometric mean
    worse: bool       # in the metric's bad direction


def detect(values: list[float], direction: str, window: int = WINDOW, k: float = K_SIGMA,
           floor: float = FLOOR) -> list[Change]:
    """Change points in ``values`` (oldest first); ``direction`` is "lower"/"higher"."""
    logs = np.log(np.maximum(np.asarray(values, dtype=float), 1e-300))
    changes: list[Change] = []
    streak = False
    for i in range(window, len(logs)):
        ref = logs[i - window:i]
        distance = logs[i] - ref.mean()
        limit = max(k * float(ref.std(ddof=1)), float(np.log1p(floor)))
        moved = abs(distance) > limit
        if moved and not streak:
            up = bool(distance > 0)
            changes.append(Change(i, float(np.exp(distance)),
                                  up if direction == "lower" else not up))
        streak = moved
    return changes
