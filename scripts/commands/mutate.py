"""``rpaccel mutate``: mutation testing of the RTL on Dask, JSON report."""

from __future__ import annotations

import json
import sys

from .common import models_dir


def run(args) -> int:
    from ...sim.mutate import TARGETS, mutate

    if args.list:
        for t in TARGETS.values():
            print(f"{t.block:16} {t.source:22} {' '.join(t.tests)}")
        return 0
    rep = mutate(args.block, args.per_block, args.seed, args.scheduler, args.workers,
                 models_dir(args.models), args.workdir, args.out, cache=args.cache,
                 fresh=args.fresh, cached_only=args.cached_only,
                 log=lambda m: print(m, file=sys.stderr))
    summary = {b: {k: v for k, v in p.items() if k not in ("mutants", "survivors", "tests")}
               for b, p in rep["blocks"].items()}
    print(json.dumps({"seed": rep["seed"], "wall_seconds": rep["wall_seconds"],
                      "broken": rep["broken"], "blocks": summary}, indent=2))
    ok = not rep["broken"] and all(p["score"] is not None and p["score"] >= args.min_score
                                   for p in rep["blocks"].values())
    return 0 if ok else 1


def add_parser(sub):
    s = sub.add_parser("mutate", help="mutation testing of the RTL: mutants of each block's "
                       "Amaranth source against its tests (Dask, JSON report)")
    s.add_argument("--block", action="append", metavar="BLOCK",
                   help="a block to mutate (repeatable; default all, see --list)")
    s.add_argument("--list", action="store_true", help="list the blocks and their tests")
    s.add_argument("--per-block", type=int, default=30, help="scored mutants per block")
    s.add_argument("--seed", type=int, default=0, help="sample seed")
    s.add_argument("--min-score", type=float, default=0.9,
                   help="exit 1 when a block scores below this (default 0.9)")
    s.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster)")
    s.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--workdir", help="where mutant trees are built (default build/mutate)")
    s.add_argument("--out", help="write the JSON report here")
    s.add_argument("--cache", help="JSON-lines file of verdicts, resumed from and appended "
                   "to (default WORKDIR/results.jsonl)")
    s.add_argument("--cached-only", action="store_true",
                   help="run nothing: report the verdicts the cache holds")
    s.add_argument("--fresh", action="store_true",
                   help="run every mutant again, whatever the cache holds")
    s.set_defaults(func=run)
    return s
