"""The formal proofs of the RTL (`rpaccel.sim.formal` runs them): each a spec module
around a block on a small configuration.

Conventions: every input of the block is free (``AnySeq``), reset included, so a proof
covers resets at any cycle; what the environment promises is an ``Assume`` (an input
stream holds ``valid`` and its payload until ``ready``, as the block's own outputs must);
what the block must do is an ``Assert``. The blocks' own invariants (``platform ==
"formal"`` in their ``elaborate``) are proved with them.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, Value, signed
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume, Cover, Elaboratable
from amaranth.lib import stream, wiring

from ..config import get_config
from .formal import Proof

__all__ = ["PROOFS", "Spec", "free_inputs", "holds", "stream_holds", "all_streams_hold",
           "axi_ar_payload"]


# ---- helpers -------------------------------------------------------------------------------
def free_inputs(m: Module, dut: wiring.Component, skip=(), const=()) -> None:
    """Drive every input port of ``dut`` (signature flow ``In``) with a free value, new
    every cycle, except the ports whose path starts with one of ``skip``; the ports named
    in ``const`` (settings the host writes while the block is idle: model constants, k)
    get a free value that holds for the whole run."""
    for path, member, value in dut.signature.flatten(dut):
        if member.flow != wiring.In or any(path[:len(s)] == s for s in skip):
            continue
        v = Value.cast(value)
        if isinstance(v, Signal):
            m.d.comb += v.eq((AnyConst if path[0] in const else AnySeq)(len(v)))


def all_streams_hold(m: Module, dut: wiring.Component) -> None:
    """`holds` on every stream port of ``dut``: assumed of its inputs, proved of its
    outputs."""
    for name, member in dut.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            check = Assume if member.flow == wiring.In else Assert
            stream_holds(m, getattr(dut, name), check, name)


def holds(m: Module, valid, ready, payload, check, name: str) -> None:
    """The handshake rule of AXI and of `amaranth.lib.stream`: a ``valid`` not taken
    (``ready`` low) stays up the next cycle with the same ``payload``. ``check`` is
    ``Assert`` for what the block drives, ``Assume`` for what its environment drives.
    The spec's registers reset with the block, so a reset may drop ``valid``."""
    payload = Value.cast(payload)
    past = Signal(name=f"{name}_past")
    stalled = Signal(name=f"{name}_stalled")
    prev = Signal(len(payload), name=f"{name}_prev")
    m.d.sync += [past.eq(1), stalled.eq(valid & ~ready), prev.eq(payload)]
    with m.If(past & stalled):
        m.d.comb += [check(valid), check(payload == prev)]


def stream_holds(m: Module, intf, check, name: str) -> None:
    """`holds` for an `amaranth.lib.stream` interface."""
    holds(m, intf.valid, intf.ready, intf.payload, check, name)


def axi_ar_payload(axi) -> Value:
    """The AR channel's payload (everything the handshake must keep stable)."""
    return Cat(axi.araddr, axi.arlen, axi.arsize, axi.arburst, axi.arid)


class Spec(Elaboratable):
    """A spec module: ``build(m)`` adds the block and the properties."""

    def __init__(self, build):
        self._build = build

    def elaborate(self, platform):
        m = Module()
        self._build(m)
        return m


# ---- small configurations ------------------------------------------------------------------
def _emb_config():
    """An embedding unit small enough to prove: 2 tables of 4-byte rows, a 2-row static
    cache, a 2-set 2-way dynamic cache of 8-byte lines, 2 MSHRs, a 32-bit AXI port."""
    return get_config("default").replace(
        name="formal-emb", emb_tables=2, emb_dim=4, emb_map_rows=8, static_rows=2,
        cache_sets=2, cache_ways=2, line_bytes=8, mshrs=2, axi_data_bits=32,
        axi_addr_bits=12, acc_bits=17, mult_bits=2, shift_bits=1)


def _topk_config(impl: str, lanes: int = 1, cap: int = 3):
    return get_config("default").replace(
        name=f"formal-topk-{impl}", topk_impl=impl, topk_lanes=lanes, topk_k=cap,
        topk_id_bits=2, max_items=4, score_bits=16)


# ---- AXI4 read managers: AR held until taken -----------------------------------------------
def _embedding_ar(m):
    from ..hw.embedding import EmbeddingUnit

    m.submodules.dut = dut = EmbeddingUnit(_emb_config())
    free_inputs(m, dut)  # any R beats, requested or not
    holds(m, dut.axi.arvalid, dut.axi.arready, axi_ar_payload(dut.axi), Assert, "ar")


