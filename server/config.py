"""Server settings: defaults, overridden by ``AKIDB_*`` environment variables, then flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

FSYNC_POLICIES = ("always", "batch", "none")
# Set by test harnesses: the server stops itself when this process is gone.
PARENT_PID_ENV = "AKIDB_PARENT_PID"


@dataclass(frozen=True)
class Limits:
    """Input limits; every entry point rejects larger input before touching state."""

    max_body_bytes: int = 64 * 1024 * 1024
    max_batch: int = 5000
    max_dimension: int = 4096
    max_k: int = 1000
    max_id_length: int = 256
    max_text_bytes: int = 64 * 1024
    max_payload_bytes: int = 64 * 1024
    max_embed_texts: int = 1024
    max_batch_searches: int = 1024


@dataclass(frozen=True)
class AuthzSettings:
    """Authorization decisions (see server/auth/decisions.py): the deadline for one
    Cedar evaluation, and the cache that answers within ``cache_refresh_s`` of a
    decision and, past the deadline, within ``cache_ttl_s``."""

    deadline_ms: float = 250.0
    cache_size: int = 10_000
    cache_refresh_s: float = 5.0
    cache_ttl_s: float = 60.0


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int = 0
    grpc_threads: int = 8
    fsync: str = "always"
    # Request threads of the REST front; 0 picks the front's own default (below).
    threads: int = 0
    # REST connection limits (see server/api/http_server.py): past the limit the newest
    # idle connection is shed; a request must arrive whole within the request timeout;
    # keep-alive connections with nothing in flight close after the idle timeout.
    # "waitress" (default: sheds connections, times slow requests out) or "granian" (a Rust
    # front: more throughput under concurrency, but no body timeout; see granian_front.py).
    http_server: str = "waitress"
    http_connection_limit: int = 4096
    http_request_timeout_s: float = 30.0
    http_idle_timeout_s: float = 60.0
    repair: bool = False
    # Rebuild a lost metadata.db from the collections' manifests, snapshots and logs.
    rebuild_metadata: bool = False
    # hnswlib build threads for one upsert batch; searches are single-threaded each.
    index_threads: int = 2
    # The largest graph-insert chunk while no search comes (server/index/hnsw.py): bulk
    # loads run faster with larger chunks, and the first search after a quiet second may
    # wait for one; 64 keeps every wait to one small chunk. The default is the index's
    # INSERT_CHUNK_MAX (not imported: this module stays free of hnswlib); a test checks
    # that a collection opened with default settings reaches that cap.
    index_insert_chunk_max: int = 512
    # WAL segments are sealed and a new one started past this size.
    wal_segment_bytes: int = 64 * 1024 * 1024
    # batch policy: how long the group-commit leader waits for more writers.
    group_commit_window_s: float = 0.002
    # Automatic snapshots bound recovery time: a collection is snapshotted once its log
    # exceeds max(snapshot_wal_bytes, snapshot_wal_ratio x its index size). 0 disables.
    snapshot_wal_bytes: int = 32 * 1024 * 1024
    snapshot_wal_ratio: float = 0.25
    snapshot_check_s: float = 1.0
    # ... and once a collection without any snapshot holds this many vectors (its
    # restart would otherwise rebuild the graph from scratch). 0 disables.
    snapshot_min_vectors: int = 50_000
    # Embeddings: "inproc" (loaded on first use), "off", or grpc://HOST:PORT of an
    # `akidb embed serve` process, called with a timeout behind a circuit breaker.
    embedder: str = "inproc"
    embed_backend: str = "auto"
    embed_timeout_s: float = 10.0
    embed_breaker_failures: int = 3
    embed_breaker_reset_s: float = 5.0
    # Object storage: ship snapshots, sealed WAL segments and metadata backups to
    # s3://BUCKET/PREFIX; restore_from rebuilds an empty data dir from such a bucket.
    object_store: str = ""
    restore_from: str = ""
    s3_endpoint: str = ""
    ship_max_backoff_s: float = 30.0
    # /metrics: per-collection series (they name tenants) only for this bearer token or
    # the admin key; when set, anonymous scrapes are refused.
    metrics_token: str = ""
    authz_deadline_ms: float = 250.0
    authz_cache_size: int = 10_000
    authz_cache_refresh_s: float = 5.0
    authz_cache_ttl_s: float = 60.0
    limits: Limits = field(default_factory=Limits)

    @property
    def authz(self) -> AuthzSettings:
        return AuthzSettings(self.authz_deadline_ms, self.authz_cache_size,
                             self.authz_cache_refresh_s, self.authz_cache_ttl_s)

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, got {self.fsync!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 1 (or 0 for the front's default), got "
                             f"{self.threads}")
        if self.http_server not in ("waitress", "granian"):
            raise ValueError(f"http_server must be waitress or granian, got "
                             f"{self.http_server!r}")
        if not 1 <= self.index_insert_chunk_max <= 100_000:
            raise ValueError(f"index_insert_chunk_max must be 1..100000, got "
                             f"{self.index_insert_chunk_max}")
        if self.http_connection_limit < 1:
            raise ValueError(f"http_connection_limit must be >= 1, got "
                             f"{self.http_connection_limit}")
        if not (self.authz_deadline_ms > 0 and self.authz_cache_size >= 0
                and 0 <= self.authz_cache_refresh_s <= self.authz_cache_ttl_s):
            raise ValueError("authz settings need deadline_ms > 0, cache_size >= 0 and "
                             "0 <= cache_refresh_s <= cache_ttl_s")
        for name in ("http_request_timeout_s", "http_idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


# Request threads per REST front when ``threads`` is 0. granian runs the app on its
# blocking threads and every one of them contends for the GIL: with 8, the hand-offs
# stretch the tail (NOTES, fifth pass: P99 at 16 connections 25-29 ms with 8 threads,
# 14-20 ms with 2-3, the same or more QPS; the 100k hybrid mix held 300 QPS with 2-4
# threads and not with 8). Once the data plane skipped Flask's per-request machinery
# (eighth pass), 2 beat 3 and 4 at 4, 16 and 64 connections in two rounds (2846-3106
# QPS at 16 against 2363-2463) and held the mix's 300 QPS at P99 25 ms against 39.
# waitress with 3 collapsed at 64 connections (367 QPS against 1255 with 8), so it
# keeps 8.
DEFAULT_THREADS = {"waitress": 8, "granian": 2}


def http_threads(settings: Settings) -> int:
    """The REST front's request threads: the setting, or the front's default."""
    return settings.threads or DEFAULT_THREADS[settings.http_server]


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, object]:
    """Read ``AKIDB_FSYNC``, ``AKIDB_THREADS``, ... for the plain scalar settings."""
    environ = dict(os.environ if environ is None else environ)
    out: dict[str, object] = {}
    for f in fields(Settings):
        if f.name in ("data_dir", "limits", "host", "port", "grpc_port"):
            continue
        raw = environ.get(f"AKIDB_{f.name.upper()}")
        if raw is None:
            continue
        kind = type(getattr(Settings, f.name, "")) if hasattr(Settings, f.name) else str
        try:
            if kind is bool:
                out[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                out[f.name] = kind(raw)
        except ValueError as exc:
            raise ValueError(f"AKIDB_{f.name.upper()}={raw!r}: {exc}") from None
    return out
