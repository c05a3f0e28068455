"""Top-k unit: Amaranth-simulator tests (including exhaustive small instances), then its
Verilog on Verilator against golden under idle gaps and backpressure."""

import itertools

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.hw.topk import make_topk
from rpaccel.sim.amaranth_tb import run_filter
from rpaccel.sim.runner import build, run
from rpaccel.sim.topk_model import expected_output, pack_query, query_patterns


def simulate(cfg, queries, lead=(), max_cycles=None):
    """Run queries [(ids, scores, k, beats)] back to back; return outputs per query.
    ``lead``: beats fed first, then a one-cycle reset (an aborted query)."""
    counts = [len(expected_output(i, s, k)) for i, s, k, _ in queries]
    got = run_filter(make_topk(cfg), [*lead, *(b for *_, beats in queries for b in beats)],
                     sum(counts), max_cycles=max_cycles or 40 * len(queries) + 20000,
                     reset_after=len(lead) if lead else None)
    outs = []
    for c in counts:
        outs.append(got[:c])
        got = got[c:]
    return outs


IMPLS = ["queue", "queue1", "heap"]  # queue1: the queue with one bank


def _impl(impl: str) -> dict:
    return {"topk_impl": "queue", "topk_banks": 1} if impl == "queue1" else {"topk_impl": impl}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("lanes, cap", [(1, 1), (1, 3), (2, 2), (2, 3)])
def test_exhaustive_small_instances(lanes, cap, impl):
    """Every score sequence over {0, 1, 2} of length 1..4, every k up to the capacity."""
    cfg = get_config("default").replace(topk_lanes=lanes, topk_k=cap, topk_id_bits=3, max_items=8,
                                        score_bits=16, **_impl(impl))
    queries = []
    for n in range(1, 5):
        for seq in itertools.product(range(3), repeat=n):
            for k in range(1, cap + 1):
                ids = list(range(n))
                queries.append((ids, list(seq), k, pack_query(ids, seq, lanes, k)))
    outs = simulate(cfg, queries)
    for (ids, s, k, _), got in zip(queries, outs):
        assert got == expected_output(ids, s, k), (s, k)


@pytest.mark.parametrize("impl", IMPLS)
def test_shuffled_ids_and_holes(impl):
    """Ids are positions, not arrival order (later stages); lanes may be empty."""
    cfg = get_config("default").replace(topk_lanes=3, topk_k=5, score_bits=16, **_impl(impl))
    rng = np.random.default_rng(4)
    queries = []
    for n in (1, 4, 5, 6, 17):
        ids = rng.permutation(64)[:n]
        s = rng.integers(-4, 4, n)
        k = int(rng.integers(1, 6))
        queries.append((ids, s, k, pack_query(ids, s, 3, k, hole_prob=0.3, rng=rng)))
    outs = simulate(cfg, queries)
    for (ids, s, k, _), got in zip(queries, outs):
        assert got == expected_output(ids, s, k)


@pytest.mark.parametrize("lanes, cap, impl", [
    (1, 8, "queue"), (2, 16, "queue"), pytest.param(4, 16, "queue", marks=pytest.mark.slow),
    (1, 16, "queue1"), (2, 64, "heap")])
def test_verilator_matches_golden(tmp_path, lanes, cap, impl):
    cfg = get_config("default").replace(topk_lanes=lanes, topk_k=cap, **_impl(impl))
    sb = build(make_topk, cfg, "topk")
    tests, failed = run(sb, "rpaccel.sim.tb_topk", tmp_path,
                        {"seed": lanes * 7 + cap, "idle": 0.3, "backpressure": 0.4})
    assert (tests, failed) == (2, 0), (tmp_path / "sim.log").read_text()[-4000:]


