"""``akidb serve``: the reference server's command (registered in ``akidb.commands``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from akidb.server.config import FSYNC_POLICIES, Settings, env_overrides
from akidb.server.embeddings.encoder import BACKENDS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for metadata, logs and snapshots (created if missing).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="REST port; 0 picks a free one (see DIR/server.json).")
@click.option("--grpc-port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="gRPC data-plane port; 0 picks a free one (see DIR/server.json).")
@click.option("--fsync", "fsync_policy", type=click.Choice(FSYNC_POLICIES), default=None,
              help="WAL fsync policy: always (default), batch (group commit) or none.")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help="HTTP request threads (default: 8 with waitress, 2 with granian).")
@click.option("--http-server", type=click.Choice(["waitress", "granian"]), default=None,
              help="REST front: waitress (default; sheds connections, times slow requests "
                   "out) or granian (Rust; more throughput, no request-body timeout).")
@click.option("--http-connection-limit", type=click.IntRange(1, 1_000_000), default=None,
              help="Open REST connections allowed; past it the newest idle one is shed "
                   "(default 4096, AKIDB_HTTP_CONNECTION_LIMIT).")
@click.option("--http-request-timeout", type=click.FloatRange(0.1, 3600), default=None,
              help="Seconds a request may take to arrive whole, headers and body (default "
                   "30, AKIDB_HTTP_REQUEST_TIMEOUT_S).")
@click.option("--http-idle-timeout", type=click.FloatRange(0.1, 86400), default=None,
              help="Seconds an idle keep-alive connection stays open (default 60, "
                   "AKIDB_HTTP_IDLE_TIMEOUT_S).")
@click.option("--repair", is_flag=True,
              help="On WAL corruption keep the valid prefix instead of refusing to start.")
@click.option("--rebuild-metadata", is_flag=True,
              help="metadata.db is lost: rebuild the catalogue and documents from the "
                   "collections' collection.json, snapshots and logs (see README).")
@click.option("--embedder", default=None, metavar="inproc|off|URL",
              help="Embedding model: in this process (default, loaded on first use), off, "
                   "or an `akidb embed serve` at grpc://HOST:PORT.")
@click.option("--embed-backend", type=click.Choice(BACKENDS), default=None,
              help="In-process encoder backend (default auto: MLX on Apple Silicon, numpy "
                   "elsewhere).")
@click.option("--object-store", metavar="s3://BUCKET/PREFIX",
              help="Ship snapshots, sealed WAL segments and metadata backups there (AWS_* "
                   "environment for credentials and region).")
@click.option("--restore-from", metavar="s3://BUCKET/PREFIX",
              help="Rebuild an empty --data-dir from this bucket before starting.")
@click.option("--s3-endpoint", metavar="URL",
              help="S3 endpoint (MinIO, moto); default AWS_ENDPOINT_URL or AWS itself.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def serve(data_dir: Path, host: str, port: int, grpc_port: int, fsync_policy: str | None,
          threads: int | None, http_server: str | None, http_connection_limit: int | None,
          http_request_timeout: float | None, http_idle_timeout: float | None, repair: bool,
          rebuild_metadata: bool, embedder: str | None, embed_backend: str | None,
          object_store: str | None, restore_from: str | None, s3_endpoint: str | None,
          log_level: str) -> None:
    """Run the reference server until SIGTERM or Ctrl-C."""
    from akidb.server import logs, tracing
    from akidb.server.app import AkiServer, DataDirLocked
    from akidb.server.errors import StartupError
    from akidb.server.storage.objectstore import ObjectStoreError
    from akidb.server.storage.restore import RestoreError

    try:
        overrides = env_overrides()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if embedder is not None:
        overrides["embedder"] = embedder
    if embed_backend is not None:
        overrides["embed_backend"] = embed_backend
    for key, value in (("object_store", object_store), ("restore_from", restore_from),
                       ("s3_endpoint", s3_endpoint)):
        if value is not None:
            overrides[key] = value
    for key in ("object_store", "restore_from"):
        if overrides.get(key):
            from akidb.server.storage.objectstore import S3Location

            try:
                S3Location.parse(str(overrides[key]))
            except ValueError as exc:
                raise click.UsageError(f"--{key.replace('_', '-')}: {exc}") from None
    if str(overrides.get("embed_backend", "")).startswith("mlx"):
        from akidb.server.embeddings import blas

        blas.maybe_reexec(["-m", "akidb", *sys.argv[1:]])
    logs.configure(log_level)
    try:
        tracing.configure()
    except tracing.TracingConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if fsync_policy is not None:
        overrides["fsync"] = fsync_policy
    if threads is not None:
        overrides["threads"] = threads
    for key, value in (("http_server", http_server),
                       ("http_connection_limit", http_connection_limit),
                       ("http_request_timeout_s", http_request_timeout),
                       ("http_idle_timeout_s", http_idle_timeout)):
        if value is not None:
            overrides[key] = value
    if repair:
        overrides["repair"] = True
    if rebuild_metadata:
        overrides["rebuild_metadata"] = True
    try:
        settings = Settings(data_dir=data_dir.resolve(), host=host, port=port,
                            grpc_port=grpc_port, **overrides)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    try:
        server = AkiServer(settings)
    except ValueError as exc:  # a bad --embedder
        raise click.UsageError(str(exc)) from None
    except (RestoreError, ObjectStoreError, DataDirLocked, StartupError, OSError) as exc:
        if isinstance(exc, RestoreError | ObjectStoreError) and settings.restore_from:
            what = "restore failed: "
        elif isinstance(exc, ObjectStoreError):
            what = "object store: "
        else:
            what = "" if isinstance(exc, DataDirLocked) else "cannot start: "
        click.echo(f"akidb serve: {what}{exc}", err=True)
        sys.exit(1)
    sys.exit(server.serve())

