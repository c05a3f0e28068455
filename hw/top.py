"""The RPAccel top level: a query goes in, its candidates flow through 1 to 3 stages, each
on its own array partition with its own embedding unit and top-k unit, and the last
stage's top-n comes out.

Blocks (see ``docs/architecture.md``):

* `QueryFrontEnd` (``front_end.py``): takes a query's header (candidate count), cuts the
  candidates into sub-batches of ``sub_batch`` for stage 0 and keeps every candidate's
  later-stage beats in the candidate buffer (one slot per query in flight).
* `ReplayUnit` (``replay.py``, one per stage after the first): collects the previous
  stage's survivors and replays their buffered beats as the next stage's query, in
  sub-batches; its id map gives the stage's scores the candidates' original positions, so
  ties break exactly as in the golden pipeline.
* `AxiReadArbiter` (``bus.py``): ``axi_ports`` AXI4 read ports to DRAM, port p for unit
  g = p (mod ``axi_ports``) of every stage's embedding units, port 0 for the model loader
  too.
* `CsrBank` (``bus.py``): AXI4-Lite registers (model constants per stage, k, status,
  error, counters; the map is `rpaccel.interface.CSR`).
* per stage: a `StageController`, an `EmbeddingUnit`, a top-k unit and an engine of the
  `ComputeEngine`; the `ModelLoader` for model images in DRAM.

Query stream (one beat per cycle, AXI4-Stream handshake): a header beat ``head = 1`` with
the candidate count in ``id``; then per candidate the dense words of every stage
(``dense = 1``, ``stage`` = s, stage s's int8 dense features quantized with its own scale)
and the sparse ids (``dense = 0``: ``table``, ``id``, ``last`` on a bag's last id), tables
in order; ``end`` (a packet's ``tlast``) on the query's last beat. Result stream: the
survivors of the last stage, best first, ``{id, score, last, error}``; ``error`` marks
every beat of a query in which some id was out of range (its bags pooled to zero), that
lost buffered ids, or whose stream ended early (completed by the front end): the query's
answer is then not to be used. `rpaccel.hw.axis.RPAccelAxis` puts both streams on
AXI4-Stream ports of byte records.
"""

from amaranth import C, Cat, Module, Mux, Shape, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from ..config import RPAccelConfig
from ..interface import (
    ENGINE_MAP,
    ENGINE_NONE,
    ERR_WHERE,
    ID_VALUE,
    LOAD_CTRL,
    SHAPE,
    STATUS,
    ErrCause,
    LoadUnit,
    csr_regs,
    default_engine_map,
    engine_widths,
    query_slots,
    top_layouts,
)
from .bus import AxiReadArbiter, CsrBank, axi4_lite_signature, axi_port
from .dispatch import EngineCrossbar
from .emb_cluster import make_embedding
from .front_end import QueryFrontEnd
from .loader import ModelLoader
from .mlp_engine import ComputeEngine
from .replay import ReplayUnit
from .skid import register_slice
from .stage import StageController
from .topk import make_topk

__all__ = ["RPAccel"]


