"""The top level's bus blocks: the AXI4-Lite register bank the host programs the
accelerator through (`CsrBank`, registers from `rpaccel.interface.csr_regs`) and the
arbiter that puts every AXI4 read manager (the embedding units, the model loader) onto
the one DRAM port (`AxiReadArbiter`)."""

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .embedding import axi4_read_signature

__all__ = ["axi4_lite_signature", "CsrBank", "AxiReadArbiter"]


def axi4_lite_signature(addr_bits: int = 12, data_bits: int = 32) -> wiring.Signature:
    """AXI4-Lite subordinate signature (as seen from the manager: flip it on the
    subordinate). Ports ``csr__awaddr`` ...; cocotbext-axi binds them with the prefix
    ``"csr_"``."""
    return wiring.Signature({
        "awaddr": Out(addr_bits), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wvalid": Out(1),
        "wready": In(1), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_bits), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


class CsrBank(wiring.Component):
    """AXI4-Lite registers: ``rw`` registers are outputs, ``ro`` registers inputs; a ``wo``
    register is a write pulse ``<name>`` with ``<name>_data``, a ``wr`` register the same
    and reads back its ``<name>_rd`` input (a setting the design takes or refuses).

    One write (AW and W together) and one read in flight; responses are OKAY, an unmapped
    address reads 0 and answers DECERR.

    Parameters
    ----------
    regs : dict of name -> (address, access, width)
    """

    def __init__(self, regs: dict, addr_bits: int = 12):
        self.regs = regs
        members = {"bus": In(axi4_lite_signature(addr_bits))}
        for name, (_, acc, width) in regs.items():
            if acc == "rw":
                members[name] = Out(width)
            elif acc == "ro":
                members[name] = In(width)
            else:
                members[name] = Out(1)  # write pulse
                members[name + "_data"] = Out(32)
                if acc == "wr":
                    members[name + "_rd"] = In(width)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        b = self.bus
        # write: both channels at once, answer on B
        with m.If(b.bvalid & b.bready):
            m.d.sync += b.bvalid.eq(0)
        take_w = Signal()
        m.d.comb += [take_w.eq(b.awvalid & b.wvalid & ~b.bvalid),
                     b.awready.eq(take_w), b.wready.eq(take_w)]
        hit = Signal()
        for name, (addr, acc, width) in self.regs.items():
            if acc == "ro":
                continue
            with m.If(take_w & (b.awaddr == addr)):
                m.d.comb += hit.eq(1)
                if acc == "rw":
                    m.d.sync += getattr(self, name).eq(b.wdata[:width])
                else:
                    m.d.comb += [getattr(self, name).eq(1),
                                 getattr(self, name + "_data").eq(b.wdata)]
        with m.If(take_w):
            m.d.sync += [b.bvalid.eq(1), b.bresp.eq(Mux(hit, 0, 3))]
        # read: data on R the cycle after AR
        with m.If(b.rvalid & b.rready):
            m.d.sync += b.rvalid.eq(0)
        take_r = Signal()
        m.d.comb += [take_r.eq(b.arvalid & ~b.rvalid), b.arready.eq(take_r)]
        with m.If(take_r):
            m.d.sync += [b.rvalid.eq(1), b.rdata.eq(0), b.rresp.eq(3)]
            for name, (addr, acc, _w) in self.regs.items():
                if acc == "wo":
                    continue
                with m.If(b.araddr == addr):
                    value = getattr(self, name + "_rd" if acc == "wr" else name)
                    m.d.sync += [b.rdata.eq(value), b.rresp.eq(0)]
        return m


def axi_port(p: int) -> str:
    """Member (and Verilog port prefix) of AXI4 read port ``p`` of `RPAccel` and
    `rpaccel.hw.emb_cluster.EmbeddingCluster`: ``axi``, ``axi1``, ``axi2``, ..."""
    return "axi" if p == 0 else f"axi{p}"


class AxiReadArbiter(wiring.Component):
    """``n`` AXI4 read managers onto one port: round-robin on AR (a grant holds until its
    AR handshake, as AXI requires), ``arid = {manager, id}``, R routed by ``rid``."""

    def __init__(self, n: int, addr_bits: int, data_bits: int, id_bits: int):
        self.n, self.id_bits = n, id_bits
        self.sel_bits = max(1, ceil_log2(n))
        members = {f"m{i}": In(axi4_read_signature(addr_bits, data_bits, id_bits))
                   for i in range(n)}
        members["out"] = Out(axi4_read_signature(addr_bits, data_bits,
                                                 id_bits + self.sel_bits))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n = self.n
        ms = [getattr(self, f"m{i}") for i in range(n)]
        o = self.out
        grant = Signal(range(n))
        who = o.rid[self.id_bits:]
        for i, mi in enumerate(ms):
            with m.If(grant == i):
                m.d.comb += [o.araddr.eq(mi.araddr), o.arlen.eq(mi.arlen),
                             o.arsize.eq(mi.arsize), o.arburst.eq(mi.arburst),
                             o.arid.eq(mi.arid | (i << self.id_bits)),
                             o.arvalid.eq(mi.arvalid), mi.arready.eq(o.arready)]
            m.d.comb += [mi.rdata.eq(o.rdata), mi.rid.eq(o.rid[:self.id_bits]),
                         mi.rresp.eq(o.rresp), mi.rlast.eq(o.rlast),
                         mi.rvalid.eq(o.rvalid & (who == i))]
            with m.If(who == i):
                m.d.comb += o.rready.eq(mi.rready)
        # move on only when no AR is waiting; the nearest requester after the grant wins
        with m.If(~o.arvalid | o.arready):
            for d in range(n, 0, -1):
                for g in range(n):
                    with m.If((grant == g) & ms[(g + d) % n].arvalid):
                        m.d.sync += grant.eq((g + d) % n)
        return m
