"""One lifecycle for every child process the toolkit starts, with named waits.

A ``ManagedProcess`` runs in its own session (process group, so stopping it also
stops what it spawned), writes its output to a log file, and is registered for
cleanup at interpreter exit unless detached. Readiness is a named wait strategy
(as testcontainers has them): a file appearing, an HTTP status, an open port, a
log line, or all of several. A wait that times out, or a process that exits
first, raises ``ProcessError`` with the strategy, the log's last lines and a hint.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_live: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()
_live_lock = threading.Lock()


class ProcessError(RuntimeError):
    """A child failed to start, exited early, or was not ready in time (with its log)."""


def process_start_time(pid: int) -> int | None:
    """Kernel start time of a process (clock ticks since boot): with the pid, it tells
    "the process we started" apart from a later one that reused the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on ``host``, for helpers that cannot bind port 0 themselves
    (a tiny race remains: prefer ``--port 0`` where a program supports it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# -- wait strategies ---------------------------------------------------------------------
class Wait:
    """A readiness condition, checked repeatedly until it holds or the deadline passes."""

    name = "condition"

    def ready(self) -> bool:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


@dataclass
class FileExists(Wait):
    """``path`` exists and (if given) ``accept(text)`` approves its content."""

    path: Path
    accept: Callable[[str], bool] | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"file {self.path}"

    def ready(self) -> bool:
        if not self.path.exists():
            return False
        if self.accept is None:
            return True
        try:
            return self.accept(self.path.read_text())
        except OSError:
            return False


@dataclass
class HttpStatus(Wait):
    """A GET of ``url()`` answers ``status`` (the URL may be known only later)."""

    url: Callable[[], str]
    status: int = 200

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"HTTP {self.status}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url(), timeout=2) as response:
                return int(response.status) == self.status
        except Exception:  # noqa: BLE001 - not up yet (refused, 503, timeout)
            return False


@dataclass
class PortOpen(Wait):
    host: str
    port: Callable[[], int]

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"port {self.host}:{self.port()} open"

    def ready(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(1)
            return sock.connect_ex((self.host, self.port())) == 0


@dataclass
class LogLine(Wait):
    """A line of the process's log matches ``pattern``."""

    log: Path
    pattern: str

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"log line /{self.pattern}/"

    def ready(self) -> bool:
        try:
            return re.search(self.pattern, self.log.read_text(errors="replace")) is not None
        except OSError:
            return False


@dataclass
class AllOf(Wait):
    waits: Sequence[Wait] = field(default_factory=list)

    @property
    def name(self) -> str:  # type: ignore[override]
        return " and ".join(str(w) for w in self.waits)

    def ready(self) -> bool:
        return all(w.ready() for w in self.waits)


# -- the process -------------------------------------------------------------------------
class ManagedProcess:
    def __init__(self, name: str, command: Sequence[str], log_path: Path, *,
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 detach: bool = False, preexec: Callable[[], None] | None = None) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.detach = detach
        self.preexec = preexec
        self.process: subprocess.Popen[bytes] | None = None
        self.start_time: int | None = None
        self._log_fh: Any = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def start(self) -> ManagedProcess:
        if self.is_running():
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.command, stdout=self._log_fh, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd, start_new_session=True,
                preexec_fn=self.preexec)
        except OSError as exc:
            self._close_log()
            raise ProcessError(f"{self.name}: cannot run {self.command[0]}: {exc}") from None
        self.start_time = process_start_time(self.process.pid)
        if not self.detach:
            with _live_lock:
                _live.add(self)
        return self

    def wait(self, strategy: Wait, timeout: float, hint: str = "") -> None:
        """Until ``strategy`` holds; ``ProcessError`` (with the log tail) otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise ProcessError(f"{self.name} exited with code {self.returncode} before "
                                   f"it was ready ({strategy})\n{self.log_tail()}")
            if strategy.ready():
                return
            time.sleep(0.02)
        raise ProcessError(f"{self.name} not ready within {timeout:.1f}s: waited for "
                           f"{strategy}{'; ' + hint if hint else ''}; last log lines:\n"
                           f"{self.log_tail()}")

    def run(self, timeout: float) -> int | None:
        """Start, wait for it to finish; on timeout kill the group and return None."""
        self.start()
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        finally:
            self._reaped()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float) -> int | None:
        """SIGCONT (a paused process cannot stop), SIGTERM, SIGKILL after ``grace``."""
        if self.process is None:
            return None
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()
        return self._reaped()

    def kill(self) -> int | None:
        if self.process is None:
            return None
        self.signal(signal.SIGKILL)
        self.process.wait()
        return self._reaped()

    def _reaped(self) -> int | None:
        self._close_log()
        with _live_lock:
            _live.discard(self)
        return self.process.returncode if self.process else None

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def stop_group(pid: int, start_time: int | None, grace: float) -> bool:
    """Stop a detached process group we started earlier (``akidb cluster down``), if the
    pid still belongs to it (same kernel start time); False when it is already gone."""
    if start_time is not None and process_start_time(pid) != start_time:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if process_start_time(pid) is None:
            return True
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _cleanup_all() -> None:
    with _live_lock:
        processes = list(_live)
    for proc in processes:
        proc.stop(grace=5.0)


atexit.register(_cleanup_all)
