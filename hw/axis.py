"""AXI4-Stream ports of the RPAccel top level, as hosts and DMA engines expect them.

`RPAccelAxis` is `rpaccel.hw.top.RPAccel` with its query and result streams as AXI4-Stream
ports (``tdata``, ``tkeep``, ``tlast``, ``tvalid``, ``tready``) carrying byte-aligned
records (`rpaccel.interface.query_record`, `rpaccel.interface.RESULT_RECORD_BYTES`): a
query is one packet, a transfer per query beat and ``tlast`` on its last, so a DMA engine
streams a query buffer as it is; an answer is one packet, ``tlast`` on the last survivor.
Every other port (CSRs, AXI4 DRAM ports, load streams) is `RPAccel`'s.

``tlast`` is the query beat's ``end``: the front end answers a packet that ends before its
query (or a query without ``tlast``) as `rpaccel.hw.front_end` says, ``ERR_CAUSE``
FRAMING. A transfer with a null byte (a ``tkeep`` bit low) has those bytes read as 0 and
ends the packet there as ``tlast`` does: its query is completed, flagged and FRAMING.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import RPAccelConfig
from ..interface import RESULT_RECORD_BYTES, lanes, query_record, top_layouts
from .skid import register_slice
from .top import RPAccel

__all__ = ["axis_signature", "AxisQueryIn", "AxisResultOut", "RPAccelAxis"]


def axis_signature(data_bytes: int) -> wiring.Signature:
    """AXI4-Stream signature as seen from the transmitter (flip it on the receiver):
    ``tdata`` of ``data_bytes`` bytes, ``tkeep``, ``tlast``, ``tvalid``, ``tready``.
    cocotbext-axi binds the ports ``query__tdata`` ... with the prefix ``"query_"``."""
    return wiring.Signature({"tdata": Out(8 * data_bytes), "tkeep": Out(data_bytes),
                             "tlast": Out(1), "tvalid": Out(1), "tready": In(1)})


class AxisQueryIn(wiring.Component):
    """AXI4-Stream query records in, query beats (``top_layouts()[0]``) out through a
    register slice (one cycle; the port's ``tready`` is a register).

    Parameters
    ----------
    config : RPAccelConfig

    Members
    -------
    s_axis : In(axis_signature(query_record().tdata_bytes))
    query : Out(stream of ``top_layouts()[0]``)
    """

    def __init__(self, config: RPAccelConfig):
        self.config = config
        self.record = query_record(config)
        super().__init__({
            "s_axis": In(axis_signature(self.record.tdata_bytes)),
            "query": Out(stream.Signature(top_layouts(config)[0])),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, r, t = self.config, self.record, self.s_axis
        B, G = r.tdata_bytes, cfg.emb_units
        d = Signal(8 * B)
        m.d.comb += d.eq(Cat(*[Mux(t.tkeep[i], t.tdata[8 * i:8 * i + 8], 0)
                               for i in range(B)]))

        def field(offset, n=1):
            return d[8 * offset:8 * (offset + n)]

        raw = stream.Signature(self.query.payload.shape()).create()
        q = raw.payload
        flags = field(r.flags)
        m.d.comb += [q.head.eq(flags[0]), q.dense.eq(flags[1]), q.stage.eq(flags[2:4]),
                     q.table.eq(field(r.table)), q.id.eq(field(r.id, 4)),
                     q.last.eq(field(r.last)[0]),
                     *[q.word[i].eq(field(r.word + i)) for i in range(lanes(cfg))],
                     q.end.eq(t.tlast | ~t.tkeep.all()),
                     raw.valid.eq(t.tvalid), t.tready.eq(raw.ready)]
        if G > 1:
            m.d.comb += [q.keep.eq(field(r.keep)[:G]),
                         *[q.xtable[g - 1].eq(field(r.table + g)) for g in range(1, G)],
                         *[q.xid[g - 1].eq(field(r.id + 4 * g, 4)) for g in range(1, G)],
                         *[q.xlast[g - 1].eq(field(r.last)[g]) for g in range(1, G)]]
        register_slice(m, "slice", raw, wiring.flipped(self.query))
        return m


class AxisResultOut(wiring.Component):
    """Result beats (``top_layouts()[1]``) out as 8-byte AXI4-Stream records: ``id`` u16,
    ``flags`` u16 (bit 0 the error flag), ``score`` s32, ``tlast`` = ``last``.

    Members
    -------
    result : In(stream of ``top_layouts()[1]``)
    m_axis : Out(axis_signature(RESULT_RECORD_BYTES))
    """

    def __init__(self, config: RPAccelConfig):
        self.config = config
        super().__init__({"result": In(stream.Signature(top_layouts(config)[1])),
                          "m_axis": Out(axis_signature(RESULT_RECORD_BYTES))})

    def elaborate(self, platform):
        m = Module()
        p, t = self.result.payload, self.m_axis
        rid, flags, score = Signal(16), Signal(16), Signal(32)
        m.d.comb += [rid.eq(p.id), flags.eq(p.error), score.eq(p.score),
                     t.tdata.eq(Cat(rid, flags, score)),
                     t.tkeep.eq(-1), t.tlast.eq(p.last), t.tvalid.eq(self.result.valid),
                     self.result.ready.eq(t.tready)]
        return m


class RPAccelAxis(wiring.Component):
    """`RPAccel` with AXI4-Stream query and result ports (module docstring).

    Parameters
    ----------
    config : RPAccelConfig

    Members
    -------
    query : In(axis_signature(query_record().tdata_bytes))
    result : Out(axis_signature(RESULT_RECORD_BYTES))
    csr, axi, axi1, ..., eload_<e>, mload_<s>
        As `RPAccel`'s.
    """

    def __init__(self, config: RPAccelConfig):
        self.config = config
        self.acc = RPAccel(config)
        self.qin, self.rout = AxisQueryIn(config), AxisResultOut(config)
        members = {name: member for name, member in self.acc.signature.members.items()
                   if name not in ("query", "result")}
        members["query"] = In(axis_signature(self.qin.record.tdata_bytes))
        members["result"] = Out(axis_signature(RESULT_RECORD_BYTES))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.acc, m.submodules.qin, m.submodules.rout = self.acc, self.qin, self.rout
        wiring.connect(m, wiring.flipped(self.query), self.qin.s_axis)
        wiring.connect(m, self.qin.query, self.acc.query)
        wiring.connect(m, self.acc.result, self.rout.result)
        wiring.connect(m, self.rout.m_axis, wiring.flipped(self.result))
        for name in self.acc.signature.members:
            if name not in ("query", "result"):
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(self.acc, name))
        return m
