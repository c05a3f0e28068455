"""Model loader: a DMA that fetches load images (engine programs and weights, embedding-unit
descriptors, maps and static rows) from DRAM over the AXI4 read port at model load.

A load image is the stream of ``{target, addr, data}`` load beats of one unit, each beat
padded to a whole number of AXI data words (little endian, beat ``i`` at
``base + i * words * axi_data_bits / 8``); `load_image` writes it, the runtime places it in
DRAM after the embedding tables. The host starts a load with three CSR writes
(``LOAD_ADDR``, ``LOAD_BEATS``, ``LOAD_CTRL``) and polls ``LOAD_STATUS``.
"""

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import RPAccelConfig
from .arith import lut_mul
from .embedding import axi4_read_signature

__all__ = ["ModelLoader", "load_words", "load_packer", "load_image", "cmd_layout"]


def cmd_layout(config: RPAccelConfig, targets: int):
    """A load command: the image's DRAM byte address, its beats and the target unit."""
    return data.StructLayout({"addr": unsigned(config.axi_addr_bits), "beats": unsigned(32),
                              "target": range(targets)})


def load_words(width: int, data_bits: int) -> int:
    """AXI data words one load beat of ``width`` bits takes in DRAM."""
    return -(-width // data_bits)


def load_packer(layout):
    """Pack ``(target, addr, data)`` beats (as the host compilers make them) into the raw
    bits of a ``{target, addr, data}`` load layout."""
    off = {name: f.offset for name, f in layout}

    def pack(beat):
        target, addr, value = beat
        return (target << off["target"]) | (addr << off["addr"]) | (value << off["data"])

    return pack


def load_image(layout, beats, data_bits: int) -> bytes:
    """The DRAM image of ``beats`` on a load stream of ``layout``: each beat packed and
    padded to `load_words` AXI words, little endian."""
    nbytes = load_words(layout.size, data_bits) * data_bits // 8
    pack = load_packer(layout)
    return b"".join(pack(b).to_bytes(nbytes, "little") for b in beats)


class ModelLoader(wiring.Component):
    """Reads ``beats`` load beats of target ``target`` from DRAM at ``addr`` and streams
    them on ``out`` (``target`` tells which unit takes them).

    AR: INCR bursts of whole words, as long as allowed (256 beats, never across a 4 KiB
    boundary), issued back to back without waiting for data; R is back-pressured only by
    ``out``. A command on ``cmd`` is taken when idle (one of 0 beats does nothing); ``busy``
    holds until the last beat left on
    ``out``; ``done`` counts the beats delivered by the current (last) load; ``bus_error``
    pulses on an R beat answered with SLVERR / DECERR (its data are still delivered).
    ``out.payload`` is as wide as the widest target's words; bits above the current
    target's width are left from earlier beats (each port takes its width).

    Parameters
    ----------
    config : RPAccelConfig
    widths : list of int
        Payload width of each target's load stream.
    id_bits : int
        AXI ID width (the arbiter prepends the manager number).
    """

    def __init__(self, config: RPAccelConfig, widths, id_bits: int):
        cfg = config
        self.config, self.widths = cfg, list(widths)
        self.data_bits = cfg.axi_data_bits
        self.words = [load_words(w, self.data_bits) for w in self.widths]
        n = len(self.widths)
        super().__init__({
            "cmd": In(stream.Signature(cmd_layout(cfg, n))),
            "busy": Out(1), "done": Out(32), "bus_error": Out(1), "target": Out(range(n)),
            "axi": Out(axi4_read_signature(cfg.axi_addr_bits, self.data_bits, id_bits)),
            "out": Out(stream.Signature(unsigned(max(self.words) * self.data_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        D = self.data_bits
        B = D // 8
        lb = exact_log2(B)
        maxb = min(256, 4096 // B)  # words of the longest burst; bursts never cross 4 KiB
        mb = exact_log2(maxb)
        max_words = max(self.words)
        a = self.axi
        wpb = Signal(range(max_words + 1))
        m.d.comb += wpb.eq(Array(self.words)[self.target])

        ar_left = Signal(32 + ceil_log2(max_words + 1))   # words still to request
        ar_addr = Signal(len(a.araddr))
        room = Signal(range(maxb + 1))
        blen = Signal(range(maxb + 1))
        m.d.comb += [room.eq(maxb - ar_addr[lb:lb + mb]),
                     blen.eq(Mux(ar_left < room, ar_left, room)),
                     a.araddr.eq(ar_addr), a.arlen.eq(blen - 1), a.arsize.eq(lb),
                     a.arburst.eq(1), a.arid.eq(0),
                     a.arvalid.eq(ar_left != 0)]
        with m.If(a.arvalid & a.arready):
            m.d.sync += [ar_addr.eq(ar_addr + (blen << lb)), ar_left.eq(ar_left - blen)]

        buf = Signal(max_words * D)
        w = Signal(range(max_words))
        ov = Signal()
        m.d.comb += [self.out.payload.eq(buf), self.out.valid.eq(ov),
                     a.rready.eq(self.busy & (~ov | self.out.ready))]
        beats = Signal(32)  # of the running load
        taken = self.out.valid & self.out.ready
        with m.If(taken):
            m.d.sync += [ov.eq(0), self.done.eq(self.done + 1)]
            with m.If(self.done + 1 == beats):
                m.d.sync += self.busy.eq(0)
        with m.If(a.rvalid & a.rready):
            m.d.sync += [buf.word_select(w, D).eq(a.rdata), w.eq(w + 1)]
            with m.If(w == wpb - 1):
                m.d.sync += [w.eq(0), ov.eq(1)]
        m.d.comb += self.bus_error.eq(a.rvalid & a.rready & (a.rresp >= 2))

        c = self.cmd.payload
        # a command also waits for the last request and the last beat: an AR or an output
        # beat once offered stays as it is, whatever DRAM answers
        m.d.comb += self.cmd.ready.eq(~self.busy & (ar_left == 0) & ~ov)
        with m.If(self.cmd.valid & self.cmd.ready & (c.beats != 0)):
            m.d.sync += [self.busy.eq(1), self.done.eq(0), self.target.eq(c.target),
                         beats.eq(c.beats), ar_addr.eq(c.addr & ~(B - 1)), w.eq(0), ov.eq(0),
                         ar_left.eq(lut_mul(c.beats, Array(self.words)[c.target]))]
        return m
