"""``rpaccel lint``: the Verilator lint gate of generated designs."""

from __future__ import annotations

import sys

from ...blocks import BLOCKS, get_block
from ...config import get_config
from .common import emit


def run(args) -> int:
    from ...sim.lint import WAIVERS, lint_block

    blocks = args.block or sorted(BLOCKS)
    configs = [get_config(c) for c in (args.config or ["default"])]  # validated first
    for b in blocks:
        get_block(b, param="--block")
    reports = []
    for cfg in configs:
        for b in blocks:
            r = lint_block(b, cfg)
            reports.append(r)
            if not args.json:
                state = "clean" if not r["warnings"] else \
                    ", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items()))
                print(f"{b} ({cfg.name}): {state}", file=sys.stderr)
                for w in r["warnings"][:20]:
                    print(f"  {w['rule']}: {w['file']}:{w['line']}: {w['message']}",
                          file=sys.stderr)
    bad = sum(len(r["warnings"]) for r in reports)
    if args.json:
        emit({"waivers": str(WAIVERS), "warnings": bad, "reports": reports}, True)
    else:
        print(f"verilator --lint-only -Wall ({WAIVERS.name} waivers): {len(reports)} designs, "
              f"{bad} warnings", file=sys.stderr)
    return 1 if bad else 0


def add_parser(sub):
    s = sub.add_parser("lint", help="verilator --lint-only -Wall of generated designs (a gate: "
                       "exit 1 on any warning the waivers in sim/lint.vlt do not cover)")
    s.add_argument("--config", action="append", help="config (repeatable; default: default)")
    s.add_argument("--block", action="append", help="block (repeatable; default: all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run)
    return s
