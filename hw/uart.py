"""8N1 UART receiver and transmitter: the board's host link runs over them."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx"]


def _check_divisor(divisor) -> None:
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
        raise ValueError(f"divisor (clock cycles per bit) must be an integer of at least 4, "
                         f"not {divisor!r}")


class UARTRx(wiring.Component):
    """Receives 8N1 bytes on ``rx``, ``divisor`` clock cycles per bit, each bit sampled in
    its middle.

    Members
    -------
    rx : In(1), init 1
        The line (synchronized inside).
    o : Out(stream.Signature(8))
        Received bytes; one byte is held until taken.
    overrun : Out(1)
        Sticky: a byte arrived while the previous one was still held (the new byte is lost).
    frame_error : Out(1)
        Sticky: a byte's stop bit was 0 (the byte is dropped).
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "overrun": Out(1), "frame_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        cnt = Signal(range(self.divisor))
        bit = Signal(range(8))
        sh = Signal(8)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += cnt.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    m.d.sync += [cnt.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
                    with m.If(rx):  # a glitch, not a start bit
                        m.next = "IDLE"
            with m.State("DATA"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    m.d.sync += [sh.eq(Cat(sh[1:], rx)), cnt.eq(self.divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    with m.If(~rx):
                        m.d.sync += self.frame_error.eq(1)
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(sh)]
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """Sends the bytes of ``i`` as 8N1 on ``tx``, ``divisor`` clock cycles per bit.

    Members
    -------
    i : In(stream.Signature(8))
    tx : Out(1), init 1
    """

    def __init__(self, divisor: int):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        cnt = Signal(range(self.divisor))
        left = Signal(range(11))             # bits still to send
        sh = Signal(10, init=1)
        m.d.comb += [self.i.ready.eq(left == 0), self.tx.eq(sh[0])]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [sh.eq(Cat(0, self.i.payload, 1)), left.eq(10),
                         cnt.eq(self.divisor - 1)]
        with m.Elif(left != 0):
            m.d.sync += cnt.eq(cnt - 1)
            with m.If(cnt == 0):
                m.d.sync += [sh.eq(Cat(sh[1:], 1)), left.eq(left - 1),
                             cnt.eq(self.divisor - 1)]
        return m
