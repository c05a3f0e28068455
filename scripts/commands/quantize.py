"""``rpaccel quantize``: quantize a float model with a calibration batch."""

from __future__ import annotations

import sys


def run(args) -> int:
    from ...golden.model import load_batch, load_model
    from ...golden.quantize import quantize_model, save_quantized

    save_quantized(args.out, quantize_model(load_model(args.model), load_batch(args.calib)))
    print(f"int8 model -> {args.out}", file=sys.stderr)
    return 0


def add_parser(sub):
    s = sub.add_parser("quantize", help="quantize a float model with a calibration batch")
    s.add_argument("--model", required=True)
    s.add_argument("--calib", required=True, help="calibration batch .npz")
    s.add_argument("--out", required=True)
    s.set_defaults(func=run)
    return s
