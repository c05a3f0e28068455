"""The native testbench of the top level (`rpaccel.sim.native`) and the Dask regression
runner (`rpaccel.sim.regress`): the same checks as the cocotb testbench, no Python per
cycle."""

import pytest

from rpaccel.config import get_config
from rpaccel.interface import SHAPE, STATUS, ErrCause
from rpaccel.runtime import Accelerator, AccelError
from rpaccel.sim.native import build_native, problems, run_native
from rpaccel.workloads import criteo_shaped


def trace(q):
    """A job query's embedding lookups in order: (table, id) of its id beats."""
    return [(b["table"], b["id"]) for b in q["beats"] if not b["head"] and not b["dense"]]


@pytest.fixture(scope="module")
def default_acc(models_dir, ml):
    return Accelerator.from_models(get_config("default"), models_dir, ml=ml)


def test_native_default_real_queries_faults_and_reset(default_acc, models_dir, ml, tmp_path):
    """Six real queries with idle gaps, backpressure and a stalling DRAM after a reset in
    the middle of a query: an out-of-range id (flagged, ERR_WHERE / ERR_ID name it), a
    candidate too long for the buffer (flagged), a header claiming too many candidates
    (dropped), the others bit-exact. The checker catches a wrong answer, a missing flag
    and a wrong status (each injected into the expectation afterwards). Then Criteo-shaped
    models on the same build, and the real models with the two engines swapped."""
    qs = default_acc.movielens_queries(ml, 6, seed=21, candidates=60)
    job = default_acc.job([b for b, _ in qs], {1: "id", 3: "beats", 4: "count"})
    nb = build_native(default_acc.config)
    mt = run_native(nb, job, tmp_path, idle=0.3, backpressure=0.3, dram_stall=0.3, seed=5,
                    reset_mid=True)
    assert problems(job, mt) == []
    assert mt["errors"] == [False, True, False, True, False]
    assert mt["counters"]["err_cause"] == ErrCause.ID_RANGE
    assert mt["counters"]["queries"] == 5
    # read before the clear: STATUS.error follows ERR_CAUSE, SHAPE says what was
    # generated, S0_EMB_ERRORS counts the one bag with the out-of-range id
    c0, cfg = mt["counters"], default_acc.config
    status = STATUS.from_bits(c0["status"])
    assert (status.error, status.busy, status.inflight) == (1, 0, 0), c0["status"]
    assert c0["shape"] == SHAPE.const({"stages": cfg.stages, "partitions": cfg.partitions,
                                       "rows": cfg.array_rows,
                                       "cols": cfg.array_cols}).as_value().value, c0
    assert (c0["s0_emb_errors"], c0["s1_emb_errors"]) == (1, 0), c0
    assert mt["load_ok"] and mt["status_ok"] and mt["mixed_flags"] == 0
    assert mt["cycles"] > 0 and len(mt["latency"]) == 5
    # the checker fails on what it must catch
    wrong = dict(job, queries=[dict(q) for q in job["queries"]])
    a0 = list(wrong["queries"][0]["expect"])
    a0[0] = (a0[0][0], a0[0][1] + 1)
    wrong["queries"][0]["expect"] = a0
    assert any("query 0 mismatch" in p and "expected" in p for p in problems(wrong, mt))
    assert any("error flag missing" in p
               for p in problems(job, dict(mt, errors=[False] * 5)))
    assert problems(job, dict(mt, status_ok=False))
    # Criteo-shaped models on the same build: a max_items query (two full sub-batches)
    # and one of fewer candidates than stage 0 keeps
    cacc, queries = criteo_shaped(default_acc.config, seed=3)
    cjob = cacc.job(queries((default_acc.config.max_items, 9)), {})
    cmt = run_native(nb, cjob, tmp_path / "criteo", idle=0.3, backpressure=0.3,
                     dram_stall=0.3, seed=6)
    assert problems(cjob, cmt) == [] and [len(a) for a in cmt["answers"]] == [10, 9]
    # the engines swapped through ENGINE_MAP: stage 0 on engine 1, stage 1 on engine 0
    sacc = Accelerator.from_models(default_acc.config, models_dir, ml=ml, engine_map=(1, 0))
    sjob = sacc.job([b for b, _ in qs[:2]])
    smt = run_native(nb, sjob, tmp_path / "swapped", backpressure=0.2, seed=7)
    assert problems(sjob, smt) == [] and smt["load_ok"]
    # its counters: items and useful MACs per stage from the pipeline (the MLPs' weights
    # per item), BUSY_CYCLES within the queries' span and at least the longest query
    c, n = smt["counters"], [len(b.dense) for b, _ in qs[:2]]
    items = n
    for st, (q, k) in enumerate(sacc.stages):
        fm = q.float_model
        per_item = sum(w.size for w, _ in fm.bot) + sum(w.size for w, _ in fm.top)
        assert (c[f"s{st}_items"], c[f"s{st}_macs"]) == (sum(items), sum(items) * per_item), (
            st, c)
        items = [min(i, k) for i in items]
        # an engine does at most its partition's PEs of MACs a cycle; one engine per stage
        pes = sacc.config.array_rows * sacc.config.array_cols // sacc.config.partitions
        assert (c[f"s{st}_macs"] <= c[f"s{st}_engine_cycles"] * pes
                and c[f"s{st}_engine_cycles"] <= c["busy_cycles"]), (st, pes, c)
    # every id of the queries is looked up by stage 0; CYCLES counts from the reset
    ids = sum(len(trace(q)) for q in sjob["queries"])
    assert c["s0_lookups"] == ids and 0 < c["s1_misses"] <= c["s1_lookups"], (ids, c)
    assert smt["total_cycles"] < c["cycles"] <= smt["cycles"], (c["cycles"], smt["cycles"])
    assert max(smt["latency"]) - 8 <= c["busy_cycles"] <= smt["total_cycles"] + 16, (
        c["busy_cycles"], smt["latency"], smt["total_cycles"])


