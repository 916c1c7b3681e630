"""The options every benchmark shares, spelled and checked one way.

``parser(doc, vectors=20000, dim=384, out="reports/x", ...)`` gives an
``ArgumentParser`` with the common options a benchmark uses, at its defaults: sizes
(``--vectors``, ``--dim``, ``--queries``, ``--batch``), ``--dataset``, ``--k``, ``--ef``,
``--concurrency`` (a list), ``--seed``, ``--seconds`` (how long each timed phase
runs) and ``--out``; a benchmark adds its own options after. Bad values exit 2 with
the option named, before anything starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _whole(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole(text, 1)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def count_list(text: str) -> list[int]:
    """``1,2,4,8`` -> [1, 2, 4, 8] (each at least 1)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,4, got {text!r}"
                                         ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected counts of at least 1, got {text!r}")
    return values


def seed(text: str) -> int:
    return _whole(text, 0)


_COMMON: dict[str, tuple[Any, str]] = {
    "vectors": (positive_int, "base vectors"),
    "dim": (positive_int, "vector dimension"),
    "queries": (positive_int, "queries"),
    "batch": (positive_int, "rows per insert call"),
    "dataset": (str, "fixture name, ann-benchmarks .hdf5, VectorDBBench folder or .npy"),
    "k": (positive_int, "neighbours per search"),
    "ef": (positive_int, "search ef"),
    "concurrency": (count_list, "comma-separated client counts"),
    "seed": (seed, "seed of everything generated"),
    "seconds": (positive_float, "length of each timed phase, s"),
    "out": (Path, "folder for NAME.json|md|html"),
}


def parser(doc: str | None, **defaults: Any) -> argparse.ArgumentParser:
    """A parser holding the common options named in ``defaults`` (with those
    defaults; ``None`` for an optional one without)."""
    unknown = set(defaults) - set(_COMMON)
    if unknown:
        raise TypeError(f"not common options: {sorted(unknown)}")
    ap = argparse.ArgumentParser(description=(doc or "").strip().split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in defaults.items():
        kind, what = _COMMON[name]
        if name == "concurrency" and isinstance(default, str):
            default = count_list(default)
        if name == "out":
            default = Path(default)
        ap.add_argument(f"--{name}", type=kind, default=default,
                        help=f"{what} (default: {default_text(default)})")
    return ap


def default_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)
