"""Several embedding units serving one stage: lookups at ``emb_units`` ids per cycle.

Table ``t`` belongs to unit ``t mod G`` (``G = emb_units``). A request beat carries one id
lane per unit (``keep`` marks the lanes in use) and is taken when every unit with a kept
lane takes its id, so the units classify, fetch and pool their own bags side by side.
Pooled vectors leave in table order (tables 0 .. ``tables - 1`` of an item, then the next
item), several per response beat: a beat holds the vectors of tables ``t .. t + n - 1``
(lane j from unit ``(t + j) mod G``), ``n = min(G, 2**fpack - t mod 2**fpack, tables -
t)``, i.e. as many as are left of the item and of the feature word they are packed into
(`rpaccel.interface.feature_pack`; with ``fpack`` 0 one vector a beat). The beat leaves
when each of its units has its vector.

Every unit holds the whole embedding image (the load stream goes to all of them): each
has its own static cache, map and dynamic cache, and the golden counters are those of one
`rpaccel.golden.cache.CacheModel` per unit fed that unit's lookups, summed. The units'
AXI4 read ports share ``axi_ports`` ports: unit ``g`` on port ``g mod axi_ports``, one
`AxiReadArbiter` a port (``arid = {g // axi_ports, MSHR}``).
"""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import RPAccelConfig
from ..interface import clamp_pack, max_feature_pack
from ..interface import lanes as act_lanes
from .bus import AxiReadArbiter, axi_port
from .embedding import EmbeddingUnit, emb_layouts

__all__ = ["EmbeddingCluster", "cluster_req_layout", "cluster_resp_layout", "make_embedding"]

_COUNTERS = ("lookups", "static_hits", "dynamic_hits", "misses", "dram_bytes", "bags")


def cluster_req_layout(config: RPAccelConfig) -> data.ArrayLayout:
    """One id lane per unit: ``{keep, table, id, last}``."""
    lane = data.StructLayout({"keep": 1, "table": range(config.emb_tables),
                              "id": unsigned(32), "last": 1})
    return data.ArrayLayout(lane, config.emb_units)


def cluster_resp_layout(config: RPAccelConfig) -> data.StructLayout:
    """Up to ``emb_units`` pooled vectors of consecutive tables: ``{vec[G], error[G], n}``."""
    cfg = config
    return data.StructLayout({
        "vec": data.ArrayLayout(data.ArrayLayout(signed(8), cfg.emb_dim), cfg.emb_units),
        "error": unsigned(cfg.emb_units), "n": range(cfg.emb_units + 1)})


def make_embedding(config: RPAccelConfig):
    """The stage's embedding: an `EmbeddingUnit`, or an `EmbeddingCluster` of
    ``emb_units`` units."""
    return EmbeddingUnit(config) if config.emb_units == 1 else EmbeddingCluster(config)