def test_heap_with_block_ram_levels():
    """A heap deep enough for block-RAM levels and stacks (capacity 20: a partial last
    level), every pattern, N around k, random k, back to back."""
    cfg = get_config("default").replace(topk_lanes=2, topk_k=20, score_bits=16,
                                        topk_impl="heap")
    rng = np.random.default_rng(9)
    queries = []
    for n in (1, 19, 20, 21, 41, 150):
        for scores in query_patterns(n, 16, rng).values():
            ids = rng.permutation(1 << cfg.topk_id_bits)[:n]
            k = int(rng.integers(1, 21))
            queries.append((ids, scores, k, pack_query(ids, scores, 2, k, hole_prob=0.2,
                                                       rng=rng)))
    outs = simulate(cfg, queries)
    for (ids, s, k, _), got in zip(queries, outs):
        assert got == expected_output(ids, s, k), (len(ids), k)


@pytest.mark.parametrize("impl", IMPLS)
def test_reset_in_the_middle_of_a_query(impl):
    """A reset while heaps and queues hold live items of an unfinished query: the next
    queries are exact (the heap clears only the generation bits of its words, so the
    aborted query's values stay behind as stale words)."""
    cfg = get_config("default").replace(topk_lanes=2, topk_k=20, score_bits=16,
                                        **_impl(impl))
    rng = np.random.default_rng(12)
    ids = np.arange(300)
    aborted = pack_query(ids, rng.integers(1000, 2000, 300), 2, 20)[:120]
    queries = []
    for n, k in ((150, 20), (7, 5), (60, 13)):
        s = rng.integers(-50, 50, n)
        queries.append((ids[:n], s, k, pack_query(ids[:n], s, 2, k, hole_prob=0.2, rng=rng)))
    outs = simulate(cfg, queries, lead=aborted, max_cycles=5000)
    for (i, s, k, _), got in zip(queries, outs):
        assert got == expected_output(i, s, k), (len(i), k)


def test_patterns_cover_the_issue_cases():
    rng = np.random.default_rng(0)
    p = query_patterns(10, 32, rng)
    assert set(p) >= {"random", "equal", "ascending", "descending"}
    assert len(set(p["equal"].tolist())) == 1


def _first_survivor_delay(cfg, n: int, k: int) -> int:
    """Cycles from the clock edge that takes a query's ``last`` beat to its first
    survivor on ``o`` (``n`` items, one lane, random scores)."""
    from amaranth.sim import Simulator

    dut = make_topk(cfg)
    rng = np.random.default_rng(n * 1000 + k)
    got = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for i in range(n):
            p = dut.i.payload
            ctx.set(dut.i.valid, 1)
            ctx.set(p.lanes[0].valid, 1)
            ctx.set(p.lanes[0].id, i)
            ctx.set(p.lanes[0].score, int(rng.integers(-1000, 1000)))
            ctx.set(p.k, k)
            ctx.set(p.last, int(i == n - 1))
            while not ctx.get(dut.i.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(dut.i.valid, 0)
        t = 0
        while not ctx.get(dut.o.valid):
            await ctx.tick()
            t += 1
        got.append(t)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got[0]


@pytest.mark.parametrize("cap", [8, 16, 20, 64])
def test_performance_model_charges_the_heap_sort(cap):
    """`rpaccel.perf.topk_sort_cycles`: the heap's first survivor comes that many cycles
    after the queue's, for queries longer and shorter than k."""
    from rpaccel.perf import topk_sort_cycles

    base = get_config("fpga-ecp5").replace(topk_k=cap, topk_lanes=1, topk_banks=2,
                                           max_items=128)
    queue, heap = base.replace(topk_impl="queue"), base.replace(topk_impl="heap")
    assert topk_sort_cycles(queue) == 0
    for n in (cap // 2 + 1, cap + 9):
        k = min(n, cap)
        q, h = _first_survivor_delay(queue, n, k), _first_survivor_delay(heap, n, k)
        assert q == 1, q
        assert h - q == topk_sort_cycles(heap), (cap, n, h - q, topk_sort_cycles(heap))
