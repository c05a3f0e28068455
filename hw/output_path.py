"""Output path of the MLP engine: the partition's int32 results of each item and tile
into the partial-sum buffer, and after a layer's last input tile through the
`RequantUnit` into the activation buffer or, for the final layer, out of the engine.

Results arrive in the issue order (output tiles outer, input tiles inner, the run's items
innermost). For every input tile but the last, ``acc = psum[item] + result`` (the first
tile starts from 0) goes back into the partial-sum buffer; after the last one, ``acc``
with the column's bias, multiplier and shift is requantized (ReLU if the step says so:
docs/numerics.md) into the output tile's bytes of the step's destination region, or,
for the final layer, ``acc + bias`` leaves as int32 on ``out``. The requantized writes
are never blocked (the engine gives them the activation buffer's write port first).

``fwd_step`` / ``fwd_items`` tell the `IssueSequencer` how far the last output tile of the
latest layer has been written (items leave in order), so that the next layer's first
tile can issue each item as soon as its inputs are complete instead of after the whole
layer has drained.
"""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import RPAccelConfig
from ..interface import EngineGeometry, engine_layouts
from .engine_steps import walk_mlp_steps
from .requant import RequantUnit, delay_line

__all__ = ["OutputPath", "act_write_layout"]


def act_write_layout(config: RPAccelConfig):
    """One activation-buffer write: a word of ``region`` / ``item`` / ``word`` (within the
    running bank) with byte enables."""
    geo = EngineGeometry(config)
    return data.StructLayout({"region": 2, "item": range(config.sub_batch),
                              "word": range(geo.words + 1), "data": unsigned(8 * geo.lanes),
                              "en": unsigned(geo.lanes)})


