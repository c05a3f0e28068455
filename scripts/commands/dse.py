"""``rpaccel dse``: design-space exploration over the cycle model, area and quality."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import emit, models_dir


def dse_table(rep: dict):
    """The chosen design per paper load."""
    from rich.table import Table

    t = Table(title=f"{rep['workload']}: best iso-quality design per load "
              f"({rep['points']} points x {len(rep['space']['fclk_mhz'])} clocks; "
              f"{rep['best_per_load']['iso_quality']['rule']})")
    for c in ("load", "choice", "pipeline", "array / partitions / engines", "clock",
              "p95", "area", "quality"):
        t.add_column(c)
    qk = "hr@10" if rep["workload"] == "ml100k" else "ndcg@64_label"
    for load in ("low", "medium", "high"):
        e = rep["best_per_load"][load]
        for what in ("lowest_p95", "smallest_meeting_target", "lowest_p95_equal",
                     "lowest_p95_unequal", "lowest_p95_ecp5_85f"):
            d = e.get(what)
            if not d:
                continue
            t.add_row(f"{load} ({e['qps']:g} QPS)", what.replace("_", " "), d["pipeline"],
                      f"{d['side']}x{d['side']} / {d['partitions']} / "
                      f"{','.join(map(str, d['engine_map']))}", f"{d['fclk_mhz']:g} MHz",
                      f"{d[f'p95_{load}_ms']:.3f} ms", f"{d['area_mm2']:.1f} mm2",
                      f"{d.get(qk)}")
    return t


def spot_checks(rep: dict, n: int, max_side: int, models) -> list[dict]:
    """The ``n`` smallest distinct configurations on any Pareto front (arrays up to
    ``max_side``) on Verilator beside the model."""
    from ...dse import point_of, spot_check

    keys = {k.rsplit("@", 1)[0] for front in rep["pareto"].values() for k in front}
    rows = sorted((d for d in rep["designs"] if d["key"] in keys and d["side"] <= max_side),
                  key=lambda d: d["area_mm2"])
    out, seen = [], set()
    for d in rows:
        if d["key"] in seen or len(out) >= n:
            continue
        seen.add(d["key"])
        r = spot_check(point_of(d), models)
        print(f"spot check {r['pipeline']} {d['side']}x{d['side']}: latency model "
              f"{r['latency_model']} RTL {r['latency_rtl']} ({r['latency_error']:+.2%}), "
              f"total {r['total_model']} / {r['total_rtl']} ({r['total_error']:+.2%}), "
              f"{len(r['problems'])} problems", file=sys.stderr)
        out.append(r)
    return out


def run(args) -> int:
    from ...dse import sweep, write_plots

    rep = sweep(args.workload, args.points, args.seed,
                models_dir(args.models) if args.workload == "ml100k" else None,
                cache=args.cache, scheduler=args.scheduler, workers=args.workers,
                queries=args.queries, p95_target_ms=args.p95_target,
                log=lambda m: print(m, file=sys.stderr), progress=not args.quiet)
    if args.workload == "recpipe-criteo" and not args.no_heterogeneous:
        from ...dse import heterogeneous

        rep["heterogeneous"] = heterogeneous(log=lambda m: print(m, file=sys.stderr))
    if args.spot_check:
        rep["spot_checks"] = spot_checks(rep, args.spot_check, args.max_side,
                                         models_dir(args.models)
                                         if args.workload == "ml100k" else None)
    def save():
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(rep, separators=(",", ":")) + "\n")

    save()  # before the figures: a figure that fails loses no report
    if args.plots:
        rep["plots"] = write_plots(rep, args.plots)
        save()
    emit({k: v for k, v in rep.items() if k not in ("designs",)}, args.json, dse_table(rep))
    if "heterogeneous" in rep and not args.json:
        from .common import console

        console().print(heterogeneous_table(rep["heterogeneous"]))
    return 0


def heterogeneous_table(het: dict):
    """The scheduler's best stage-to-platform mapping per pipeline and load."""
    from rich.table import Table

    t = Table(title="RecPipe's scheduler: p95 (ms) of the best stage-to-platform mapping "
              "per load, beside one platform for every stage (None: not sustained)")
    for c in ("pipeline", "load", "best mapping", "best p95", "all CPU", "all GPU",
              "all RPAccel"):
        t.add_column(c)
    for pname, p in het["pipelines"].items():
        for load, b in p["best"].items():
            t.add_row(pname, load, " -> ".join(b["mapping"]) if b else "none",
                      f"{b['p95_ms'][load]}" if b else "-",
                      *(f"{p[k]['p95_ms'][load]}" for k in ("all_cpu", "all_gpu",
                                                             "all_rpaccel")))
    return t


def add_parser(sub):
    s = sub.add_parser("dse", help="design-space exploration: sampled designs through the "
                       "cycle model, GF12 area and golden quality; Pareto fronts, best "
                       "design per load (Dask)")
    s.add_argument("--workload", default="ml100k", help="ml100k or recpipe-criteo")
    s.add_argument("--points", type=int, default=500,
                   help="configurations to model (each reported at every clock)")
    s.add_argument("--seed", type=int, default=0, help="seed of the sample")
    s.add_argument("--queries", type=int, default=2,
                   help="queries modelled back to back per point (at least 2)")
    s.add_argument("--p95-target", type=float, default=10.0,
                   help="p95 target (ms) of the saturation throughput and the smallest "
                   "design per load")
    s.add_argument("--cache", help="JSONL result cache (default build/dse/WORKLOAD.jsonl)")
    s.add_argument("--scheduler", help="Dask scheduler address (default: a local cluster)")
    s.add_argument("--workers", type=int, help="local cluster workers (default: one per core)")
    s.add_argument("--models", help="model directory for ml100k (default build/models)")
    s.add_argument("--plots", help="write the PNG fronts into this folder")
    s.add_argument("--no-heterogeneous", action="store_true",
                   help="recpipe-criteo: skip RecPipe's CPU / GPU / RPAccel stage scheduler")
    s.add_argument("--spot-check", type=int, default=0, metavar="N",
                   help="run the N smallest Pareto configurations on Verilator beside the "
                   "model (native testbench)")
    s.add_argument("--max-side", type=int, default=16,
                   help="largest array side a spot check builds (Verilator time)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true")
    s.add_argument("--out", help="also write the JSON report here")
    s.set_defaults(func=run)
    return s
