"""The stage controller (`rpaccel.hw.stage.StageController`) alone in the Amaranth
simulator: two sub-batches of one query against models of the engine, the embedding unit
and the top-k unit that stall at random. Every dense word and pooled-vector word must
reach the engine's activation buffer at its address, each run its item count, each score
the top-k unit with its query position, k and last; bags flagged by the embedding unit are
counted and flag the query once it is gathered (one beat on the stalled ``qerr``
stream). Also a model of one table and two dense words a candidate, with a run of one
item."""

import random

import pytest
from amaranth import ClockDomain, Module
from amaranth.sim import Simulator

from rpaccel.config import get_config
from rpaccel.hw.stage import StageController
from rpaccel.interface import EngineGeometry, Region, feature_pack, feature_place
from rpaccel.interface import EngineTarget as Target

CFG = get_config("default")
# (tables, dense words, runs: (items, base, k, last), error bag: (item of the second run,
# table) answered with error, the model's embedding dim: 2 and 4 pack 4 and 2 pooled
# vectors into an 8-lane word)
CASES = [(3, 1, ((5, 0, 4, 0), (3, 5, 4, 1)), (1, 2), CFG.emb_dim),
         (1, 2, ((1, 0, 1, 0), (2, 1, 2, 1)), None, CFG.emb_dim),
         (5, 1, ((4, 0, 3, 0), (3, 4, 3, 1)), (2, 4), 2),
         (3, 2, ((2, 0, 2, 0), (3, 2, 2, 1)), (0, 1), 4)]


def _sub_batch(rng, items, TABLES, DENSE_WORDS):
    """The query beats of a sub-batch and the bags the embedding unit sees."""
    geo = EngineGeometry(CFG)
    beats, bags = [], []
    for _ in range(items):
        for _ in range(DENSE_WORDS):
            beats.append({"dense": 1, "word": [rng.randint(-128, 127) for _ in range(geo.lanes)],
                          "table": 0, "id": 0, "last": 0})
        for t in range(TABLES):
            ids = [rng.randrange(100) for _ in range(rng.randint(1, 3))]
            for j, v in enumerate(ids):
                beats.append({"dense": 0, "word": [0] * geo.lanes, "table": t, "id": v,
                              "last": int(j == len(ids) - 1)})
            bags.append((t, ids))
    return beats, bags


def _pack8(values):
    out = 0
    for i, v in enumerate(values):
        out |= (v & 0xFF) << (8 * i)
    return out


