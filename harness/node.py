"""One server process: start, wait until ready, stop / kill -9 / pause, restart on its data.

The process runs in its own session (process group) so that stopping it also
stops anything it spawned; every started node is registered for cleanup at
interpreter exit, so a failing or interrupted test leaves no process behind.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from akidb.server.client import Client
from akidb.server.config import PARENT_PID_ENV

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
_live: weakref.WeakSet[Node] = weakref.WeakSet()
_live_lock = threading.Lock()


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


class NodeError(RuntimeError):
    """A node failed to start or become ready; the message carries its log tail."""


def _cleanup_all() -> None:
    with _live_lock:
        nodes = list(_live)
    for node in nodes:
        node.close()


atexit.register(_cleanup_all)


class Node:
    def __init__(self, data_dir: str | Path | None = None, *, name: str = "node0",
                 fsync: str = "always", extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, ready_timeout: float = READY_TIMEOUT_S,
                 detach: bool = False, max_file_bytes: int | None = None) -> None:
        """``detach``: the process outlives this Python process (``akidb cluster up``);
        otherwise it is tied to it — stopped at exit, and it stops itself if we die."""
        self.name = name
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(
            tempfile.mkdtemp(prefix=f"akidb-{name}-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self.extra_args = list(extra_args or [])
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.log_path = self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self.detach = detach
        # RLIMIT_FSIZE for the server process: no file it writes may grow past this.
        self.max_file_bytes = max_file_bytes
        self.start_time: int | None = None
        self.proxy: Any = None  # a toxiproxy-python Proxy when the cluster has a fault proxy
        self._log_fh: Any = None

    # -- addresses ---------------------------------------------------------------------
    @property
    def rest_url(self) -> str:
        return self.info["rest_url"]

    @property
    def proxy_url(self) -> str:
        """The REST address through the fault proxy (``Cluster(fault_proxy=True)``)."""
        if self.proxy is None:
            raise NodeError(f"{self.name} has no fault proxy; use Cluster(fault_proxy=True)")
        return f"http://{self.proxy.listen}"

    @property
    def grpc_target(self) -> str | None:
        return self.info.get("grpc_target")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def admin_client(self, **kwargs: Any) -> Client:
        return Client(self.rest_url, self.admin_key, self.grpc_target, **kwargs)

    # -- lifecycle ---------------------------------------------------------------------
    def command(self) -> list[str]:
        return [sys.executable, "-m", "akidb", "serve", "--data-dir", str(self.data_dir),
                "--port", "0", "--grpc-port", "0", "--fsync", self.fsync, *self.extra_args]

    def start(self, wait: bool = True) -> Node:
        if self.is_running():
            raise NodeError(f"{self.name} is already running (pid {self.pid})")
        (self.data_dir / "server.json").unlink(missing_ok=True)
        self._log_fh = open(self.log_path, "ab")
        env = {**os.environ, **self.env}
        if not self.detach:
            env[PARENT_PID_ENV] = str(os.getpid())
        limit = self.max_file_bytes

        def set_limits() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        self.process = subprocess.Popen(self.command(), stdout=self._log_fh,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, start_new_session=True,
                                        preexec_fn=set_limits if limit is not None else None)
        self.start_time = process_start_time(self.process.pid)
        if not self.detach:
            with _live_lock:
                _live.add(self)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for ``server.json`` from this process, then ``/ready`` = 200."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        server_file = self.data_dir / "server.json"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise NodeError(f"{self.name} exited with code {code} before it was ready\n"
                                + self.log_tail())
            if server_file.exists():
                try:
                    info = json.loads(server_file.read_text())
                except ValueError:
                    info = {}
                if info.get("pid") == self.process.pid:
                    self.info = info
                    if self._probe_ready():
                        return
            time.sleep(0.02)
        raise NodeError(f"{self.name} not ready within {timeout or self.ready_timeout:.1f}s "
                        f"(data dir {self.data_dir}); last log lines:\n{self.log_tail()}")

    def _probe_ready(self) -> bool:
        client = Client(self.info["rest_url"], timeout=2.0)
        try:
            return client.is_ready()
        except Exception:  # noqa: BLE001 - not up yet
            return False
        finally:
            client.close()

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.process is None:
            return None
        self.resume()
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait()
        return self._reaped()

    def kill(self) -> int | None:
        """kill -9: no flush, no goodbye; what was acknowledged must survive."""
        if self.process is None:
            return None
        self._signal(signal.SIGKILL)
        self.process.wait()
        return self._reaped()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self, wait: bool = True, kill: bool = False) -> Node:
        self.kill() if kill else self.stop()
        return self.start(wait=wait)

    def _reaped(self) -> int | None:
        code = self.process.returncode if self.process else None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return code

    def close(self) -> None:
        """Stop the process and remove the data dir if the node created it."""
        if self.is_running():
            self.stop(grace=5.0)
        else:
            self._reaped()
        with _live_lock:
            _live.discard(self)
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Node:
        return self.start() if not self.is_running() else self

    def __exit__(self, *exc: object) -> None:
        self.close()
