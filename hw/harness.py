"""Synthesis harness: a block with more ports than an FPGA has pins, wrapped so that its
logic survives synthesis and its paths are register to register."""

from __future__ import annotations

from amaranth import (
    Cat,
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Elaboratable,
    Instance,
    Module,
    ResetSignal,
    Signal,
    Value,
)
from amaranth.lib import wiring

__all__ = ["SynthHarness", "global_reset_domain"]


def global_reset_domain(m: Module, elaboratable: Elaboratable, name: str = "core"):
    """``elaboratable`` in a clock domain ``name`` of ``m``: ``sync``'s clock, ``sync``'s
    reset through an ECP5 ``DCCA`` onto a global network.

    nextpnr promotes only clocks to global networks: left in ``sync``, the accelerator's
    reset reaches the LSR pins of ~26,000 flip-flops over fabric routing, one of the
    largest nets the router has to fit. Returns the renamed elaboratable.
    """
    m.domains += ClockDomain(name, local=True)
    rst = Signal()
    m.submodules[f"{name}_rst_dcca"] = Instance("DCCA", i_CLKI=ResetSignal("sync"),
                                                i_CE=Const(1), o_CLKO=rst)
    m.d.comb += [ClockSignal(name).eq(ClockSignal("sync")), ResetSignal(name).eq(rst)]
    return DomainRenamer(name)(elaboratable)


def _flat_ports(sig: wiring.Signature, obj):
    """``(flow, value)`` of every port of ``obj``, through sub-signatures and port arrays."""
    for name, member in sig.members.items():
        yield from _walk(member, getattr(obj, name))


def _walk(member, value):
    if isinstance(value, (list, tuple)):  # a member declared with .array(...)
        for v in value:
            yield from _walk(member, v)
    elif member.is_port:
        yield member.flow, value
    else:
        yield from _flat_ports(member.signature, value)


class SynthHarness(Elaboratable):
    """Drive every input of ``dut`` from a shift-register LFSR and fold every output into
    ``fold_bits`` registered XOR pins.

    The LFSR keeps inputs unpredictable (so nothing is optimised away) and registered; the
    folded outputs are registered, so the timing report covers the block itself. The
    harness adds one flip-flop per input bit and ``fold_bits`` flip-flops.

    Parameters
    ----------
    dut : wiring.Component
    fold_bits : int
        Output pins.
    global_reset : bool
        The block's reset over an ECP5 global network (`global_reset_domain`).
    """

    def __init__(self, dut: wiring.Component, fold_bits: int = 8, global_reset: bool = True):
        self.dut = dut
        self.global_reset = global_reset
        self.fold_bits = fold_bits
        self.out = Signal(fold_bits)
        ins, outs = [], []
        for flow, value in _flat_ports(dut.signature, dut):
            (ins if flow == wiring.In else outs).append(value)
        self._ins, self._outs = ins, outs
        self.in_bits = sum(len(Value.cast(v)) for v in ins)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = (global_reset_domain(m, self.dut) if self.global_reset
                            else self.dut)
        n = max(self.in_bits, 32)
        sr = Signal(n, init=1)
        # Fibonacci LFSR taps of a maximal 32-bit polynomial, stretched over a longer chain.
        fb = sr[31] ^ sr[21] ^ sr[1] ^ sr[0]
        m.d.sync += sr.eq(Cat(sr[1:], fb))
        pos = 0
        for v in self._ins:
            w = len(Value.cast(v))
            m.d.comb += v.eq(sr[pos:pos + w])
            pos += w
        bits = Cat(*[Value.cast(v) for v in self._outs])
        fold = Signal(self.fold_bits)
        acc = 0
        for k in range(0, len(bits), self.fold_bits):
            acc = acc ^ bits[k:k + self.fold_bits]
        m.d.sync += fold.eq(acc)
        m.d.comb += self.out.eq(fold)
        return m
