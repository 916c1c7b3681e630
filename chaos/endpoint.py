"""A Toxiproxy API endpoint: the real ``toxiproxy-server`` when it is on PATH,
otherwise this project's proxy in-process. Both speak the same HTTP API, so
callers (toxiproxy-python, the harness) never know which one they got."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from typing import Any

from akidb.chaos.api import ChaosProxy
from akidb.harness.node import free_port


class ToxiproxyEndpoint:
    def __init__(self, prefer_binary: bool = True) -> None:
        self.binary = shutil.which("toxiproxy-server") if prefer_binary else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._inproc: ChaosProxy | None = None
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def kind(self) -> str:
        return "toxiproxy-server" if self.binary else "akidb-chaos"

    def start(self) -> ToxiproxyEndpoint:
        if self.binary:
            self.port = free_port()
            self._proc = subprocess.Popen([self.binary, "-host", self.host,
                                           "-port", str(self.port)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with socket.socket() as sock:
                    if sock.connect_ex((self.host, self.port)) == 0:
                        return self
                time.sleep(0.05)
            self.close()
            raise RuntimeError(f"{self.binary} did not listen on {self.url} within 10 s")
        self._inproc = ChaosProxy(self.host, 0).start()
        self.port = self._inproc.port
        return self

    def toxiproxy(self) -> Any:
        """A toxiproxy-python client bound to this endpoint."""
        from toxiproxy import Toxiproxy

        api = Toxiproxy()
        api.update_api_consumer(self.host, self.port)
        return api

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
        if self._inproc is not None:
            self._inproc.close()
            self._inproc = None

    def __enter__(self) -> ToxiproxyEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
