"""The ``rpaccel`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..config import CONFIGS, ConfigError, get_config

DEFAULT_PIPELINES = (
    "small:10",
    "medium:10",
    "large:10",
    "small:100,large:10",
    "small:300,medium:100,large:10",
)


def _models_dir(arg) -> Path:
    return Path(arg or os.environ.get("RPACCEL_MODELS", Path("build") / "models"))


def _console():
    from rich.console import Console

    # tables need about 120 columns; a pipe or a CI log would otherwise get 80
    return Console() if sys.stdout.isatty() else Console(width=130)


def _emit(obj, as_json: bool, table=None) -> None:
    if as_json:
        print(json.dumps(obj, indent=2))
    elif table is not None:
        _console().print(table)
    else:
        print(json.dumps(obj, indent=2))


# -- golden-model commands ---------------------------------------------------------------
def cmd_fetch(args) -> int:
    from ..golden.data import fetch_ml100k

    print(fetch_ml100k())
    return 0


def cmd_models(args) -> int:
    from ..golden.train import build_models

    t0 = time.time()
    kw = {} if args.epochs is None else {"epochs": args.epochs}
    qs = build_models(_models_dir(args.models), force=args.force,
                      log=lambda s: print(s, file=sys.stderr), **kw)
    for name, q in qs.items():
        print(f"{name}: {q.macs_per_item()} MACs/item, score scale {q.score_scale:.3g}",
              file=sys.stderr)
    print(f"models ready in {_models_dir(args.models)} ({time.time() - t0:.0f} s)",
          file=sys.stderr)
    return 0


def cmd_score(args) -> int:
    from ..golden.model import load_batch, load_model
    from ..golden.quantize import load_quantized

    model = load_quantized(args.model) if args.int8 else load_model(args.model)
    batch = load_batch(args.batch)
    scores = model.forward(batch)
    out = scores.astype(np.int32) if args.int8 else scores.astype(np.float32)
    np.save(args.out, out)
    print(f"scored {batch.size} items -> {args.out} ({out.dtype})", file=sys.stderr)
    return 0


def cmd_quantize(args) -> int:
    from ..golden.model import load_batch, load_model
    from ..golden.quantize import quantize_model, save_quantized

    save_quantized(args.out, quantize_model(load_model(args.model), load_batch(args.calib)))
    print(f"int8 model -> {args.out}", file=sys.stderr)
    return 0


def quality_rows(models_dir, pipelines=DEFAULT_PIPELINES, n_queries=None,
                 candidates: int = 1000, seed: int = 0, log=None, approx: bool = False,
                 progress=None, baselines: bool = True):
    """Evaluate pipelines on MovieLens-100k queries in float and int8 (and, with
    ``approx``, int8 with the approximate histogram filter between stages), after the
    random, popularity and item-kNN baselines on the same queries; ``progress`` is called
    after each evaluation.

    The queries: one per held-out rating (`rpaccel.golden.data.HOLDOUT` per user) of the
    first ``n_queries`` users (all 943 by default), each against ``candidates - 1``
    unrated items.
    """
    from ..golden.baselines import BASELINES, evaluate_baseline
    from ..golden.data import load_ml100k
    from ..golden.pipeline import (
        Pipeline,
        Stage,
        calibrate_window,
        evaluate,
        paired_difference,
        parse_pipeline,
    )
    from ..golden.train import build_models, calibration_batch

    qmodels = build_models(models_dir, log=log or (lambda s: print(s, file=sys.stderr)))
    fmodels = {k: q.float_model for k, q in qmodels.items()}
    ml = load_ml100k()
    users = None if n_queries is None else range(min(n_queries, ml.num_users))
    queries = ml.queries(candidates, seed=seed, users=users, every_held_out=True)
    rows, base = [], {}
    for name in BASELINES if baselines else ():
        base[name] = evaluate_baseline(name, ml, queries, seed=seed, ranks=True)
        rows.append(base[name])
        if progress:
            progress(rows[-1])
    refs = {"popularity": base["popularity"]["ranks"],
            "item_knn": base["item-kNN"]["ranks"]} if base else {}

    def run(pipeline):
        r = evaluate(pipeline, ml, queries, ranks=True)
        for ref, rank in refs.items():  # paired: same queries, per-query hit differences
            r[f"hr@10_vs_{ref}"], r[f"hr@10_vs_{ref}_se"] = paired_difference(r["ranks"], rank)
        rows.append(r)
        if progress:
            progress(r)

    windows = {}
    if approx:
        calib = calibration_batch(ml)
        windows = {k: calibrate_window(q.forward(calib)) for k, q in qmodels.items()}
    for spec in pipelines:
        for models in (fmodels, qmodels):
            run(parse_pipeline(spec, models))
        exact = parse_pipeline(spec, qmodels)
        if approx and len(exact.stages) > 1:
            stages = [Stage(st.model, st.keep, windows[st.model.name]) for st in exact.stages]
            stages[-1].window = None
            run(Pipeline(stages, name=spec))
    for r in rows:
        del r["ranks"]
    return rows


def quality_table(rows):
    from rich.table import Table

    t = Table(title=f"MovieLens-100k quality ({rows[0]['queries']} queries: every held-out "
              "rating, 1000 candidates; +- one standard error, paired for the differences)")
    for c in ("pipeline", "precision", "filter", "hr@1", "hr@5", "hr@10", "ndcg@10",
              "hr@10 - popularity", "hr@10 - item-kNN", "MACs/query"):
        t.add_column(c, justify="left" if c in ("pipeline", "precision", "filter") else "right")

    def vs(r, ref):
        if f"hr@10_vs_{ref}" not in r:
            return "-"
        return f"{r[f'hr@10_vs_{ref}']:+.4f} +- {r[f'hr@10_vs_{ref}_se']:.4f}"

    for r in rows:
        t.add_row(r["pipeline"], r["precision"], r["filter"], f"{r['hr@1']:.4f}",
                  f"{r['hr@5']:.4f}", f"{r['hr@10']:.4f} +- {r.get('hr@10_se', 0):.4f}",
                  f"{r['ndcg@10']:.4f} +- {r.get('ndcg@10_se', 0):.4f}",
                  vs(r, "popularity"), vs(r, "item_knn"), f"{r['macs_per_query']:,}")
    return t


def cmd_quality(args) -> int:
    if args.dataset != "ml100k":
        raise ValueError(f"--dataset must be 'ml100k', not {args.dataset!r}")
    pipelines = args.pipeline or DEFAULT_PIPELINES
    rows = quality_rows(_models_dir(args.models), pipelines, args.queries, args.candidates,
                        args.seed, approx=args.approx)
    _emit(rows, args.json, None if args.json else quality_table(rows))
    return 0


# -- hardware commands ---------------------------------------------------------------------
def core_file(block: str, cfg, verilog_name: str) -> str:
    """A FuseSoC CAPI2 core description of one generated block."""
    vlnv = f"rpaccel:kit:{block}_{cfg.name.replace('-', '_')}:0.1.0"
    return (f"CAPI=2:\n# generated by the RPAccel kit from config {cfg.name!r} "
            f"(digest {cfg.digest()}); see config.json\n"
            f"name: {vlnv}\n"
            f"description: RPAccel {block} ({cfg.array_rows}x{cfg.array_cols} array, "
            f"{cfg.partitions} partitions, {cfg.stages} stages)\n"
            "filesets:\n  rtl:\n    files:\n"
            f"      - {verilog_name}\n    file_type: verilogSource\n"
            "targets:\n  default:\n    filesets: [rtl]\n"
            f"    toplevel: {block}\n")


def cmd_generate(args) -> int:
    from .synth import BLOCKS

    cfg = get_config(args.config)  # validated before anything is written
    if args.block not in BLOCKS:
        raise ValueError(f"--block must be one of {sorted(BLOCKS)}, not {args.block!r}")
    from .. import hw

    text = hw.to_verilog(BLOCKS[args.block](cfg), cfg, args.block)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vname = f"{args.block}.v"
    (out / vname).write_text(text)
    (out / "config.json").write_text(cfg.to_json())
    core = out / f"{args.block}.core"
    core.write_text(core_file(args.block, cfg, vname))
    written = [out / vname, core, out / "config.json"]
    if args.block == "rpaccel":
        from ..hw.embedding import emb_layouts
        from ..hw.mlp_engine import engine_layouts, slot_width
        from ..interface import c_header, csr_regs

        (out / "csr.json").write_text(json.dumps(
            {n: {"addr": a, "access": acc} for n, (a, acc, _) in csr_regs(cfg).items()},
            indent=2))
        beats = {"engine": [engine_layouts(cfg, slot_width(cfg, s))[3].size
                            for s in range(cfg.stages)],
                 "embedding": emb_layouts(cfg)[2].size}
        (out / "rpaccel.h").write_text(c_header(cfg, beats))
        written += [out / "csr.json", out / "rpaccel.h"]
    print(", ".join(map(str, written)) + " written", file=sys.stderr)
    return 0


def cmd_lint(args) -> int:
    from ..sim.lint import WAIVERS, lint_block
    from .synth import BLOCKS

    blocks = args.block or sorted(BLOCKS)
    configs = [get_config(c) for c in (args.config or ["default"])]  # validated first
    for b in blocks:
        if b not in BLOCKS:
            raise ValueError(f"--block must be one of {sorted(BLOCKS)}, not {b!r}")
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
        _emit({"waivers": str(WAIVERS), "warnings": bad, "reports": reports}, True)
    else:
        print(f"verilator --lint-only -Wall ({WAIVERS.name} waivers): {len(reports)} designs, "
              f"{bad} warnings", file=sys.stderr)
    return 1 if bad else 0


#: cocotb testbench module of each block
TESTBENCHES = {"requant": "rpaccel.sim.tb_requant", "topk": "rpaccel.sim.tb_topk",
               "approx_filter": "rpaccel.sim.tb_approx", "mesh": "rpaccel.sim.tb_array",
               "engine": "rpaccel.sim.tb_engine", "embedding": "rpaccel.sim.tb_embedding"}


def verify_block(block: str, config_name: str, sim: str = "verilator", seed: int = 1,
                 idle: float = 0.3, backpressure: float = 0.3, waves: bool = False,
                 **params) -> dict:
    """Run a block's cocotb testbench against golden; returns a result dict (with
    ``waves``, or ``WAVES=1``, the path of its waveform under ``"waves"``)."""
    from ..sim.runner import BUILD_ROOT, build, run
    from .synth import BLOCKS

    if block not in TESTBENCHES:
        raise ValueError(f"block must be one of {sorted(TESTBENCHES)}, not {block!r}")
    cfg = get_config(config_name)
    t0 = time.time()
    sb = build(BLOCKS[block], cfg, block, sim=sim, waves=waves)
    t1 = time.time()
    run_dir = BUILD_ROOT / "runs" / f"{block}-{cfg.name}-{sim}-{seed}"
    if block == "engine":  # random MLPs on every partition of the finest mode, at once
        from ..sim.engine_jobs import random_slots, write_jobs

        run_dir.mkdir(parents=True, exist_ok=True)
        mode = cfg.partitions.bit_length() - 1
        slots = random_slots(cfg, mode, np.random.default_rng(seed))
        params = {"jobs": str(write_jobs(run_dir / "jobs.pkl", mode, slots)), **params}
    if block == "embedding":  # Zipf bags, AXI RAM with random stalls, one bad id
        from ..sim.emb_jobs import random_job

        run_dir.mkdir(parents=True, exist_ok=True)
        params = {"jobs": str(random_job(cfg, run_dir / "jobs.pkl", seed)),
                  "dram_stall": 0.3, **params}
    tests, failed = run(sb, TESTBENCHES[block], run_dir,
                        {"seed": seed, "idle": idle, "backpressure": backpressure, **params},
                        seed=seed)
    wave_file = sb.waves_file(run_dir)
    return {"block": block, "config": cfg.name, "simulator": sim, "idle": idle,
            "backpressure": backpressure, "tests": tests, "failures": failed, **params,
            "build_s": round(t1 - t0, 1), "sim_s": round(time.time() - t1, 1),
            "waves": str(wave_file) if wave_file else None}


def verify_stages(models_dir, sizes=("small", "large"), items: int = 8, seed: int = 1,
                  idle: float = 0.3, backpressure: float = 0.3) -> dict:
    """Run trained stage models (one per partition, all at once) on the `default`
    ComputeEngine on Verilator with real MovieLens-100k candidates; bit-exact check
    against the golden int8 model. Returns per-partition cycles and the verdict."""
    from ..golden.data import load_ml100k
    from ..golden.train import build_models
    from ..hw.mlp_engine import ComputeEngine
    from ..sim.engine_jobs import stage_job, write_jobs
    from ..sim.runner import BUILD_ROOT, build, run

    cfg = get_config("default")
    if len(sizes) > cfg.partitions:
        raise ValueError(f"at most {cfg.partitions} stage models at once, not {len(sizes)}")
    qs = build_models(models_dir, log=lambda s: None)
    ml = load_ml100k()
    user, cands, _ = ml.queries(1000, seed=seed, users=[seed])[0]
    mode = (len(sizes) - 1).bit_length()
    slots = {p: stage_job(cfg, p, mode, qs[s], [ml.batch(np.full(items, user),
                                                         cands[p * items:(p + 1) * items])])
             for p, s in enumerate(sizes)}
    run_dir = BUILD_ROOT / "runs" / f"stages-{'-'.join(sizes)}-{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    metrics = run_dir / "metrics.json"
    sb = build(ComputeEngine, cfg, "engine")
    tests, failed = run(sb, "rpaccel.sim.tb_engine", run_dir,
                        {"jobs": str(write_jobs(run_dir / "jobs.pkl", mode, slots)),
                         "metrics": str(metrics), "seed": seed, "idle": idle,
                         "backpressure": backpressure})
    measured = json.loads(metrics.read_text()) if metrics.exists() else []
    return {"tests": tests, "failures": failed, "items": items, "mode": mode,
            "partitions": [{"model": sizes[m["partition"]], "cycles": m["cycles"],
                            "macs": m["macs"]} for m in measured]}


def cmd_verify(args) -> int:
    params = {"beats": args.beats} if args.block == "requant" else {}
    res = verify_block(args.block, args.config, args.sim, args.seed, waves=args.waves,
                       **params)
    _emit(res, True)
    return 1 if res["failures"] or not res["tests"] else 0


def cmd_synth(args) -> int:
    from .synth import synthesize

    res = synthesize(args.block, get_config(args.config), args.target,
                     freq_mhz=args.freq, router=args.router)
    _emit(res, True)
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected a comma-separated list of integers, not {text!r}") from None


def cmd_bench(args) -> int:
    from .bench import bench_array, bench_cache, bench_embedding_rtl, bench_topk

    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    if args.what == "cache":
        out = {"bench": "cache",
               "rows": bench_cache(_models_dir(args.models), args.queries, log=log),
               "rtl": bench_embedding_rtl(log=log)}
    elif args.what == "array":
        out = {"bench": "array",
               "rows": bench_array(tuple(args.arrays.split(",")), _models_dir(args.models),
                                   log=log)}
    elif args.what == "topk":
        out = {"bench": "topk",
               "rows": bench_topk(_int_list(args.lanes), _int_list(args.k), args.long_n,
                                  synth=not args.no_synth, sim=not args.no_sim,
                                  max_place_luts=args.max_place_luts,
                                  impls=tuple(args.impl.split(",")), log=log)}
    elif args.what == "perf":
        from .perf_report import bench_perf, write_plots

        out = bench_perf(models_dir=_models_dir(args.models), log=log)
        if args.plots:
            out["plots"] = write_plots({"calibration": out["rows"]}, args.plots)
    elif args.what == "top":
        out = bench_top(_models_dir(args.models), args.top_queries, log=log)
    else:
        raise ValueError(f"WHAT must be 'array', 'topk', 'cache', 'top' or 'perf', not "
                         f"{args.what!r}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
    _emit(out, True)
    return 0


def sim_report(config_name: str, models_dir, n_queries: int = 50, seed: int = 0,
               candidates: int = 100, pipeline=None, sim: str = "verilator", idle: float = 0.0,
               backpressure: float = 0.0, dram_stall: float = 0.0, progress: bool = False,
               ml=None, load: str = "dma", waves: bool = False,
               bench: str = "cocotb") -> dict:
    """Run MovieLens queries through the generated top level and compare with golden
    (``bench``: the cocotb testbench or the native one, `rpaccel.sim.native`)."""
    from ..runtime import Accelerator, parse_stages, quality

    cfg = get_config(config_name)
    if not isinstance(n_queries, int) or n_queries < 1:
        raise ValueError(f"--queries must be a positive integer, not {n_queries!r}")
    stages = parse_stages(pipeline) if pipeline else None
    acc = Accelerator.from_models(cfg, models_dir, stages, ml=ml)
    qs = acc.movielens_queries(acc.ml, n_queries, seed=seed, candidates=candidates)
    batches = [b for b, _ in qs]
    t0 = time.time()
    if progress and bench == "cocotb":
        run, _ = _simulate_with_bar(acc, batches, f"{cfg.name}: queries on {sim}", sim=sim,
                                    idle=idle, backpressure=backpressure,
                                    dram_stall=dram_stall, seed=seed + 1, load=load,
                                    waves=waves)
    else:
        run, _ = acc.simulate(batches, sim=sim, idle=idle, backpressure=backpressure,
                              dram_stall=dram_stall, seed=seed + 1, load=load, waves=waves,
                              bench=bench)
    sim_seconds = time.time() - t0
    model = {}
    if idle == 0 and backpressure == 0 and dram_stall == 0:
        from .. import perf

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
        "queries": len(batches), "candidates": candidates, "seed": seed, "simulator": sim,
        "bench": bench,
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
    with Progress(console=_console(), transient=True) as bar:
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


def cmd_sim(args) -> int:
    rep = sim_report(args.config, _models_dir(args.models), args.queries, args.seed,
                     args.candidates, args.pipeline, args.sim, args.idle, args.backpressure,
                     args.dram_stall, progress=not args.json and sys.stderr.isatty(),
                     load=args.load, waves=args.waves, bench=args.bench)
    text = json.dumps(rep, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    good = rep["mismatches"] == 0 and rep["error_status_ok"] and rep["mixed_error_flags"] == 0
    return 0 if good else 1


#: (config, pipeline) points of `bench_top`: the baseline, the default pipeline and the
#: iso-quality one (stage 0 keeps 32: golden HR@10 over all users within 0.001 of baseline)
TOP_POINTS = (("baseline", None), ("default", None), ("default", "small:32,large:10"))


def bench_top(models_dir, n_queries: int, points=TOP_POINTS, log=print) -> dict:
    """The same real queries through each (config, pipeline) on Verilator; latency and
    throughput ratios against the first point (the baseline), quality of each."""
    reps = []
    for name, pipeline in points:
        log(f"bench top: {name} {pipeline or '(default pipeline)'}, {n_queries} queries")
        reps.append(sim_report(name, models_dir, n_queries, seed=0, pipeline=pipeline))
    base = reps[0]
    ratios = {}
    for r in reps[1:]:
        ratios[f"{r['config']} {r['pipeline']}"] = {
            "latency_speedup": round(base["cycles_per_query"]["mean"]
                                     / r["cycles_per_query"]["mean"], 3),
            "unloaded_latency_speedup": round(base["first_query_cycles"]
                                              / r["first_query_cycles"], 3),
            "throughput_speedup": round(base["throughput_cycles_per_query"]
                                        / r["throughput_cycles_per_query"], 3),
            "hr@10_delta": round(r["hr@10"] - base["hr@10"], 4),
            "ndcg@10_delta": round(r["ndcg@10"] - base["ndcg@10"], 4)}
    return {"bench": "top", "queries": n_queries, "reference": base["config"],
            "rows": reps, "vs_reference": ratios,
            "paper": "RPAccel vs baseline accelerator: 3x lower latency, 6x higher "
                     "throughput at iso-quality (ANCHORS.md)"}


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
    return t


def _overrides(items) -> dict:
    """``["sub_batch=512", "fclk_mhz=200"]`` -> ``{"sub_batch": 512, "fclk_mhz": 200.0}``,
    each value of its field's type."""
    from ..config import RPAccelConfig

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


