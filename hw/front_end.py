"""Query front end of the RPAccel top level.

It takes a query's header (``head``, the candidate count in ``id``), then cuts the
candidates into sub-batches of ``sub_batch`` for stage 0: a ``run`` per sub-batch, then
the sub-batch's beats (stage 0's dense words and every sparse id). With later stages it
also keeps every candidate's later-stage beats (their dense words and the sparse ids)
in the candidate buffer, one slot per query in flight, and each candidate's beat count,
for the replay units (`rpaccel.hw.replay`).

Bad input loses nothing: a header with more than ``max_items`` candidates is refused
(``err`` = ``CAND_COUNT``) and its beats are consumed up to the next header; a candidate
with more than ``cand_beats`` buffered beats keeps its bags well formed (ids inside bags
are dropped, never a bag's last id), the query is answered flagged (``bad``) and ``err``
says ``CAND_BEATS``. The beat flag ``end`` (the AXI4-Stream port's ``tlast``) frames a
query: a stream that ends early (``end`` before the query's last beat, or a header
inside the query) has the rest of its query made up here (every missing bag gets id 0,
dense words stay unwritten), answered flagged, ``err`` = ``FRAMING``; a query whose last
beat lacks ``end`` is answered as usual, ``err`` = ``FRAMING``, and the beats that follow
it up to the next header are dropped.
"""

from amaranth import Cat, Module, Mux, Signal
from amaranth.hdl import Assert
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import RPAccelConfig
from ..interface import ErrCause, copy_ids, id_lanes, query_slots, top_layouts
from .stage import stage_layouts

__all__ = ["QueryFrontEnd", "Cat_", "offer_run"]


def Cat_(*parts):
    """``Cat`` that drops zero-width parts (a single query slot has no slot bits)."""
    return Cat(*[p for p in parts if len(p)])


def offer_run(m, run, left, base, k, sub_batch: int):
    """Offer a stage controller's ``run`` beat for the next sub-batch of a query with
    ``left`` items to go from position ``base``; returns the sub-batch's item count."""
    items = Mux(left > sub_batch, sub_batch, left)
    r = run.payload
    m.d.comb += [run.valid.eq(1), r.items.eq(items), r.base.eq(base), r.k.eq(k),
                 r.last.eq(left <= sub_batch)]
    return items


