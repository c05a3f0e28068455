"""`OutputPath` (`rpaccel.hw.output_path`) alone in the Amaranth simulator against golden
numerics: a program of a two-by-three-tile ReLU layer, a one-tile layer right after it, an
interaction step and a final layer, random int32 results (most requantizing inside the
int8 range) arriving with gaps, final results backpressured at random, on a whole-array
partition and on half- and quarter-width ones (output tiles at word offsets), with three,
two and one items. Each item's requantized bytes must land at their region / item / byte
position and nowhere else, each final beat must be ``acc + bias`` in order with ``last``
on the run's last beat and every result must be retired exactly once. ``fwd_step`` /
``fwd_items`` (what the issue sequencer lets the next layer read) must never count an
item whose output of that layer is not all written, start each run at "no step", and end
each run at the last layer before the final one, all items counted."""

import random

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.golden.numerics import requantize
from rpaccel.hw.output_path import OutputPath
from rpaccel.interface import EngineGeometry, Region, StepKind, engine_layouts, slot_width

from .amaranth_bench import run_bench

CFG = get_config("default").replace(sub_batch=8, max_width=64, weight_rows=256)
RUNS = 2
CFG4 = CFG.replace(name="four-partitions", block=2, partitions=4)
# (kind, ktiles, ntiles, pbase, relu, final, dst)
PROGRAM = [(StepKind.MLP, 2, 3, 0, 1, 0, Region.B), (StepKind.MLP, 1, 1, 3, 0, 0, Region.A),
           (StepKind.DOT, 0, 0, 0, 0, 0, 0), (StepKind.MLP, 1, 2, 4, 0, 1, 0),
           (StepKind.END, 0, 0, 0, 0, 0, 0)]


