"""AkiDB: the reference vector database server and its test & benchmark toolkit.

One import namespace for the whole distribution::

    from akidb import Client, Cluster

The packages live in the repository's top-level folders (``server/``, ``harness/``,
``datagen/``, ...); an installed wheel maps them under ``akidb`` (pyproject's
``package-dir``), so nothing generic such as ``server`` is importable on its own.
In a source checkout the same folders are found through this package's
``__path__``, which is extended by the checkout root (recognised by its
pyproject.toml naming this project): ``akidb.server`` is then ``./server``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "server" / "__init__.py").is_file():
    if 'name = "akidb"' in (_checkout / "pyproject.toml").read_text():
        __path__.append(str(_checkout))  # type: ignore[name-defined]  # noqa: F821

if TYPE_CHECKING:
    from akidb.harness import Cluster as Cluster
    from akidb.server.client import Client as Client

__all__ = ["Client", "Cluster", "__version__"]


def __getattr__(name: str) -> Any:
    """Imported on first use, so ``import akidb.server...`` stays light."""
    if name == "Client":
        from akidb.server.client import Client

        return Client
    if name == "Cluster":
        from akidb.harness import Cluster

        return Cluster
    if name == "__version__":
        from akidb.server import __version__

        return __version__
    raise AttributeError(f"module 'akidb' has no attribute {name!r}")
