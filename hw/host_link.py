"""Host link: a byte protocol (over a UART on the board) to the accelerator's AXI4-Lite
CSRs, its input streams, a memory's write port, and back from its result stream.

Host to board, little-endian fields, commands executed in order:

- ``'W' addr:2 data:4``: CSR write; answer ``'w' bresp:1`` once the write response came.
- ``'R' addr:2``: CSR read; answer ``'r' data:4 rresp:1``.
- ``'M' word:4 data:N``: write one memory word (``N`` = the word's bytes); no answer.
- ``'S' index:1 payload:B``: one beat on input stream ``index`` (``B`` = its payload's
  bytes); waits for the stream to take it; no answer.
- ``'P'``: answer ``'p'`` (every earlier command has been carried out).
- anything else: answer ``'?' byte:1``; the next byte starts a command again.

Board to host, between answers: ``'A' payload:B`` for each result beat.
`rpaccel.board.Protocol` is the host side.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .bus import axi4_lite_signature

__all__ = ["HostLink", "OP"]

#: Command and answer bytes.
OP = {"write": ord("W"), "read": ord("R"), "mem": ord("M"), "stream": ord("S"),
      "ping": ord("P"), "wrote": ord("w"), "data": ord("r"), "pong": ord("p"),
      "result": ord("A"), "unknown": ord("?")}


def _nbytes(bits: int) -> int:
    return -(-bits // 8)


class HostLink(wiring.Component):
    """The protocol engine (see the module docstring).

    Parameters
    ----------
    streams : list of int
        Payload widths of the input streams ``s0``, ``s1``, ... it drives.
    result_bits : int
        Payload width of the result stream it forwards.
    mem_addr_bits, mem_data_bits : int
        The memory's word address and word width.

    Members
    -------
    rx : In(stream.Signature(8)), tx : Out(stream.Signature(8))
        Bytes from and to the host.
    csr : Out(axi4_lite_signature())
    s<i> : Out(stream.Signature(streams[i]))
    result : In(stream.Signature(result_bits))
    mem_en, mem_addr, mem_data : Out
        One memory word write per ``'M'``.
    """

    def __init__(self, streams, result_bits: int, mem_addr_bits: int, mem_data_bits: int):
        if not streams or any(not isinstance(w, int) or w < 1 for w in streams):
            raise ValueError(f"streams must be a non-empty list of positive widths, not "
                             f"{streams!r}")
        if len(streams) > 256:
            raise ValueError(f"streams must be at most 256 (a one-byte index), not "
                             f"{len(streams)}")
        self.streams = list(streams)
        self.result_bits = result_bits
        self.mem_addr_bits, self.mem_data_bits = mem_addr_bits, mem_data_bits
        members = {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                   "csr": Out(axi4_lite_signature()),
                   "result": In(stream.Signature(result_bits)),
                   "mem_en": Out(1), "mem_addr": Out(mem_addr_bits),
                   "mem_data": Out(mem_data_bits)}
        for i, w in enumerate(self.streams):
            members[f"s{i}"] = Out(stream.Signature(w))
        super().__init__(members)

    def elaborate(self, platform):  # noqa: C901 (one command decoder, read top to bottom)
        m = Module()
        csr = self.csr
        mem_bytes = _nbytes(self.mem_data_bits)
        s_bytes = [_nbytes(w) for w in self.streams]
        res_bytes = _nbytes(self.result_bits)
        buf_bytes = max(6, 4 + mem_bytes, max(s_bytes))
        buf = Signal(8 * buf_bytes)
        got = Signal(range(buf_bytes + 1))
        need = Signal(range(buf_bytes + 1))
        op = Signal(8)
        index = Signal(8)
        n_streams = len(self.streams)

        # ---- answers and results out: one frame at a time ---------------------------
        tx_bytes = max(6, 1 + res_bytes)
        tx_buf = Signal(8 * tx_bytes)
        tx_len = Signal(range(tx_bytes + 1))
        tx_at = Signal(range(tx_bytes + 1))
        answer = Signal(8 * 6)
        answer_len = Signal(range(7))
        answer_due = Signal()
        sending = tx_at != tx_len
        m.d.comb += [self.tx.valid.eq(sending),
                     self.tx.payload.eq(tx_buf.word_select(tx_at, 8))]
        with m.If(self.tx.valid & self.tx.ready):
            m.d.sync += tx_at.eq(tx_at + 1)
        with m.If(~sending):
            with m.If(answer_due):
                m.d.sync += [tx_buf.eq(answer), tx_len.eq(answer_len), tx_at.eq(0),
                             answer_due.eq(0)]
            with m.Elif(self.result.valid):
                m.d.comb += self.result.ready.eq(1)
                m.d.sync += [tx_buf.eq(Cat(Const(OP["result"], 8), self.result.payload)),
                             tx_len.eq(1 + res_bytes), tx_at.eq(0)]

        def reply(*fields):
            m.d.sync += [answer.eq(Cat(*fields)), answer_due.eq(1),
                         answer_len.eq(sum(len(f) for f in fields) // 8)]

        # ---- commands in -------------------------------------------------------------
        aw_done, w_done = Signal(), Signal()
        m.d.comb += [csr.awaddr.eq(buf[:16]), csr.wdata.eq(buf[16:48]), csr.wstrb.eq(0xF),
                     csr.araddr.eq(buf[:16]),
                     self.mem_addr.eq(buf[:32]), self.mem_data.eq(buf[32:])]
        sizes = Array(Const(b, range(buf_bytes + 1)) for b in s_bytes + [0] * (256 - n_streams))
        with m.FSM():
            with m.State("OP"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [op.eq(self.rx.payload), got.eq(0)]
                    with m.Switch(self.rx.payload):
                        with m.Case(OP["write"]):
                            m.d.sync += need.eq(6)
                            m.next = "ARGS"
                        with m.Case(OP["read"]):
                            m.d.sync += need.eq(2)
                            m.next = "ARGS"
                        with m.Case(OP["mem"]):
                            m.d.sync += need.eq(4 + mem_bytes)
                            m.next = "ARGS"
                        with m.Case(OP["stream"]):
                            m.next = "INDEX"
                        with m.Case(OP["ping"]):
                            reply(Const(OP["pong"], 8))
                            m.next = "ANSWER"
                        with m.Default():
                            reply(Const(OP["unknown"], 8), self.rx.payload)
                            m.next = "ANSWER"
            with m.State("INDEX"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [index.eq(self.rx.payload), need.eq(sizes[self.rx.payload])]
                    m.next = "ARGS"
                    with m.If(self.rx.payload >= n_streams):
                        reply(Const(OP["unknown"], 8), self.rx.payload)
                        m.next = "ANSWER"
            with m.State("ARGS"):
                with m.If(got == need):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    with m.Switch(op):
                        with m.Case(OP["write"]):
                            m.next = "WRITE"
                        with m.Case(OP["read"]):
                            m.next = "READ"
                        with m.Case(OP["mem"]):
                            m.d.comb += self.mem_en.eq(1)
                            m.next = "OP"
                        with m.Default():
                            m.next = "PUSH"
                with m.Else():
                    m.d.comb += self.rx.ready.eq(1)
                    with m.If(self.rx.valid):
                        m.d.sync += [buf.word_select(got, 8).eq(self.rx.payload),
                                     got.eq(got + 1)]
            with m.State("WRITE"):
                m.d.comb += [csr.awvalid.eq(~aw_done), csr.wvalid.eq(~w_done),
                             csr.bready.eq(aw_done & w_done)]
                with m.If(csr.awvalid & csr.awready):
                    m.d.sync += aw_done.eq(1)
                with m.If(csr.wvalid & csr.wready):
                    m.d.sync += w_done.eq(1)
                with m.If(csr.bvalid & csr.bready):
                    reply(Const(OP["wrote"], 8), csr.bresp, Const(0, 6))
                    m.next = "ANSWER"
            with m.State("READ"):
                m.d.comb += [csr.arvalid.eq(~aw_done), csr.rready.eq(aw_done)]
                with m.If(csr.arvalid & csr.arready):
                    m.d.sync += aw_done.eq(1)
                with m.If(csr.rvalid & csr.rready):
                    reply(Const(OP["data"], 8), csr.rdata, csr.rresp, Const(0, 6))
                    m.next = "ANSWER"
            with m.State("PUSH"):
                for i, w in enumerate(self.streams):
                    s = getattr(self, f"s{i}")
                    m.d.comb += [s.payload.eq(buf[:w]), s.valid.eq(index == i)]
                    with m.If((index == i) & s.ready):
                        m.next = "OP"
            with m.State("ANSWER"):
                with m.If(~answer_due):
                    m.next = "OP"
        return m