def cmd_perf(args) -> int:
    from tqdm import tqdm

    from ..workloads import PIPELINES
    from .perf_report import report, write_plots

    if args.workload not in PIPELINES:
        raise ValueError(f"workload must be one of {sorted(PIPELINES)}, not {args.workload!r}")
    get_config(args.config)
    base = None if args.baseline == "none" else args.baseline
    if base is not None:
        get_config(base)
    n_rows = len(PIPELINES[args.workload]) + (1 if base else 0)
    with tqdm(total=n_rows, desc=f"perf {args.workload}", unit="design",
              file=sys.stderr, disable=args.quiet) as bar:
        rep = report(args.workload, args.config, base, args.queries, _models_dir(args.models),
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
    _emit(rep, args.json, perf_table(rep))
    return 0


def cmd_demo(args) -> int:
    from tqdm import tqdm

    con = _console()
    t_start = time.time()
    con.rule("RPAccel kit demo")
    con.print("1. golden pipelines on MovieLens-100k (float and bit-exact int8): quality")
    with tqdm(total=2 * len(DEFAULT_PIPELINES) + 3, desc="   quality (every held-out rating "
              "x 1000 candidates)", unit="eval", file=sys.stderr) as bar:
        rows = quality_rows(_models_dir(args.models), n_queries=args.queries,
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
    reps = [sim_report(name, _models_dir(args.models), args.sim_queries, seed=0,
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
    from .perf_report import report, write_plots

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


def _demo_blocks(con, args) -> bool:
    """The blocks one by one through their cocotb testbenches (``demo --blocks``)."""
    from ..sim.runner import simulator_available

    con.print("2. blocks through the flow: generated Verilog vs golden, random stimulus, "
              "30% idle input, 30% output backpressure")
    sims = ["verilator"] + (["icarus"] if simulator_available("icarus") else [])
    ok = True
    what = {"requant": "random beats x 4 lanes (every field over its range)",
            "topk": "queries: random/equal/sorted/tied scores, N around k, back to back",
            "approx_filter": "queries through the histogram filter",
            "mesh": "8x8 array as 1 and 2 partitions, weight tiles swapped in flight",
            "engine": "random MLPs (K/N tiling) on both partitions at once",
            "embedding": "Zipf bags, static + dynamic cache, AXI RAM (cocotbext-axi) with "
                         "random stalls, a bad id; counters == golden cache model"}
    for block in ("requant", "topk", "approx_filter", "mesh", "engine", "embedding"):
        for sim in sims if block == "requant" else sims[:1]:
            params = {"beats": args.beats} if block == "requant" else {}
            res = verify_block(block, "default", sim, **params)
            good = res["failures"] == 0 and res["tests"] > 0
            ok &= good
            con.print(f"   {block:13s} {sim:9s}: {res['tests']} cocotb tests, "
                      f"{res['failures']} failures; {what[block]} "
                      f"[{'PASS' if good else 'FAIL'}]")
    if "icarus" not in sims:
        con.print("   icarus: not installed, skipped")
    con.print("3. trained stage models on the MLP engine: small on partition 0 and large on "
              "partition 1 at once, real MovieLens-100k candidates")
    res = verify_stages(_models_dir(args.models))
    good = res["failures"] == 0 and res["tests"] > 0
    ok &= good
    for part in res["partitions"]:
        con.print(f"   {part['model']:6s}: {res['items']} items bit-exact in "
                  f"{part['cycles']:,} cycles ({part['macs']:,} MACs) "
                  f"[{'PASS' if good else 'FAIL'}]")
    return ok


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rpaccel", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("fetch-data", help="download MovieLens-100k into the cache")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("models", help="train and quantize small/medium/large stage models")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--epochs", type=int,
                   help="training epochs (default: the recipe's, rpaccel.golden.train.RECIPE)")
    s.add_argument("--force", action="store_true", help="retrain even if present")
    s.set_defaults(func=cmd_models)

    s = sub.add_parser("score", help="score a batch with a stage model")
    s.add_argument("--model", required=True, help="model .npz/.pt (DLRM state-dict names)")
    s.add_argument("--batch", required=True, help="batch .npz: dense, indices_t, offsets_t")
    s.add_argument("--int8", action="store_true", help="bit-exact int8 path (integer logits)")
    s.add_argument("--out", required=True, help="output .npy")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("quantize", help="quantize a float model with a calibration batch")
    s.add_argument("--model", required=True)
    s.add_argument("--calib", required=True, help="calibration batch .npz")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_quantize)

    s = sub.add_parser("quality", help="quality of multi-stage pipelines")
    s.add_argument("--dataset", default="ml100k")
    s.add_argument("--models", help="model directory (default build/models)")
    s.add_argument("--queries", type=int,
                   help="first N users only (default all 943; one query per held-out rating)")
    s.add_argument("--candidates", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--pipeline", action="append",
                   help="MODEL:KEEP[,MODEL:KEEP...] (repeatable; default: the standard set)")
    s.add_argument("--approx", action="store_true",
                   help="also int8 with the approximate histogram filter between stages")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_quality)

    s = sub.add_parser("generate", help="write Verilog and config JSON of a block")
    s.add_argument("--config", default="default", help=f"one of {sorted(CONFIGS)}")
    s.add_argument("--block", default="rpaccel",
                   help="rpaccel (the top level, default) or one block")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("lint", help="verilator --lint-only -Wall of generated designs (a gate: "
                       "exit 1 on any warning the waivers in sim/lint.vlt do not cover)")
    s.add_argument("--config", action="append", help="config (repeatable; default: default)")
    s.add_argument("--block", action="append", help="block (repeatable; default: all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_lint)

    s = sub.add_parser("verify", help="cocotb testbench of a block against golden")
    s.add_argument("--config", default="default")
    s.add_argument("--block", default="requant",
                   help="requant, topk, approx_filter, mesh, engine or embedding")
    s.add_argument("--sim", default="verilator", choices=["verilator", "icarus"])
    s.add_argument("--beats", type=int, default=2000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--waves", action="store_true",
                   help="waveform of the run, FST or VCD (a separate traced build; also "
                   "WAVES=1)")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("synth", help="synthesize a block for an FPGA (JSON out)")
    s.add_argument("--config", default="fpga-ecp5")
    s.add_argument("--block", default="requant")
    s.add_argument("--target", default="ecp5-85f")
    s.add_argument("--freq", type=float, default=200.0,
                   help="nextpnr target MHz (high, so the report shows the achievable fmax)")
    s.add_argument("--router", default="router1", choices=["router1", "router2"],
                   help="nextpnr router (router2 copes better with congested designs)")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("bench", help="benchmarks from RTL simulation and synthesis (JSON)")
    s.add_argument("what", help="array, topk, cache, top or perf")
    s.add_argument("--plots", help="perf bench: write the calibration plot here")
    s.add_argument("--top-queries", type=int, default=20,
                   help="top bench: real queries per point (baseline; default; default "
                   "at iso-quality)")
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
    s.add_argument("--json", action="store_true", help="(always JSON)")
    s.add_argument("--out", help="also write the JSON here")
    s.set_defaults(func=cmd_bench)

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
    s.set_defaults(func=cmd_perf)

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
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("sim", help="real queries through the generated top level vs golden")
    s.add_argument("--config", default="default", help=f"one of {sorted(CONFIGS)}")
    s.add_argument("--queries", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--candidates", type=int, default=100, help="candidates per query")
    s.add_argument("--pipeline", help="MODEL:K per stage, e.g. small:16,large:10 "
                   "(default: by the config's number of stages)")
    s.add_argument("--models", help="model directory (default build/models)")
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
    s.set_defaults(func=cmd_sim)

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
    s.set_defaults(func=cmd_regress)
    return p


def _suite():
    from ..sim.regress import SUITE

    return SUITE


def cmd_regress(args) -> int:
    from ..sim.regress import regress

    suite = _suite()
    if args.config:
        names = {e.name: e for e in suite}
        for n in args.config:
            if n not in names:
                raise ValueError(f"--config must be one of {sorted(names)}, not {n!r}")
        suite = tuple(names[n] for n in args.config)
    rep = regress(suite, args.queries, args.chunk, args.seed, args.scheduler, args.workers,
                  _models_dir(args.models), out=args.out,
                  log=lambda m: print(m, file=sys.stderr))
    summary = {k: v for k, v in rep.items() if k not in ("runs", "suite")}
    print(json.dumps(summary, indent=2))
    return 0 if rep["mismatch_free"] else 1


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..golden.model import BatchError, ModelError

    try:
        return args.func(args)
    except (ConfigError, ModelError, BatchError, FileNotFoundError, ValueError) as e:
        print(f"rpaccel {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
