"""Exact streaming top-k for large k: pipelined binary min-heaps in RAM."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib.memory import Memory
from amaranth.utils import bits_for

from .topk import TopKPorts, _key, _unkey, best_of

__all__ = ["TopKHeap"]


class _Ram:
    """A RAM with one write port (``chunks`` write enables) and one read port whose data
    follows its address by one cycle and already shows a write of the same cycle. A depth
    of one is a register, deeper ones `amaranth.lib.memory.Memory`, which Yosys maps to
    LUT RAM or block RAM by size. (Until the seventh session depths up to 4 were
    registers behind a read multiplexer: 4 x 94 flip-flops and their wiring per heap
    level of 4 pairs, where LUT RAM decodes the address inside the RAM; at 4 lanes,
    k = 16 the change took 14,229 flip-flops to 5,253 and made the design routable.)
    Like a block RAM, the register is not reset: the owner initialises what it reads."""

    def __init__(self, m, name, width, depth, chunks=1):
        self.depth = depth
        # a depth-1 RAM ignores its addresses; one bit, not zero (no [-1:0] in Verilog)
        self.raddr = Signal(range(max(depth, 2)), name=f"{name}_raddr")
        self.rdata = Signal(width, name=f"{name}_rdata")
        self.we = Signal(chunks, name=f"{name}_we")
        self.waddr = Signal(range(max(depth, 2)), name=f"{name}_waddr")
        self.wdata = Signal(width, name=f"{name}_wdata")
        g = width // chunks
        if depth == 1:
            word = Signal(width, name=f"{name}_w0", reset_less=True)
            for c in range(chunks):
                with m.If(self.we[c]):
                    m.d.sync += word[c * g:(c + 1) * g].eq(self.wdata[c * g:(c + 1) * g])
            m.d.comb += self.rdata.eq(word)
        else:
            mem = Memory(shape=width, depth=depth, init=[])
            m.submodules[name] = mem
            wp = mem.write_port(granularity=g) if chunks > 1 else mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            m.d.comb += [wp.addr.eq(self.waddr), wp.data.eq(self.wdata), wp.en.eq(self.we),
                         rp.addr.eq(self.raddr), self.rdata.eq(rp.data)]


class _Heap:
    """One pipelined min-heap of ``cap`` nodes, one level per pipeline stage.

    Every operation is "replace the root by x and sift x down" (x enters only if it
    ranks above the root, or always for a pop). Level l + 1 is stored as sibling pairs,
    read one cycle ahead with the address the previous stage decided; operations must be
    at least two cycles apart, so a level is never read before the operation ahead has
    written it (no forwarding, no comparator chain between stages).

    Stored words are ``{value, gen}``: a word whose ``gen`` differs from the bank's
    current ``gen`` is stale and ranks below every live word (it pops as empty, 0), so a
    drained heap (all its nodes overwritten by the pops' all-ones sentinel under the old
    ``gen``) is empty again without a clearing pass. A stale child that moves up keeps
    its ``gen``. After reset (``gen`` back to 1) ``clearing`` only writes ``gen = 0``
    into every word: the value bits are not reset (nor are the pipeline registers), since
    a stale word ranks below every live one whatever its value, and the order of stale
    words among themselves never matters (they are all empty). This keeps the reset
    net and the clearing multiplexers off the 2 x 47-bit level words.
    """

    def __init__(self, m, name, cap, ew, gen, clearing, clr_addr):
        self.op_valid = Signal(name=f"{name}_op")
        self.op_x = Signal(ew, name=f"{name}_x")
        self.pop = Signal(name=f"{name}_pop")
        self.popped = Signal(ew, name=f"{name}_popped")
        rw = ew + 1
        n_levels = cap.bit_length()

        def rank(raw):
            # comparison key {live, value}: a word of another gen ranks below every live
            # word (even an empty 0), so it needs no decoding mux on the read path
            return Cat(raw[:ew], raw[ew] == gen)

        root = Signal(rw, name=f"{name}_root", reset_less=True)
        m.d.comb += self.popped.eq(Mux(root[ew] == gen, root[:ew], 0))
        # level l (1..n_levels-1) holds 2**l nodes as 2**(l-1) sibling pairs
        levels = {l: _Ram(m, f"{name}_lv{l}", 2 * rw, 1 << (l - 1), chunks=2)
                  for l in range(1, n_levels)}

        valid, x, j = self.op_valid, self.op_x, Const(0, 1)
        for l in range(n_levels):
            xk = Cat(x, Const(1, 1))
            if l == 0:
                apply = Signal(name=f"{name}_apply")
                m.d.comb += apply.eq(valid & (self.pop | (xk > rank(root))))
            else:
                apply = valid
            cont = Signal(name=f"{name}_cont{l}")
            w = Signal(rw, name=f"{name}_w{l}")
            if l + 1 < n_levels:
                pair = levels[l + 1].rdata
                lim = cap - (1 << (l + 1))  # children 2j + s exist while 2j + s <= lim
                raw = [pair[s * rw:(s + 1) * rw] for s in range(2)]
                key = []
                for s in range(2):
                    k_s = rank(raw[s])
                    key.append(k_s if lim >= (1 << (l + 1)) - 1
                               else Mux(Cat(Const(s, 1), j) <= lim, k_s, (1 << rw) - 1))
                # the three comparisons in parallel: which child is smaller, and does x
                # sink below each (a missing child ranks all-ones: x never sinks into it)
                which = Signal(name=f"{name}_which{l}")
                gt = [Signal(name=f"{name}_gt{l}_{s}") for s in range(2)]
                m.d.comb += [which.eq(key[1] < key[0]), gt[0].eq(xk > key[0]),
                             gt[1].eq(xk > key[1]),
                             cont.eq(apply & Mux(which, gt[1], gt[0])),
                             # the smaller child moves up with its own gen bit
                             w.eq(Mux(cont, Mux(which, raw[1], raw[0]), Cat(x, gen)))]
            else:
                m.d.comb += [cont.eq(0), w.eq(Cat(x, gen))]
            if l == 0:
                with m.If(clearing):
                    m.d.sync += root[ew].eq(0)
                with m.Elif(apply):
                    m.d.sync += root.eq(w)
            else:
                lv = levels[l]
                wd = Cat(w[:ew], w[ew] & ~clearing)
                m.d.comb += [lv.we.eq(Mux(clearing, 0b11, Mux(apply, Mux(j[0], 0b10, 0b01), 0))),
                             lv.waddr.eq(Mux(clearing, clr_addr[:len(lv.waddr)],
                                             j[1:] if l > 1 else 0)),
                             lv.wdata.eq(Cat(wd, wd))]
            if l + 1 < n_levels:
                nj = Cat(which, j)
                if l + 2 < n_levels:
                    m.d.comb += levels[l + 2].raddr.eq(nj)
                sv = Signal(name=f"{name}_v{l + 1}")
                sx = Signal(ew, name=f"{name}_x{l + 1}", reset_less=True)
                sj = Signal(l + 1, name=f"{name}_j{l + 1}", reset_less=True)
                m.d.sync += [sv.eq(cont), sx.eq(x), sj.eq(nj)]
                valid, x, j = sv, sx, sj


class TopKHeap(TopKPorts):
    """Exact streaming top-k for large k, in RAM: same ports and results as `TopK`.

    Structure: every lane feeds two pipelined binary min-heaps of ``topk_k`` nodes (even
    and odd beats, so each heap takes an operation every other cycle), each holding the
    best ``topk_k`` items it has seen: an item enters only when it ranks above the heap's
    root (its worst), replacing it and sinking one level per cycle. Levels below the
    first live in LUT RAM or block RAM; the logic is one comparator pair per level, so
    area grows with lanes x log2(k) instead of lanes x k. After ``last`` every heap is
    popped ``topk_k`` times (worst first, one pop every other cycle) into a stack RAM,
    then the ``2 x lanes`` stacks are read from the top and merged by a comparator tree,
    best first, ``min(k, N)`` items.

    Two banks of heaps alternate (one fills while the other drains); the producer waits
    only when a query is shorter than the previous drain, about ``2 * topk_k + k`` cycles.
    After reset the unit clears its RAMs (``2**(log2(topk_k) - 2)`` cycles, not ready).

    Parameters
    ----------
    config : RPAccelConfig
        Uses ``topk_lanes``, ``topk_k``, ``topk_id_bits`` and ``score_bits``.

    Members
    -------
    i : In(stream.Signature(in_layout))
    o : Out(stream.Signature(out_layout))
    """

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n_lanes, cap = cfg.topk_lanes, cfg.topk_k
        kw = cfg.score_bits + cfg.topk_id_bits
        ew = kw + 2  # {key, valid, done}: empty = 0 < any item < all-ones sentinel
        n_levels = cap.bit_length()
        runs = 2 * n_lanes

        # -- clearing after reset: heap RAMs may hold stale words of the current gen -----
        clr_depth = max(1, 1 << max(0, n_levels - 2))
        clearing = Signal(init=1)
        clr = Signal(range(clr_depth + 1))
        with m.If(clearing):
            m.d.sync += clr.eq(clr + 1)
            with m.If(clr == clr_depth - 1):
                m.d.sync += clearing.eq(0)

        draining = [Signal(name=f"draining{b}") for b in range(self.BANKS)]
        bank_k = [Signal(bits_for(cap), name=f"k{b}") for b in range(self.BANKS)]
        gen = [Signal(init=1, name=f"gen{b}") for b in range(self.BANKS)]
        fill = Signal(range(self.BANKS))
        drain = Signal(range(self.BANKS))
        parity = Signal()

        # -- fill: register the beat, then one heap operation per valid lane --------------
        m.d.comb += self.i.ready.eq(~clearing & ~Mux(fill, draining[1], draining[0]))
        accept = self.i.valid & self.i.ready
        in_any = Signal()
        # data registers are not reset (in_any, the heaps' valid chain and the control
        # are): fewer loads on the reset net
        in_bank = Signal(range(self.BANKS), reset_less=True)
        in_par = Signal(reset_less=True)
        in_v = [Signal(name=f"in_v{q}", reset_less=True) for q in range(n_lanes)]
        in_x = [Signal(ew, name=f"in_x{q}", reset_less=True) for q in range(n_lanes)]
        m.d.sync += in_any.eq(accept)
        with m.If(accept):
            m.d.sync += [in_bank.eq(fill), in_par.eq(parity), parity.eq(~parity)]
            for q in range(n_lanes):
                lane = self.i.payload.lanes[q]
                m.d.sync += [in_v[q].eq(lane.valid),
                             in_x[q].eq(Cat(_key(cfg, lane.id, lane.score), Const(1, 1),
                                            Const(0, 1)))]
            with m.If(self.i.payload.last):
                m.d.sync += fill.eq(fill + 1)
                for b in range(self.BANKS):
                    with m.If(fill == b):
                        m.d.sync += [draining[b].eq(1), bank_k[b].eq(self.i.payload.k)]

        # -- drain engine: POP every heap of the bank into the stacks, LOAD, MERGE --------
        pop_end = 2 + 2 * cap + n_levels + 1
        cnt = Signal(range(pop_end + 1))
        pop_issue = Signal()
        pidx = Signal(range(cap))
        m.d.comb += pidx.eq((cnt - 2) >> 1)

        heaps = [[[_Heap(m, f"h{b}_{q}_{p}", cap, ew, gen[b], clearing, clr)
                   for p in range(2)] for q in range(n_lanes)] for b in range(self.BANKS)]
        for b in range(self.BANKS):
            popping = pop_issue & (drain == b)
            for q in range(n_lanes):
                for p in range(2):
                    h = heaps[b][q][p]
                    fill_op = in_any & in_v[q] & (in_bank == b) & (in_par == p)
                    m.d.comb += [h.op_valid.eq(fill_op | popping), h.pop.eq(popping),
                                 h.op_x.eq(Mux(popping, (1 << ew) - 1, in_x[q]))]

        stacks = []
        for q in range(n_lanes):
            for p in range(2):
                st = _Ram(m, f"stack{q}_{p}", kw + 1, cap)
                popped = Mux(drain, heaps[1][q][p].popped, heaps[0][q][p].popped)
                m.d.comb += [st.we.eq(pop_issue), st.waddr.eq(pidx),
                             st.wdata.eq(popped[:kw + 1])]
                stacks.append(st)

        h0 = [Signal(kw + 1, name=f"head{r}", reset_less=True) for r in range(runs)]
        h1 = [Signal(kw + 1, name=f"next{r}", reset_less=True) for r in range(runs)]
        ptr = [Signal(range(-2, cap), name=f"ptr{r}") for r in range(runs)]
        emitted = Signal(bits_for(cap))
        k_now = Mux(drain, bank_k[1], bank_k[0])

        def clamp(v):
            return Mux(v < 0, 0, v)[:len(stacks[0].raddr)]

        # comparator tree over the run heads (an empty head is 0 and never wins)
        top, top_r = best_of(m, h0, "t")
        rest = Const(0, 1)
        for r in range(runs):
            rest = rest | Mux(top_r == r, h1[r][kw], h0[r][kw])

        can_emit = ~self.o.valid | self.o.ready
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(Mux(drain, draining[1], draining[0])):
                    m.d.sync += cnt.eq(0)
                    m.next = "POP"
            with m.State("POP"):
                # the bank's last fill operation entered its heap at most one cycle ago:
                # the first pop waits two cycles; the rest flush the pipeline
                m.d.sync += cnt.eq(cnt + 1)
                m.d.comb += pop_issue.eq((cnt >= 2) & (cnt < 2 + 2 * cap) & ~cnt[0])
                with m.If(cnt == pop_end):
                    m.d.sync += cnt.eq(0)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += cnt.eq(cnt + 1)
                for r, st in enumerate(stacks):
                    with m.Switch(cnt):
                        with m.Case(0):
                            m.d.comb += st.raddr.eq(cap - 1)
                        with m.Case(1):
                            m.d.sync += h0[r].eq(st.rdata)
                            m.d.comb += st.raddr.eq(max(cap - 2, 0))
                        with m.Case(2):
                            m.d.sync += [h1[r].eq(st.rdata if cap >= 2 else 0),
                                         ptr[r].eq(cap - 3)]
                            m.d.comb += st.raddr.eq(max(cap - 3, 0))
                with m.If(cnt == 2):
                    m.next = "MERGE"
            with m.State("MERGE"):
                finish = ~top[kw] | (emitted >= k_now)
                emit = ~finish & can_emit
                for r, st in enumerate(stacks):
                    with m.If(emit & (top_r == r)):
                        m.d.sync += [h0[r].eq(h1[r]),
                                     h1[r].eq(Mux(ptr[r] >= 0, st.rdata, 0)),
                                     ptr[r].eq(ptr[r] - 1)]
                        m.d.comb += st.raddr.eq(clamp(ptr[r] - 1))
                    with m.Else():
                        m.d.comb += st.raddr.eq(clamp(ptr[r]))
                with m.If(emit):
                    top_id, top_score = _unkey(cfg, top[:kw])
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.id.eq(top_id),
                                 self.o.payload.score.eq(top_score),
                                 self.o.payload.last.eq(~rest | (emitted + 1 >= k_now)),
                                 emitted.eq(emitted + 1)]
                with m.If(finish):
                    m.d.sync += [emitted.eq(0), drain.eq(drain + 1)]
                    for b in range(self.BANKS):
                        with m.If(drain == b):
                            m.d.sync += [draining[b].eq(0), gen[b].eq(~gen[b])]
                    m.next = "IDLE"
        return m
