"""`SkidBuffer` (`rpaccel.hw.skid`) in the Amaranth simulator: every beat once and in
order under random idle gaps and backpressure, one beat per cycle with one cycle of
latency when never held, and its outputs independent of the other side in the same cycle
(registered)."""

import random

import pytest
from amaranth import unsigned

from rpaccel.hw.skid import SkidBuffer

from .amaranth_bench import run_bench


@pytest.mark.parametrize("p_valid,p_ready", [(1.0, 1.0), (0.6, 0.5), (0.9, 0.2), (0.3, 0.9)])
def test_skid_buffer_passes_every_beat_in_order(p_valid, p_ready):
    rng = random.Random(f"{p_valid}{p_ready}")
    sent = list(range(1, 301))
    got, first_out, combinational = [], [], []
    dut = SkidBuffer(unsigned(16))

    async def bench(ctx):
        i, o = dut.i, dut.o
        pending = list(sent)
        for cycle in range(4000):
            if not pending and len(got) == len(sent):
                break
            offer = bool(pending) and rng.random() < p_valid
            ctx.set(i.valid, offer)
            ctx.set(i.payload, pending[0] if pending else 0)
            # ready and valid settle before the other side's are set: flipping the
            # output's ready must not move the input's ready in this cycle, nor the
            # input's valid the output's valid
            ctx.set(o.ready, 0)
            await ctx.delay(1e-10)
            before = (ctx.get(i.ready), ctx.get(o.valid), ctx.get(o.payload))
            take = rng.random() < p_ready
            ctx.set(o.ready, take)
            ctx.set(i.valid, not offer)
            await ctx.delay(1e-10)
            combinational.append(before != (ctx.get(i.ready), ctx.get(o.valid),
                                            ctx.get(o.payload)))
            ctx.set(i.valid, offer)
            await ctx.delay(1e-10)
            if offer and ctx.get(i.ready):
                if pending[0] == sent[0]:
                    first_out.append(cycle)
                pending.pop(0)
            if take and ctx.get(o.valid):
                got.append(ctx.get(o.payload))
                if len(got) in (1, len(sent)):
                    first_out.append(cycle)
            await ctx.tick()

    run_bench(dut, bench)
    assert got == sent, (len(got), [(k, v) for k, v in enumerate(got) if v != k + 1][:5])
    assert not any(combinational)
    if p_valid == p_ready == 1.0:
        # never held: the first beat leaves the cycle after it enters, then one per cycle
        assert first_out[1] - first_out[0] == 1
        assert first_out[2] - first_out[1] == len(sent) - 1
