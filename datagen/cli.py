"""``akidb datagen``: thin click commands over the datagen library, with progress bars."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import click
import numpy as np

from akidb.datagen import io
from akidb.datagen import tenants as tenants_mod
from akidb.datagen import vectors as vectors_mod
from akidb.datagen import workload as workload_mod
from akidb.datagen.documents import iter_documents
from akidb.datagen.groundtruth import exact_knn
from akidb.progress import Progress, progress

_SEED = click.option("--seed", default=0, show_default=True, help="Random seed.")
_NO_PROGRESS = click.option("--no-progress", is_flag=True,
                            help="No progress output (on a pipe it is plain lines anyway).")


def _summary(what: str, path: Path, started: float) -> None:
    size = path.stat().st_size
    click.echo(f"wrote {what} to {path} ({size / 2**20:.1f} MiB) in "
               f"{time.perf_counter() - started:.1f}s")


def _counted(chunks: Iterable[np.ndarray], bar: Progress) -> Iterator[np.ndarray]:
    """Count chunks into the bar as they pass (update() returns a bool, not the chunk)."""
    for chunk in chunks:
        bar.update(len(chunk))
        yield chunk


@click.group()
def datagen() -> None:
    """Generate deterministic vectors, documents, tenants, workloads and ground truth."""


def _parse_mix(mix: str) -> dict[str, float]:
    kinds = ("vector", "filtered", "hybrid")
    example = "e.g. --mix 0.6,0.3,0.1"
    parts = [p.strip() for p in mix.split(",")]
    if len(parts) != len(kinds):
        raise click.UsageError(f"--mix takes {len(kinds)} shares, {','.join(kinds)} "
                               f"({example}); got {len(parts)}: {mix!r}")
    try:
        shares = [float(p) for p in parts]
    except ValueError:
        raise click.UsageError(f"--mix shares must be numbers ({example}); got {mix!r}"
                               ) from None
    if any(not 0 <= x <= 1 for x in shares) or abs(sum(shares) - 1) > 1e-6:
        raise click.UsageError(f"--mix shares must each be in [0, 1] and sum to 1 "
                               f"({example}); got {mix!r} (sum {sum(shares):g})")
    return dict(zip(kinds, shares, strict=True))


@datagen.command()
@click.option("--n", "n", required=True, type=click.IntRange(1))
@click.option("--dim", required=True, type=click.IntRange(1, 65536))
@click.option("--kind", type=click.Choice(sorted(vectors_mod.KINDS)), default="clustered",
              show_default=True)
@click.option("--clusters", default=64, show_default=True, type=click.IntRange(1))
@click.option("--spread", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--normalize/--no-normalize", default=True, show_default=True)
@click.option("--queries", "as_queries", is_flag=True,
              help="Draw a query set (an independent sample of the same distribution).")
@_SEED
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .npy file.")
@_NO_PROGRESS
def vectors(n: int, dim: int, kind: str, clusters: int, spread: float, normalize: bool,
            as_queries: bool, seed: int, out: Path, no_progress: bool) -> None:
    """Seeded vectors, streamed to a .npy file in chunks."""
    if out.suffix != ".npy":
        raise click.UsageError(f"--out must end in .npy, got {out}")
    started = time.perf_counter()
    stream = 2 if as_queries else 1
    if kind == "clustered":
        chunks = vectors_mod.iter_clustered(n, dim, clusters=clusters, spread=spread,
                                            seed=seed, normalize=normalize, stream=stream)
    else:
        chunks = vectors_mod.iter_uniform(n, dim, seed=seed, normalize=normalize, stream=stream)
    bar = progress(n, "vectors", "vec", enabled=not no_progress)
    try:
        io.write_npy_stream(out, _counted(chunks, bar), n, dim)
    finally:
        bar.close()
    _summary(f"{n} x {dim} {kind} vectors", out, started)


@datagen.command()
@click.option("--n", "n", required=True, type=click.IntRange(1))
@_SEED
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output .jsonl file.")
@_NO_PROGRESS
def docs(n: int, seed: int, out: Path, no_progress: bool) -> None:
    """Documents with Faker text and payloads of known filter selectivity (JSONL)."""
    started = time.perf_counter()
    bar = progress(n, "docs", "doc", enabled=not no_progress)

    def counted() -> Iterator[dict]:
        for row in iter_documents(n, seed=seed):
            bar.update(1)
            yield row

    try:
        io.write_jsonl(out, counted())
    finally:
        bar.close()
    _summary(f"{n} documents", out, started)


@datagen.command()
@click.option("--n", "n", required=True, type=click.IntRange(1))
@click.option("--total-documents", default=100_000, show_default=True, type=click.IntRange(1))
@click.option("--zipf", "s", default=1.1, show_default=True, type=click.FloatRange(0.01))
@click.option("--users", default=4, show_default=True, type=click.IntRange(1))
@_SEED
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def tenants(n: int, total_documents: int, s: float, users: int, seed: int, out: Path) -> None:
    """Tenants with Zipf-skewed sizes, and users with roles (JSONL)."""
    if total_documents < n:
        raise click.UsageError(f"--total-documents ({total_documents}) must be >= --n ({n})")
    started = time.perf_counter()
    rows = tenants_mod.tenants(n, total_documents=total_documents, users_per_tenant=users,
                               s=s, seed=seed)
    io.write_jsonl(out, rows)
    _summary(f"{n} tenants (largest {rows[0]['documents']}, smallest {rows[-1]['documents']})",
             out, started)


@datagen.command()
@click.option("--n", "n", required=True, type=click.IntRange(1))
@click.option("--query-vectors", required=True, type=click.IntRange(1),
              help="Size of the query-vector set the operations index into.")
@click.option("--mix", default="0.6,0.3,0.1", show_default=True,
              help="vector,filtered,hybrid shares.")
@click.option("--selectivity", "selectivities", multiple=True, type=float,
              default=(0.5, 0.1, 0.01), show_default=True)
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000))
@_SEED
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def workload(n: int, query_vectors: int, mix: str, selectivities: tuple[float, ...], k: int,
             seed: int, out: Path) -> None:
    """A query workload in the load-test mix (JSONL)."""
    mix_map = _parse_mix(mix)
    try:
        ops = workload_mod.workload(n, n_query_vectors=query_vectors, mix=mix_map,
                                    selectivities=selectivities, k=k, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    started = time.perf_counter()
    io.write_jsonl(out, ops)
    counts = {kind: sum(op["kind"] == kind for op in ops) for kind in mix_map}
    _summary(f"{n} operations {counts}", out, started)


@datagen.command()
@click.option("--base", required=True, type=click.Path(exists=True, dir_okay=False,
                                                       path_type=Path))
@click.option("--queries", required=True, type=click.Path(exists=True, dir_okay=False,
                                                          path_type=Path))
@click.option("--k", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--metric", type=click.Choice(["cosine", "l2", "ip"]), default="cosine",
              show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help=".npy (neighbour indices) or .hdf5 (full ann-benchmarks file)")
@_NO_PROGRESS
def groundtruth(base: Path, queries: Path, k: int, metric: str, out: Path,
                no_progress: bool) -> None:
    """Exact k nearest neighbours of each query (blocked brute force)."""
    try:
        base_arr, query_arr = io.read_npy(base), io.read_npy(queries)
    except io.DatasetError as exc:
        raise click.UsageError(str(exc)) from None
    if base_arr.shape[1] != query_arr.shape[1]:
        raise click.UsageError(f"base has dimension {base_arr.shape[1]}, queries "
                               f"{query_arr.shape[1]}")
    started = time.perf_counter()
    bar = progress(len(query_arr), "ground truth", "query", enabled=not no_progress)
    try:
        idx, scores = exact_knn(base_arr, query_arr, k, metric, on_block=bar.update)
    finally:
        bar.close()
    if out.suffix in (".hdf5", ".h5"):
        io.write_hdf5(out, base_arr, query_arr, idx, scores, metric)
    elif out.suffix == ".npy":
        np.save(out, idx)
    else:
        raise click.UsageError(f"--out must end in .npy or .hdf5, got {out}")
    _summary(f"top-{k} {metric} neighbours of {len(query_arr)} queries", out, started)
