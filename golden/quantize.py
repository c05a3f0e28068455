"""Post-training int8 quantization and the bit-exact int8 forward (see docs/numerics.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .model import (
    META_KEY,
    Batch,
    ModelError,
    StageModel,
    embedding_bag_sum,
    interaction_pairs,
    load_model,
    save_model,
)
from .numerics import (
    INT8_MAX,
    choose_multiplier,
    int_matmul,
    quantize_symmetric,
    requantize,
)

__all__ = ["QLayer", "QuantizedStage", "quantize_model", "load_quantized", "save_quantized"]

BIAS_LIMIT = (1 << 30) - 1


@dataclass
class QLayer:
    """One int8 linear layer: ``requantize(x_q @ w.T, bias, mult, shift, relu)``.

    ``mult``/``shift`` are ``None`` on the last top layer, whose int32 ``acc + bias`` is the
    score.
    """

    w: np.ndarray  # int8 [out, in]
    bias: np.ndarray  # int32 [out]
    mult: np.ndarray | None  # uint16 [out]
    shift: np.ndarray | None  # uint6 [out]
    relu: bool
    w_scale: np.ndarray  # float [out]: real weight = w * w_scale[o] / in_scale[k]

    def forward(self, x):
        acc = int_matmul(x, self.w.T)
        if self.mult is None:
            return acc + self.bias
        return requantize(acc, self.bias, self.mult, self.shift, self.relu)


@dataclass
class QuantizedStage:
    """The int8 form of a `StageModel`; `forward` is the golden the RTL must match."""

    float_model: StageModel
    dense_scale: np.ndarray  # [D]
    bot: list[QLayer]
    top: list[QLayer]
    emb: list[np.ndarray]  # int8 tables
    emb_scale: np.ndarray  # [T]
    pool_mult: np.ndarray  # [T]
    pool_shift: np.ndarray  # [T]
    feat_scale: np.ndarray  # [F]
    pair_mult: np.ndarray  # [P] (dot only)
    pair_shift: np.ndarray  # [P]
    inter_scale: float
    score_scale: float

    @property
    def name(self) -> str:
        return self.float_model.name

    @property
    def interaction(self) -> str:
        return self.float_model.interaction

    def check_batch(self, batch: Batch) -> None:
        self.float_model.check_batch(batch)

    def quantize_dense(self, dense):
        return quantize_symmetric(dense, self.dense_scale[None, :])

    def bottom(self, dense_q):
        x = dense_q
        for layer in self.bot:
            x = layer.forward(x)
        return x

    def pooled(self, batch: Batch):
        """Requantized int8 pooled embeddings, one [B, d] array per table."""
        out = []
        for t, (e, i, o) in enumerate(zip(self.emb, batch.indices, batch.offsets, strict=True)):
            s = embedding_bag_sum(e, i, o)
            out.append(requantize(s, 0, self.pool_mult[t], self.pool_shift[t]))
        return out

    def interact(self, x, pooled):
        if self.interaction == "cat":
            return np.concatenate([x, *pooled], axis=1)
        t = np.stack([x, *pooled], axis=1).astype(np.float64)
        li, lj = interaction_pairs(t.shape[1])
        # int8 dot products of at most 256 lanes: exact in float64 (batched BLAS)
        z = np.rint(np.matmul(t, t.transpose(0, 2, 1))[:, li, lj]).astype(np.int64)
        zq = requantize(z, 0, self.pair_mult[None, :], self.pair_shift[None, :])
        return np.concatenate([x, zq], axis=1)

    def top_mlp(self, r):
        for layer in self.top:
            r = layer.forward(r)
        return r[:, 0]

    def forward(self, batch: Batch, check: bool = True) -> np.ndarray:
        """Integer logits (int64 holding int32 values) of every item."""
        if check:
            self.float_model.check_batch(batch)
        x = self.bottom(self.quantize_dense(batch.dense))
        score = self.top_mlp(self.interact(x, self.pooled(batch)))
        if np.any(np.abs(score) >= 1 << 31):
            raise OverflowError("score does not fit int32")
        return score

    def macs_per_item(self) -> int:
        return self.float_model.macs_per_item()


def _scale(maxabs: float) -> float:
    return float(maxabs) / INT8_MAX if maxabs > 0 else 1.0


def _qlayer(w, b, in_scale, out_scale, relu, last=False) -> QLayer:
    # Folding the per-input scales into the weights lets one layer take inputs of mixed
    # scales (dot interaction output: bottom features and pair products).
    wf = np.asarray(w, np.float64) * np.asarray(in_scale, np.float64)[None, :]
    w_scale = np.array([_scale(m) for m in np.abs(wf).max(axis=1)])
    wq = quantize_symmetric(wf / w_scale[:, None], 1.0, narrow=True)
    bq = np.clip(np.rint(np.asarray(b, np.float64) / w_scale), -BIAS_LIMIT, BIAS_LIMIT)
    if last:
        return QLayer(wq, bq.astype(np.int64), None, None, False, w_scale)
    mult, shift = choose_multiplier(w_scale / out_scale)
    return QLayer(wq, bq.astype(np.int64), mult, shift, relu, w_scale)


def quantize_model(model: StageModel, calib: Batch) -> QuantizedStage:
    """Quantize ``model`` to int8 with activation ranges calibrated on ``calib``.

    Weights: symmetric per output channel (int8 in [-127, 127]). Activations: symmetric
    per tensor (per feature for dense inputs), scale = max |x| / 127 on the calibration
    batch. Embedding tables: symmetric per table.
    """
    model.check_batch(calib)
    dense = calib.dense.astype(np.float64)
    dense_scale = np.array([_scale(m) for m in np.abs(dense).max(axis=0)])
    # float activations through the network, to calibrate
    acts, x = [], dense
    for w, b in model.bot:
        x = np.maximum(x @ w.T.astype(np.float64) + b, 0)
        acts.append(x)
    pooled = [embedding_bag_sum(e.astype(np.float64), i, o)
              for e, i, o in zip(model.emb, calib.indices, calib.offsets, strict=True)]
    feat_scale = np.array([_scale(np.abs(x).max())] + [_scale(np.abs(p).max()) for p in pooled])
    bot_scales = [_scale(np.abs(a).max()) for a in acts[:-1]] + [feat_scale[0]]

    bot, in_scale = [], dense_scale
    for (w, b), s_out in zip(model.bot, bot_scales, strict=True):
        bot.append(_qlayer(w, b, in_scale, s_out, relu=True))
        in_scale = np.full(w.shape[0], s_out)

    emb_scale = np.array([_scale(np.abs(e).max()) for e in model.emb])
    emb_q = [quantize_symmetric(e, s, narrow=True) for e, s in zip(model.emb, emb_scale,
                                                                     strict=True)]
    pool_mult, pool_shift = choose_multiplier(emb_scale / feat_scale[1:])

    d = model.emb_dim
    f = model.num_features
    if model.interaction == "dot":
        t = np.stack([x, *pooled], axis=1)
        li, lj = interaction_pairs(f)
        z = np.einsum("bpk,bpk->bp", t[:, li, :], t[:, lj, :])
        inter_scale = _scale(np.abs(z).max())
        pair_mult, pair_shift = choose_multiplier(feat_scale[li] * feat_scale[lj] / inter_scale)
        r = np.concatenate([x, z], axis=1)
        r_scale = np.concatenate([np.full(d, feat_scale[0]), np.full(len(li), inter_scale)])
    else:
        inter_scale = float(feat_scale[0])
        pair_mult = pair_shift = np.zeros(0, np.int64)
        r = np.concatenate([x, *pooled], axis=1)
        r_scale = np.repeat(feat_scale, d)

    top, in_scale = [], r_scale
    for k, (w, b) in enumerate(model.top):
        last = k == len(model.top) - 1
        r = r @ w.T.astype(np.float64) + b
        if not last:
            r = np.maximum(r, 0)
        s_out = _scale(np.abs(r).max())
        top.append(_qlayer(w, b, in_scale, s_out, relu=True, last=last))
        in_scale = np.full(w.shape[0], s_out)
    return QuantizedStage(
        float_model=model, dense_scale=dense_scale, bot=bot, top=top, emb=emb_q,
        emb_scale=emb_scale, pool_mult=pool_mult, pool_shift=pool_shift,
        feat_scale=feat_scale, pair_mult=pair_mult, pair_shift=pair_shift,
        inter_scale=float(inter_scale), score_scale=float(top[-1].w_scale[0]))


def save_quantized(path, q: QuantizedStage) -> None:
    """Save float weights (DLRM names) plus the int8 parameters under ``q.`` keys."""
    arrays = {"q.dense_scale": q.dense_scale, "q.emb_scale": q.emb_scale,
              "q.pool_mult": q.pool_mult, "q.pool_shift": q.pool_shift,
              "q.feat_scale": q.feat_scale, "q.pair_mult": q.pair_mult,
              "q.pair_shift": q.pair_shift,
              "q.scalars": np.array([q.inter_scale, q.score_scale])}
    for t, e in enumerate(q.emb):
        arrays[f"q.emb_l.{t}.weight"] = e.astype(np.int8)
    for prefix, layers in (("bot_l", q.bot), ("top_l", q.top)):
        for i, layer in enumerate(layers):
            k = f"q.{prefix}.{2 * i}"
            arrays[f"{k}.weight"] = layer.w.astype(np.int8)
            arrays[f"{k}.bias"] = layer.bias.astype(np.int32)
            arrays[f"{k}.w_scale"] = layer.w_scale
            if layer.mult is not None:
                arrays[f"{k}.mult"] = layer.mult.astype(np.uint16)
                arrays[f"{k}.shift"] = layer.shift.astype(np.uint8)
    save_model(path, q.float_model, extra_arrays=arrays)


def load_quantized(path) -> QuantizedStage:
    """Load a model saved by `save_quantized`.

    Raises
    ------
    ModelError
        If the file holds no int8 parameters.
    """
    path = Path(path)
    model = load_model(path)
    if path.suffix != ".npz":
        raise ModelError(f"{path}: int8 parameters are stored only in .npz files")
    with np.load(path, allow_pickle=False) as z:
        if "q.dense_scale" not in z:
            raise ModelError(f"{path} holds no int8 parameters (q.* arrays); quantize it "
                             f"first with `rpaccel quantize`")
        a = {k: z[k] for k in z.files if k != META_KEY}

    def layers(prefix, n):
        out = []
        for i in range(n):
            k = f"q.{prefix}.{2 * i}"
            has_rq = f"{k}.mult" in a
            out.append(QLayer(a[f"{k}.weight"].astype(np.int64), a[f"{k}.bias"].astype(np.int64),
                              a[f"{k}.mult"].astype(np.int64) if has_rq else None,
                              a[f"{k}.shift"].astype(np.int64) if has_rq else None,
                              relu=has_rq, w_scale=a[f"{k}.w_scale"]))
        return out

    inter_scale, score_scale = (float(v) for v in a["q.scalars"])
    return QuantizedStage(
        float_model=model, dense_scale=a["q.dense_scale"],
        bot=layers("bot_l", len(model.bot)), top=layers("top_l", len(model.top)),
        emb=[a[f"q.emb_l.{t}.weight"].astype(np.int64) for t in range(model.num_tables)],
        emb_scale=a["q.emb_scale"], pool_mult=a["q.pool_mult"].astype(np.int64),
        pool_shift=a["q.pool_shift"].astype(np.int64), feat_scale=a["q.feat_scale"],
        pair_mult=a["q.pair_mult"].astype(np.int64),
        pair_shift=a["q.pair_shift"].astype(np.int64),
        inter_scale=inter_scale, score_scale=score_scale)

