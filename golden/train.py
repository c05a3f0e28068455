"""PyTorch twin of the stage model, training on MovieLens-100k, and the model build step.

PyTorch is an optional extra (``pip install .[train]``); only this module imports it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from .data import (
    CONTEXT_TABLES,
    HISTORY,
    HOLDOUT,
    SHA256,
    TABLE_NAMES,
    MovieLens,
    data_dir,
    load_ml100k,
)
from .model import Batch, StageModel, load_model, save_model
from .quantize import load_quantized, quantize_model, save_quantized
from .zoo import SIZES, mlp_dims

__all__ = ["TorchDLRM", "to_torch", "from_torch", "train_size", "build_models", "model_paths",
           "RECIPE", "recipe_digest"]

#: The training recipe of every size (BCE over sampled unrated negatives, Adam with a
#: cosine learning-rate decay); with the data's features and split it fixes the models.
RECIPE = {"epochs": 18, "negatives": 8, "batch_size": 2048, "lr": 2e-3, "seed": 0,
          "threads": 2}


def _torch():
    import torch

    return torch


def TorchDLRM(bot_dims, top_dims, table_rows, emb_dim, interaction="dot"):  # noqa: N802
    """Build a PyTorch DLRM with facebookresearch/dlrm's module names and semantics."""
    torch = _torch()
    nn = torch.nn

    class _DLRM(nn.Module):
        def __init__(self):
            super().__init__()

            def mlp(dims, last_relu):
                mods = []
                for k, (n, m) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
                    mods.append(nn.Linear(n, m))
                    if last_relu or k < len(dims) - 2:
                        mods.append(nn.ReLU())
                return nn.Sequential(*mods)

            self.bot_l = mlp(bot_dims, last_relu=True)
            self.top_l = mlp(top_dims, last_relu=False)
            self.emb_l = nn.ModuleList(nn.EmbeddingBag(r, emb_dim, mode="sum")
                                       for r in table_rows)
            self.interaction = interaction

        def forward(self, dense, indices, offsets):
            x = self.bot_l(dense)
            ly = [e(i, o) for e, i, o in zip(self.emb_l, indices, offsets, strict=True)]
            if self.interaction == "cat":
                r = torch.cat([x, *ly], dim=1)
            else:
                b, d = x.shape
                t = torch.cat([x, *ly], dim=1).view((b, -1, d))
                z = torch.bmm(t, torch.transpose(t, 1, 2))
                ni = t.shape[1]
                li = torch.tensor([i for i in range(ni) for j in range(i)])
                lj = torch.tensor([j for i in range(ni) for j in range(i)])
                r = torch.cat([x, z[:, li, lj]], dim=1)
            return self.top_l(r)[:, 0]

    return _DLRM()


def to_torch(model: StageModel):
    """A PyTorch module holding ``model``'s weights (for training and cross-checks)."""
    torch = _torch()
    bot = [model.dense_dim] + [w.shape[0] for w, _ in model.bot]
    top = [model.interaction_width] + [w.shape[0] for w, _ in model.top]
    m = TorchDLRM(bot, top, [e.shape[0] for e in model.emb], model.emb_dim, model.interaction)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return m


def from_torch(module, like: StageModel | None = None, **meta) -> StageModel:
    sd = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    base = like.meta() if like is not None else {}
    base.update(meta)
    return StageModel.from_state_dict(sd, base)


def torch_batch(batch: Batch):
    torch = _torch()
    return (torch.from_numpy(batch.dense), [torch.from_numpy(i) for i in batch.indices],
            [torch.from_numpy(o) for o in batch.offsets])


