"""Host side of the engine testbench: programs, sub-batches and golden expectations."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..golden.quantize import QLayer
from ..interface import slot_width
from ..program import compile_layers, compile_stage, sub_batch_beats

__all__ = ["random_layers", "layers_job", "stage_job", "write_jobs", "expected_beats",
           "random_slots"]


def random_layers(rng, dims, final=True):
    """Random int8 layers of widths ``dims``; requantization scales chosen so that outputs
    span the int8 range (some saturate)."""
    layers = []
    for i, (k, n) in enumerate(zip(dims[:-1], dims[1:], strict=False)):
        last = final and i == len(dims) - 2
        w = rng.integers(-127, 128, (n, k))
        bias = rng.integers(-(1 << 16), 1 << 16, n)
        if last:
            layers.append(QLayer(w, bias, None, None, False, np.ones(n)))
            continue
        mult = rng.integers(1 << 14, 1 << 15, n)
        shift = rng.integers(15 + 8, 15 + 12, n) + int(np.log2(k)) // 2
        layers.append(QLayer(w, bias, mult, shift, bool(rng.integers(0, 2)), np.ones(n)))
    return layers


def expected_beats(final_out, pcols):
    """Output beats of the final layer: output tiles outer, items inner, ``pcols`` lanes
    (columns beyond the layer's width read 0: their weights and bias are zero)."""
    items, n = final_out.shape
    nt = -(-n // pcols)
    pad = np.zeros((items, nt * pcols), np.int64)
    pad[:, :n] = final_out
    return [pad[i, j * pcols:(j + 1) * pcols].tolist() for j in range(nt) for i in range(items)]


def layers_job(cfg, slot, mode, layers, xs, name="layers"):
    """A plain MLP on ``slot``: one run per input array in ``xs`` ([items, K] int8)."""
    prog = compile_layers(cfg, slot_width(cfg, slot), mode, layers)
    runs = []
    for i, x in enumerate(xs):
        y = x
        for lay in layers:
            y = lay.forward(y)
        runs.append({"name": f"{name}#{i}", "items": len(x), "act": sub_batch_beats(prog, x),
                     "expect": expected_beats(y, prog.pcols)})
    return {"load": prog.beats, "runs": runs}


def stage_job(cfg, slot, mode, q, batches, name=None):
    """A whole `QuantizedStage` on ``slot``: one run per `Batch` in ``batches``."""
    prog = compile_stage(cfg, slot_width(cfg, slot), mode, q)
    runs = []
    for i, batch in enumerate(batches):
        score = q.forward(batch)
        act = sub_batch_beats(prog, q.quantize_dense(batch.dense), q.pooled(batch))
        runs.append({"name": f"{name or q.name}#{i}", "items": len(score), "act": act,
                     "expect": expected_beats(score[:, None], prog.pcols)})
    return {"load": prog.beats, "runs": runs}


def random_slots(cfg, mode, rng, runs=2, widths=(1, 3, 8, 13, 16, 21, 33)):
    """A random MLP for every partition of ``mode``: 1 to 3 layers of widths drawn from
    ``widths`` (multi-tile in K and N, and not multiples of the partition), ``runs``
    sub-batches of 1 to 23 random items each."""
    slots = {}
    for p in range(1 << mode):
        dims = [int(v) for v in rng.choice(widths, size=int(rng.integers(2, 5)))]
        layers = random_layers(rng, dims)
        xs = [rng.integers(-128, 128, (int(rng.integers(1, min(24, cfg.sub_batch + 1))),
                                       dims[0])) for _ in range(runs)]
        slots[p] = layers_job(cfg, p, mode, layers, xs, name=f"dims {dims}")
    return slots


def write_jobs(path, mode, slots) -> Path:
    path = Path(path)
    with open(path, "wb") as f:
        pickle.dump({"mode": mode, "slots": slots}, f)
    return path