@pytest.mark.slow  # the two benches side by side: docs/verification.md, make test-all
def test_native_run_equals_cocotb_counters(default_acc, ml, tmp_path):
    """Without random stalls both testbenches drive the same queries into the same
    design: the answers and the per-stage counters (items, lookups, misses, MACs) are
    equal; the native bench is the faster by far (cycles per second)."""
    qs = default_acc.movielens_queries(ml, 2, seed=2, candidates=24)
    batches = [b for b, _ in qs]
    nat, (_, nf) = default_acc.simulate(batches, workdir=tmp_path / "n", bench="native",
                                        check=True)
    assert nf == 0 and nat.mismatches == 0
    with pytest.raises(AccelError, match="load of the native bench must be 'dma'"):
        default_acc.simulate(batches, bench="native", load="stream")
    with pytest.raises(AccelError, match="bench must be 'cocotb' or 'native'"):
        default_acc.simulate(batches, bench="python")
    coc, (_, cf) = default_acc.simulate(batches, workdir=tmp_path / "c", check=True)
    assert cf == 0
    assert nat.answers == coc.answers
    keys = [k for k in nat.counters if k[:2] in ("s0", "s1") and
            k.split("_", 1)[1] in ("items", "lookups", "misses", "macs")]
    assert {k: nat.counters[k] for k in keys} == {k: coc.counters[k] for k in keys}


def test_native_load_bus_error_sets_load_bus(tmp_path):
    """DRAM answers SLVERR on the reads of the first load image: ERR_CAUSE is LOAD_BUS
    after the model load, and it clears through CTRL. The clean run's second query has a
    candidate longer than its beats: the run's first error, so ERR_CAUSE is CAND_BEATS."""
    from rpaccel.workloads import criteo_shaped

    acc, queries = criteo_shaped(get_config("default"), seed=3)
    job = acc.job(queries((12, 16)), {1: "beats"})
    addr, beats, _ = job["loads"][0]
    nb = build_native(acc.config)
    mt = run_native(nb, job, tmp_path, bus_error=(addr, addr + 64))
    assert mt["cause_after_load"] == ErrCause.LOAD_BUS
    clean = run_native(nb, job, tmp_path / "clean")
    assert clean["cause_after_load"] == ErrCause.NONE and problems(job, clean) == []
    # the first error of the run is the front end's: a candidate longer than its beats
    assert clean["errors"] == [False, True]
    assert clean["counters"]["err_cause"] == ErrCause.CAND_BEATS