def recipe_digest(**overrides) -> str:
    """Digest of what the trained models depend on: `RECIPE` (with ``overrides``), the
    features, the split and the data files' hashes."""
    key = {**RECIPE, **overrides, "tables": TABLE_NAMES, "context": CONTEXT_TABLES,
           "history": HISTORY, "holdout": HOLDOUT, "data": SHA256, "version": 2}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def train_size(ml: MovieLens, size: str, epochs: int = RECIPE["epochs"],
               negatives: int = RECIPE["negatives"], batch_size: int = RECIPE["batch_size"],
               lr: float = RECIPE["lr"], seed: int = RECIPE["seed"],
               threads: int = RECIPE["threads"], log=print) -> StageModel:
    """Train one stage model on the MovieLens training split (BCE, sampled negatives, each
    pair's history bag holding only ratings before its positive).

    The thread count is fixed, not taken from the machine, so that float reductions run in
    the same order everywhere and a fresh clone trains the documented models.
    """
    torch = _torch()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    spec = SIZES[size]
    probe = ml.batch([0], [0])
    bot, top = mlp_dims(spec, probe.dense.shape[1], len(ml.table_rows))
    net = TorchDLRM(bot, top, ml.table_rows, spec.emb_dim)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(epochs):
        t0 = time.time()
        users, items, labels, ends = ml.training_samples(negatives, rng, positions=True)
        perm = rng.permutation(len(users))
        total = 0.0
        for s in range(0, len(perm), batch_size):
            sel = perm[s:s + batch_size]
            d, i, o = torch_batch(ml.batch(users[sel], items[sel], history_ends=ends[sel]))
            loss = loss_fn(net(d, i, o), torch.from_numpy(labels[sel]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(sel)
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * (epoch + 1) / epochs))
        log(f"  {size}: epoch {epoch + 1}/{epochs} loss {total / len(perm):.4f} "
            f"({time.time() - t0:.1f} s)")
    return from_torch(net, name=size, interaction="dot", context_tables=list(CONTEXT_TABLES))


def model_paths(model_dir) -> dict[str, tuple[Path, Path]]:
    """``{size: (float .npz, int8 .npz)}`` in ``model_dir``."""
    model_dir = Path(model_dir)
    return {s: (model_dir / f"{s}.npz", model_dir / f"{s}.int8.npz") for s in SIZES}


def calibration_batch(ml: MovieLens, n: int = 20000, seed: int = 1) -> Batch:
    rng = np.random.default_rng(seed)
    users, items, _, ends = ml.training_samples(1, rng, positions=True)
    sel = rng.choice(len(users), min(n, len(users)), replace=False)
    return ml.batch(users[sel], items[sel], history_ends=ends[sel])


def build_models(model_dir, sizes=tuple(SIZES), force: bool = False, log=print, **kw):
    """Train (float) and quantize (int8) the stage models that are missing in
    ``model_dir``. Returns ``{size: QuantizedStage}``.

    Models trained by another recipe (`recipe_digest`) are replaced; float models are kept
    per digest under ``data_dir() / "models"`` too, so another checkout on the same
    machine copies them instead of training again.
    """
    from filelock import FileLock

    Path(model_dir).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(model_dir) / ".lock")):  # pytest -n 2 workers share the models
        return _build_models(model_dir, sizes, force, log, **kw)


def _build_models(model_dir, sizes, force, log, **kw):
    ml = load_ml100k()
    calib = None
    out = {}
    stamp = Path(model_dir) / "recipe.json"
    digest = recipe_digest(**kw)
    if not stamp.exists() or json.loads(stamp.read_text()).get("digest") != digest:
        stale = [p for pair in model_paths(model_dir).values() for p in pair if p.exists()]
        if stale:
            log(f"models in {model_dir} come from another recipe or data: retraining")
        for p in stale:
            p.unlink()
        stamp.unlink(missing_ok=True)
    cache = data_dir() / "models" / digest  # trained once per recipe on this machine
    for size in sizes:
        fpath, qpath = model_paths(model_dir)[size]
        cached = cache / fpath.name
        if not force and not fpath.exists() and cached.exists():
            shutil.copyfile(cached, fpath)
        if force or not fpath.exists():
            log(f"training {size} on MovieLens-100k")
            save_model(fpath, train_size(ml, size, log=log, **kw))
        if not cached.exists():
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(fpath, cached)
        if force or not qpath.exists():
            calib = calib if calib is not None else calibration_batch(ml)
            save_quantized(qpath, quantize_model(load_model(fpath), calib))
        out[size] = load_quantized(qpath)
    stamp.write_text(json.dumps({"digest": digest, "recipe": {**RECIPE, **kw}}, indent=2))
    return out
