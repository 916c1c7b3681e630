"""``Samples``: one benchmark figure's raw measurements, and everything read from them.

Every benchmark keeps its raw samples (latencies in ms, rates, ...) in one of these
and reads its summary, percentiles and the gate's metric record from it, so a P99 is
computed the same way everywhere and the gate always gets every sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Samples:
    values: np.ndarray
    unit: str = "ms"
    direction: str = "lower"   # which way is better, for the gate

    @classmethod
    def of(cls, values: Iterable[float], unit: str = "ms", direction: str = "lower"
           ) -> Samples:
        return cls(np.asarray(list(values), dtype=np.float64), unit, direction)

    @classmethod
    def timed(cls, fn: Callable[[T], Any], items: Sequence[T], warmup: int = 0
              ) -> tuple[Samples, list[Any]]:
        """Latencies (ms) of ``fn`` over ``items`` after ``warmup`` untimed calls, and
        its results."""
        for item in items[:warmup]:
            fn(item)
        took, results = [], []
        for item in items:
            started = time.perf_counter()
            results.append(fn(item))
            took.append(time.perf_counter() - started)
        return cls(np.asarray(took, dtype=np.float64) * 1000.0), results

    def __len__(self) -> int:
        return len(self.values)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.values, q)) if len(self.values) else float("nan")

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p95(self) -> float:
        return self.percentile(95)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if len(self.values) else float("nan")

    def summary(self) -> dict[str, float]:
        """count, mean, p50, p95, p99, max (NaN figures when there are no samples)."""
        top = float(self.values.max()) if len(self.values) else float("nan")
        return {"count": len(self.values), "mean": self.mean, "p50": self.p50,
                "p95": self.p95, "p99": self.p99, "max": top}

    def metric(self) -> dict[str, Any]:
        """The gate's record: ``{"unit", "direction", "samples"}``."""
        return {"unit": self.unit, "direction": self.direction,
                "samples": self.values.tolist()}
