"""A Toxiproxy API endpoint: the real ``toxiproxy-server`` when it is on PATH,
otherwise this project's proxy in-process. Both speak the same HTTP API, so
callers (toxiproxy-python, the harness) never know which one they got."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from akidb.chaos.api import ChaosProxy
from akidb.harness.process import ManagedProcess, PortOpen, ProcessError, free_port


class ToxiproxyEndpoint:
    def __init__(self, prefer_binary: bool = True) -> None:
        self.binary = shutil.which("toxiproxy-server") if prefer_binary else None
        self._proc: ManagedProcess | None = None
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
            log = Path(tempfile.mkdtemp(prefix="toxiproxy-")) / "toxiproxy.log"
            self._proc = ManagedProcess("toxiproxy-server", [self.binary, "-host", self.host,
                                                             "-port", str(self.port)], log)
            self._proc.start()
            try:
                self._proc.wait(PortOpen(self.host, lambda: self.port), 10)
            except ProcessError:
                self.close()
                raise
            return self
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
            self._proc.stop(grace=10)
            self._proc = None
        if self._inproc is not None:
            self._inproc.close()
            self._inproc = None

    def __enter__(self) -> ToxiproxyEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
