"""Amaranth-simulator helpers for stream blocks (the fast unit-test tier)."""

from __future__ import annotations

from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["stream_put", "stream_get", "run_filter"]


async def stream_put(ctx, stream, payload):
    """Offer one payload and wait until the block takes it."""
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take one payload."""
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def run_filter(dut, beats, n_out: int, setup=None, max_cycles: int = 20000,
               reset_after: int | None = None, stamps: list | None = None):
    """Feed ``beats`` to a filter block (`TopK`, `ApproxFilter`) back to back and collect
    ``n_out`` outputs as ``(id, score, last)``; stops after ``max_cycles`` cycles so that a
    hung block fails instead of hanging. ``setup(ctx)`` runs first (e.g. to set ports).
    ``reset_after``: pulse the block's reset for one cycle once that many beats are in.
    ``stamps`` (a list) receives the cycle of each output."""
    got = []
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut

    async def producer(ctx):
        if setup:
            setup(ctx)
        for n, b in enumerate(beats):
            if n == reset_after:
                ctx.set(cd.rst, 1)
                await ctx.tick()
                ctx.set(cd.rst, 0)
            await stream_put(ctx, dut.i, b)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        cycles = 0
        async for _, _, valid, p in ctx.tick().sample(dut.o.valid, dut.o.payload):
            if valid:
                got.append((int(p.id), int(p.score), int(p.last)))
                if stamps is not None:
                    stamps.append(cycles)
            cycles += 1
            if len(got) == n_out or cycles > max_cycles:
                break

    sim = Simulator(top)
    sim.add_clock(1e-6, domain="sync")
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return got
