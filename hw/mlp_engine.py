"""MLP engine: runs a whole stage (bottom MLP, feature interaction, top MLP) of a sub-batch
on one partition of the systolic `Mesh`, and `ComputeEngine`, the mesh with one engine per
partition slot.

The engine follows a program (one descriptor per step, loaded with the weights at model
load). An MLP step tiles its layer ``K x N`` into ``ceil(K/R) x ceil(N/P)`` weight tiles of
the ``R x P`` partition (output tiles outer, input tiles inner) and streams every item of
the sub-batch through each tile; int32 partial sums wait in a per-item buffer between the
input tiles, and after the last one the sum goes with its bias through the `RequantUnit`
into the activation buffer, or (final layer) out of the engine as int32. The next tile's
weights are read from the weight buffer into the array's shadow registers while the
current tile computes, so consecutive tiles follow each other without a gap once the
sub-batch is at least about ``2R + P`` items. An interaction step (``dot`` or ``cat``) runs on
a small dedicated unit that reads the bottom output and the pooled embeddings from the
feature region of the activation buffer. Numerics: docs/numerics.md; the host side that
compiles a `QuantizedStage` into a program is `rpaccel.program`.
"""

import math

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import RPAccelConfig
from ..interface import EngineTarget
from .array import Mesh, mesh_layouts, mode_shape
from .interaction import InteractionUnit, pair_layout
from .requant import RequantUnit, delay_line

__all__ = ["MLPEngine", "ComputeEngine", "EngineGeometry", "Target", "Kind", "Region",
           "engine_layouts", "slot_width", "COUNTERS"]


#: Per-engine counters (48 bits, reset by ``run``).
COUNTERS = ("cycles", "act_beats", "macs", "stall_in", "stall_out")


#: ``load.target`` values: which buffer a load beat writes (`rpaccel.interface`).
Target = EngineTarget


class Kind:
    """Program step kinds."""

    END, MLP, DOT, CAT = range(4)


class Region:
    """Regions of the activation buffer: two ping-pong buffers and the feature region
    (bottom-MLP output and pooled embeddings, read by the interaction step)."""

    A, B, FEAT = range(3)


def slot_width(config: RPAccelConfig, slot: int) -> int:
    """Columns of the widest partition that partition slot ``slot`` can be."""
    return config.array_cols >> ceil_log2(slot + 1)


