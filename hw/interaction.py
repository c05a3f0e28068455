"""Feature interaction unit of the MLP engine: DLRM's ``dot`` (the bottom output copied,
then the strictly lower triangle of the feature dot products) or ``cat`` (every feature
copied), ``inter_pairs`` pairs per cycle.

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
docs/numerics.md). A packer gathers the byte stream into activation words and writes them
into the destination region, the last word of an item with byte enables.
"""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..config import RPAccelConfig
from ..interface import clamp_pack, max_feature_pack, pair_layout
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
        Pair-parameter row read combinationally (pairs ``row * inter_pairs ...``).
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
            "pair_row": Out(range(-(-cfg.max_pairs // cfg.inter_pairs) + 1)),
            "pair_data": In(self.pair_l),
        })

    def elaborate(self, platform):  # noqa: C901 (sequencer, datapath and packer in order)
        m = Module()
        cfg = self.config
        A, W, P, SB = self.lanes, self.words, cfg.inter_pairs, cfg.sub_batch
        fb = max(1, ceil_log2(65))

        # ---- two register files of feature words: one fills while the other emits --------
        # Held in small memories (LUT RAM, not flip-flops and wide multiplexers): word w of
        # bank b at address b * H + w // 2 of an even-word and an odd-word memory, so the
        # two words read per cycle (always an even one and the next) land through one write
        # port each; every read operand has its own copy of both memories.
        hb = ceil_log2(-(-W // 2))
        H = 1 << hb
        e_bank = Signal()                   # bank being emitted
        reads = 2 * P
        banks = []
        for r in range(reads):
            pair = []
            for parity in range(2):
                mem = Memory(shape=unsigned(8 * A), depth=2 * H, init=[])
                m.submodules[f"freg{r}_{parity}"] = mem
                pair.append((mem.write_port(), mem.read_port()))
            banks.append(pair)
        r_addr = [Signal(range(64 * W + 2), name=f"raddr{r}") for r in range(reads)]
        r_odd = [Signal(name=f"rodd{r}") for r in range(reads)]
        r_en = Signal()
        r_data = []
        for r in range(reads):
            (_, ev), (_, od) = banks[r]
            for port in (ev, od):
                m.d.comb += [port.en.eq(r_en), port.addr.eq(Cat(r_addr[r][1:1 + hb], e_bank))]
            with m.If(r_en):
                m.d.sync += r_odd[r].eq(r_addr[r][0])
            r_data.append(Mux(r_odd[r], od.data, ev.data))
        full = Array(Signal(name=f"full{k}") for k in range(2))
        # the step's sizes are registered every cycle (they hold from the cycle before go):
        # no multiplier between the program memory and the unit's state
        total = Signal(range(64 * W + 1))  # feature words of an item
        m.d.sync += total.eq(lut_mul(self.feats, self.dw))
        f_item = Signal(range(SB + 1))      # item being read
        f_bank = Signal()
        fidx = Signal(range(64 * W + 2))    # next word to read
        land = Signal(range(64 * W + 2))    # where the words read last cycle land
        land_bank = Signal()
        landing = Signal()
        land2 = Signal()
        # where register-file words fidx, fidx + 1 lie: unpacked, words fidx and fidx + 1;
        # packed, feature w > 0 in word 1 + (w - 1) >> pack at lane ((w - 1) << (log2 A -
        # pack)) mod A, and feature w + 1 in the same word or the next (read port B)
        la = ceil_log2(A)
        src = Signal(range(64 * W + 2))
        sh_a, sh_b = Signal(range(A)), Signal(range(A))
        b_next = Signal()
        slot_log = Signal(range(la + 1))    # log2 lanes of a slot
        pack = Signal(range(max_feature_pack(A) + 1))
        m.d.comb += [pack.eq(clamp_pack(self.pack, A)), slot_log.eq(la - pack)]
        with m.If((pack == 0) | (fidx == 0)):
            m.d.comb += [src.eq(fidx), b_next.eq(1)]
        with m.Else():
            m.d.comb += [src.eq(1 + ((fidx - 1) >> pack)),
                         sh_a.eq(((fidx - 1) << slot_log)[:max(1, la)]),
                         b_next.eq((fidx - 1) >> pack != fidx >> pack)]
        with m.If(pack != 0):
            m.d.comb += sh_b.eq((fidx << slot_log)[:max(1, la)])
        land_sa, land_sb, land_bn = Signal.like(sh_a), Signal.like(sh_b), Signal()
        word_a = Signal(8 * A)
        word_b = Signal(8 * A)
        m.d.comb += [word_a.eq(self.rd_a >> (land_sa * 8)),
                     word_b.eq(Mux(land_bn, self.rd_b, self.rd_a) >> (land_sb * 8))]
        for r in range(reads):
            (ev, _), (od, _) = banks[r]
            m.d.comb += [ev.en.eq(landing), ev.addr.eq(Cat(land[1:1 + hb], land_bank)),
                         ev.data.eq(word_a),
                         od.en.eq(landing & land2), od.addr.eq(Cat(land[1:1 + hb], land_bank)),
                         od.data.eq(word_b)]
        item = Signal(range(SB + 1))        # item being emitted
        m.d.sync += landing.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [f_item.eq(0), f_bank.eq(0), fidx.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                # two words per cycle into a free register file; it is full one cycle after
                # the last read
                with m.If(~full[f_bank]):
                    m.d.comb += [self.rd_en.eq(fidx < total), self.rd_item.eq(f_item),
                                 self.rd_word.eq(src)]
                    m.d.sync += [landing.eq(fidx < total), land.eq(fidx), land_bank.eq(f_bank),
                                 land2.eq(fidx + 1 < total), fidx.eq(fidx + 2),
                                 land_sa.eq(sh_a), land_sb.eq(sh_b), land_bn.eq(b_next)]
                    with m.If(fidx >= total):
                        m.d.sync += [full[f_bank].eq(1), f_bank.eq(~f_bank), fidx.eq(0),
                                     f_item.eq(f_item + 1)]
                        with m.If(f_item + 1 == self.items):
                            m.next = "IDLE"

        # ---- output sequence: copies (word chunks), then pair groups ----------------------
        pairs = Signal(range(64 * 63 // 2 + 1))
        m.d.sync += pairs.eq(lut_mul(self.feats, self.feats - 1) >> 1)
        cf = Signal(range(65))            # copy: feature
        cw = Signal(range(W + 1))         # copy: word within the feature
        g = Signal(range(64 * 32 + 1))    # pair group
        gw = Signal(range(W + 1))         # word of the group's pairs
        bi = [Signal(fb, name=f"pi{k}") for k in range(P)]   # group base pair (i, j) ...
        bj = [Signal(fb, name=f"pj{k}") for k in range(P)]
        base_i, base_j = Signal(fb), Signal(fb)
        # lane k of a group is pair g * P + k: the base advanced k steps along the triangle
        m.d.comb += [bi[0].eq(base_i), bj[0].eq(base_j)]
        next_i, next_j = Signal(fb), Signal(fb)
        for k in range(P):
            wrap = bj[k] + 1 == bi[k]
            ni, nj = (bi[k + 1], bj[k + 1]) if k + 1 < P else (next_i, next_j)
            m.d.comb += [ni.eq(Mux(wrap, bi[k] + 1, bi[k])), nj.eq(Mux(wrap, 0, bj[k] + 1))]

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
        m.d.comb += groups.eq((pairs + P - 1) // P)
        pipe_busy = Signal()

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.go):
                    m.d.sync += [self.busy.eq(1), item.eq(0), e_bank.eq(0)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(item == self.items):
                    m.next = "DRAIN"
                with m.Elif(full[e_bank]):
                    m.d.sync += [cf.eq(0), cw.eq(0), g.eq(0), gw.eq(0), base_i.eq(1),
                                 base_j.eq(0)]
                    m.next = "COPY"
            with m.State("COPY"):
                # feature cf word cw: min(A, d - cw * A) values
                m.d.sync += [op_v.eq(1), op.copy.eq(1), op.count.eq(Mux(d_rem > A, A, d_rem)),
                             op.item.eq(item), op.first.eq(0), op.emit.eq(1),
                             op.last.eq(0)]
                m.d.comb += [r_en.eq(1), r_addr[0].eq(lut_mul(cf, self.dw) + cw)]
                last_copy = (cw == self.dw - 1) & (cf == copies - 1)
                with m.If(last_copy & (self.cat | (pairs == 0))):
                    m.d.sync += op.last.eq(1)
                with m.If(cw == self.dw - 1):
                    m.d.sync += [cw.eq(0), cf.eq(cf + 1)]
                    with m.If(cf == copies - 1):
                        with m.If(self.cat | (pairs == 0)):
                            m.d.sync += [item.eq(item + 1), full[e_bank].eq(0),
                                         e_bank.eq(~e_bank)]
                            m.next = "WAIT"
                        with m.Else():
                            m.next = "PAIRS"
                with m.Else():
                    m.d.sync += cw.eq(cw + 1)
            with m.State("PAIRS"):
                m.d.comb += r_en.eq(1)
                for k in range(P):
                    m.d.comb += [r_addr[k].eq(lut_mul(bi[k], self.dw) + gw),
                                 r_addr[P + k].eq(lut_mul(bj[k], self.dw) + gw)]
                emit = gw == self.dw - 1
                last_group = g == groups - 1
                m.d.sync += [op_v.eq(1), op.copy.eq(0), op.first.eq(gw == 0), op.emit.eq(emit),
                             op.last.eq(emit & last_group), op.item.eq(item), op.group.eq(g),
                             op.rem.eq(g_rem),
                             op.count.eq(Mux(last_group, pairs - g * P, P))]
                with m.If(emit):
                    m.d.sync += [gw.eq(0), g.eq(g + 1), base_i.eq(next_i), base_j.eq(next_j)]
                    with m.If(last_group):
                        m.d.sync += [item.eq(item + 1), full[e_bank].eq(0), e_bank.eq(~e_bank)]
                        m.next = "WAIT"
                with m.Else():
                    m.d.sync += gw.eq(gw + 1)
            with m.State("DRAIN"):
                with m.If(~pipe_busy):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"

        # ---- datapath: products summed over the words of a pair, requantization ---------
        # products stage: every lane's product registered (the multipliers' output
        # registers), then the lanes past the feature's width masked and summed
        acc = [Signal(signed(32), name=f"iacc{k}") for k in range(P)]
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
        for k in range(P):
            prods = []
            for lane in range(A):
                x = opa[k].word_select(lane, 8).as_signed()
                y = opb[k].word_select(lane, 8).as_signed()
                prod = Signal(signed(16), name=f"iprod{k}_{lane}")
                m.d.sync += prod.eq(x * y)
                prods.append(Mux(lane < p_op.rem, prod, 0))
            total_k = prods[0]
            for p_ in prods[1:]:
                total_k = total_k + p_
            with m.If(p_v & ~p_op.copy):
                m.d.sync += acc[k].eq(Mux(p_op.first, total_k, acc[k] + total_k))
        m.submodules.requant = rq = RequantUnit(cfg, lanes=P)
        m.d.comb += [self.pair_row.eq(s2.group), rq.o.ready.eq(1), rq.i.payload.relu.eq(0),
                     rq.i.valid.eq(s2_v & ~s2.copy)]
        for k in range(P):
            lane = rq.i.payload.lanes[k]
            m.d.comb += [lane.acc.eq(acc[k]), lane.bias.eq(0),
                         lane.mult.eq(self.pair_data[k].mult),
                         lane.shift.eq(self.pair_data[k].shift)]
        # the copies travel beside the requant pipeline, so the byte stream stays in order
        tag_l = data.StructLayout({"v": 1, "copy": 1, "count": range(A + 1), "last": 1,
                                   "item": range(SB), "data": unsigned(8 * A)})
        tag = Signal(tag_l)
        m.d.comb += [tag.v.eq(s2_v), tag.copy.eq(s2.copy), tag.count.eq(s2.count),
                     tag.last.eq(s2.last), tag.item.eq(s2.item), tag.data.eq(copy_word)]
        line = delay_line(m, tag, RequantUnit.LATENCY, "itag")
        out = line[-1]
        in_bytes = Signal(8 * A)
        m.d.comb += in_bytes.eq(out.data)
        with m.If(~out.copy):
            for k in range(P):
                m.d.comb += in_bytes.word_select(k, 8).eq(rq.o.payload[k])

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
            with m.Else():
                m.d.sync += [buf.eq(merged), fill.eq(new_fill)]
            m.d.sync += [oitem.eq(out.item), flush.eq(out.last)]
        with m.If(flush):
            # the item's last, partial word (never in the same cycle as a full one: an
            # item's first output is at least one cycle, WAIT, behind the previous one's last)
            with m.If(fill != 0):
                m.d.comb += [self.wr_data.eq(buf[:8 * A]), self.wr_item.eq(oitem),
                             self.wr_word.eq(oword)]
                for k in range(A):
                    m.d.comb += self.wr_en[k].eq(k < fill)
            m.d.sync += [fill.eq(0), oword.eq(0), buf.eq(0)]
        m.d.comb += pipe_busy.eq(op_v | p_v | s2_v | flush | Cat(*(t.v for t in line[1:])).any())
        return m

