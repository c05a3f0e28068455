"""Model loader (`rpaccel.hw.loader.ModelLoader`): load images fetched over AXI4 from
cocotbext-axi's AXI RAM on Verilator (the top-level tests load real models with it), and
in the Amaranth simulator commands of zero and one beat and DRAM error responses."""

import pickle
import random

from amaranth import unsigned
from amaranth.lib import data

from rpaccel.config import get_config
from rpaccel.hw.loader import ModelLoader, load_image, load_words
from rpaccel.sim.runner import build, run

from .amaranth_bench import run_bench

CFG = get_config("default")
#: three targets: narrower than a word, a few words (like an engine slot's), not a multiple
WIDTHS = (40, 235, 130)


def loader_for_test(cfg):
    return ModelLoader(cfg, WIDTHS, id_bits=2)


def test_load_words_and_image():
    layout = data.StructLayout({"target": 3, "addr": unsigned(5), "data": unsigned(100)})
    img = load_image(layout, [(1, 2, 3), (7, 31, (1 << 100) - 1)], 64)
    assert load_words(layout.size, 64) == 2 and len(img) == 32
    assert int.from_bytes(img[:16], "little") == 1 | 2 << 3 | 3 << 8
    assert int.from_bytes(img[16:], "little") == 7 | 31 << 3 | ((1 << 100) - 1) << 8


def test_loader_zero_and_one_beat_commands_and_bus_errors():
    """A command of 0 beats does nothing; one of 1 beat reads one word; ``bus_error``
    pulses on exactly the R beats answered SLVERR (2) or DECERR (3), not OKAY or EXOKAY,
    and their data are still delivered; with DRAM and ``out`` always ready, one beat a
    cycle."""
    dut = loader_for_test(CFG)
    a = dut.axi
    got = {"ar": [], "out": [], "errors": 0, "busy_after_empty": 0, "sent": 0, "at": []}

    async def command(ctx, beats, addr):
        ctx.set(dut.cmd.payload, {"addr": addr, "beats": beats, "target": 0})
        ctx.set(dut.cmd.valid, 1)
        for _ in range(100):
            taken = ctx.get(dut.cmd.ready)
            await ctx.tick()
            if taken:
                break
        else:
            raise AssertionError("the loader never took a command")
        ctx.set(dut.cmd.valid, 0)

    async def serve(ctx, resps):
        """Answer the ARs, one R beat per word, with ``resps`` in turn; take ``out``."""
        ctx.set(dut.out.ready, 1)
        beats = []
        for cycle in range(200):
            ctx.set(a.arready, 1)
            if ctx.get(a.arvalid):
                got["ar"].append((ctx.get(a.araddr), ctx.get(a.arlen)))
                beats += [ctx.get(a.arid)] * (ctx.get(a.arlen) + 1)
            ctx.set(a.rvalid, bool(beats) and bool(resps))
            if beats and resps:
                ctx.set(a.rid, beats[0])
                ctx.set(a.rresp, resps[0])
                ctx.set(a.rdata, 0xD0 + got["sent"])
                ctx.set(a.rlast, len(beats) == 1)
            got["errors"] += ctx.get(dut.bus_error)
            if ctx.get(dut.out.valid):
                got["out"].append(ctx.get(dut.out.payload))
                got["at"].append(cycle)
            if beats and resps and ctx.get(a.rready):
                beats.pop(0)
                resps.pop(0)
                got["sent"] += 1
            await ctx.tick()
            if not resps and not ctx.get(dut.busy):
                break

    async def bench(ctx):
        await command(ctx, 0, 0x100)
        for _ in range(5):
            got["busy_after_empty"] += ctx.get(dut.busy) + ctx.get(a.arvalid)
            await ctx.tick()
        await command(ctx, 1, 0x200)
        await serve(ctx, [2])
        got["done1"] = ctx.get(dut.done)
        await command(ctx, 4, 0x300)
        got["at"] = []
        await serve(ctx, [3, 1, 0, 2])
        got["done2"] = ctx.get(dut.done)

    run_bench(dut, bench)
    assert got["busy_after_empty"] == 0, "a command of 0 beats started a load"
    assert got["ar"] == [(0x200, 0), (0x300, 3)], got["ar"]
    assert got["out"] == [0xD0 + i for i in range(5)], got["out"]
    assert (got["done1"], got["done2"]) == (1, 4)
    assert got["errors"] == 3, "one pulse per SLVERR / DECERR beat"
    at = got["at"]
    assert [b - a for a, b in zip(at, at[1:])] == [1, 1, 1], at


def test_verilator_loader_images(tmp_path):
    """Three loads (one per target) at addresses that are not 4 KiB aligned, lengths that
    force bursts to split at page ends, a stalling DRAM and backpressure on ``out``: every
    beat arrives in order with its target, bursts obey AXI's 4 KiB rule, a start while
    busy is ignored."""
    rng = random.Random(5)
    D = CFG.axi_data_bits
    loads, blobs, addr = [], [], 0
    for target, (w, n) in enumerate(zip(WIDTHS, (700, 300, 450), strict=True)):
        addr += 4096 - 3 * D // 8 if target == 0 else rng.randrange(1, 200) * D // 8
        beats = [rng.getrandbits(w) for _ in range(n)]
        raw = data.StructLayout({"target": 0, "addr": 0, "data": unsigned(w)})
        blob = load_image(raw, [(0, 0, b) for b in beats], D)
        loads.append((addr, target, beats))
        blobs.append((addr, blob))
        addr += len(blob)
    dram = bytearray(addr + 4096)
    for a, blob in blobs:
        dram[a:a + len(blob)] = blob
    jobs = tmp_path / "job.pkl"
    jobs.write_bytes(pickle.dumps({"dram": bytes(dram), "loads": loads}))
    sb = build(loader_for_test, CFG, "loader")
    tests, failed = run(sb, "rpaccel.sim.tb_loader", tmp_path,
                        {"jobs": str(jobs), "data_bits": D, "widths": WIDTHS,
                         "max_words": max(load_words(w, D) for w in WIDTHS),
                         "dram_stall": 0.3, "backpressure": 0.3, "seed": 3})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]
