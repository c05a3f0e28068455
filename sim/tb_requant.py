"""cocotb testbench: RequantUnit against `golden.numerics.requantize`, bit for bit."""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ..golden.numerics import requantize
from ..hw.requant import RequantUnit, requant_layouts
from .streams import Scoreboard, StreamSink, StreamSource, tb_config, tb_params


def stimulus(config, lanes: int, n: int, rng: np.random.Generator):
    """Random beats mixing the extremes of every field with realistic layer values."""
    amax = (1 << (config.acc_bits - 1)) - 1
    amin = -(1 << (config.acc_bits - 1))
    edges = np.array([amin, amin + 1, -1, 0, 1, amax - 1, amax])
    shape = (n, lanes)
    kind = rng.integers(0, 3, shape)  # 0: full range, 1: extremes, 2: typical layer
    acc = np.where(kind == 0, rng.integers(amin, amax, shape, endpoint=True),
                   np.where(kind == 1, rng.choice(edges, shape),
                            rng.integers(-(1 << 20), 1 << 20, shape)))
    bias = np.where(kind == 0, rng.integers(amin, amax, shape, endpoint=True),
                    np.where(kind == 1, rng.choice(edges, shape),
                             rng.integers(-(1 << 16), 1 << 16, shape)))
    mult = np.where(kind == 2, rng.integers(1 << 14, 1 << 15, shape),
                    np.where(rng.random(shape) < 0.3,
                             rng.choice([0, 1, config.max_mult], shape),
                             rng.integers(0, config.max_mult, shape, endpoint=True)))
    shift = np.where(kind == 2, rng.integers(14, 32, shape),
                     np.where(rng.random(shape) < 0.3, rng.choice([0, 1, config.max_shift], shape),
                              rng.integers(0, config.max_shift, shape, endpoint=True)))
    relu = rng.integers(0, 2, n)
    return acc, bias, mult, shift, relu


@cocotb.test()
async def requant_matches_golden(dut):
    """Random beats (with extremes) through the unit under idle gaps and backpressure."""
    cfg = tb_config()
    p = tb_params()
    lanes = p.get("lanes", cfg.requant_lanes)
    n = p.get("beats", 500)
    in_layout, out_layout = requant_layouts(cfg, lanes)
    rng = np.random.default_rng(p.get("seed", 0))
    acc, bias, mult, shift, relu = stimulus(cfg, lanes, n, rng)
    golden = requantize(acc, bias, mult, shift, relu[:, None], cfg.act_bits)

    Clock(dut.clk, 10, unit="ns").start()
    src = StreamSource(dut, "i", dut.clk, in_layout, p.get("idle", 0.3),
                       random.Random(p.get("seed", 0)))
    sink = StreamSink(dut, "o", dut.clk, out_layout, p.get("backpressure", 0.3),
                      random.Random(p.get("seed", 0) + 1))
    sb = Scoreboard(dut._log, "requant")
    sink.callbacks.append(lambda item: sb.compare([int(item[j]) for j in range(lanes)]))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    for b in range(n):
        src.put({"lanes": [{"acc": int(acc[b, j]), "bias": int(bias[b, j]),
                            "mult": int(mult[b, j]), "shift": int(shift[b, j])}
                           for j in range(lanes)], "relu": int(relu[b])})
        sb.expect([int(v) for v in golden[b]])
    cocotb.start_soon(src.run())
    cocotb.start_soon(sink.run())
    limit = 20 * n + 100
    for _ in range(limit):
        await RisingEdge(dut.clk)
        if len(sink.received) >= n:
            break
    await ClockCycles(dut.clk, 10)  # anything extra would show up as unexpected
    dut._log.info("requant: %d beats, %d lanes, %d matched", n, lanes, sb.matched)
    sb.check_done()
    assert sb.matched == n, f"only {sb.matched} of {n} beats matched"


@cocotb.test()
async def requant_full_rate(dut):
    """Without gaps or backpressure the unit takes and gives one beat per cycle."""
    cfg = tb_config()
    lanes = tb_params().get("lanes", cfg.requant_lanes)
    in_layout, out_layout = requant_layouts(cfg, lanes)
    n = 64
    Clock(dut.clk, 10, unit="ns").start()
    src = StreamSource(dut, "i", dut.clk, in_layout)
    sink = StreamSink(dut, "o", dut.clk, out_layout)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    for b in range(n):
        src.put({"lanes": [{"acc": b, "bias": 0, "mult": 1, "shift": 0}] * lanes, "relu": 0})
    cocotb.start_soon(src.run())
    cocotb.start_soon(sink.run())
    cycles = 0
    while len(sink.received) < n and cycles < 10 * n:
        await RisingEdge(dut.clk)
        cycles += 1
    assert [int(x[0]) for x in sink.received] == [min(b, 127) for b in range(n)]
    bound = n + RequantUnit.LATENCY + 3  # start-up: reset release, source and sink phases
    assert cycles <= bound, f"{n} beats took {cycles} cycles (at most {bound} expected)"