class EmbeddingCluster(wiring.Component):
    """``emb_units`` embedding units behind one request and one response stream (module
    docstring).

    Members
    -------
    load : In(stream)
        The embedding unit's model load, to every unit.
    req : In(stream of `cluster_req_layout`)
    resp : Out(stream of `cluster_resp_layout`)
        Pooled vectors in table order, ``n`` a beat (module docstring).
    tables : In
        Tables per item (the order of the responses).
    fpack : In
        The stage model's `rpaccel.interface.feature_pack` (how many vectors a beat may
        hold).
    axi, axi1, ... : Out(AXI4 read)
        ``axi_ports`` ports (`rpaccel.hw.bus.axi_port`); port p serves units p,
        p + ``axi_ports``, ..., ``arid = {unit // axi_ports, MSHR}``.
    err_valid, err_table, err_id, err_count, bus_err_valid, bus_err_table, bus_err_addr
        As `EmbeddingUnit`'s: the lowest unit's first error, ``err_count`` summed.
    lookups, static_hits, dynamic_hits, misses, dram_bytes, bags : Out(48)
        Summed over the units.
    """

    def __init__(self, config: RPAccelConfig):
        cfg = config
        self.config = cfg
        G = cfg.emb_units
        self.units = [EmbeddingUnit(cfg) for _ in range(G)]
        _, _, load_l, _, _ = emb_layouts(cfg)
        P = cfg.axi_ports
        self.arbs = [AxiReadArbiter(G // P, cfg.axi_addr_bits, cfg.axi_data_bits,
                                    max(1, ceil_log2(cfg.mshrs))) for _ in range(P)]
        u = self.units[0].signature.members
        super().__init__({
            "load": In(stream.Signature(load_l)),
            "req": In(stream.Signature(cluster_req_layout(cfg))),
            "resp": Out(stream.Signature(cluster_resp_layout(cfg))),
            "tables": In(range(cfg.emb_tables + 1)),
            "fpack": In(range(max_feature_pack(act_lanes(cfg)) + 1)),
            **{axi_port(p): Out(arb.signature.members["out"].signature)
               for p, arb in enumerate(self.arbs)},
            "err_clear": In(1),
            **{n: Out(u[n].shape) for n in ("err_valid", "err_table", "err_id", "err_count",
                                            "bus_err_valid", "bus_err_table",
                                            "bus_err_addr")},
            **{n: Out(48) for n in _COUNTERS},
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        G = cfg.emb_units
        units = self.units
        P = cfg.axi_ports
        for p, arb in enumerate(self.arbs):
            m.submodules[f"arbiter{p}" if p else "arbiter"] = arb
            wiring.connect(m, arb.out, wiring.flipped(getattr(self, axi_port(p))))
        for g, un in enumerate(units):
            m.submodules[f"unit{g}"] = un
            wiring.connect(m, un.axi, getattr(self.arbs[g % P], f"m{g // P}"))
            m.d.comb += [un.load.payload.eq(self.load.payload), un.err_clear.eq(self.err_clear)]

        # load: every unit takes every beat
        load_ok = Cat(*[un.load.ready for un in units]).all()
        m.d.comb += self.load.ready.eq(load_ok)
        for un in units:
            m.d.comb += un.load.valid.eq(self.load.valid & load_ok)

        # requests: a beat is taken when every kept lane's unit takes its id
        lanes = self.req.payload
        take = Signal()
        m.d.comb += take.eq(Cat(*[~lanes[g].keep | units[g].req.ready for g in range(G)]).all())
        m.d.comb += self.req.ready.eq(take)
        for g, un in enumerate(units):
            ln = lanes[g]
            m.d.comb += [un.req.valid.eq(self.req.valid & ln.keep & take),
                         un.req.payload.table.eq(ln.table), un.req.payload.id.eq(ln.id),
                         un.req.payload.last.eq(ln.last)]

        # responses in table order: table t from unit t mod G, n tables a beat
        t = Signal(range(cfg.emb_tables + 1))   # the beat's first table
        u = Signal(range(G))                    # its unit
        slot = Signal(range(act_lanes(cfg) + 1))    # t mod 2**fpack
        k = Signal(range(act_lanes(cfg) + 1))
        n = Signal(range(G + 1))
        m.d.comb += k.eq(1 << clamp_pack(self.fpack, act_lanes(cfg)))
        left_w, left_t = Signal.like(k), Signal.like(t)
        m.d.comb += [left_w.eq(k - slot), left_t.eq(self.tables - t)]
        m.d.comb += n.eq(G)
        with m.If((left_w < G) & (left_w <= left_t)):
            m.d.comb += n.eq(left_w)
        with m.Elif(left_t < G):
            m.d.comb += n.eq(left_t)
        vecs = Array(un.resp.payload.vec for un in units)
        errs = Array(un.resp.payload.error for un in units)
        valids = Array(un.resp.valid for un in units)
        out = self.resp.payload
        ok = []
        for j in range(G):
            src = Signal(range(G), name=f"src{j}")   # (u + j) mod G
            m.d.comb += src.eq(Mux(u + j >= G, u + j - G, u + j))
            m.d.comb += [out.vec[j].eq(vecs[src]), out.error[j].eq(errs[src])]
            ok.append((j >= n) | valids[src])
        # no beat without a vector (n is 0 while ``tables`` is 0, before a model is set)
        m.d.comb += [out.n.eq(n), self.resp.valid.eq((n != 0) & Cat(*ok).all())]
        for g, un in enumerate(units):
            pos = Signal(range(G), name=f"pos{g}")   # (g - u) mod G: its lane in the beat
            # (u > G - 1 cannot be: lane G - 1 is always g - u)
            m.d.comb += pos.eq(Mux(u > g, g + G - u, g - u) if g < G - 1 else g - u)
            m.d.comb += un.resp.ready.eq(self.resp.valid & self.resp.ready & (pos < n))
        with m.If(self.resp.valid & self.resp.ready):
            with m.If(n >= left_t):
                m.d.sync += [t.eq(0), u.eq(0), slot.eq(0)]
            with m.Else():
                m.d.sync += [t.eq(t + n), u.eq(Mux(u + n >= G, u + n - G, u + n)),
                             slot.eq(Mux(n == left_w, 0, slot + n))]

        # status: the lowest unit's first error; counters summed
        for kind, fields in (("err", ("err_table", "err_id")),
                             ("bus_err", ("bus_err_table", "bus_err_addr"))):
            m.d.comb += getattr(self, f"{kind}_valid").eq(
                Cat(*[getattr(un, f"{kind}_valid") for un in units]).any())
            for un in reversed(units):
                with m.If(getattr(un, f"{kind}_valid")):
                    m.d.comb += [getattr(self, f).eq(getattr(un, f)) for f in fields]
        m.d.comb += self.err_count.eq(sum(un.err_count for un in units))
        for n in _COUNTERS:
            m.d.comb += getattr(self, n).eq(sum(getattr(un, n) for un in units))
        return m
