"""Which BLAS MLX's matmuls run on, and how to hand it a fast one on Linux.

MLX's Linux CPU wheel links the reference netlib BLAS (~4-6 GFLOP/s here
against ~180 GFLOP/s for OpenBLAS, MEASURED.md). Its ``cblas_sgemm`` is looked
up through the dynamic linker, so a system OpenBLAS named in ``LD_PRELOAD``
takes its place. That has to happen before the process starts: ``akidb serve``
and ``akidb embed`` re-execute themselves once with the variable set when such
a library exists (``maybe_reexec``). Everything reports what it found
(``describe``), so throughput figures always say which BLAS ran.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from pathlib import Path

BLAS_LIB_ENV = "AKIDB_BLAS_LIB"  # an explicit library to preload; "none" disables
_REEXEC_GUARD = "AKIDB_BLAS_REEXEC"


def candidates() -> list[Path]:
    """Optimized BLAS libraries exporting the CBLAS symbols, best first."""
    explicit = os.environ.get(BLAS_LIB_ENV)
    if explicit:
        return [] if explicit.lower() == "none" else [Path(explicit)]
    arch = f"{platform.machine()}-linux-gnu"
    roots = [Path("/usr/lib") / arch, Path("/usr/lib64"), Path("/usr/lib")]
    names = ["openblas-pthread/libblas.so.3", "openblas-openmp/libblas.so.3",
             "libopenblas.so.0", "blis-pthread/libblas.so.3", "libmkl_rt.so.2"]
    return [root / name for root in roots for name in names if (root / name).is_file()]


def preloaded() -> Path | None:
    """The optimized BLAS already in ``LD_PRELOAD``, if any."""
    wanted = {p.resolve() for p in candidates()}
    for item in os.environ.get("LD_PRELOAD", "").replace(":", " ").split():
        path = Path(item)
        if path.is_file() and path.resolve() in wanted:
            return path
    return None


def maybe_reexec(argv: list[str]) -> None:
    """Restart this process with an optimized BLAS preloaded, when that helps.

    Only on Linux, only once (guarded by an environment variable), and only when
    a candidate library exists and none is preloaded yet. Does not return when it
    re-executes.
    """
    if sys.platform != "linux" or os.environ.get(_REEXEC_GUARD) or preloaded():
        return
    found = candidates()
    if not found:
        return
    env = dict(os.environ)
    env[_REEXEC_GUARD] = "1"
    env["LD_PRELOAD"] = " ".join(filter(None, [str(found[0]), env.get("LD_PRELOAD", "")]))
    os.execve(sys.executable, [sys.executable, *argv], env)


def mlx_blas() -> str:
    """A short description of the BLAS MLX uses in this process."""
    if sys.platform == "darwin":
        return "accelerate"
    path = preloaded()
    if path is not None and _exports_cblas(path):
        return f"preloaded {path}"
    return "netlib (bundled with mlx[cpu]; slow)"


def _exports_cblas(path: Path) -> bool:
    try:
        return hasattr(ctypes.CDLL(str(path)), "cblas_sgemm")
    except OSError:
        return False


def numpy_blas() -> str:
    """numpy's BLAS (its bundled OpenBLAS in the wheels), for reports."""
    try:
        import numpy as np

        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - description only
        return "unknown"
