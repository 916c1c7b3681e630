"""Composition root: builds engine, service, auth and REST app, and runs the process.

Start-up order matters to users: the HTTP port opens first (``/health`` answers,
``/ready`` is 503) while recovery replays the logs in the background; only when
recovery is done does ``/ready`` turn 200 and ``DIR/server.json`` appear, so a
harness that waits for that file never talks to a half-recovered server.
"""

from __future__ import annotations

import fcntl
import gc
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from akidb.server import __version__, faults, tracing
from akidb.server.api.grpc import create_grpc_server
from akidb.server.api.http_server import HttpServer, raise_open_file_limit
from akidb.server.api.rest import create_app
from akidb.server.auth.keys import KeyAuthenticator, load_or_create_admin_key
from akidb.server.config import PARENT_PID_ENV, Settings, http_threads
from akidb.server.embeddings.embedder import create_embedder
from akidb.server.engine import Engine
from akidb.server.metrics import Metrics
from akidb.server.service import Service
from akidb.server.storage.objectstore import ObjectStore, S3Location
from akidb.server.storage.restore import restore
from akidb.server.storage.shipper import Shipper

log = logging.getLogger("akidb.server")
SERVER_FILE = "server.json"
LOCK_FILE = "LOCK"


# Collector thresholds once serving: a young collection per 50k net allocations
# instead of per 700. A 100-query batch search allocates ~3000 tracked objects (hits,
# result dicts, the parsed body), and with the default thresholds collections cost
# ~0.5 ms of its ~12 ms; objects that die by reference count before a collection are
# never walked at all.
GC_THRESHOLDS = (50_000, 20, 100)


class DataDirLocked(Exception):
    pass


class AkiServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_data_dir(settings.data_dir)
        (settings.data_dir / SERVER_FILE).unlink(missing_ok=True)
        if settings.restore_from:
            self._restore(settings)
        self.admin_key = load_or_create_admin_key(settings.data_dir)
        self.engine = Engine(settings)
        self.shipper: Shipper | None = None
        if settings.object_store:
            store = ObjectStore(S3Location.parse(settings.object_store),
                                settings.s3_endpoint or None)
            self.shipper = Shipper(settings.data_dir, store, self.engine.store.backup,
                                   settings.ship_max_backoff_s).start()
            self.engine.shipper = self.shipper
        self.auth = KeyAuthenticator(self.admin_key, self.engine.store)
        self.embedder = create_embedder(
            settings.embedder, settings.embed_backend, settings.embed_timeout_s,
            settings.embed_breaker_failures, settings.embed_breaker_reset_s)
        self.service = Service(self.engine, settings.limits, self.auth, self.embedder)
        self.metrics = Metrics(self.engine, self.embedder)
        self.metrics.watch_authz(self.service.guard.decider.counts)
        self.app = create_app(self.service, self.auth, self.metrics,
                              settings.limits.max_body_bytes, settings.metrics_token)
        files = raise_open_file_limit(settings.http_connection_limit + 512)
        limit = min(settings.http_connection_limit, max(64, files - 256))
        if limit < settings.http_connection_limit:
            log.warning("open-file limit %d allows only %d HTTP connections (asked for %d)",
                        files, limit, settings.http_connection_limit)
        self.http: Any
        if settings.http_server == "granian":
            from akidb.server.api.granian_front import GranianFront

            self.http = GranianFront(self.app, host=settings.host, port=settings.port,
                                     threads=http_threads(settings), connection_limit=limit,
                                     request_timeout_s=settings.http_request_timeout_s)
        else:
            self.http = HttpServer(
                self.app, host=settings.host, port=settings.port, threads=http_threads(settings),
                max_body_bytes=settings.limits.max_body_bytes + (1 << 20),
                connection_limit=limit, idle_timeout_s=settings.http_idle_timeout_s,
                request_timeout_s=settings.http_request_timeout_s)
        self.metrics.watch_http(self.http.stats)
        self.grpc, self.grpc_port, self.grpc_health = create_grpc_server(
            self.service, self.auth, self.metrics, settings)
        self.fatal: BaseException | None = None
        self._stopping = threading.Event()

    def _restore(self, settings: Settings) -> None:
        store = ObjectStore(S3Location.parse(settings.restore_from), settings.s3_endpoint or None)
        report = restore(settings.data_dir, store)
        log.info("restored from %s in %.2fs: %d objects, %d bytes, metadata %s",
                 store.location, report.seconds, report.objects, report.bytes,
                 report.metadata_key, extra={"collections": report.collections})

    @property
    def rest_url(self) -> str:
        return f"http://{self.settings.host}:{self.http.effective_port}"

    @property
    def grpc_target(self) -> str:
        return f"{self.settings.host}:{self.grpc_port}"

    def _recover(self) -> None:
        try:
            faults.hold_recovery()
            self.engine.recover()
            # What start-up built (imported modules, recovered state) lives as long as the
            # process: frozen out of the collector, a full collection no longer walks it.
            # Measured on a 50k-document server under search load: gen-2 pauses of up to
            # 48 ms (279 ms in 20 s) became at most 5 ms (32 ms in all).
            gc.collect()
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            self.grpc_health.serving()
            self._write_server_file()
            log.info("ready", extra={"rest_url": self.rest_url,
                                     "recovery_seconds": round(self.engine.recovery_seconds or 0,
                                                               3)})
        except BaseException as exc:
            self.fatal = exc
            log.error("recovery failed: %s", exc)
            os.kill(os.getpid(), signal.SIGTERM)

    def _write_server_file(self) -> None:
        info: dict[str, Any] = {"rest_url": self.rest_url, "grpc_target": self.grpc_target,
                                "pid": os.getpid(), "version": __version__,
                                "data_dir": str(self.settings.data_dir),
                                "started_at": time.time()}
        path = self.settings.data_dir / SERVER_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=1))
        os.replace(tmp, path)

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""

        def _stop(signum: int, _frame: Any) -> None:
            if not self._stopping.is_set():
                self._stopping.set()
                raise SystemExit(0)

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        # Past a file-size limit (RLIMIT_FSIZE: a full disk, as chaos tests simulate it)
        # a write should fail with EFBIG and be answered 503, not kill the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # Everything after the handlers are installed runs inside the try: a SIGTERM that
        # arrives early (a recovery that fails at once) must still close and exit 1.
        try:
            self.grpc.start()
            log.info("listening", extra={"rest_url": self.rest_url,
                                         "grpc_target": self.grpc_target,
                                         "fsync": self.settings.fsync,
                                         "embedder": self.embedder.status(),
                                         "data_dir": str(self.settings.data_dir)})
            threading.Thread(target=self._recover, name="recovery", daemon=True).start()
            parent = os.environ.get(PARENT_PID_ENV)
            if parent:
                threading.Thread(target=self._exit_with_parent, args=(int(parent),),
                                 name="parent-watch", daemon=True).start()
            self.http.run()
        except SystemExit:
            pass
        finally:
            self.close()
        if self.fatal is not None:
            return 1
        return 0

    def _exit_with_parent(self, parent_pid: int) -> None:
        """Test harnesses set AKIDB_PARENT_PID: if that process dies without stopping us
        (kill -9 of a test runner), we stop ourselves rather than linger as an orphan."""
        while not self._stopping.wait(0.5):
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone; shutting down", parent_pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def close(self) -> None:
        (self.settings.data_dir / SERVER_FILE).unlink(missing_ok=True)
        try:
            self.grpc_health.shutting_down()
            self.grpc.stop(grace=2).wait(5)
            self.http.close()
        except Exception:
            log.exception("closing HTTP server")
        if self.shipper is not None:
            self.shipper.close()
        self.engine.close()
        self.embedder.close()
        tracing.shutdown()  # flush buffered spans (OTLP batches) before exiting
        os.close(self._lock_fd)
        log.info("stopped")


def _lock_data_dir(data_dir: Path) -> int:
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirLocked(f"{data_dir} is in use by another akidb server") from None
    return fd
