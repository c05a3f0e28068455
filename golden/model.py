"""DLRM-style stage models (float path) and their interchange format.

The float forward follows facebookresearch/dlrm ``dlrm_s_pytorch.py``: bottom MLP with
Linear+ReLU on every layer, sum-pooled embedding bags, ``dot`` interaction (strictly lower
triangle in DLRM's order, output ``cat([x, Zflat])``) or ``cat`` interaction, top MLP with
ReLU between layers and a linear last layer. The score is the logit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "ModelError",
    "BatchError",
    "Batch",
    "StageModel",
    "interaction_pairs",
    "embedding_bag_sum",
    "load_model",
    "save_model",
    "load_batch",
    "save_batch",
]

META_KEY = "rpaccel_meta"


class ModelError(ValueError):
    """A model whose tensors do not fit together; the message names tensor and shapes."""


class BatchError(ValueError):
    """A batch that does not fit the model; the message names the field and the rule."""


def interaction_pairs(num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of the strictly lower triangle in DLRM order: (1,0), (2,0), (2,1), ..."""
    li = [i for i in range(num_features) for _ in range(i)]
    lj = [j for i in range(num_features) for j in range(i)]
    return np.array(li, dtype=np.int64), np.array(lj, dtype=np.int64)


@dataclass
class Batch:
    """Items to score, in DLRM's EmbeddingBag convention.

    Attributes
    ----------
    dense : numpy.ndarray, float32 [B, D]
    indices : list of numpy.ndarray, int64 (flat ids of table t)
    offsets : list of numpy.ndarray, int64 [B] (start of each item's bag in ``indices[t]``)
    """

    dense: np.ndarray
    indices: list[np.ndarray]
    offsets: list[np.ndarray]

    @property
    def size(self) -> int:
        return int(self.dense.shape[0])

    def take(self, rows) -> Batch:
        """Return the sub-batch of the given item rows (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        idx, offs = [], []
        for ind, off in zip(self.indices, self.offsets, strict=True):
            ends = np.append(off[1:], len(ind))
            starts, stops = off[rows], ends[rows]
            lengths = stops - starts
            offs.append(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
            gather = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)]
                                    ) if len(rows) else np.zeros(0, np.int64)
            idx.append(ind[gather.astype(np.int64)])
        return Batch(self.dense[rows], idx, offs)


def embedding_bag_sum(table: np.ndarray, indices: np.ndarray, offsets: np.ndarray):
    """Sum-pool bags of rows of ``table`` (EmbeddingBag mode="sum"); empty bags give zeros."""
    n = len(offsets)
    out = np.zeros((n, table.shape[1]), dtype=np.result_type(table.dtype, np.float32)
                   if table.dtype.kind == "f" else np.int64)
    if len(indices) == 0:
        return out
    rows = table[indices]
    nonempty = np.append(offsets[1:], len(indices)) > offsets
    # reduceat sums each run from its offset to the next; empty bags stay zero
    out[nonempty] = np.add.reduceat(rows, offsets[nonempty], axis=0)
    return out


@dataclass
class StageModel:
    """A float DLRM stage model.

    Parameters
    ----------
    bot : list of (W [out, in], b [out])
        Bottom MLP layers (ReLU after each).
    top : list of (W [out, in], b [out])
        Top MLP layers (ReLU between layers; the last has one output, the logit).
    emb : list of numpy.ndarray [rows, d]
        Embedding tables, one per sparse feature.
    interaction : {"dot", "cat"}
    context_tables : tuple of int
        Tables whose ids are shared by all candidates of a query (e.g. the user).
    name : str

    Raises
    ------
    ModelError
        When shapes do not fit together (the message names the tensor and both shapes).
    """

    bot: list[tuple[np.ndarray, np.ndarray]]
    top: list[tuple[np.ndarray, np.ndarray]]
    emb: list[np.ndarray]
    interaction: str = "dot"
    context_tables: tuple[int, ...] = ()
    name: str = "model"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.validate()

    # -- shape rules ---------------------------------------------------------------------
    @property
    def dense_dim(self) -> int:
        return int(self.bot[0][0].shape[1])

    @property
    def emb_dim(self) -> int:
        return int(self.bot[-1][0].shape[0])

    @property
    def num_tables(self) -> int:
        return len(self.emb)

    @property
    def num_features(self) -> int:
        return 1 + self.num_tables

    @property
    def interaction_width(self) -> int:
        f = self.num_features
        if self.interaction == "dot":
            return self.emb_dim + f * (f - 1) // 2
        return self.emb_dim * f

    def validate(self) -> None:
        if self.interaction not in ("dot", "cat"):
            raise ModelError(f"interaction must be 'dot' or 'cat', not {self.interaction!r}")
        if not self.bot:
            raise ModelError("bottom MLP must have at least one layer (bot_l.0)")
        if not self.top:
            raise ModelError("top MLP must have at least one layer (top_l.0)")
        for prefix, layers in (("bot_l", self.bot), ("top_l", self.top)):
            for i, (w, b) in enumerate(layers):
                wn, bn = f"{prefix}.{2 * i}.weight", f"{prefix}.{2 * i}.bias"
                if w.ndim != 2:
                    raise ModelError(f"{wn} must be 2-D, has shape {tuple(w.shape)}")
                if b.shape != (w.shape[0],):
                    raise ModelError(f"{bn} has shape {tuple(b.shape)} but {wn} has shape "
                                     f"{tuple(w.shape)}: expected ({w.shape[0]},)")
                if i > 0:
                    pw = layers[i - 1][0]
                    if w.shape[1] != pw.shape[0]:
                        raise ModelError(
                            f"{wn} has shape {tuple(w.shape)} but {prefix}.{2 * i - 2}.weight "
                            f"has shape {tuple(pw.shape)}: inputs {w.shape[1]} != outputs "
                            f"{pw.shape[0]}")
        d = self.emb_dim
        for t, e in enumerate(self.emb):
            if e.ndim != 2 or e.shape[1] != d:
                raise ModelError(
                    f"emb_l.{t}.weight has shape {tuple(e.shape)} but bot_l."
                    f"{2 * len(self.bot) - 2}.weight has shape {tuple(self.bot[-1][0].shape)}: "
                    f"embedding dim must equal the bottom MLP output {d}")
        w0 = self.top[0][0]
        if w0.shape[1] != self.interaction_width:
            raise ModelError(
                f"top_l.0.weight has shape {tuple(w0.shape)} but the {self.interaction} "
                f"interaction of {self.num_features} features of dim {d} gives width "
                f"{self.interaction_width}")
        wl = self.top[-1][0]
        if wl.shape[0] != 1:
            raise ModelError(f"top_l.{2 * len(self.top) - 2}.weight has shape "
                             f"{tuple(wl.shape)}: the last layer must have 1 output")
        for t in self.context_tables:
            if not 0 <= t < self.num_tables:
                raise ModelError(f"context table {t} does not exist ({self.num_tables} tables)")

    # -- batches -------------------------------------------------------------------------
    def check_batch(self, batch: Batch) -> None:
        """Raise `BatchError` unless ``batch`` fits this model."""
        check_batch_shape(batch, self.dense_dim, [e.shape[0] for e in self.emb])

    # -- forward -------------------------------------------------------------------------
    def forward(self, batch: Batch, check: bool = True) -> np.ndarray:
        """Float logits [B] (float32)."""
        if check:
            self.check_batch(batch)
        x = batch.dense.astype(np.float32)
        for w, b in self.bot:
            x = np.maximum(x @ w.T + b, 0)
        pooled = [embedding_bag_sum(e, i, o)
                  for e, i, o in zip(self.emb, batch.indices, batch.offsets, strict=True)]
        r = interact(x, pooled, self.interaction)
        for k, (w, b) in enumerate(self.top):
            r = r @ w.T + b
            if k < len(self.top) - 1:
                r = np.maximum(r, 0)
        return r[:, 0].astype(np.float32)

    def macs_per_item(self) -> int:
        """Multiply-accumulates to score one item (MLPs and interaction)."""
        macs = sum(w.size for w, _ in self.bot) + sum(w.size for w, _ in self.top)
        if self.interaction == "dot":
            f = self.num_features
            macs += f * (f - 1) // 2 * self.emb_dim
        return int(macs)

    # -- interchange ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        sd = {}
        for prefix, layers in (("bot_l", self.bot), ("top_l", self.top)):
            for i, (w, b) in enumerate(layers):
                sd[f"{prefix}.{2 * i}.weight"] = np.asarray(w, np.float32)
                sd[f"{prefix}.{2 * i}.bias"] = np.asarray(b, np.float32)
        for t, e in enumerate(self.emb):
            sd[f"emb_l.{t}.weight"] = np.asarray(e, np.float32)
        return sd

    def meta(self) -> dict:
        return {"interaction": self.interaction, "context_tables": list(self.context_tables),
                "name": self.name, **self.extra}

    @classmethod
    def from_state_dict(cls, sd: dict, meta: dict | None = None) -> StageModel:
        """Build from facebookresearch/dlrm state-dict names.

        Without metadata, DLRM's defaults apply: ``dot`` interaction without
        self-interaction, no context tables.
        """
        meta = dict(meta or {})

        def layers(prefix):
            out, i = [], 0
            while f"{prefix}.{i}.weight" in sd:
                wn, bn = f"{prefix}.{i}.weight", f"{prefix}.{i}.bias"
                if bn not in sd:
                    raise ModelError(f"{bn} is missing (its weight {wn} is present)")
                out.append((np.asarray(sd[wn], np.float32), np.asarray(sd[bn], np.float32)))
                i += 2
            return out

        emb, t = [], 0
        while f"emb_l.{t}.weight" in sd:
            emb.append(np.asarray(sd[f"emb_l.{t}.weight"], np.float32))
            t += 1
        known = {k for k in sd if k.startswith(("bot_l.", "top_l.", "emb_l."))}
        bot, top = layers("bot_l"), layers("top_l")
        used = {f"{p}.{2 * i}.{n}" for p, ls in (("bot_l", bot), ("top_l", top))
                for i in range(len(ls)) for n in ("weight", "bias")}
        used |= {f"emb_l.{i}.weight" for i in range(len(emb))}
        if known - used:
            raise ModelError(f"unexpected tensors (layer numbering must be 0, 2, 4, ...): "
                             f"{sorted(known - used)}")
        if meta.get("arch_interaction_itself"):
            raise ModelError("self-interaction (arch_interaction_itself) is not supported")
        return cls(bot=bot, top=top, emb=emb, interaction=meta.pop("interaction", "dot"),
                   context_tables=tuple(meta.pop("context_tables", ())),
                   name=meta.pop("name", "model"), extra=meta)


def interact(x, pooled, interaction: str):
    """DLRM feature interaction of the bottom output ``x`` [B, d] with pooled embeddings."""
    if interaction == "cat":
        return np.concatenate([x, *pooled], axis=1)
    t = np.stack([x, *pooled], axis=1)  # [B, F, d]
    z = t @ np.swapaxes(t, 1, 2)
    li, lj = interaction_pairs(t.shape[1])
    return np.concatenate([x, z[:, li, lj]], axis=1)


def check_batch_shape(batch: Batch, dense_dim: int, table_rows: list[int]) -> None:
    """Raise `BatchError` if the batch does not match ``dense_dim`` and the table sizes."""
    d = batch.dense
    if d.ndim != 2 or d.shape[1] != dense_dim:
        raise BatchError(f"dense must have shape [B, {dense_dim}], not {tuple(d.shape)}")
    n = d.shape[0]
    if len(batch.indices) != len(table_rows) or len(batch.offsets) != len(table_rows):
        raise BatchError(f"batch must have indices_t and offsets_t for {len(table_rows)} "
                         f"tables, has {len(batch.indices)} and {len(batch.offsets)}")
    for t, (ind, off, rows) in enumerate(
            zip(batch.indices, batch.offsets, table_rows, strict=True)):
        if off.ndim != 1 or off.shape[0] != n:
            raise BatchError(f"offsets_{t} must have shape [{n}], not {tuple(off.shape)}")
        if n and off[0] != 0:
            raise BatchError(f"offsets_{t} must start at 0, not {int(off[0])}")
        if np.any(np.diff(off) < 0):
            k = int(np.argmax(np.diff(off) < 0))
            raise BatchError(f"offsets_{t} must be non-decreasing: offsets_{t}[{k}]="
                             f"{int(off[k])} > offsets_{t}[{k + 1}]={int(off[k + 1])}")
        if n and off[-1] > len(ind):
            raise BatchError(f"offsets_{t} ends at {int(off[-1])}, past the "
                             f"{len(ind)} indices of indices_{t}")
        if len(ind) and (ind.min() < 0 or ind.max() >= rows):
            bad = int(ind[(ind < 0) | (ind >= rows)][0])
            raise BatchError(f"indices_{t} must be in [0, {rows}), found {bad}")


def load_batch(path) -> Batch:
    """Read a batch ``.npz``: ``dense`` [B, D], ``indices_t`` and ``offsets_t`` per table."""
    with np.load(path, allow_pickle=False) as z:
        if "dense" not in z:
            raise BatchError(f"{path}: missing array 'dense'")
        idx, offs, t = [], [], 0
        while f"indices_{t}" in z or f"offsets_{t}" in z:
            for k in (f"indices_{t}", f"offsets_{t}"):
                if k not in z:
                    raise BatchError(f"{path}: has {'indices' if 'off' in k else 'offsets'}"
                                     f"_{t} but not {k}")
            idx.append(np.asarray(z[f"indices_{t}"], np.int64))
            offs.append(np.asarray(z[f"offsets_{t}"], np.int64))
            t += 1
        return Batch(np.asarray(z["dense"], np.float32), idx, offs)


def save_batch(path, batch: Batch) -> None:
    arrays = {"dense": batch.dense.astype(np.float32)}
    for t, (i, o) in enumerate(zip(batch.indices, batch.offsets, strict=True)):
        arrays[f"indices_{t}"] = i.astype(np.int64)
        arrays[f"offsets_{t}"] = o.astype(np.int64)
    np.savez(path, **arrays)


def save_model(path, model: StageModel, extra_arrays: dict | None = None) -> None:
    """Save as ``.npz`` (or ``.pt`` with torch) under DLRM state-dict names plus metadata."""
    path = Path(path)
    sd = model.state_dict()
    if path.suffix == ".pt":
        import torch

        torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in sd.items()},
                    META_KEY: model.meta()}, path)
        return
    arrays = dict(sd)
    arrays.update(extra_arrays or {})
    arrays[META_KEY] = np.array(json.dumps(model.meta()))
    np.savez(path, **arrays)


def load_model(path) -> StageModel:
    """Load a stage model from ``.npz`` or ``.pt`` (a DLRM checkpoint or bare state dict)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.suffix == ".pt":
        import torch

        obj = torch.load(path, map_location="cpu", weights_only=True)
        meta = obj.get(META_KEY) if isinstance(obj, dict) else None
        sd = obj.get("state_dict", obj)
        sd = {k: v.detach().numpy() for k, v in sd.items() if hasattr(v, "detach")}
        return StageModel.from_state_dict(sd, meta)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z[META_KEY])) if META_KEY in z else None
        sd = {k: z[k] for k in z.files if k != META_KEY}
    return StageModel.from_state_dict(sd, meta)