def _embedding_streams(m):
    from ..hw.embedding import EmbeddingUnit

    m.submodules.dut = dut = EmbeddingUnit(_emb_config())
    free_inputs(m, dut)
    stream_holds(m, dut.req, Assume, "req")
    stream_holds(m, dut.resp, Assert, "resp")


def _loader_ar(m):
    from ..hw.loader import ModelLoader

    cfg = get_config("default").replace(name="formal-loader", axi_data_bits=32,
                                        axi_addr_bits=16)
    m.submodules.dut = dut = ModelLoader(cfg, [40, 8], id_bits=1)
    free_inputs(m, dut)  # any R beats, requested or not
    stream_holds(m, dut.cmd, Assume, "cmd")
    holds(m, dut.axi.arvalid, dut.axi.arready, axi_ar_payload(dut.axi), Assert, "ar")
    stream_holds(m, dut.out, Assert, "out")


def _arbiter(m):
    from ..hw.bus import AxiReadArbiter

    m.submodules.dut = dut = AxiReadArbiter(3, addr_bits=12, data_bits=8, id_bits=2)
    free_inputs(m, dut)
    for i in range(3):
        mi = getattr(dut, f"m{i}")
        holds(m, mi.arvalid, mi.arready, axi_ar_payload(mi), Assume, f"ar{i}")
        # R goes to the manager named by the id's top bits, with the manager's own id
        who = dut.out.rid[2:]
        m.d.comb += [Assert(mi.rvalid == (dut.out.rvalid & (who == i))),
                     Assert(mi.rid == dut.out.rid[:2])]
        with m.If(who == i):
            m.d.comb += Assert(dut.out.rready == mi.rready)
    holds(m, dut.out.arvalid, dut.out.arready, axi_ar_payload(dut.out), Assert, "ar")
    # the id names the manager whose request it is
    for i in range(3):
        mi = getattr(dut, f"m{i}")
        with m.If(dut.out.arvalid & (dut.out.arid[2:] == i)):
            m.d.comb += [Assert(mi.arvalid), Assert(dut.out.araddr == mi.araddr),
                         Assert(dut.out.arid[:2] == mi.arid)]
        with m.If(mi.arvalid & mi.arready):
            m.d.comb += Assert(dut.out.arid[2:] == i)


# ---- every stream port of a block holds --------------------------------------------------
def _streams(make, const=()):
    def build(m):
        m.submodules.dut = dut = make()
        free_inputs(m, dut, const=const)
        all_streams_hold(m, dut)
    return lambda: Spec(build)


def _front_end():
    from ..hw.front_end import QueryFrontEnd

    return QueryFrontEnd(get_config("default").replace(
        name="formal-front", max_items=4, cand_beats=4, sub_batch=2, emb_tables=2, topk_k=2,
        topk_id_bits=2))


def _controller():
    from ..hw.stage import StageController

    return StageController(get_config("default").replace(
        name="formal-ctl", array_rows=4, array_cols=4, block=4, partitions=1, stages=1,
        sub_batch=2, emb_tables=2, emb_dim=4, max_width=8, topk_k=2, max_items=4,
        topk_id_bits=2), runs=2)


def _crossbar(m):
    from ..hw.dispatch import EngineCrossbar

    cfg = get_config("default").replace(name="formal-xbar", block=2, partitions=4,
                                        engines=4, sub_batch=2)
    m.submodules.dut = dut = EngineCrossbar(cfg)
    free_inputs(m, dut, const=("owner",))
    all_streams_hold(m, dut)
    valids = []
    for st in range(cfg.stages):
        load, run = getattr(dut, f"load_{st}"), getattr(dut, f"run_{st}")
        # a controller offers a sub-batch's load beats, then its run beat, never both
        m.d.comb += Assume(~(load.valid & run.valid))
        valids += [load.valid, run.valid, getattr(dut, f"out_{st}").valid]
    for e in range(cfg.engine_count):
        valids.append(getattr(dut, f"eout_{e}").valid)
    # the engine map changes (restart) only while the machine is idle
    m.d.comb += Assume(~dut.restart | ~Cat(*valids).any())


def _replay_spec(m):
    from ..hw.replay import ReplayUnit

    cfg = get_config("default").replace(
        name="formal-replay", max_items=4, cand_beats=4, sub_batch=2, topk_k=2,
        topk_id_bits=2, emb_tables=2)
    m.submodules.dut = dut = ReplayUnit(cfg, 1)
    free_inputs(m, dut, const=("k",))
    all_streams_hold(m, dut)
    # the candidate buffer: a read port that keeps its data while not enabled, and the
    # candidates' beat counts, which no one rewrites while they are read
    held, prev_cb, prev_cl, prev_addr = Signal(), Signal.like(dut.cb_data.as_value()), \
        Signal.like(dut.cl_data), Signal.like(dut.cl_addr)
    m.d.sync += [held.eq(~dut.cb_en), prev_cb.eq(dut.cb_data.as_value()),
                 prev_cl.eq(dut.cl_data), prev_addr.eq(dut.cl_addr)]
    with m.If(held):
        m.d.comb += Assume(dut.cb_data.as_value() == prev_cb)
    with m.If(dut.cl_addr == prev_addr):
        m.d.comb += Assume(dut.cl_data == prev_cl)


