"""Systolic array: PE, tile and mesh in the Amaranth simulator against integer matmul."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from rpaccel.config import get_config
from rpaccel.hw.array import PE, Mesh

CFG = get_config("default")  # 8 x 8 of 4 x 4 blocks, 2 column groups


def test_pe_mac_and_weight_swap():
    """A stream of items through one PE: psum_out = psum_in + w * x, the product of an item
    meeting the partial sum that arrives PE.LATENCY - 1 cycles after it; the flagged item
    computes with (and switches to) the shadow weight; en = 0 holds everything."""
    dut = PE()
    lag = PE.LATENCY - 1
    # (x, flag, psum arriving with it, load_w or None) per cycle; weights -7 then 3
    items = [(5, 1, 100, 3), (-128, 0, 0, None), (1, 0, 1000, None), (9, 1, -5, None),
             (-3, 0, 7, None)]

    async def tb(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.load, 1)
        ctx.set(dut.load_w, -7)
        await ctx.tick()
        expected, got, w, shadow = [], [], None, -7
        psums = [p for _, _, p, _ in items] + [0] * lag
        xs = items + [(0, 0, 0, None)] * lag
        for t, (x, flag, _, load_w) in enumerate(xs):
            ctx.set(dut.x_in, x)
            ctx.set(dut.flag_in, flag)
            ctx.set(dut.valid_in, int(t < len(items)))
            ctx.set(dut.load, int(load_w is not None))
            ctx.set(dut.load_w, load_w or 0)
            ctx.set(dut.psum_in, psums[t - lag] if t >= lag else 0)
            if t < len(items):
                if flag:
                    w = shadow
                expected.append(psums[t] + w * x)
                if load_w is not None:
                    shadow = load_w
            await ctx.tick()
            if t >= lag:
                got.append(ctx.get(dut.psum_out))
            if t == 0:
                assert ctx.get(dut.x_out) == x
        assert got[:len(items)] == expected
        ctx.set(dut.en, 0)  # stalled: nothing moves
        before = ctx.get(dut.psum_out), ctx.get(dut.x_out)
        ctx.set(dut.x_in, 77)
        await ctx.tick()
        assert (ctx.get(dut.psum_out), ctx.get(dut.x_out)) == before

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


def run_mesh(cfg, mode, tiles_per_part, rng, ready_prob=1.0):
    """Each partition runs its own sequence of (W, X) tiles; returns (expected, got)."""
    dut = Mesh(cfg)
    parts = 1 << mode
    groups = cfg.partitions
    span = groups // parts
    gcols = cfg.array_cols // groups
    pcols = cfg.array_cols >> mode
    jobs = []
    for _p in range(parts):
        tiles = []
        for _ in range(tiles_per_part):
            w = rng.integers(-127, 128, (cfg.array_rows, pcols))
            x = rng.integers(-128, 128, (int(rng.integers(1, 12)), cfg.array_rows))
            tiles.append((w, x))
        jobs.append(tiles)
    expected = [[row for w, x in tiles for row in (x @ w).tolist()] for tiles in jobs]
    got = [[] for _ in range(parts)]

    def feeder(p):
        async def tb(ctx):
            for t, (w, x) in enumerate(jobs[p]):
                if t:  # the previous tile's swap item must have left the array
                    while len(got[p]) < sum(len(xx) for _, xx in jobs[p][:t - 1]) + 1:
                        await ctx.tick()
                for g in range(span):
                    port = dut.wload[p * span + g]
                    for r in range(cfg.array_rows):
                        ctx.set(port.valid, 1)
                        ctx.set(port.payload, {"row": r, "w": w[r, g * gcols:(g + 1) * gcols]
                                               .tolist()})
                        await ctx.tick()
                    ctx.set(port.valid, 0)
                port = dut.act[p * span]
                for i, row in enumerate(x):
                    ctx.set(port.valid, 1)
                    ctx.set(port.payload, {"x": row.tolist(), "swap": int(i == 0)})
                    await ctx.tick().until(port.ready)
                    ctx.set(port.valid, 0)
                    if rng.random() < 0.3:
                        await ctx.tick()  # idle gap
        return tb

    def drain(p):
        async def tb(ctx):
            port = dut.out[p]
            cycles = 0
            while len(got[p]) < len(expected[p]) and cycles < 5000:
                ready = int(rng.random() < ready_prob)
                ctx.set(port.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload)
                if valid and ready:
                    got[p].append([int(payload[c]) for c in range(pcols)])
                cycles += 1
        return tb

    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def set_mode(ctx):
        ctx.set(dut.mode, mode)

    sim.add_testbench(set_mode)
    for p in range(parts):
        sim.add_testbench(feeder(p))
        sim.add_testbench(drain(p))
    sim.run()
    return expected, got


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("ready_prob", [1.0, 0.6])
def test_mesh_matches_matmul(mode, ready_prob):
    rng = np.random.default_rng(10 * mode + int(ready_prob * 10))
    expected, got = run_mesh(CFG, mode, 3, rng, ready_prob)
    assert got == expected


def test_four_partitions_at_once():
    cfg = CFG.replace(array_cols=16, partitions=4)
    rng = np.random.default_rng(3)
    for mode in (0, 1, 2):
        expected, got = run_mesh(cfg, mode, 2, rng, 0.7)
        assert got == expected, f"mode {mode}"


@pytest.mark.parametrize("cols, partitions, tile_modules", [
    (8, 2, False),
    # the shared tile module also runs in the slow paper-structures top-level test
    pytest.param(16, 4, True, marks=pytest.mark.slow)])
def test_verilator_mesh_matches_matmul(tmp_path, cols, partitions, tile_modules):
    """The 4-partition case instantiates the shared tile module (``tile_modules``, as the
    ``paper`` config does) instead of writing every tile out."""
    from rpaccel.sim.runner import build, run

    cfg = CFG.replace(array_cols=cols, partitions=partitions, tile_modules=tile_modules)
    sb = build(Mesh, cfg, "mesh")
    tests, failed = run(sb, "rpaccel.sim.tb_array", tmp_path,
                        {"seed": cols, "idle": 0.3, "backpressure": 0.4, "tiles": 3})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]
