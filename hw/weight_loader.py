"""Weight loader of the MLP engine: each weight tile's ``R`` rows from the weight buffer
into the partition's shadow weight registers, in program order (output tiles outer, input
tiles inner), one row per cycle.

The shadow registers of a partition hold one tile, and a row of them is free once the
previous tile's first item (``swap``: it switches each PE from the shadow to the active
weight as it passes) has passed that row's last PE. The swapping item reaches PE ``(r, c)``
of the partition ``r + c`` array advances after it entered, so row ``r`` of the next tile
may be written once the array advanced ``r + pcols - 1`` times since: the next tile loads
row by row right behind the swapping item, and consecutive tiles can start ``R + pcols``
cycles apart rather than waiting for the item to leave the array. The loader counts the
array's advances itself (``advance``), so it stops with the array when the array stalls.
"""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import RPAccelConfig
from ..interface import engine_layouts
from .arith import lut_mul
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
    pcols : In(range(array_cols + 1))
        Columns of the partition in the current mode.
    swap : In(1)
        One cycle: a tile's first item (``swap`` set) entered the array.
    advance : In(1)
        The partition's PEs move on this cycle (not stalled by its output).
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
            "pcols": In(range(cfg.array_cols + 1)),
            "swap": In(1), "advance": In(1),
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
        # array advances since the last swapping item entered (saturating: past
        # R + pcols - 1 every row is free, as after reset and when a run starts: the
        # previous run's items have all left the array)
        since = Signal(range(R + cfg.array_cols + 1), init=R + cfg.array_cols)
        awaiting = Signal()  # a tile's rows are read, its swapping item has not entered
        with m.If(self.swap):
            m.d.sync += [since.eq(0), awaiting.eq(0)]
        with m.Elif(self.advance & (since != R + cfg.array_cols)):
            m.d.sync += since.eq(since + 1)
        row_free = Signal()
        m.d.comb += row_free.eq(~awaiting & (since >= row + self.pcols - 1))
        with m.FSM():
            walk_mlp_steps(m, self.start, self.step, d, "ROWS",
                           [count.eq(0), row.eq(0), addr.eq(d.wbase)])
            with m.State("ROWS"):
                with m.If(row_free):
                    m.d.comb += self.w_en.eq(1)
                    m.d.sync += [valid1.eq(1), row1.eq(row), last1.eq(row == R - 1),
                                 addr.eq(addr + 1), row.eq(row + 1)]
                    with m.If(row == R - 1):
                        m.d.sync += [row.eq(0), count.eq(count + 1), awaiting.eq(1)]
                        with m.If(count == lut_mul(d.ktiles, d.ntiles) - 1):
                            m.d.sync += self.step.eq(self.step + 1)
                            m.next = "STEP"
        return m
