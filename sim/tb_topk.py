"""cocotb testbench: TopK against `golden.pipeline.topk`, bit for bit."""

from __future__ import annotations

import json
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from ..hw.topk import topk_layouts
from .streams import Scoreboard, StreamSink, StreamSource, tb_config, tb_params
from .topk_model import expected_output, pack_query, query_patterns


async def start_streams(dut, cfg, idle, backpressure, seed):
    """Clock, reset, and the source / sink of a filter block's ``i`` / ``o`` streams."""
    in_layout, out_layout = topk_layouts(cfg)
    Clock(dut.clk, 10, unit="ns").start()
    src = StreamSource(dut, "i", dut.clk, in_layout, idle, random.Random(seed))
    sink = StreamSink(dut, "o", dut.clk, out_layout, backpressure, random.Random(seed + 1))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    return src, sink


async def _wait(dut, sink, n, limit):
    for _ in range(limit):
        if len(sink.received) >= n:
            break
        await RisingEdge(dut.clk)


@cocotb.test()
async def topk_matches_golden(dut):
    """Back-to-back queries of every pattern and size class, random k, empty lanes, idle
    gaps on the input and backpressure on the output."""
    cfg = tb_config()
    p = tb_params()
    seed = p.get("seed", 0)
    rng = np.random.default_rng(seed)
    cap, lanes = cfg.topk_k, cfg.topk_lanes
    src, sink = await start_streams(dut, cfg, p.get("idle", 0.3), p.get("backpressure", 0.3), seed)
    sb = Scoreboard(dut._log, "topk")
    sink.callbacks.append(lambda it: sb.compare((int(it.id), int(it.score), int(it.last))))
    sizes = sorted({1, max(1, cap - 1), cap, cap + 1, 3 * cap + 1, lanes * 5 + 1, 200})
    n_out = 0
    queries = 0
    for n in sizes:
        for name, scores in query_patterns(n, cfg.score_bits, rng).items():
            k = int(rng.integers(1, cap + 1)) if rng.random() < 0.7 else cap
            ids = rng.permutation(1 << cfg.topk_id_bits)[:n] if rng.random() < 0.5 \
                else np.arange(n)
            for beat in pack_query(ids, scores, lanes, k, hole_prob=0.2, rng=rng):
                src.put(beat)
            for item in expected_output(ids, scores, k):
                sb.expect(item)
                n_out += 1
            queries += 1
            dut._log.debug("query %d: %s n=%d k=%d", queries, name, n, k)
    cocotb.start_soon(src.run())
    cocotb.start_soon(sink.run())
    await _wait(dut, sink, n_out, 50 * (n_out + sum(sizes) * 6) + 1000)
    await ClockCycles(dut.clk, 20)
    dut._log.info("topk: %d queries, %d survivors matched", queries, sb.matched)
    sb.check_done()


@cocotb.test()
async def topk_full_rate(dut):
    """Two long queries back to back without gaps or backpressure: the producer is never
    stalled (lanes items per cycle; with one bank only by the first query's drain) and the
    drain latency is measured."""
    cfg = tb_config()
    p = tb_params()
    n = p.get("long_n", 1024)
    lanes, cap = cfg.topk_lanes, cfg.topk_k
    rng = np.random.default_rng(1)
    src, sink = await start_streams(dut, cfg, 0.0, 0.0, 5)
    expected = []
    beats_per_query = []
    for _q in range(2):
        scores = rng.integers(-(1 << 20), 1 << 20, n)
        beats = pack_query(np.arange(n), scores, lanes, cap)
        beats_per_query.append(len(beats))
        for b in beats:
            src.put(b)
        expected += expected_output(np.arange(n), scores, cap)
    cocotb.start_soon(src.run())
    cocotb.start_soon(sink.run())
    await _wait(dut, sink, len(expected), 20 * n + 10 * cap + 1000)
    got = [(int(it.id), int(it.score), int(it.last)) for it in sink.received]
    assert got == expected, "full-rate run differs from golden"
    acc = src.accept_cycles
    span = acc[-1] - acc[0] + 1
    rate = n * 2 / span
    last_in = acc[beats_per_query[0] - 1]
    first_q_out = sink.receive_cycles[cap - 1]
    metrics = {"lanes": lanes, "k": cap, "items": 2 * n, "input_cycles": span,
               "items_per_cycle": round(rate, 4),
               "drain_cycles": first_q_out - last_in}
    dut._log.info("topk metrics %s", json.dumps(metrics))
    if p.get("metrics_out"):
        with open(p["metrics_out"], "w") as f:
            json.dump(metrics, f)
    # one bank: the second query waits while the first drains its k survivors
    stall = cap + 1 if cfg.topk_banks == 1 else 0
    assert span == sum(beats_per_query) + stall, f"input stalled: {span} cycles for " \
        f"{sum(beats_per_query)} beats (one bank's drain: {stall})"