class OutputPath(wiring.Component):
    """Partial sums, requantization and final results of a run (module docstring).

    Parameters
    ----------
    config : RPAccelConfig
    width : int
        Columns of the engine (`rpaccel.interface.slot_width`).

    Members
    -------
    start : In(1)
        One cycle: a run of ``items`` items begins (``items``, ``pcols`` hold during it).
    items : In(range(sub_batch + 1))
    pcols : In(range(array_cols + 1))
        Columns of the partition (``array_cols >> mode``).
    step : Out(range(max_steps + 1)), desc : In(desc layout)
        The path's program step and its descriptor (read by the engine).
    res : In(stream.Signature(ArrayLayout(signed(32), width)))
        The partition's results, one beat per item and tile.
    p_addr : Out, p_data : In(ArrayLayout(lane layout, width))
        Combinational read of the parameter buffer (a row per output tile).
    out : Out(stream.Signature(out layout))
        The final layer's ``acc + bias`` per item and output tile; ``last`` on the run's
        last beat.
    wr : Out(stream.Signature(act_write_layout, always_ready=True))
        Requantized output tiles into the activation buffer.
    retire : Out(1)
        A result left the array without a requantized write (a partial sum stored or a
        final result sent): with ``wr.valid`` what the engine's in-flight count drops by.
    fwd_step : Out(range(max_steps + 1)), fwd_items : Out(range(sub_batch + 1))
        The step of the last layer whose last output tile has begun to be written, and how
        many of its items are written (items ``0 .. fwd_items - 1`` hold their whole
        output); ``fwd_step`` is ``max_steps`` (no step) from ``start`` until the run's first
        such write.
    """

    def __init__(self, config: RPAccelConfig, width: int):
        self.config = config
        self.width = width
        cfg = config
        lay = engine_layouts(cfg, width)
        self.lane_layout = lay.lane
        super().__init__({
            "start": In(1), "items": In(range(cfg.sub_batch + 1)),
            "pcols": In(range(cfg.array_cols + 1)),
            "step": Out(range(cfg.max_steps + 1)), "desc": In(lay.desc),
            "res": In(stream.Signature(data.ArrayLayout(signed(32), width))),
            "p_addr": Out(range(cfg.param_rows)),
            "p_data": In(data.ArrayLayout(lay.lane, width)),
            "out": Out(stream.Signature(lay.out)),
            "wr": Out(stream.Signature(act_write_layout(cfg), always_ready=True)),
            "retire": Out(1),
            "fwd_step": Out(range(cfg.max_steps + 1), init=cfg.max_steps),
            "fwd_items": Out(range(cfg.sub_batch + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, width = self.config, self.width
        geo = EngineGeometry(cfg)
        A, W, SB = geo.lanes, geo.words, cfg.sub_batch
        gcols = cfg.array_cols // cfg.partitions
        pcols, d, res = self.pcols, self.desc, self.res
        m.submodules.psum_mem = psum_mem = Memory(
            shape=data.ArrayLayout(signed(32), width), depth=SB, init=[])
        ps_wr, ps_rd = psum_mem.write_port(), psum_mem.read_port(domain="comb")

        # ---- where the next result goes: item, input / output tile, destination word ----
        in_items = Signal()
        b = Signal(range(SB + 1))
        kt = Signal(range(cfg.max_width + 1))
        nt = Signal(range(cfg.max_width + 1))
        word = Signal(range(W + 1))
        off = Signal(range(A))
        with m.FSM():
            walk_mlp_steps(m, self.start, self.step, d, "ITEMS",
                           [b.eq(0), kt.eq(0), nt.eq(0), word.eq(0), off.eq(0)])
            with m.State("ITEMS"):
                m.d.comb += in_items.eq(1)
                with m.If(res.valid & res.ready):
                    m.d.sync += b.eq(b + 1)
                    with m.If(b == self.items - 1):
                        m.d.sync += b.eq(0)
                        with m.If(kt == d.ktiles - 1):
                            m.d.sync += kt.eq(0)
                            with m.If(off == A - pcols):
                                m.d.sync += [off.eq(0), word.eq(word + 1)]
                            with m.Else():
                                m.d.sync += off.eq(off + pcols)
                            with m.If(nt == d.ntiles - 1):
                                m.d.sync += self.step.eq(self.step + 1)
                                m.next = "STEP"
                            with m.Else():
                                m.d.sync += nt.eq(nt + 1)
                        with m.Else():
                            m.d.sync += kt.eq(kt + 1)

        # ---- partial sum, then final result or requantization ---------------------------
        last_kt = kt == d.ktiles - 1
        m.d.comb += [ps_rd.addr.eq(b), ps_wr.addr.eq(b), self.p_addr.eq(d.pbase + nt)]
        acc = Signal(data.ArrayLayout(signed(32), width))
        for c in range(width):
            m.d.comb += acc[c].eq(Mux(kt == 0, 0, ps_rd.data[c]) + res.payload[c])
        m.d.comb += ps_wr.data.eq(acc)

        m.submodules.requant = rq = RequantUnit(cfg, lanes=width)
        m.d.comb += [rq.o.ready.eq(1), rq.i.payload.relu.eq(d.relu)]
        for c in range(width):
            m.d.comb += [rq.i.payload.lanes[c].acc.eq(acc[c]),
                         rq.i.payload.lanes[c].bias.eq(self.p_data[c].bias),
                         rq.i.payload.lanes[c].mult.eq(self.p_data[c].mult),
                         rq.i.payload.lanes[c].shift.eq(self.p_data[c].shift),
                         self.out.payload.acc[c].eq(acc[c] + self.p_data[c].bias)]
        m.d.comb += self.out.payload.last.eq((b == self.items - 1) & (nt == d.ntiles - 1))
        with m.If(in_items & ~last_kt):
            m.d.comb += [res.ready.eq(1), ps_wr.en.eq(res.valid), self.retire.eq(res.valid)]
        with m.Elif(in_items & d.final):
            m.d.comb += [self.out.valid.eq(res.valid), res.ready.eq(self.out.ready),
                         self.retire.eq(res.valid & self.out.ready)]
        with m.Elif(in_items):
            m.d.comb += [rq.i.valid.eq(res.valid), res.ready.eq(rq.i.ready)]

        # ---- requantized tiles: a tag travels beside the requant pipeline ---------------
        tag_l = data.StructLayout({"item": range(SB), "word": range(W + 1), "off": range(A),
                                   "dst": 2, "step": range(cfg.max_steps + 1), "lt": 1})
        tag = Signal(tag_l)
        m.d.comb += [tag.item.eq(b), tag.word.eq(word), tag.off.eq(off), tag.dst.eq(d.dst),
                     tag.step.eq(self.step), tag.lt.eq(nt == d.ntiles - 1)]
        otag = delay_line(m, tag, RequantUnit.LATENCY, "rq_tag")[-1]
        # a layer's last output tile is written item by item, in order: count them
        with m.If(self.start):
            m.d.sync += [self.fwd_step.eq(cfg.max_steps), self.fwd_items.eq(0)]
        with m.Elif(rq.o.valid & otag.lt):
            with m.If(otag.step == self.fwd_step):
                m.d.sync += self.fwd_items.eq(self.fwd_items + 1)
            with m.Else():
                m.d.sync += [self.fwd_step.eq(otag.step), self.fwd_items.eq(1)]
        wr = self.wr.payload
        m.d.comb += [self.wr.valid.eq(rq.o.valid), wr.region.eq(otag.dst),
                     wr.item.eq(otag.item), wr.word.eq(otag.word)]
        # the tile's lanes sit at its offset within the word (partition widths are
        # multiples of gcols, so the offset is one of A / gcols positions)
        for o in range(0, A, gcols):
            with m.If(otag.off == o):
                for j in range(A):
                    if 0 <= j - o < width:
                        m.d.comb += wr.data.word_select(j, 8).eq(rq.o.payload[j - o])
        off_max = (1 << len(otag.off)) - 1
        for j in range(A):
            # lanes at or past the largest offset are never below it (no constant compare)
            at_or_past = Const(1) if j >= off_max else (j >= otag.off)
            m.d.comb += wr.en[j].eq(at_or_past & (j < otag.off + pcols))
        return m
