"""The RPAccel top level: a query goes in, its candidates flow through 1 to 3 stages, each
on its own array partition with its own embedding unit and top-k unit, and the last
stage's top-n comes out.

Blocks (see ``docs/architecture.md``):

* query front end: takes a query's header (candidate count), cuts the candidates into
  sub-batches of ``sub_batch`` for stage 0 and keeps every candidate's later-stage beats
  in the candidate buffer (one slot per query in flight).
* replay unit (one per stage after the first): collects the previous stage's survivors and
  replays their buffered beats as the next stage's query, in sub-batches.
* id map: the ids a stage's scores enter its top-k unit with are the candidates' original
  positions, so ties break exactly as in the golden pipeline.
* `AxiReadArbiter`: one AXI4 read port to DRAM for all embedding units.
* `CsrBank`: AXI4-Lite registers (model constants per stage, k, status, error, counters).

Query stream (one beat per cycle, AXI4-Stream handshake): a header beat ``head = 1`` with
the candidate count in ``id``; then per candidate the dense words of every stage
(``dense = 1``, ``stage`` = s, stage s's int8 dense features quantized with its own scale)
and the sparse ids (``dense = 0``: ``table``, ``id``, ``last`` on a bag's last id), tables
in order. Result stream: the survivors of the last stage, best first, ``{id, score, last,
error}``; ``error`` marks every beat of a query in which some id was out of range (its
bags pooled to zero), the query's answer is then not to be used.
"""

from amaranth import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import RPAccelConfig
from ..interface import (
    CSR,
    ERR_WHERE,
    ID_VALUE,
    LOAD_CTRL,
    SHAPE,
    STAGE_CSR,
    STATUS,
    ErrCause,
    LoadUnit,
    csr_regs,
    top_layouts,
)
from .embedding import EmbeddingUnit, axi4_read_signature
from .loader import ModelLoader
from .mlp_engine import ComputeEngine
from .stage import StageController
from .topk import make_topk

__all__ = ["RPAccel", "AxiReadArbiter", "CsrBank", "top_layouts", "axi4_lite_signature",
           "CSR", "STAGE_CSR", "query_slots", "csr_regs", "ErrCause", "LoadUnit"]


