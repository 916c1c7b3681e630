"""A benchmark's data from wherever the user keeps it, in one shape.

``--dataset`` takes a fixture name (``akidb fixtures list``), an ann-benchmarks HDF5
file (train/test/neighbors/distances), a VectorDBBench custom-dataset folder
(``train.parquet`` with ``id``/``emb`` and optional scalar label columns,
``test.parquet`` with ``id``/``emb``, optional ``neighbors.parquet`` with
``id``/``neighbors_id``), or a ``.npy`` matrix (optional ``FILE.npy.ids.txt``
beside it, one id per row, as ``akidb export`` writes it; the last 10% of rows, at
most 1000, become the queries and leave the base set). Ground truth is computed
with datagen where the files have none. A file that cannot be used raises
``DatasetError`` naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from akidb.datagen.groundtruth import exact_knn
from akidb.datagen.io import DatasetError, npy_ids, read_hdf5

METRICS = ("cosine", "l2", "ip")
TRUTH_K = 100


@dataclass
class Dataset:
    name: str
    train: np.ndarray                 # (n, dim) float32
    test: np.ndarray                  # (q, dim) float32
    neighbors: np.ndarray             # (q, k) row indices into train, best first
    metric: str
    ids: list[str]                    # train row -> id
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # scalar columns

    @property
    def dimension(self) -> int:
        return int(self.train.shape[1])


def _truth(train: np.ndarray, test: np.ndarray, metric: str) -> np.ndarray:
    idx, _ = exact_knn(train, test, min(TRUTH_K, len(train)), metric)
    return idx


def _matrix(values: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{where}: vectors are not numeric ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DatasetError(f"{where}: expected a non-empty 2-D array of vectors, "
                           f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DatasetError(f"{where}: contains NaN or infinite values")
    return arr


def _parquet(path: Path, columns: list[str]) -> Any:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; has {table.column_names}")
    return table


def _vdbb(folder: Path, metric: str) -> Dataset:
    train_t = _parquet(folder / "train.parquet", ["id", "emb"])
    test_t = _parquet(folder / "test.parquet", ["id", "emb"])
    train = _matrix(train_t.column("emb").to_pylist(), str(folder / "train.parquet"))
    test = _matrix(test_t.column("emb").to_pylist(), str(folder / "test.parquet"))
    if train.shape[1] != test.shape[1]:
        raise DatasetError(f"{folder}: train has dimension {train.shape[1]}, test "
                           f"{test.shape[1]}")
    ids = [str(x) for x in train_t.column("id").to_pylist()]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{folder / 'train.parquet'}: ids are not unique")
    labels = {}
    for name in train_t.column_names:
        if name in ("id", "emb"):
            continue
        col = np.asarray(train_t.column(name).to_pylist())
        if col.dtype.kind in "iufbU":
            labels[name] = col
    nb_path = folder / "neighbors.parquet"
    if nb_path.exists():
        nb_t = _parquet(nb_path, ["id", "neighbors_id"])
        row = {v: i for i, v in enumerate(ids)}
        by_query = dict(zip((str(x) for x in nb_t.column("id").to_pylist()),
                            nb_t.column("neighbors_id").to_pylist(), strict=True))
        rows = []
        for qid in (str(x) for x in test_t.column("id").to_pylist()):
            if qid not in by_query:
                raise DatasetError(f"{nb_path}: no neighbours for test id {qid!r}")
            try:
                rows.append([row[str(n)] for n in by_query[qid]])
            except KeyError as exc:
                raise DatasetError(f"{nb_path}: neighbour id {exc.args[0]!r} of test id "
                                   f"{qid!r} is not in train.parquet") from None
        k = min(len(r) for r in rows) if rows else 0
        if k == 0:
            raise DatasetError(f"{nb_path}: empty neighbour lists")
        neighbors = np.asarray([r[:k] for r in rows], dtype=np.int64)
    else:
        neighbors = _truth(train, test, metric)
    return Dataset(folder.name, train, test, neighbors, metric, ids, labels)


def _npy(path: Path, metric: str) -> Dataset:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npy file ({exc})") from None
    data = _matrix(data, str(path))
    if len(data) < 20:
        raise DatasetError(f"{path}: {len(data)} rows; need at least 20 (10% become queries)")
    ids = npy_ids(path, len(data)) or [str(i) for i in range(len(data))]
    q = min(1000, len(data) // 10)
    train, test = data[:-q], data[-q:]
    return Dataset(path.stem, train, test, _truth(train, test, metric), metric, ids[:-q])


def generated(n: int, dim: int, queries: int, seed: int = 0, metric: str = "cosine"
              ) -> Dataset:
    """Seeded clustered vectors and queries (datagen) with their exact truth: what the
    benchmarks that take ``--vectors/--dim/--queries`` run on."""
    from akidb.datagen import vectors

    train = vectors.clustered(n, dim, seed=seed)
    test = vectors.queries(queries, dim, seed=seed)
    return Dataset(f"clustered-{n}x{dim}-seed{seed}", train, test,
                   _truth(train, test, metric), metric, [str(i) for i in range(n)])


def load(spec: str, metric: str | None = None) -> Dataset:
    """See the module docstring; ``metric`` is needed where the files do not say it
    (VectorDBBench folders, .npy; default cosine)."""
    if metric is not None and metric not in METRICS:
        raise DatasetError(f"metric must be one of {METRICS}, got {metric!r}")
    path = Path(spec).expanduser()
    if not path.exists():
        from akidb import fixtures

        try:
            item = fixtures.entry(spec)
        except fixtures.FixtureError:
            raise DatasetError(f"{spec}: no such file or folder, and not a fixture name "
                               "(akidb fixtures list)") from None
        if item["kind"] != "ann-hdf5":
            raise DatasetError(f"{spec}: fixture of kind {item['kind']}, not a vector "
                               "dataset")
        path = fixtures.path(spec)
    if path.is_dir():
        if not (path / "train.parquet").exists():
            raise DatasetError(f"{path}: a dataset folder needs train.parquet and "
                               "test.parquet (VectorDBBench's custom-dataset layout)")
        return _vdbb(path, metric or "cosine")
    if path.suffix in (".hdf5", ".h5"):
        ann = read_hdf5(path)
        if metric and metric != ann.metric:
            raise DatasetError(f"{path}: the file's metric is {ann.metric}, not {metric}")
        train = _matrix(ann.train, str(path))
        return Dataset(path.stem, train, _matrix(ann.test, str(path)),
                       np.asarray(ann.neighbors, dtype=np.int64), ann.metric,
                       [str(i) for i in range(len(train))])
    if path.suffix == ".npy":
        return _npy(path, metric or "cosine")
    raise DatasetError(f"{path}: unknown dataset format (want .hdf5, .npy, a fixture name "
                       "or a VectorDBBench folder)")
