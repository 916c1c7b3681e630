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
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

import requests

from akidb.harness.process import (
    AllOf,
    FileExists,
    HttpStatus,
    ManagedProcess,
    ProcessError,
    Wait,
)
from akidb.server.client import Client
from akidb.server.config import PARENT_PID_ENV

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
_live: weakref.WeakSet[Node] = weakref.WeakSet()
_live_lock = threading.Lock()


class NodeError(ProcessError):
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
                 detach: bool = False, max_file_bytes: int | None = None,
                 cpus: set[int] | None = None) -> None:
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
        self.proc: ManagedProcess | None = None
        self.info: dict[str, Any] = {}
        self.detach = detach
        # RLIMIT_FSIZE for the server process: no file it writes may grow past this.
        self.max_file_bytes = max_file_bytes
        # CPU affinity for the server (benchmarks keep it off the load generator's cores)
        self.cpus = set(cpus) if cpus else None
        # toxiproxy-python proxies in front of the REST and gRPC ports, when the cluster
        # has a fault proxy; ``proxy_api`` is that Toxiproxy API's base URL.
        self.proxy: Any = None
        self.grpc_proxy: Any = None
        self.proxy_api: str | None = None

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
    def grpc_proxy_target(self) -> str:
        """The gRPC address through the fault proxy (``Cluster(fault_proxy=True)``)."""
        if self.grpc_proxy is None:
            raise NodeError(f"{self.name} has no gRPC fault proxy; use "
                            "Cluster(fault_proxy=True)")
        return self.grpc_proxy.listen

    def proxied_client(self, **kwargs: Any) -> Client:
        """An admin client whose REST and gRPC traffic both pass the fault proxies."""
        return Client(self.proxy_url, self.admin_key, self.grpc_proxy_target, **kwargs)

    def _follow_proxies(self) -> None:
        """A restarted node listens on new ports; point its proxies there, so the proxy
        addresses a test holds keep working across kill()/start()/restart()."""
        if self.proxy is None and self.grpc_proxy is None:
            return
        for proxy, address in ((self.proxy, self.rest_url.removeprefix("http://")),
                               (self.grpc_proxy, self.grpc_target)):
            if proxy is None or not address or proxy.upstream == address:
                continue
            answer = requests.post(f"{self.proxy_api}/proxies/{proxy.name}",
                                   json={"upstream": address}, timeout=10)
            if answer.status_code != 200:
                raise NodeError(f"could not point proxy {proxy.name} at {address}: "
                                f"{answer.status_code} {answer.text.strip()}")
            proxy.upstream = address

    @property
    def grpc_target(self) -> str | None:
        return self.info.get("grpc_target")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

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
        env = {**os.environ, **self.env}
        if not self.detach:
            env[PARENT_PID_ENV] = str(os.getpid())
        limit, cpus = self.max_file_bytes, self.cpus

        def set_limits() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            if cpus:
                os.sched_setaffinity(0, cpus)

        self.proc = ManagedProcess(self.name, self.command(), self.log_path, env=env,
                                   detach=self.detach,
                                   preexec=set_limits if limit is not None or cpus else None)
        try:
            self.proc.start()
        except ProcessError as exc:
            raise NodeError(str(exc)) from None
        if not self.detach:
            with _live_lock:
                _live.add(self)
        if wait:
            self.wait_ready()
        return self

    def _info_is_ours(self, text: str) -> bool:
        try:
            info = json.loads(text)
        except ValueError:
            return False
        if info.get("pid") != self.pid:
            return False
        self.info = info
        return True

    def readiness(self) -> Wait:
        """``server.json`` written by this very process, then ``/ready`` answering 200."""
        return AllOf([FileExists(self.data_dir / "server.json", self._info_is_ours),
                      HttpStatus(lambda: self.info["rest_url"] + "/ready")])

    def wait_ready(self, timeout: float | None = None) -> None:
        try:
            self.proc.wait(self.readiness(), timeout or self.ready_timeout,
                           hint=f"data dir {self.data_dir}")
        except ProcessError as exc:
            raise NodeError(str(exc)) from None
        self._follow_proxies()

    @property
    def process(self) -> Any:
        return self.proc.process if self.proc is not None else None

    @property
    def start_time(self) -> int | None:
        return self.proc.start_time if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.is_running()

    def stop(self, grace: float = STOP_GRACE_S) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
        return None if self.proc is None else self.proc.stop(grace)

    def kill(self) -> int | None:
        """kill -9: no flush, no goodbye; what was acknowledged must survive."""
        return None if self.proc is None else self.proc.kill()

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.signal(signal.SIGCONT)

    def restart(self, wait: bool = True, kill: bool = False) -> Node:
        self.kill() if kill else self.stop()
        return self.start(wait=wait)

    def close(self) -> None:
        """Stop the process and remove the data dir if the node created it."""
        if self.is_running():
            self.stop(grace=5.0)
        with _live_lock:
            _live.discard(self)
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        if self.proc is not None:
            return self.proc.log_tail(lines)
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Node:
        return self.start() if not self.is_running() else self

    def __exit__(self, *exc: object) -> None:
        self.close()