def query_slots(config: RPAccelConfig) -> int:
    """Queries in flight at once (candidate-buffer slots): one per stage, a power of two,
    at least two so that stage 0 takes query q + 1 while a later stage runs query q."""
    return 1 if config.stages == 1 else 1 << ceil_log2(config.stages)


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
    """AXI4-Lite registers: ``rw`` registers are outputs, ``ro`` registers inputs.

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
                    m.d.sync += [b.rdata.eq(getattr(self, name)), b.rresp.eq(0)]
        return m


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


class RPAccel(wiring.Component):
    """The accelerator (see the module docstring for blocks and streams).

    Stage ``s`` runs on array partition ``s`` (the engine's mode is fixed at
    ``log2(partitions)``). Its model (program and weights for the engine; tables'
    descriptors, static-cache map and rows for the embedding unit) is loaded from DRAM by
    the model loader (``LOAD_*`` CSRs), or streamed in through ``eload_<s>`` /
    ``mload_<s>``, which take precedence. Model constants and ``k`` per stage are CSRs
    (``csr``, AXI4-Lite); embedding rows and load images are read from DRAM through
    ``axi`` (AXI4 read, ``arid = {manager, MSHR}``: manager s < stages is stage s's
    embedding unit, manager ``stages`` the loader).

    Members
    -------
    csr : In(AXI4-Lite)
    query : In(stream of ``top_layouts()[0]``)
    result : Out(stream of ``top_layouts()[1]``)
    axi : Out(AXI4 read)
    eload_<s>, mload_<s> : In(stream)
    """

    def __init__(self, config: RPAccelConfig):
        cfg = config
        self.config = cfg
        self.slots = query_slots(cfg)
        self.ce = ComputeEngine(cfg, engines=cfg.stages)
        self.embs = [EmbeddingUnit(cfg) for _ in range(cfg.stages)]
        self.ctls = [StageController(cfg, s) for s in range(cfg.stages)]
        self.query_layout, self.result_layout = top_layouts(cfg)
        self.regs = csr_regs(cfg)
        emb_id_bits = max(1, ceil_log2(cfg.mshrs))
        # managers 0 .. stages-1: the embedding units; manager `stages`: the model loader
        self.arb = AxiReadArbiter(cfg.stages + 1, cfg.axi_addr_bits, cfg.axi_data_bits,
                                  emb_id_bits)
        widths = []
        for st in range(cfg.stages):
            widths += [self.ce.signature.members[f"load_{st}"].signature.members[
                           "payload"].shape.size,
                       self.embs[st].signature.members["load"].signature.members[
                           "payload"].shape.size]
        self.loader = ModelLoader(cfg, widths, emb_id_bits)
        members = {
            "csr": In(axi4_lite_signature()),
            "query": In(stream.Signature(self.query_layout)),
            "result": Out(stream.Signature(self.result_layout)),
            "axi": Out(self.arb.signature.members["out"].signature),
        }
        for st in range(cfg.stages):
            members[f"eload_{st}"] = In(self.ce.signature.members[f"load_{st}"].signature.flip())
            members[f"mload_{st}"] = In(self.embs[st].signature.members["load"].signature.flip())
        super().__init__(members)

    def elaborate(self, platform):  # noqa: C901 (the top level, read top to bottom)
        m = Module()
        cfg = self.config
        S, NS, slots = cfg.sub_batch, cfg.stages, self.slots
        slot_bits = exact_log2(slots)
        item_bits = exact_log2(cfg.max_items)
        beat_bits = exact_log2(cfg.cand_beats)
        k_depth = 1 << ceil_log2(cfg.topk_k)
        k_bits = exact_log2(k_depth)
        ql = self.query_layout

        m.submodules.compute = ce = self.ce
        m.submodules.arbiter = arb = self.arb
        m.submodules.loader = dma = self.loader
        m.submodules.csr = csr = CsrBank(self.regs)
        wiring.connect(m, dma.axi, getattr(arb, f"m{NS}"))
        ctrl = data.View(LOAD_CTRL, csr.LOAD_CTRL_data[:LOAD_CTRL.size])
        load_stage, load_unit = ctrl.stage, ctrl.unit
        load_ok = Signal()
        m.d.comb += [dma.addr.eq(csr.LOAD_ADDR), dma.beats.eq(csr.LOAD_BEATS),
                     dma.target_in.eq(Cat(load_unit, load_stage)),
                     dma.start.eq(csr.LOAD_CTRL & load_ok)]
        wiring.connect(m, wiring.flipped(self.csr), csr.bus)
        wiring.connect(m, arb.out, wiring.flipped(self.axi))
        m.d.comb += ce.mode.eq(exact_log2(cfg.partitions))
        reg = {n: getattr(csr, n) for n in self.regs}

        tks = []
        for st in range(NS):
            emb, ctl = self.embs[st], self.ctls[st]
            m.submodules[f"embedding{st}"] = emb
            m.submodules[f"controller{st}"] = ctl
            m.submodules[f"topk{st}"] = tk = make_topk(cfg)
            tks.append(tk)
            m.d.comb += [ctl.dense_words.eq(reg[f"S{st}_DENSE_WORDS"]),
                         ctl.tables.eq(reg[f"S{st}_TABLES"]), ctl.dw.eq(reg[f"S{st}_DW"])]
            # load ports: host stream, else the loader, else (engine) the controller's
            # activation beats
            _load_mux(m, getattr(ce, f"load_{st}"), [
                (getattr(self, f"eload_{st}"), None),
                (dma.out, dma.target == 2 * st + LoadUnit.ENGINE), (ctl.eng_load, None)])
            _load_mux(m, emb.load, [
                (getattr(self, f"mload_{st}"), None),
                (dma.out, dma.target == 2 * st + LoadUnit.EMBEDDING)])
            wiring.connect(m, ctl.eng_run, getattr(ce, f"run_{st}"))
            wiring.connect(m, getattr(ce, f"out_{st}"), ctl.eng_out)
            wiring.connect(m, ctl.emb_req, emb.req)
            wiring.connect(m, emb.resp, ctl.emb_resp)
            wiring.connect(m, emb.axi, getattr(arb, f"m{st}"))

        # ---- status, error, counters ------------------------------------------------------
        # queries admitted and not yet answered; with one stage there is no candidate
        # buffer, two let the next query's gather overlap the current one's compute
        limit = max(2, slots)
        inflight = Signal(range(limit + 1))
        res = self.result
        res_done = Signal()
        m.d.comb += res_done.eq(res.valid & res.ready & res.payload.last)
        # a load overwrites what a running query uses: only when no query is in the machine
        front_idle = Signal()
        m.d.comb += load_ok.eq(~dma.busy & front_idle & (inflight == 0) &
                               (csr.LOAD_BEATS != 0) & (load_stage < NS))
        front_err = Signal(2)
        err_clear = Signal()
        m.d.comb += err_clear.eq(csr.CTRL & csr.CTRL_data[0])
        cause = Signal(3)
        where = Signal(16)
        err_id = Signal(32)
        with m.If(err_clear):
            m.d.sync += [cause.eq(0), where.eq(0), err_id.eq(0)]
        with m.Elif(cause == ErrCause.NONE):
            with m.If(front_err != 0):
                m.d.sync += cause.eq(front_err)
            with m.If(dma.bus_error):
                m.d.sync += cause.eq(ErrCause.LOAD_BUS)
            with m.If(csr.LOAD_CTRL & ~load_ok):
                m.d.sync += cause.eq(ErrCause.LOAD_REFUSED)
            for st in reversed(range(NS)):
                e = self.embs[st]
                at = Signal(ERR_WHERE, name=f"err_where{st}")
                m.d.comb += [at.stage.eq(st), at.table.eq(e.err_table)]
                with m.If(e.err_valid):
                    m.d.sync += [cause.eq(ErrCause.ID_RANGE), where.eq(at.as_value()),
                                 err_id.eq(e.err_id)]
        queries = Signal(32)
        cycles = Signal(32)
        busy_cycles = Signal(32)
        m.d.sync += cycles.eq(cycles + 1)
        with m.If(inflight != 0):
            m.d.sync += busy_cycles.eq(busy_cycles + 1)
        with m.If(res_done):
            m.d.sync += queries.eq(queries + 1)
        status = Signal(STATUS)
        m.d.comb += [status.busy.eq(inflight != 0), status.error.eq(cause != 0),
                     status.inflight.eq(inflight)]
        m.d.comb += [csr.ID.eq(ID_VALUE),
                     csr.SHAPE.eq(SHAPE.const({"stages": NS, "partitions": cfg.partitions,
                                               "rows": cfg.array_rows,
                                               "cols": cfg.array_cols}).as_value()),
                     csr.STATUS.eq(status.as_value()),
                     csr.ERR_CAUSE.eq(cause), csr.ERR_WHERE.eq(where), csr.ERR_ID.eq(err_id),
                     csr.QUERIES.eq(queries), csr.CYCLES.eq(cycles),
                     csr.BUSY_CYCLES.eq(busy_cycles), csr.LOAD_STATUS.eq(dma.busy),
                     csr.LOAD_DONE.eq(dma.done)]
        for st in range(NS):
            e, tk = self.embs[st], tks[st]
            m.d.comb += e.err_clear.eq(err_clear)
            items, macs, ecyc = Signal(32), Signal(32), Signal(32)
            was_busy = Signal()
            busy = getattr(ce, f"busy_{st}")
            m.d.sync += was_busy.eq(busy)
            with m.If(busy):
                m.d.sync += ecyc.eq(ecyc + 1)
            with m.If(was_busy & ~busy):  # the engine's counters are per run: add them up
                m.d.sync += macs.eq(macs + getattr(ce, f"macs_{st}"))
            with m.If(tk.i.valid & tk.i.ready):
                m.d.sync += items.eq(items + tk.i.payload.lanes[0].valid)
            m.d.comb += [getattr(csr, f"S{st}_ITEMS").eq(items),
                         getattr(csr, f"S{st}_LOOKUPS").eq(e.lookups),
                         getattr(csr, f"S{st}_MISSES").eq(e.misses),
                         getattr(csr, f"S{st}_MACS").eq(macs),
                         getattr(csr, f"S{st}_ENGINE_CYCLES").eq(ecyc),
                         getattr(csr, f"S{st}_EMB_ERRORS").eq(self.ctls[st].emb_errors),
                         getattr(csr, f"S{st}_DRAM_BYTES").eq(e.dram_bytes)]

        # ---- candidate buffer: later-stage beats of every candidate, one slot per query ----
        if NS > 1:
            m.submodules.cbuf = cbuf = Memory(shape=ql, depth=slots << (item_bits + beat_bits),
                                              init=[])
            m.submodules.clen = clen = Memory(shape=range(cfg.cand_beats + 1),
                                              depth=slots << item_bits, init=[])
            cb_w, cl_w = cbuf.write_port(), clen.write_port()

        # ---- query front end ----------------------------------------------------------------
        q = self.query.payload
        c0 = self.ctls[0]
        n_items = Signal(range(cfg.max_items + 1))
        cand = Signal(range(cfg.max_items + 1))
        sub_end = Signal(range(cfg.max_items + 1))
        bag = Signal(range(cfg.emb_tables + 1))
        bi = Signal(range(cfg.cand_beats + 1))
        wslot = Signal(max(1, slot_bits))
        admitted = Signal()  # a query's last candidate entered: it counts as in flight
        qbad = Signal()      # this query lost buffered beats: its answer is flagged
        overflow = Signal()
        to_s0 = Signal()
        m.d.comb += to_s0.eq(~q.dense | (q.stage == 0))
        sq = c0.query.payload
        m.d.comb += [sq.dense.eq(q.dense), sq.word.eq(q.word), sq.table.eq(q.table),
                     sq.id.eq(q.id), sq.last.eq(q.last)]
        with m.FSM(name="front") as front:
            with m.State("HEAD"):
                m.d.comb += self.query.ready.eq((inflight < limit) & ~dma.busy)
                with m.If(self.query.valid & self.query.ready & q.head & (q.id != 0)):
                    big = q.id > cfg.max_items
                    m.d.sync += [n_items.eq(Mux(big, 0, q.id)), cand.eq(0), bag.eq(0),
                                 bi.eq(0), sub_end.eq(0), qbad.eq(0)]
                    with m.If(big):
                        m.d.sync += front_err.eq(ErrCause.CAND_COUNT)
                        m.next = "DROP"
                    with m.Else():
                        m.next = "RUN"
            with m.State("DROP"):
                # consume the beats of a refused query up to its next header
                m.d.comb += self.query.ready.eq(~q.head)
                with m.If(self.query.valid & q.head):
                    m.next = "HEAD"
            with m.State("RUN"):
                r = c0.run.payload
                left = n_items - cand
                m.d.comb += [c0.run.valid.eq(1), r.items.eq(Mux(left > S, S, left)),
                             r.base.eq(cand), r.k.eq(reg["S0_K"]), r.last.eq(left <= S)]
                with m.If(c0.run.ready):
                    m.d.sync += sub_end.eq(cand + Mux(left > S, S, left))
                    m.next = "BEATS"
            with m.State("BEATS"):
                go = Signal()
                m.d.comb += [c0.query.valid.eq(self.query.valid & to_s0 & ~q.head),
                             self.query.ready.eq(Mux(to_s0, c0.query.ready, 1) & ~q.head),
                             go.eq(self.query.valid & self.query.ready)]
                stored = Signal()
                if NS > 1:
                    # a candidate longer than cand_beats loses ids inside its bags, never a
                    # bag's last id: room is kept for the ends of the bags still to come,
                    # so the replayed candidate stays well formed (and the query flagged)
                    keep = Signal()
                    tables_left = reg["S0_TABLES"] - bag
                    m.d.comb += [keep.eq(~(q.dense & (q.stage == 0)) & (bi < cfg.cand_beats) &
                                         (q.dense | q.last |
                                          (bi + tables_left < cfg.cand_beats))),
                                 stored.eq(go & keep),
                                 overflow.eq(go & ~(q.dense & (q.stage == 0)) & ~keep),
                                 cb_w.addr.eq(Cat_(bi[:beat_bits], cand[:item_bits],
                                                   wslot[:slot_bits])),
                                 cb_w.data.eq(q), cb_w.en.eq(stored)]
                    with m.If(overflow):
                        m.d.sync += [front_err.eq(ErrCause.CAND_BEATS), qbad.eq(1)]
                with m.If(stored):
                    m.d.sync += bi.eq(bi + 1)
                with m.If(go & ~q.dense & q.last):
                    m.d.sync += bag.eq(bag + 1)
                    with m.If(bag == reg["S0_TABLES"] - 1):
                        m.d.sync += [bag.eq(0), bi.eq(0), cand.eq(cand + 1)]
                        if NS > 1:
                            m.d.comb += [cl_w.addr.eq(Cat_(cand[:item_bits],
                                                           wslot[:slot_bits])),
                                         cl_w.data.eq(bi + stored), cl_w.en.eq(1)]
                        with m.If(cand + 1 == n_items):
                            m.d.comb += admitted.eq(1)
                            m.d.sync += wslot.eq(wslot + 1)
                            m.next = "HEAD"
                        with m.Elif(cand + 1 == sub_end):
                            m.next = "RUN"
        m.d.sync += inflight.eq(inflight + admitted - res_done)
        m.d.comb += front_idle.eq(front.ongoing("HEAD"))
        with m.If(err_clear):
            m.d.sync += front_err.eq(0)

        # ---- replay units and id maps --------------------------------------------------------
        srcs = [tks[0].o]
        for st in range(1, NS):
            src = srcs[-1]
            ctl = self.ctls[st]
            idm = Memory(shape=unsigned(cfg.topk_id_bits), depth=slots << k_bits, init=[])
            m.submodules[f"idmap{st}"] = idm
            idw = idm.write_port()
            id_rd = idm.read_port(domain="comb")
            id_tr = idm.read_port(domain="comb")
            len_rd = clen.read_port(domain="comb")
            cb_r = cbuf.read_port()
            rslot = Signal(max(1, slot_bits), name=f"rslot{st}")
            cnt = Signal(range(cfg.topk_k + 1), name=f"cnt{st}")
            j = Signal(range(cfg.topk_k + 1), name=f"j{st}")
            jend = Signal(range(cfg.topk_k + 1), name=f"jend{st}")
            b = Signal(range(cfg.cand_beats + 1), name=f"b{st}")
            pend = Signal(name=f"pend{st}")
            c_id = Signal(cfg.topk_id_bits, name=f"cid{st}")
            m.d.comb += [id_rd.addr.eq(Cat_(j[:k_bits], rslot[:slot_bits])),
                         c_id.eq(id_rd.data),
                         len_rd.addr.eq(Cat_(c_id[:item_bits], rslot[:slot_bits])),
                         cb_r.addr.eq(Cat_(b[:beat_bits], c_id[:item_bits],
                                           rslot[:slot_bits]))]
            rb = cb_r.data
            want = Signal(name=f"want{st}")
            m.d.comb += want.eq(~rb.dense | (rb.stage == st))
            cq = ctl.query.payload
            m.d.comb += [cq.dense.eq(rb.dense), cq.word.eq(rb.word), cq.table.eq(rb.table),
                         cq.id.eq(rb.id), cq.last.eq(rb.last),
                         ctl.query.valid.eq(pend & want)]
            advance = Signal(name=f"advance{st}")
            m.d.comb += [advance.eq(~pend | ~want | ctl.query.ready), cb_r.en.eq(advance)]
            with m.FSM(name=f"replay{st}"):
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
                    r = ctl.run.payload
                    left = cnt - j
                    m.d.comb += [ctl.run.valid.eq(1), r.items.eq(Mux(left > S, S, left)),
                                 r.base.eq(j), r.k.eq(reg[f"S{st}_K"]), r.last.eq(left <= S)]
                    with m.If(ctl.run.ready):
                        m.d.sync += [jend.eq(j + Mux(left > S, S, left)), b.eq(0)]
                        m.next = "BEATS"
                with m.State("BEATS"):
                    issue = Signal(name=f"issue{st}")
                    m.d.comb += issue.eq(j != jend)
                    with m.If(advance):
                        m.d.sync += pend.eq(issue)
                        with m.If(issue):
                            m.d.sync += b.eq(b + 1)
                            with m.If(b + 1 >= len_rd.data):
                                m.d.sync += [b.eq(0), j.eq(j + 1)]
                        with m.Else():
                            with m.If(jend == cnt):
                                m.d.sync += [j.eq(0), rslot.eq(rslot + 1)]
                                m.next = "COLLECT"
                            with m.Else():
                                m.next = "RUN"
            # id map: the stage's local item index -> the candidate's original position
            tslot = Signal(max(1, slot_bits), name=f"tslot{st}")
            ti, to = ctl.topk.payload, tks[st].i.payload
            m.d.comb += [id_tr.addr.eq(Cat_(ti.lanes[0].id[:k_bits], tslot[:slot_bits])),
                         to.eq(ti), to.lanes[0].id.eq(id_tr.data),
                         tks[st].i.valid.eq(ctl.topk.valid), ctl.topk.ready.eq(tks[st].i.ready)]
            with m.If(ctl.topk.valid & ctl.topk.ready & ti.last):
                m.d.sync += tslot.eq(tslot + 1)
            srcs.append(tks[st].o)
        wiring.connect(m, self.ctls[0].topk, tks[0].i)

        # ---- result: the last stage's survivors, flagged when any stage saw a bad id -------
        last = srcs[-1]
        errs = []
        if NS > 1:
            f = fifo.SyncFIFO(width=1, depth=limit)
            m.submodules.qerr_front = f
            m.d.comb += [f.w_en.eq(admitted), f.w_data.eq(qbad | overflow),
                         f.r_en.eq(res_done)]
            errs.append(f.r_data & f.r_rdy)
        for st in range(NS):
            f = fifo.SyncFIFO(width=1, depth=max(2, slots))
            m.submodules[f"qerr{st}"] = f
            ctl = self.ctls[st]
            m.d.comb += [f.w_en.eq(ctl.qerr_valid), f.w_data.eq(ctl.qerr),
                         f.r_en.eq(res_done)]
            errs.append(f.r_data & f.r_rdy)
        rp = res.payload
        m.d.comb += [res.valid.eq(last.valid), last.ready.eq(res.ready),
                     rp.id.eq(last.payload.id), rp.score.eq(last.payload.score),
                     rp.last.eq(last.payload.last), rp.error.eq(Cat(*errs).any())]
        return m


def Cat_(*parts):
    """``Cat`` that drops zero-width parts (a single query slot has no slot bits)."""
    return Cat(*[p for p in parts if len(p)])


def _load_mux(m, port, sources):
    """Drive the stream ``port`` from the first of ``sources`` (``(stream, condition or
    None)``) whose ``valid`` (and condition) is up; only that source sees ``ready``. A last
    source without a condition is the default: it sees ``ready`` whether valid or not,
    as when connected directly."""
    for i, (src, cond) in enumerate(sources):
        if i == len(sources) - 1 and cond is None and i > 0:
            ctx = m.Else()
        else:
            sel = src.valid if cond is None else src.valid & cond
            ctx = m.If(sel) if i == 0 else m.Elif(sel)
        with ctx:
            m.d.comb += [port.valid.eq(src.valid), port.payload.eq(src.payload),
                         src.ready.eq(port.ready)]