def test_native_lookup_bus_error_flags_the_query_and_the_next_is_right(tmp_path):
    """DRAM answers SLVERR to one embedding line read: the first miss of the second
    query in stage 0. That query is answered with every beat flagged, ERR_CAUSE is
    LOOKUP_BUS with the stage, table and line address; the line leaves the cache, so the
    queries after it (which read it again) are bit-exact."""
    from rpaccel.workloads import criteo_shaped

    acc, queries = criteo_shaped(get_config("default"), seed=5)
    job = acc.job(queries((40, 60, 50, 30)))
    img = acc.images[0]
    model = img.cache_model()

    skip = 0
    for t, r in trace(job["queries"][0]):
        skip += model.lookup(t, r) == "miss"
    first = next((t, r) for t, r in trace(job["queries"][1]) if model.lookup(t, r) == "miss")
    t, r = first
    line = (img.bases[t] + r * img.row_bytes[t]) & ~(acc.config.line_bytes - 1)
    bad = dict(job["queries"][1], bad={"fault": "bus", "cause": ErrCause.LOOKUP_BUS,
                                       "stage": 0, "table": t, "id": line})
    job = dict(job, queries=[job["queries"][0], bad, *job["queries"][2:]])
    nb = build_native(acc.config)
    mt = run_native(nb, job, tmp_path, idle=0.2, backpressure=0.2, dram_stall=0.2, seed=9,
                    bus_error=(img.bases[0], acc.images[1].bases[0], 1, skip))
    assert problems(job, mt) == []
    assert mt["errors"] == [False, True, False, False]
    assert mt["counters"]["err_cause"] == ErrCause.LOOKUP_BUS and mt["status_ok"]
    # the checker sees a flag that is missing
    assert any("error flag missing" in p
               for p in problems(job, dict(mt, errors=[False] * 4)))


def test_regress_on_a_scheduler_address(models_dir, tmp_path):
    """The regression runner on a Dask scheduler given by address (an in-process cluster
    here): two runs of random stimulus, every answer checked, one JSON report."""
    from dask.distributed import LocalCluster

    from rpaccel.sim.regress import SuiteEntry, regress

    entry = SuiteEntry("tiny", "default", "criteo", (1, 40), 0.0)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        rep = regress((entry,), queries=6, chunk=3, seed=11,
                      scheduler=cluster.scheduler_address, models_dir=models_dir,
                      work_root=tmp_path, out=tmp_path / "r.json", log=lambda m: None)
    assert rep["mismatch_free"] and rep["queries"] == 6 and rep["seed"] == 11
    assert rep["configs"]["tiny"]["runs"] == 2
    assert rep["configs"]["tiny"]["answered"] + rep["configs"]["tiny"]["dropped"] == 6
    assert (tmp_path / "r.json").exists()


def test_native_two_engines_serve_one_stage(models_dir, ml, tmp_path):
    """`two-engine`: one stage (large, keeps 10) whose sub-batches alternate between the
    two partitions' engines. Real 100-candidate queries (two sub-batches each) with idle
    gaps, backpressure, DRAM stalls and an out-of-range id: bit-exact, the bad query
    flagged, a refused engine map (no engine for the stage) leaves the map in use. On the
    same build without stalls, with both engines and with engine 0 alone: the cycle model
    within 2% of both, and two engines faster than one."""
    from rpaccel import perf

    cfg = get_config("two-engine")
    nb = build_native(cfg)
    acc = Accelerator.from_models(cfg, models_dir, ml=ml)
    assert acc.engine_map == (0, 0)
    qs = [b for b, _ in acc.movielens_queries(ml, 4, seed=5, candidates=100)]
    job = acc.job(qs, {2: "id"})
    mt = run_native(nb, job, tmp_path / "faults", idle=0.3, backpressure=0.3,
                    dram_stall=0.3, seed=9)
    assert problems(job, mt) == []
    assert mt["errors"] == [False, False, True, False]
    assert mt["load_ok"] and mt["status_ok"]
    cycles = {}
    for em in ((0, 0), (0, None)):
        a = Accelerator.from_models(cfg, models_dir, ml=ml, engine_map=em)
        j = a.job(qs[:3])
        m = run_native(nb, j, tmp_path / str(em[1]))
        assert problems(j, m) == [], em
        pred = perf.predict(a, qs[:3], alone=False)
        rtl = m["total_cycles"]
        assert abs(pred.total_cycles / rtl - 1) < 0.02, (em, pred.total_cycles, rtl)
        model_busy = sum(q.stages[0]["engine"]["cycles"] for q in pred.queries)
        assert abs(model_busy / m["counters"]["s0_engine_cycles"] - 1) < 0.01, (
            em, model_busy, m["counters"]["s0_engine_cycles"])
        cycles[em] = rtl
    assert cycles[(0, 0)] < 0.75 * cycles[(0, None)], cycles


