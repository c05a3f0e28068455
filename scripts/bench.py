"""Benchmarks: figures measured from RTL simulation and synthesis, JSON out."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import get_config
from ..sim.runner import BUILD_ROOT, build, run
from .synth import synthesize

__all__ = ["bench_topk", "bench_cache", "bench_array", "bench_embedding_rtl", "ARRAYS"]


def bench_topk(lanes=(1, 2, 4), ks=(16, 64, 256), long_n: int = 4096, synth: bool = True,
               target: str = "ecp5-85f", max_place_luts: int = 60000, sim: bool = True,
               impls=("queue", "heap"), log=print) -> list[dict]:
    """Top-k units (``impls``: the register queue `TopK`, the RAM heap `TopKHeap`):
    sustained items per cycle on two back-to-back queries of ``long_n`` items (Verilator,
    no gaps), cycles from the ``last`` beat to the final survivor, and ECP5 resources and
    fmax (nextpnr ``router2``; designs whose Yosys estimate exceeds ``max_place_luts`` LUTs
    get the estimate only, unplaced, to bound run time)."""
    rows = []
    for impl in impls:
        rows += _bench_topk_impl(impl, lanes, ks, long_n, synth, target, max_place_luts, sim,
                                 log)
    return rows


def _bench_topk_impl(impl, lanes, ks, long_n, synth, target, max_place_luts, sim, log):
    rows = []
    for p in lanes:
        for k in ks:
            cfg = get_config("default").replace(name=f"topk-{impl}-p{p}-k{k}", topk_lanes=p,
                                                topk_k=k, topk_id_bits=12,
                                                max_items=4096, topk_impl=impl)
            t0 = time.time()
            row = {"impl": impl, "lanes": p, "k": k, "query_items": long_n}
            if sim:
                row.update(_topk_rate(cfg, p, k, long_n))
                row["sim_s"] = round(time.time() - t0, 1)
            if synth:
                try:
                    res = synthesize("topk", cfg, target, freq_mhz=200, timeout_s=3000,
                                     max_place_luts=max_place_luts, router="router2")
                    row.update({key: res.get(key) for key in (
                        "fits", "placed", "lut", "ff", "dsp", "bram", "fmax_mhz",
                        "harness_ff", "router", "routed", "fmax_placed_estimate_mhz")
                                if key in res})
                    row["synth_s"] = round(res["yosys_s"] + res["nextpnr_s"], 1)
                except Exception as e:  # report, do not hide: the row says what failed
                    row["synth_error"] = str(e)[:300]
            log(json.dumps(row))
            rows.append(row)
    return rows


def _topk_rate(cfg, p: int, k: int, long_n: int) -> dict:
    """Items per cycle and drain latency of a top-k unit from its cocotb full-rate test."""
    from ..hw.topk import make_topk

    sb = build(make_topk, cfg, "topk", public="top")  # only ports: a faster build and run
    with tempfile.TemporaryDirectory() as tmp:
        metrics_path = Path(tmp) / "metrics.json"
        tests, failed = run(sb, "rpaccel.sim.tb_topk",
                            BUILD_ROOT / "runs" / f"bench-topk-{cfg.topk_impl}-p{p}-k{k}",
                            {"long_n": long_n, "metrics_out": str(metrics_path)},
                            testcase="topk_full_rate")
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {"items_per_cycle": metrics.get("items_per_cycle"),
            "stall_free": failed == 0 and tests == 1,
            "last_to_final_output_cycles": metrics.get("drain_cycles")}


def _ml_traces(models_dir, n_queries: int):
    """MovieLens-100k lookup traces: stage 1 (small model, all candidates), stage 2
    (large model, survivors of small:100), and the training-set profile of each."""
    from ..golden.cache import batch_trace
    from ..golden.data import CONTEXT_TABLES, load_ml100k
    from ..golden.pipeline import topk
    from ..golden.train import build_models

    ml = load_ml100k()
    qm = build_models(models_dir, log=lambda s: None)
    queries = ml.queries(1000, seed=0, users=range(min(n_queries, ml.num_users)))
    stage1, stage2 = [], []
    for u, cands, _ in queries:
        b = ml.batch(np.full(len(cands), u), cands)
        stage1 += batch_trace(b, CONTEXT_TABLES)
        keep = topk(qm["small"].forward(b, check=False), np.arange(len(cands)), 100)
        stage2 += batch_trace(b.take(keep), CONTEXT_TABLES)
    profile = batch_trace(ml.batch(ml.train_users, ml.train_items))
    rows = ml.table_rows
    return [("ml100k-stage1", rows, qm["small"].float_model.emb_dim, stage1, profile,
             (1024, 4096)),
            ("ml100k-stage2", rows, qm["large"].float_model.emb_dim, stage2, profile,
             (8192, 32768))]


def _criteo_trace(n_items: int):
    from ..golden.cache import batch_trace
    from ..golden.data import criteo_synthetic

    rows = [100_000] * 26
    ev = criteo_synthetic(n_items, rows, seed=1, hot_seed=7)
    prof = criteo_synthetic(n_items, rows, seed=2, hot_seed=7)
    return ("criteo-zipf1.1", rows, 16, batch_trace(ev), batch_trace(prof),
            (262144, 2097152))


def _geometry(dyn_bytes: int, line: int = 64, min_ways: int = 4):
    if dyn_bytes < line * min_ways:
        return 0, 0
    sets = 1 << int(np.log2(dyn_bytes // (line * min_ways)))
    return sets, dyn_bytes // (sets * line)


def bench_cache(models_dir, n_queries: int = 200, criteo_items: int = 20000,
                splits=(0.0, 0.25, 0.5, 0.75, 1.0), log=print) -> list[dict]:
    """Hit rates of static-only, dynamic-only and mixed splits of an on-chip budget, and
    the Belady bound, on real MovieLens-100k traces and a Criteo-shaped Zipf trace (golden
    cache model, the policy the RTL must match)."""
    from ..golden.cache import CacheModel, belady_bounds, profile_hot_rows

    rows_out = []
    for name, table_rows, dim, trace, profile, budgets in [*_ml_traces(models_dir, n_queries),
                                                           _criteo_trace(criteo_items)]:
        row_bytes = [dim] * len(table_rows)
        for budget in budgets:
            cold, warm = belady_bounds(trace, budget // dim)
            for frac in splits:
                static_budget = int(budget * frac)
                sets, ways = _geometry(budget - static_budget)
                model = CacheModel(table_rows, row_bytes,
                                   profile_hot_rows(profile, row_bytes, static_budget),
                                   sets=sets, ways=ways)
                st = model.run(trace)
                row = {"trace": name, "budget_bytes": budget, "static_fraction": frac,
                       "static_bytes": model.static_bytes, "dynamic_bytes": model.dynamic_bytes,
                       "sets": sets, "ways": ways, "line_bytes": 64, **st.as_dict(),
                       "dram_bytes_per_lookup": round(st.dram_bytes / st.lookups, 2),
                       "belady_hit_rate": round(cold / len(trace), 4),
                       "belady_warm_hit_rate": round(warm / len(trace), 4)}
                log(json.dumps(row))
                rows_out.append(row)
    return rows_out


def bench_embedding_rtl(config_name: str = "default", n: int = 256, log=print) -> list[dict]:
    """Cycles per lookup of the embedding unit's RTL (Verilator, cocotbext-axi AXI RAM
    without added stalls): a stream of ``n`` one-id bags that all hit the static cache,
    all hit the dynamic cache (one line, after its first miss) or all miss (a new line
    each), and the latency of a single bag (request accepted to result) that hits the
    static cache or misses (a dynamic hit takes the static hit's path through the same
    stages)."""
    from ..emb_program import EmbeddingImage
    from ..sim.emb_jobs import run_embedding

    cfg = get_config(config_name)
    line_rows = cfg.line_bytes // cfg.emb_dim
    rows = cfg.static_rows + (n + 1) * line_rows
    rng = np.random.default_rng(0)
    tables = [rng.integers(-127, 128, (rows, cfg.emb_dim))]
    img = EmbeddingImage(cfg, tables, {0: set(range(cfg.static_rows))}, [1 << 14], [14])
    cases = {"static hit": [0] * n, "dynamic hit": [cfg.static_rows] * n,
             "miss": [cfg.static_rows + line_rows * (i + 1) for i in range(n)]}
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, ids in cases.items():
            res = {}
            for what, trace in (("stream", ids), ("single", ids[:1])):
                if case == "dynamic hit" and what == "single":
                    continue
                metrics = Path(tmp) / f"{case}-{what}.json"
                tests, failed = run_embedding(cfg, img, [(0, [i]) for i in trace],
                                              Path(tmp) / f"{case}-{what}".replace(" ", "-"),
                                              idle=0, backpressure=0, dram_stall=0,
                                              metrics=metrics)
                if (tests, failed) != (1, 0):
                    raise RuntimeError(f"embedding bench ({case}): RTL did not match golden")
                res[what] = json.loads(metrics.read_text())
            row = {"case": case, "lookups": n, "cycles": res["stream"]["cycles"],
                   "cycles_per_lookup": round(res["stream"]["cycles"] / n, 2),
                   "latency_cycles": res["single"]["cycles"] if "single" in res else None,
                   "misses": res["stream"]["misses"], "line_bytes": cfg.line_bytes,
                   "mshrs": cfg.mshrs, "axi_data_bits": cfg.axi_data_bits}
            log(json.dumps(row))
            out.append(row)
    return out


#: Arrays of the array benchmark: the default config and a 16 x 16 one (sub-batch 8 x R).
ARRAYS = {
    "default": lambda: get_config("default"),
    "16x16": lambda: get_config("default").replace(name="array-16x16", array_rows=16,
                                                    array_cols=16, sub_batch=128),
}


def _model_layers():
    """Distinct (K, N) layer shapes of the three MovieLens stage models."""
    from ..golden.zoo import SIZES, mlp_dims

    shapes = {}
    for name, size in SIZES.items():
        bot, top = mlp_dims(size, 4, 6)
        for part, dims in (("bot", bot), ("top", top)):
            for i, (k, n) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
                shapes.setdefault((k, n), f"{name}.{part}{i}")
    return [(label, k, n) for (k, n), label in shapes.items()]


def bench_array(arrays=("default", "16x16"), models_dir=None, seed: int = 0,
                log=print) -> list[dict]:
    """Utilization of the systolic array from RTL simulation (Verilator, `ComputeEngine`,
    mode 0: one partition of the whole array, sub-batch of 8 x R items): each layer shape
    of the three stage models, a few square layers, and (when trained models are in
    ``models_dir``) each whole stage on real MovieLens items. ``utilization = macs /
    (cycles x R x C)`` with ``macs`` counted by the RTL and ``cycles`` the engine's busy
    cycles, from the run start to the last result written."""
    from ..program import layers_macs
    from ..sim.engine_jobs import layers_job, random_layers, stage_job

    for arr in arrays:
        if arr not in ARRAYS:
            raise ValueError(f"array must be one of {sorted(ARRAYS)}, not {arr!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for arr in arrays:
        cfg = ARRAYS[arr]()
        r, c, items = cfg.array_rows, cfg.array_cols, 8 * cfg.array_rows
        shapes = _model_layers() + [("square", k, k) for k in (r, 64, 128, 256)]
        shapes.append(("one tile", r, c))
        programs, expect_macs = [], {}
        for label, k, n in shapes:
            name = f"{label} {k}x{n}"
            x = rng.integers(-128, 128, (items, k))
            programs.append(layers_job(cfg, 0, 0, random_layers(rng, [k, n]), [x], name=name))
            expect_macs[f"{name}#0"] = items * k * n
        if models_dir is not None and Path(models_dir, "large.int8.npz").exists():
            from ..golden.data import load_ml100k
            from ..golden.quantize import load_quantized

            ml = load_ml100k()
            user, cands, _ = ml.queries(1000, seed=seed, users=[0])[0]
            batch = ml.batch(np.full(items, user), cands[:items])
            for size in ("small", "medium", "large"):
                q = load_quantized(Path(models_dir) / f"{size}.int8.npz")
                programs.append(stage_job(cfg, 0, 0, q, [batch], name=f"stage {size}"))
                expect_macs[f"stage {size}#0"] = layers_macs(q.bot + q.top, items)
        rows += _array_runs(cfg, programs, expect_macs, seed, log)
        # the fixed cost of a layer run, amortized over a longer sub-batch (32 R items)
        long = cfg.replace(name=f"{cfg.name}-sb{32 * r}", sub_batch=32 * r)
        x = rng.integers(-128, 128, (32 * r, r))
        name = f"one tile {r}x{c}, {32 * r} items"
        rows += _array_runs(long, [layers_job(long, 0, 0, random_layers(rng, [r, c]), [x],
                                              name=name)],
                            {f"{name}#0": 32 * r * r * c}, seed, log)
    return rows


def _array_runs(cfg, programs, expect_macs, seed, log) -> list[dict]:
    """Run ``programs`` one after the other on engine slot 0 (mode 0); one row per run."""
    from ..hw.mlp_engine import ComputeEngine
    from ..sim.engine_jobs import write_jobs

    r, c = cfg.array_rows, cfg.array_cols
    rows = []
    t0 = time.time()
    sb = build(ComputeEngine, cfg, "engine")
    with tempfile.TemporaryDirectory() as tmp:
        jobs = write_jobs(Path(tmp) / "jobs.pkl", 0, {0: {"programs": programs}})
        metrics = Path(tmp) / "metrics.json"
        tests, failed = run(sb, "rpaccel.sim.tb_engine",
                            BUILD_ROOT / "runs" / f"bench-array-{cfg.name}",
                            {"jobs": str(jobs), "metrics": str(metrics), "seed": seed})
        if (tests, failed) != (1, 0):
            raise RuntimeError(f"array bench on {cfg.name}: the engine did not match "
                               f"golden; see build/runs/bench-array-{cfg.name}/sim.log")
        measured = json.loads(metrics.read_text())
    for m in measured:
        name = m["name"]
        row = {"array": cfg.name, "layer": name.removesuffix("#0"), "rows": r, "cols": c,
               "items": m["items"], "cycles": m["cycles"], "macs": m["macs"],
               "macs_expected": expect_macs[name],
               "utilization": round(m["macs"] / (m["cycles"] * r * c), 4),
               "stall_in": m["stall_in"], "stall_out": m["stall_out"]}
        log(json.dumps(row))
        rows.append(row)
    log(f"{cfg.name}: {len(measured)} runs bit-exact, {time.time() - t0:.0f} s")
    return rows