class EngineGeometry:
    """Sizes the engine's buffers derive from ``config`` (shared with the host compiler).

    Attributes
    ----------
    lanes : int
        int8 values per activation-buffer word: ``lcm(array_rows, array_cols)``, so that a
        k-tile (R values) and an output tile (P values, any mode) never straddle words.
    words : int
        Words per item and region.
    """

    def __init__(self, config: RPAccelConfig):
        self.config = config
        self.rows = config.array_rows
        self.lanes = math.lcm(config.array_rows, config.array_cols)
        self.words = -(-config.max_width // self.lanes)
        #: words of one bank (regions A, B, FEAT); there are two banks
        self.bank_words = 3 * config.sub_batch * self.words
        self.act_depth = 2 * self.bank_words

    def act_addr(self, region: int, item: int, word: int) -> int:
        """Address of a load beat (the engine adds the bank)."""
        return (region * self.config.sub_batch + item) * self.words + word


def engine_layouts(config: RPAccelConfig, width: int):
    """Layouts of an engine of ``width`` columns: ``(desc, param_lane, pair, load, out)``."""
    cfg = config
    desc = data.StructLayout({
        "kind": 2, "relu": 1, "final": 1, "src": 2, "dst": 2,
        "k": range(cfg.max_width + 1), "n": range(cfg.max_width + 1),
        "ktiles": range(cfg.max_width + 1), "ntiles": range(cfg.max_width + 1),
        "wbase": range(cfg.weight_rows), "pbase": range(cfg.param_rows),
        # interaction: features, elements per feature, words per feature, pairs
        "feats": range(65), "d": range(cfg.max_width + 1), "dw": range(cfg.max_width + 1),
    })
    lane = data.StructLayout({"bias": signed(cfg.acc_bits), "mult": unsigned(cfg.mult_bits),
                              "shift": unsigned(cfg.shift_bits)})
    pair = pair_layout(cfg)
    geo = EngineGeometry(cfg)
    data_bits = max(geo.lanes * 8, width * 8, width * lane.size, desc.size, pair.size)
    depth = max(cfg.weight_rows, cfg.param_rows, cfg.max_steps, cfg.max_pairs, geo.act_depth)
    load = data.StructLayout({"target": 3, "addr": range(depth), "data": unsigned(data_bits)})
    out = data.StructLayout({"acc": data.ArrayLayout(signed(cfg.acc_bits), width), "last": 1})
    return desc, lane, pair, load, out


class MLPEngine(wiring.Component):
    """Sequencer, buffers and requantization of one partition slot.

    Parameters
    ----------
    config : RPAccelConfig
    width : int
        Columns of the widest partition this slot can be (`slot_width`).

    Members
    -------
    mode : In(range(log2(partitions) + 1))
        The mesh mode; the partition has ``array_cols >> mode`` columns.
    load : In(stream.Signature(load_layout))
        Model and sub-batch data: weight rows, parameter rows, program steps, pair
        parameters and activation words (`Target`). Activation words are also accepted
        while a run is busy: they go to the other bank and are read by the next run.
    run : In(stream.Signature(range(sub_batch + 1)))
        Start the program on that many items (1 to ``sub_batch``).
    out : Out(stream.Signature(out_layout))
        The final layer's int32 ``acc + bias`` per item and output tile (output tiles
        outer); ``last`` marks the run's last beat.
    act, wload, res
        To and from the partition of the mesh.
    busy : Out(1)
    cycles, act_beats, macs, stall_in, stall_out : Out(48)
        Counters of the last run: cycles busy, items entering the array, useful MACs,
        cycles the array had no input, cycles its input was held by a blocked output.
    """

    def __init__(self, config: RPAccelConfig, width: int):
        self.config = config
        self.width = width
        self.geo = EngineGeometry(config)
        self.desc_layout, self.lane_layout, self.pair_layout, self.load_layout, \
            self.out_layout = engine_layouts(config, width)
        act_l, _, _ = mesh_layouts(config)
        wl = data.StructLayout({"row": range(config.array_rows),
                                "w": data.ArrayLayout(signed(8), width)})
        counter = {n: Out(48) for n in COUNTERS}
        super().__init__({
            "mode": In(mode_shape(config.partitions)),
            "load": In(stream.Signature(self.load_layout)),
            "run": In(stream.Signature(range(config.sub_batch + 1))),
            "out": Out(stream.Signature(self.out_layout)),
            "act": Out(stream.Signature(act_l)),
            "wload": Out(stream.Signature(wl)),
            "res": In(stream.Signature(data.ArrayLayout(signed(32), width))),
            "busy": Out(1),
            **counter,
        })

    def elaborate(self, platform):  # noqa: C901 (one sequencer, read top to bottom)
        m = Module()
        cfg, geo, width = self.config, self.geo, self.width
        R, A, W, SB = cfg.array_rows, geo.lanes, geo.words, cfg.sub_batch
        gcols = cfg.array_cols // cfg.partitions

        pcols = Signal(range(cfg.array_cols + 1))
        m.d.comb += pcols.eq(cfg.array_cols >> self.mode)

        # ---- buffers -------------------------------------------------------------------
        m.submodules.act_mem = act_mem = Memory(shape=unsigned(8 * A), depth=geo.act_depth,
                                                init=[])
        m.submodules.w_mem = w_mem = Memory(shape=unsigned(8 * width), depth=cfg.weight_rows,
                                            init=[])
        param_l = data.ArrayLayout(self.lane_layout, width)
        m.submodules.p_mem = p_mem = Memory(shape=param_l, depth=cfg.param_rows, init=[])
        m.submodules.pair_mem = pair_mem = Memory(
            shape=self.pair_layout, depth=-(-cfg.max_pairs // cfg.inter_pairs), init=[])
        m.submodules.psum_mem = psum_mem = Memory(
            shape=data.ArrayLayout(signed(32), width), depth=SB, init=[])
        act_wr = act_mem.write_port(granularity=8)
        act_ra = act_mem.read_port()
        act_rb = act_mem.read_port()
        w_wr, w_rd = w_mem.write_port(), w_mem.read_port()
        p_wr, p_rd = p_mem.write_port(), p_mem.read_port(domain="comb")
        pair_wr, pair_rd = pair_mem.write_port(), pair_mem.read_port(domain="comb")
        ps_wr, ps_rd = psum_mem.write_port(), psum_mem.read_port(domain="comb")
        prog_regs = Array(Signal(self.desc_layout.size, name=f"prog{i}")
                          for i in range(cfg.max_steps))

        class _Prog:
            def __getitem__(_, index):
                return self.desc_layout(prog_regs[index])

        prog = _Prog()

        # Two banks of regions: a run works in bank run_bank while activation beats for
        # the next run go to the other one (load_bank), so the next sub-batch is written
        # while this one computes.
        run_bank = Signal()
        load_bank = Signal()

        def act_addr(region, item, word):
            return geo.act_addr(region, item, word) + Mux(run_bank, geo.bank_words, 0)

        # ---- model / data load -----------------------------------------------------------
        busy = Signal()
        ld = self.load.payload
        act_write_free = Signal()  # no result or interaction write this cycle
        ld_ready = Signal()
        m.d.comb += [ld_ready.eq(~busy | ((ld.target == Target.ACT) & act_write_free)),
                     self.load.ready.eq(ld_ready), self.busy.eq(busy)]
        ld_go = self.load.valid & ld_ready
        m.d.comb += [
            w_wr.addr.eq(ld.addr), w_wr.data.eq(ld.data),
            w_wr.en.eq(ld_go & (ld.target == Target.WEIGHT)),
            p_wr.addr.eq(ld.addr), p_wr.data.eq(ld.data),
            p_wr.en.eq(ld_go & (ld.target == Target.PARAM)),
            pair_wr.addr.eq(ld.addr), pair_wr.data.eq(ld.data),
            pair_wr.en.eq(ld_go & (ld.target == Target.PAIR)),
        ]
        with m.If(ld_go & (ld.target == Target.PROG)):
            m.d.sync += prog_regs[ld.addr[:max(1, ceil_log2(cfg.max_steps))]].eq(ld.data)

        # ---- shared run state ----------------------------------------------------------
        items = Signal(range(SB + 1))
        inflight = Signal(range(4 * SB * 8 + 64))  # items in the array or the requant unit
        inc = Signal()
        dec_a = Signal()
        dec_b = Signal()
        m.d.sync += inflight.eq(inflight + inc - dec_a - dec_b)
        drained = Signal()
        m.d.comb += drained.eq(inflight == 0)
        tiles_loaded = Signal(32)
        tiles_started = Signal(32)
        tiles_exited = Signal(32)
        start = Signal()  # one cycle: a run begins

        # ---- issue side: program steps, tiles, items -----------------------------------
        step = Signal(range(cfg.max_steps + 1))
        d = prog[step]
        b = Signal(range(SB + 1))
        kt = Signal(range(cfg.max_width + 1))
        nt = Signal(range(cfg.max_width + 1))
        kword = Signal(range(W + 1))
        koff = Signal(range(A))
        tile_first = Signal()  # the tile about to issue is the layer's first
        krem = Signal(range(cfg.max_width + 1))
        nrem = Signal(range(cfg.max_width + 1))
        tile_macs = Signal(24)
        valid0 = Signal()
        adv = Signal()
        v1 = Signal()
        swap1 = Signal()
        koff1 = Signal(range(A))
        m.d.comb += adv.eq(~v1 | self.act.ready)

        m.submodules.interaction = iu = InteractionUnit(cfg, A, W)
        m.d.comb += [iu.items.eq(items), iu.cat.eq(d.kind == Kind.CAT), iu.feats.eq(d.feats),
                     iu.d.eq(d.d), iu.dw.eq(d.dw)]

        rows_valid = Mux(krem > R, R, krem)
        cols_valid = Mux(nrem > pcols, pcols, nrem)
        m.d.comb += tile_macs.eq(rows_valid * cols_valid)
        # the next tile of the layer follows without a gap when its weights are loaded
        # (the current tile counts as started from its first item on)
        next_loaded = Signal()
        m.d.comb += next_loaded.eq(tiles_loaded > tiles_started + (b == 0))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.run.ready.eq(1)
                with m.If(self.run.valid & (self.run.payload != 0)):
                    m.d.comb += start.eq(1)
                    m.d.sync += [items.eq(self.run.payload), step.eq(0), busy.eq(1),
                                 run_bank.eq(load_bank), load_bank.eq(~load_bank)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += [b.eq(0), kt.eq(0), nt.eq(0), kword.eq(0), koff.eq(0),
                             tile_first.eq(1), krem.eq(d.k), nrem.eq(d.n)]
                with m.Switch(d.kind):
                    with m.Case(Kind.END):
                        m.next = "FINISH"
                    with m.Case(Kind.MLP):
                        m.next = "TILE"
                    with m.Default():
                        m.next = "IWAIT"
            with m.State("TILE"):
                # a tile issues once its weights are in the shadow registers and, for a
                # layer's first tile, once the previous step's results are all written
                with m.If((tiles_loaded > tiles_started) & (~tile_first | drained)):
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += valid0.eq(1)
                with m.If(adv):
                    m.d.sync += b.eq(b + 1)
                    with m.If(b == items - 1):
                        m.d.sync += [b.eq(0), tile_first.eq(0)]
                        with m.If(kt == d.ktiles - 1):
                            m.d.sync += [kt.eq(0), kword.eq(0), koff.eq(0), krem.eq(d.k)]
                            with m.If(nt == d.ntiles - 1):
                                m.d.sync += step.eq(step + 1)
                                m.next = "FETCH"
                            with m.Else():
                                m.d.sync += [nt.eq(nt + 1), nrem.eq(nrem - pcols)]
                                with m.If(~next_loaded):
                                    m.next = "TILE"
                        with m.Else():
                            m.d.sync += [kt.eq(kt + 1), krem.eq(krem - R)]
                            with m.If(koff == A - R):
                                m.d.sync += [koff.eq(0), kword.eq(kword + 1)]
                            with m.Else():
                                m.d.sync += koff.eq(koff + R)
                            with m.If(~next_loaded):
                                m.next = "TILE"
            with m.State("IWAIT"):
                with m.If(drained):
                    m.d.comb += iu.go.eq(1)
                    m.next = "INTER"
            with m.State("INTER"):
                with m.If(~iu.busy):
                    m.d.sync += step.eq(step + 1)
                    m.next = "FETCH"
            with m.State("FINISH"):
                with m.If(drained & ~self.out.valid):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"

        # act read port A: the issue side, or the interaction's first operand
        rd_word = Signal(8 * A)
        m.d.comb += rd_word.eq(act_ra.data)
        with m.If(iu.rd_en):
            m.d.comb += [act_ra.en.eq(1), act_rb.en.eq(1),
                         act_ra.addr.eq(act_addr(Region.FEAT, iu.rd_item, iu.rd_word)),
                         act_rb.addr.eq(act_addr(Region.FEAT, iu.rd_item, iu.rd_word + 1))]
        with m.Else():
            m.d.comb += [act_ra.en.eq(adv), act_ra.addr.eq(act_addr(d.src, b, kword))]
        m.d.comb += [iu.rd_a.eq(act_ra.data), iu.rd_b.eq(act_rb.data)]
        macs1 = Signal.like(tile_macs)
        with m.If(adv):
            m.d.sync += [v1.eq(valid0), swap1.eq(b == 0), koff1.eq(koff), macs1.eq(tile_macs)]
        m.d.comb += [inc.eq(valid0 & adv), self.act.valid.eq(v1),
                     self.act.payload.swap.eq(swap1)]
        with m.If(valid0 & adv & (b == 0)):
            m.d.sync += tiles_started.eq(tiles_started + 1)
        for off in range(0, A, R):
            with m.If(koff1 == off):
                for r in range(R):
                    m.d.comb += self.act.payload.x[r].eq(rd_word.word_select(off + r, 8))

        # ---- weight loader: the next tile's rows into the shadow registers -------------
        lstep = Signal(range(cfg.max_steps + 1))
        ld_d = prog[lstep]
        lcount = Signal(range(cfg.max_width * cfg.max_width + 1))
        lrow = Signal(range(R))
        laddr = Signal(range(cfg.weight_rows))
        lv1 = Signal()
        lrow1 = Signal(range(R))
        llast1 = Signal()
        m.d.comb += [self.wload.valid.eq(lv1), self.wload.payload.row.eq(lrow1),
                     w_rd.addr.eq(laddr)]
        for c in range(width):
            m.d.comb += self.wload.payload.w[c].eq(w_rd.data.word_select(c, 8))
        with m.If(self.wload.ready | ~lv1):
            m.d.sync += lv1.eq(0)
        with m.If(lv1 & self.wload.ready & llast1):
            m.d.sync += tiles_loaded.eq(tiles_loaded + 1)
        with m.FSM():
            _walk_mlp_steps(m, start, lstep, ld_d, "WAIT",
                            [lcount.eq(0), lrow.eq(0), laddr.eq(ld_d.wbase)])
            with m.State("WAIT"):
                # the shadow registers are free once the previous tile's first item (which
                # switched every PE to them) has left the array
                with m.If(~lv1 & (tiles_exited == tiles_loaded)):
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += w_rd.en.eq(1)
                m.d.sync += [lv1.eq(1), lrow1.eq(lrow), llast1.eq(lrow == R - 1),
                             laddr.eq(laddr + 1), lrow.eq(lrow + 1)]
                with m.If(lrow == R - 1):
                    m.d.sync += [lrow.eq(0), lcount.eq(lcount + 1)]
                    with m.If(lcount == ld_d.ktiles * ld_d.ntiles - 1):
                        m.d.sync += lstep.eq(lstep + 1)
                        m.next = "STEP"
                    with m.Else():
                        m.next = "WAIT"

        # ---- output side: partial sums, requantization, final results ------------------
        in_items = Signal()
        ostep = Signal(range(cfg.max_steps + 1))
        od = prog[ostep]
        ob = Signal(range(SB + 1))
        okt = Signal(range(cfg.max_width + 1))
        ont = Signal(range(cfg.max_width + 1))
        oword = Signal(range(W + 1))
        ooff = Signal(range(A))
        with m.FSM():
            _walk_mlp_steps(m, start, ostep, od, "ITEMS",
                            [ob.eq(0), okt.eq(0), ont.eq(0), oword.eq(0), ooff.eq(0)])
            with m.State("ITEMS"):
                m.d.comb += in_items.eq(1)
                with m.If(self.res.valid & self.res.ready):
                    m.d.sync += ob.eq(ob + 1)
                    with m.If(ob == 0):
                        m.d.sync += tiles_exited.eq(tiles_exited + 1)
                    with m.If(ob == items - 1):
                        m.d.sync += ob.eq(0)
                        with m.If(okt == od.ktiles - 1):
                            m.d.sync += okt.eq(0)
                            with m.If(ooff == A - pcols):
                                m.d.sync += [ooff.eq(0), oword.eq(oword + 1)]
                            with m.Else():
                                m.d.sync += ooff.eq(ooff + pcols)
                            with m.If(ont == od.ntiles - 1):
                                m.d.sync += ostep.eq(ostep + 1)
                                m.next = "STEP"
                            with m.Else():
                                m.d.sync += ont.eq(ont + 1)
                        with m.Else():
                            m.d.sync += okt.eq(okt + 1)

        last_kt = okt == od.ktiles - 1
        m.d.comb += [ps_rd.addr.eq(ob), ps_wr.addr.eq(ob), p_rd.addr.eq(od.pbase + ont)]
        acc = Signal(data.ArrayLayout(signed(32), width))
        for c in range(width):
            m.d.comb += acc[c].eq(Mux(okt == 0, 0, ps_rd.data[c]) + self.res.payload[c])
        m.d.comb += ps_wr.data.eq(acc)

        rq = RequantUnit(cfg, lanes=width)
        m.submodules.requant = rq
        m.d.comb += rq.o.ready.eq(1)
        m.d.comb += rq.i.payload.relu.eq(od.relu)
        for c in range(width):
            m.d.comb += [rq.i.payload.lanes[c].acc.eq(acc[c]),
                         rq.i.payload.lanes[c].bias.eq(p_rd.data[c].bias),
                         rq.i.payload.lanes[c].mult.eq(p_rd.data[c].mult),
                         rq.i.payload.lanes[c].shift.eq(p_rd.data[c].shift),
                         self.out.payload.acc[c].eq(acc[c] + p_rd.data[c].bias)]
        m.d.comb += self.out.payload.last.eq((ob == items - 1) & (ont == od.ntiles - 1))
        with m.If(in_items & ~last_kt):
            m.d.comb += [self.res.ready.eq(1), ps_wr.en.eq(self.res.valid),
                         dec_a.eq(self.res.valid)]
        with m.Elif(in_items & od.final):
            m.d.comb += [self.out.valid.eq(self.res.valid), self.res.ready.eq(self.out.ready),
                         dec_a.eq(self.res.valid & self.out.ready)]
        with m.Elif(in_items):
            m.d.comb += [rq.i.valid.eq(self.res.valid), self.res.ready.eq(rq.i.ready)]

        # where each requantized output tile goes: a delay line beside the requant pipeline
        # (its output is never blocked, so it never stalls)
        rq_tag = data.StructLayout({"item": range(SB), "word": range(W + 1), "off": range(A),
                                    "dst": 2})
        tag = Signal(rq_tag)
        m.d.comb += [tag.item.eq(ob), tag.word.eq(oword), tag.off.eq(ooff), tag.dst.eq(od.dst)]
        otag = delay_line(m, tag, RequantUnit.LATENCY, "rq_tag")[-1]

        m.d.comb += [pair_rd.addr.eq(iu.pair_row), iu.pair_data.eq(pair_rd.data)]

        # ---- activation buffer write port: load beats, MLP results, interaction -------
        m.d.comb += dec_b.eq(rq.o.valid)
        with m.If(rq.o.valid):
            m.d.comb += act_wr.addr.eq(act_addr(otag.dst, otag.item, otag.word))
            for off in range(0, A, gcols):
                with m.If(otag.off == off):
                    for j in range(A):
                        if 0 <= j - off < width:
                            m.d.comb += act_wr.data.word_select(j, 8).eq(rq.o.payload[j - off])
            off_max = (1 << len(otag.off)) - 1
            for j in range(A):
                # lanes at or past the largest offset are never below it (no constant compare)
                at_or_past = Const(1) if j >= off_max else (j >= otag.off)
                m.d.comb += act_wr.en[j].eq(at_or_past & (j < otag.off + pcols))
        with m.Elif(iu.wr_en != 0):
            m.d.comb += [act_wr.addr.eq(act_addr(d.dst, iu.wr_item, iu.wr_word)),
                         act_wr.data.eq(iu.wr_data), act_wr.en.eq(iu.wr_en)]
        with m.Elif(ld_go & (ld.target == Target.ACT)):
            m.d.comb += [act_wr.addr.eq(ld.addr + Mux(load_bank, geo.bank_words, 0)),
                         act_wr.data.eq(ld.data), act_wr.en.eq(Const(-1, A))]
        m.d.comb += act_write_free.eq(~rq.o.valid & (iu.wr_en == 0))

        # ---- counters (reset when a run starts) -----------------------------------------
        cyc, beats, macs = self.cycles, self.act_beats, self.macs
        with m.If(start):
            m.d.sync += [cyc.eq(0), beats.eq(0), macs.eq(0), self.stall_in.eq(0),
                         self.stall_out.eq(0), tiles_loaded.eq(0), tiles_started.eq(0),
                         tiles_exited.eq(0)]
        with m.Elif(busy):
            m.d.sync += cyc.eq(cyc + 1)
            with m.If(self.act.valid & self.act.ready):
                m.d.sync += [beats.eq(beats + 1), macs.eq(macs + macs1)]
            with m.If(~self.act.valid):
                m.d.sync += self.stall_in.eq(self.stall_in + 1)
            with m.If(self.act.valid & ~self.act.ready):
                m.d.sync += self.stall_out.eq(self.stall_out + 1)
        return m


def _walk_mlp_steps(m, start, step, desc, mlp_state, on_step):
    """``IDLE`` and ``STEP`` states of an FSM that follows the program's MLP steps (the
    weight loader and the output side each keep their own step pointer): from ``start``,
    skip interaction steps, go to ``mlp_state`` on an MLP step (after ``on_step``), back to
    ``IDLE`` at the end."""
    with m.State("IDLE"):
        with m.If(start):
            m.d.sync += step.eq(0)
            m.next = "STEP"
    with m.State("STEP"):
        m.d.sync += on_step
        with m.Switch(desc.kind):
            with m.Case(Kind.END):
                m.next = "IDLE"
            with m.Case(Kind.MLP):
                m.next = mlp_state
            with m.Default():
                m.d.sync += step.eq(step + 1)


class ComputeEngine(wiring.Component):
    """The `Mesh` with one `MLPEngine` per partition slot: partition ``p`` of the current
    mode is driven by engine ``p``; engines beyond the mode's partition count refuse to
    start.

    Parameters
    ----------
    config : RPAccelConfig
    engines : int, optional
        Engines to build, for partition slots ``0 .. engines - 1`` (default: one per
        partition). A slot without an engine leaves its columns idle: the top level builds
        one engine per stage, so a three-stage design on four partitions has no fourth.

    Members
    -------
    mode : In(range(log2(partitions) + 1))
        Change only while every engine is idle.
    engines : list of MLPEngine ports, flattened as ``load__p``, ``run__p``, ``out__p``,
        ``busy__p`` and the counters ``<name>__p``.
    """

    def __init__(self, config: RPAccelConfig, engines: int | None = None):
        self.config = config
        n = config.partitions if engines is None else engines
        if not (isinstance(n, int) and 1 <= n <= config.partitions):
            raise ValueError(f"engines must be an integer from 1 to partitions "
                             f"({config.partitions}), not {engines!r}")
        self.widths = [slot_width(config, p) for p in range(n)]
        members = {"mode": In(mode_shape(config.partitions))}
        self.layouts = [engine_layouts(config, w) for w in self.widths]
        for p, lay in enumerate(self.layouts):
            members[f"load_{p}"] = In(stream.Signature(lay[3]))
            members[f"run_{p}"] = In(stream.Signature(range(config.sub_batch + 1)))
            members[f"out_{p}"] = Out(stream.Signature(lay[4]))
            members[f"busy_{p}"] = Out(1)
            for n in COUNTERS:
                members[f"{n}_{p}"] = Out(48)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        groups = cfg.partitions
        gcols = cfg.array_cols // groups
        log_g = exact_log2(groups)
        m.submodules.mesh = mesh = Mesh(cfg)
        m.d.comb += mesh.mode.eq(self.mode)
        engines = []
        for p, w in enumerate(self.widths):
            e = MLPEngine(cfg, w)
            m.submodules[f"engine{p}"] = e
            engines.append(e)
            m.d.comb += e.mode.eq(self.mode)
            wiring.connect(m, wiring.flipped(getattr(self, f"load_{p}")), e.load)
            wiring.connect(m, e.out, wiring.flipped(getattr(self, f"out_{p}")))
            m.d.comb += getattr(self, f"busy_{p}").eq(e.busy)
            for n in COUNTERS:
                m.d.comb += getattr(self, f"{n}_{p}").eq(getattr(e, n))
            run = getattr(self, f"run_{p}")
            m.d.comb += [e.run.payload.eq(run.payload),
                         e.run.valid.eq(run.valid & ((p >> self.mode) == 0)),
                         run.ready.eq(e.run.ready & ((p >> self.mode) == 0))]
            # results: mesh output slot p
            m.d.comb += [e.res.valid.eq(mesh.out[p].valid), mesh.out[p].ready.eq(e.res.ready)]
            for c in range(w):
                m.d.comb += e.res.payload[c].eq(mesh.out[p].payload[c])
        for p in range(len(engines), groups):  # slots without an engine: nothing comes out
            m.d.comb += mesh.out[p].ready.eq(1)
        for mode in range(log_g + 1):
            span = groups >> mode
            with m.If(self.mode == mode):
                for g in range(groups):
                    p, k = g // span, g % span
                    if p >= len(engines):
                        continue
                    e = engines[p]
                    if k == 0:
                        m.d.comb += [mesh.act[g].valid.eq(e.act.valid),
                                     mesh.act[g].payload.eq(e.act.payload),
                                     e.act.ready.eq(mesh.act[g].ready)]
                    m.d.comb += [mesh.wload[g].valid.eq(e.wload.valid),
                                 mesh.wload[g].payload.row.eq(e.wload.payload.row)]
                    for c in range(gcols):
                        if k * gcols + c < e.width:
                            m.d.comb += mesh.wload[g].payload.w[c].eq(
                                e.wload.payload.w[k * gcols + c])
        m.d.comb += [e.wload.ready.eq(1) for e in engines]
        return m
