"""Replay unit of the RPAccel top level (one per stage after the first) and its id map.

The unit collects the previous stage's survivors (its top-k unit's output, best first,
``last`` on the query's last) into the id map of the query's slot, then replays each
survivor's buffered beats from the candidate buffer (`rpaccel.hw.front_end`) as this
stage's query, in sub-batches of ``sub_batch``: a ``run`` per sub-batch, then its
candidates' beats (this stage's dense words and every sparse id; other stages' dense
words are skipped). A stage's items are numbered in replay order; on the way into the
stage's top-k unit the id map turns that local index back into the candidate's original
position, so that ties break exactly as in the golden pipeline.
"""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.hdl import Assert, Assume
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import RPAccelConfig
from ..interface import copy_ids, query_slots, top_layouts
from .front_end import Cat_, offer_run
from .stage import stage_layouts
from .topk import topk_layouts

__all__ = ["ReplayUnit"]


class ReplayUnit(wiring.Component):
    """Survivors of stage ``stage - 1`` replayed as stage ``stage``'s query (module
    docstring).

    Parameters
    ----------
    config : RPAccelConfig
    stage : int
        The stage it feeds (1 .. stages - 1).

    Members
    -------
    src : In(stream of the top-k output layout)
        The previous stage's survivors.
    run, beats : Out(stream of `rpaccel.hw.stage.stage_layouts` run / query)
        This stage's controller.
    k : In(32)
        This stage's ``K`` register.
    cb_addr, cb_en : Out, cb_data : In(query layout)
        Read port of the candidate buffer (synchronous: data the cycle after ``cb_en``).
    cl_addr : Out, cl_data : In(range(cand_beats + 1))
        Combinational read of the candidates' beat counts.
    scores : In(stream of the top-k input layout)
        This stage's scores with local item indices (from its controller) ...
    topk : Out(stream of the top-k input layout)
        ... and with the candidates' original positions, into its top-k unit.
    """

    def __init__(self, config: RPAccelConfig, stage: int):
        cfg = config
        self.config = cfg
        self.stage = stage
        self.slots = query_slots(cfg)
        ql = top_layouts(cfg)[0]
        s_query, s_run = stage_layouts(cfg)
        tk_in, tk_out = topk_layouts(cfg)
        item_bits = exact_log2(cfg.max_items)
        slot_bits = exact_log2(self.slots)
        beat_bits = exact_log2(cfg.cand_beats)
        super().__init__({
            "src": In(stream.Signature(tk_out)),
            "run": Out(stream.Signature(s_run)), "beats": Out(stream.Signature(s_query)),
            "k": In(32),
            "cb_addr": Out(slot_bits + item_bits + beat_bits), "cb_en": Out(1),
            "cb_data": In(ql),
            "cl_addr": Out(slot_bits + item_bits), "cl_data": In(range(cfg.cand_beats + 1)),
            "scores": In(stream.Signature(tk_in)), "topk": Out(stream.Signature(tk_in)),
        })

    def elaborate(self, platform):  # noqa: C901 (one FSM, read top to bottom)
        m = Module()
        cfg, st = self.config, self.stage
        S = cfg.sub_batch
        slot_bits = exact_log2(self.slots)
        item_bits = exact_log2(cfg.max_items)
        beat_bits = exact_log2(cfg.cand_beats)
        k_bits = exact_log2(1 << ceil_log2(cfg.topk_k))
        src = self.src
        m.submodules.idmap = idm = Memory(shape=unsigned(cfg.topk_id_bits),
                                          depth=self.slots << k_bits, init=[])
        idw = idm.write_port()
        id_rd = idm.read_port(domain="comb")
        id_tr = idm.read_port(domain="comb")
        rslot = Signal(max(1, slot_bits))
        cnt = Signal(range(cfg.topk_k + 1))   # survivors of the query
        j = Signal(range(cfg.topk_k + 1))     # survivor being collected / replayed
        jend = Signal(range(cfg.topk_k + 1))  # end of the sub-batch being replayed
        b = Signal(range(cfg.cand_beats + 1))
        pend = Signal()                       # cb_data holds a beat to offer
        c_id = Signal(cfg.topk_id_bits)
        m.d.comb += [id_rd.addr.eq(Cat_(j[:k_bits], rslot[:slot_bits])),
                     c_id.eq(id_rd.data),
                     self.cl_addr.eq(Cat_(c_id[:item_bits], rslot[:slot_bits])),
                     self.cb_addr.eq(Cat_(b[:beat_bits], c_id[:item_bits],
                                          rslot[:slot_bits]))]
        rb = self.cb_data
        want = Signal()
        m.d.comb += want.eq(~rb.dense | (rb.stage == st))
        cq = self.beats.payload
        m.d.comb += [cq.dense.eq(rb.dense), cq.word.eq(rb.word), *copy_ids(cfg, cq, rb),
                     self.beats.valid.eq(pend & want)]
        advance = Signal()
        m.d.comb += [advance.eq(~pend | ~want | self.beats.ready), self.cb_en.eq(advance)]
        with m.FSM(name="replay") as fsm:
            with m.State("COLLECT"):
                m.d.comb += [src.ready.eq(1),
                             idw.addr.eq(Cat_(j[:k_bits], rslot[:slot_bits])),
                             idw.data.eq(src.payload.id), idw.en.eq(src.valid)]
                with m.If(src.valid):
                    m.d.sync += j.eq(j + 1)
                    with m.If(src.payload.last):
                        m.d.sync += [cnt.eq(j + 1), j.eq(0)]
                        m.next = "RUN"
            with m.State("RUN"):
                items = offer_run(m, self.run, cnt - j, j, self.k, S)
                with m.If(self.run.ready):
                    m.d.sync += [jend.eq(j + items), b.eq(0)]
                    m.next = "BEATS"
            with m.State("BEATS"):
                issue = Signal()
                m.d.comb += issue.eq(j != jend)
                with m.If(advance):
                    m.d.sync += pend.eq(issue)
                    with m.If(issue):
                        m.d.sync += b.eq(b + 1)
                        with m.If(b + 1 >= self.cl_data):
                            m.d.sync += [b.eq(0), j.eq(j + 1)]
                    with m.Else():
                        with m.If(jend == cnt):
                            m.d.sync += [j.eq(0), rslot.eq(rslot + 1)]
                            m.next = "COLLECT"
                        with m.Else():
                            m.next = "RUN"
        # id map: the stage's local item index -> the candidate's original position
        tslot = Signal(max(1, slot_bits))
        ti, to = self.scores.payload, self.topk.payload
        m.d.comb += [id_tr.addr.eq(Cat_(ti.lanes[0].id[:k_bits], tslot[:slot_bits])),
                     to.eq(ti), to.lanes[0].id.eq(id_tr.data),
                     self.topk.valid.eq(self.scores.valid),
                     self.scores.ready.eq(self.topk.ready)]
        with m.If(self.scores.valid & self.scores.ready & ti.last):
            m.d.sync += tslot.eq(tslot + 1)
        if platform == "formal":
            # the contract of src: at most topk_k survivors a query; of the top level: a
            # query is collected into the slot of the next one to be scored only when all
            # earlier ones are scored (at most max(2, slots) queries in flight), and
            # scores come only for replayed items
            with m.If(fsm.ongoing("COLLECT") & src.valid):
                m.d.comb += Assume(src.payload.last | (j + 1 < cfg.topk_k))
            with m.If(fsm.ongoing("COLLECT") & (rslot == tslot)):
                m.d.comb += Assume(~self.scores.valid)
            # no beat is pending outside the replay, and survivors stay within k
            m.d.comb += [Assert(fsm.ongoing("BEATS") | ~pend), Assert(cnt <= cfg.topk_k),
                         Assert(Mux(fsm.ongoing("COLLECT"), j < cfg.topk_k, j <= cnt)),
                         Assert(~fsm.ongoing("BEATS") | ((j <= jend) & (jend <= cnt)))]
        return m
