"""cocotb testbench: the systolic Mesh against integer matmul, every partition at once."""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ..hw.array import mesh_layouts
from .streams import Scoreboard, StreamSink, StreamSource, tb_config, tb_params


async def _feed(dut, cfg, rng, sb, wls, act, pcols, tiles):
    """One partition: ``tiles`` random weight tiles, each followed by its items; returns the
    number of items sent. A tile's weights are loaded while the previous tile's items are
    still in the array, but only after its swap item has left."""
    gcols = cfg.array_cols // cfg.partitions
    sent = prev_n = 0
    for t in range(tiles):
        w = rng.integers(-127, 128, (cfg.array_rows, pcols))
        x = rng.integers(-128, 128, (int(rng.integers(1, 3 * cfg.array_rows)), cfg.array_rows))
        if t:
            while sb.matched + sb.errors < sent - prev_n + 1:
                await RisingEdge(dut.clk)
        for g, wl in enumerate(wls):
            for r in range(cfg.array_rows):
                wl.put({"row": r, "w": w[r, g * gcols:(g + 1) * gcols].tolist()})
        while wls[-1].sent < (t + 1) * cfg.array_rows:
            await RisingEdge(dut.clk)
        for y in (x @ w).tolist():
            sb.expect(y)
        for i, row in enumerate(x):
            act.put({"x": row.tolist(), "swap": int(i == 0)})
        prev_n = len(x)
        sent += prev_n
    return sent


@cocotb.test()
async def mesh_matches_matmul(dut):
    """Random weight tiles and items per partition in every mode, with weight tiles swapped
    while the previous tile's items are in flight, idle gaps on the inputs and independent
    backpressure on each partition's output."""
    cfg = tb_config()
    p = tb_params()
    seed = p.get("seed", 0)
    rng = np.random.default_rng(seed)
    act_l, wl_l, out_l = mesh_layouts(cfg)
    groups = cfg.partitions
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    total = 0
    for mode in range(groups.bit_length()):
        parts, span, pcols = 1 << mode, groups >> mode, cfg.array_cols >> mode
        dut.mode.value = mode
        acts = [StreamSource(dut, f"act__{g}", dut.clk, act_l, p.get("idle", 0.3),
                             random.Random(seed + g)) for g in range(groups)]
        wls = [StreamSource(dut, f"wload__{g}", dut.clk, wl_l) for g in range(groups)]
        outs = [StreamSink(dut, f"out__{q}", dut.clk, out_l, p.get("backpressure", 0.3),
                           random.Random(seed + 10 + q)) for q in range(groups)]
        tasks = [cocotb.start_soon(s.run()) for s in acts + wls + outs]
        boards = []
        for q in range(parts):
            sb = Scoreboard(dut._log, f"mesh mode {mode} partition {q}")
            outs[q].callbacks.append(
                lambda it, sb=sb, n=pcols: sb.compare([int(it[c]) for c in range(n)]))
            boards.append(sb)

        feeders = [cocotb.start_soon(_feed(dut, cfg, rng, boards[q], wls[q * span:(q + 1) * span],
                                           acts[q * span], pcols, p.get("tiles", 3)))
                   for q in range(parts)]
        counts = [await f for f in feeders]
        for _ in range(200 * sum(counts) + 2000):
            if all(sb.matched + sb.errors >= n for sb, n in zip(boards, counts, strict=True)):
                break
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, 40)
        for t in tasks:
            t.cancel()
        for o in outs:
            o.ready.value = 0
        for s in acts + wls:
            s.valid.value = 0
        for sb in boards:
            sb.check_done()
        total += sum(counts)
        dut._log.info("mesh mode %d: %d partitions, %d items matched", mode, parts,
                      sum(counts))
    dut._log.info("mesh: %d items bit-exact", total)
