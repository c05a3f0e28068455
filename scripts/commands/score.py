"""``rpaccel score``: score a batch with a stage model (float or bit-exact int8)."""

from __future__ import annotations

import sys

import numpy as np


def run(args) -> int:
    from ...golden.model import load_batch, load_model
    from ...golden.quantize import load_quantized

    model = load_quantized(args.model) if args.int8 else load_model(args.model)
    batch = load_batch(args.batch)
    scores = model.forward(batch)
    out = scores.astype(np.int32) if args.int8 else scores.astype(np.float32)
    np.save(args.out, out)
    print(f"scored {batch.size} items -> {args.out} ({out.dtype})", file=sys.stderr)
    return 0


def add_parser(sub):
    s = sub.add_parser("score", help="score a batch with a stage model")
    s.add_argument("--model", required=True, help="model .npz/.pt (DLRM state-dict names)")
    s.add_argument("--batch", required=True, help="batch .npz: dense, indices_t, offsets_t")
    s.add_argument("--int8", action="store_true", help="bit-exact int8 path (integer logits)")
    s.add_argument("--out", required=True, help="output .npy")
    s.set_defaults(func=run)
    return s
