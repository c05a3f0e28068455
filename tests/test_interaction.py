"""`InteractionUnit` in the Amaranth simulator against golden (`QuantizedStage.interact`
numerics): random feature words around the unit (stale bytes beyond each feature), ``dot``
and ``cat``, 1 to several words per feature, pooled vectors packed several to a word, 1
to 8 pairs per cycle; the cycles per item the performance model charges."""

import numpy as np
import pytest
from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

from rpaccel import perf
from rpaccel.config import get_config
from rpaccel.golden.model import interaction_pairs
from rpaccel.golden.numerics import requantize
from rpaccel.hw.interaction import InteractionUnit
from rpaccel.interface import StepKind as Kind
from rpaccel.interface import feature_pack, feature_place


def golden(feat, d, cat, mult, shift):
    """Output bytes of one item: [x, pairs] (dot) or all features (cat)."""
    t = feat[:, :d].astype(np.int64)
    if cat:
        return t.reshape(-1).tolist()
    li, lj = interaction_pairs(t.shape[0])
    z = (t[li] * t[lj]).sum(axis=1)
    return t[0].tolist() + requantize(z, 0, mult, shift).astype(int).tolist()


def simulate(cfg, lanes, words, items, cat, d, feats, seed=0):
    """Run the unit on random features; returns (expected, written, cycles busy, nothing
    written beyond the outputs, the cycles of the unit's writes)."""
    rng = np.random.default_rng(seed)
    dw = -(-d // lanes)
    P = cfg.inter_pairs * cfg.inter_slots  # pair parameters per row
    pairs = feats * (feats - 1) // 2
    mult = rng.integers(1 << 13, 1 << 15, max(pairs, 1))
    shift = rng.integers(12, 20, max(pairs, 1))
    # every feature word random: bytes beyond d are stale data the unit must ignore
    mem = rng.integers(-128, 128, (items, words, lanes))
    expect = []
    flat = mem.reshape(items, words * lanes)
    for i in range(items):
        # feature 0 (the bottom MLP's output) first, then the pooled vectors as placed
        feat = np.stack([flat[i, :d]] + [
            flat[i, w * lanes + ln:w * lanes + ln + d]
            for w, ln in (feature_place(d, lanes, t) for t in range(feats - 1))])
        expect.append(golden(feat, d, cat, mult[:pairs], shift[:pairs]))
    dut = InteractionUnit(cfg, lanes, words)
    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.dut = dut
    out = np.full((items, words * lanes), 999, dtype=np.int64)

    def word_int(vals):
        v = 0
        for j, x in enumerate(vals):
            v |= (int(x) & 0xFF) << (8 * j)
        return v

    rows = -(-max(pairs, 1) // P)
    prow = [[{"mult": int(mult[p]) if p < pairs else 0, "shift": int(shift[p])
              if p < pairs else 0} for p in range(r * P, (r + 1) * P)] for r in range(rows)]
    cycles = {"early": 0, "late": 0}
    writes = []

    async def bench(ctx):
        ctx.set(dut.items, items)
        ctx.set(dut.cat, cat)
        ctx.set(dut.feats, feats)
        ctx.set(dut.d, d)
        ctx.set(dut.dw, dw)
        ctx.set(dut.pack, feature_pack(d, lanes))
        for _ in range(4):  # nothing happens before go
            cycles["early"] += ctx.get(dut.busy) + (ctx.get(dut.wr_en) != 0)
            await ctx.tick()
        ctx.set(dut.go, 1)
        await ctx.tick()
        ctx.set(dut.go, 0)
        n, pend = 0, None
        while True:
            # synchronous read ports: data of last cycle's address
            if pend is not None:
                it, w = pend
                ctx.set(dut.rd_a, word_int(mem[it, w]) if w < words else 0)
                ctx.set(dut.rd_b, word_int(mem[it, w + 1]) if w + 1 < words else 0)
            row = ctx.get(dut.pair_row)
            ctx.set(dut.pair_data, prow[min(row, rows - 1)])
            pend = (ctx.get(dut.rd_item), ctx.get(dut.rd_word)) if ctx.get(dut.rd_en) else pend
            en = ctx.get(dut.wr_en)
            if en:
                writes.append(n)
                it, w, data = ctx.get(dut.wr_item), ctx.get(dut.wr_word), ctx.get(dut.wr_data)
                for j in range(lanes):
                    if en >> j & 1:
                        b = (data >> (8 * j)) & 0xFF
                        out[it, w * lanes + j] = b - 256 if b >= 128 else b
            busy = ctx.get(dut.busy)
            await ctx.tick()
            n += 1
            if not busy and n > 2:
                break
            assert n < 20000, "interaction unit hung"
        cycles["busy"] = n
        for _ in range(8):  # and nothing after busy falls
            cycles["late"] += ctx.get(dut.busy) + (ctx.get(dut.wr_en) != 0)
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    got = [out[i, :len(e)].tolist() for i, e in enumerate(expect)]
    untouched = all((out[i, len(e):] == 999).all() for i, e in enumerate(expect))
    assert cycles["early"] == 0 and cycles["late"] == 0, (
        f"busy or writes before go / after busy fell: {cycles}")
    return expect, got, cycles["busy"], untouched, writes


@pytest.mark.parametrize("pairs_per_cycle", [1, 3, 4, 8])
@pytest.mark.parametrize("cat,d,feats", [(False, 4, 7), (False, 8, 4), (False, 13, 3),
                                         (True, 8, 4), (True, 5, 3), (False, 20, 4),
                                         (False, 8, 2), (False, 3, 6), (False, 2, 8),
                                         (True, 1, 11), (True, 4, 5)])
def test_interaction_matches_golden(pairs_per_cycle, cat, d, feats):
    """Every output byte equals golden (copies, then the requantized pairs in DLRM order);
    bytes beyond an item's output are never written; the unit takes the cycles and the
    write cycles `rpaccel.perf.EngineTiming.interaction_schedule` gives."""
    cfg = get_config("default").replace(inter_pairs=pairs_per_cycle)
    lanes, words = 8, 16
    items = 5
    expect, got, busy, untouched, writes = simulate(cfg, lanes, words, items, cat, d, feats,
                                                    seed=d * 7 + feats + pairs_per_cycle)
    for i, (e, g) in enumerate(zip(expect, got, strict=True)):
        assert g == e, f"item {i}: expected {e}\n actual {g}"
    assert untouched, "bytes written beyond an item's output"
    dw = -(-d // lanes)
    step = {"kind": Kind.CAT if cat else Kind.DOT, "feats": feats, "d": d, "dw": dw}
    model = perf.EngineTiming.interaction_schedule(step, items, pairs_per_cycle, lanes=lanes)
    assert (busy, writes) == model, ((busy, writes), model)


@pytest.mark.parametrize("pairs_per_cycle,slots,banks", [
    (1, 2, 2), (2, 2, 4), (1, 4, 2), (3, 4, 8), (2, 8, 4), (1, 1, 4), (2, 1, 16)])
@pytest.mark.parametrize("cat,d,feats", [(False, 2, 9), (False, 3, 8), (False, 4, 6),
                                         (False, 5, 5), (False, 8, 4), (False, 20, 3),
                                         (False, 1, 12), (True, 2, 5), (False, 4, 2),
                                         (False, 1, 17), (False, 1, 8)])
def test_interaction_slots_and_banks_match_golden(pairs_per_cycle, slots, banks, cat, d,
                                                  feats):
    """``inter_slots``: features that fit a slot of ``lanes / inter_slots`` lanes are
    computed ``inter_slots`` pairs per product (narrow), wider ones one pair per product
    (their slots read at one address, the parameters of a group at an offset in their
    row); ``inter_banks``: packed feature words land up to that many per cycle. Every byte
    equals golden at the cycles `rpaccel.perf.EngineTiming.pair_rate` and ``fill_rate``
    charge."""
    # 16-lane words (lcm(8, 16))
    cfg = get_config("three-stage").replace(inter_pairs=pairs_per_cycle, inter_slots=slots,
                                            inter_banks=banks, max_pairs=256)
    lanes, words = 16, 24
    items = 4
    expect, got, busy, untouched, writes = simulate(cfg, lanes, words, items, cat, d, feats,
                                                    seed=d * 5 + feats + 11 * slots)
    for i, (e, g) in enumerate(zip(expect, got, strict=True)):
        assert g == e, f"item {i}: expected {e}\n actual {g}"
    assert untouched, "bytes written beyond an item's output"
    dw = -(-d // lanes)
    step = {"kind": Kind.CAT if cat else Kind.DOT, "feats": feats, "d": d, "dw": dw}
    eng = perf.EngineTiming(8, 8, pairs_per_cycle, lanes, slots, banks)
    rate, pack = eng.pair_rate(d), feature_pack(d, lanes)
    assert rate == pairs_per_cycle * (slots if d <= lanes // slots else 1)
    fill = eng.fill_rate(pack)
    assert fill == (2 if pack == 0 else min(banks, 1 << pack))
    model = perf.EngineTiming.interaction_schedule(step, items, rate, fill, lanes=lanes)
    assert (busy, writes) == model, ((busy, writes), model)


def test_banks_shorten_a_fill_bound_step():
    """16 pairs per cycle on 8 one-value features: reading the features two a cycle is the
    bound (4 cycles an item); with 8 memories a register file takes them 8 a cycle and the
    emission is (3: the copy and two pair groups). Same bytes, fewer cycles."""
    busy = {}
    for banks in (2, 8):
        cfg = get_config("three-stage").replace(inter_pairs=2, inter_slots=8,
                                                inter_banks=banks)
        expect, got, busy[banks], _, _ = simulate(cfg, 16, 24, 6, False, 1, 8, seed=4)
        assert got == expect, f"banks {banks}: expected {expect}\n actual {got}"
    step = {"kind": Kind.DOT, "feats": 8, "d": 1, "dw": 1}
    assert perf.EngineTiming.interaction_per_item(step, 16, 2, lanes=16) == 4
    assert perf.EngineTiming.interaction_per_item(step, 16, 8, lanes=16) == 3
    assert busy[8] < busy[2], busy
    assert busy == {b: perf.EngineTiming.interaction_cycles(step, 6, 16, b, lanes=16)
                    for b in (2, 8)}
