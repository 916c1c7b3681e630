"""``akidb import FILE --collection T/D/C`` and ``akidb export --collection T/D/C``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from akidb.bulk.readers import FORMATS, Fields, detect_format, probe
from akidb.datagen.io import DatasetError
from akidb.server.client.client import parse_collection_path
from akidb.server.errors import AkiError, AlreadyExists, NotFound


def _target_options(f):  # noqa: ANN001, ANN202
    f = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="A local server's data dir (reads server.json and admin.key).")(f)
    f = click.option("--api-key", help="API key (or AKIDB_API_KEY).")(f)
    f = click.option("--url", help="Server REST URL (or AKIDB_URL).")(f)
    f = click.option("--grpc-target", help="HOST:PORT of the gRPC data plane.")(f)
    return click.option("--transport", type=click.Choice(["rest", "grpc"]), default="rest",
                        show_default=True)(f)


def _client(url: str | None, api_key: str | None, data_dir: Path | None,
            grpc_target: str | None, transport: str):  # noqa: ANN202
    from akidb.server.client.connect import TargetError, connect

    try:
        return connect(url, api_key, data_dir, grpc_target=grpc_target, transport=transport)
    except TargetError as exc:
        raise click.UsageError(str(exc)) from None


def _collection(value: str) -> str:
    try:
        parse_collection_path(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--collection", required=True, callback=lambda _c, _p, v: _collection(v),
              help="TENANT/DB/COLLECTION")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: from the suffix.")
@click.option("--create", is_flag=True, help="Create the collection (and tenant/db) if missing.")
@click.option("--dimension", type=click.IntRange(1), help="With --create (npy/HDF5: inferred).")
@click.option("--metric", type=click.Choice(["cosine", "l2", "ip"]), default="cosine",
              show_default=True)
@click.option("--embedding", type=click.Choice(["minilm"]),
              help="With --create: embed rows that have text and no vector.")
@click.option("--id-field", default="id", show_default=True)
@click.option("--vector-field", default="vector", show_default=True)
@click.option("--text-field", default="text", show_default=True)
@click.option("--payload-fields", help="Comma list of fields to keep as the payload "
              "(default: a 'payload' object column/key if present).")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 5000))
@click.option("--resume", is_flag=True, help="Continue after the last acknowledged batch.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Checkpoint file (default under .akidb-import/).")
@click.option("--skip-bad", is_flag=True, help="Write bad rows to a reject file and go on.")
@click.option("--reject-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Default: FILE.rejects.jsonl")
@click.option("--queries-out", type=click.Path(dir_okay=False, path_type=Path),
              help="HDF5 input: where to keep test/neighbors/distances (default "
                   "FILE.queries.hdf5).")
@click.option("--no-progress", is_flag=True)
@_target_options
def import_command(file: Path, collection: str, fmt: str | None, create: bool,
                   dimension: int | None, metric: str, embedding: str | None, id_field: str,
                   vector_field: str, text_field: str, payload_fields: str | None, batch: int,
                   resume: bool, checkpoint: Path | None, skip_bad: bool,
                   reject_file: Path | None, queries_out: Path | None, no_progress: bool,
                   transport: str, grpc_target: str | None, url: str | None,
                   api_key: str | None, data_dir: Path | None) -> None:
    """Import FILE (CSV, JSONL, Parquet, .npy, ann-benchmarks HDF5) into a collection."""
    from akidb.bulk.importer import BadRowError, run_import

    try:
        fmt = detect_format(file, fmt)
        fields = Fields(id_field, vector_field, text_field,
                        [f.strip() for f in payload_fields.split(",") if f.strip()]
                        if payload_fields else None)
        probe(file, fmt, fields)
        client = _client(url, api_key, data_dir, grpc_target, transport)
        if create:
            _create(client, collection, file, fmt, dimension, metric, embedding)
        summary = run_import(
            client, file, fmt, collection, fields=fields, batch=batch, skip_bad=skip_bad,
            reject_path=reject_file, checkpoint_path=checkpoint, resume=resume,
            progress=not no_progress,
            queries_out=(queries_out or file.with_name(file.stem + ".queries.hdf5"))
            if fmt == "hdf5" else None)
    except BadRowError as exc:
        click.echo(f"akidb import: {exc}", err=True)
        sys.exit(2)
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from None
    except NotFound as exc:
        raise click.UsageError(f"{exc.message} (pass --create --dimension N to create it)"
                               ) from None
    except AkiError as exc:
        click.echo(f"akidb import: the server refused a batch: {exc.message}", err=True)
        sys.exit(1)
    line = (f"imported {summary.imported} rows in {summary.seconds:.1f}s "
            f"({summary.rows_per_s:.0f} rows/s, {summary.batches} batches)")
    if summary.resumed_after:
        line += f"; resumed after {summary.resumed_after} rows done earlier"
    if skip_bad:
        line += f"; rejected {summary.rejected} (written to {summary.reject_file})"
    if summary.queries_file:
        line += f"; query set kept in {summary.queries_file}"
    if summary.repeated_ids:
        line += f"; {summary.repeated_ids} rows repeated an earlier id (the later row won)"
    click.echo(line)


def _create(client, collection: str, file: Path, fmt: str, dimension: int | None,  # noqa: ANN001
            metric: str, embedding: str | None) -> None:
    if dimension is None and embedding is None:
        dimension = _file_dimension(file, fmt)
    if dimension is None and embedding is None:
        raise click.UsageError("--create needs --dimension N (or --embedding minilm)")
    try:
        client.create_collection(collection, dimension=dimension, metric=metric,
                                 embedding=embedding, create_parents=True)
    except AlreadyExists:
        have = client.get_collection(collection)
        if dimension is not None and have["dimension"] != dimension:
            raise click.UsageError(f"{collection} exists with dimension {have['dimension']}, "
                                   f"not {dimension}") from None


def _file_dimension(file: Path, fmt: str) -> int | None:
    import numpy as np

    try:
        if fmt == "npy":
            shape = np.load(file, mmap_mode="r", allow_pickle=False).shape
            return int(shape[1]) if len(shape) == 2 else None
        if fmt == "hdf5":
            import h5py

            with h5py.File(file, "r") as f:
                return int(f["train"].shape[1])
    except Exception:  # noqa: BLE001 - the reader reports an unreadable file precisely
        return None
    return None


@click.command("export")
@click.option("--collection", required=True, callback=lambda _c, _p, v: _collection(v),
              help="TENANT/DB/COLLECTION")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet", "npy"]),
              default="jsonl", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--page", default=1000, show_default=True, type=click.IntRange(1, 5000))
@click.option("--no-progress", is_flag=True)
@click.option("--vectors-only", is_flag=True,
              help="npy: drop payloads and texts (otherwise a document with one stops it).")
@_target_options
def export_command(collection: str, fmt: str, out: Path, page: int, no_progress: bool,
                   vectors_only: bool, transport: str, grpc_target: str | None, url: str | None,
                   api_key: str | None, data_dir: Path | None) -> None:
    """Export a collection (id order) to JSONL, Parquet or .npy (+ FILE.ids.txt)."""
    from akidb.bulk.exporter import ExportError, run_export

    client = _client(url, api_key, data_dir, grpc_target, "rest")
    try:
        summary = run_export(client, collection, fmt, out, page=page, progress=not no_progress,
                             vectors_only=vectors_only)
    except NotFound as exc:
        raise click.UsageError(exc.message) from None
    except ExportError as exc:
        click.echo(f"akidb export: {exc}", err=True)
        sys.exit(1)
    click.echo(f"exported {summary.exported} documents in {summary.seconds:.1f}s to "
               f"{', '.join(summary.files)}")
