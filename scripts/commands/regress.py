"""``rpaccel regress``: long random regression of the top level on Dask."""

from __future__ import annotations

import json
import sys

from .common import models_dir


def _suite():
    from ...sim.regress import SUITE

    return SUITE


def run(args) -> int:
    from ...sim.regress import regress

    suite = _suite()
    if args.config:
        names = {e.name: e for e in suite}
        for n in args.config:
            if n not in names:
                raise ValueError(f"--config must be one of {sorted(names)}, not {n!r}")
        suite = tuple(names[n] for n in args.config)
    rep = regress(suite, args.queries, args.chunk, args.seed, args.scheduler, args.workers,
                  models_dir(args.models), out=args.out,
                  log=lambda m: print(m, file=sys.stderr))
    summary = {k: v for k, v in rep.items() if k not in ("runs", "suite")}
    print(json.dumps(summary, indent=2))
    return 0 if rep["mismatch_free"] else 1


def add_parser(sub):
    s = sub.add_parser("regress", help="long random regression of the top level on Dask "
                       "(native testbench, JSON report)")
    s.add_argument("--queries", type=int, default=1000, help="queries per configuration")
    s.add_argument("--chunk", type=int, default=25, help="queries per testbench run")
    s.add_argument("--config", action="append", metavar="ENTRY",
                   help=f"suite entries to run (repeatable; default all: "
                   f"{', '.join(e.name for e in _suite())})")
    s.add_argument("--seed", type=int, help="master seed (default: drawn and printed)")
    s.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster)")
    s.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--out", help="write the JSON report here")
    s.set_defaults(func=run)
    return s
