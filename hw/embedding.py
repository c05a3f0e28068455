"""Embedding unit: static + dynamic embedding caches over an AXI4 read port, with sum
pooling and requantization of each bag (docs/numerics.md).

Lookups enter one id per cycle as ``(table, id, last)`` beats (``last`` closes a bag) and
bags leave as requantized int8 vectors in request order. Each id is classified in order,
exactly as `rpaccel.golden.cache.CacheModel` does it: a row pinned in the static cache (the
map says so) is a static hit; otherwise its DRAM line is looked up in the set-associative
dynamic cache (true LRU per set); a miss takes the LRU way at once (the tag is written and
later lookups of that line count as hits, as in the golden model) and a miss-status
register (MSHR) that reads the whole line with one AXI4 burst. Lookups then wait in an
in-order queue; a queue entry whose line is still on its way holds the queue head (hits
behind it keep their order), and a line is written into the data array only when its
primary miss reaches the head, so every lookup reads the data its position in the trace
implies. An id outside its table reads nothing: the bag's result is all zeros with
``error`` set, and the status registers keep the first bad (table, id).
"""

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import Assert
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import RPAccelConfig
from ..interface import EmbTarget, cache_state_bits
from .requant import BagRequant

__all__ = ["EmbeddingUnit", "axi4_read_signature", "emb_layouts", "EmbTarget"]




