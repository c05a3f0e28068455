"""`WeightLoader` (`rpaccel.hw.weight_loader`) alone in the Amaranth simulator: a program
of two MLP steps around an interaction step, against a model of the issue sequencer (a
loaded tile's swapping item enters after a random delay) and of the array (stalling at
random). Every row must come from its weight-buffer address in program order; no shadow
row may be written before the previous tile's swapping item has passed that row's last PE
(``r + pcols - 1`` array advances after it entered); ``tiles_loaded`` must count exactly
the tiles whose every row has been delivered, at every cycle, and restart with a run; a
run's first tile must be read at once, and without stalls a later tile's first row the very
cycle the rule allows it."""

import random

import pytest

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
TILES = sum(kt * nt for k, kt, nt, _ in PROGRAM if k == StepKind.MLP)


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


def run_loader(seed: int, pcols: int, stall: float, runs: int = 2):
    """Play ``runs`` runs with the array stalling a cycle with probability ``stall``;
    returns per run the (row, weight-address) sequence delivered, the rows written too
    early, the final ``tiles_loaded``, the cycles where it differed from the whole tiles
    delivered, and per later tile the cycles from its predecessor's swap to its first
    row read."""
    rng = random.Random(seed)
    mem = [rng.getrandbits(8 * WIDTH) for _ in range(CFG.weight_rows)]
    word_of = {v: a for a, v in reversed(list(enumerate(mem)))}
    steps = _steps()
    dut = WeightLoader(CFG, WIDTH)
    results = []

    async def bench(ctx):
        ctx.set(dut.pcols, pcols)
        for _ in range(runs):
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            got, early_rows, early_count, gaps = [], [], [], []
            swaps, due, since, swap_cycle = 0, None, 0, None  # swap_cycle: no read since
            first_read = None
            data, cycles = 0, 0
            while True:
                step = ctx.get(dut.step)
                ctx.set(dut.desc.as_value(), steps[min(step, len(steps) - 1)])
                ctx.set(dut.w_data, data)
                loaded = ctx.get(dut.tiles_loaded)
                if loaded != len(got) // R:
                    early_count.append((cycles, loaded, len(got)))
                # the issue sequencer: a loaded tile's swapping item enters after a delay,
                # on a cycle the array advances
                advance = rng.random() >= stall
                if due is None and swaps < loaded:
                    due = cycles + rng.randint(0, 3 if stall else 0)
                swap = due is not None and cycles >= due and advance
                ctx.set(dut.advance, advance)
                ctx.set(dut.swap, swap)
                read = ctx.get(dut.w_en)
                if read and first_read is None:
                    first_read = cycles
                if read and swap_cycle is not None:
                    gaps.append(cycles - swap_cycle)
                    swap_cycle = None
                if ctx.get(dut.wload.valid):
                    row = ctx.get(dut.wload.payload.row)
                    tile = len(got) // R
                    # the row is written at this cycle's edge: the swapping item of the
                    # tile before must have passed row ``row``'s last PE by then
                    passed = since + advance if swaps >= tile else -1
                    if tile and passed < row + pcols - 1:
                        early_rows.append((tile, row, passed))
                    w = 0
                    for c in range(WIDTH):
                        w |= (ctx.get(dut.wload.payload.w[c]) & 0xFF) << (8 * c)
                    got.append((row, word_of.get(w, -1)))
                # a synchronous read port: the word addressed this cycle arrives next cycle
                if read:
                    data = mem[ctx.get(dut.w_addr)]
                await ctx.tick()
                if swap:
                    swaps, due, since, swap_cycle = swaps + 1, None, 0, cycles
                elif advance:
                    since += 1
                cycles += 1
                ctx.set(dut.swap, 0)
                if len(got) >= len(_expected_rows()) and cycles > 200 + len(got) * 3:
                    break
                assert cycles < 20000, (f"weight loader hung after {len(got)} rows, "
                                       f"tiles loaded {loaded}, swaps {swaps}")
            results.append((got, early_rows, ctx.get(dut.tiles_loaded), early_count,
                            gaps, first_read))

    run_bench(dut, bench)
    return results


@pytest.mark.parametrize("pcols, stall", [(8, 0.3), (4, 0.5), (8, 0.0), (4, 0.0)])
def test_weight_loader_rows_in_order_behind_the_swapping_item(pcols, stall):
    for got, early_rows, loaded, early_count, gaps, first_read in run_loader(5, pcols, stall):
        assert got == _expected_rows(), (
            f"expected (row, address) {_expected_rows()}\n actual {got}")
        assert not early_rows, ("(tile, row, advances since the swap) written before the "
                                f"swapping item passed: {early_rows[:5]}")
        assert loaded == TILES, f"expected tiles_loaded {TILES}, actual {loaded}"
        assert not early_count, (
            f"(cycle, tiles_loaded, rows delivered) off the count: {early_count[:5]}")
        # a run's first tile is read at once (the step is fetched, then its first row)
        assert first_read == 1, f"first row read {first_read} cycles after the start, not 1"
        if stall == 0:
            # row 0 is free pcols - 1 advances after the swap: read the next cycle
            assert gaps == [pcols] * (TILES - 1), (
                f"cycles from a swap to the next tile's first read: expected {pcols}, "
                f"actual {gaps}")
