"""Approximate histogram filter: golden semantics, Amaranth simulation and Verilator."""

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.golden.pipeline import ApproxWindow, Pipeline, Stage, approx_topk, topk
from rpaccel.golden.zoo import random_model
from rpaccel.hw.approx_filter import ApproxFilter
from rpaccel.sim.amaranth_tb import run_filter
from rpaccel.sim.runner import build, run
from rpaccel.sim.topk_model import expected_approx, pack_query


def test_golden_keeps_whole_bins_above_threshold():
    w = ApproxWindow(offset=0, shift=2, bins=4)  # bins: 0-3, 4-7, 8-11, 12+
    scores = np.array([1, 13, 5, 9, 14, 10, 2, 6, 11])
    sel = approx_topk(scores, 4, w)
    # bin 3 holds 13, 14; bin 2 (threshold) holds 9, 10, 11 -> first two in arrival order
    assert sel.tolist() == [1, 3, 4, 5]
    assert approx_topk(scores, 20, w).tolist() == list(range(9))
    assert len(approx_topk(scores, 0, w)) == 0


def test_golden_equals_exact_when_bins_separate_scores():
    rng = np.random.default_rng(0)
    scores = rng.permutation(64)
    sel = approx_topk(scores, 10, ApproxWindow(0, 0, 64))
    assert set(sel.tolist()) == set(topk(scores, np.arange(64), 10).tolist())


def test_last_stage_must_be_exact():
    m = random_model("small", 13, [10])
    with pytest.raises(ValueError, match="last stage must filter exactly"):
        Pipeline([Stage(m, 5, ApproxWindow(0, 0))])


def _queries(cfg, rng, n_queries, max_n):
    out = []
    for _ in range(n_queries):
        n = int(rng.integers(1, max_n))
        ids = rng.permutation(1 << cfg.topk_id_bits)[:n]
        scores = rng.integers(-300, 300, n)
        k = int(rng.integers(0, cfg.topk_k + 1))
        out.append((ids, scores, k))
    return out


@pytest.mark.parametrize("lanes", [2, 4])
def test_amaranth_sim_matches_golden(lanes):
    cfg = get_config("default").replace(topk_lanes=lanes, topk_k=8, topk_id_bits=6,
                                        max_items=64, score_bits=16)
    window = ApproxWindow(offset=-256, shift=5, bins=16)
    rng = np.random.default_rng(1)
    queries = _queries(cfg, rng, 25, 40)
    expected = [expected_approx(i, s, k, window) for i, s, k in queries]
    beats = [b for ids, s, k in queries
             for b in pack_query(ids, s, cfg.topk_lanes, k, hole_prob=0.2, rng=rng)]
    dut = ApproxFilter(cfg)

    def setup(ctx):
        ctx.set(dut.window_offset, window.offset)
        ctx.set(dut.window_shift, window.shift)

    got = run_filter(dut, beats, sum(len(e) for e in expected), setup)
    assert got == [x for e in expected for x in e]


def test_amaranth_sim_read_out_ends_with_the_kth_answer():
    """A query whose best items come first gets its answers on consecutive cycles and frees
    the filter for the next query at its k-th answer, not after reading the rest of the
    buffer."""
    cfg = get_config("default").replace(topk_lanes=2, topk_k=8, topk_id_bits=6, max_items=64,
                                        score_bits=16)
    window = ApproxWindow(offset=-256, shift=5, bins=16)
    ids = np.arange(64)
    scores = np.concatenate([[250, 240], np.arange(-200, -138)])
    one = pack_query(ids, scores, cfg.topk_lanes, 2)
    expected = expected_approx(ids, scores, 2, window)
    dut = ApproxFilter(cfg)

    def setup(ctx):
        ctx.set(dut.window_offset, window.offset)
        ctx.set(dut.window_shift, window.shift)

    stamps = []
    got = run_filter(dut, one + one, 4, setup, stamps=stamps)
    assert got == expected * 2
    # the two answers of one beat leave on consecutive cycles (the output register
    # refills as it empties); the second query enters (one beat a cycle) right after
    assert stamps[1] - stamps[0] == 1, stamps
    gap = stamps[2] - stamps[1]
    assert gap <= len(one) + 12, (gap, len(one), stamps)


def test_verilator_matches_golden(tmp_path):
    cfg = get_config("default").replace(topk_lanes=2, topk_k=16, topk_id_bits=10)
    sb = build(ApproxFilter, cfg, "approx_filter")
    tests, failed = run(sb, "rpaccel.sim.tb_approx", tmp_path,
                        {"seed": 3, "idle": 0.3, "backpressure": 0.4})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]
