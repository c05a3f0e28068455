"""``rpaccel models``: train and quantize the small / medium / large stage models."""

from __future__ import annotations

import sys
import time

from .common import models_dir


def run(args) -> int:
    from ...golden.train import build_models

    t0 = time.time()
    kw = {} if args.epochs is None else {"epochs": args.epochs}
    qs = build_models(models_dir(args.models), force=args.force,
                      log=lambda s: print(s, file=sys.stderr), **kw)
    for name, q in qs.items():
        print(f"{name}: {q.macs_per_item()} MACs/item, score scale {q.score_scale:.3g}",
              file=sys.stderr)
    print(f"models ready in {models_dir(args.models)} ({time.time() - t0:.0f} s)",
          file=sys.stderr)
    return 0


def add_parser(sub):
    s = sub.add_parser("models", help="train and quantize small/medium/large stage models")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--epochs", type=int,
                   help="training epochs (default: the recipe's, rpaccel.golden.train.RECIPE)")
    s.add_argument("--force", action="store_true", help="retrain even if present")
    s.set_defaults(func=run)
    return s
