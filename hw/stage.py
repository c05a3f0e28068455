"""One ranking stage of the query engine: gather (dense words and embedding bags), the MLP
engine run on a sub-batch, scores into the stage's top-k unit.

`StageController` is the glue between the query stream, an `EmbeddingUnit` (or an
`EmbeddingCluster` of ``emb_units``, ids of several tables per beat), one
`MLPEngine` slot of a `ComputeEngine` and a `TopK`; `StageTop` joins them for one stage
(the building block of the multi-stage top level).

Query stream: for every item of a sub-batch, ``dense_words`` beats with ``dense = 1`` (the
item's int8 dense features, ``lanes`` per word, as `rpaccel.program.sub_batch_beats` lays
them out), then, for every table in order, one beat per id with ``last`` on the bag's last
id (with ``emb_units`` G > 1: G id lanes per beat, lane g the ids of tables t mod G == g,
`rpaccel.interface.query_beats`). A ``run`` beat gives the sub-batch's item count, the
query position of its first item, ``k`` and whether it ends the query. Pooled vectors
come back from the embedding unit in request order (a cluster: several of consecutive
tables a beat) and are written into the engine's feature region where
`rpaccel.interface.feature_place` puts them: ``dw`` words each, or with ``fpack`` p > 0
gathered ``2**p`` to a word and the word written once (the last word of an item possibly
part full); then the engine runs and every score enters the top-k unit with its query
position as id.
"""

from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import Assert, Assume
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..config import RPAccelConfig, require
from ..interface import (
    EngineGeometry,
    EngineTarget,
    Region,
    clamp_pack,
    engine_layouts,
    id_lane_fields,
    id_lanes,
    max_feature_pack,
    slot_width,
)
from .emb_cluster import cluster_req_layout, cluster_resp_layout, make_embedding
from .embedding import emb_layouts
from .mlp_engine import ComputeEngine
from .skid import register_slice
from .topk import make_topk, topk_layouts

__all__ = ["StageController", "StageTop", "stage_layouts"]


def stage_layouts(config: RPAccelConfig):
    """``(query, run)`` payload layouts."""
    cfg = config
    geo = EngineGeometry(cfg)
    query = data.StructLayout({
        "dense": 1, "word": data.ArrayLayout(signed(8), geo.lanes),
        "table": range(cfg.emb_tables), "id": unsigned(32), "last": 1,
        **id_lane_fields(cfg),
    })
    run = data.StructLayout({"items": range(cfg.sub_batch + 1),
                             "base": unsigned(cfg.topk_id_bits),
                             "k": unsigned(bits_for(cfg.topk_k)), "last": 1})
    return query, run


