"""Requantize / activation unit: int32 accumulator + bias -> int8 (docs/numerics.md)."""

from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import RPAccelConfig

__all__ = ["RequantUnit", "requant_layouts", "delay_line"]


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
    per cycle; when the output is blocked the whole pipeline holds.

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
        shifted = [Signal(signed(prod_bits + 1), name=f"shifted{j}") for j in range(n)]
        rounded = [Signal(signed(prod_bits), name=f"rounded{j}") for j in range(n)]
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
                    shifted[j].eq(prod2[j] >> shift2[j]),
                    rounded[j].eq((shifted[j] + 1) >> 1),
                ]
                with m.If(rounded[j] > hi):
                    m.d.sync += self.o.payload[j].eq(hi)
                with m.Elif(relu[-1] & (rounded[j] < 0)):
                    m.d.sync += self.o.payload[j].eq(0)
                with m.Elif(rounded[j] < lo):
                    m.d.sync += self.o.payload[j].eq(lo)
                with m.Else():
                    m.d.sync += self.o.payload[j].eq(rounded[j])
        return m
