"""cocotb testbench: `ModelLoader` against cocotbext-axi's AXI RAM.

The job pickle (``RPACCEL_TB["jobs"]``): ``{"dram": bytes, "loads": [(addr, target,
[beat values])]}``, images made by `rpaccel.hw.loader.load_image`. Every load's beats must
come out in order, whole, with the right ``target``; every AR burst must be INCR of whole
words, at most 256 beats and inside one 4 KiB page; a command offered while busy is not
taken.
"""

from __future__ import annotations

import pickle
import random

import cocotb
from amaranth import unsigned
from amaranth.lib import data
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from ..hw.loader import cmd_layout
from .streams import StreamSink, axi_ram, tb_config, tb_params


@cocotb.test()
async def loader_delivers_images(dut):
    """Loads at unaligned addresses with a stalling DRAM and backpressure on ``out``."""
    params = tb_params()
    with open(params["jobs"], "rb") as f:
        job = pickle.load(f)
    seed = params.get("seed", 0)
    data_bytes = params["data_bits"] // 8
    Clock(dut.clk, 10, unit="ns").start()
    axi_ram(dut, job["dram"], params.get("dram_stall", 0.0), random.Random(seed))
    for name in ("cmd__valid", "cmd__payload", "out__ready"):
        getattr(dut, name).value = 0
    cmd_l = cmd_layout(tb_config(), len(params["widths"]))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    out_l = data.StructLayout({"bits": unsigned(len(dut.out__payload))})
    sink = StreamSink(dut, "out", dut.clk, out_l, params.get("backpressure", 0.0),
                      random.Random(seed + 1))
    got = []
    widths = params["widths"]

    def take(it):
        # bits above the target's width are not part of its beat
        t = int(dut.target.value)
        got.append((int(it.bits) & ((1 << widths[t]) - 1), t))

    sink.callbacks.append(take)
    cocotb.start_soon(sink.run())
    bursts, bad_bursts = [], []

    async def watch_ar():
        while True:
            await RisingEdge(dut.clk)
            if int(dut.axi__arvalid.value) and int(dut.axi__arready.value):
                addr, n = int(dut.axi__araddr.value), int(dut.axi__arlen.value) + 1
                bursts.append(n)
                if (addr % 4096 + n * data_bytes > 4096 or int(dut.axi__arburst.value) != 1
                        or (1 << int(dut.axi__arsize.value)) != data_bytes
                        or addr % data_bytes):
                    bad_bursts.append((hex(addr), n))

    cocotb.start_soon(watch_ar())
    errors = 0
    for addr, target, beats in job["loads"]:
        got.clear()
        bursts.clear()
        await RisingEdge(dut.clk)
        dut.cmd__payload.value = cmd_l.const({"addr": addr, "beats": len(beats),
                                             "target": target}).as_value().value
        dut.cmd__valid.value = 1
        await RisingEdge(dut.clk)
        # a second command offered while busy (another target) must not be taken
        dut.cmd__payload.value = cmd_l.const({"addr": addr, "beats": len(beats),
                                             "target": (target + 1) % len(widths)}
                                            ).as_value().value
        await ReadOnly()
        taken_busy = int(dut.cmd__ready.value)
        await RisingEdge(dut.clk)
        dut.cmd__valid.value = 0
        assert not taken_busy, "a load command was taken while busy"
        for _ in range(50 * len(beats) * params["max_words"] + 1000):
            await RisingEdge(dut.clk)
            if not int(dut.busy.value):
                break
        expect = [(b, target) for b in beats]
        if got != expect:
            errors += 1
            n = min(len(got), len(expect))
            first = next((i for i in range(n) if got[i] != expect[i]), n)
            dut._log.error("load at 0x%x target %d: %d of %d beats, first difference at %d:"
                           "\n  expected %r\n  actual   %r", addr, target, len(got),
                           len(expect), first, expect[first:first + 1], got[first:first + 1])
        done = int(dut.done.value)
        assert done == len(beats), f"done {done}, beats {len(beats)}"
        dut._log.info("load at 0x%x: %d beats in %d bursts", addr, len(beats), len(bursts))
    assert not bad_bursts, f"bursts breaking the AXI rules: {bad_bursts[:5]}"
    assert errors == 0, f"{errors} of {len(job['loads'])} loads wrong"
