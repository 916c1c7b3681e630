"""Writers and readers: .npy (streamed), JSONL, and ann-benchmarks HDF5.

The HDF5 layout is ann-benchmarks': datasets ``train`` (n × d), ``test`` (q × d),
``neighbors`` (q × k, int) and ``distances`` (q × k) with the attribute
``distance`` = ``angular`` | ``euclidean`` | ``dot``. Distances there are
lower-is-better (1 − cosine, L2, −inner product); our scores are higher-is-better,
and the conversion happens here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

METRIC_TO_ANN = {"cosine": "angular", "l2": "euclidean", "ip": "dot"}
ANN_TO_METRIC = {v: k for k, v in METRIC_TO_ANN.items()}


class DatasetError(ValueError):
    """A dataset file is missing, malformed, or has fields of the wrong shape."""


def write_npy_stream(path: Path, chunks: Iterable[np.ndarray], n: int, dim: int,
                     dtype: Any = np.float32) -> int:
    """Write ``n`` rows arriving in chunks to a .npy without holding them all."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, dim))
    row = 0
    for chunk in chunks:
        out[row : row + len(chunk)] = chunk
        row += len(chunk)
    if row != n:
        raise ValueError(f"expected {n} rows, got {row}")
    out.flush()
    del out
    return row


def read_npy(path: Path, mmap: bool = True) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npy file ({exc})") from None
    if arr.ndim != 2:
        raise DatasetError(f"{path}: expected a 2-D array of vectors, got shape {arr.shape}")
    return arr


def npy_ids(path: Path, rows: int) -> list[str] | None:
    """The ids beside a .npy (``FILE.ids.txt``, line i = row i, as ``akidb export``
    writes them), or None when there is no such file (ids are then row numbers)."""
    ids_path = path.with_name(path.name + ".ids.txt")
    if not ids_path.exists():
        return None
    try:
        ids = ids_path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{ids_path}: not a readable UTF-8 ids file ({exc})") from None
    if ids and ids[-1] == "":
        ids.pop()
    if len(ids) != rows:
        raise DatasetError(f"{ids_path}: {len(ids)} ids for the {rows} rows of {path.name}")
    if len(set(ids)) != len(ids) or "" in ids:
        raise DatasetError(f"{ids_path}: ids must be unique and non-empty")
    return ids


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with open(path, "wb") as fh:
        for row in rows:
            fh.write(orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            count += 1
    return count


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object per line")
            yield row


@dataclass
class AnnDataset:
    """An ann-benchmarks dataset: base vectors, queries and their exact neighbours."""

    train: np.ndarray
    test: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    metric: str  # cosine | l2 | ip

    @property
    def dimension(self) -> int:
        return int(self.train.shape[1])


def scores_to_distances(scores: np.ndarray, metric: str) -> np.ndarray:
    return (1.0 - scores) if metric == "cosine" else -scores


def write_hdf5(path: Path, train: np.ndarray, test: np.ndarray, neighbors: np.ndarray,
               scores: np.ndarray, metric: str) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["distance"] = METRIC_TO_ANN[metric]
        f.attrs["dimension"] = int(train.shape[1])
        f.attrs["point_type"] = "float"
        # track_times=False: no timestamps, so the same data gives the same bytes.
        f.create_dataset("train", data=np.asarray(train, np.float32), track_times=False)
        f.create_dataset("test", data=np.asarray(test, np.float32), track_times=False)
        f.create_dataset("neighbors", data=np.asarray(neighbors, np.int32), track_times=False)
        f.create_dataset("distances", track_times=False,
                         data=scores_to_distances(np.asarray(scores, np.float32), metric))


def read_hdf5(path: Path) -> AnnDataset:
    """Load and validate an ann-benchmarks file (ours or one a user downloaded)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        missing = [k for k in ("train", "test", "neighbors", "distances") if k not in f]
        if missing:
            raise DatasetError(f"{path}: missing dataset(s) {missing}; an ann-benchmarks file "
                               "has train, test, neighbors and distances")
        distance = f.attrs.get("distance")
        if isinstance(distance, bytes):
            distance = distance.decode()
        if distance not in ANN_TO_METRIC:
            raise DatasetError(f"{path}: attribute distance={distance!r} is not one of "
                               f"{sorted(ANN_TO_METRIC)}")
        arrays = {k: f[k][()] for k in ("train", "test", "neighbors", "distances")}
    train, test, nb, dist = (arrays[k] for k in ("train", "test", "neighbors", "distances"))
    for name, arr in arrays.items():
        if arr.ndim != 2:
            raise DatasetError(f"{path}: {name} must be 2-D, got shape {arr.shape}")
    if train.shape[1] != test.shape[1]:
        raise DatasetError(f"{path}: train has dimension {train.shape[1]} but test "
                           f"{test.shape[1]}")
    if nb.shape[0] != test.shape[0] or dist.shape != nb.shape:
        raise DatasetError(f"{path}: neighbors {nb.shape} and distances {dist.shape} must "
                           f"both have one row per test vector ({test.shape[0]})")
    if nb.size and (nb.max() >= train.shape[0] or nb.min() < -1):
        raise DatasetError(f"{path}: neighbors refer to rows outside train "
                           f"(0..{train.shape[0] - 1})")
    return AnnDataset(train.astype(np.float32, copy=False), test.astype(np.float32, copy=False),
                      nb.astype(np.int64), dist.astype(np.float32), ANN_TO_METRIC[distance])
