"""Latency sampling shared by the benchmarks: warm up, then time each call."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def timed_calls(fn: Callable[[T], Any], items: Sequence[T], warmup: int = 0
                ) -> tuple[np.ndarray, list[Any]]:
    """(latencies in ms, results) of ``fn`` over ``items``, after ``warmup`` untimed calls."""
    for item in items[:warmup]:
        fn(item)
    samples, results = [], []
    for item in items:
        started = time.perf_counter()
        results.append(fn(item))
        samples.append(time.perf_counter() - started)
    return np.asarray(samples) * 1000.0, results


def percentile(samples_ms: np.ndarray, q: float) -> float:
    return float(np.percentile(samples_ms, q))
