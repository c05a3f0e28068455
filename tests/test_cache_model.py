import numpy as np
import pytest

from rpaccel.golden.cache import (
    CacheModel,
    batch_trace,
    belady_hits,
    profile_hot_rows,
    table_bases,
)
from rpaccel.golden.data import criteo_synthetic


def lru(trace, sets, ways, **kw):
    m = CacheModel(table_rows=[100, 100], row_bytes=[64, 64], sets=sets, ways=ways,
                   line_bytes=64, **kw)
    return [m.lookup(t, r) for t, r in trace], m


def test_lru_by_hand():
    # one set of two ways: A B A C B -> miss miss hit miss(evicts B) miss(evicts A)
    res, m = lru([(0, 1), (0, 2), (0, 1), (0, 3), (0, 2)], sets=1, ways=2)
    assert res == ["miss", "miss", "dynamic", "miss", "miss"]
    assert (m.stats.misses, m.stats.dynamic_hits, m.stats.dram_bytes) == (4, 1, 256)


def test_sets_are_indexed_by_line_address_modulo():
    # table 1 starts at line 100; with 4 sets, row 0 of table 1 maps to set 0 like row 0
    assert table_bases([100, 100], [64, 64], 64) == [0, 6400]
    res, _ = lru([(0, 0), (1, 0), (0, 4), (0, 0)], sets=4, ways=2)
    assert res == ["miss", "miss", "miss", "miss"]  # three lines in set 0, LRU evicted (0,0)


def test_static_rows_never_touch_the_dynamic_cache():
    res, m = lru([(0, 5), (0, 5), (1, 7)], sets=1, ways=1, static_rows={0: {5}})
    assert res == ["static", "static", "miss"]
    assert m.stats.dram_bytes == 64


def test_rows_smaller_than_a_line_share_it():
    m = CacheModel(table_rows=[64], row_bytes=[16], sets=2, ways=1, line_bytes=64)
    assert [m.lookup(0, r) for r in (0, 1, 3, 4, 0)] == ["miss", "dynamic", "dynamic",
                                                          "miss", "dynamic"]


def test_bad_geometry_and_rows():
    with pytest.raises(ValueError, match="line_bytes must be a power of two"):
        CacheModel([10], [4], line_bytes=48)
    with pytest.raises(ValueError, match="sets and ways must both be positive or both 0"):
        CacheModel([10], [4], sets=4, ways=0)
    with pytest.raises(IndexError, match="row 10 outside table 0"):
        CacheModel([10], [4]).lookup(0, 10)


def test_belady_by_hand_and_as_bound():
    trace = [(0, 1), (0, 2), (0, 3), (0, 1), (0, 2)]
    assert belady_hits(trace, 2) == 2  # 3 is bypassed: it is never used again
    assert belady_hits(trace, 2, warm=True) == 4  # preloaded with 1 and 2
    rng = np.random.default_rng(0)
    tr = [(0, int(r)) for r in rng.zipf(1.3, 3000) % 100]
    for cap in (4, 16, 64):
        _, m = lru(tr, sets=1, ways=cap)
        assert belady_hits(tr, cap) >= m.stats.dynamic_hits
        static = CacheModel([100], [64], profile_hot_rows(tr, [64], cap * 64), line_bytes=64)
        assert belady_hits(tr, cap, warm=True) >= static.run(tr).static_hits


def test_profile_pins_the_most_frequent_rows_within_budget():
    trace = [(0, 1)] * 5 + [(1, 2)] * 4 + [(0, 3)] * 4 + [(0, 9)]
    assert profile_hot_rows(trace, [4, 8], 12) == {0: {1, 3, 9}}  # leftover room is filled
    assert profile_hot_rows(trace, [4, 8], 16) == {0: {1, 3}, 1: {2}}


def test_batch_trace_order_and_context():
    b = criteo_synthetic(3, [10, 20, 30], seed=1, bag_size=2)
    tr = batch_trace(b, context_tables=(0,))
    assert tr[0] == (0, int(b.indices[0][0]))
    assert len(tr) == 1 + 3 * 2 * 2
    assert tr[1:3] == [(1, int(b.indices[1][0])), (1, int(b.indices[1][1]))]


def test_batch_hot_order_pins_what_the_trace_ranking_pins():
    from rpaccel.golden.cache import batch_hot_order, batch_trace, pin_hot_rows, profile_hot_rows
    from rpaccel.golden.data import criteo_synthetic

    prof = criteo_synthetic(800, [300, 50, 1000, 7], seed=4, hot_seed=7, bag_size=2)
    row_bytes = [4, 16, 8, 32]
    for budget in (0, 40, 1000, 4000, 10**6):
        want = profile_hot_rows(batch_trace(prof), row_bytes, budget)
        got = pin_hot_rows(batch_hot_order(prof), row_bytes, budget)
        assert got == want, f"budget {budget}: expected {want}, got {got}"
    assert batch_hot_order(prof) is batch_hot_order(prof)  # counted once per batch
