"""Approximate top-k filter: the RPAccel artifact's histogram/threshold filter."""

from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..config import RPAccelConfig
from .topk import topk_layouts

__all__ = ["ApproxFilter"]


class ApproxFilter(wiring.Component):
    """Histogram/threshold filter after the artifact's ``filtering.v``.

    While a query streams in (``lanes`` items per cycle, same input layout as `TopK`), its
    items are written to an on-chip buffer and every score is counted into one of
    ``bins`` bins, ``bin = clamp((score - window_offset) >> window_shift, 0, bins-1)``.
    After ``last``, the bins are walked from the top to the threshold bin t where the
    running count reaches k; a second pass over the buffer emits, in arrival order, every
    item of a bin above t and then items of bin t until k items are out (exactly
    `rpaccel.golden.pipeline.approx_topk`). The output is not ranked.

    Cost and rate: one buffer of ``2**topk_id_bits`` items and ``bins`` counters, no
    comparators per item. The read-out takes one cycle per buffered item (plus one per
    beat), during which the input waits: a single buffer, as in the artifact.

    Members
    -------
    i : In(stream.Signature(in_layout))
    o : Out(stream.Signature(out_layout))
    window_offset : In(signed(score_bits))
    window_shift : In(unsigned(6))
    """

    def __init__(self, config: RPAccelConfig, bins: int = 16):
        if not isinstance(bins, int) or bins < 2 or bins & (bins - 1):
            raise ValueError(f"bins must be a power of two of at least 2, not {bins!r}")
        self.config = config
        self.bins = bins
        self.in_layout, self.out_layout = topk_layouts(config)
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
            "window_offset": In(signed(config.score_bits)),
            "window_shift": In(unsigned(6)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        lanes, nbins = cfg.topk_lanes, self.bins
        max_items = 1 << cfg.topk_id_bits
        depth = -(-max_items // lanes)
        beat_layout = data.ArrayLayout(self.in_layout["lanes"].shape.elem_shape, lanes)
        m.submodules.buf = buf = Memory(shape=beat_layout, depth=depth, init=[])
        wr = buf.write_port()
        rd = buf.read_port()

        count_bits = bits_for(max_items)
        counts = [Signal(count_bits, name=f"count{b}") for b in range(nbins)]
        n_items = Signal(count_bits)
        k = Signal.like(self.i.payload.k)
        wr_addr = Signal(range(depth + 1))
        n_beats = Signal(range(depth + 1))
        rd_addr = Signal(range(depth + 1))
        lane = Signal(range(lanes))
        thresh = Signal(range(nbins))
        room = Signal(count_bits + 1)
        taken = Signal(count_bits + 1)
        emitted = Signal(count_bits + 1)
        total = Signal(count_bits + 1)

        def bin_of(score):
            diff = Signal(signed(cfg.score_bits + 1))
            m.d.comb += diff.eq(score - self.window_offset)
            shifted = diff >> self.window_shift
            b = Signal(range(nbins))
            with m.If(shifted < 0):
                m.d.comb += b.eq(0)
            with m.Elif(shifted >= nbins - 1):
                m.d.comb += b.eq(nbins - 1)
            with m.Else():
                m.d.comb += b.eq(shifted)
            return b

        # bins of the incoming beat, and of the item being read out
        in_bins = [bin_of(self.i.payload.lanes[q].score) for q in range(lanes)]
        item = rd.data[lane]
        item_bin = bin_of(item.score)
        m.d.comb += rd.addr.eq(rd_addr)

        can_emit = ~self.o.valid | self.o.ready
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("FILL"):
                m.d.comb += [self.i.ready.eq(1), wr.addr.eq(wr_addr),
                             wr.data.eq(self.i.payload.lanes), wr.en.eq(self.i.valid)]
                with m.If(self.i.valid):
                    m.d.sync += wr_addr.eq(wr_addr + 1)
                    for b in range(nbins):
                        hits = sum((self.i.payload.lanes[q].valid & (in_bins[q] == b))
                                   .as_unsigned() for q in range(lanes))
                        m.d.sync += counts[b].eq(counts[b] + hits)
                    inc = sum(self.i.payload.lanes[q].valid.as_unsigned() for q in range(lanes))
                    m.d.sync += n_items.eq(n_items + inc)
                    with m.If(self.i.payload.last):
                        m.d.sync += [k.eq(self.i.payload.k), n_beats.eq(wr_addr + 1)]
                        m.next = "THRESHOLD"
            with m.State("THRESHOLD"):
                # walk down from the top bin: the threshold is the first bin where the
                # running count reaches k (bin 0 when the query has fewer than k items)
                above = 0
                runs = []
                for b in reversed(range(nbins)):
                    prev = above
                    above = above + counts[b]
                    runs.append((b, prev, above))
                m.d.sync += [thresh.eq(0), room.eq(n_items + 1)]
                for b, prev, run in reversed(runs):  # highest bin last: it takes priority
                    with m.If(run >= k):
                        m.d.sync += [thresh.eq(b), room.eq(k - prev)]
                m.d.sync += [total.eq(k), rd_addr.eq(0), lane.eq(0), taken.eq(0),
                             emitted.eq(0)]
                with m.If(n_items < k):
                    m.d.sync += total.eq(n_items)
                m.next = "WAIT"
            with m.State("WAIT"):  # the read port needs a cycle after each new address
                with m.If((emitted == total) | (rd_addr == n_beats)):
                    m.next = "DONE"
                with m.Else():
                    m.next = "READ"
            with m.State("READ"):
                keep = item.valid & ((item_bin > thresh) |
                                     ((item_bin == thresh) & (taken < room)))
                advance = Signal()
                m.d.comb += advance.eq(~keep | can_emit)
                with m.If(keep & can_emit):
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.id.eq(item.id),
                                 self.o.payload.score.eq(item.score),
                                 self.o.payload.last.eq(emitted + 1 == total),
                                 emitted.eq(emitted + 1)]
                    with m.If(item_bin == thresh):
                        m.d.sync += taken.eq(taken + 1)
                with m.If(advance):
                    with m.If(lane == lanes - 1):
                        m.d.sync += [lane.eq(0), rd_addr.eq(rd_addr + 1)]
                        m.next = "WAIT"
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
            with m.State("DONE"):
                for c in counts:
                    m.d.sync += c.eq(0)
                m.d.sync += [n_items.eq(0), wr_addr.eq(0)]
                m.next = "FILL"
        return m
