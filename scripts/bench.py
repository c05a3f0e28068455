"""Benchmarks: figures measured from RTL simulation and synthesis, JSON out."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from ..config import get_config
from ..sim.runner import BUILD_ROOT, build, run
from .synth import synthesize

__all__ = ["bench_topk"]


def bench_topk(lanes=(1, 2, 4), ks=(16, 64, 256), long_n: int = 4096, synth: bool = True,
               target: str = "ecp5-85f", max_place_luts: int = 40000, sim: bool = True,
               log=print) -> list[dict]:
    """Top-k unit: sustained items per cycle on two back-to-back queries of ``long_n`` items
    (Verilator, no gaps), cycles from the ``last`` beat to the final survivor, and ECP5
    resources and fmax (designs whose Yosys estimate exceeds ``max_place_luts`` LUTs get
    the estimate only, unplaced, to bound run time)."""
    rows = []
    for p in lanes:
        for k in ks:
            cfg = get_config("default").replace(name=f"topk-p{p}-k{k}", topk_lanes=p,
                                                topk_k=k, topk_id_bits=12)
            t0 = time.time()
            row = {"lanes": p, "k": k, "query_items": long_n}
            if sim:
                row.update(_topk_rate(cfg, p, k, long_n))
                row["sim_s"] = round(time.time() - t0, 1)
            if synth:
                try:
                    res = synthesize("topk", cfg, target, freq_mhz=200, timeout_s=3000,
                                     max_place_luts=max_place_luts)
                    row.update({key: res.get(key) for key in (
                        "fits", "placed", "lut", "ff", "dsp", "bram", "fmax_mhz",
                        "harness_ff")})
                    row["synth_s"] = round(res["yosys_s"] + res["nextpnr_s"], 1)
                except Exception as e:  # report, do not hide: the row says what failed
                    row["synth_error"] = str(e)[:300]
            log(json.dumps(row))
            rows.append(row)
    return rows


def _topk_rate(cfg, p: int, k: int, long_n: int) -> dict:
    """Items per cycle and drain latency of `TopK` from its cocotb full-rate test."""
    from ..hw.topk import TopK

    sb = build(TopK, cfg, "topk")
    with tempfile.TemporaryDirectory() as tmp:
        metrics_path = Path(tmp) / "metrics.json"
        tests, failed = run(sb, "rpaccel.sim.tb_topk",
                            BUILD_ROOT / "runs" / f"bench-topk-p{p}-k{k}",
                            {"long_n": long_n, "metrics_out": str(metrics_path)},
                            testcase="topk_full_rate")
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return {"items_per_cycle": metrics.get("items_per_cycle"),
            "stall_free": failed == 0 and tests == 1,
            "last_to_final_output_cycles": metrics.get("drain_cycles")}