# ---- AXI4-Lite registers ---------------------------------------------------------------------
def _csr(m):
    from ..hw.bus import CsrBank

    regs = {"A": (0x0, "rw", 8), "B": (0x4, "ro", 8), "C": (0x8, "wo", 1),
            "D": (0xC, "wr", 4)}
    m.submodules.dut = dut = CsrBank(regs)
    free_inputs(m, dut)
    b = dut.bus
    holds(m, b.awvalid, b.awready, b.awaddr, Assume, "aw")
    holds(m, b.wvalid, b.wready, Cat(b.wdata, b.wstrb), Assume, "w")
    holds(m, b.arvalid, b.arready, b.araddr, Assume, "arl")
    holds(m, b.bvalid, b.bready, b.bresp, Assert, "b")
    holds(m, b.rvalid, b.rready, Cat(b.rdata, b.rresp), Assert, "r")
    # one response per request: no write taken while a response waits, AW with W
    m.d.comb += [Assert(~(b.awready & b.bvalid)), Assert(b.awready == b.wready),
                 Assert(~(b.arready & b.rvalid))]


# ---- top-k units: the answer is the sorted top k (bounded) ----------------------------------
class _TopKExact(Elaboratable):
    """One query (distinct ids, any scores and lane patterns, any idle / stall pattern, a
    reset anywhere): the unit answers exactly the ``min(k, n)`` best items, best first,
    ties to the lower id, ``last`` on the final one, nothing before the query's last
    beat; the output holds until taken.

    The answer is checked through a *watched item* chosen freely by the solver (``AnyConst``
    id and score): if that item is in the query, it must come out at the position equal to
    its rank (the items before it in the golden order) when its rank is below k, and not
    at all otherwise. Holding for every choice of the watched item, and with exactly
    ``min(k, n)`` answers, this is the whole sorted top k; the spec keeps only the rank
    counter, not the items."""

    def __init__(self, impl: str, lanes: int, items: int = 3, cap: int = 2,
                 score_bits: int = 3):
        self.cfg = _topk_config(impl, lanes, cap)
        self.items, self.score_bits = items, score_bits

    def elaborate(self, platform):
        from ..hw.topk import make_topk

        m = Module()
        cfg = self.cfg
        n_max = self.items
        m.submodules.dut = dut = make_topk(cfg)
        free_inputs(m, dut)
        stream_holds(m, dut.i, Assume, "i")
        stream_holds(m, dut.o, Assert, "o")
        w_id = AnyConst(cfg.topk_id_bits)
        w_score = AnyConst(signed(cfg.score_bits))
        # scores of a few bits (sign-extended to the unit's width): ties are frequent
        small = lambda v: (v >= -(1 << (self.score_bits - 1))) & (v < (1 << (self.score_bits - 1)))  # noqa: E731
        m.d.comb += Assume(small(w_score))
        seen = Signal(1 << cfg.topk_id_bits)   # ids of the query so far
        count = Signal(range(n_max + 1))
        rank = Signal(range(n_max + 1))        # items so far that rank before the watched one
        closed = Signal()                      # the query's last beat was taken
        k = Signal.like(dut.i.payload.k)
        taken = dut.i.valid & dut.i.ready
        lanes = dut.i.payload.lanes
        m.d.comb += Assume(~(closed & dut.i.valid))    # one query
        with m.If(dut.i.valid & dut.i.payload.last):
            m.d.comb += Assume((dut.i.payload.k >= 1) & (dut.i.payload.k <= cfg.topk_k))
        new_seen, new_count, new_rank = seen, count, rank
        for q in range(cfg.topk_lanes):
            ln = lanes[q]
            with m.If(dut.i.valid & ln.valid):
                # distinct ids, within the beat and the query; the watched item's score
                m.d.comb += Assume(~seen.bit_select(ln.id, 1))
                for p in range(q):
                    with m.If(lanes[p].valid):
                        m.d.comb += Assume(lanes[p].id != ln.id)
                m.d.comb += Assume(small(ln.score))
                with m.If(ln.id == w_id):
                    m.d.comb += Assume(ln.score == w_score)
            before = (ln.score > w_score) | ((ln.score == w_score) & (ln.id < w_id))
            new_seen = new_seen | Mux(ln.valid, 1 << ln.id, 0)
            new_count = new_count + ln.valid
            new_rank = new_rank + (ln.valid & before)
        with m.If(taken):
            m.d.comb += Assume(new_count <= n_max)
            m.d.sync += [seen.eq(new_seen), count.eq(new_count), rank.eq(new_rank)]
            with m.If(dut.i.payload.last):
                m.d.sync += [closed.eq(1), k.eq(dut.i.payload.k)]
                m.d.comb += Assume(new_count >= 1)
        answer = Signal(range(n_max + 1))
        m.d.comb += answer.eq(Mux(count < k, count, k))
        out = Signal(range(n_max + 1))
        o = dut.o
        watched = seen.bit_select(w_id, 1)
        with m.If(o.valid):
            m.d.comb += [Assert(closed), Assert(out < answer),
                         Assert(o.payload.last == (out + 1 == answer))]
            with m.If(watched & (rank == out)):
                m.d.comb += Assert((o.payload.id == w_id) & (o.payload.score == w_score))
            with m.If(o.payload.id == w_id):
                m.d.comb += Assert(watched & (rank == out))
        with m.If(o.valid & o.ready):
            m.d.sync += out.eq(out + 1)
        m.d.comb += Cover(closed & (count == self.items) & (out == answer) & (k == 2) & watched &
                          (rank == 1))
        return m


