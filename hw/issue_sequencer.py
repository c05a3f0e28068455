"""Issue sequencer of the MLP engine: runs the program of a sub-batch.

On ``run`` it takes the next activation bank (the other one is loaded with the next
sub-batch meanwhile) and walks the program's steps. An MLP step issues its weight tiles
(output tiles outer, input tiles inner) and, per tile, every item of the run into the
partition: the item's ``R``-value slice of its activation word, the first item of a tile
marked ``swap`` (the PEs switch to the tile's weights). A tile issues once the
`WeightLoader` has put it into the shadow registers. The first tile of a layer that follows
another layer issues each item once that item's output of the previous layer is written
(the `OutputPath`'s ``fwd_step`` / ``fwd_items``): the array does not wait for the whole
previous layer to drain, only for the first item's results, and the rest follow in
order. The first layer of a run and the first after an interaction step wait until the
engine's in-flight count is 0. An interaction step starts the `InteractionUnit` when the
array has drained and waits for it. The run ends when everything has left the engine.

The sequencer also keeps the engine's per-run counters.
"""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import RPAccelConfig
from ..interface import EngineGeometry, StepKind, engine_layouts
from .arith import lut_mul
from .array import mesh_layouts

__all__ = ["IssueSequencer", "COUNTERS"]


#: Per-engine counters (48 bits, reset by ``run``).
COUNTERS = ("cycles", "act_beats", "macs", "stall_in", "stall_out")


