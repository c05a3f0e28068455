"""Exact streaming top-k filtering unit."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from ..config import RPAccelConfig

__all__ = ["TopK", "TopKPorts", "make_topk", "topk_layouts"]


def topk_layouts(config: RPAccelConfig):
    """Input and output payload layouts of `TopK`.

    Input beat: ``lanes`` of ``{valid, id, score}``, the query's ``k`` (read on the last
    beat) and ``last``. Output: ``{id, score, last}``, one survivor per beat, best first.
    """
    lane = data.StructLayout({"valid": 1, "id": unsigned(config.topk_id_bits),
                              "score": signed(config.score_bits)})
    in_layout = data.StructLayout({
        "lanes": data.ArrayLayout(lane, config.topk_lanes),
        "k": unsigned(bits_for(config.topk_k)),
        "last": 1,
    })
    out_layout = data.StructLayout({"id": unsigned(config.topk_id_bits),
                                    "score": signed(config.score_bits), "last": 1})
    return in_layout, out_layout


class _Cell:
    """One queue entry. ``key`` packs the rank order into one unsigned number, score (sign
    flipped) above the inverted id, so "ranks before" is a single ``>`` (one carry chain)
    instead of a score compare, a score equality and an id compare."""

    def __init__(self, config, name):
        self.valid = Signal(name=f"{name}_v")
        self.key = Signal(config.score_bits + config.topk_id_bits, name=f"{name}_key")

    def eq(self, other):
        return [self.valid.eq(other.valid), self.key.eq(other.key)]


def _key(config, id_, score):
    sign = 1 << (config.score_bits - 1)
    return Cat(~id_.as_unsigned(), score.as_unsigned() ^ sign)


def _unkey(config, key):
    idb, sign = config.topk_id_bits, 1 << (config.score_bits - 1)
    return (~key[:idb])[:idb], (key[idb:] ^ sign).as_signed()


def best_of(m, values, name):
    """Comparator tree: the largest of ``values`` (unsigned, equal widths) and its index,
    ``log2(len(values))`` levels of ``>`` and 2:1 multiplexers (ties go to the lower
    index)."""
    best = [(v, Const(i, range(len(values)))) for i, v in enumerate(values)]
    while len(best) > 1:
        nxt = []
        for (va, ia), (vb, ib) in zip(best[0::2], best[1::2], strict=False):
            w = Signal(len(va), name=f"{name}{len(best)}_{len(nxt)}")
            wi = Signal(range(len(values)), name=f"{name}i{len(best)}_{len(nxt)}")
            a_wins = ~(vb > va)
            m.d.comb += [w.eq(Mux(a_wins, va, vb)), wi.eq(Mux(a_wins, ia, ib))]
            nxt.append((w, wi))
        if len(best) % 2:
            nxt.append(best[-1])
        best = nxt
    return best[0]


class TopKPorts(wiring.Component):
    """Ports of an exact top-k unit (`TopK`, `rpaccel.hw.topk_heap.TopKHeap`): ``i`` takes
    `topk_layouts` input beats, ``o`` gives survivors; banks of the unit's state alternate
    between the query filling and the query draining (``BANKS``: the heap's; the queue's
    is ``topk_banks``)."""

    BANKS = 2

    def __init__(self, config: RPAccelConfig):
        self.config = config
        self.in_layout, self.out_layout = topk_layouts(config)
        super().__init__({
            "i": In(stream.Signature(self.in_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })


class TopK(TopKPorts):
    """Exact streaming top-k: ``lanes`` (id, score) pairs per cycle, ``k`` survivors out.

    Structure: each lane keeps its own sorted insertion queue of ``topk_k`` registers (a
    new item is compared with every cell at once and shifts the worse ones down, so one
    item per lane is inserted every cycle); the global top k is a subset of the union of
    the per-lane top k. After the query's ``last`` beat, the lane queues are merged by a
    comparator tree that emits the best head per cycle, best first, ``min(k, N)`` items,
    the final one with ``last`` set.

    Two banks of queues alternate (``topk_banks`` 2): one fills with the next query while
    the other drains, so the producer never waits unless a query is shorter than the
    previous one's drain (``min(k, N)`` cycles). With one bank (``topk_banks`` 1: half the
    cells and comparators) the next query waits for the drain. Ties go to the lower id,
    the candidate position, as in `rpaccel.golden.pipeline.topk`. Ids must be unique within
    a query. A query with no valid item produces no output.

    Parameters
    ----------
    config : RPAccelConfig
        Uses ``topk_lanes``, ``topk_k`` (capacity: the largest k), ``topk_banks``,
        ``topk_id_bits`` and ``score_bits``.

    Members
    -------
    i : In(stream.Signature(in_layout))
    o : Out(stream.Signature(out_layout))
    """

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        n_lanes, cap, banks = cfg.topk_lanes, cfg.topk_k, cfg.topk_banks
        kbits = bits_for(cap)
        queues = [[[_Cell(cfg, f"b{b}_l{q}_c{c}") for c in range(cap)]
                   for q in range(n_lanes)] for b in range(banks)]
        draining = [Signal(name=f"draining{b}") for b in range(banks)]
        bank_k = [Signal(kbits, name=f"k{b}") for b in range(banks)]
        emitted = Signal(kbits)
        fill = Signal(range(banks))
        drain = Signal(range(banks))

        # -- fill: insert every valid lane item into its queue of the filling bank -------
        m.d.comb += self.i.ready.eq(~Array(draining)[fill])
        accept = self.i.valid & self.i.ready
        xs = []
        for q in range(n_lanes):
            lane = self.i.payload.lanes[q]
            x = _Cell(cfg, f"x{q}")
            m.d.comb += [x.valid.eq(lane.valid), x.key.eq(_key(cfg, lane.id, lane.score))]
            xs.append(x)
        with m.If(accept & self.i.payload.last):
            m.d.sync += fill.eq(fill + 1)
            for b in range(banks):
                with m.If(fill == b):
                    m.d.sync += [draining[b].eq(1), bank_k[b].eq(self.i.payload.k)]

        # -- drain: emit the best head of the draining bank, pop its queue ----------------
        can_emit = ~self.o.valid | self.o.ready
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        for b in range(banks):
            heads = [queues[b][q][0] for q in range(n_lanes)]
            # {key, valid} packed: an invalid head ranks below every valid one
            best, top_q = best_of(m, [Cat(h.key, h.valid) for h in heads], f"t{b}_")
            top = _Cell(cfg, f"top{b}")
            m.d.comb += [top.key.eq(best[:-1]), top.valid.eq(best[-1])]
            # after popping top_q, is anything left?
            rest = Const(0, 1)
            for q in range(n_lanes):
                nxt_valid = queues[b][q][1].valid if cap > 1 else Const(0, 1)
                rest = rest | Mux(top_q == q, nxt_valid, heads[q].valid)
            active = draining[b] & (drain == b)
            finish = active & (~top.valid | (emitted >= bank_k[b]))
            emit = active & ~finish & can_emit
            with m.If(finish):
                m.d.sync += [draining[b].eq(0), emitted.eq(0), drain.eq(drain + 1)]
            with m.If(emit):
                top_id, top_score = _unkey(cfg, top.key)
                m.d.sync += [self.o.valid.eq(1), self.o.payload.id.eq(top_id),
                             self.o.payload.score.eq(top_score),
                             self.o.payload.last.eq(~rest | (emitted + 1 >= bank_k[b])),
                             emitted.eq(emitted + 1)]

            # -- per-cell next state: one 4:1 choice per register --------------------------
            insert_en = accept & (fill == b)
            for q in range(n_lanes):
                cells, x = queues[b][q], xs[q]
                wins = [~c.valid | (x.key > c.key) for c in cells]
                pop = emit & (top_q == q)
                for c, cell in enumerate(cells):
                    below = cells[c + 1] if c + 1 < cap else None
                    take_x = insert_en & x.valid & wins[c] & (~wins[c - 1] if c else 1)
                    with m.If(finish):
                        m.d.sync += cell.valid.eq(0)
                    with m.Elif(pop):
                        m.d.sync += cell.eq(below) if below is not None else \
                            cell.valid.eq(0)
                    if c:  # the head cell has no cell above it to take from
                        with m.Elif(insert_en & x.valid & wins[c - 1]):
                            m.d.sync += cell.eq(cells[c - 1])
                    with m.Elif(take_x):
                        m.d.sync += cell.eq(x)
        return m


def make_topk(config: RPAccelConfig):
    """The top-k unit ``config.topk_impl`` names: `TopK` (``"queue"``) or
    `rpaccel.hw.topk_heap.TopKHeap` (``"heap"``); both have the same ports and results."""
    if config.topk_impl == "heap":
        from .topk_heap import TopKHeap

        return TopKHeap(config)
    return TopK(config)
