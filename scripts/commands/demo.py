"""``rpaccel demo``: the main job: quality, the whole accelerator on Verilator, the paper-
scale model."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ...blocks import BLOCKS
from .common import console, models_dir
from .perf import perf_table
from .quality import DEFAULT_PIPELINES, quality_rows, quality_table
from .sim import compare_table, sim_report
from .verify import verify_block, verify_stages


def _demo_blocks(con, args) -> bool:
    """The blocks one by one through their cocotb testbenches (``demo --blocks``)."""
    from ...sim.runner import simulator_available

    con.print("2. blocks through the flow: generated Verilog vs golden, random stimulus, "
              "30% idle input, 30% output backpressure")
    sims = ["verilator"] + (["icarus"] if simulator_available("icarus") else [])
    ok = True
    for spec in BLOCKS.values():
        if not spec.testbench:
            continue
        block = spec.name
        for sim in sims if block == "requant" else sims[:1]:
            params = {"beats": args.beats} if block == "requant" else {}
            res = verify_block(block, "default", sim, **params)
            good = res["failures"] == 0 and res["tests"] > 0
            ok &= good
            con.print(f"   {block:13s} {sim:9s}: {res['tests']} cocotb tests, "
                      f"{res['failures']} failures; {spec.stimulus} "
                      f"[{'PASS' if good else 'FAIL'}]")
    if "icarus" not in sims:
        con.print("   icarus: not installed, skipped")
    con.print("3. trained stage models on the MLP engine: small on partition 0 and large on "
              "partition 1 at once, real MovieLens-100k candidates")
    res = verify_stages(models_dir(args.models))
    good = res["failures"] == 0 and res["tests"] > 0
    ok &= good
    for part in res["partitions"]:
        con.print(f"   {part['model']:6s}: {res['items']} items bit-exact in "
                  f"{part['cycles']:,} cycles ({part['macs']:,} MACs) "
                  f"[{'PASS' if good else 'FAIL'}]")
    return ok


def run(args) -> int:
    from tqdm import tqdm

    con = console()
    t_start = time.time()
    con.rule("RPAccel kit demo")
    con.print("1. golden pipelines on MovieLens-100k (float and bit-exact int8): quality")
    with tqdm(total=2 * len(DEFAULT_PIPELINES) + 3, desc="   quality (every held-out rating "
              "x 1000 candidates)", unit="eval", file=sys.stderr) as bar:
        rows = quality_rows(models_dir(args.models), n_queries=args.queries,
                            progress=lambda r: bar.update())
    con.print(quality_table(rows))
    base = next(r for r in rows if r["pipeline"] == "large:10" and r["precision"] == "int8")
    two = next(r for r in rows if r["pipeline"] == DEFAULT_PIPELINES[3]
               and r["precision"] == "int8")
    con.print(f"   2-stage small->large vs 1-stage large (int8): HR@10 {two['hr@10']:.4f} vs "
              f"{base['hr@10']:.4f} at {two['macs_per_query'] / base['macs_per_query']:.1%} "
              f"of the MACs")
    ok = True
    step = 2
    if args.blocks:
        ok &= _demo_blocks(con, args)
        step = 4
    con.print(f"{step}. the whole accelerator (generated Verilog, Verilator): "
              f"{args.sim_queries} real queries of 100 candidates, default (2 stages: small "
              "keeps 16 on partition 0, large keeps 10 on partition 1) vs baseline (1 stage: "
              "large on the monolithic array); the cycle model (rpaccel.perf) beside the RTL")
    reps = [sim_report(name, models_dir(args.models), args.sim_queries, seed=0,
                       progress=True) for name in ("baseline", "default")]
    con.print(compare_table(reps))
    b, d = reps
    lat1 = b["first_query_cycles"] / d["first_query_cycles"]
    thr = b["throughput_cycles_per_query"] / d["throughput_cycles_per_query"]
    con.print(f"   default vs baseline: {lat1:.2f}x lower latency for a query alone, {thr:.2f}x "
              f"the throughput, HR@10 {d['hr@10']:.4f} vs {b['hr@10']:.4f} on these queries "
              "(paper, RPAccel vs baseline: 3x latency, 6x throughput at iso-quality)")
    good = all(r["mismatches"] == 0 and r["error_status_ok"] and r["mixed_error_flags"] == 0
               for r in reps)
    ok &= good
    con.print(f"   mismatches: {', '.join(str(r['mismatches']) for r in reps)} "
              f"[{'PASS' if good else 'FAIL'}]")
    step += 1
    con.print(f"{step}. at the paper's scale (model calibrated against Verilator, "
              "docs/performance.md): RecPipe's Criteo pipelines, 4096 candidates, 26 tables, "
              "128x128 array at 125 MHz, beside PyTorch measured on a CPU and an H200 GPU")
    from ..perf_report import report, write_plots

    with tqdm(total=4, desc="   perf model, paper scale", unit="design",
              file=sys.stderr) as bar:
        rep = report("recpipe-criteo", "paper", "paper-baseline", n_queries=args.perf_queries,
                     progress=lambda r: bar.update())
    plots = write_plots(rep, Path(args.out) / "plots")
    Path(args.out, "perf-recpipe-criteo.json").write_text(json.dumps(rep, indent=2))
    con.print(perf_table(rep))
    worst = max(rep["rows"], key=lambda r: r["latency_us"] / r["compute_limit_us"])
    con.print(f"   the model names the bottleneck: {worst['pipeline']} on {worst['design']} "
              f"takes {worst['latency_us'] / worst['compute_limit_us']:.0f}x its compute limit "
              f"({worst['bottleneck']}); plots: {', '.join(plots)}")
    con.print(f"demo done in {time.time() - t_start:.0f} s [{'PASS' if ok else 'FAIL'}]")
    return 0 if ok else 1


def add_parser(sub):
    s = sub.add_parser("demo", help="the main job: quality, verified blocks, baseline vs "
                       "default on Verilator")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--queries", type=int,
                   help="first N users only (default all 943; one query per held-out rating)")
    s.add_argument("--beats", type=int, default=2000)
    s.add_argument("--sim-queries", type=int, default=4,
                   help="queries through the top level per config")
    s.add_argument("--perf-queries", type=int, default=2,
                   help="queries the paper-scale model runs per pipeline")
    s.add_argument("--blocks", action="store_true",
                   help="also run every block's testbench (make test does; +10 min)")
    s.add_argument("--out", default=str(Path("build") / "demo"),
                   help="folder of the demo's JSON and plots")
    s.set_defaults(func=run)
    return s
