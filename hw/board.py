"""The accelerator on a board: `RPAccel`, its table memory in block RAM and the host link
over a UART (`BoardTop`), and the ULX3S wrapper that maps it onto pins (`ULX3STop`).

Everything the host does goes through the UART (`rpaccel.hw.host_link` protocol): it
writes the embedding tables into the table memory (``'M'``), streams the engines' and
embedding units' load beats in (``eload_<e>`` / ``mload_<s>``), writes the CSRs and sends
query beats; result beats come back as ``'A'`` frames. The table memory answers the
accelerator's AXI4 read port (one beat per two cycles, bursts of any length).
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Shape, Signal
from amaranth.lib import io, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In
from amaranth.utils import ceil_log2, exact_log2

from ..config import RPAccelConfig, require
from .embedding import axi4_read_signature
from .host_link import HostLink
from .top import RPAccel
from .uart import UARTRx, UARTTx

__all__ = ["TableMemory", "BoardTop", "ULX3STop", "board_streams", "TABLE_WORDS"]

#: Words of the board's table memory: the small and medium MovieLens models' tables
#: (90,272 bytes, 11,284 64-bit words) in 48 of the ECP5-85F's 208 DP16KD.
TABLE_WORDS = 12288


class TableMemory(wiring.Component):
    """AXI4 read subordinate over ``words`` block-RAM words of ``axi_data_bits``; a write
    port for the host. Addresses past the memory answer SLVERR (data 0).

    Members
    -------
    axi : In(axi4_read_signature)
    wr_en, wr_addr, wr_data : In
    """

    def __init__(self, config: RPAccelConfig, words: int, id_bits: int):
        if not isinstance(words, int) or words < 1:
            raise ValueError(f"words must be a positive integer, not {words!r}")
        self.config, self.words = config, words
        super().__init__({
            "axi": In(axi4_read_signature(config.axi_addr_bits, config.axi_data_bits,
                                          id_bits)),
            "wr_en": In(1), "wr_addr": In(ceil_log2(words) or 1),
            "wr_data": In(config.axi_data_bits)})

    def elaborate(self, platform):
        m = Module()
        cfg, axi = self.config, self.axi
        m.submodules.mem = mem = Memory(shape=cfg.axi_data_bits, depth=self.words, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.en.eq(self.wr_en), wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data)]
        shift = exact_log2(cfg.axi_data_bits // 8)
        addr = Signal(cfg.axi_addr_bits - shift)
        left = Signal(8)
        rid = Signal.like(axi.arid)
        m.d.comb += [rd.addr.eq(addr), axi.rid.eq(rid), axi.rlast.eq(left == 0)]
        outside = addr >= self.words
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += axi.arready.eq(1)
                with m.If(axi.arvalid):
                    m.d.sync += [addr.eq(axi.araddr >> shift), left.eq(axi.arlen),
                                 rid.eq(axi.arid)]
                    m.next = "READ"
            with m.State("READ"):  # the word's address is on the read port this cycle
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [axi.rvalid.eq(1), axi.rdata.eq(rd.data),
                             axi.rresp.eq(outside << 1)]
                with m.If(outside):
                    m.d.comb += axi.rdata.eq(0)
                with m.If(axi.rready):
                    m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
                    m.next = "IDLE"
                    with m.If(left != 0):
                        m.next = "READ"
        return m


def board_streams(acc: RPAccel) -> list[tuple[str, int]]:
    """The accelerator's input streams the host link drives, in index order: ``query``,
    ``eload_<e>``, ``mload_<s>`` with their payload widths."""
    names = ["query"] + [n for n in acc.signature.members if n.startswith("eload_")] + \
        [n for n in acc.signature.members if n.startswith("mload_")]
    return [(n, acc.signature.members[n].signature.members["payload"].shape.size)
            for n in names]


class BoardTop(wiring.Component):
    """`RPAccel` + table memory + host link + UART (see the module docstring).

    Parameters
    ----------
    config : RPAccelConfig
    divisor : int
        Clock cycles per UART bit.
    table_words : int
        Words of the table memory (``axi_data_bits`` each; any count: 12,288 64-bit words
        are 48 DP16KD, a power of two would take 64).

    Members
    -------
    rx : In(1), init 1
    tx : Out(1), init 1
    """

    def __init__(self, config: RPAccelConfig, divisor: int, table_words: int):
        require(config.axi_ports == 1, "axi_ports",
                "1 on the board (one table memory behind one AXI4 read port)",
                config.axi_ports)
        self.config = config
        self.acc = RPAccel(config)
        self.streams = board_streams(self.acc)
        self.urx, self.utx = UARTRx(divisor), UARTTx(divisor)
        self.link = HostLink([w for _, w in self.streams],
                             self.acc.signature.members["result"].signature.members[
                                 "payload"].shape.size,
                             max(1, ceil_log2(table_words)), config.axi_data_bits)
        arid = self.acc.signature.members["axi"].signature.members["arid"]
        self.mem = TableMemory(config, table_words, Shape.cast(arid.shape).width)
        super().__init__({"rx": In(1, init=1), "tx": wiring.Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        acc, link, mem = self.acc, self.link, self.mem
        m.submodules.acc = acc
        m.submodules.urx = urx = self.urx
        m.submodules.utx = utx = self.utx
        m.submodules.link = link
        m.submodules.mem = mem
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o, link.rx)
        wiring.connect(m, link.tx, utx.i)
        wiring.connect(m, link.csr, acc.csr)
        wiring.connect(m, acc.axi, mem.axi)
        m.d.comb += [mem.wr_en.eq(link.mem_en), mem.wr_addr.eq(link.mem_addr),
                     mem.wr_data.eq(link.mem_data)]
        for i, (name, _) in enumerate(self.streams):
            src, dst = getattr(link, f"s{i}"), getattr(acc, name)
            m.d.comb += [dst.valid.eq(src.valid), dst.payload.eq(src.payload),
                         src.ready.eq(dst.ready)]
        m.d.comb += [link.result.valid.eq(acc.result.valid),
                     link.result.payload.eq(acc.result.payload),
                     acc.result.ready.eq(link.result.ready)]
        return m


class ULX3STop(Elaboratable):
    """`BoardTop` on the ULX3S: its 25 MHz clock, the FTDI UART (``uart`` 0), LED 0 lit
    while a byte is being received. amaranth-boards' ``sync`` domain there has no reset
    net: the flip-flops take their initial values from the global set/reset at
    configuration."""

    def __init__(self, config: RPAccelConfig, baud: int = 115200, table_words: int = TABLE_WORDS,
                 clk_hz: int = 25_000_000):
        self.board = BoardTop(config, clk_hz // baud, table_words)

    def elaborate(self, platform):
        m = Module()
        m.submodules.board = board = self.board
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx = io.Buffer("o", uart.tx)
        m.submodules.led_buf = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += [board.rx.eq(rx.i), tx.o.eq(board.tx), led.o.eq(~rx.i)]
        return m
