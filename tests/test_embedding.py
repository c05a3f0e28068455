"""Embedding unit: host image checks, and cocotb on Verilator with cocotbext-axi's AXI RAM
against the golden cache model and golden pooling."""

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.emb_program import EmbeddingImage, EmbError, batch_bags
from rpaccel.golden.cache import batch_trace
from rpaccel.sim.emb_jobs import run_embedding

CFG = get_config("default")


def _random_image(rng):
    tables = [rng.integers(-127, 128, (r, d)) for r, d in ((50, 4), (300, 16), (200, 32))]
    return EmbeddingImage(CFG, tables, {0: {1, 2, 3}, 1: {0, 5, 7}, 2: {0}},
                          np.array([1 << 14, 23000, 17000]), np.array([15, 16, 17]))


def _zipf_bags(rng, image, n):
    bags = []
    for _ in range(n):
        t = int(rng.integers(0, len(image.rows)))
        ids = [int(x) for x in (rng.zipf(1.3, int(rng.integers(1, 5))) - 1) % image.rows[t]]
        bags.append((t, ids))
    return bags


def test_image_refuses_tables_that_do_not_fit():
    rng = np.random.default_rng(0)
    with pytest.raises(EmbError, match="row bytes of table 0 must be a power of two up to "
                                       "emb_dim 32, not 12"):
        EmbeddingImage(CFG, [rng.integers(0, 5, (10, 12))], {}, [1], [0])
    with pytest.raises(EmbError, match="rows of all tables must be at most emb_map_rows 8192"):
        EmbeddingImage(CFG, [rng.integers(0, 5, (9000, 4))], {}, [1], [0])
    with pytest.raises(EmbError, match="pinned rows must be at most static_rows 128"):
        EmbeddingImage(CFG, [rng.integers(0, 5, (500, 4))], {0: set(range(200))}, [1], [0])


def test_image_matches_golden_pooling(qmodels, ml):
    q = qmodels["medium"]
    batch = ml.batch(np.full(5, 7), np.arange(5))
    img = EmbeddingImage.for_stage(CFG, q, batch, 256)
    vecs, errs, counters, first = img.expected(batch_bags(batch))
    pooled = q.pooled(batch)
    assert [v[:16] for v in vecs] == [pooled[t][i].tolist() for i in range(5)
                                      for t in range(len(pooled))]
    assert not any(errs) and first is None
    assert counters["lookups"] == len(batch_trace(batch))


def test_verilator_random_bags_with_a_bad_id(tmp_path):
    """Zipf bags over three tables of 4, 16 and 32-byte rows: static hits, dynamic hits,
    misses with several MSHRs busy, DRAM with random AR/R stalls, idle request gaps,
    result backpressure. Bag 7 holds an id outside its table: zeros + error, status
    (table, id), and every later bag is right."""
    rng = np.random.default_rng(1)
    img = _random_image(rng)
    bags = _zipf_bags(rng, img, 120)
    bags[7] = (1, [3, 300, 4])
    tests, failed = run_embedding(CFG, img, bags, tmp_path, seed=1)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


def test_verilator_reports_a_wrong_pooled_vector(tmp_path):
    """The bench can fail: one expected value off by one must be reported."""
    import pickle

    from rpaccel.sim.emb_jobs import write_job

    img = _random_image(np.random.default_rng(2))
    path = write_job(tmp_path / "jobs.pkl", img, [(0, [10, 11]), (2, [5])])
    job = pickle.loads(path.read_bytes())
    job["expect"][1][0] += 1
    path.write_bytes(pickle.dumps(job))
    tests, failed = run_embedding(CFG, img, None, tmp_path, seed=2, job=path)
    assert (tests, failed) == (1, 1)
    assert "expected" in (tmp_path / "sim.log").read_text()


def test_verilator_movielens_query_trace(tmp_path, qmodels, ml):
    """Real MovieLens-100k query: the large model's six tables (32-byte rows) for 25
    candidates of one user; rows pinned from a profile of 400 training samples."""
    q = qmodels["large"]
    user, cands, _ = ml.queries(1000, seed=5, users=[11])[0]
    batch = ml.batch(np.full(25, user), cands[:25])
    rng = np.random.default_rng(3)
    users, items, _ = ml.training_samples(1, rng)  # the profile: training-set frequencies
    pick = rng.choice(len(users), 400, replace=False)
    prof = ml.batch(users[pick], items[pick])
    img = EmbeddingImage.for_stage(CFG, q, prof, 2048)
    tests, failed = run_embedding(CFG, img, batch_bags(batch), tmp_path, seed=3)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


def test_verilator_criteo_shaped_zipf_trace(tmp_path):
    """Criteo-shaped Zipf items over eight 400-row tables of 16-byte rows, bags of 2."""
    from rpaccel.golden.data import criteo_synthetic

    rows = (400,) * 8
    rng = np.random.default_rng(4)
    tables = [rng.integers(-127, 128, (r, 16)) for r in rows]
    batch = criteo_synthetic(20, rows, dense_dim=4, bag_size=2, seed=4)
    prof = criteo_synthetic(300, rows, dense_dim=4, bag_size=2, seed=5)
    from rpaccel.golden.cache import profile_hot_rows

    pinned = profile_hot_rows(batch_trace(prof), [16] * 8, 1024)
    img = EmbeddingImage(CFG, tables, pinned, np.full(8, 20000), np.full(8, 16))
    tests, failed = run_embedding(CFG, img, batch_bags(batch), tmp_path, seed=4)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


