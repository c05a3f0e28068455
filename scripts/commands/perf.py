"""``rpaccel perf``: the cycle model of the accelerator at the paper's scale beside measured
CPU / GPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ...config import get_config
from .common import emit, models_dir


def perf_table(rep: dict):
    """The ``rpaccel perf`` summary: the accelerator rows, then the measured alternatives."""
    from rich.table import Table

    t = Table(title=f"{rep['workload']}: model of the accelerator ({rep['date']}) beside "
              "measured CPU / GPU")
    for c in ("system", "pipeline", "latency alone", "throughput", f"QPS at p95 <= "
              f"{rep['p95_target_ms']:g} ms", "compute limit", "bottleneck"):
        t.add_column(c)
    for r in rep["rows"]:
        t.add_row(f"{r['design']} ({r['config']}, {r['fclk_mhz']:g} MHz)", r["pipeline"],
                  f"{r['latency_us']:,.1f} us", f"{r['qps']:,.0f} QPS",
                  f"{r['saturation_qps_p95']:,.0f}", f"{r['compute_limit_us']:,.1f} us",
                  r["bottleneck"])
    for a in rep["alternatives"]:
        sat = a.get("saturation_qps_p95_batched", a.get("saturation_qps_p95", 0))
        t.add_row(f"{a['device']} {a['mode']} {a['dtype']} (measured)", a["pipeline"],
                  f"{a['p50_ms'] * 1000:,.1f} us p50", f"{a['best_qps'] or 0:,.0f} QPS "
                  f"(batch {a['best_batch']})", f"{sat:,.0f}", "", "")
    for pipe, art in rep.get("artifact", {}).items():
        if art["model_latency_ms"]:
            t.add_row(f"RecPipe artifact model ({art['units']})", pipe,
                      f"{art['model_latency_ms'] * 1000:,.0f} us", "", "", "", "")
    tg = rep.get("targets")
    if tg:
        t.caption = f"issue 16's targets ({tg['design']}, {tg['pipeline']}): " + "; ".join(
            f"{k} {v['value']} ({v['goal']}: {'met' if v['met'] else 'not met'})"
            for k, v in tg.items() if isinstance(v, dict))
    return t


def _overrides(items) -> dict:
    """``["sub_batch=512", "fclk_mhz=200"]`` -> ``{"sub_batch": 512, "fclk_mhz": 200.0}``,
    each value of its field's type."""
    from ...config import RPAccelConfig

    types = {f: type(v) for f, v in RPAccelConfig().to_dict().items()}
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or key not in types or key == "name":
            raise ValueError(f"--set must be FIELD=VALUE with FIELD a config field, not "
                             f"{item!r}")
        kind = types[key]
        try:
            out[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
        except ValueError:
            raise ValueError(f"--set {key} must be a {kind.__name__}, not {value!r}") from None
    return out


def run(args) -> int:
    from tqdm import tqdm

    from ...workloads import PIPELINES
    from ..perf_report import report, write_plots

    if args.workload not in PIPELINES:
        raise ValueError(f"workload must be one of {sorted(PIPELINES)}, not {args.workload!r}")
    get_config(args.config)
    base = None if args.baseline == "none" else args.baseline
    if base is not None:
        get_config(base)
    n_rows = len(PIPELINES[args.workload]) + (1 if base else 0)
    with tqdm(total=n_rows, desc=f"perf {args.workload}", unit="design",
              file=sys.stderr, disable=args.quiet) as bar:
        rep = report(args.workload, args.config, base, args.queries, models_dir(args.models),
                     rows=args.rows, target_ms=args.p95_target, candidates=args.candidates,
                     overrides=_overrides(args.set),
                     progress=lambda r: (bar.set_postfix_str(f"{r['design']} "
                                                             f"{r['pipeline']}"),
                                         bar.update()))
    if args.plots:
        rep["plots"] = write_plots(rep, args.plots)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rep, indent=2))
    emit(rep, args.json, perf_table(rep))
    return 0


def add_parser(sub):
    s = sub.add_parser("perf", help="cycle model of the accelerator at the paper's scale "
                       "beside measured CPU / GPU and RecPipe's artifact")
    s.add_argument("--config", default="paper", help="the accelerator design (paper)")
    s.add_argument("--baseline", default="paper-baseline",
                   help="the prior-art design beside it (paper-baseline, or none)")
    s.add_argument("--workload", default="recpipe-criteo", help="recpipe-criteo or ml100k")
    s.add_argument("--queries", type=int, default=4,
                   help="queries modelled back to back per pipeline")
    s.add_argument("--rows", type=int, help="Criteo table rows (default 100,000)")
    s.add_argument("--candidates", type=int,
                   help="candidates per query (default: 4096 Criteo, 1000 MovieLens)")
    s.add_argument("--models", help="model directory for ml100k (default build/models)")
    s.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="change a config field of the designs (repeatable), e.g. "
                   "--set sub_batch=512")
    s.add_argument("--p95-target", type=float, default=10.0,
                   help="p95 latency target (ms) of the saturation throughput")
    s.add_argument("--plots", help="write the PNG figures into this folder")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true")
    s.add_argument("--out", help="also write the JSON here")
    s.set_defaults(func=run)
    return s
