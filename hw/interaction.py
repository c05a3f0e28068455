"""Feature interaction unit of the MLP engine: DLRM's ``dot`` (the bottom output copied,
then the strictly lower triangle of the feature dot products) or ``cat`` (every feature
copied), ``inter_pairs`` pairs per cycle, ``inter_pairs * inter_slots`` when the features
are narrow.

Per item the unit reads the item's features (the bottom MLP's output and the pooled
embeddings in the engine's feature region, `rpaccel.interface.feature_place`) into one of
two register files, ``dw`` words per feature, two register-file words per cycle over the
activation buffer's two read ports, while it emits the previous item from the other. With
``pack`` p > 0 the pooled vectors lie ``2**p`` to a word: the unit reads a word once per
feature in it and shifts the feature's slot down to lane 0 (lanes beyond ``d`` are never
used). An item's output bytes go out in order: the copied values a
word per cycle, then the pairs in DLRM order (1,0), (2,0), (2,1), (3,0), ...,
``inter_pairs`` at a time, each pair's dot product summed over its ``dw`` words in int32
and requantized with the pair's multiplier and shift (`RequantUnit`, no bias, no ReLU:
docs/numerics.md). With ``inter_slots`` Q > 1 each register-file word is Q slots of
``lanes / Q`` lanes, each its own memory with its own read address: when a step's features
fit a slot (``d <= lanes / Q``, "narrow") every slot holds the feature's first values and
each of the ``inter_pairs`` products computes Q pairs, one per slot (Q times the pairs per
cycle, ``inter_pairs * Q`` requantizers); wider features fill the slots with consecutive
lanes and read them at one address, one pair per product. A packer gathers the byte
stream into activation words and writes them into the destination region, the last word of
an item with byte enables in the cycle of its last bytes. Items follow each other without
a gap: a register file is full from the cycle its last words land, is handed back to the
reader three operations before its item's last, and the next item's first operation
follows the last one's, unless that operation completes a word with bytes left over (their
write takes the next cycle). `rpaccel.perf.EngineTiming.interaction_schedule` gives the
busy cycles and the cycle of every write.
"""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2, exact_log2

from ..config import RPAccelConfig
from ..interface import clamp_pack, max_feature_pack, pair_layout, pair_row_len
from .arith import lut_mul
from .requant import RequantUnit, delay_line

__all__ = ["InteractionUnit"]