class IssueSequencer(wiring.Component):
    """Program steps, tiles and items of a run (module docstring).

    Parameters
    ----------
    config : RPAccelConfig
    width : int
        Columns of the engine (`rpaccel.interface.slot_width`).

    Members
    -------
    run : In(stream.Signature(range(sub_batch + 1)))
        Start the program on that many items (1 to ``sub_batch``; 0 is ignored).
    pcols : In(range(array_cols + 1))
        Columns of the partition (``array_cols >> mode``).
    start : Out(1)
        One cycle: a run begins.
    busy : Out(1)
    items : Out(range(sub_batch + 1))
        Items of the current run.
    bank, load_bank : Out(1)
        The activation bank of the run and the one load beats write.
    step : Out(range(max_steps + 1)), desc : In(desc layout)
        The current program step and its descriptor (read by the engine).
    rd_en, rd_region, rd_item, rd_word : Out, rd_data : In(unsigned(8 * lanes))
        Activation-buffer read of the next item's word (synchronous: data next cycle).
    act : Out(stream.Signature(mesh act layout))
        Items into the partition.
    entered : Out(1)
        An item entered the array this cycle (the engine's in-flight count rises).
    tiles_loaded : In(32)
        From the `WeightLoader`.
    drained : In(1)
        Nothing in the array, the requantizer or the partial-sum path.
    fwd_step : In(range(max_steps + 1)), fwd_items : In(range(sub_batch + 1))
        From the `OutputPath`: the layer whose last output tile is being written and its
        items written so far.
    inter_go : Out(1), inter_busy : In(1)
        Start and wait for the `InteractionUnit`.
    out_pending : In(1)
        A final result waits on the engine's output.
    cycles, act_beats, macs, stall_in, stall_out : Out(48)
        Counters of the last run (`COUNTERS`): cycles busy, items entering the array,
        useful MACs, cycles the array had no input, cycles its input was held by a blocked
        output.
    """

    def __init__(self, config: RPAccelConfig, width: int):
        self.config = config
        self.width = width
        cfg = config
        geo = EngineGeometry(cfg)
        act_l, _, _ = mesh_layouts(cfg)
        SB = cfg.sub_batch
        super().__init__({
            "run": In(stream.Signature(range(SB + 1))),
            "pcols": In(range(cfg.array_cols + 1)),
            "start": Out(1), "busy": Out(1), "items": Out(range(SB + 1)),
            "bank": Out(1), "load_bank": Out(1),
            "step": Out(range(cfg.max_steps + 1)),
            "desc": In(engine_layouts(cfg, width).desc),
            "rd_en": Out(1), "rd_region": Out(2), "rd_item": Out(range(SB + 1)),
            "rd_word": Out(range(geo.words + 1)), "rd_data": In(unsigned(8 * geo.lanes)),
            "act": Out(stream.Signature(act_l)),
            "entered": Out(1),
            "tiles_loaded": In(32), "drained": In(1),
            "fwd_step": In(range(cfg.max_steps + 1)), "fwd_items": In(range(SB + 1)),
            "inter_go": Out(1), "inter_busy": In(1),
            "out_pending": In(1),
            **{n: Out(48) for n in COUNTERS},
        })

    def elaborate(self, platform):  # noqa: C901 (one FSM, read top to bottom)
        m = Module()
        cfg = self.config
        geo = EngineGeometry(cfg)
        R, A, W, SB = cfg.array_rows, geo.lanes, geo.words, cfg.sub_batch
        d, items, step, busy = self.desc, self.items, self.step, self.busy
        b = Signal(range(SB + 1))
        kt = Signal(range(cfg.max_width + 1))
        nt = Signal(range(cfg.max_width + 1))
        kword = Signal(range(W + 1))
        koff = Signal(range(A))
        tile_first = Signal()  # the tile about to issue is the layer's first
        after_mlp = Signal()   # the current step follows an MLP step
        krem = Signal(range(cfg.max_width + 1))
        nrem = Signal(range(cfg.max_width + 1))
        tile_macs = Signal(24)
        tiles_started = Signal(32)
        valid0 = Signal()
        adv = Signal()
        # a layer's first tile after another layer: item b once its inputs are written
        inputs_ready = Signal()
        m.d.comb += inputs_ready.eq(~(tile_first & after_mlp) | (
            (self.fwd_step == step - 1) & (self.fwd_items > b)))
        v1 = Signal()
        swap1 = Signal()
        koff1 = Signal(range(A))
        m.d.comb += adv.eq(~v1 | self.act.ready)

        rows_valid = Mux(krem > R, R, krem)
        cols_valid = Mux(nrem > self.pcols, self.pcols, nrem)
        m.d.comb += tile_macs.eq(lut_mul(rows_valid, cols_valid))
        # the next tile of the layer follows without a gap when its weights are loaded
        # (the current tile counts as started from its first item on)
        next_loaded = Signal()
        m.d.comb += next_loaded.eq(self.tiles_loaded > tiles_started + (b == 0))

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.run.ready.eq(1)
                with m.If(self.run.valid & (self.run.payload != 0)):
                    m.d.comb += self.start.eq(1)
                    m.d.sync += [items.eq(self.run.payload), step.eq(0), busy.eq(1),
                                 after_mlp.eq(0),
                                 self.bank.eq(self.load_bank),
                                 self.load_bank.eq(~self.load_bank)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += [b.eq(0), kt.eq(0), nt.eq(0), kword.eq(0), koff.eq(0),
                             tile_first.eq(1), krem.eq(d.k), nrem.eq(d.n)]
                with m.Switch(d.kind):
                    with m.Case(StepKind.END):
                        m.next = "FINISH"
                    with m.Case(StepKind.MLP):
                        m.next = "TILE"
                    with m.Default():
                        m.next = "IWAIT"
            with m.State("TILE"):
                # a tile issues once its weights are in the shadow registers; a layer's
                # first tile after anything but a layer, once everything is written
                with m.If((self.tiles_loaded > tiles_started) &
                          (~tile_first | after_mlp | self.drained)):
                    m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += valid0.eq(inputs_ready)
                with m.If(adv & inputs_ready):
                    m.d.sync += b.eq(b + 1)
                    with m.If(b == items - 1):
                        m.d.sync += [b.eq(0), tile_first.eq(0)]
                        with m.If(kt == d.ktiles - 1):
                            m.d.sync += [kt.eq(0), kword.eq(0), koff.eq(0), krem.eq(d.k)]
                            with m.If(nt == d.ntiles - 1):
                                m.d.sync += [step.eq(step + 1), after_mlp.eq(1)]
                                m.next = "FETCH"
                            with m.Else():
                                m.d.sync += [nt.eq(nt + 1), nrem.eq(nrem - self.pcols)]
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
                with m.If(self.drained):
                    m.d.comb += self.inter_go.eq(1)
                    m.next = "INTER"
            with m.State("INTER"):
                with m.If(~self.inter_busy):
                    m.d.sync += [step.eq(step + 1), after_mlp.eq(0)]
                    m.next = "FETCH"
            with m.State("FINISH"):
                with m.If(self.drained & ~self.out_pending):
                    m.d.sync += busy.eq(0)
                    m.next = "IDLE"

        # the item's word is read in the cycle it issues; its R values enter the next one
        m.d.comb += [self.rd_en.eq(adv), self.rd_region.eq(d.src), self.rd_item.eq(b),
                     self.rd_word.eq(kword)]
        macs1 = Signal.like(tile_macs)
        with m.If(adv):
            m.d.sync += [v1.eq(valid0), swap1.eq(b == 0), koff1.eq(koff), macs1.eq(tile_macs)]
        m.d.comb += [self.entered.eq(valid0 & adv), self.act.valid.eq(v1),
                     self.act.payload.swap.eq(swap1)]
        with m.If(valid0 & adv & (b == 0)):
            m.d.sync += tiles_started.eq(tiles_started + 1)
        for off in range(0, A, R):
            with m.If(koff1 == off):
                for r in range(R):
                    m.d.comb += self.act.payload.x[r].eq(self.rd_data.word_select(off + r, 8))

        # ---- counters (reset when a run starts) -----------------------------------------
        cyc, beats, macs = self.cycles, self.act_beats, self.macs
        with m.If(self.start):
            m.d.sync += [cyc.eq(0), beats.eq(0), macs.eq(0), self.stall_in.eq(0),
                         self.stall_out.eq(0), tiles_started.eq(0)]
        with m.Elif(busy):
            m.d.sync += cyc.eq(cyc + 1)
            with m.If(self.act.valid & self.act.ready):
                m.d.sync += [beats.eq(beats + 1), macs.eq(macs + macs1)]
            with m.If(~self.act.valid):
                m.d.sync += self.stall_in.eq(self.stall_in + 1)
            with m.If(self.act.valid & ~self.act.ready):
                m.d.sync += self.stall_out.eq(self.stall_out + 1)
        return m
