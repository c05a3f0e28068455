"""Weight loader of the MLP engine: each weight tile's ``R`` rows from the weight buffer
into the partition's shadow weight registers, in program order (output tiles outer, input
tiles inner), one row per cycle.

The shadow registers of a partition hold one tile. They are free once the previous
tile's first item, which switched every PE from the shadow to the active registers, has
left the array: the loader waits until as many tiles have started leaving the array
(``tiles_exited``, counted by the `OutputPath`) as it has loaded.
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import RPAccelConfig
from ..interface import engine_layouts
from .engine_steps import walk_mlp_steps

__all__ = ["WeightLoader", "wload_layout"]


def wload_layout(config: RPAccelConfig, width: int):
    """One shadow-register row write of a partition of ``width`` columns."""
    return data.StructLayout({"row": range(config.array_rows),
                              "w": data.ArrayLayout(signed(8), width)})


class WeightLoader(wiring.Component):
    """The weight tiles of a run into the shadow registers (module docstring).

    Parameters
    ----------
    config : RPAccelConfig
    width : int
        Columns of the engine (`rpaccel.interface.slot_width`).

    Members
    -------
    start : In(1)
        One cycle: a run begins (the counters restart).
    step : Out(range(max_steps + 1)), desc : In(desc layout)
        The loader's program step and its descriptor (read by the engine).
    w_en, w_addr : Out, w_data : In(unsigned(8 * width))
        Read port of the weight buffer (synchronous: data the cycle after ``w_en``).
    wload : Out(stream.Signature(wload_layout, always_ready=True))
        Row writes into the shadow registers (the array takes one every cycle); a tile's
        last row completes it.
    tiles_exited : In(32)
        Tiles of this run whose first item has left the array.
    tiles_loaded : Out(32)
        Tiles of this run completely in the shadow registers.
    """

    def __init__(self, config: RPAccelConfig, width: int):
        self.config = config
        self.width = width
        cfg = config
        super().__init__({
            "start": In(1),
            "step": Out(range(cfg.max_steps + 1)),
            "desc": In(engine_layouts(cfg, width).desc),
            "w_en": Out(1), "w_addr": Out(range(cfg.weight_rows)),
            "w_data": In(unsigned(8 * width)),
            "wload": Out(stream.Signature(wload_layout(cfg, width), always_ready=True)),
            "tiles_exited": In(32),
            "tiles_loaded": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, R = self.config, self.config.array_rows
        d = self.desc
        count = Signal(range(cfg.max_width * cfg.max_width + 1))  # tiles of the step loaded
        row = Signal(range(R))
        addr = Signal(range(cfg.weight_rows))
        valid1 = Signal()
        row1 = Signal(range(R))
        last1 = Signal()
        m.d.comb += [self.wload.valid.eq(valid1), self.wload.payload.row.eq(row1),
                     self.w_addr.eq(addr)]
        for c in range(self.width):
            m.d.comb += self.wload.payload.w[c].eq(self.w_data.word_select(c, 8))
        m.d.sync += valid1.eq(0)
        with m.If(valid1 & last1):
            m.d.sync += self.tiles_loaded.eq(self.tiles_loaded + 1)
        with m.If(self.start):
            m.d.sync += self.tiles_loaded.eq(0)
        with m.FSM():
            walk_mlp_steps(m, self.start, self.step, d, "WAIT",
                           [count.eq(0), row.eq(0), addr.eq(d.wbase)])
            with m.State("WAIT"):
                with m.If(~valid1 & (self.tiles_exited == self.tiles_loaded)):
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += self.w_en.eq(1)
                m.d.sync += [valid1.eq(1), row1.eq(row), last1.eq(row == R - 1),
                             addr.eq(addr + 1), row.eq(row + 1)]
                with m.If(row == R - 1):
                    m.d.sync += [row.eq(0), count.eq(count + 1)]
                    with m.If(count == d.ktiles * d.ntiles - 1):
                        m.d.sync += self.step.eq(self.step + 1)
                        m.next = "STEP"
                    with m.Else():
                        m.next = "WAIT"
        return m