class QueryFrontEnd(wiring.Component):
    """Headers, sub-batches and the candidate buffer's writes (module docstring).

    Parameters
    ----------
    config : RPAccelConfig

    Members
    -------
    query : In(stream of ``top_layouts()[0]``)
        The top level's query stream.
    accept : In(1)
        Room for another query (the in-flight limit, no model load running).
    run, beats : Out(stream of `rpaccel.hw.stage.stage_layouts` run / query)
        Stage 0's controller: a run per sub-batch, then its beats.
    k, tables : In(32)
        Stage 0's ``K`` and ``TABLES`` registers.
    admitted : Out(1)
        One cycle: a query's last candidate entered (it is in flight from now on).
    bad : Out(1)
        With ``admitted``: the query lost buffered beats (its answer is flagged).
    err : Out(4), err_clear : In(1)
        The last front-end error (`rpaccel.interface.ErrCause`), cleared by ``err_clear``.
    idle : Out(1)
        Waiting for a header.
    cb_addr, cb_data, cb_en, cl_addr, cl_data, cl_en : Out
        With later stages only: writes of the candidate buffer (a beat at ``{slot,
        candidate, beat}``) and of the candidates' beat counts (at ``{slot, candidate}``).
    """

    def __init__(self, config: RPAccelConfig):
        cfg = config
        self.config = cfg
        self.slots = query_slots(cfg)
        self.query_layout = top_layouts(cfg)[0]
        s_query, s_run = stage_layouts(cfg)
        members = {
            "query": In(stream.Signature(self.query_layout)),
            "accept": In(1),
            "run": Out(stream.Signature(s_run)), "beats": Out(stream.Signature(s_query)),
            "k": In(32), "tables": In(32),
            "admitted": Out(1), "bad": Out(1),
            "err": Out(4), "err_clear": In(1), "idle": Out(1),
        }
        if cfg.stages > 1:
            item_bits = exact_log2(cfg.max_items)
            slot_bits = exact_log2(self.slots)
            beat_bits = exact_log2(cfg.cand_beats)
            members.update({
                "cb_addr": Out(slot_bits + item_bits + beat_bits),
                "cb_data": Out(self.query_layout), "cb_en": Out(1),
                "cl_addr": Out(slot_bits + item_bits),
                "cl_data": Out(range(cfg.cand_beats + 1)), "cl_en": Out(1),
            })
        super().__init__(members)

    def elaborate(self, platform):  # noqa: C901 (one FSM, read top to bottom)
        m = Module()
        cfg = self.config
        S, NS = cfg.sub_batch, cfg.stages
        slot_bits = exact_log2(self.slots)
        item_bits = exact_log2(cfg.max_items)
        beat_bits = exact_log2(cfg.cand_beats)
        qi = self.query.payload
        n_items = Signal(range(cfg.max_items + 1))
        cand = Signal(range(cfg.max_items + 1))
        sub_end = Signal(range(cfg.max_items + 1))
        bi = Signal(range(cfg.cand_beats + 1))
        wslot = Signal(max(1, slot_bits))
        qbad = Signal()      # this query lost buffered beats: its answer is flagged
        overflow = Signal()
        # the query's stream ended early (`end` before its last beat, or a header inside
        # it): the rest of the query is made up here, one id 0 per missing bag, so every
        # stage sees whole candidates and the next query starts clean
        padding = Signal()
        pad = Signal(self.query_layout)
        q = Signal(self.query_layout)
        qvalid = Signal()
        m.d.comb += [q.eq(Mux(padding, pad, qi)), qvalid.eq(padding | self.query.valid)]
        to_s0 = Signal()
        m.d.comb += [to_s0.eq(~q.dense | (q.stage == 0)), self.bad.eq(qbad | overflow)]
        sq = self.beats.payload
        m.d.comb += [sq.dense.eq(q.dense), sq.word.eq(q.word), *copy_ids(cfg, sq, q)]
        # bags lane g has ended in this candidate (one unit: every bag): its next bag is
        # table g + G * n, and the candidate's bags so far are their sum
        G = cfg.emb_units
        lane_bags = [Signal(range(cfg.emb_tables + 1), name=f"lane_bags{g}")
                     for g in range(G)]
        tabs = [g + G * n for g, n in enumerate(lane_bags)]
        bag = Signal(range(cfg.emb_tables + 1))
        m.d.comb += [bag.eq(sum(lane_bags)), pad.table.eq(tabs[0]), pad.last.eq(1)]
        # bags a sparse beat ends (one per kept lane with `last`)
        if G == 1:
            ends, any_end = q.last, q.last
        else:
            ends = Signal(range(G + 1))
            any_end = Signal()
            m.d.comb += [ends.eq(sum(k & la for k, _, _, la in id_lanes(cfg, q))),
                         any_end.eq(ends != 0),
                         pad.keep.eq(Cat(*[t < self.tables for t in tabs])),
                         *[pad.xtable[g - 1].eq(tabs[g]) for g in range(1, G)],
                         *[pad.xlast[g - 1].eq(1) for g in range(1, G)]]
        with m.FSM(name="front") as front:
            with m.State("HEAD"):
                m.d.comb += self.query.ready.eq(self.accept)
                with m.If(self.query.valid & self.query.ready & qi.head & (qi.id != 0)):
                    big = qi.id > cfg.max_items
                    m.d.sync += [n_items.eq(Mux(big, 0, qi.id)), cand.eq(0), bi.eq(0),
                                 sub_end.eq(0), qbad.eq(0), padding.eq(0),
                                 *[n.eq(0) for n in lane_bags]]
                    with m.If(big):
                        m.d.sync += self.err.eq(ErrCause.CAND_COUNT)
                        m.next = "DROP"
                    with m.Else():
                        with m.If(qi.end):
                            m.d.sync += [padding.eq(1), qbad.eq(1),
                                         self.err.eq(ErrCause.FRAMING)]
                        m.next = "RUN"
            with m.State("DROP"):
                # consume the beats of a refused query up to its next header
                m.d.comb += self.query.ready.eq(~qi.head)
                with m.If(self.query.valid & qi.head):
                    m.next = "HEAD"
            with m.State("RUN"):
                items = offer_run(m, self.run, n_items - cand, cand, self.k, S)
                with m.If(self.run.ready):
                    m.d.sync += sub_end.eq(cand + items)
                    m.next = "BEATS"
            with m.State("BEATS"):
                go = Signal()
                m.d.comb += [self.beats.valid.eq(qvalid & to_s0 & ~q.head),
                             self.query.ready.eq(~padding & Mux(to_s0, self.beats.ready, 1) &
                                                 ~q.head),
                             go.eq(qvalid & Mux(to_s0, self.beats.ready, 1) & ~q.head)]
                stored = Signal()
                if NS > 1:
                    # a candidate longer than cand_beats loses ids inside its bags, never a
                    # bag's last id: room is kept for the ends of the bags still to come,
                    # so the replayed candidate stays well formed (and the query flagged)
                    keep = Signal()
                    tables_left = self.tables - bag
                    m.d.comb += [keep.eq(~(q.dense & (q.stage == 0)) & (bi < cfg.cand_beats) &
                                         (q.dense | any_end |
                                          (bi + tables_left < cfg.cand_beats))),
                                 stored.eq(go & keep),
                                 overflow.eq(go & ~(q.dense & (q.stage == 0)) & ~keep),
                                 self.cb_addr.eq(Cat_(bi[:beat_bits], cand[:item_bits],
                                                      wslot[:slot_bits])),
                                 self.cb_data.eq(q), self.cb_en.eq(stored)]
                    with m.If(overflow):
                        m.d.sync += [self.err.eq(ErrCause.CAND_BEATS), qbad.eq(1)]
                with m.If(stored):
                    m.d.sync += bi.eq(bi + 1)
                cand_done = Signal()
                m.d.comb += cand_done.eq(go & ~q.dense & any_end &
                                         (bag + ends >= self.tables if G > 1
                                          else bag == self.tables - 1))
                with m.If(go & ~q.dense):
                    for n, (k, _, _, la) in zip(lane_bags, id_lanes(cfg, q), strict=True):
                        m.d.sync += n.eq(n + (k & la))
                # the stream ends before the query does: a header inside it, or `end`
                with m.If(~padding & ((self.query.valid & qi.head) |
                                      (go & q.end & ~(cand_done & (cand + 1 == n_items))))):
                    m.d.sync += [padding.eq(1), qbad.eq(1), self.err.eq(ErrCause.FRAMING)]
                with m.If(cand_done):
                    m.d.sync += [bi.eq(0), cand.eq(cand + 1),
                                 *[n.eq(0) for n in lane_bags]]
                    if NS > 1:
                        m.d.comb += [self.cl_addr.eq(Cat_(cand[:item_bits],
                                                          wslot[:slot_bits])),
                                     self.cl_data.eq(bi + stored), self.cl_en.eq(1)]
                    with m.If(cand + 1 == n_items):
                        m.d.comb += self.admitted.eq(1)
                        m.d.sync += [wslot.eq(wslot + 1), padding.eq(0)]
                        # the query is whole but its stream goes on: the beats up to the
                        # next header are dropped (HEAD takes headers only); the answer
                        # is right, ERR_CAUSE says FRAMING
                        with m.If(~padding & ~q.end):
                            m.d.sync += self.err.eq(ErrCause.FRAMING)
                        m.next = "HEAD"
                    with m.Elif(cand + 1 == sub_end):
                        m.next = "RUN"
        m.d.comb += self.idle.eq(front.ongoing("HEAD"))
        if platform == "formal":
            # counters stay within the query, the sub-batch and the candidate's buffer
            with m.If(front.ongoing("RUN") | front.ongoing("BEATS")):
                m.d.comb += [Assert(cand < n_items), Assert(n_items <= cfg.max_items),
                             Assert(bi <= cfg.cand_beats)]
            with m.If(front.ongoing("BEATS")):
                m.d.comb += [Assert(cand < sub_end), Assert(sub_end <= n_items)]
            with m.If(self.tables != 0):
                m.d.comb += Assert(bag < self.tables)
        with m.If(self.err_clear):
            m.d.sync += self.err.eq(0)
        return m