class RPAccel(wiring.Component):
    """The accelerator (see the module docstring for blocks and streams).

    Engine ``e`` (``config.engine_count`` of them) drives array partition ``e`` (the mode
    is fixed at ``log2(partitions)``); the stage each engine serves is the ``ENGINE_MAP``
    CSR (after reset engine e serves stage e, extra engines the last stage), and a stage
    with several engines runs its sub-batches on them in turn (`EngineCrossbar`). An
    engine's program and weights, and a stage's embedding tables' descriptors, static-cache
    map and rows, are loaded from DRAM by the model loader (``LOAD_*`` CSRs), or streamed
    in through ``eload_<e>`` / ``mload_<s>``, which take precedence. Model constants and
    ``k`` per stage are CSRs (``csr``, AXI4-Lite); embedding rows and load images are
    read from DRAM through ``axi`` (AXI4 read, ``arid = {manager, MSHR}``: manager
    s < stages is stage s's embedding unit, manager ``stages`` the loader) and, with
    ``axi_ports`` P > 1, ``axi1`` .. ``axi<P-1>`` (port p: units g = p mod P of every stage,
    manager s is stage s).

    Members
    -------
    csr : In(AXI4-Lite)
    query : In(stream of ``top_layouts()[0]``)
    result : Out(stream of ``top_layouts()[1]``)
    axi, axi1, ... : Out(AXI4 read)
    eload_<e>, mload_<s> : In(stream)
    """

    def __init__(self, config: RPAccelConfig):
        cfg = config
        self.config = cfg
        self.slots = query_slots(cfg)
        NE = cfg.engine_count
        widths = engine_widths(cfg)
        self.ce = ComputeEngine(cfg, engines=NE, widths=widths)
        self.embs = [make_embedding(cfg) for _ in range(cfg.stages)]
        # a stage has at most NE - stages + 1 engines: that many runs in flight, and one
        self.ctls = [StageController(cfg, s, runs=NE - cfg.stages + 2, width=widths[0])
                     for s in range(cfg.stages)]
        self.query_layout, self.result_layout = top_layouts(cfg)
        self.regs = csr_regs(cfg)
        emb_id_bits = Shape.cast(
            self.embs[0].signature.members["axi"].signature.members["arid"].shape).width
        # port p's managers 0 .. stages-1: the stages' embedding units on it; manager
        # `stages` of port 0: the model loader
        self.arbs = [AxiReadArbiter(cfg.stages + (p == 0), cfg.axi_addr_bits,
                                    cfg.axi_data_bits, emb_id_bits)
                     for p in range(cfg.axi_ports)]
        # loader target 2 i + unit: engine i's or stage i's embedding unit's load port
        eng_w = [self.ce.signature.members[f"load_{e}"].signature.members["payload"].shape.size
                 for e in range(NE)]
        emb_w = self.embs[0].signature.members["load"].signature.members["payload"].shape.size
        widths = []
        for i in range(max(NE, cfg.stages)):
            widths += [eng_w[min(i, NE - 1)], emb_w]
        self.loader = ModelLoader(cfg, widths, emb_id_bits)
        members = {
            "csr": In(axi4_lite_signature()),
            "query": In(stream.Signature(self.query_layout)),
            "result": Out(stream.Signature(self.result_layout)),
            **{axi_port(p): Out(arb.signature.members["out"].signature)
               for p, arb in enumerate(self.arbs)},
        }
        for e in range(NE):
            members[f"eload_{e}"] = In(self.ce.signature.members[f"load_{e}"].signature.flip())
        for st in range(cfg.stages):
            members[f"mload_{st}"] = In(self.embs[st].signature.members["load"].signature.flip())
        super().__init__(members)

    def elaborate(self, platform):  # noqa: C901 (the top level, read top to bottom)
        m = Module()
        cfg = self.config
        NS, NE, slots = cfg.stages, cfg.engine_count, self.slots
        item_bits = exact_log2(cfg.max_items)
        beat_bits = exact_log2(cfg.cand_beats)
        ql = self.query_layout

        m.submodules.compute = ce = self.ce
        for p, a in enumerate(self.arbs):
            m.submodules[f"arbiter{p}" if p else "arbiter"] = a
            wiring.connect(m, a.out, wiring.flipped(getattr(self, axi_port(p))))
        arb = self.arbs[0]
        m.submodules.loader = dma = self.loader
        m.submodules.csr = csr = CsrBank(self.regs)
        wiring.connect(m, dma.axi, getattr(arb, f"m{NS}"))
        ctrl = data.View(LOAD_CTRL, csr.LOAD_CTRL_data[:LOAD_CTRL.size])
        load_stage, load_unit = ctrl.stage, ctrl.unit
        load_ok = Signal()
        cmd = dma.cmd.payload
        m.d.comb += [cmd.addr.eq(csr.LOAD_ADDR), cmd.beats.eq(csr.LOAD_BEATS),
                     cmd.target.eq(Cat(load_unit, load_stage)),
                     dma.cmd.valid.eq(csr.LOAD_CTRL & load_ok)]
        wiring.connect(m, wiring.flipped(self.csr), csr.bus)
        m.d.comb += ce.mode.eq(exact_log2(cfg.partitions))
        reg = {n: getattr(csr, n) for n in self.regs}

        # ---- engine map: taken while the machine is idle, if every stage gets an engine --
        m.submodules.crossbar = xbar = EngineCrossbar(cfg)
        emap = Signal(data.ArrayLayout(2, NE), init=list(default_engine_map(cfg)))
        restart = Signal()
        m.d.comb += [xbar.owner.eq(emap), xbar.restart.eq(restart)]
        map_write = csr.ENGINE_MAP
        new_map = data.View(ENGINE_MAP, csr.ENGINE_MAP_data[:ENGINE_MAP.size])
        fields = [new_map[f"e{e}"] for e in range(NE)]
        # reads: the map in use, engines that do not exist serve no stage
        m.d.comb += csr.ENGINE_MAP_rd.eq(Cat(emap, *[C(ENGINE_NONE, 2)
                                                     for _ in range(NE, 4)]))
        map_valid = Signal()
        m.d.comb += map_valid.eq(
            Cat(*[Cat(*[f == st for f in fields]).any() for st in range(NS)]).all() &
            Cat(*[(f < NS) | (f == ENGINE_NONE) for f in fields]).all())
        map_ok = Signal()
        m.d.sync += restart.eq(0)
        with m.If(map_write & map_ok):
            m.d.sync += [emap.eq(Cat(*fields)), restart.eq(1)]

        tks = []
        for st in range(NS):
            emb, ctl = self.embs[st], self.ctls[st]
            m.submodules[f"embedding{st}"] = emb
            m.submodules[f"controller{st}"] = ctl
            m.submodules[f"topk{st}"] = tk = make_topk(cfg)
            tks.append(tk)
            m.d.comb += [ctl.dense_words.eq(reg[f"S{st}_DENSE_WORDS"]),
                         ctl.tables.eq(reg[f"S{st}_TABLES"]), ctl.dw.eq(reg[f"S{st}_DW"]),
                         ctl.fpack.eq(reg[f"S{st}_FPACK"])]
            if cfg.emb_units > 1:
                m.d.comb += [emb.tables.eq(reg[f"S{st}_TABLES"]),
                             emb.fpack.eq(reg[f"S{st}_FPACK"])]
            # embedding load port: host stream, else the loader
            _load_mux(m, emb.load, [
                (getattr(self, f"mload_{st}"), None),
                (dma.out, dma.target == 2 * st + LoadUnit.EMBEDDING)])
            wiring.connect(m, ctl.eng_load, getattr(xbar, f"load_{st}"))
            wiring.connect(m, ctl.eng_run, getattr(xbar, f"run_{st}"))
            wiring.connect(m, getattr(xbar, f"out_{st}"), ctl.eng_out)
            # lookups and pooled vectors through register slices: the embedding unit's
            # ready is its classification (map read, tag compare, queue space), which
            # would otherwise run on through the controller into the replay unit's
            # candidate-buffer read; the controller takes a pooled vector when the
            # engine's load port does, which would run on into the embedding unit's
            # data side
            register_slice(m, f"lookup_slice{st}", ctl.emb_req, emb.req)
            register_slice(m, f"pooled_slice{st}", emb.resp, ctl.emb_resp)
            for p, a in enumerate(self.arbs):
                wiring.connect(m, getattr(emb, axi_port(p)), getattr(a, f"m{st}"))

        for e in range(NE):
            # load ports: host stream, else the loader, else the crossbar's activation beats
            _load_mux(m, getattr(ce, f"load_{e}"), [
                (getattr(self, f"eload_{e}"), None),
                (dma.out, dma.target == 2 * e + LoadUnit.ENGINE),
                (getattr(xbar, f"eload_{e}"), None)])
            wiring.connect(m, getattr(xbar, f"erun_{e}"), getattr(ce, f"run_{e}"))
            # the engine's results through a register slice: its output path's valid and
            # ready never meet the crossbar's and the controller's logic in one cycle
            register_slice(m, f"result_slice{e}", getattr(ce, f"out_{e}"),
                           getattr(xbar, f"eout_{e}"))

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
        machine_idle = Signal()
        m.d.comb += machine_idle.eq(~dma.busy & front_idle & (inflight == 0))
        m.d.comb += load_ok.eq(machine_idle & (csr.LOAD_BEATS != 0) &
                               (load_stage < Mux(load_unit == LoadUnit.ENGINE, NE, NS)))
        m.d.comb += map_ok.eq(machine_idle & map_valid)
        front_err = Signal(4)
        err_clear = Signal()
        m.d.comb += err_clear.eq(csr.CTRL & csr.CTRL_data[0])
        cause = Signal(4)
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
            with m.If(map_write & ~map_ok):
                m.d.sync += cause.eq(ErrCause.ENGINE_MAP)
            for st in reversed(range(NS)):
                e = self.embs[st]
                at = Signal(ERR_WHERE, name=f"err_where{st}")
                m.d.comb += [at.stage.eq(st),
                             at.table.eq(Mux(e.err_valid, e.err_table, e.bus_err_table))]
                with m.If(e.bus_err_valid):
                    m.d.sync += [cause.eq(ErrCause.LOOKUP_BUS), where.eq(at.as_value()),
                                 err_id.eq(e.bus_err_addr)]
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
        # an engine's counters are per run: its MACs are added when it falls idle
        busy = [getattr(ce, f"busy_{g}") for g in range(NE)]
        run_done = []
        for g in range(NE):
            was_busy = Signal(name=f"was_busy{g}")
            m.d.sync += was_busy.eq(busy[g])
            run_done.append(was_busy & ~busy[g])
        for st in range(NS):
            e, tk = self.embs[st], tks[st]
            m.d.comb += e.err_clear.eq(err_clear)
            items, macs, ecyc = Signal(32), Signal(32), Signal(32)
            # engine cycles and MACs summed over the stage's engines
            mine = [emap[g] == st for g in range(NE)]
            m.d.sync += [
                ecyc.eq(ecyc + sum(busy[g] & mine[g] for g in range(NE))),
                macs.eq(macs + sum(Mux(mine[g] & run_done[g], getattr(ce, f"macs_{g}"), 0)
                                   for g in range(NE)))]
            with m.If(tk.i.valid & tk.i.ready):
                m.d.sync += items.eq(items + tk.i.payload.lanes[0].valid)
            m.d.comb += [getattr(csr, f"S{st}_ITEMS").eq(items),
                         getattr(csr, f"S{st}_LOOKUPS").eq(e.lookups),
                         getattr(csr, f"S{st}_MISSES").eq(e.misses),
                         getattr(csr, f"S{st}_MACS").eq(macs),
                         getattr(csr, f"S{st}_ENGINE_CYCLES").eq(ecyc),
                         getattr(csr, f"S{st}_EMB_ERRORS").eq(self.ctls[st].emb_errors),
                         getattr(csr, f"S{st}_DRAM_BYTES").eq(e.dram_bytes)]

        # ---- query front end, candidate buffer, replay units ------------------------------
        m.submodules.front = fe = QueryFrontEnd(cfg)
        c0 = self.ctls[0]
        wiring.connect(m, wiring.flipped(self.query), fe.query)
        wiring.connect(m, fe.run, c0.run)
        wiring.connect(m, fe.beats, c0.query)
        admitted = fe.admitted
        m.d.comb += [fe.accept.eq((inflight < limit) & ~dma.busy), fe.k.eq(reg["S0_K"]),
                     fe.tables.eq(reg["S0_TABLES"]), fe.err_clear.eq(err_clear),
                     front_err.eq(fe.err), front_idle.eq(fe.idle)]
        m.d.sync += inflight.eq(inflight + admitted - res_done)
        if NS > 1:
            # later-stage beats of every candidate and their counts, one slot per query
            m.submodules.cbuf = cbuf = Memory(shape=ql, depth=slots << (item_bits + beat_bits),
                                              init=[])
            m.submodules.clen = clen = Memory(shape=range(cfg.cand_beats + 1),
                                              depth=slots << item_bits, init=[])
            cb_w, cl_w = cbuf.write_port(), clen.write_port()
            m.d.comb += [cb_w.addr.eq(fe.cb_addr), cb_w.data.eq(fe.cb_data),
                         cb_w.en.eq(fe.cb_en), cl_w.addr.eq(fe.cl_addr),
                         cl_w.data.eq(fe.cl_data), cl_w.en.eq(fe.cl_en)]
        # each stage's scores leave through a register slice: without it the engine -> top-k
        # hand-off is one combinational path both ways (the top-k unit's drain state, its
        # ready, through the output path into the array's advance; scores into its cells)
        register_slice(m, "score_slice0", self.ctls[0].topk, tks[0].i)
        srcs = [tks[0].o]
        for st in range(1, NS):
            m.submodules[f"replay{st}"] = ru = ReplayUnit(cfg, st)
            ctl = self.ctls[st]
            wiring.connect(m, srcs[-1], ru.src)
            wiring.connect(m, ru.run, ctl.run)
            # the replayed beats through a register slice: the candidate buffer's read
            # data never meet the controller's and the crossbar's logic in one cycle
            register_slice(m, f"replay_slice{st}", ru.beats, ctl.query)
            register_slice(m, f"score_slice{st}", ctl.topk, ru.scores)
            wiring.connect(m, ru.topk, tks[st].i)
            len_rd = clen.read_port(domain="comb")
            cb_r = cbuf.read_port()
            m.d.comb += [ru.k.eq(reg[f"S{st}_K"]), cb_r.addr.eq(ru.cb_addr),
                         cb_r.en.eq(ru.cb_en), ru.cb_data.eq(cb_r.data),
                         len_rd.addr.eq(ru.cl_addr), ru.cl_data.eq(len_rd.data)]
            srcs.append(tks[st].o)

        # ---- result: the last stage's survivors, flagged when any stage saw a bad id -------
        last = srcs[-1]
        errs = []
        f = fifo.SyncFIFO(width=1, depth=limit)
        m.submodules.qerr_front = f
        # never full: a query is admitted only while fewer than `limit` are in flight
        m.d.comb += [f.w_stream.valid.eq(admitted), f.w_stream.payload.eq(fe.bad),
                     f.r_stream.ready.eq(res_done)]
        errs.append(f.r_stream.payload & f.r_stream.valid)
        for st in range(NS):
            f = fifo.SyncFIFO(width=1, depth=max(2, slots))
            m.submodules[f"qerr{st}"] = f
            ctl = self.ctls[st]
            wiring.connect(m, ctl.qerr, f.w_stream)
            m.d.comb += f.r_stream.ready.eq(res_done)
            errs.append(f.r_stream.payload & f.r_stream.valid)
        rp = res.payload
        m.d.comb += [res.valid.eq(last.valid), last.ready.eq(res.ready),
                     rp.id.eq(last.payload.id), rp.score.eq(last.payload.score),
                     rp.last.eq(last.payload.last), rp.error.eq(Cat(*errs).any())]
        return m


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


