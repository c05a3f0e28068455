"""A register slice for a stream: every output of both sides from a flip-flop."""

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "register_slice"]


class SkidBuffer(wiring.Component):
    """``i`` to ``o`` one cycle later, at one beat per cycle, with ``o.valid``,
    ``o.payload`` and ``i.ready`` registered: a combinational path through the slice in
    either direction (valid / payload downstream, ready upstream) ends at a register.

    A beat that arrives while ``o`` is held waits in a second register (the skid); ``i``
    is not ready while it is full. Beats leave in order, none lost or repeated.

    Parameters
    ----------
    shape : ShapeLike
        The payload.

    Members
    -------
    i : In(stream.Signature(shape))
    o : Out(stream.Signature(shape))
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid = Signal.like(self.i.payload)
        full = Signal()
        m.d.comb += self.i.ready.eq(~full)
        # the payload registers' enables do not depend on i.valid (which may come from far
        # away): the skid copies i every cycle it is empty and keeps what it held when it
        # filled; o's payload is loaded whenever o can move, valid or not
        with m.If(~full):
            m.d.sync += skid.eq(self.i.payload)
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.payload.eq(Mux(full, skid, self.i.payload)),
                         self.o.valid.eq(full | self.i.valid), full.eq(0)]
        with m.Elif(self.i.valid & ~full):
            m.d.sync += full.eq(1)
        return m


def register_slice(m, name: str, source, sink) -> SkidBuffer:
    """Connect the stream ``source`` to ``sink`` through a `SkidBuffer` added to ``m`` as
    submodule ``name``; returns it."""
    m.submodules[name] = sl = SkidBuffer(source.payload.shape())
    wiring.connect(m, source, sl.i)
    wiring.connect(m, sl.o, sink)
    return sl
