"""Stage-model sizes after RecPipe's RM-small / RM-med / RM-large, and random models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import StageModel

__all__ = ["SIZES", "ModelSize", "random_model", "mlp_dims"]


@dataclass(frozen=True)
class ModelSize:
    """Hidden layer widths of one model size (inputs and outputs come from the data)."""

    name: str
    emb_dim: int
    bot_hidden: tuple[int, ...]
    top_hidden: tuple[int, ...]


#: RecPipe's Criteo models (ANCHORS.md), with the input width taken from the data set.
SIZES = {
    "small": ModelSize("small", 4, (64,), (64,)),
    "medium": ModelSize("medium", 16, (64,), (64,)),
    "large": ModelSize("large", 32, (512, 256, 128, 64), (96,)),
}


def mlp_dims(size: ModelSize, dense_dim: int, num_tables: int, interaction: str = "dot"):
    """Layer widths ``(bottom, top)`` including inputs and outputs."""
    f = num_tables + 1
    inter = size.emb_dim + f * (f - 1) // 2 if interaction == "dot" else size.emb_dim * f
    return ((dense_dim, *size.bot_hidden, size.emb_dim), (inter, *size.top_hidden, 1))


def random_model(size: ModelSize | str, dense_dim: int, table_rows, interaction: str = "dot",
                 context_tables=(), seed: int = 0) -> StageModel:
    """A model with DLRM's initialisation (normal weights scaled by fan-in/out, uniform
    embeddings in +-1/sqrt(rows))."""
    size = SIZES[size] if isinstance(size, str) else size
    rng = np.random.default_rng(seed)
    bot_dims, top_dims = mlp_dims(size, dense_dim, len(table_rows), interaction)

    def mlp(dims):
        layers = []
        for n, m in zip(dims[:-1], dims[1:], strict=True):
            w = rng.normal(0, np.sqrt(2 / (m + n)), (m, n)).astype(np.float32)
            b = rng.normal(0, np.sqrt(1 / m), m).astype(np.float32)
            layers.append((w, b))
        return layers

    emb = [rng.uniform(-np.sqrt(1 / r), np.sqrt(1 / r), (r, size.emb_dim)).astype(np.float32)
           for r in table_rows]
    return StageModel(bot=mlp(bot_dims), top=mlp(top_dims), emb=emb, interaction=interaction,
                      context_tables=tuple(context_tables), name=size.name)
