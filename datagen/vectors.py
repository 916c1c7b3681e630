"""Seeded vector generators, streamed in chunks so 1M+ rows never sit in memory twice.

Each chunk is drawn from its own ``numpy.random.Generator`` seeded by
``(seed, chunk_index)``, so the output is identical whatever chunk size the
caller consumes and on any machine (PCG64 and the standard normal are stable).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK = 65536


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *stream])))


def clustered(n: int, dim: int, *, clusters: int = 64, spread: float = 1.0, seed: int = 0,
              normalize: bool = True, stream: int = 1) -> np.ndarray:
    """Gaussian-mixture vectors: ``clusters`` unit centres, each point centre + noise.

    ``spread`` is the expected noise norm relative to the (unit) centre, whatever the
    dimension: per-coordinate noise is ``spread / sqrt(dim)``. At 1.0, neighbours
    are mostly but not only within a cluster, like sentence embeddings.
    """
    parts = list(iter_clustered(n, dim, clusters=clusters, spread=spread, seed=seed,
                                normalize=normalize, stream=stream))
    return np.concatenate(parts) if parts else np.empty((0, dim), np.float32)


def iter_clustered(n: int, dim: int, *, clusters: int = 64, spread: float = 1.0, seed: int = 0,
                   normalize: bool = True, chunk: int = CHUNK, stream: int = 1
                   ) -> Iterator[np.ndarray]:
    """Chunks of the mixture; ``stream`` selects an independent sample of the same centres."""
    if n < 0 or dim < 1 or clusters < 1:
        raise ValueError(f"need n >= 0, dim >= 1, clusters >= 1; got {n}, {dim}, {clusters}")
    centres = _rng(seed, 0).standard_normal((clusters, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for index, start in enumerate(range(0, n, CHUNK)):
        rows = min(CHUNK, n - start)
        rng = _rng(seed, stream, index)
        assign = rng.integers(0, clusters, rows)
        noise = rng.standard_normal((rows, dim), dtype=np.float32)
        out = centres[assign] + (spread / np.sqrt(dim)).astype(np.float32) * noise
        if normalize:
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        yield from (out[i : i + chunk] for i in range(0, rows, chunk))


def queries(n: int, dim: int, *, clusters: int = 64, spread: float = 1.0, seed: int = 0,
            normalize: bool = True) -> np.ndarray:
    """Query vectors from the same mixture as the base set, from an independent stream."""
    return clustered(n, dim, clusters=clusters, spread=spread, seed=seed, normalize=normalize,
                     stream=2)
