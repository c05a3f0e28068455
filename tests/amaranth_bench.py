"""The harness of the Amaranth-simulator unit tests: a device under test on one
synchronous clock driven by an async testbench."""

from amaranth import ClockDomain, Module
from amaranth.lib import data
from amaranth.sim import Simulator


def run_bench(dut, bench) -> None:
    """Simulate ``dut`` (its ``sync`` domain clocked at 100 MHz) until the async
    testbench ``bench(ctx)`` returns."""
    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def value_of(ctx, view):
    """``view`` read in the current cycle as plain Python: a dict per struct, a list per
    array, an int per field."""
    if isinstance(view, data.View):
        layout = view.shape()
        if isinstance(layout, data.ArrayLayout):
            return [value_of(ctx, view[i]) for i in range(layout.length)]
        return {name: value_of(ctx, view[name]) for name, _ in layout}
    return ctx.get(view)
