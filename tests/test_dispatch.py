"""`EngineCrossbar` (`rpaccel.hw.dispatch`) alone in the Amaranth simulator: two stage
controllers' sub-batches (load beats, then a run beat, the next sub-batch's loads only
after the run beat is taken, as `StageController` sends them) go to models of four
engines that take load beats at random, start a run when idle and answer one result per
item after a random time, their result streams stalled at random. Under three engine maps
in turn (changed while nothing is in flight, with ``restart``), each sub-batch must reach
the stage's engines in turn (index order, wrapping), its load beats the engine of its run,
and each stage's results come out in run order, each run's last result flagged."""

import random

from rpaccel.config import get_config
from rpaccel.hw.dispatch import EngineCrossbar
from rpaccel.interface import ENGINE_NONE

from .amaranth_bench import run_bench

CFG = get_config("default").replace(name="xbar", block=2, partitions=4, engines=4,
                                    sub_batch=4)
MAPS = [(0, 1, 1, 1), (1, 0, ENGINE_NONE, 0), (0, 0, 1, 1)]


def expected_engines(emap, stage, runs):
    mine = [e for e, s in enumerate(emap) if s == stage]
    return [mine[j % len(mine)] for j in range(runs)]


def run_crossbar(plans, seed=0, fault=None):
    """``plans``: per phase, ``(map, [per stage: list of sub-batch sizes])``. Returns per
    phase and stage the engine each run went to, the engine each load beat went to and
    the results out ``(tag, last)``; ``fault`` breaks the engine models on purpose."""
    rng = random.Random(seed)
    dut = EngineCrossbar(CFG)
    E, NS = CFG.engine_count, CFG.stages
    record = []

    async def bench(ctx):
        cycle = 0
        for emap, sizes in plans:
            ctx.set(dut.owner, list(emap))
            ctx.set(dut.restart, 1)
            await ctx.tick()
            ctx.set(dut.restart, 0)
            got = {"runs": [[] for _ in range(NS)], "loads": [[] for _ in range(NS)],
                   "out": [[] for _ in range(NS)]}
            # controller side: per stage the beats still to send, ("load", j, k) / ("run", j, n)
            todo = []
            for s in range(NS):
                beats = []
                for j, n in enumerate(sizes[s]):
                    beats += [("load", j, k) for k in range(rng.randint(1, 3))]
                    beats.append(("run", j, n))
                todo.append(beats)
            # engine side: loaded tags, the running run (tag, items left, ready cycle), results
            eng = [{"loads": [], "run": None, "out": []} for _ in range(E)]
            want = [sum(sizes[s]) for s in range(NS)]
            while any(len(got["out"][s]) < want[s] for s in range(NS)):
                cycle += 1
                assert cycle < 20000, f"crossbar hung: {got}"
                for s in range(NS):
                    load, run = getattr(dut, f"load_{s}"), getattr(dut, f"run_{s}")
                    beat = todo[s][0] if todo[s] and rng.random() < 0.8 else None
                    ctx.set(load.valid, bool(beat and beat[0] == "load"))
                    ctx.set(run.valid, bool(beat and beat[0] == "run"))
                    if beat and beat[0] == "load":
                        addr = s * 64 + beat[1] * 4 + beat[2]
                        ctx.set(load.payload.addr, addr)
                        ctx.set(load.payload.target, addr % 5)
                        ctx.set(load.payload.data, addr * 0x9E3779B1 % (1 << 32))
                    if beat and beat[0] == "run":
                        ctx.set(run.payload, beat[2])
                    ctx.set(getattr(dut, f"out_{s}").ready, rng.random() < 0.7)
                for e, st in enumerate(eng):
                    r = st["run"]
                    ctx.set(getattr(dut, f"eload_{e}").ready, rng.random() < 0.7)
                    idle = r is None and not st["out"]
                    ctx.set(getattr(dut, f"erun_{e}").ready, idle)
                    eout = getattr(dut, f"eout_{e}")
                    ctx.set(eout.valid, bool(st["out"]))
                    if st["out"]:
                        ctx.set(eout.payload.acc[0], st["out"][0][0])
                        ctx.set(eout.payload.last, st["out"][0][1])
                # sample the handshakes of this cycle
                for s in range(NS):
                    load, run = getattr(dut, f"load_{s}"), getattr(dut, f"run_{s}")
                    if ctx.get(load.valid) and ctx.get(load.ready):
                        todo[s].pop(0)
                    elif ctx.get(run.valid) and ctx.get(run.ready):
                        todo[s].pop(0)
                    out = getattr(dut, f"out_{s}")
                    if ctx.get(out.valid) and ctx.get(out.ready):
                        got["out"][s].append((ctx.get(out.payload.acc[0]),
                                              ctx.get(out.payload.last)))
                for e, st in enumerate(eng):
                    eload, erun = getattr(dut, f"eload_{e}"), getattr(dut, f"erun_{e}")
                    if ctx.get(eload.valid) and ctx.get(eload.ready):
                        addr = ctx.get(eload.payload.addr)
                        # the beat's target and data travel with it
                        assert (ctx.get(eload.payload.target), ctx.get(eload.payload.data)) \
                            == (addr % 5, addr * 0x9E3779B1 % (1 << 32)), addr
                        st["loads"].append(addr)
                        got["loads"][addr // 64].append((addr % 64 // 4, e))
                    if ctx.get(erun.valid) and ctx.get(erun.ready):
                        assert st["loads"], f"engine {e} started a run without load beats"
                        s, j = st["loads"][-1] // 64, st["loads"][-1] % 64 // 4
                        n = ctx.get(erun.payload)
                        got["runs"][s].append(e)
                        st["loads"] = []
                        st["run"] = (s * 4096 + j * 16, n, cycle + rng.randint(1, 12))
                    eout = getattr(dut, f"eout_{e}")
                    if ctx.get(eout.valid) and ctx.get(eout.ready):
                        st["out"].pop(0)
                    r = st["run"]
                    if r and cycle >= r[2]:
                        tag, n, _ = r
                        if fault == "order" and e == 1:
                            st["out"] = [(tag + i, int(i == 0)) for i in reversed(range(n))]
                        else:
                            st["out"] = [(tag + i, int(i == n - 1)) for i in range(n)]
                        st["run"] = None
                await ctx.tick()
            record.append(got)
            for _ in range(3):
                await ctx.tick()

    run_bench(dut, bench)
    return record


def check(plans, record):
    for (emap, sizes), got in zip(plans, record, strict=True):
        for s in range(CFG.stages):
            runs = len(sizes[s])
            assert got["runs"][s] == expected_engines(emap, s, runs), (
                f"map {emap} stage {s}: runs went to engines {got['runs'][s]}, expected "
                f"{expected_engines(emap, s, runs)}")
            eng_of = expected_engines(emap, s, runs)
            for j, e in got["loads"][s]:
                assert e == eng_of[j], (f"map {emap} stage {s}: a load beat of sub-batch {j} "
                                        f"went to engine {e}, its run to {eng_of[j]}")
            want = [(s * 4096 + j * 16 + i, int(i == n - 1))
                    for j, n in enumerate(sizes[s]) for i in range(n)]
            assert got["out"][s] == want, (f"map {emap} stage {s}: results\n  expected "
                                           f"{want}\n  got      {got['out'][s]}")


def plans_for(seed):
    rng = random.Random(seed)
    return [(m, [[rng.randint(1, CFG.sub_batch) for _ in range(rng.randint(3, 7))]
                 for _ in range(CFG.stages)]) for m in MAPS]


def test_crossbar_routes_runs_in_turn_and_results_in_order():
    for seed in range(3):
        plans = plans_for(seed)
        check(plans, run_crossbar(plans, seed))


def test_crossbar_test_catches_out_of_order_results():
    plans = plans_for(0)
    try:
        check(plans, run_crossbar(plans, 0, fault="order"))
    except AssertionError as e:
        assert "results" in str(e)
    else:
        raise AssertionError("results out of order were not caught")
