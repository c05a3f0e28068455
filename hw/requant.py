"""Requantize / activation unit: int32 accumulator + bias -> int8 (docs/numerics.md)."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import Assert
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import RPAccelConfig

__all__ = ["BagRequant", "RequantUnit", "requant_layouts", "delay_line"]


def delay_line(m, first, stages: int, name: str) -> list:
    """``[first, first delayed 1 cycle, ..., delayed stages cycles]``: registers of
    ``first``'s shape, e.g. the tag that travels beside a `RequantUnit`'s pipeline."""
    line = [first]
    for k in range(stages):
        nxt = Signal.like(first, name=f"{name}{k}")
        m.d.sync += nxt.eq(line[-1])
        line.append(nxt)
    return line


def requant_layouts(config: RPAccelConfig, lanes: int | None = None):
    """Input and output payload layouts of `RequantUnit` for ``config``.

    Returns
    -------
    (in_layout, out_layout) : tuple of amaranth.lib.data.Layout
    """
    lanes = config.requant_lanes if lanes is None else lanes
    lane = data.StructLayout({
        "acc": signed(config.acc_bits),
        "bias": signed(config.acc_bits),
        "mult": unsigned(config.mult_bits),
        "shift": unsigned(config.shift_bits),
    })
    in_layout = data.StructLayout({"lanes": data.ArrayLayout(lane, lanes), "relu": 1})
    out_layout = data.ArrayLayout(signed(config.act_bits), lanes)
    return in_layout, out_layout


class RequantUnit(wiring.Component):
    """Streaming requantization of ``lanes`` accumulators per cycle.

    Each lane computes ``clamp(floor(((acc + bias) * mult + 2**(shift-1)) / 2**shift), lo,
    127)`` with ``lo = 0`` when ``relu`` else ``-128``, exactly as
    `rpaccel.golden.numerics.requantize`. Per-lane ``mult``, ``shift`` and ``bias`` carry
    per-output-channel quantization.

    The unit is a 6-stage pipeline (add; two partial products in DSPs; their sum; shift;
    round; clamp: at most one carry chain or DSP per stage, for fmax) that accepts one beat
    per cycle; when the output is blocked the whole pipeline holds. Only the low bits of
    the shifted product are kept: whether it lies outside the range those bits hold (and so
    clamps) is read from the product's redundant sign bits above the shift.

    Parameters
    ----------
    config : RPAccelConfig
    lanes : int, optional
        Values per beat; ``config.requant_lanes`` by default.

    Members
    -------
    i : In(stream.Signature(in_layout))
        Accumulators with their bias, multiplier, shift and the ReLU flag.
    o : Out(stream.Signature(out_layout))
        Requantized values, one per lane.
    """

    LATENCY = 6

    def __init__(self, config: RPAccelConfig, lanes: int | None = None):
        if lanes is not None and (not isinstance(lanes, int) or lanes < 1):
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.config = config
        self.lanes = config.requant_lanes if lanes is None else lanes
        self.in_layout, self.out_layout = requant_layouts(config, self.lanes)
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n = self.lanes
        # The pipeline advances as a whole whenever its last register can move on.
        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        valid = [Signal(name=f"valid{k}") for k in range(1, self.LATENCY)]
        acc_sum = [Signal(signed(cfg.acc_bits + 1), name=f"sum{j}") for j in range(n)]
        mult1 = [Signal(unsigned(cfg.mult_bits), name=f"mult1_{j}") for j in range(n)]
        shift1 = [Signal(unsigned(cfg.shift_bits), name=f"shift1_{j}") for j in range(n)]
        # (acc + bias) * mult as two registered partial products, each fitting one 18x18 DSP
        # on ECP5: the low 17 bits unsigned and the high part signed.
        lo_bits = 17
        hi_bits = cfg.acc_bits + 1 - lo_bits
        p_lo = [Signal(unsigned(lo_bits + cfg.mult_bits), name=f"p_lo{j}") for j in range(n)]
        p_hi = [Signal(signed(hi_bits + cfg.mult_bits + 1), name=f"p_hi{j}") for j in range(n)]
        shift_p = [Signal(unsigned(cfg.shift_bits), name=f"shift_p{j}") for j in range(n)]
        prod_bits = cfg.acc_bits + 1 + cfg.mult_bits + 1
        # The product is kept doubled: floor((p + 2**(s-1)) / 2**s) == ((2p >> s) + 1) >> 1.
        prod2 = [Signal(signed(prod_bits + 1), name=f"prod2_{j}") for j in range(n)]
        shift2 = [Signal(unsigned(cfg.shift_bits), name=f"shift2_{j}") for j in range(n)]
        # the shifted product within [-2**win, 2**win) rounds to at most 2**(win-1) in
        # magnitude, enough to clamp to int8; outside it always clamps, by its sign
        win = cfg.act_bits + 1
        shifted = [Signal(signed(win + 1), name=f"shifted{j}") for j in range(n)]
        fits = [Signal(name=f"fits{j}") for j in range(n)]
        neg = [Signal(name=f"neg{j}") for j in range(n)]
        rounded = [Signal(signed(win + 1), name=f"rounded{j}") for j in range(n)]
        fits2 = [Signal(name=f"fits2_{j}") for j in range(n)]
        neg2 = [Signal(name=f"neg2_{j}") for j in range(n)]
        relu = [Signal(name=f"relu{k}") for k in range(1, self.LATENCY)]

        hi = (1 << (cfg.act_bits - 1)) - 1
        lo = -(1 << (cfg.act_bits - 1))
        with m.If(en):
            m.d.sync += [valid[0].eq(self.i.valid), relu[0].eq(self.i.payload.relu)]
            for k in range(1, self.LATENCY - 1):
                m.d.sync += [valid[k].eq(valid[k - 1]), relu[k].eq(relu[k - 1])]
            m.d.sync += self.o.valid.eq(valid[-1])
            for j in range(n):
                lane = self.i.payload.lanes[j]
                m.d.sync += [
                    acc_sum[j].eq(lane.acc + lane.bias),
                    mult1[j].eq(lane.mult),
                    shift1[j].eq(lane.shift),
                    p_lo[j].eq(acc_sum[j][:lo_bits] * mult1[j]),
                    p_hi[j].eq(acc_sum[j][lo_bits:].as_signed() * mult1[j]),
                    shift_p[j].eq(shift1[j]),
                    prod2[j].eq(((p_hi[j] << lo_bits) + p_lo[j]) << 1),
                    shift2[j].eq(shift_p[j]),
                    shifted[j].eq((prod2[j] >> shift2[j])[:win + 1]),
                    fits[j].eq(self._sign_redundant(m, prod2[j], win, shift2[j], j)),
                    neg[j].eq(prod2[j][-1]),
                    rounded[j].eq((shifted[j] + 1) >> 1),
                    fits2[j].eq(fits[j]),
                    neg2[j].eq(neg[j]),
                ]
                with m.If(Mux(fits2[j], rounded[j] > hi, ~neg2[j])):
                    m.d.sync += self.o.payload[j].eq(hi)
                with m.Elif(relu[-1] & Mux(fits2[j], rounded[j] < 0, neg2[j])):
                    m.d.sync += self.o.payload[j].eq(0)
                with m.Elif(Mux(fits2[j], rounded[j] < lo, neg2[j])):
                    m.d.sync += self.o.payload[j].eq(lo)
                with m.Else():
                    m.d.sync += self.o.payload[j].eq(rounded[j])
        return m

    @staticmethod
    def _sign_redundant(m, value, win, shift, j):
        """1 when every bit of ``value`` from bit ``shift + win`` up equals its sign bit
        (so ``value >> shift`` fits ``win + 1`` bits): a chain of equalities from the top,
        one picked by ``shift``."""
        w = len(value)
        same = [Signal(name=f"same{j}_{p}") for p in range(w)]
        m.d.comb += same[w - 1].eq(1)
        for p in reversed(range(w - 1)):
            m.d.comb += same[p].eq(same[p + 1] & (value[p] == value[w - 1]))
        return Array(same[win + k] if win + k < w else Const(1)
                     for k in range(1 << len(shift)))[shift]


class BagRequant(wiring.Component):
    """Requantization of pooled embedding bags, ``lanes`` values per cycle.

    A bag's ``D`` pooled int32 sums share the table's multiplier and shift (no bias, no
    ReLU: docs/numerics.md). With ``lanes == D`` every bag enters a D-lane `RequantUnit` at
    once (one bag per cycle); with fewer lanes the bag waits in a holding register while its
    ``D / lanes`` slices pass a narrower unit one per cycle, and a collector joins them
    again: one bag per ``D / lanes`` cycles, ``D / lanes + 1`` cycles more latency, and
    ``D / lanes`` times fewer multipliers. Lanes past the row's width (``2**width_shift``)
    and every lane of a bag with ``error`` leave as 0.

    Parameters
    ----------
    config : RPAccelConfig
        ``emb_dim`` (D) and ``emb_requant_lanes`` (0: D) set the sizes.

    Members
    -------
    i : In(stream.Signature(bag_layout))
        ``acc`` (D sums), ``mult``, ``shift``, ``error``, ``width_shift``.
    o : Out(stream.Signature(out_layout))
        ``vec`` (D int8 values) and ``error``.
    """

    def __init__(self, config: RPAccelConfig):
        cfg = config
        self.config = config
        self.dim = D = cfg.emb_dim
        self.lanes = cfg.emb_requant_lanes or D
        self.bag_layout = data.StructLayout({
            "acc": data.ArrayLayout(signed(cfg.acc_bits), D),
            "mult": unsigned(cfg.mult_bits), "shift": unsigned(cfg.shift_bits),
            "error": 1, "width_shift": range(exact_log2(D) + 1)})
        self.out_layout = data.StructLayout({"vec": data.ArrayLayout(signed(8), D),
                                             "error": 1})
        super().__init__({"i": In(stream.Signature(self.bag_layout)),
                          "o": Out(stream.Signature(self.out_layout))})

    def elaborate(self, platform):
        m = Module()
        D, R = self.dim, self.lanes
        N = D // R
        m.submodules.rq = rq = RequantUnit(self.config, lanes=R)
        # error flag and row width travel beside the requant pipeline in a FIFO deeper than
        # the bags the pipeline and the collector can hold
        m.submodules.side = side = fifo.SyncFIFO(width=1 + exact_log2(D) + 1, depth=8)
        m.d.comb += rq.i.payload.relu.eq(0)

        if N == 1:
            m.d.comb += [self.i.ready.eq(rq.i.ready & side.w_stream.ready),
                         rq.i.valid.eq(self.i.valid & side.w_stream.ready)]
            for j in range(D):
                m.d.comb += [rq.i.payload.lanes[j].acc.eq(self.i.payload.acc[j]),
                             rq.i.payload.lanes[j].mult.eq(self.i.payload.mult),
                             rq.i.payload.lanes[j].shift.eq(self.i.payload.shift)]
            m.d.comb += [side.w_stream.valid.eq(rq.i.valid & rq.i.ready),
                         side.w_stream.payload.eq(Cat(self.i.payload.error,
                                                      self.i.payload.width_shift)),
                         self.o.valid.eq(rq.o.valid), rq.o.ready.eq(self.o.ready)]
            vec = rq.o.payload
        else:
            hold = Signal(self.bag_layout)
            held = Signal()
            beat = Signal(range(N))
            taken = rq.i.valid & rq.i.ready
            done = taken & (beat == N - 1)
            m.d.comb += [self.i.ready.eq(~held | done),
                         rq.i.valid.eq(held & ((beat != 0) | side.w_stream.ready)),
                         side.w_stream.valid.eq(taken & (beat == 0)),
                         side.w_stream.payload.eq(Cat(hold.error, hold.width_shift))]
            slices = Array(Cat(*(hold.acc[s * R + j] for j in range(R))) for s in range(N))
            cur = Signal(R * self.config.acc_bits)
            m.d.comb += cur.eq(slices[beat])
            for j in range(R):
                m.d.comb += [
                    rq.i.payload.lanes[j].acc.eq(
                        cur.word_select(j, self.config.acc_bits).as_signed()),
                    rq.i.payload.lanes[j].mult.eq(hold.mult),
                    rq.i.payload.lanes[j].shift.eq(hold.shift)]
            with m.If(taken):
                m.d.sync += beat.eq(Mux(done, 0, beat + 1))
            with m.If(self.i.valid & self.i.ready):
                m.d.sync += [hold.eq(self.i.payload), held.eq(1)]
            with m.Elif(done):
                m.d.sync += held.eq(0)
            # the collector: N slices make a vector; a full vector leaves while the next
            # bag's first slice comes in
            got = Signal(range(N + 1))
            bits = Signal(8 * D)
            full = got == N
            m.d.comb += [rq.o.ready.eq(~full | self.o.ready), self.o.valid.eq(full)]
            slot = Mux(full, 0, got)
            with m.If(rq.o.valid & rq.o.ready):
                m.d.sync += [bits.word_select(slot, 8 * R).eq(rq.o.payload), got.eq(slot + 1)]
            with m.Elif(self.o.valid & self.o.ready):
                m.d.sync += got.eq(0)
            vec = data.View(data.ArrayLayout(signed(8), D), bits)
        m.d.comb += side.r_stream.ready.eq(self.o.valid & self.o.ready)
        err = side.r_stream.payload[0]
        width = Signal(range(D + 1))
        m.d.comb += [width.eq(1 << side.r_stream.payload[1:]), self.o.payload.error.eq(err)]
        for j in range(D):
            m.d.comb += self.o.payload.vec[j].eq(Mux(err | (j >= width), 0, vec[j]))
        if platform == "formal":
            m.d.comb += Assert(~side.w_stream.valid | side.w_stream.ready)
        return m
