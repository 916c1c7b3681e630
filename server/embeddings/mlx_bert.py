"""The MiniLM (BERT) forward pass on MLX: Metal on Apple Silicon, CPU on Linux.

Built from ``mlx.nn`` modules so ``mlx.nn.quantize`` can turn the linear layers
into 8-bit ones (``quantize=True``). On Linux the CPU wheel's matmuls go through
whatever ``cblas_sgemm`` the process resolved first; see ``server.embeddings.blas``.
"""

from __future__ import annotations

import numpy as np

from akidb.server.embeddings.model import BertConfig


def _modules():  # imported lazily: mlx is optional until an MLX backend is asked for
    import mlx.core as mx
    import mlx.nn as nn
    return mx, nn


class MlxBert:
    """Same call shape as ``NumpyBert``: (ids, mask) numpy in, pooled float32 numpy out."""

    def __init__(self, weights: dict[str, np.ndarray], config: BertConfig, *,
                 quantize: bool = False) -> None:
        mx, nn = _modules()
        self.cfg = config
        self.name = "mlx-q8" if quantize else "mlx"
        self._mx = mx
        self.model = _build(nn, config)
        self.model.load_weights([(k, mx.array(v)) for k, v in weights.items()
                                 if not k.startswith("pooler.")])
        if quantize:
            nn.quantize(self.model, group_size=64, bits=8,
                        class_predicate=lambda _path, m: isinstance(m, nn.Linear))
        self.model.eval()
        mx.eval(self.model.parameters())
        # Fuses the elementwise work (GELU, masking, LayerNorm glue) between matmuls;
        # shapeless=False recompiles once per padded batch shape, which bucketing bounds.
        self._run = mx.compile(self.model)

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        mx = self._mx
        pooled = self._run(mx.array(ids), mx.array(mask))
        return np.array(pooled, dtype=np.float32)


def _build(nn, cfg: BertConfig):  # noqa: ANN001, ANN202 - module types exist only with mlx
    mx = _modules()[0]

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query = nn.Linear(cfg.hidden, cfg.hidden)
            self.key = nn.Linear(cfg.hidden, cfg.hidden)
            self.value = nn.Linear(cfg.hidden, cfg.hidden)

    class AttentionOutput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(cfg.hidden, cfg.hidden)
            self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = SelfAttention()
            self.output = AttentionOutput()

        def __call__(self, x, bias):  # noqa: ANN001, ANN204
            b, length, _ = x.shape
            sa = self.self

            def heads(t):  # noqa: ANN001, ANN202
                return t.reshape(b, length, cfg.heads, cfg.head_dim).transpose(0, 2, 1, 3)

            q, k, v = heads(sa.query(x)), heads(sa.key(x)), heads(sa.value(x))
            ctx = mx.fast.scaled_dot_product_attention(
                q, k, v, scale=1.0 / cfg.head_dim ** 0.5, mask=bias)
            ctx = ctx.transpose(0, 2, 1, 3).reshape(b, length, cfg.hidden)
            return self.output.LayerNorm(self.output.dense(ctx) + x)

    class Intermediate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(cfg.hidden, cfg.intermediate)

    class Output(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(cfg.intermediate, cfg.hidden)
            self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = Output()

        def __call__(self, x, bias):  # noqa: ANN001, ANN204
            x = self.attention(x, bias)
            up = nn.gelu(self.intermediate.dense(x))
            return self.output.LayerNorm(self.output.dense(up) + x)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = [Layer() for _ in range(cfg.layers)]

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(30522, cfg.hidden)
            self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
            self.token_type_embeddings = nn.Embedding(2, cfg.hidden)
            self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.eps)

    class Bert(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def __call__(self, ids, mask):  # noqa: ANN001, ANN204
            e = self.embeddings
            length = ids.shape[1]
            x = (e.word_embeddings(ids) + e.position_embeddings(mx.arange(length))
                 + e.token_type_embeddings.weight[0])
            x = e.LayerNorm(x)
            bias = mx.where(mask, 0.0, -1e9).astype(x.dtype)[:, None, None, :]
            for layer in self.encoder.layer:
                x = layer(x, bias)
            weights = mask.astype(x.dtype)[:, :, None]
            return (x * weights).sum(axis=1) / mx.maximum(weights.sum(axis=1), 1.0)

    return Bert()
