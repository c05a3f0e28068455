"""cocotb testbench: one ranking stage end to end (`StageTop`): real queries in, the top-k
survivors out, against the golden int8 stage model and golden top-k.

Job pickle (``RPACCEL_TB["jobs"]``, from `rpaccel.sim.stage_jobs`): engine and embedding
load images, DRAM bytes, model constants and per query its sub-batches (query beats, run
beat) and the expected ``[(id, score)]``.
"""

from __future__ import annotations

import json
import pickle
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ..hw.embedding import emb_layouts
from ..hw.stage import stage_layouts
from ..hw.topk import topk_layouts
from ..interface import engine_layouts, slot_width
from .streams import (
    Scoreboard,
    StreamSink,
    StreamSource,
    axi_ram,
    load_all,
    tb_config,
    tb_params,
)


@cocotb.test()
async def stage_matches_golden(dut):
    """Queries through gather, MLP engine and top-k with idle gaps, result backpressure and
    a random-latency DRAM; every survivor (id and score) equals golden."""
    cfg = tb_config()
    params = tb_params()
    job = pickle.loads(open(params["jobs"], "rb").read())
    seed = params.get("seed", 0)
    Clock(dut.clk, 10, unit="ns").start()
    axi_ram(dut, job["dram"], params.get("dram_stall", 0), random.Random(seed))
    dut.mode.value = job["mode"]
    dut.dense_words.value = job["dense_words"]
    dut.tables.value = job["tables"]
    dut.dw.value = job["dw"]
    dut.fpack.value = job["fpack"]
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    eload_l = engine_layouts(cfg, slot_width(cfg, params.get("slot", 0))).load
    _, _, mload_l, _, _ = emb_layouts(cfg)
    await load_all(dut, "eload", eload_l, job["eload"])
    await load_all(dut, "mload", mload_l, job["mload"])

    query_l, run_l = stage_layouts(cfg)
    _, out_l = topk_layouts(cfg)
    query = StreamSource(dut, "query", dut.clk, query_l, params.get("idle", 0.0),
                         random.Random(seed + 1))
    run = StreamSource(dut, "run", dut.clk, run_l)
    result = StreamSink(dut, "result", dut.clk, out_l, params.get("backpressure", 0.0),
                        random.Random(seed + 2))
    sb = Scoreboard(dut._log, "stage")
    result.callbacks.append(lambda it: sb.compare((int(it.id), int(it.score), int(it.last))))
    tasks = [cocotb.start_soon(s.run()) for s in (query, run, result)]
    cycles = []
    for qn, qj in enumerate(job["queries"]):
        for j, (i, s) in enumerate(qj["expect"]):
            sb.expect((i, s, int(j == len(qj["expect"]) - 1)))
        start = query.cycle
        for sub in qj["subs"]:
            for beat in sub["beats"]:
                query.put(beat)
            run.put({"items": sub["items"], "base": sub["base"], "k": sub["k"],
                     "last": sub["last"]})
        target = sum(len(x["expect"]) for x in job["queries"][:qn + 1])
        for _ in range(4_000_000):
            if sb.matched + sb.errors >= target:
                break
            await RisingEdge(dut.clk)
        cycles.append(query.cycle - start)
        dut._log.info("query %d: %d cycles", qn, cycles[-1])
    await ClockCycles(dut.clk, 5)
    for t in tasks:
        t.cancel()
    if params.get("metrics"):
        with open(params["metrics"], "w") as f:
            json.dump({"cycles": cycles, "macs": int(dut.macs.value),
                       "lookups": int(dut.lookups.value), "misses": int(dut.misses.value),
                       "emb_errors": int(dut.emb_errors.value)}, f)
    sb.check_done()
