"""`OutputPath` (`rpaccel.hw.output_path`) alone in the Amaranth simulator against golden
numerics: a program of a two-by-two-tile ReLU layer, an interaction step and a final
layer, random int32 results arriving with gaps, final results backpressured at random, on
a whole-array partition and on a half-width one (output tiles at word offsets). Each item's
requantized bytes must land at their region / item / byte position and nowhere else, each
final beat must be ``acc + bias`` in order with ``last`` on the run's last beat, and every
result must be retired exactly once."""

import random

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.golden.numerics import requantize
from rpaccel.hw.output_path import OutputPath
from rpaccel.interface import EngineGeometry, Region, StepKind, engine_layouts, slot_width

from .amaranth_bench import run_bench

CFG = get_config("default").replace(sub_batch=8, max_width=64, weight_rows=256)
WIDTH = slot_width(CFG, 0)
ITEMS = 3
# (kind, ktiles, ntiles, pbase, relu, final, dst)
PROGRAM = [(StepKind.MLP, 2, 3, 0, 1, 0, Region.B), (StepKind.DOT, 0, 0, 0, 0, 0, 0),
           (StepKind.MLP, 1, 2, 3, 0, 1, 0), (StepKind.END, 0, 0, 0, 0, 0, 0)]


def run_path(pcols: int, seed: int):
    rng = random.Random(seed)
    lay = engine_layouts(CFG, WIDTH)
    geo = EngineGeometry(CFG)
    steps = [lay.desc.const({"kind": k, "ktiles": kt, "ntiles": nt, "pbase": pb, "relu": r,
                             "final": f, "dst": dst}).as_value().value
             for k, kt, nt, pb, r, f, dst in PROGRAM]
    params = [[{"bias": rng.randint(-5000, 5000), "mult": rng.randint(1 << 12, 1 << 15),
                "shift": rng.randint(14, 20)} for _ in range(WIDTH)] for _ in range(8)]
    # the results the array delivers, in issue order: steps, output tiles, input tiles, items
    beats, expect_wr, expect_out = [], {}, []
    for kind, kt, nt, pb, relu, final, dst in PROGRAM:
        if kind != StepKind.MLP:
            continue
        for n in range(nt):
            acc = np.zeros((ITEMS, WIDTH), np.int64)
            for _ in range(kt):
                for i in range(ITEMS):
                    r = [rng.randint(-(1 << 20), 1 << 20) for _ in range(WIDTH)]
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
    dut = OutputPath(CFG, WIDTH)
    got_wr, got_out, counts = {}, [], {"retire": 0, "wr": 0, "dup": 0}

    async def bench(ctx):
        ctx.set(dut.items, ITEMS)
        ctx.set(dut.pcols, pcols)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
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
            counts["retire"] += ctx.get(dut.retire)
            if ctx.get(dut.wr.valid):
                counts["wr"] += 1
                region, item = ctx.get(dut.wr.payload.region), ctx.get(dut.wr.payload.item)
                word, data = ctx.get(dut.wr.payload.word), ctx.get(dut.wr.payload.data)
                en = ctx.get(dut.wr.payload.en)
                for j in range(geo.lanes):
                    if en >> j & 1:
                        key = (region, item, word * geo.lanes + j)
                        counts["dup"] += key in got_wr
                        b = (data >> (8 * j)) & 0xFF
                        got_wr[key] = b - 256 if b >= 128 else b
            await ctx.tick()
            cycles += 1
            idle = idle + 1 if k == len(beats) else 0
            if idle > 40:
                break
            assert cycles < 20000, f"output path hung after {k} of {len(beats)} results"
        counts["tiles_exited"] = ctx.get(dut.tiles_exited)

    run_bench(dut, bench)
    return beats, expect_wr, got_wr, expect_out, got_out, counts


@pytest.mark.parametrize("pcols", [8, 4])
def test_output_path_matches_golden(pcols):
    beats, expect_wr, got_wr, expect_out, got_out, counts = run_path(pcols, seed=pcols)
    for key in sorted(set(expect_wr) | set(got_wr)):
        assert got_wr.get(key) == expect_wr.get(key), (
            f"(region, item, byte) {key}: expected {expect_wr.get(key)}, "
            f"actual {got_wr.get(key)}")
    assert counts["dup"] == 0, f"{counts['dup']} bytes written twice"
    assert got_out == expect_out, f"final results: expected {expect_out}\n actual {got_out}"
    # every result leaves once: a partial sum stored, a final beat or a requantized tile
    assert counts["retire"] + counts["wr"] == len(beats), (counts, len(beats))
    tiles = sum(kt * nt for k, kt, nt, *_ in PROGRAM if k == StepKind.MLP)
    assert counts["tiles_exited"] == tiles, (counts["tiles_exited"], tiles)