class StageController(wiring.Component):
    """Gather, run and score one sub-batch at a time (see the module docstring).

    Members
    -------
    query, run : In(stream)
    dense_words, tables, dw, fpack : In
        Model constants: dense words per item, embedding tables, words per feature, how
        pooled vectors are packed (`rpaccel.interface.feature_pack`).
    eng_load : Out(stream of the engine's load layout)
    eng_run : Out(stream)
    eng_out : In(stream of the engine's out layout)
    emb_req : Out(stream), emb_resp : In(stream)
    topk : Out(stream of the top-k input layout)
    emb_errors : Out(16)
        Bags that came back with ``error`` (out-of-range ids) since reset.
    qerr : Out(stream.Signature(1))
        One beat per query when its last sub-batch is gathered (the controller waits for
        ``ready``): 1 if some bag of the query came back with ``error``.

    Parameters
    ----------
    config : RPAccelConfig
    slot : int
        The engine slot whose layouts ``eng_*`` have.
    width : int, optional
        Columns of the engines it drives, if not the slot's widest partition
        (`rpaccel.interface.engine_width` in the top level).
    runs : int
        Runs started and not yet scored the controller keeps track of (at least 2; one
        more than the engines the stage may have, `rpaccel.hw.dispatch`).
    """

    def __init__(self, config: RPAccelConfig, slot: int = 0, runs: int = 2,
                 width: int | None = None):
        self.config = config
        self.slot = slot
        self.runs = runs
        self.geo = EngineGeometry(config)
        width = slot_width(config, slot) if width is None else width
        lay = engine_layouts(config, width)
        eload_l, eout_l = lay.load, lay.out
        _, _, _, req_l, resp_l = emb_layouts(config)
        if config.emb_units > 1:
            req_l, resp_l = cluster_req_layout(config), cluster_resp_layout(config)
        tk_in, _ = topk_layouts(config)
        self.query_layout, self.run_layout = stage_layouts(config)
        super().__init__({
            "query": In(stream.Signature(self.query_layout)),
            "run": In(stream.Signature(self.run_layout)),
            "dense_words": In(range(self.geo.words + 1)),
            "tables": In(range(config.emb_tables + 1)),
            "dw": In(range(self.geo.words + 1)),
            "fpack": In(range(max_feature_pack(self.geo.lanes) + 1)),
            "eng_load": Out(stream.Signature(eload_l)),
            "eng_run": Out(stream.Signature(range(config.sub_batch + 1))),
            "eng_out": In(stream.Signature(eout_l)),
            "emb_req": Out(stream.Signature(req_l)),
            "emb_resp": In(stream.Signature(resp_l)),
            "topk": Out(stream.Signature(tk_in)),
            "emb_errors": Out(16),
            "qerr": Out(stream.Signature(1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, geo = self.config, self.geo
        A = geo.lanes
        items = Signal(range(cfg.sub_batch + 1))
        base = Signal(cfg.topk_id_bits)
        k = Signal.like(self.run.payload.k)
        qlast = Signal()

        # query side: item / dense word / table counters
        qi = Signal(range(cfg.sub_batch + 1))
        qw = Signal(range(geo.words + 1))
        qt = Signal(range(cfg.emb_tables + 1))
        # response side: item / table / word of the pooled vector being written
        ri = Signal(range(cfg.sub_batch + 1))
        rt = Signal(range(cfg.emb_tables + 1))
        rw = Signal(range(geo.words + 1))
        fword = Signal(range(64 * geo.words + 1))  # feature-region word of (rt + 1, rw)

        q = self.query.payload
        resp = self.emb_resp.payload
        ld = self.eng_load.payload
        gathering = Signal()
        query_done = Signal()
        resp_done = Signal()
        m.d.comb += [query_done.eq(qi == items), resp_done.eq(ri == items)]

        # the response beat: n pooled vectors of tables rt .. rt + n - 1 (one unit: n = 1)
        G = cfg.emb_units
        if G == 1:
            rvecs, rerrs, rn = [resp.vec], [resp.error], 1
        else:
            rvecs = [resp.vec[g] for g in range(G)]
            rerrs = [resp.error[g] for g in range(G)]
            rn = resp.n
        # packed (fpack p > 0): the beat's vectors land in their slots of the word being
        # filled (`buf`, the vectors so far); the word is written when the beat fills it or
        # ends the item, otherwise the beat is taken at once
        fpack = Signal(range(max_feature_pack(A) + 1))
        packed = Signal()
        m.d.comb += [fpack.eq(clamp_pack(self.fpack, A)), packed.eq(fpack != 0)]
        slot = Signal(range(A + 1))
        buf = Signal(8 * A)
        placed = Signal(8 * A)
        for p in range(1, max_feature_pack(A) + 1):
            sw = A >> p
            chunk = Cat(*[Mux(j < rn, Cat(*[rvecs[j][x] if x < cfg.emb_dim else C(0, 8)
                                            for x in range(sw)]), 0)
                          for j in range(min(G, 1 << p))])
            with m.If(fpack == p):
                # slot < 2**p: a shift amount of log2(8 A) bits
                m.d.comb += placed.eq(chunk << (slot[:p] * (8 * sw)))
        item_end = Signal()   # the beat holds the item's last vector
        completes = Signal()
        m.d.comb += [item_end.eq(rt + rn >= self.tables),
                     completes.eq((slot + rn == (1 << fpack)) | item_end)]

        # the engine's load port: pooled-vector words first, dense words otherwise; a dense
        # word offered and not taken is offered again before any pooled vector (a stream
        # keeps its payload until taken)
        resp_go = Signal()
        dense_go = Signal()
        dense_held = Signal()
        dense_offer = Signal()
        pooled = Signal()
        m.d.comb += pooled.eq(gathering & self.emb_resp.valid & ~resp_done)
        m.d.sync += dense_held.eq(dense_offer & ~self.eng_load.ready)
        with m.If(pooled & (~packed | completes) & ~dense_held):
            m.d.comb += [self.eng_load.valid.eq(1), ld.target.eq(EngineTarget.ACT),
                         ld.addr.eq(geo.act_addr(Region.FEAT, ri, fword))]
            with m.If(packed):
                m.d.comb += ld.data.eq(buf | placed)
            with m.Else():
                for j in range(A):
                    lane = Signal(signed(8), name=f"resp_lane{j}")
                    for w in range(geo.words):
                        with m.If(rw == w):
                            if w * A + j < cfg.emb_dim:
                                m.d.comb += lane.eq(rvecs[0][w * A + j])
                    m.d.comb += ld.data.word_select(j, 8).eq(lane)
            m.d.comb += resp_go.eq(self.eng_load.ready)
        with m.Elif(gathering & self.query.valid & q.dense & ~query_done):
            m.d.comb += [self.eng_load.valid.eq(1), dense_offer.eq(1),
                         ld.target.eq(EngineTarget.ACT),
                         ld.addr.eq(geo.act_addr(Region.A, qi, qw)),
                         ld.data.eq(q.word.as_value()),
                         self.query.ready.eq(self.eng_load.ready),
                         dense_go.eq(self.eng_load.ready)]
        er = self.emb_req.payload
        with m.If(gathering & self.query.valid & ~q.dense & ~query_done):
            m.d.comb += [self.emb_req.valid.eq(1), self.query.ready.eq(self.emb_req.ready)]
            if cfg.emb_units == 1:
                m.d.comb += [er.table.eq(q.table), er.id.eq(q.id), er.last.eq(q.last)]
            else:
                for g, (keep, table, id_, last) in enumerate(id_lanes(cfg, q)):
                    m.d.comb += [er[g].keep.eq(keep), er[g].table.eq(table),
                                 er[g].id.eq(id_), er[g].last.eq(last)]

        # error of the query being gathered (sticky until its last sub-batch is gathered)
        qerr_acc = Signal()
        m.d.comb += self.qerr.payload.eq(qerr_acc)

        # a beat is taken with its (last) word written, or at once into `buf`
        m.d.comb += self.emb_resp.ready.eq(
            (resp_go & (packed | (rw == self.dw - 1))) | (pooled & packed & ~completes))
        taken = self.emb_resp.valid & self.emb_resp.ready
        bad = Signal(range(G + 1))
        m.d.comb += bad.eq(sum((rerrs[j] & (j < rn)) for j in range(G)))
        with m.If(taken):
            m.d.sync += [self.emb_errors.eq(self.emb_errors + bad)]
            with m.If(bad != 0):
                m.d.sync += qerr_acc.eq(1)
            with m.If(item_end):
                m.d.sync += [rt.eq(0), ri.eq(ri + 1)]
            with m.Else():
                m.d.sync += rt.eq(rt + rn)
        with m.If(packed):
            with m.If(taken & completes):
                m.d.sync += [buf.eq(0), slot.eq(0), fword.eq(fword + 1)]
                with m.If(item_end):
                    m.d.sync += fword.eq(self.dw)
            with m.Elif(taken):
                m.d.sync += [buf.eq(buf | placed), slot.eq(slot + rn)]
        with m.Elif(resp_go):
            m.d.sync += [rw.eq(rw + 1), fword.eq(fword + 1)]
            with m.If(rw == self.dw - 1):
                m.d.sync += rw.eq(0)
                with m.If(item_end):
                    m.d.sync += fword.eq(self.dw)
        with m.If(dense_go):
            m.d.sync += qw.eq(qw + 1)
            with m.If(qw == self.dense_words - 1):
                m.d.sync += qw.eq(0)
                with m.If(self.tables == 0):
                    m.d.sync += qi.eq(qi + 1)
        if cfg.emb_units == 1:
            with m.If(self.query.valid & self.query.ready & ~q.dense & q.last):
                m.d.sync += qt.eq(qt + 1)
                with m.If(qt == self.tables - 1):
                    m.d.sync += [qt.eq(0), qi.eq(qi + 1)]
        else:
            # a wide beat ends as many bags as it has kept lanes with `last`
            ends = Signal(range(cfg.emb_units + 1))
            m.d.comb += ends.eq(sum(keep & last for keep, _, _, last in id_lanes(cfg, q)))
            with m.If(self.query.valid & self.query.ready & ~q.dense & (ends != 0)):
                with m.If(qt + ends >= self.tables):
                    m.d.sync += [qt.eq(0), qi.eq(qi + 1)]
                with m.Else():
                    m.d.sync += qt.eq(qt + ends)

        # scores into the top-k unit, lane 0, query positions as ids; the gather of the
        # next sub-batch may already run, so each started run's (base, k, last) waits in a
        # FIFO until its last score
        sb = Signal(range(cfg.sub_batch + 1))
        tk = self.topk.payload
        started_l = data.StructLayout({"base": cfg.topk_id_bits, "k": len(k), "last": 1})
        m.submodules.started = started = fifo.SyncFIFO(width=started_l.size, depth=self.runs)
        head = started_l(started.r_stream.payload)
        now = Signal(started_l)
        m.d.comb += [now.base.eq(base), now.k.eq(k), now.last.eq(qlast),
                     started.w_stream.payload.eq(now)]
        m.d.comb += [self.topk.valid.eq(self.eng_out.valid & started.r_stream.valid),
                     self.eng_out.ready.eq(self.topk.ready & started.r_stream.valid),
                     tk.lanes[0].valid.eq(1), tk.lanes[0].id.eq(head.base + sb),
                     tk.lanes[0].score.eq(self.eng_out.payload.acc[0]), tk.k.eq(head.k),
                     tk.last.eq(head.last & self.eng_out.payload.last)]
        with m.If(self.eng_out.valid & self.eng_out.ready):
            m.d.sync += sb.eq(Mux(self.eng_out.payload.last, 0, sb + 1))
        m.d.comb += started.r_stream.ready.eq(self.eng_out.valid & self.eng_out.ready &
                                             self.eng_out.payload.last)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.run.ready.eq(1)
                with m.If(self.run.valid & (self.run.payload.items != 0)):
                    r = self.run.payload
                    m.d.sync += [items.eq(r.items), base.eq(r.base), k.eq(r.k),
                                 qlast.eq(r.last), qi.eq(0), qw.eq(0), qt.eq(0), ri.eq(0),
                                 rt.eq(0), rw.eq(0), fword.eq(self.dw), slot.eq(0),
                                 buf.eq(0)]
                    m.next = "GATHER"
            with m.State("GATHER"):
                m.d.comb += gathering.eq(1)
                with m.If(query_done & resp_done):
                    m.d.comb += self.qerr.valid.eq(qlast)
                    with m.If(~qlast):
                        m.next = "START"
                    with m.Elif(self.qerr.ready):
                        m.d.sync += qerr_acc.eq(0)
                        m.next = "START"
            with m.State("START"):
                # the engine takes the run once the previous one is done; the next
                # sub-batch's gather then overlaps this one's compute
                m.d.comb += [self.eng_run.valid.eq(started.w_stream.ready),
                             self.eng_run.payload.eq(items),
                             started.w_stream.valid.eq(self.eng_run.ready)]
                with m.If(self.eng_run.ready & started.w_stream.ready):
                    m.next = "IDLE"
        if platform == "formal":
            # the gather's counters stay within the sub-batch and the model's shape
            with m.If(self.run.valid):  # the contract of run: sub-batches of sub_batch at most
                m.d.comb += Assume(self.run.payload.items <= cfg.sub_batch)
            with m.If(~fsm.ongoing("IDLE")):
                m.d.comb += [Assert(qi <= items), Assert(ri <= items),
                             Assert(items <= cfg.sub_batch)]
            with m.If(self.tables != 0):
                m.d.comb += [Assert(qt < self.tables), Assert(rt < self.tables)]
            with m.If(self.dw != 0):
                m.d.comb += Assert(rw < self.dw)
            # a score is taken only for a started run (the FIFO never underflows)
            with m.If(self.eng_out.valid & self.eng_out.ready):
                m.d.comb += Assert(started.r_stream.valid)
        return m


class StageTop(wiring.Component):
    """One stage end to end: `ComputeEngine` (the stage on partition ``slot``),
    `EmbeddingUnit` or `rpaccel.hw.emb_cluster.EmbeddingCluster` (AXI4 to DRAM),
    `StageController`, `TopK`.

    Members
    -------
    mode : In
    eload, mload : In(stream)
        Model load of the engine (program, weights) and of the embedding unit.
    query, run : In(stream)
    dense_words, tables, dw, fpack : In
    result : Out(stream)
        The top-k unit's survivors ``{id, score, last}``, best first, per query.
    axi : Out(AXI4 read)
    """

    def __init__(self, config: RPAccelConfig, slot: int = 0):
        require(config.axi_ports == 1, "axi_ports", "1 in a StageTop (one AXI4 read port)",
                config.axi_ports)
        self.config = config
        self.slot = slot
        ce = ComputeEngine(config)
        emb = make_embedding(config)
        ctl = StageController(config, slot)
        _, tk_out = topk_layouts(config)
        self._parts = (ce, emb, ctl)
        super().__init__({
            "mode": In(ce.signature.members["mode"].shape),
            "eload": In(ce.signature.members[f"load_{slot}"].signature.flip()),
            "mload": In(emb.signature.members["load"].signature.flip()),
            "query": In(stream.Signature(ctl.query_layout)),
            "run": In(stream.Signature(ctl.run_layout)),
            "dense_words": In(ctl.signature.members["dense_words"].shape),
            "tables": In(ctl.signature.members["tables"].shape),
            "dw": In(ctl.signature.members["dw"].shape),
            "fpack": In(ctl.signature.members["fpack"].shape),
            "result": Out(stream.Signature(tk_out)),
            "axi": Out(emb.signature.members["axi"].signature),
            "emb_errors": Out(16),
            "cycles": Out(48), "macs": Out(48), "lookups": Out(48), "misses": Out(48),
        })

    def elaborate(self, platform):
        m = Module()
        ce, emb, ctl = self._parts
        p = self.slot
        m.submodules.compute = ce
        m.submodules.embedding = emb
        m.submodules.controller = ctl
        m.submodules.topk = tk = make_topk(self.config)
        # the one-stage top has no per-query error output: the report is taken and dropped
        m.d.comb += ctl.qerr.ready.eq(1)
        m.d.comb += [ce.mode.eq(self.mode), ctl.dense_words.eq(self.dense_words),
                     ctl.tables.eq(self.tables), ctl.dw.eq(self.dw),
                     ctl.fpack.eq(self.fpack),
                     self.emb_errors.eq(ctl.emb_errors), self.cycles.eq(getattr(ce, f"cycles_{p}")),
                     self.macs.eq(getattr(ce, f"macs_{p}")), self.lookups.eq(emb.lookups),
                     self.misses.eq(emb.misses)]
        eload = getattr(ce, f"load_{p}")
        # engine load: the host (model load, while no query runs) or the controller
        with m.If(self.eload.valid):
            m.d.comb += [eload.valid.eq(1), eload.payload.eq(self.eload.payload),
                         self.eload.ready.eq(eload.ready)]
        with m.Else():
            m.d.comb += [eload.valid.eq(ctl.eng_load.valid), eload.payload.eq(ctl.eng_load.payload),
                         ctl.eng_load.ready.eq(eload.ready)]
        wiring.connect(m, wiring.flipped(self.mload), emb.load)
        wiring.connect(m, wiring.flipped(self.query), ctl.query)
        wiring.connect(m, wiring.flipped(self.run), ctl.run)
        wiring.connect(m, ctl.eng_run, getattr(ce, f"run_{p}"))
        # results, lookups, pooled vectors and scores through register slices, as in the
        # top level
        register_slice(m, "result_slice", getattr(ce, f"out_{p}"), ctl.eng_out)
        register_slice(m, "lookup_slice", ctl.emb_req, emb.req)
        register_slice(m, "pooled_slice", emb.resp, ctl.emb_resp)
        if self.config.emb_units > 1:
            m.d.comb += [emb.tables.eq(self.tables), emb.fpack.eq(self.fpack)]
        register_slice(m, "score_slice", ctl.topk, tk.i)
        wiring.connect(m, tk.o, wiring.flipped(self.result))
        wiring.connect(m, emb.axi, wiring.flipped(self.axi))
        m.d.comb += emb.err_clear.eq(0)
        return m