@pytest.mark.slow  # CI: random bags, the narrow requantizer and the native top cover the unit
def test_verilator_other_geometry(tmp_path):
    """128-bit AXI data, 64-byte lines (4 beats), 8 sets x 2 ways, 2 MSHRs, 64 static rows:
    every size comes from the config."""
    from rpaccel.sim.emb_jobs import random_job

    cfg = CFG.replace(axi_data_bits=128, line_bytes=64, cache_sets=8, cache_ways=2, mshrs=2,
                      static_rows=64)
    job = random_job(cfg, tmp_path / "jobs.pkl", seed=6)
    tests, failed = run_embedding(cfg, None, None, tmp_path, seed=6, job=job)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


@pytest.mark.slow  # CI: the three-unit cluster test has the narrow requantizer in each unit
def test_verilator_narrow_requantizer(tmp_path):
    """A 4-lane bag requantizer (8 slices per 32-byte bag): random bags with a bad id,
    DRAM stalls, idle gaps and result backpressure give the same vectors as the full-width
    unit, bag after bag."""
    cfg = CFG.replace(emb_requant_lanes=4)
    rng = np.random.default_rng(7)
    img = _random_image(rng)
    bags = _zipf_bags(rng, img, 80)
    bags[5] = (2, [1, 10**6])
    tests, failed = run_embedding(cfg, img, bags, tmp_path, seed=7)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


# CI: three units (a lane count that does not divide the tables) with small caches (a
# quicker build), 4-lane bag requantizers and an AXI port each; two units of the default
# caches on one port and four on two ports run with the slow tests (and through the whole
# top level in test_native)
@pytest.mark.parametrize("units, ports", [pytest.param(2, 1, marks=pytest.mark.slow), (3, 3),
                                          pytest.param(4, 2, marks=pytest.mark.slow)])
def test_verilator_cluster_of_units_in_table_order(tmp_path, units, ports):
    """`EmbeddingCluster`: five tables of 4 to 32-byte rows on 2 or 3 units (table t on unit
    t mod G), one id per unit per request beat, Zipf bags of 1-4 ids (lanes run out at
    different beats), DRAM stalls, idle gaps and backpressure, an id outside its table in
    item 9. Pooled vectors come back in table order, as many a beat as are left of the item
    and of their feature word (2 a word with 3 units: beats of units 0-1, 2-0, 1; unpacked
    with 2 units: one a beat), equal to golden, and the counters equal one golden cache
    model per unit, summed; with ``axi_ports`` P > 1 unit g reads through port g mod P,
    each port's line reads equal to its units' golden misses."""
    cfg = CFG.replace(emb_units=units, axi_ports=ports)
    if units == 3:  # and a 4-lane bag requantizer in every unit
        cfg = cfg.replace(cache_sets=4, cache_ways=2, mshrs=2, static_rows=16,
                          emb_map_rows=2048, emb_requant_lanes=4)
    rng = np.random.default_rng(10 + units)
    dims = (4, 16, 32, 8, 16)
    tables = [rng.integers(-127, 128, (r, d)) for r, d in zip((50, 300, 200, 90, 400), dims,
                                                              strict=True)]
    img = EmbeddingImage(cfg, tables, {0: {1, 2, 3}, 1: {0, 5, 7}, 4: {0, 1}},
                         rng.integers(1 << 14, 1 << 15, 5), rng.integers(15, 18, 5))
    bags = []
    for _ in range(40):
        for t in range(5):
            ids = (rng.zipf(1.3, int(rng.integers(1, 5))) - 1) % img.rows[t]
            bags.append((t, [int(v) for v in ids]))
    bags[9 * 5 + 3] = (3, [2, img.rows[3] + 7])
    _, _, counters, first = img.expected(bags)
    assert first == (3, img.rows[3] + 7) and counters["err_count"] == 1
    one = EmbeddingImage(CFG, tables, img.static_rows, img.pool_mult, img.pool_shift)
    assert counters["lookups"] == one.expected(bags)[2]["lookups"]
    tests, failed = run_embedding(cfg, img, bags, tmp_path, seed=units,
                                  fpack={4: 1, 3: 1, 2: 0}[units])
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


def test_cluster_offers_no_beat_without_a_vector():
    """`EmbeddingCluster` (Amaranth simulator): no response beat is offered before any
    lookup, neither with ``tables`` 0 (after reset, before a model is set: a beat would
    hold no vector) nor with five tables; a register slice behind it would otherwise take
    such beats and hand them to the controller as pooled vectors."""
    from rpaccel.hw.emb_cluster import EmbeddingCluster

    from .amaranth_bench import run_bench

    cfg = CFG.replace(emb_units=2, cache_sets=2, cache_ways=1, mshrs=1, static_rows=4,
                      emb_map_rows=64)
    dut = EmbeddingCluster(cfg)
    seen = []

    async def bench(ctx):
        ctx.set(dut.resp.ready, 1)
        for tables in (0, 5):
            ctx.set(dut.tables, tables)
            for _ in range(12):
                await ctx.tick()
                seen.append((tables, ctx.get(dut.resp.valid)))

    run_bench(dut, bench)
    offered = [t for t, v in seen if v]
    assert offered == [], f"beats offered with tables = {sorted(set(offered))}"