def run_path(pcols: int, seed: int, items: int = 3, cfg=CFG):
    ITEMS, WIDTH = items, slot_width(cfg, 0)
    rng = random.Random(seed)
    lay = engine_layouts(cfg, WIDTH)
    geo = EngineGeometry(cfg)
    steps = [lay.desc.const({"kind": k, "ktiles": kt, "ntiles": nt, "pbase": pb, "relu": r,
                             "final": f, "dst": dst}).as_value().value
             for k, kt, nt, pb, r, f, dst in PROGRAM]
    params = [[{"bias": rng.randint(-1000, 1000), "mult": rng.randint(1 << 13, 1 << 15),
                "shift": rng.randint(18, 21)} for _ in range(WIDTH)] for _ in range(8)]
    # the results the array delivers, in issue order: steps, output tiles, input tiles, items
    beats, expect_wr, expect_out = [], {}, []
    for kind, kt, nt, pb, relu, final, dst in PROGRAM:
        if kind != StepKind.MLP:
            continue
        for n in range(nt):
            acc = np.zeros((ITEMS, WIDTH), np.int64)
            for _ in range(kt):
                for i in range(ITEMS):
                    r = [rng.randint(-(1 << 10), 1 << 10) for _ in range(WIDTH)]
                    beats.append(r)
                    acc[i] += r
            p = params[pb + n]
            bias = np.array([x["bias"] for x in p])
            if final:
                for i in range(ITEMS):
                    expect_out.append(((acc[i] + bias).tolist(), int(i == ITEMS - 1 and
                                                                     n == nt - 1)))
            else:
                y = requantize(acc, bias, np.array([x["mult"] for x in p]),
                               np.array([x["shift"] for x in p]), relu=bool(relu))
                for i in range(ITEMS):
                    for c in range(pcols):
                        expect_wr[(int(dst), i, n * pcols + c)] = int(y[i, c])
    dut = OutputPath(cfg, WIDTH)
    got_wr, got_out, counts = [], [], {"retire": 0, "wr": 0, "dup": 0}
    fwd = {"early": [], "end": [], "start": []}
    dsts = {s: int(p[6]) for s, p in enumerate(PROGRAM) if p[0] == StepKind.MLP and not p[5]}

    async def bench(ctx):
        for _run in range(RUNS):  # the same run again: the counts must restart
            wr = {}
            got_wr.append(wr)
            ctx.set(dut.items, ITEMS)
            ctx.set(dut.pcols, pcols)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            fwd["start"].append((ctx.get(dut.fwd_step), ctx.get(dut.fwd_items)))
            k, idle, cycles = 0, 0, 0
            while True:
                valid = k < len(beats) and rng.random() < 0.75
                ctx.set(dut.res.valid, valid)
                if k < len(beats):
                    ctx.set(dut.res.payload, beats[k])
                out_ready = rng.random() < 0.6
                ctx.set(dut.out.ready, out_ready)
                ctx.set(dut.desc.as_value(), steps[min(ctx.get(dut.step), len(steps) - 1)])
                ctx.set(dut.p_data, params[ctx.get(dut.p_addr)])
                if valid and ctx.get(dut.res.ready):
                    k += 1
                if ctx.get(dut.out.valid) and out_ready:
                    got_out.append(([ctx.get(dut.out.payload.acc[c]) for c in range(WIDTH)],
                                    ctx.get(dut.out.payload.last)))
                fs, fi = ctx.get(dut.fwd_step), ctx.get(dut.fwd_items)
                if fs in dsts:
                    for i in range(fi):
                        want = {key for key in expect_wr if key[:2] == (dsts[fs], i)}
                        if not want <= set(wr):
                            fwd["early"].append((fs, i, cycles))
                counts["retire"] += ctx.get(dut.retire)
                if ctx.get(dut.wr.valid):
                    counts["wr"] += 1
                    region, item = ctx.get(dut.wr.payload.region), ctx.get(dut.wr.payload.item)
                    word, data = ctx.get(dut.wr.payload.word), ctx.get(dut.wr.payload.data)
                    en = ctx.get(dut.wr.payload.en)
                    for j in range(geo.lanes):
                        if en >> j & 1:
                            key = (region, item, word * geo.lanes + j)
                            counts["dup"] += key in wr
                            b = (data >> (8 * j)) & 0xFF
                            wr[key] = b - 256 if b >= 128 else b
                await ctx.tick()
                cycles += 1
                idle = idle + 1 if k == len(beats) else 0
                if idle > 40:
                    fwd["end"].append((ctx.get(dut.fwd_step), ctx.get(dut.fwd_items)))
                    break
                assert cycles < 20000, f"output path hung after {k} of {len(beats)} results"

    run_bench(dut, bench)
    return beats, expect_wr, got_wr, expect_out, got_out, dict(counts, fwd=fwd)


@pytest.mark.parametrize("pcols, items, cfg", [(8, 3, CFG), (4, 3, CFG), (4, 1, CFG),
                                               (2, 2, CFG4)])
def test_output_path_matches_golden(pcols, items, cfg):
    beats, expect_wr, got_wr, expect_out, got_out, counts = run_path(pcols, pcols + items,
                                                                     items, cfg)
    inside = [v for v in expect_wr.values() if -128 < v < 127 and v != 0]
    assert len(inside) > len(expect_wr) / 3, "most requantized bytes should not saturate"
    for run, wr in enumerate(got_wr):
        for key in sorted(set(expect_wr) | set(wr)):
            assert wr.get(key) == expect_wr.get(key), (
                f"run {run}, (region, item, byte) {key}: expected {expect_wr.get(key)}, "
                f"actual {wr.get(key)}")
    assert counts["dup"] == 0, f"{counts['dup']} bytes written twice"
    assert got_out == expect_out * RUNS, (
        f"final results: expected {expect_out * RUNS}\n actual {got_out}")
    # every result leaves once: a partial sum stored, a final beat or a requantized tile
    assert counts["retire"] + counts["wr"] == RUNS * len(beats), (counts, len(beats))
    fwd = counts["fwd"]
    assert not fwd["early"], f"(step, item, cycle) counted before written: {fwd['early']}"
    assert fwd["start"] == [(cfg.max_steps, 0)] * RUNS, fwd["start"]
    assert fwd["end"] == [(1, items)] * RUNS, fwd["end"]
