"""The MiniLM (BERT) forward pass on numpy, whose matmuls run on numpy's OpenBLAS.

Why a second engine beside MLX: MLX's Linux CPU wheel links the reference
netlib BLAS (~30x slower here, see MEASURED.md). This backend runs the same
weights through numpy's bundled OpenBLAS, so Linux gets full speed without a
system BLAS; it is parity-tested against the MLX path and the reference.
"""

from __future__ import annotations

import numpy as np

from akidb.server.embeddings.model import BertConfig

_GELU_BLOCK = 96 * 1024  # elements per GELU block (float32: 384 KiB)
_MASKED = np.float32(-1e9)  # exp() of this after max-subtraction is exactly 0 in float32


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 absolute (Abramowitz & Stegun 7.1.26), in float32, vectorised.

    numpy has no erf; BERT's GELU is the exact erf form, and the tanh
    approximation would move the embeddings by ~1e-3.
    """
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + np.float32(0.3275911) * a)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (
        np.float32(1.421413741) + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    np.multiply(a, a, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    np.multiply(poly, a, out=a)
    np.subtract(np.float32(1.0), a, out=a)
    return np.multiply(sign, a, out=a)


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in place, a cache-sized block of rows at a time.

    The erf takes a dozen passes over its input; on blocks that stay in cache
    they run ~5x faster than over the whole (tokens x 1536) activation.
    """
    rows = max(1, _GELU_BLOCK // x.shape[-1])
    for start in range(0, x.shape[0], rows):
        block = x[start:start + rows]
        e = _erf(block * np.float32(0.7071067811865476))
        e += np.float32(1.0)
        block *= np.float32(0.5)
        block *= e
    return x


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    x = x - mean
    var = np.mean(x * x, axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + np.float32(eps))
    x *= w
    x += b
    return x


class NumpyBert:
    """``pooled = NumpyBert(weights, config)(ids, mask)``; ids/mask are (batch, length)."""

    name = "numpy"

    def __init__(self, weights: dict[str, np.ndarray], config: BertConfig) -> None:
        self.cfg = config
        w = weights
        self.word = w["embeddings.word_embeddings.weight"]
        self.pos = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(config.layers):
            p = f"encoder.layer.{i}."
            # Q, K and V in one (hidden, 3*hidden) matmul: one BLAS call instead of three.
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"]
                                    for n in ("query", "key", "value")]).T
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"]
                                    for n in ("query", "key", "value")])
            self.layers.append({
                "qkv": (np.ascontiguousarray(qkv_w), qkv_b),
                "out": (np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                        w[p + "attention.output.dense.bias"]),
                "ln1": (w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"]),
                "up": (np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                       w[p + "intermediate.dense.bias"]),
                "down": (np.ascontiguousarray(w[p + "output.dense.weight"].T),
                         w[p + "output.dense.bias"]),
                "ln2": (w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]),
            })

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        batch, length = ids.shape
        h, d = cfg.heads, cfg.head_dim
        x = self.word[ids] + self.pos[:length] + self.type0
        x = _layer_norm(x.reshape(batch * length, cfg.hidden), *self.emb_ln, cfg.eps)
        bias = np.where(mask, np.float32(0), _MASKED)[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(d))
        for layer in self.layers:
            qkv = x @ layer["qkv"][0]
            qkv += layer["qkv"][1]
            qkv = qkv.reshape(batch, length, 3, h, d).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = q @ k.transpose(0, 1, 3, 2)
            scores *= scale
            scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, cfg.hidden)
            attn = ctx @ layer["out"][0]
            attn += layer["out"][1]
            attn += x
            x = _layer_norm(attn, *layer["ln1"], cfg.eps)
            up = x @ layer["up"][0]
            up += layer["up"][1]
            down = _gelu(up) @ layer["down"][0]
            down += layer["down"][1]
            down += x
            x = _layer_norm(down, *layer["ln2"], cfg.eps)
        x = x.reshape(batch, length, cfg.hidden)
        weights = mask.astype(np.float32)
        summed = np.einsum("blh,bl->bh", x, weights)
        return summed / np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
