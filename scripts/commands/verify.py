"""``rpaccel verify``: a block's cocotb testbench against golden; trained stage models on
the engine."""

from __future__ import annotations

import json
import time

import numpy as np

from ...blocks import get_block
from ...config import get_config
from .common import emit


def verify_block(block: str, config_name: str, sim: str = "verilator", seed: int = 1,
                 idle: float = 0.3, backpressure: float = 0.3, waves: bool = False,
                 **params) -> dict:
    """Run a block's cocotb testbench against golden; returns a result dict (with
    ``waves``, or ``WAVES=1``, the path of its waveform under ``"waves"``)."""
    from ...sim.runner import BUILD_ROOT, build, run

    spec = get_block(block, testbench=True)
    cfg = get_config(config_name)
    t0 = time.time()
    sb = build(spec.build, cfg, block, sim=sim, waves=waves)
    t1 = time.time()
    run_dir = BUILD_ROOT / "runs" / f"{block}-{cfg.name}-{sim}-{seed}"
    if block == "engine":  # random MLPs on every partition of the finest mode, at once
        from ...sim.engine_jobs import random_slots, write_jobs

        run_dir.mkdir(parents=True, exist_ok=True)
        mode = cfg.partitions.bit_length() - 1
        slots = random_slots(cfg, mode, np.random.default_rng(seed))
        params = {"jobs": str(write_jobs(run_dir / "jobs.pkl", mode, slots)), **params}
    if block == "embedding":  # Zipf bags, AXI RAM with random stalls, one bad id
        from ...sim.emb_jobs import random_job

        run_dir.mkdir(parents=True, exist_ok=True)
        params = {"jobs": str(random_job(cfg, run_dir / "jobs.pkl", seed)),
                  "dram_stall": 0.3, **params}
    tests, failed = run(sb, spec.testbench, run_dir,
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
    from ...golden.data import load_ml100k
    from ...golden.train import build_models
    from ...hw.mlp_engine import ComputeEngine
    from ...sim.engine_jobs import stage_job, write_jobs
    from ...sim.runner import BUILD_ROOT, build, run

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


def run(args) -> int:
    params = {"beats": args.beats} if args.block == "requant" else {}
    res = verify_block(args.block, args.config, args.sim, args.seed, waves=args.waves,
                       **params)
    emit(res, True)
    return 1 if res["failures"] or not res["tests"] else 0


def add_parser(sub):
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
    s.set_defaults(func=run)
    return s
