"""Several embedding units serving one stage: lookups at ``emb_units`` ids per cycle.

Table ``t`` belongs to unit ``t mod G`` (``G = emb_units``). A request beat carries one id
lane per unit (``keep`` marks the lanes in use) and is taken when every unit with a kept
lane takes its id, so the units classify, fetch and pool their own bags side by side.
Pooled vectors leave in table order (tables 0 .. ``tables - 1`` of an item, then the next
item): the cluster takes table t's vector from unit ``t mod G``, so the stage controller
sees the same response stream as from one unit.

Every unit holds the whole embedding image (the load stream goes to all of them): each
has its own static cache, map and dynamic cache, and the golden counters are those of one
`rpaccel.golden.cache.CacheModel` per unit fed that unit's lookups, summed. The units'
AXI4 read ports share one through an `AxiReadArbiter` (``arid = {unit, MSHR}``).
"""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import RPAccelConfig
from .bus import AxiReadArbiter
from .embedding import EmbeddingUnit, emb_layouts

__all__ = ["EmbeddingCluster", "cluster_req_layout", "make_embedding"]

_COUNTERS = ("lookups", "static_hits", "dynamic_hits", "misses", "dram_bytes", "bags")


def cluster_req_layout(config: RPAccelConfig) -> data.ArrayLayout:
    """One id lane per unit: ``{keep, table, id, last}``."""
    lane = data.StructLayout({"keep": 1, "table": range(config.emb_tables),
                              "id": unsigned(32), "last": 1})
    return data.ArrayLayout(lane, config.emb_units)


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
    resp : Out(stream)
        Pooled vectors in table order, as from one `EmbeddingUnit`.
    tables : In
        Tables per item (the order of the responses).
    axi : Out(AXI4 read)
        ``arid = {unit, MSHR}``.
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
        _, _, load_l, _, resp_l = emb_layouts(cfg)
        self.arb = AxiReadArbiter(G, cfg.axi_addr_bits, cfg.axi_data_bits,
                                  max(1, ceil_log2(cfg.mshrs)))
        u = self.units[0].signature.members
        super().__init__({
            "load": In(stream.Signature(load_l)),
            "req": In(stream.Signature(cluster_req_layout(cfg))),
            "resp": Out(stream.Signature(resp_l)),
            "tables": In(range(cfg.emb_tables + 1)),
            "axi": Out(self.arb.signature.members["out"].signature),
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
        m.submodules.arbiter = arb = self.arb
        for g, un in enumerate(units):
            m.submodules[f"unit{g}"] = un
            wiring.connect(m, un.axi, getattr(arb, f"m{g}"))
            m.d.comb += [un.load.payload.eq(self.load.payload), un.err_clear.eq(self.err_clear)]
        wiring.connect(m, arb.out, wiring.flipped(self.axi))

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

        # responses in table order: table t from unit t mod G
        t = Signal(range(cfg.emb_tables + 1))
        u = Signal(range(G))
        with m.Switch(u):
            for g, un in enumerate(units):
                with m.Case(g):
                    m.d.comb += [self.resp.valid.eq(un.resp.valid),
                                 self.resp.payload.eq(un.resp.payload),
                                 un.resp.ready.eq(self.resp.ready)]
        with m.If(self.resp.valid & self.resp.ready):
            with m.If(t + 1 >= self.tables):
                m.d.sync += [t.eq(0), u.eq(0)]
            with m.Else():
                m.d.sync += [t.eq(t + 1), u.eq(Mux(u == G - 1, 0, u + 1))]

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