@pytest.mark.slow  # a 4-engine build: make test-all
def test_native_shared_engines_two_stages(models_dir, ml, tmp_path):
    """`shared-engines` (two stages, four engines): real queries at the iso-quality
    pipeline (small keeps 32, large 10) under the maps 1 + 3 and 2 + 2, one run with idle
    gaps, backpressure, DRAM stalls and a bad id; bit-exact, the model within 2% of the
    RTL without stalls."""
    from rpaccel import perf

    cfg = get_config("shared-engines")
    nb = build_native(cfg)
    pipe = (("small", 32), ("large", 10))
    for em, faults in (((0, 1, 1, 1), True), ((0, 0, 1, 1), False)):
        acc = Accelerator.from_models(cfg, models_dir, pipe, ml=ml, engine_map=em)
        qs = [b for b, _ in acc.movielens_queries(ml, 3, seed=11)]
        if faults:
            job = acc.job(qs, {1: "id"})
            mt = run_native(nb, job, tmp_path / "faults", idle=0.3, backpressure=0.3,
                            dram_stall=0.3, seed=3)
            assert problems(job, mt) == [] and mt["errors"] == [False, True, False], em
        job = acc.job(qs)
        mt = run_native(nb, job, tmp_path / "".join(map(str, em)))
        assert problems(job, mt) == [], em
        pred = perf.predict(acc, qs, alone=False)
        assert abs(pred.total_cycles / mt["total_cycles"] - 1) < 0.02, (
            em, pred.total_cycles, mt["total_cycles"])


@pytest.mark.slow  # make test-all; CI runs the narrow requantizer in test_embedding
def test_native_fpga_ecp5_real_queries(models_dir, ml, tmp_path):
    """The ECP5 build (`fpga-ecp5`: 4-lane bag requantizer, sub-batches of 32, a one-bank
    queue top-k of 16, 2 MSHRs) runs the small -> medium pipeline on real queries
    bit-exact, with idle gaps, backpressure, a stalling DRAM and an out-of-range id
    (flagged; the next query right)."""
    cfg = get_config("fpga-ecp5")
    acc = Accelerator.from_models(cfg, models_dir, pipeline=(("small", 16), ("medium", 10)),
                                  ml=ml)
    qs = acc.movielens_queries(ml, 4, seed=31, candidates=cfg.max_items)
    job = acc.job([b for b, _ in qs], {1: "id"})
    mt = run_native(build_native(cfg), job, tmp_path, idle=0.3, backpressure=0.3,
                    dram_stall=0.3, seed=9)
    assert problems(job, mt) == []
    assert mt["errors"] == [False, True, False, False]
    assert [len(a) for a in mt["answers"]] == [10] * 4