def axi4_read_signature(addr_bits: int, data_bits: int, id_bits: int) -> wiring.Signature:
    """AXI4 read-only manager signature (AR and R channels).

    As a member named ``axi`` its Verilog ports are ``axi__araddr`` ...; cocotbext-axi binds
    them with the prefix ``"axi_"`` (it joins prefix and signal with ``_``).
    """
    return wiring.Signature({
        "araddr": Out(addr_bits), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
        "arid": Out(id_bits), "arvalid": Out(1), "arready": In(1),
        "rdata": In(data_bits), "rid": In(id_bits), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def emb_layouts(config: RPAccelConfig):
    """``(table_entry, map_entry, load, req, resp)`` layouts of `EmbeddingUnit`."""
    cfg = config
    row_bits = ceil_log2(cfg.emb_map_rows + 1)
    table = data.StructLayout({
        "rows": unsigned(row_bits), "base": unsigned(cfg.axi_addr_bits),
        "row_shift": range(exact_log2(cfg.emb_dim) + 1), "map_base": range(cfg.emb_map_rows),
        "mult": unsigned(cfg.mult_bits), "shift": unsigned(cfg.shift_bits),
    })
    map_entry = data.StructLayout({"static": 1, "slot": range(cfg.static_rows)})
    data_bits = max(table.size, map_entry.size, cfg.emb_dim * 8)
    depth = max(cfg.emb_tables, cfg.emb_map_rows, cfg.static_rows)
    load = data.StructLayout({"target": 2, "addr": range(depth), "data": unsigned(data_bits)})
    req = data.StructLayout({"table": range(cfg.emb_tables), "id": unsigned(32), "last": 1})
    resp = data.StructLayout({"vec": data.ArrayLayout(signed(8), cfg.emb_dim), "error": 1})
    return table, map_entry, load, req, resp


class EmbeddingUnit(wiring.Component):
    """Static + dynamic embedding caches, lookup front end and pooling.

    Members
    -------
    load : In(stream.Signature(load_layout))
        Model load: per-table entries (rows, DRAM base, log2 row bytes, map base, pooling
        multiplier and shift), static-cache map entries (one per row of every table) and
        static-cache rows.
    req : In(stream.Signature(req_layout))
        One id per beat; ``last`` ends the bag.
    resp : Out(stream.Signature(resp_layout))
        One pooled, requantized int8 vector per bag (lanes beyond the table's row are 0).
    axi : Out(axi4_read_signature)
        DRAM (embedding tables), one burst of ``line_bytes`` per miss.
    err_valid, err_table, err_id, err_count : Out
        The first out-of-range id since ``err_clear`` and the number of bad ids.
    bus_err_valid, bus_err_table, bus_err_addr : Out
        The first line read answered with SLVERR / DECERR since ``err_clear``: the table
        of the lookup that missed and the line's DRAM byte address.
    lookups, static_hits, dynamic_hits, misses, dram_bytes, bags : Out(48)
        Counters since reset.
    """

    def __init__(self, config: RPAccelConfig):
        self.config = config
        (self.table_layout, self.map_layout, self.load_layout, self.req_layout,
         self.resp_layout) = emb_layouts(config)
        cfg = config
        super().__init__({
            "load": In(stream.Signature(self.load_layout)),
            "req": In(stream.Signature(self.req_layout)),
            "resp": Out(stream.Signature(self.resp_layout)),
            "axi": Out(axi4_read_signature(cfg.axi_addr_bits, cfg.axi_data_bits,
                                           max(1, ceil_log2(cfg.mshrs)))),
            "err_clear": In(1),
            "err_valid": Out(1), "err_table": Out(range(cfg.emb_tables)),
            "err_id": Out(32), "err_count": Out(32),
            "bus_err_valid": Out(1), "bus_err_table": Out(range(cfg.emb_tables)),
            "bus_err_addr": Out(cfg.axi_addr_bits),
            **{n: Out(48) for n in ("lookups", "static_hits", "dynamic_hits", "misses",
                                    "dram_bytes", "bags")},
        })

    def elaborate(self, platform):  # noqa: C901 (one pipeline, read top to bottom)
        m = Module()
        cfg = self.config
        D, L, W, S, M = cfg.emb_dim, cfg.line_bytes, cfg.cache_ways, cfg.cache_sets, cfg.mshrs
        beats = L * 8 // cfg.axi_data_bits
        line_shift = exact_log2(L)
        set_bits = exact_log2(S)
        tag_bits, age_bits = cache_state_bits(cfg)

        # ---- configuration registers and buffers loaded at model load -------------------
        table_regs = Array(Signal(self.table_layout.size, name=f"table{t}")
                           for t in range(cfg.emb_tables))

        class _Tables:
            def __getitem__(_, index):
                return self.table_layout(table_regs[index])

        tables = _Tables()
        m.submodules.map_mem = map_mem = Memory(shape=self.map_layout, depth=cfg.emb_map_rows,
                                                init=[])
        m.submodules.static_mem = static_mem = Memory(shape=unsigned(8 * D),
                                                      depth=cfg.static_rows, init=[])
        m.submodules.data_mem = data_mem = Memory(shape=unsigned(8 * L), depth=S * W, init=[])
        map_wr, map_rd = map_mem.write_port(), map_mem.read_port()
        st_wr, st_rd = static_mem.write_port(), static_mem.read_port()
        dm_wr, dm_rd = data_mem.write_port(), data_mem.read_port()
        ld = self.load.payload
        m.d.comb += [
            self.load.ready.eq(1),
            map_wr.addr.eq(ld.addr), map_wr.data.eq(ld.data),
            map_wr.en.eq(self.load.valid & (ld.target == EmbTarget.MAP)),
            st_wr.addr.eq(ld.addr), st_wr.data.eq(ld.data),
            st_wr.en.eq(self.load.valid & (ld.target == EmbTarget.STATIC)),
        ]
        with m.If(self.load.valid & (ld.target == EmbTarget.TABLE)):
            m.d.sync += table_regs[ld.addr[:max(1, ceil_log2(cfg.emb_tables))]].eq(ld.data)

        # ---- dynamic cache state: tags and LRU ages in LUT RAM, one memory per way read
        # by the set index (not flip-flops behind S:1 multiplexers spread over the die);
        # valid bits in registers (reset clears them). The ages start as a permutation
        # of the ways; a reset leaves them as they were, which changes no choice: a set's
        # ways are filled invalid-first, each touched once, before its ages pick a victim
        tag_mems = [Memory(shape=unsigned(tag_bits), depth=S, init=[]) for _ in range(W)]
        age_mems = [Memory(shape=unsigned(age_bits), depth=S, init=[w] * S) for w in range(W)]
        for w in range(W):
            m.submodules[f"tags{w}"] = tag_mems[w]
            m.submodules[f"ages{w}"] = age_mems[w]
        valids = [[Signal(name=f"valid{s}_{w}") for w in range(W)] for s in range(S)]

        # ---- MSHRs ----------------------------------------------------------------------
        mshr_busy = [Signal(name=f"mshr_busy{i}") for i in range(M)]
        mshr_sent = [Signal(name=f"mshr_sent{i}") for i in range(M)]
        mshr_full = [Signal(name=f"mshr_full{i}") for i in range(M)]
        mshr_line = [Signal(cfg.axi_addr_bits - line_shift, name=f"mshr_line{i}")
                     for i in range(M)]
        mshr_beat = [Signal(range(beats + 1), name=f"mshr_beat{i}") for i in range(M)]
        mshr_buf = [Signal(8 * L, name=f"mshr_buf{i}") for i in range(M)]
        mshr_err = [Signal(name=f"mshr_err{i}") for i in range(M)]  # SLVERR / DECERR seen
        # a way whose line came with an error response: its lookups are flagged
        poison = [[Signal(name=f"poison{s}_{w}") for w in range(W)] for s in range(S)]

        # ---- stage 0/1: accept a request, read the static map, classify ----------------
        req = self.req.payload
        s1_valid = Signal()
        s1 = Signal(self.req_layout)
        s1_done = Signal()
        adv = Signal()
        m.d.comb += [adv.eq(~s1_valid | s1_done), self.req.ready.eq(adv)]
        t0 = tables[req.table]
        m.d.comb += [map_rd.en.eq(adv), map_rd.addr.eq(t0.map_base + req.id)]
        # the row's byte address and the range check are registered beside the map read,
        # so that classification starts from the set index and tag
        byte_addr = Signal(cfg.axi_addr_bits)
        bad = Signal()
        with m.If(adv):
            m.d.sync += [s1_valid.eq(self.req.valid), s1.eq(req),
                         byte_addr.eq(t0.base + (req.id << t0.row_shift)),
                         bad.eq(req.id >= t0.rows)]

        is_static = Signal()
        m.d.comb += is_static.eq(~bad & map_rd.data.static)
        line = byte_addr[line_shift:]
        set_idx = Signal(range(S))
        tag = Signal(tag_bits)
        offset = Signal(range(L))
        m.d.comb += [set_idx.eq(line[:set_bits] if set_bits else 0), tag.eq(line[set_bits:]),
                     offset.eq(byte_addr[:line_shift])]
        tag_wr = [mem.write_port() for mem in tag_mems]
        age_wr = [mem.write_port() for mem in age_mems]
        set_tags, set_ages = [], []
        for w in range(W):
            t_rd = tag_mems[w].read_port(domain="comb")
            a_rd = age_mems[w].read_port(domain="comb")
            m.d.comb += [t_rd.addr.eq(set_idx), a_rd.addr.eq(set_idx),
                         tag_wr[w].addr.eq(set_idx), age_wr[w].addr.eq(set_idx)]
            set_tags.append(t_rd.data)
            set_ages.append(a_rd.data)
        set_valid = Array(Array(v for v in row) for row in valids)[set_idx]
        set_age = Array(set_ages)
        hit = Signal()
        hit_way = Signal(range(W))
        for w in reversed(range(W)):
            with m.If(set_valid[w] & (set_tags[w] == tag)):
                m.d.comb += [hit.eq(1), hit_way.eq(w)]
        victim = Signal(range(W))
        for w in range(W):  # the LRU way (age W-1) unless a way is still invalid
            with m.If(set_age[w] == W - 1):
                m.d.comb += victim.eq(w)
        for w in reversed(range(W)):
            with m.If(~set_valid[w]):
                m.d.comb += victim.eq(w)
        free = Signal()
        free_idx = Signal(range(M))
        for i in reversed(range(M)):
            with m.If(~mshr_busy[i]):
                m.d.comb += [free.eq(1), free_idx.eq(i)]

        # the in-order queue between classification and the data side
        entry_l = data.StructLayout({"kind": 2, "table": range(cfg.emb_tables),
                                     "slot": range(cfg.static_rows), "where": range(S * W),
                                     "offset": range(L), "mshr": range(M), "last": 1})
        BAD, STATIC, DYN, FILL = range(4)
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=entry_l.size, depth=16)
        entry = Signal(entry_l)
        m.d.comb += [queue.w_stream.payload.eq(entry), entry.table.eq(s1.table),
                     entry.slot.eq(map_rd.data.slot), entry.offset.eq(offset),
                     entry.mshr.eq(free_idx), entry.last.eq(s1.last)]
        way = Signal(range(W))
        m.d.comb += entry.where.eq(set_idx * W + way)
        miss = ~bad & ~is_static & ~hit
        m.d.comb += [queue.w_stream.valid.eq(s1_valid & (~miss | free)),
                     s1_done.eq(queue.w_stream.valid & queue.w_stream.ready)]
        with m.If(bad):
            m.d.comb += entry.kind.eq(BAD)
        with m.Elif(is_static):
            m.d.comb += entry.kind.eq(STATIC)
        with m.Elif(hit):
            m.d.comb += [entry.kind.eq(DYN), way.eq(hit_way)]
        with m.Else():
            m.d.comb += [entry.kind.eq(FILL), way.eq(victim)]

        cnt = {n: getattr(self, n) for n in ("lookups", "static_hits", "dynamic_hits",
                                             "misses", "dram_bytes", "bags")}
        with m.If(s1_done):
            with m.If(s1.last):
                m.d.sync += cnt["bags"].eq(cnt["bags"] + 1)
            with m.If(bad):
                m.d.sync += self.err_count.eq(self.err_count + 1)
                with m.If(~self.err_valid):
                    m.d.sync += [self.err_valid.eq(1), self.err_table.eq(s1.table),
                                 self.err_id.eq(s1.id)]
            with m.Else():
                m.d.sync += cnt["lookups"].eq(cnt["lookups"] + 1)
            with m.If(is_static):
                m.d.sync += cnt["static_hits"].eq(cnt["static_hits"] + 1)
            with m.Elif(~bad & hit):
                m.d.sync += cnt["dynamic_hits"].eq(cnt["dynamic_hits"] + 1)
            with m.Elif(miss):
                m.d.sync += [cnt["misses"].eq(cnt["misses"] + 1),
                             cnt["dram_bytes"].eq(cnt["dram_bytes"] + L)]
            # a miss's line goes into its way
            with m.If(miss):
                for s in range(S):
                    for w in range(W):
                        with m.If((set_idx == s) & (way == w)):
                            m.d.sync += valids[s][w].eq(1)
        # the touched way becomes the most recently used one of its set
        touch = Signal()
        acc_age = Signal(age_bits)
        m.d.comb += [touch.eq(s1_done & ~bad & ~is_static), acc_age.eq(set_age[way])]
        for w in range(W):
            m.d.comb += [
                age_wr[w].en.eq(touch),
                age_wr[w].data.eq(Mux(way == w, 0, Mux(set_ages[w] < acc_age,
                                                         set_ages[w] + 1, set_ages[w]))),
                tag_wr[w].en.eq(touch & miss & (way == w)), tag_wr[w].data.eq(tag)]
        with m.If(self.err_clear):
            m.d.sync += [self.err_valid.eq(0), self.bus_err_valid.eq(0)]

        # ---- AXI4: one burst per MSHR, ids = MSHR index ------------------------------
        axi = self.axi
        ar_pick = Signal(range(M))
        ar_any = Signal()
        # a request not taken is offered again unchanged (AXI): a miss that takes a lower
        # MSHR meanwhile waits its turn
        ar_hold = Signal()
        ar_held = Signal(range(M))
        for i in reversed(range(M)):
            with m.If(mshr_busy[i] & ~mshr_sent[i]):
                m.d.comb += [ar_any.eq(1), ar_pick.eq(i)]
        with m.If(ar_hold):
            m.d.comb += ar_pick.eq(ar_held)
        m.d.sync += [ar_hold.eq(axi.arvalid & ~axi.arready), ar_held.eq(ar_pick)]
        m.d.comb += [axi.arvalid.eq(ar_any),
                     axi.araddr.eq(Array(mshr_line)[ar_pick] << line_shift),
                     axi.arid.eq(ar_pick), axi.arlen.eq(beats - 1),
                     axi.arsize.eq(exact_log2(cfg.axi_data_bits // 8)), axi.arburst.eq(1),
                     axi.rready.eq(1)]
        for i in range(M):
            with m.If(axi.arvalid & axi.arready & (ar_pick == i)):
                m.d.sync += mshr_sent[i].eq(1)
            # beats count only for a request that was sent (a stray beat changes nothing)
            with m.If(axi.rvalid & (axi.rid == i) & mshr_sent[i] & ~mshr_full[i]):
                m.d.sync += mshr_beat[i].eq(mshr_beat[i] + 1)
                for k in range(beats):
                    with m.If(mshr_beat[i] == k):
                        m.d.sync += mshr_buf[i].word_select(k, cfg.axi_data_bits).eq(axi.rdata)
                with m.If(axi.rlast):
                    m.d.sync += mshr_full[i].eq(1)
                with m.If(axi.rresp >= 2):
                    m.d.sync += mshr_err[i].eq(1)
            with m.If(s1_done & miss & (free_idx == i)):
                m.d.sync += [mshr_busy[i].eq(1), mshr_sent[i].eq(0), mshr_full[i].eq(0),
                             mshr_beat[i].eq(0), mshr_line[i].eq(line), mshr_err[i].eq(0)]

        # ---- data side: the queue head reads its row; bags are summed ----------------
        head = Signal(entry_l)
        m.d.comb += head.eq(queue.r_stream.payload)
        c1_valid = Signal()
        c1 = Signal(entry_l)
        c1_line = Signal(8 * L)
        c_adv = Signal()
        m.submodules.requant = rq = BagRequant(cfg)
        m.d.comb += c_adv.eq(~c1_valid | ~c1.last | rq.i.ready)
        head_ready = (head.kind != FILL) | Array(mshr_full)[head.mshr]
        pop = Signal()
        m.d.comb += [pop.eq(queue.r_stream.valid & head_ready & c_adv),
                     queue.r_stream.ready.eq(pop),
                     st_rd.en.eq(c_adv), st_rd.addr.eq(head.slot),
                     dm_rd.en.eq(c_adv), dm_rd.addr.eq(head.where)]
        # the row comes from a line that DRAM answered with an error: a failed fill, or a
        # hit on a way such a fill left poisoned
        head_poisoned = Signal()
        with m.Switch(head.kind):
            with m.Case(FILL):
                m.d.comb += head_poisoned.eq(Array(mshr_err)[head.mshr])
            with m.Case(DYN):
                m.d.comb += head_poisoned.eq(
                    Array(Array(p for p in row) for row in poison)[head.where // W]
                    [head.where % W])
        c1_poisoned = Signal()
        with m.If(c_adv):
            m.d.sync += [c1_valid.eq(pop), c1.eq(head), c1_poisoned.eq(head_poisoned),
                         c1_line.eq(Array(mshr_buf)[head.mshr])]
        with m.If(pop & (head.kind == FILL)):
            m.d.comb += [dm_wr.en.eq(1), dm_wr.addr.eq(head.where),
                         dm_wr.data.eq(Array(mshr_buf)[head.mshr])]
            for i in range(M):
                with m.If(head.mshr == i):
                    m.d.sync += mshr_busy[i].eq(0)
            # a failed fill poisons its way and takes the line out of the cache, so the
            # next lookup of it reads DRAM again (lookups already counted as hits on it
            # are flagged); a good fill cures the way
            for st in range(S):
                for w in range(W):
                    with m.If(head.where == st * W + w):
                        m.d.sync += poison[st][w].eq(head_poisoned)
                        refill = s1_done & miss & (set_idx == st) & (way == w)
                        with m.If(head_poisoned & ~refill):
                            m.d.sync += valids[st][w].eq(0)
            with m.If(head_poisoned & ~self.bus_err_valid):
                m.d.sync += [self.bus_err_valid.eq(1), self.bus_err_table.eq(head.table),
                             self.bus_err_addr.eq(Array(mshr_line)[head.mshr] << line_shift)]

        src_line = Mux(c1.kind == FILL, c1_line, dm_rd.data)
        shifted = Signal(8 * L)
        m.d.comb += shifted.eq(src_line >> (c1.offset << 3))
        row = Signal(8 * D)
        with m.Switch(c1.kind):
            with m.Case(STATIC):
                m.d.comb += row.eq(st_rd.data)
            with m.Case(DYN, FILL):
                m.d.comb += row.eq(shifted[:8 * D])
        row_bytes = Signal(range(D + 1))
        m.d.comb += row_bytes.eq(1 << tables[c1.table].row_shift)
        acc = [Signal(signed(cfg.acc_bits), name=f"pool{j}") for j in range(D)]
        bag_err = Signal()
        first = Signal(init=1)
        new_acc = []
        for j in range(D):
            v = Mux(j < row_bytes, row.word_select(j, 8).as_signed(), 0)
            na = Signal(signed(cfg.acc_bits), name=f"pool_next{j}")
            m.d.comb += na.eq(Mux(first, 0, acc[j]) + v)
            new_acc.append(na)
        new_err = Mux(first, 0, bag_err) | (c1.kind == BAD) | c1_poisoned
        with m.If(c1_valid & c_adv):
            m.d.sync += [a.eq(n) for a, n in zip(acc, new_acc, strict=True)]
            m.d.sync += [bag_err.eq(new_err), first.eq(c1.last)]
        tl = tables[c1.table]
        m.d.comb += [rq.i.valid.eq(c1_valid & c1.last),
                     rq.i.payload.mult.eq(tl.mult), rq.i.payload.shift.eq(tl.shift),
                     rq.i.payload.error.eq(new_err), rq.i.payload.width_shift.eq(tl.row_shift)]
        m.d.comb += [rq.i.payload.acc[j].eq(new_acc[j]) for j in range(D)]
        wiring.connect(m, rq.o, wiring.flipped(self.resp))

        if platform == "formal":
            # every set's tags and ages through read ports of their own
            tags = [[None] * W for _ in range(S)]
            ages = [[None] * W for _ in range(S)]
            for s in range(S):
                for w in range(W):
                    for mems, out in ((tag_mems, tags), (age_mems, ages)):
                        rd = mems[w].read_port(domain="comb")
                        m.d.comb += rd.addr.eq(s)
                        out[s][w] = rd.data
            for s in range(S):
                for w in range(W):
                    for v in range(w):
                        # a line is in a set at most once; LRU ages stay a permutation
                        m.d.comb += [
                            Assert(~(valids[s][w] & valids[s][v] & (tags[s][w] == tags[s][v]))),
                            Assert(ages[s][w] != ages[s][v])]
                    m.d.comb += Assert(ages[s][w] < W)
            # a line arrives only for a request that was sent
            for i in range(M):
                m.d.comb += Assert(~mshr_full[i] | mshr_sent[i])
            # a request offered and not taken is still waiting to be sent
            with m.If(ar_hold):
                m.d.comb += Assert(Array(mshr_busy)[ar_held] & ~Array(mshr_sent)[ar_held])
        return m
