"""cocotb testbench: `ComputeEngine` (mesh + one MLP engine per partition) against golden
int8, every active partition running its own program at the same time.

The host side (pytest or `rpaccel bench array`) compiles the programs and computes the
expected outputs with the golden model; it hands them over in a pickle named by
``RPACCEL_TB["jobs"]``: ``{"mode": m, "slots": {p: {"load": [(target, addr, data)],
"runs": [{"act": [...], "items": n, "expect": [[int, ...], ...], "name": str}]}}}``; a
slot may instead hold ``{"programs": [job, ...]}``, run one after the other.
Measured counters per run go to ``RPACCEL_TB["metrics"]`` (JSON) when given.
"""

from __future__ import annotations

import json
import pickle
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ..hw.mlp_engine import COUNTERS
from ..interface import engine_layouts, slot_width
from .streams import (
    Scoreboard,
    StreamSink,
    StreamSource,
    load_packer,
    tb_config,
    tb_params,
)


async def _slot(dut, cfg, p, job, params, metrics):
    width = slot_width(cfg, p)
    lay = engine_layouts(cfg, width)
    load_l, out_l = lay.load, lay.out
    seed = params.get("seed", 0) + p
    idle, bp = params.get("idle", 0.0), params.get("backpressure", 0.0)
    load = StreamSource(dut, f"load_{p}", dut.clk, load_l, idle, random.Random(seed))
    run = StreamSource(dut, f"run_{p}", dut.clk, None, idle, random.Random(seed + 1))
    out = StreamSink(dut, f"out_{p}", dut.clk, out_l, bp, random.Random(seed + 2))
    tasks = [cocotb.start_soon(s.run()) for s in (load, run, out)]
    busy = getattr(dut, f"busy_{p}")
    pack = load_packer(load_l)
    pcols = cfg.array_cols >> job["mode"]
    sb = Scoreboard(dut._log, f"partition {p}")
    out.callbacks.append(lambda it: sb.compare([int(it.acc[c]) for c in range(pcols)]))
    runs = []
    for prog in job.get("programs", [job]):
        runs.append({"load": prog["load"]})
        runs.extend(prog["runs"])
    queued = set()
    for n, r in enumerate(runs):
        if "load" in r:  # a (new) model: taken once the engine is idle
            for beat in r["load"]:
                load.put(pack(beat))
            continue
        if n not in queued:
            for beat in r["act"]:
                load.put(pack(beat))
        while load.queue or load.valid.value:
            await RisingEdge(dut.clk)
        for e in r["expect"]:
            sb.expect(e)
        run.put(r["items"])
        while run.queue or run.valid.value:
            await RisingEdge(dut.clk)
        # the next sub-batch's activations go in while this one computes (other bank)
        prefetched = 0
        if n + 1 < len(runs) and "act" in runs[n + 1]:
            for beat in runs[n + 1]["act"]:
                load.put(pack(beat))
            queued.add(n + 1)
            prefetched = len(runs[n + 1]["act"])
        await RisingEdge(dut.clk)
        for _ in range(r.get("timeout", 2_000_000)):
            if not int(busy.value):
                break
            await RisingEdge(dut.clk)
        else:
            raise AssertionError(f"partition {p}: run {r['name']} did not finish")
        got = {n: int(getattr(dut, f"{n}_{p}").value) for n in COUNTERS}
        # beats of the next sub-batch still waiting when this run ended
        left = min(prefetched, len(load.queue) + int(load.valid.value))
        dut._log.info("partition %d: %s: %s", p, r["name"], got)
        metrics.append({"partition": p, "name": r["name"], "items": r["items"], **got,
                        "prefetched": prefetched, "prefetch_left": left})
    await ClockCycles(dut.clk, 5)
    for t in tasks:
        t.cancel()
    sb.check_done()
    return sb.matched


@cocotb.test()
async def engine_matches_golden(dut):
    """Every slot's programs, sub-batches and expected outputs, all slots at once."""
    cfg = tb_config()
    params = tb_params()
    with open(params["jobs"], "rb") as f:
        jobs = pickle.load(f)
    Clock(dut.clk, 10, unit="ns").start()
    dut.mode.value = jobs["mode"]
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    metrics: list = []
    slots = [cocotb.start_soon(_slot(dut, cfg, p, job | {"mode": jobs["mode"]}, params,
                                     metrics))
             for p, job in jobs["slots"].items()]
    matched = [await s for s in slots]
    dut._log.info("engine: %s beats bit-exact per partition", matched)
    if params.get("metrics"):
        with open(params["metrics"], "w") as f:
            json.dump(metrics, f)
