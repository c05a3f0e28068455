"""``rpaccel synth``: synthesis, placement and routing of a block for an FPGA."""

from __future__ import annotations

import json
from pathlib import Path

from ...blocks import get_block
from ...config import get_config
from ..pnr import PLACERS, ROUTERS
from .common import emit


def run(args) -> int:
    from ..synth import breakdown, synthesize

    defaults = get_block(args.block, param="--block").synth
    config = args.config or defaults["config"]
    if args.breakdown:
        res = breakdown(args.block, get_config(config), depth=args.depth)
    else:
        res = synthesize(args.block, get_config(config), args.target or defaults["target"],
                         freq_mhz=args.freq or defaults["freq_mhz"],
                         router=args.router or defaults["router"],
                         placer=args.placer or defaults.get("placer", "heap"),
                         timeout_s=args.timeout, force=args.force)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2))
    emit(res, True)
    return 0


def add_parser(sub):
    s = sub.add_parser("synth", help="synthesize a block for an FPGA (JSON out)")
    s.add_argument("--block", default="requant",
                   help="a block of rpaccel.blocks.BLOCKS (default requant)")
    s.add_argument("--config", help="default: the block's (fpga-ecp5)")
    s.add_argument("--target", help="default: the block's (ecp5-85f)")
    s.add_argument("--freq", type=float,
                   help="nextpnr target MHz (default: the block's, 200: high, so the report "
                   "shows the achievable fmax)")
    s.add_argument("--router", choices=list(ROUTERS),
                   help="nextpnr router (default: the block's; router2 copes better with "
                   "congested designs)")
    s.add_argument("--placer", choices=list(PLACERS),
                   help="nextpnr placer (default: the block's, else heap; static spreads a "
                   "congested design with less wire)")
    s.add_argument("--timeout", type=float,
                   help="seconds for each tool (Yosys, nextpnr); nextpnr stopped while "
                   "routing reports what placement measured (routed: false)")
    s.add_argument("--out", help="also write the JSON here")
    s.add_argument("--force", action="store_true",
                   help="run again even when build/synth holds this exact run (same block, "
                   "config digest, target, clock, placer, router and tool versions)")
    s.add_argument("--breakdown", action="store_true",
                   help="Yosys' estimate per sub-block, hierarchy kept (synth_ecp5 "
                   "-noflatten; nothing placed)")
    s.add_argument("--depth", type=int, default=2,
                   help="sub-block levels below the block in --breakdown (default 2)")
    s.set_defaults(func=run)
    return s