class InteractionUnit(wiring.Component):
    """The interaction step of one engine run (see the module docstring).

    Parameters
    ----------
    config : RPAccelConfig
    lanes : int
        int8 values per activation word (`rpaccel.interface.EngineGeometry.lanes`).
    words : int
        Words per item and region (the register file holds one region's words).

    Members
    -------
    go : In(1)
        Start on ``items`` items with the step's ``cat``, ``feats``, ``d``, ``dw``, ``pack``; the
        inputs are valid from the cycle before ``go`` and hold until ``busy`` falls.
    busy : Out(1)
        High from the cycle after ``go`` until the last output word is written.
    rd_item, rd_word : Out
        Feature word to read (item, word of the feature region) on read ports A and B
        (``rd_word`` and ``rd_word + 1``); the data come back on ``rd_a`` / ``rd_b`` the
        next cycle.
    rd_en : Out(1)
    wr_en : Out(lanes)
        Byte enables of an output word write at (``wr_item``, ``wr_word``) of the
        destination region, data ``wr_data``.
    pair_row : Out, pair_data : In(rpaccel.interface.pair_layout)
        Pair-parameter row read combinationally (pairs ``row * inter_pairs *
        inter_slots ...``).
    """

    def __init__(self, config: RPAccelConfig, lanes: int, words: int):
        self.config = config
        self.lanes = lanes
        self.words = words
        cfg = config
        SB = cfg.sub_batch
        self.pair_l = pair_layout(cfg)
        super().__init__({
            "go": In(1), "items": In(range(SB + 1)), "cat": In(1), "feats": In(range(65)),
            "d": In(range(cfg.max_width + 1)), "dw": In(range(words + 1)),
            "pack": In(range(max_feature_pack(lanes) + 1)),
            "busy": Out(1),
            "rd_en": Out(1), "rd_item": Out(range(SB)), "rd_word": Out(range(words + 1)),
            "rd_a": In(unsigned(8 * lanes)), "rd_b": In(unsigned(8 * lanes)),
            "wr_en": Out(lanes), "wr_item": Out(range(SB)), "wr_word": Out(range(words + 1)),
            "wr_data": Out(unsigned(8 * lanes)),
            "pair_row": Out(range(-(-cfg.max_pairs // pair_row_len(cfg)) + 1)),
            "pair_data": In(self.pair_l),
        })

    def elaborate(self, platform):  # noqa: C901 (sequencer, datapath and packer in order)
        m = Module()
        cfg = self.config
        A, W, P, SB = self.lanes, self.words, cfg.inter_pairs, cfg.sub_batch
        Q = cfg.inter_slots
        S = A // Q                          # lanes of a slot
        fb = max(1, ceil_log2(65))
        narrow = Signal()                   # features fit a slot: Q pairs per product
        if Q > 1:
            m.d.sync += narrow.eq(self.d <= S)

        # ---- two register files of feature words: one fills while the other emits --------
        # Held in small memories (LUT RAM, not flip-flops and wide multiplexers): word w of
        # bank b at address b * H + w // F of memory w mod F (F = inter_banks), so the F
        # consecutive words landed per cycle go through one write port each; every read
        # operand (and, with Q > 1, every slot of it) has its own copy of the F memories.
        F = cfg.inter_banks
        fl = exact_log2(F)
        hb = ceil_log2(-(-W // F))
        H = 1 << hb
        e_bank = Signal()                   # bank being emitted
        reads = 2 * P

        def name(base, r, q, k=None):
            return f"{base}{r}" + ("" if k is None else f"_{k}") + (f"s{q}" if Q > 1 else "")

        mems = []                           # mems[r][q][k] = (write port, read port)
        for r in range(reads):
            slots = []
            for q in range(Q):
                ports = []
                for k in range(F):
                    mem = Memory(shape=unsigned(8 * S), depth=2 * H, init=[])
                    m.submodules[name("freg", r, q, k)] = mem
                    ports.append((mem.write_port(), mem.read_port()))
                slots.append(ports)
            mems.append(slots)
        # read address of every operand's slot (one per operand unless Q > 1)
        r_addr = [[Signal(range(64 * W + 2), name=name("raddr", r, q)) for q in range(Q)]
                  for r in range(reads)]
        r_en = Signal()
        r_data = []
        for r in range(reads):
            parts = []
            for q in range(Q):
                sel = Signal(fl, name=name("rsel", r, q))
                for _, port in mems[r][q]:
                    m.d.comb += [port.en.eq(r_en),
                                 port.addr.eq(Cat(r_addr[r][q][fl:fl + hb], e_bank))]
                with m.If(r_en):
                    m.d.sync += sel.eq(r_addr[r][q][:fl])
                parts.append(Array(port.data for _, port in mems[r][q])[sel])
            r_data.append(Cat(*parts))
        full = Array(Signal(name=f"full{k}") for k in range(2))
        # the step's sizes are registered every cycle (they hold from the cycle before go):
        # no multiplier between the program memory and the unit's state
        total = Signal(range(64 * W + 1))  # feature words of an item
        m.d.sync += total.eq(lut_mul(self.feats, self.dw))
        f_item = Signal(range(SB + 1))      # item being read
        f_bank = Signal()
        fidx = Signal(range(64 * W + F + 1))  # next word to read
        land_bank = Signal()
        # where register-file word w lies: unpacked, word w; packed, feature w > 0 in word
        # 1 + (w - 1) >> pack at lane ((w - 1) << (log2 A - pack)) mod A. Per cycle c words
        # land (unpacked 2, packed min(F, 2**pack)): they lie in at most two words, read
        # on ports A (the word of fidx) and B (the next)
        la = ceil_log2(A)
        slot_log = Signal(range(la + 1))    # log2 lanes of a slot
        pack = Signal(range(max_feature_pack(A) + 1))
        m.d.comb += [pack.eq(clamp_pack(self.pack, A)), slot_log.eq(la - pack)]
        c = Signal(range(F + 1))
        if F == 2:
            m.d.comb += c.eq(2)
        else:
            per_word = Signal(range(A + 1))
            m.d.comb += [per_word.eq(Const(1, range(A + 1)) << pack),
                         c.eq(Mux(pack == 0, 2, Mux(per_word > F, F, per_word)))]

        def place(w):
            """(activation word, lane) of register-file word ``w``."""
            alone = (pack == 0) | (w == 0)
            return (Mux(alone, w, 1 + ((w - 1) >> pack)),
                    Mux(alone, 0, ((w - 1) << slot_log)[:max(1, la)]))

        src = Signal(range(64 * W + F + 1))
        m.d.comb += src.eq(place(fidx)[0])
        base = Signal.like(fidx)
        m.d.comb += base.eq(Cat(Const(0, fl), fidx[fl:]))
        lands = []
        reading = Signal()                  # a read cycle: this cycle's words land next
        for k in range(F):
            # memory k takes the word of this cycle's c with index k mod F
            wk = Signal(range(64 * W + 2 * F + 1), name=f"fword{k}")
            m.d.comb += wk.eq(Mux(base + k >= fidx, base + k, base + k + F))
            land = {"v": Signal(name=f"land{k}"), "addr": Signal(range(64 * W // F + 3),
                                                                 name=f"land_addr{k}"),
                    "b": Signal(name=f"land_b{k}"), "sh": Signal(range(A), name=f"land_sh{k}")}
            lands.append(land)
            m.d.sync += land["v"].eq(0)
            word_k, lane_k = place(wk)
            with m.If(reading):
                m.d.sync += [land["v"].eq((wk < fidx + c) & (wk < total)),
                             land["addr"].eq(wk >> fl), land["b"].eq(word_k != src),
                             land["sh"].eq(lane_k)]
        for k, land in enumerate(lands):
            word = Signal(8 * A, name=f"fdata{k}")
            m.d.comb += word.eq(Mux(land["b"], self.rd_b, self.rd_a) >> (land["sh"] * 8))
            for r in range(reads):
                for q in range(Q):
                    wp, _ = mems[r][q][k]
                    # narrow: every slot holds the feature's first values; else its own lanes
                    d = word[8 * S * q:8 * S * (q + 1)]
                    if q:
                        d = Mux(narrow, word[:8 * S], d)
                    m.d.comb += [wp.en.eq(land["v"]), wp.addr.eq(Cat(land["addr"][:hb],
                                                                     land_bank)),
                                 wp.data.eq(d)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [f_item.eq(0), f_bank.eq(0), fidx.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                # c words per cycle into a free register file; it counts as full from the
                # cycle after its last read, when those words land: the emitter reads it
                # a cycle later still
                with m.If(~full[f_bank]):
                    m.d.comb += [self.rd_en.eq(1), self.rd_item.eq(f_item),
                                 self.rd_word.eq(src)]
                    m.d.comb += reading.eq(1)
                    m.d.sync += [land_bank.eq(f_bank), fidx.eq(fidx + c)]
                    with m.If(fidx + c >= total):
                        m.d.sync += [full[f_bank].eq(1), f_bank.eq(~f_bank), fidx.eq(0),
                                     f_item.eq(f_item + 1)]
                        with m.If(f_item + 1 == self.items):
                            m.next = "IDLE"
        item = Signal(range(SB + 1))        # item being emitted

        # ---- output sequence: copies (word chunks), then pair groups ----------------------
        pairs = Signal(range(64 * 63 // 2 + 1))
        m.d.sync += pairs.eq(lut_mul(self.feats, self.feats - 1) >> 1)
        cf = Signal(range(65))            # copy: feature
        cw = Signal(range(W + 1))         # copy: word within the feature
        g = Signal(range(64 * 32 + 1))    # pair group
        gw = Signal(range(W + 1))         # word of the group's pairs
        PQ = P * Q                        # pairs of a group when narrow
        bi = [Signal(fb, name=f"pi{k}") for k in range(PQ + 1)]   # group base pair (i, j) ...
        bj = [Signal(fb, name=f"pj{k}") for k in range(PQ + 1)]
        base_i, base_j = Signal(fb), Signal(fb)
        # lane k of a group is pair g * P + k (narrow: g * P * Q + k): the base advanced k
        # steps along the triangle
        m.d.comb += [bi[0].eq(base_i), bj[0].eq(base_j)]
        for k in range(PQ):
            wrap = bj[k] + 1 == bi[k]
            m.d.comb += [bi[k + 1].eq(Mux(wrap, bi[k] + 1, bi[k])),
                         bj[k + 1].eq(Mux(wrap, 0, bj[k] + 1))]
        next_i, next_j = Signal(fb), Signal(fb)
        m.d.comb += [next_i.eq(Mux(narrow, bi[PQ], bi[P])),
                     next_j.eq(Mux(narrow, bj[PQ], bj[P]))]

        # issue stage outputs (registered): one op per cycle
        op_l = data.StructLayout({"copy": 1, "count": range(A + 1), "first": 1, "emit": 1,
                                  "last": 1, "item": range(SB), "group": range(64 * 32 + 1),
                                  "rem": range(cfg.max_width + 1)})
        op = Signal(op_l)
        op_v = Signal()
        opa = r_data[:P]
        opb = r_data[P:]
        m.d.sync += op_v.eq(0)

        d_rem = Signal(range(cfg.max_width + 1))  # values of the feature left from word cw
        m.d.comb += d_rem.eq(self.d - cw * A)
        g_rem = Signal(range(cfg.max_width + 1))
        m.d.comb += g_rem.eq(self.d - gw * A)
        copies = Signal(range(65))
        m.d.comb += copies.eq(Mux(self.cat, self.feats, 1))
        groups = Signal.like(g)
        rate = Signal(range(PQ + 1))        # pairs per group
        g_first = Signal(range(64 * 64))    # the group's first pair
        if Q > 1:
            m.d.comb += [groups.eq(Mux(narrow, (pairs + PQ - 1) // PQ, (pairs + P - 1) // P)),
                         rate.eq(Mux(narrow, PQ, P)), g_first.eq(Mux(narrow, g * PQ, g * P))]
        else:
            m.d.comb += [groups.eq((pairs + P - 1) // P), rate.eq(P), g_first.eq(g * P)]
        pipe_busy = Signal()
        # the packer's fill as the ops leave: an item whose last op completes a word with
        # bytes left over has its last, partial word written a cycle later, so the next
        # item's first op waits a cycle (WAIT); otherwise it follows at once when its
        # register file is full
        efill = Signal(range(A + 1))
        e_count = Signal(range(A + 1))
        e_new = Signal(range(2 * A + 1))
        e_last = Signal()                   # this cycle issues an item's last op
        m.d.comb += e_new.eq(efill + e_count)
        with m.If(e_new >= A):
            m.d.sync += efill.eq(e_new - A)
        with m.Else():
            m.d.sync += efill.eq(e_new)
        with m.If(e_last):
            m.d.sync += efill.eq(0)
        go_on = Signal()
        m.d.comb += go_on.eq((e_new <= A) & full[~e_bank] & (item + 1 != self.items))
        # an item's register file is handed back to the reader three operations before its
        # last (at its first with fewer): the words read into it then land after the
        # emitter's last read of it
        e_ops = Signal(range(64 * W + 64 * 32 * W + 1))   # operations of an item
        m.d.sync += e_ops.eq(Mux(self.cat, total, self.dw + lut_mul(groups, self.dw)))
        ops_left = Signal.like(e_ops)
        e_op = Signal()                     # this cycle issues an operation
        with m.If(e_op):
            m.d.sync += ops_left.eq(ops_left - 1)
            with m.If(ops_left == Mux(e_ops > 3, 3, e_ops)):
                m.d.sync += full[e_bank].eq(0)

        def start_item():
            m.d.sync += [cf.eq(0), cw.eq(0), g.eq(0), gw.eq(0), base_i.eq(1), base_j.eq(0),
                         ops_left.eq(e_ops)]
            m.next = "COPY"

        def next_item():
            m.d.sync += [item.eq(item + 1), e_bank.eq(~e_bank)]
            with m.If(go_on):
                start_item()
            with m.Else():
                m.next = "WAIT"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [self.busy.eq(1), item.eq(0), e_bank.eq(0)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(item == self.items):
                    m.next = "DRAIN"
                with m.Elif(full[e_bank]):
                    start_item()
            with m.State("COPY"):
                # feature cf word cw: min(A, d - cw * A) values
                m.d.comb += [e_count.eq(Mux(d_rem > A, A, d_rem)), e_op.eq(1)]
                m.d.sync += [op_v.eq(1), op.copy.eq(1), op.count.eq(e_count),
                             op.item.eq(item), op.first.eq(0), op.emit.eq(1),
                             op.last.eq(0)]
                m.d.comb += r_en.eq(1)
                m.d.comb += [a.eq(lut_mul(cf, self.dw) + cw) for a in r_addr[0]]
                last_copy = (cw == self.dw - 1) & (cf == copies - 1)
                with m.If(last_copy & (self.cat | (pairs == 0))):
                    m.d.sync += op.last.eq(1)
                with m.If(cw == self.dw - 1):
                    m.d.sync += [cw.eq(0), cf.eq(cf + 1)]
                    with m.If(cf == copies - 1):
                        with m.If(self.cat | (pairs == 0)):
                            m.d.comb += e_last.eq(1)
                            next_item()
                        with m.Else():
                            m.next = "PAIRS"
                with m.Else():
                    m.d.sync += cw.eq(cw + 1)
            with m.State("PAIRS"):
                m.d.comb += r_en.eq(1)
                for k in range(P):
                    wide_a = lut_mul(bi[k], self.dw) + gw
                    wide_b = lut_mul(bj[k], self.dw) + gw
                    for q in range(Q):
                        # narrow: dw is 1, slot q of product k is pair k * Q + q
                        n = k * Q + q
                        m.d.comb += [
                            r_addr[k][q].eq(Mux(narrow, bi[n], wide_a) if Q > 1 else wide_a),
                            r_addr[P + k][q].eq(Mux(narrow, bj[n], wide_b) if Q > 1
                                                else wide_b)]
                emit = gw == self.dw - 1
                last_group = g == groups - 1
                count = Mux(last_group, pairs - g_first, rate)
                m.d.comb += [e_count.eq(Mux(emit, count, 0)), e_op.eq(1)]
                m.d.sync += [op_v.eq(1), op.copy.eq(0), op.first.eq(gw == 0), op.emit.eq(emit),
                             op.last.eq(emit & last_group), op.item.eq(item), op.group.eq(g),
                             op.rem.eq(g_rem), op.count.eq(count)]
                with m.If(emit):
                    m.d.sync += [gw.eq(0), g.eq(g + 1), base_i.eq(next_i), base_j.eq(next_j)]
                    with m.If(last_group):
                        m.d.comb += e_last.eq(1)
                        next_item()
                with m.Else():
                    m.d.sync += gw.eq(gw + 1)
            with m.State("DRAIN"):
                with m.If(~pipe_busy):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"

        # ---- datapath: products summed over the words of a pair, requantization ---------
        # products stage: every lane's product registered (the multipliers' output
        # registers), then the lanes past the feature's width masked and summed (narrow:
        # per slot, each slot's sum a pair of its own)
        acc = [Signal(signed(32), name=f"iacc{k}") for k in range(PQ)]
        p_v = Signal()
        p_op = Signal(op_l)
        p_word = Signal(8 * A)
        m.d.sync += [p_v.eq(op_v), p_op.eq(op), p_word.eq(opa[0])]
        s2_v = Signal()
        s2 = Signal(op_l)
        m.d.sync += [s2_v.eq(p_v & p_op.emit), s2.eq(p_op)]
        copy_word = Signal(8 * A)
        with m.If(p_v & p_op.copy):
            m.d.sync += copy_word.eq(p_word)
        sums, totals = [], []
        for k in range(P):
            prods = []
            for lane in range(A):
                x = opa[k].word_select(lane, 8).as_signed()
                y = opb[k].word_select(lane, 8).as_signed()
                prod = Signal(signed(16), name=f"iprod{k}_{lane}")
                m.d.sync += prod.eq(x * y)
                keep = lane < p_op.rem
                if Q > 1:
                    keep = Mux(narrow, lane % S < p_op.rem, keep)
                prods.append(Mux(keep, prod, 0))
            slot_sums = []
            for q in range(Q):
                sq = prods[q * S]
                for p_ in prods[q * S + 1:(q + 1) * S]:
                    sq = sq + p_
                slot_sums.append(sq)
            total_k = slot_sums[0]
            for p_ in slot_sums[1:]:
                total_k = total_k + p_
            sums.append(slot_sums)
            totals.append(total_k)
        with m.If(p_v & ~p_op.copy):
            # wide: pair g * P + k is entry (g mod Q) * P + k of its parameter row, so
            # accumulator L sums product L mod P's pair; narrow: accumulator L is slot
            # L mod Q of product L // Q, one word (dw is 1)
            for L in range(PQ):
                t = totals[L % P]
                wide = Mux(p_op.first, t, acc[L] + t)
                m.d.sync += acc[L].eq(Mux(narrow, sums[L // Q][L % Q], wide) if Q > 1 else wide)
        m.submodules.requant = rq = RequantUnit(cfg, lanes=PQ)
        m.d.comb += [self.pair_row.eq(s2.group if Q == 1 else
                                      Mux(narrow, s2.group, s2.group >> exact_log2(Q))),
                     rq.o.ready.eq(1), rq.i.payload.relu.eq(0),
                     rq.i.valid.eq(s2_v & ~s2.copy)]
        for k in range(PQ):
            lane = rq.i.payload.lanes[k]
            m.d.comb += [lane.acc.eq(acc[k]), lane.bias.eq(0),
                         lane.mult.eq(self.pair_data[k].mult),
                         lane.shift.eq(self.pair_data[k].shift)]
        # the copies travel beside the requant pipeline, so the byte stream stays in order
        fields = {"v": 1, "copy": 1, "count": range(A + 1), "last": 1, "item": range(SB),
                  "data": unsigned(8 * A)}
        if Q > 1:
            fields["sel"] = range(Q)        # wide: which P requantizers hold the group
        tag = Signal(data.StructLayout(fields))
        m.d.comb += [tag.v.eq(s2_v), tag.copy.eq(s2.copy), tag.count.eq(s2.count),
                     tag.last.eq(s2.last), tag.item.eq(s2.item), tag.data.eq(copy_word)]
        if Q > 1:
            m.d.comb += tag.sel.eq(s2.group[:exact_log2(Q)])
        line = delay_line(m, tag, RequantUnit.LATENCY, "itag")
        out = line[-1]
        in_bytes = Signal(8 * A)
        m.d.comb += in_bytes.eq(out.data)
        with m.If(~out.copy):
            for k in range(PQ):
                byte = rq.o.payload[k]
                if Q > 1 and k < P:
                    wide = Array(rq.o.payload[c * P + k] for c in range(Q))[out.sel]
                    byte = Mux(narrow, byte, wide)
                m.d.comb += in_bytes.word_select(k, 8).eq(byte)

        # ---- packer: the byte stream into words of the destination region ---------------
        buf = Signal(16 * A)
        fill = Signal(range(A + 1))
        oword = Signal(range(W + 1))
        oitem = Signal(range(SB))
        flush = Signal()
        # bytes of buf from `fill` on are zero: the new bytes are or-ed in at `fill`
        masked = Signal(8 * A)
        for k in range(A):
            m.d.comb += masked.word_select(k, 8).eq(Mux(k < out.count,
                                                        in_bytes.word_select(k, 8), 0))
        merged = Signal(16 * A)
        m.d.comb += merged.eq(buf | (masked << (fill * 8)))
        new_fill = Signal(range(2 * A + 1))
        m.d.comb += new_fill.eq(fill + out.count)
        m.d.sync += flush.eq(0)
        with m.If(out.v):
            with m.If(new_fill >= A):
                m.d.comb += [self.wr_en.eq(-1), self.wr_data.eq(merged[:8 * A]),
                             self.wr_item.eq(out.item), self.wr_word.eq(oword)]
                m.d.sync += [buf.eq(merged[8 * A:]), fill.eq(new_fill - A),
                             oword.eq(oword + 1)]
                with m.If(out.last):
                    # bytes left over: the item's last word a cycle later (the emitter
                    # held the next item back a cycle); none: the item is done
                    with m.If(new_fill > A):
                        m.d.sync += flush.eq(1)
                    with m.Else():
                        m.d.sync += [fill.eq(0), oword.eq(0), buf.eq(0)]
            with m.Elif(out.last):
                # the item's last, partial word now
                with m.If(new_fill != 0):
                    m.d.comb += [self.wr_data.eq(merged[:8 * A]), self.wr_item.eq(out.item),
                                 self.wr_word.eq(oword)]
                    for k in range(A):
                        m.d.comb += self.wr_en[k].eq(k < new_fill)
                m.d.sync += [fill.eq(0), oword.eq(0), buf.eq(0)]
            with m.Else():
                m.d.sync += [buf.eq(merged), fill.eq(new_fill)]
            m.d.sync += oitem.eq(out.item)
        with m.If(flush):
            # the leftover of an item whose last op completed a word (never in the same
            # cycle as another write: the next item's first op is a cycle behind)
            with m.If(fill != 0):
                m.d.comb += [self.wr_data.eq(buf[:8 * A]), self.wr_item.eq(oitem),
                             self.wr_word.eq(oword)]
                for k in range(A):
                    m.d.comb += self.wr_en[k].eq(k < fill)
            m.d.sync += [fill.eq(0), oword.eq(0), buf.eq(0)]
        m.d.comb += pipe_busy.eq(op_v | p_v | s2_v | flush | Cat(*(t.v for t in line[1:])).any())
        return m