def test_native_two_embedding_units_per_stage(tmp_path):
    """`wide-lookup` (two embedding units per stage, two ids per query beat) with an AXI
    port per unit (``axi_ports`` 2, each port its own DRAM subordinate): Criteo-shaped
    queries of eight tables with bags of two, rows of 2 values in stage 0 (RM-small's
    size: the pooled vectors go 4 to an 8-lane feature word, two per response beat, and
    the interaction unit unpacks them) and of 16 in stage 1 (two words each, one vector a
    beat), idle gaps, backpressure and DRAM stalls, an out-of-range id in lane 1 (flagged,
    ERR_WHERE / ERR_ID name it), a candidate too long for the buffer and a too-large
    header; the rest bit-exact; then a query cut short by its stream's end (flagged) and
    one whose end comes late (exact), the next one right. Each stage's lookups and misses
    equal one golden cache model per unit (tables t mod 2) fed that unit's ids, and
    the cycle model is within 5% of the RTL's latency; port 1 carries exactly the model's
    unit-1 line reads, port 0 the unit-0 ones and the loader's."""
    from rpaccel import perf
    from rpaccel.interface import beat_lookups
    from rpaccel.scripts.perf_report import criteo_accelerator

    cfg = get_config("wide-lookup").replace(axi_ports=2)
    assert cfg.emb_units == 2
    acc, queries = criteo_accelerator(cfg, tables=8, inter="dot", bag=2, dims=(2, 16))
    assert [max(st["pack"] for st in p.steps) for p in acc.progs] == [2, 0], "packed features"
    batches = queries((100, 64, 40, 90, 30))
    job = acc.job(batches, {1: "id", 3: "beats", 4: "count"})
    bad = job["queries"][1]["bad"]
    assert bad["table"] % 2 == 1  # the last kept lane of the last sparse beat: unit 1
    nb = build_native(cfg)
    mt = run_native(nb, job, tmp_path, idle=0.3, backpressure=0.3, dram_stall=0.3, seed=4)
    assert problems(job, mt) == []
    assert mt["errors"] == [False, True, False, True]
    assert mt["counters"]["err_cause"] == ErrCause.ID_RANGE
    # stage 0 looks up every id of the queries it takes, unit by unit in stream order
    models = [acc.images[0].cache_model() for _ in range(2)]
    for q in job["queries"][:4]:
        for b in q["beats"][1:]:
            if not b["dense"]:
                for g, t, i, _ in beat_lookups(cfg, b):
                    if 0 <= i < acc.images[0].rows[t]:
                        models[g].lookup(t, i)
    c = mt["counters"]
    assert c["s0_lookups"] == sum(m.stats.lookups for m in models), c
    assert c["s0_misses"] == sum(m.stats.misses for m in models), c
    # the model beside the RTL, on clean queries without stalls
    clean = [batches[0], batches[2]]
    cjob = acc.job(clean)
    cmt = run_native(nb, cjob, tmp_path / "clean")
    assert problems(cjob, cmt) == []
    pred = perf.predict(acc, clean, alone=False)
    for want, got in ((pred.queries[0].latency, cmt["latency"][0]),
                      (pred.total_cycles, cmt["total_cycles"])):
        assert abs(want - got) <= 0.05 * got, (want, got)
    reads = cmt["line_reads"]
    assert len(reads) == 2 and reads[1] == pred.port_reads[1] > 0, (reads, pred.port_reads)
    assert reads[0] > pred.port_reads[0] > 0, (reads, pred.port_reads)
    # framing: a stream that ends (`end`) in the middle of a query's ids (the front end
    # makes up each lane's missing bags: flagged), one without `end` on its last beat and
    # surplus beats (dropped: exact, unflagged); the query after them is right
    fjob = acc.job(queries((70, 40, 30)), {0: "short", 1: "unended"})
    fmt = run_native(nb, fjob, tmp_path / "framing", idle=0.3, backpressure=0.3, seed=6)
    assert problems(fjob, fmt) == []
    assert fmt["errors"] == [True, False, False]
    assert fmt["counters"]["err_cause"] == ErrCause.FRAMING


@pytest.mark.slow  # a 32 x 32, 26-table build: ~9 min of Verilator here (make test-all)
def test_native_mid_recpipe_shapes(tmp_path):
    """`mid`: RecPipe's RM-small -> RM-med -> RM-large shapes (26 tables of 2,000 rows, 351
    `dot` pairs, rows of 4 / 16 / 32 values; small keeps 128, medium 32, large 16) on a
    32 x 32 array whose four engines the three stages share. Criteo-shaped queries of 64,
    1,024 and 200 candidates with idle gaps, backpressure, DRAM stalls and an out-of-range
    id in the second (flagged, the third right); the rest bit-exact; without stalls the
    model within 2% of the RTL."""
    from rpaccel import perf
    from rpaccel.workloads import recpipe_shapes

    cfg = get_config("mid")
    acc, queries = recpipe_shapes(cfg)
    assert [len(q.pair_mult) for q, _ in acc.stages] == [351] * 3
    batches = queries((64, 1024, 200))
    nb = build_native(cfg)
    job = acc.job(batches, {1: "id"})
    mt = run_native(nb, job, tmp_path / "faults", idle=0.3, backpressure=0.3,
                    dram_stall=0.3, seed=2)
    assert problems(job, mt) == []
    assert mt["errors"] == [False, True, False]
    clean = [batches[0], batches[2]]
    cjob = acc.job(clean)
    cmt = run_native(nb, cjob, tmp_path / "clean")
    assert problems(cjob, cmt) == []
    pred = perf.predict(acc, clean, alone=False)
    assert abs(pred.total_cycles / cmt["total_cycles"] - 1) < 0.02, (
        pred.total_cycles, cmt["total_cycles"])
