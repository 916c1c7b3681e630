"""Progress for long CLI work: a tqdm bar on a terminal; on a pipe or CI log, plain
lines at every tenth of the work (no carriage-return frames to garble logs); nothing
with ``--no-progress``."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def close(self) -> None: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress:
    """``desc: 30% (3000/10000 vec, 1.2 s)`` lines, one per tenth and one at the end."""

    def __init__(self, total: int | None, desc: str, unit: str, initial: int = 0,
                 stream: TextIO | None = None) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = initial
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self._next_tenth = self._tenth() + 1
        self._closed = False

    def _tenth(self) -> int:
        return int(10 * self.done / self.total) if self.total else 0

    def _line(self) -> None:
        share = f"{100 * self.done / self.total:.0f}% " if self.total else ""
        of = f"/{self.total}" if self.total else ""
        self.stream.write(f"{self.desc}: {share}({self.done}{of} {self.unit}, "
                          f"{time.perf_counter() - self.started:.1f} s)\n")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.total and self._tenth() >= self._next_tenth and self.done < self.total:
            self._next_tenth = self._tenth() + 1
            self._line()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._line()


def progress(total: int | None, desc: str, unit: str, *, enabled: bool = True,
             initial: int = 0, stream: TextIO | None = None) -> Progress:
    """The right progress display for where stderr goes."""
    stream = stream or sys.stderr
    if not enabled:
        return _Silent()
    if stream.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=True,
                    dynamic_ncols=True, leave=False, file=stream)
    return LineProgress(total, desc, unit, initial, stream)
