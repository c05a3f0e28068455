"""``rpaccel sim``: real queries through the generated top level against golden."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ...config import CONFIGS, get_config
from .common import console, models_dir


def sim_report(config_name: str, models_dir, n_queries: int = 50, seed: int = 0,
               candidates: int = 100, pipeline=None, sim: str = "verilator", idle: float = 0.0,
               backpressure: float = 0.0, dram_stall: float = 0.0, progress: bool = False,
               ml=None, load: str = "dma", waves: bool = False,
               bench: str = "cocotb", engine_map=None, port: str = "stream") -> dict:
    """Run MovieLens queries through the generated top level and compare with golden
    (``bench``: the cocotb testbench or the native one, `rpaccel.sim.native`;
    ``engine_map``: ``"0,1,1,1"``-like, the stage of each engine; ``port``: the query and
    result streams, or ``"axis"``: the AXI4-Stream ports of `rpaccel.hw.axis`)."""
    from ...runtime import Accelerator, parse_engine_map, parse_stages, quality

    cfg = get_config(config_name)
    if not isinstance(n_queries, int) or n_queries < 1:
        raise ValueError(f"--queries must be a positive integer, not {n_queries!r}")
    stages = parse_stages(pipeline) if pipeline else None
    emap = parse_engine_map(engine_map) if engine_map else None
    acc = Accelerator.from_models(cfg, models_dir, stages, ml=ml, engine_map=emap)
    qs = acc.movielens_queries(acc.ml, n_queries, seed=seed, candidates=candidates)
    batches = [b for b, _ in qs]
    t0 = time.time()
    if progress and bench == "cocotb":
        run, _ = _simulate_with_bar(acc, batches, f"{cfg.name}: queries on {sim}", sim=sim,
                                    idle=idle, backpressure=backpressure,
                                    dram_stall=dram_stall, seed=seed + 1, load=load,
                                    waves=waves, port=port)
    else:
        run, _ = acc.simulate(batches, sim=sim, idle=idle, backpressure=backpressure,
                              dram_stall=dram_stall, seed=seed + 1, load=load, waves=waves,
                              bench=bench, port=port)
    sim_seconds = time.time() - t0
    model = {}
    if idle == 0 and backpressure == 0 and dram_stall == 0:
        from ... import perf

        pred = perf.predict(acc, batches, alone=False)
        model = {"first_query_cycles": pred.queries[0].latency,
                 "throughput_cycles_per_query": round(pred.cycles_per_query, 1),
                 "bottleneck": pred.bottleneck}
        model["error"] = {k: round(model[k] / v - 1, 4) for k, v in (
            ("first_query_cycles", run.latency[0]),
            ("throughput_cycles_per_query", run.total_cycles / len(batches)))}
    pos = [p for _, p in qs]
    hw_q = quality(run.answers, pos)
    gold_q = quality(run.expected, pos)
    lat = np.array(run.latency, float)
    return {
        "config": cfg.name, "pipeline": ",".join(f"{n}:{k}" for n, k in acc.pipeline_spec),
        "engine_map": ["-" if x is None else x for x in acc.engine_map],
        "queries": len(batches), "candidates": candidates, "seed": seed, "simulator": sim,
        "bench": bench, "port": port,
        "mismatches": run.mismatches, "error_flags": int(sum(run.errors)),
        "error_status_ok": run.status_ok, "mixed_error_flags": run.mixed_flags,
        "hr@10": hw_q["hr@10"], "ndcg@10": hw_q["ndcg@10"],
        "golden_hr@10": gold_q["hr@10"], "golden_ndcg@10": gold_q["ndcg@10"],
        "cycles_per_query": {"mean": round(float(lat.mean()), 1),
                             "p95": round(float(np.percentile(lat, 95)), 1)},
        "first_query_cycles": int(run.latency[0]),
        "throughput_cycles_per_query": round(run.total_cycles / len(batches), 1),
        "fclk_mhz": cfg.fclk_mhz, "model_load": load, "model_load_cycles": run.load_cycles,
        "counters": run.counters, "sim_seconds": round(sim_seconds, 1),
        "simulated_cycles_per_second": round(run.counters.get("cycles", 0) / sim_seconds),
        "model": model, "waves": str(run.waves) if run.waves else None,
    }


def _simulate_with_bar(acc, batches, label, **kw):
    """`Accelerator.simulate` with a rich progress bar fed by the testbench."""
    import tempfile
    import threading

    from rich.progress import Progress

    work = Path(tempfile.mkdtemp(prefix="rpaccel-sim-"))
    out = {}

    def target():
        out["r"] = acc.simulate(batches, workdir=work, progress=True, **kw)

    th = threading.Thread(target=target)
    th.start()
    with Progress(console=console(), transient=True) as bar:
        task = bar.add_task(label + " (build, then simulation)", total=len(batches))
        while th.is_alive():
            th.join(1.0)
            try:
                bar.update(task, completed=int((work / "progress").read_text() or 0))
            except (FileNotFoundError, ValueError):
                pass
    if "r" not in out:
        raise RuntimeError(f"simulation failed; see {work / 'sim.log'}")
    return out["r"]


def compare_table(reps):
    """Side-by-side table of `sim_report` results (first one is the reference)."""
    from rich.table import Table

    t = Table(title="RPAccel on Verilator, same MovieLens-100k queries")
    t.add_column("")
    for r in reps:
        t.add_column(f"{r['config']} ({r['pipeline']})", justify="right")
    rows = [("mismatches vs golden int8", "mismatches", "{}"),
            ("HR@10 hardware", "hr@10", "{:.4f}"), ("HR@10 golden", "golden_hr@10", "{:.4f}"),
            ("NDCG@10 hardware", "ndcg@10", "{:.4f}"),
            ("NDCG@10 golden", "golden_ndcg@10", "{:.4f}")]
    for label, key, fmt in rows:
        t.add_row(label, *[fmt.format(r[key]) for r in reps])
    t.add_row("latency cycles/query (mean)",
              *[f"{r['cycles_per_query']['mean']:,.0f}" for r in reps])
    t.add_row("latency cycles/query (p95)",
              *[f"{r['cycles_per_query']['p95']:,.0f}" for r in reps])
    t.add_row("first query alone, cycles", *[f"{r['first_query_cycles']:,}" for r in reps])
    t.add_row("throughput cycles/query", *[f"{r['throughput_cycles_per_query']:,.0f}"
                                           for r in reps])
    if all(r.get("model") for r in reps):
        t.add_row("model: first query alone (error)",
                  *[f"{r['model']['first_query_cycles']:,} "
                    f"({r['model']['error']['first_query_cycles']:+.1%})" for r in reps])
        t.add_row("model: throughput cycles/query (error)",
                  *[f"{r['model']['throughput_cycles_per_query']:,.0f} "
                    f"({r['model']['error']['throughput_cycles_per_query']:+.1%})"
                    for r in reps])
        t.add_row("model: bottleneck", *[r["model"]["bottleneck"] for r in reps])
    return t


def run(args) -> int:
    rep = sim_report(args.config, models_dir(args.models), args.queries, args.seed,
                     args.candidates, args.pipeline, args.sim, args.idle, args.backpressure,
                     args.dram_stall, progress=not args.json and sys.stderr.isatty(),
                     load=args.load, waves=args.waves, bench=args.bench,
                     engine_map=args.engine_map, port=args.port)
    text = json.dumps(rep, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    good = rep["mismatches"] == 0 and rep["error_status_ok"] and rep["mixed_error_flags"] == 0
    return 0 if good else 1


def add_parser(sub):
    s = sub.add_parser("sim", help="real queries through the generated top level vs golden")
    s.add_argument("--config", default="default", help=f"one of {sorted(CONFIGS)}")
    s.add_argument("--queries", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--candidates", type=int, default=100, help="candidates per query")
    s.add_argument("--pipeline", help="MODEL:K per stage, e.g. small:16,large:10 "
                   "(default: by the config's number of stages)")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--engine-map", help="the stage each MLP engine serves, e.g. 0,1,1,1 "
                   "('-': none; default: engine e serves stage e, extra engines the last "
                   "stage)")
    s.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    s.add_argument("--idle", type=float, default=0.0, help="idle probability, query stream")
    s.add_argument("--backpressure", type=float, default=0.0)
    s.add_argument("--dram-stall", type=float, default=0.0)
    s.add_argument("--load", default="dma", choices=["dma", "stream"],
                   help="model load: from DRAM by the model loader (CSR-started), or "
                   "streamed in by the testbench")
    s.add_argument("--json", action="store_true", help="(always JSON)")
    s.add_argument("--out", help="also write the JSON here")
    s.add_argument("--waves", action="store_true",
                   help="waveform of the run, FST or VCD (a separate traced build; also "
                   "WAVES=1)")
    s.add_argument("--bench", default="cocotb", choices=["cocotb", "native"],
                   help="the cocotb testbench, or the native one (the same stimulus and "
                   "checks in Verilog: no Python per cycle, Verilator, model loaded by DMA)")
    s.add_argument("--port", default="stream", choices=["stream", "axis"],
                   help="the query / result streams, or the AXI4-Stream ports (packets of "
                   "byte records, tkeep / tlast: block rpaccel_axis; cocotb bench)")
    s.set_defaults(func=run)
    return s