# ---- the proofs ------------------------------------------------------------------------------
_LIST = [
    Proof("embedding.ar", "embedding",
          "the embedding unit's AXI4 AR request (address, length, size, burst, id) holds until "
          "arready, whatever the lookups, R beats and stalls; its invariants: valid tags "
          "unique per set, LRU ages a permutation of the ways, a line arrives only for a "
          "sent request, the per-bag side FIFO never overflows", lambda: Spec(_embedding_ar)),
    Proof("embedding.streams", "embedding",
          "the pooled-vector stream holds until taken (given lookups that hold)",
          lambda: Spec(_embedding_streams)),
    Proof("loader.ar", "loader",
          "the model loader's AR request and its output beats hold until taken",
          lambda: Spec(_loader_ar)),
    Proof("arbiter.axi", "bus",
          "the AXI read arbiter's AR holds until taken (given managers that hold theirs), "
          "carries the granted manager's request and id, and R reaches only the manager its "
          "id names", lambda: Spec(_arbiter)),
    Proof("front_end.streams", "front_end",
          "the query front end's run and beat streams to stage 0 hold until taken (given a "
          "query stream that holds); its candidate, sub-batch, bag and buffer counters stay "
          "in range", _streams(_front_end, const=("k", "tables"))),
    Proof("controller.streams", "stage",
          "the stage controller's engine load / run, lookup, top-k and error-report streams "
          "hold until taken; its gather counters stay within the sub-batch and the model; "
          "no score without a started run (its FIFO never underflows)",
          _streams(_controller, const=("dense_words", "tables", "dw", "fpack"))),
    Proof("replay.streams", "replay",
          "a replay unit's run, beat and top-k streams hold until taken (given the top "
          "level's in-flight limit); its survivor counters stay within k",
          lambda: Spec(_replay_spec)),
    Proof("crossbar.streams", "dispatch",
          "the engine crossbar's streams to the engines and back to the controllers hold "
          "until taken (engine map set while idle)", lambda: Spec(_crossbar), depth=4),
    Proof("csr.axi_lite", "bus",
          "the CSR bank's B and R responses hold until taken; one response per request",
          lambda: Spec(_csr)),
    Proof("topk.exact", "topk",
          "queue top-k (1 lane, capacity 2): every query of up to 3 items with any scores, "
          "k, idle gaps, stalls and resets within 12 cycles gets exactly the min(k, n) best, "
          "best first, ties to the lower id, last on the final one, nothing early; the "
          "output holds until taken (a whole query takes 6 cycles)",
          lambda: _TopKExact("queue", 1), "bmc", 12),
    Proof("topk.exact2", "topk",
          "queue top-k, 2 lanes: as topk.exact within 8 cycles, any lane pattern",
          lambda: _TopKExact("queue", 2), "bmc", 8),
    Proof("topk_heap.exact", "topk_heap",
          "heap top-k (1 lane, capacity 2): as topk.exact within 22 cycles (a whole query "
          "takes 21 with the heaps' clearing after reset)", lambda: _TopKExact("heap", 1),
          "bmc", 22),
]

#: name -> `Proof`
PROOFS = {p.name: p for p in _LIST}
