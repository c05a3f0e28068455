"""``rpaccel fpga``: the per-block model of ECP5 resources (`rpaccel.fpga`): estimate a
configuration, or calibrate the model on Yosys runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import emit, models_dir


def _table(name: str, est: dict):
    from rich.table import Table

    from ...fpga import DEVICES

    t = Table(title=f"{name}: modelled ECP5 resources (Yosys estimate, per block)")
    res = ("lut", "ff", "dsp", "lutram")
    for c in ("block", *res):
        t.add_column(c, justify="right")
    for b, v in est["blocks"].items():
        t.add_row(b, *(str(v[r]) for r in res))
    t.add_row("total", *(str(est[r]) for r in res))
    t.caption = (f"block RAMs (DP16KD): {est['bram']}; fits (20% LUTs free): "
                 + ", ".join(f"{d} {'yes' if est['fits'][d] else 'no'} "
                             f"({est['lut'] / DEVICES[d]['lut']:.0%} LUTs)" for d in DEVICES))
    return t


def run(args) -> int:
    from ... import fpga
    from ...config import get_config

    if args.action == "estimate":
        est = fpga.estimate(get_config(args.config))
        emit(est, args.json, _table(args.config, est))
        return 0
    rep = fpga.calibrate(fpga.calibration_runs(models_dir(args.models)),
                         scheduler=args.scheduler,
                         workers=args.workers, timeout_s=args.timeout,
                         log=lambda m: print(m, file=sys.stderr), progress=not args.quiet)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rep, indent=1) + "\n")
    if args.write_model:
        print(f"coefficients written to {fpga.write_coefficients(rep)}", file=sys.stderr)
    emit({k: rep[k] for k in ("fit_error", "error", "failed", "coefficients")}, True)
    return 0


def add_parser(sub):
    s = sub.add_parser("fpga", help="modelled ECP5 resources of a configuration (estimate), "
                       "or the model's calibration on Yosys runs (calibrate; Dask)")
    s.add_argument("action", choices=["estimate", "calibrate"])
    s.add_argument("--config", default="fpga-ecp5", help="estimate: a named configuration")
    s.add_argument("--models", help="calibrate: model directory (default build/models)")
    s.add_argument("--scheduler", help="calibrate: Dask scheduler (default: a local cluster)")
    s.add_argument("--workers", type=int, help="calibrate: local workers (default one per "
                   "core)")
    s.add_argument("--timeout", type=float, help="calibrate: seconds a Yosys run may take")
    s.add_argument("--out", help="calibrate: write the report (runs, fit, leave-one-out "
                   "errors) here")
    s.add_argument("--write-model", action="store_true",
                   help="calibrate: store the coefficients where `estimate` reads them "
                   "(rpaccel/fpga_model.json)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run)
    return s
