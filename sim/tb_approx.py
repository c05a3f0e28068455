"""cocotb testbench: ApproxFilter against `golden.pipeline.approx_topk`, bit for bit."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge

from ..golden.pipeline import ApproxWindow
from .streams import Scoreboard, tb_config, tb_params
from .tb_topk import start_streams
from .topk_model import expected_approx, pack_query, query_patterns


@cocotb.test()
async def approx_matches_golden(dut):
    """Back-to-back queries of every pattern and size class, random k and window, empty
    lanes, idle gaps on the input and backpressure on the output."""
    cfg = tb_config()
    p = tb_params()
    seed = p.get("seed", 0)
    rng = np.random.default_rng(seed)
    window = ApproxWindow(offset=-(1 << 20), shift=17, bins=16)
    dut.window_offset.value = window.offset
    dut.window_shift.value = window.shift
    src, sink = await start_streams(dut, cfg, p.get("idle", 0.3), p.get("backpressure", 0.3),
                                    seed)
    sb = Scoreboard(dut._log, "approx")
    sink.callbacks.append(lambda it: sb.compare((int(it.id), int(it.score), int(it.last))))
    cap, lanes = cfg.topk_k, cfg.topk_lanes
    n_out = n_in = 0
    for n in sorted({1, cap - 1, cap, cap + 1, 3 * cap + 1, 300}):
        for _name, scores in query_patterns(n, 22, rng).items():
            scores = np.clip(scores, -(1 << 21), (1 << 21) - 1)
            k = int(rng.integers(1, cap + 1))
            ids = rng.permutation(1 << cfg.topk_id_bits)[:n]
            for beat in pack_query(ids, scores, lanes, k, hole_prob=0.2, rng=rng):
                src.put(beat)
            for item in expected_approx(ids, scores, k, window):
                sb.expect(item)
                n_out += 1
            n_in += n
    cocotb.start_soon(src.run())
    cocotb.start_soon(sink.run())
    for _ in range(20 * (n_in + n_out) + 1000):
        if len(sink.received) >= n_out and src.idle_now:
            break
        await RisingEdge(dut.clk)
    await ClockCycles(dut.clk, 50)
    dut._log.info("approx: %d items in, %d survivors matched", n_in, sb.matched)
    sb.check_done()
