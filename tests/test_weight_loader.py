"""`WeightLoader` (`rpaccel.hw.weight_loader`) alone in the Amaranth simulator: a program
of two MLP steps around an interaction step, the array's tile exits played back at random
delays (the shadow-register row stream is always ready). Every row must come from its
weight-buffer address in program order, a tile must not start loading before the previous
one began leaving the array, and ``tiles_loaded`` must count exactly the tiles whose every
row has been delivered, at every cycle, and restart with a run."""

import random

from rpaccel.config import get_config
from rpaccel.hw.weight_loader import WeightLoader
from rpaccel.interface import StepKind, engine_layouts, slot_width

from .amaranth_bench import run_bench

CFG = get_config("default").replace(sub_batch=8, max_width=64, weight_rows=256)
R = CFG.array_rows
WIDTH = slot_width(CFG, 0)
# (kind, ktiles, ntiles, wbase)
PROGRAM = [(StepKind.MLP, 2, 2, 8), (StepKind.DOT, 0, 0, 0), (StepKind.MLP, 1, 3, 64),
           (StepKind.END, 0, 0, 0)]


def _steps():
    desc = engine_layouts(CFG, WIDTH).desc
    return [desc.const({"kind": k, "ktiles": kt, "ntiles": nt, "wbase": wb}).as_value().value
            for k, kt, nt, wb in PROGRAM]


def _expected_rows():
    rows = []
    for kind, kt, nt, wbase in PROGRAM:
        if kind == StepKind.MLP:
            rows += [(r, wbase + t * R + r) for t in range(kt * nt) for r in range(R)]
    return rows


def run_loader(seed: int, runs: int = 2):
    """Play ``runs`` runs; returns per run the (row, weight-address) sequence delivered,
    the violations of the exit rule, the final ``tiles_loaded`` and the cycles where it
    differed from the whole tiles delivered."""
    rng = random.Random(seed)
    mem = [rng.getrandbits(8 * WIDTH) for _ in range(CFG.weight_rows)]
    word_of = {v: a for a, v in reversed(list(enumerate(mem)))}
    steps = _steps()
    dut = WeightLoader(CFG, WIDTH)
    results = []

    async def bench(ctx):
        for _ in range(runs):
            ctx.set(dut.start, 1)
            ctx.set(dut.tiles_exited, 0)
            await ctx.tick()
            ctx.set(dut.start, 0)
            exited, seen, pending, got, bad, early = 0, 0, [], [], [], []
            data, cycles = 0, 0
            first_of_tile = True
            while True:
                step = ctx.get(dut.step)
                ctx.set(dut.desc.as_value(), steps[min(step, len(steps) - 1)])
                ctx.set(dut.w_data, data)
                # the array: a loaded tile's first item leaves after a random delay
                loaded = ctx.get(dut.tiles_loaded)
                if loaded != len(got) // R:
                    early.append((cycles, loaded, len(got)))
                while len(pending) + exited < loaded:
                    pending.append(cycles + rng.randint(1, 12))
                if ctx.get(dut.w_en):
                    # the loader chose to read last cycle, when it saw ``seen`` exits
                    if first_of_tile and seen < len(got) // R:
                        bad.append((len(got) // R, seen))
                    first_of_tile = False
                if pending and cycles >= pending[0]:
                    pending.pop(0)
                    exited += 1
                ctx.set(dut.tiles_exited, exited)
                seen = exited
                if ctx.get(dut.wload.valid):
                    row = ctx.get(dut.wload.payload.row)
                    w = 0
                    for c in range(WIDTH):
                        w |= (ctx.get(dut.wload.payload.w[c]) & 0xFF) << (8 * c)
                    got.append((row, word_of.get(w, -1)))
                    first_of_tile = row == R - 1
                # a synchronous read port: the word addressed this cycle arrives next cycle
                if ctx.get(dut.w_en):
                    data = mem[ctx.get(dut.w_addr)]
                await ctx.tick()
                cycles += 1
                if len(got) >= len(_expected_rows()) and cycles > 200 + len(got) * 3:
                    break
                assert cycles < 20000, (f"weight loader hung after {len(got)} rows, "
                                       f"tiles loaded {loaded}, exited {exited}")
            results.append((got, bad, ctx.get(dut.tiles_loaded), early))

    run_bench(dut, bench)
    return results


def test_weight_loader_rows_in_program_order_after_tile_exits():
    tiles = sum(kt * nt for k, kt, nt, _ in PROGRAM if k == StepKind.MLP)
    for got, bad, loaded, early in run_loader(seed=5):
        assert got == _expected_rows(), (
            f"expected (row, address) {_expected_rows()}\n actual {got}")
        assert not bad, f"tiles read before the previous tile left the array: {bad}"
        assert loaded == tiles, f"expected tiles_loaded {tiles}, actual {loaded}"
        assert not early, f"(cycle, tiles_loaded, rows delivered) off the count: {early[:5]}"
