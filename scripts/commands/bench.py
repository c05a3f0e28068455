"""``rpaccel bench``: benchmarks from RTL simulation, synthesis and the performance model (JSON)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .common import emit, int_list, models_dir
from .sim import sim_report

#: (config, pipeline) points of `bench_top`: the baseline, the default pipeline (stage 0
#: keeps 16), and stage 0 keeping 20 and 32 (the golden HR@10 of both equals the
#: baseline's within its paired standard error on every held-out query; 16's is lower)
TOP_POINTS = (("baseline", None), ("default", None), ("default", "small:20,large:10"),
              ("default", "small:32,large:10"))


def iso_quality(models_dir, specs, reference: str, candidates: int = 100,
                users=None) -> dict:
    """Golden int8 HR@10 of each pipeline in ``specs`` minus ``reference``'s on the same
    MovieLens queries (every held-out rating of ``users``, default all 943, against
    ``candidates - 1`` sampled negatives): ``{spec: {"hr@10", "diff", "se", "equal"}}``,
    ``equal`` when the paired difference is smaller than its standard error."""
    from ...golden.data import load_ml100k
    from ...golden.pipeline import evaluate, paired_difference, parse_pipeline
    from ...golden.train import build_models

    qm = build_models(Path(models_dir), log=lambda s: None)
    ml = load_ml100k()
    qs = ml.queries(candidates, seed=0, users=users, every_held_out=True)
    ref = evaluate(parse_pipeline(reference, qm), ml, qs, ranks=True)
    out = {}
    for spec in specs:
        r = ref if spec == reference else evaluate(parse_pipeline(spec, qm), ml, qs,
                                                   ranks=True)
        # the verdict on the unrounded difference and error (they round alike near 1 SE)
        diff, se = paired_difference(r["ranks"], ref["ranks"], digits=None)
        out[spec] = {"hr@10": r["hr@10"], "diff": round(diff, 4), "se": round(se, 4),
                     "queries": len(qs), "equal": abs(diff) < se or (diff == 0 and se == 0)}
    return out


def bench_top(models_dir, n_queries: int, points=TOP_POINTS, log=print) -> dict:
    """The same real queries through each (config, pipeline) on Verilator (the native
    testbench); latency and throughput ratios against the first point (the baseline), the
    quality of each on these queries and, golden, on every held-out query (`iso_quality`)."""
    reps = []
    for name, pipeline in points:
        log(f"bench top: {name} {pipeline or '(default pipeline)'}, {n_queries} queries")
        reps.append(sim_report(name, models_dir, n_queries, seed=0, pipeline=pipeline,
                               bench="native"))
    base = reps[0]
    log("bench top: golden quality of each pipeline on every held-out query")
    iso = iso_quality(models_dir, [r["pipeline"] for r in reps], base["pipeline"])
    ratios = {}
    for r in reps[1:]:
        ratios[f"{r['config']} {r['pipeline']}"] = {
            "iso_quality": iso[r["pipeline"]],
            "latency_speedup": round(base["cycles_per_query"]["mean"]
                                     / r["cycles_per_query"]["mean"], 3),
            "unloaded_latency_speedup": round(base["first_query_cycles"]
                                              / r["first_query_cycles"], 3),
            "throughput_speedup": round(base["throughput_cycles_per_query"]
                                        / r["throughput_cycles_per_query"], 3),
            "hr@10_delta": round(r["hr@10"] - base["hr@10"], 4),
            "ndcg@10_delta": round(r["ndcg@10"] - base["ndcg@10"], 4)}
    return {"bench": "top", "queries": n_queries, "reference": base["config"],
            "rows": reps, "vs_reference": ratios, "reference_quality": iso[base["pipeline"]],
            "paper": "RPAccel vs baseline accelerator: 3x lower latency, 6x higher "
                     "throughput at iso-quality (ANCHORS.md)"}


def run(args) -> int:
    from ..bench import bench_array, bench_cache, bench_embedding_rtl, bench_topk

    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    if args.what == "cache":
        out = {"bench": "cache",
               "rows": bench_cache(models_dir(args.models), args.queries, log=log),
               "rtl": bench_embedding_rtl(log=log)}
    elif args.what == "array":
        out = {"bench": "array",
               "rows": bench_array(tuple(args.arrays.split(",")), models_dir(args.models),
                                   log=log)}
    elif args.what == "topk":
        out = {"bench": "topk",
               "rows": bench_topk(int_list(args.lanes), int_list(args.k), args.long_n,
                                  synth=not args.no_synth, sim=not args.no_sim,
                                  max_place_luts=args.max_place_luts,
                                  impls=tuple(args.impl.split(",")), log=log)}
    elif args.what == "perf":
        from ..perf_report import bench_perf, write_plots

        out = bench_perf(models_dir=models_dir(args.models), log=log)
        if args.plots:
            out["plots"] = write_plots({"calibration": out["rows"]}, args.plots)
    elif args.what == "fit":
        from ..perf_report import config_tradeoffs

        out = config_tradeoffs(args.config, args.against, models_dir=models_dir(args.models),
                               log=log)
    elif args.what == "top":
        out = bench_top(models_dir(args.models), args.top_queries, log=log)
    else:
        raise ValueError(f"WHAT must be 'array', 'topk', 'cache', 'top', 'perf' or 'fit', not "
                         f"{args.what!r}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
    emit(out, True)
    return 0


def add_parser(sub):
    s = sub.add_parser("bench", help="benchmarks from RTL simulation and synthesis (JSON)")
    s.add_argument("what", help="array, topk, cache, top, perf or fit (what each field of "
                   "--config changed from --against costs in cycles, by the model)")
    s.add_argument("--plots", help="perf bench: write the calibration plot here")
    s.add_argument("--top-queries", type=int, default=20,
                   help="top bench: real queries per point (baseline; default; default "
                   "with stage 0 keeping 20 and 32)")
    s.add_argument("--arrays", default="default,16x16", help="array bench: default, 16x16")
    s.add_argument("--models", help="model directory (cache bench; default build/models)")
    s.add_argument("--queries", type=int, default=200, help="MovieLens queries (cache)")
    s.add_argument("--lanes", default="1,2,4")
    s.add_argument("--k", default="16,64,256")
    s.add_argument("--long-n", type=int, default=4096)
    s.add_argument("--impl", default="queue,heap", help="topk bench: queue, heap or both")
    s.add_argument("--no-synth", action="store_true")
    s.add_argument("--no-sim", action="store_true")
    s.add_argument("--max-place-luts", type=int, default=60000,
                   help="place and route only designs below this Yosys LUT estimate")
    s.add_argument("--config", default="fpga-ecp5", help="fit bench: the sized design")
    s.add_argument("--against", default="default", help="fit bench: the reference design")
    s.add_argument("--json", action="store_true", help="(always JSON)")
    s.add_argument("--out", help="also write the JSON here")
    s.set_defaults(func=run)
    return s