@pytest.mark.parametrize("TABLES, DENSE_WORDS, RUNS, ERROR_BAG, D", CASES)
def test_stage_controller_gathers_runs_and_scores(TABLES, DENSE_WORDS, RUNS, ERROR_BAG, D):
    """Dense words and pooled vectors land where the engine reads them (packed several to
    a word when the model's rows are short: each word written once), under random gaps
    and backpressure; runs, scores, error counts and the query's error report."""
    rng = random.Random(3)
    geo = EngineGeometry(CFG)
    A, dw, fpack = geo.lanes, -(-D // geo.lanes), feature_pack(D, geo.lanes)
    dut = StageController(CFG, slot=0)
    subs = [_sub_batch(rng, r[0], TABLES, DENSE_WORDS) for r in RUNS]
    vecs = [[[rng.randint(-128, 127) if j < D else 0 for j in range(CFG.emb_dim)]
             for _ in bags] for _, bags in subs]
    scores = [[rng.randint(-1000, 1000) for _ in range(r[0])] for r in RUNS]
    # what the engine's activation buffer must receive per run: address -> word
    expect = []
    for (beats, _), vs, (items, *_rest) in zip(subs, vecs, RUNS, strict=True):
        want = {}
        dense = [b for b in beats if b["dense"]]
        for i in range(items):
            for w in range(DENSE_WORDS):
                want[geo.act_addr(Region.A, i, w)] = _pack8(dense[i * DENSE_WORDS + w]["word"])
            for t in range(TABLES):
                v = vs[i * TABLES + t]
                word, lane = feature_place(D, A, t)
                for w in range(dw):
                    addr = geo.act_addr(Region.FEAT, i, word + w)
                    want[addr] = want.get(addr, 0) | _pack8(v[w * A:(w + 1) * A]) << (8 * lane)
        expect.append(want)
    got = {"loads": [], "runs": [], "topk": [], "reqs": [], "qerr": []}

    async def host(ctx):
        ctx.set(dut.dense_words, DENSE_WORDS)
        ctx.set(dut.tables, TABLES)
        ctx.set(dut.dw, dw)
        ctx.set(dut.fpack, fpack)
        for (beats, _), (items, base, k, last) in zip(subs, RUNS, strict=True):
            ctx.set(dut.run.payload, {"items": items, "base": base, "k": k, "last": last})
            ctx.set(dut.run.valid, 1)
            await ctx.tick().until(dut.run.ready)
            ctx.set(dut.run.valid, 0)
            for b in beats:
                while rng.random() < 0.3:
                    await ctx.tick()
                ctx.set(dut.query.payload, b)
                ctx.set(dut.query.valid, 1)
                await ctx.tick().until(dut.query.ready)
                ctx.set(dut.query.valid, 0)

    async def embedding(ctx):
        """Takes requests; answers each bag's pooled vector (the second run's chosen bag
        with error) after random delays."""
        order = [(r, n) for r, (_, bags) in enumerate(subs) for n in range(len(bags))]
        for r, n in order:
            t, ids = subs[r][1][n]
            for _ in ids:
                for _ in range(rng.randint(0, 2)):
                    await ctx.tick()
                ctx.set(dut.emb_req.ready, 1)
                req, = await ctx.tick().sample(dut.emb_req.payload).until(dut.emb_req.valid)
                ctx.set(dut.emb_req.ready, 0)
                got["reqs"].append((int(req.table), int(req.id), int(req.last)))
            err = int(ERROR_BAG is not None and r == 1 and
                      n == ERROR_BAG[0] * TABLES + ERROR_BAG[1])
            for _ in range(rng.randint(0, 4)):
                await ctx.tick()
            ctx.set(dut.emb_resp.payload, {"vec": vecs[r][n], "error": err})
            ctx.set(dut.emb_resp.valid, 1)
            await ctx.tick().until(dut.emb_resp.ready)
            ctx.set(dut.emb_resp.valid, 0)

    async def engine_loads(ctx):
        seen = []
        while True:
            ctx.set(dut.eng_load.ready, int(rng.random() > 0.2))
            _, _, ld, valid, ready = await ctx.tick().sample(dut.eng_load.payload,
                                                       dut.eng_load.valid,
                                                       dut.eng_load.ready)
            if valid and ready:
                seen.append((int(ld.target), int(ld.addr), int(ld.data)))
                got["loads"] = seen

    async def engine_runs(ctx):
        for r, (items, *_rest) in enumerate(RUNS):
            ctx.set(dut.eng_run.ready, 1)
            n, = await ctx.tick().sample(dut.eng_run.payload).until(dut.eng_run.valid)
            ctx.set(dut.eng_run.ready, 0)
            got["runs"].append(int(n))
            for i, s in enumerate(scores[r]):
                for _ in range(rng.randint(0, 3)):
                    await ctx.tick()
                acc = [s] + [0] * (len(dut.eng_out.payload.acc) - 1)
                ctx.set(dut.eng_out.payload, {"acc": acc, "last": int(i == items - 1)})
                ctx.set(dut.eng_out.valid, 1)
                await ctx.tick().until(dut.eng_out.ready)
                ctx.set(dut.eng_out.valid, 0)

    async def topk(ctx):
        total = sum(r[0] for r in RUNS)
        while len(got["topk"]) < total:
            ctx.set(dut.topk.ready, int(rng.random() > 0.3))
            ctx.set(dut.qerr.ready, int(rng.random() > 0.5))
            _, _, p, valid, ready, qv, qr, qe = await ctx.tick().sample(
                dut.topk.payload, dut.topk.valid, dut.topk.ready, dut.qerr.valid,
                dut.qerr.ready, dut.qerr.payload)
            if qv and qr:
                got["qerr"].append(int(qe))
            if valid and ready:
                lane = p.lanes[0]
                got["topk"].append((int(lane.valid), int(lane.id), int(lane.score),
                                    int(p.k), int(p.last)))
        ctx.set(dut.qerr.ready, 1)
        for _ in range(20):
            _, _, qv, qe = await ctx.tick().sample(dut.qerr.valid, dut.qerr.payload)
            if qv:
                got["qerr"].append(int(qe))
        got["errors"] = ctx.get(dut.emb_errors)

    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_testbench(embedding)
    sim.add_process(engine_loads)
    sim.add_testbench(engine_runs)
    sim.add_testbench(topk)
    sim.run_until(2e-4)

    want_reqs = [(t, v, int(j == len(ids) - 1)) for _, bags in subs for t, ids in bags
                 for j, v in enumerate(ids)]
    assert got["reqs"] == want_reqs
    assert got["runs"] == [r[0] for r in RUNS]
    # the activation writes: every address once, with its word (banks alternate by run)
    loads = got["loads"]
    assert all(t == Target.ACT for t, _, _ in loads)
    per_run, start = [], 0
    for want in expect:
        chunk = loads[start:start + len(want)]
        start += len(want)
        bank = min(a for _, a, _ in chunk) - min(want)
        per_run.append({a - bank: d for _, a, d in chunk})
        assert len(per_run[-1]) == len(chunk), "an address written twice"
    assert per_run == expect
    assert start == len(loads)
    want_topk = []
    for (items, base, k, last), sc in zip(RUNS, scores, strict=True):
        for i, s in enumerate(sc):
            want_topk.append((1, base + i, s, k, int(last and i == items - 1)))
    assert got["topk"] == want_topk
    flagged = int(ERROR_BAG is not None)
    assert got["errors"] == flagged, "bags that came back flagged"
    assert got["qerr"] == [flagged], "one query, flagged when a bag was"
