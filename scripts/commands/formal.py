"""``rpaccel formal``: the formal proofs of the RTL (SymbiYosys + Yices), JSON report."""

from __future__ import annotations

import json
import sys


def _proofs():
    from ...sim.formal_specs import PROOFS

    return PROOFS


def run(args) -> int:
    from ...sim.formal import run_proofs

    if args.list:
        for p in _proofs().values():
            print(f"{p.name:22} {p.mode:5} depth {p.depth:3}  {p.claim}")
        return 0
    try:
        rep = run_proofs(args.proof, args.workdir, args.out, args.scheduler, args.workers,
                         args.timeout, log=lambda m: print(m, file=sys.stderr))
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    summary = {k: v for k, v in rep.items() if k != "results"}
    summary["results"] = [{k: r[k] for k in ("name", "status", "mode", "depth", "seconds",
                                             "failed", "trace")} for r in rep["results"]]
    print(json.dumps(summary, indent=2))
    return 0 if rep["passed"] == rep["proofs"] else 1


def add_parser(sub):
    s = sub.add_parser("formal", help="prove the RTL's formal properties (SymbiYosys, "
                       "k-induction / bounded; JSON report)")
    s.add_argument("--proof", action="append", metavar="NAME",
                   help="a proof to run (repeatable; default all, see --list)")
    s.add_argument("--list", action="store_true", help="list the proofs and exit")
    s.add_argument("--workdir", help="where the proofs run (default build/formal)")
    s.add_argument("--out", help="write the JSON report here")
    s.add_argument("--timeout", type=float, default=900, help="seconds per proof")
    s.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster)")
    s.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    s.set_defaults(func=run)
    return s
