"""The performance model (`rpaccel.perf`): engine cycles exact against the RTL, whole
queries within 5% of Verilator on a case it was never tuned on, queueing behaviour, the
``rpaccel perf`` report."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from rpaccel import perf
from rpaccel.config import get_config
from rpaccel.hw.mlp_engine import ComputeEngine
from rpaccel.interface import StepKind as Kind
from rpaccel.interface import lanes as cfg_lanes
from rpaccel.interface import slot_width
from rpaccel.program import compile_layers
from rpaccel.scripts.perf_report import (
    CALIBRATION,
    TOLERANCE,
    CalCase,
    case_accelerator,
    compare,
)
from rpaccel.sim.engine_jobs import layers_job, random_layers, stage_job, write_jobs
from rpaccel.sim.runner import build, run

CFG = get_config("default")


def test_engine_timing_by_hand():
    """One 8x4 tile of 64 items: the first tile costs 2R + P + 7 on top of the items; a
    second output tile follows after max(n, R + P + 3) (its weights loaded right behind
    the first tile's swapping item); a second layer's first tile follows the first
    layer's writes item by item: 2 cycles after its last item when the sub-batch covers the
    drain R + P + 10, the drain after its start otherwise."""
    eng = perf.EngineTiming(8, 4)
    one = compile_layers(CFG, slot_width(CFG, 0), 1, random_layers(np.random.default_rng(0),
                                                                    [8, 4])).steps
    assert eng.run(one, 64)["cycles"] == 64 + 27
    two = compile_layers(CFG, slot_width(CFG, 0), 1, random_layers(np.random.default_rng(0),
                                                                    [8, 8])).steps
    assert eng.run(two, 64)["cycles"] == 2 * 64 + 27
    assert eng.run(two, 5)["cycles"] == 15 + 5 + 27      # weight reload bound
    assert eng.run(two, 5)["reload"] == 15 - 5 and eng.run(two, 64)["reload"] == 0
    deep = compile_layers(CFG, slot_width(CFG, 0), 1, random_layers(np.random.default_rng(0),
                                                                     [8, 4, 4])).steps
    assert eng.run(deep, 64)["cycles"] == 2 * 64 + 27 + 2
    assert eng.run(deep, 5)["cycles"] == 27 + 22 + 5
    # interaction, per item in the steady state on 8-value words: the slower of reading 4
    # feature words (2 per cycle) and emitting the copy and the 6 pairs, one operation a
    # cycle, items back to back (no item's last operation leaves bytes over)
    dot = {"kind": Kind.DOT, "feats": 4, "d": 8, "dw": 1}
    assert perf.EngineTiming.interaction_ops(dot, 4, 8) == [8, 4, 2]
    assert perf.EngineTiming.interaction_per_item(dot, lanes=8) == max(2, 1 + 6)
    assert perf.EngineTiming.interaction_per_item(dot, 4, lanes=8) == max(2, 1 + 2)
    assert perf.EngineTiming.interaction_per_item(dot, 8, lanes=8) == 2  # reading bound
    cat = {"kind": Kind.CAT, "feats": 4, "d": 8, "dw": 1}
    assert perf.EngineTiming.interaction_per_item(cat, lanes=8) == max(2, 4)
    # on 4-value words a 3-value copy and 3 pairs fill a word and leave 2 bytes over: the
    # next item waits a cycle for their write
    odd = {"kind": Kind.DOT, "feats": 3, "d": 3, "dw": 1}
    assert perf.EngineTiming.interaction_ops(odd, 3, 4) == [3, 3]
    assert perf.EngineTiming.interaction_gap([3, 3], 4)
    assert not perf.EngineTiming.interaction_gap([3, 1], 4)
    assert perf.EngineTiming.interaction_per_item(odd, 3, lanes=4) == max(2, 2 + 1)
    # n items: the first item's read (cycles 1-2), its first operation at 4, 7 a item back
    # to back, then the tail (products register 1, requantizer and packer 10)
    assert perf.EngineTiming.interaction_cycles(dot, 10, lanes=8) == 4 + 10 * 7 - 1 + 11


def test_engine_timing_exact_on_verilator(tmp_path, qmodels, ml):
    """Random MLPs (1-3 layers, several tiles, 1 to 64 items) and the trained small and
    large stage models on both partitions of the default engine: the model's cycles equal
    the RTL's busy-cycle counter on every run."""
    rng = np.random.default_rng(11)
    mode = 1
    progs, steps = {0: [], 1: []}, {}
    for p in (0, 1):
        for j in range(3):
            dims = [int(v) for v in rng.choice([3, 8, 13, 21, 33], size=int(rng.integers(2, 5)))]
            xs = [rng.integers(-128, 128, (int(n), dims[0])) for n in rng.integers(1, 65, 3)]
            name = f"p{p} mlp{j} {dims}"
            layers = random_layers(rng, dims)
            progs[p].append(layers_job(CFG, p, mode, layers, xs, name=name))
            steps[name] = compile_layers(CFG, slot_width(CFG, p), mode, layers).steps
    user, cands, _ = ml.queries(1000, seed=0, users=[3])[0]
    from rpaccel.program import compile_stage

    for p, size in ((0, "small"), (1, "large")):
        bs = [ml.batch(np.full(n, user), cands[:n]) for n in (5, 40)]
        progs[p].append(stage_job(CFG, p, mode, qmodels[size], bs, name=f"p{p} {size}"))
        steps[f"p{p} {size}"] = compile_stage(CFG, slot_width(CFG, p), mode,
                                              qmodels[size]).steps
    sb = build(ComputeEngine, CFG, "engine")
    jobs = write_jobs(tmp_path / "jobs.pkl", mode, {p: {"programs": v} for p, v in progs.items()})
    metrics = tmp_path / "metrics.json"
    tests, failed = run(sb, "rpaccel.sim.tb_engine", tmp_path / "run",
                        {"jobs": str(jobs), "metrics": str(metrics), "seed": 3})
    assert (tests, failed) == (1, 0)
    measured = json.loads(metrics.read_text())
    assert len(measured) == 22
    eng = perf.EngineTiming(CFG.array_rows, CFG.array_cols >> mode, lanes=cfg_lanes(CFG))
    wrong = [(m["name"], m["items"], m["cycles"], eng.run(steps[m["name"].split("#")[0]],
                                                         m["items"])["cycles"])
             for m in measured
             if eng.run(steps[m["name"].split("#")[0]], m["items"])["cycles"] != m["cycles"]]
    assert not wrong, f"(run, items, rtl, model): {wrong}"


@pytest.mark.parametrize("pairs,slots,banks,emb_dim", [
    # tests/test_interaction.py covers inter_pairs 1-16 bit and cycle exact
    pytest.param(4, 1, 2, 8, marks=pytest.mark.slow),
    (2, 2, 4, 2)])
def test_engine_with_several_pairs_per_cycle_on_verilator(tmp_path, qmodels, ml, pairs, slots,
                                                          banks, emb_dim):
    """The interaction unit at ``inter_pairs`` 4, and at 2 with 2 slots and 4 register-file
    memories, inside the engine on Verilator: the trained small and large models (``dot``,
    28 pairs) and a Criteo-shaped ``dot`` model of 8 tables (36 pairs, rows of ``emb_dim``;
    with slots of 4 lanes the small and the Criteo-shaped model are narrow, the large one
    wide; rows of 2 packed 4 to a word land 4 a cycle) bit-exact against golden, and the
    model's cycles exact."""
    from rpaccel.golden.data import criteo_synthetic
    from rpaccel.golden.quantize import quantize_model
    from rpaccel.golden.zoo import ModelSize, random_model
    from rpaccel.interface import StepKind as perf_kind
    from rpaccel.program import compile_stage

    cfg = CFG.replace(name=f"default-p{pairs}s{slots}b{banks}", inter_pairs=pairs,
                      inter_slots=slots, inter_banks=banks)
    mode = 1
    user, cands, _ = ml.queries(1000, seed=0, users=[5])[0]
    rows = [30] * 8
    crit = quantize_model(random_model(ModelSize("c8", emb_dim, (16,), (24,)), 13, rows, "dot",
                                       seed=2), criteo_synthetic(200, rows, seed=3))
    jobs, steps = {0: [], 1: []}, {}
    for p, q, batches in (
            (0, qmodels["small"], [ml.batch(np.full(n, user), cands[:n]) for n in (3, 64)]),
            (1, qmodels["large"], [ml.batch(np.full(9, user), cands[:9])]),
            (0, crit, [criteo_synthetic(n, rows, seed=n) for n in (17, 40)])):
        name = f"p{p} {q.name}"
        jobs[p].append(stage_job(cfg, p, mode, q, batches, name=name))
        steps[name] = compile_stage(cfg, slot_width(cfg, p), mode, q).steps
    sb = build(ComputeEngine, cfg, "engine")
    path = write_jobs(tmp_path / "jobs.pkl", mode, {p: {"programs": v} for p, v in jobs.items()})
    metrics = tmp_path / "metrics.json"
    assert run(sb, "rpaccel.sim.tb_engine", tmp_path / "run",
               {"jobs": str(path), "metrics": str(metrics), "seed": 5}) == (1, 0)
    eng = perf.EngineTiming(cfg.array_rows, cfg.array_cols >> mode, pairs, 8, slots, banks)
    measured = json.loads(metrics.read_text())
    assert len(measured) == 5
    for m in measured:
        assert eng.run(steps[m["name"].split("#")[0]], m["items"])["cycles"] == m["cycles"], m
    if slots > 1:
        dots = [st for k in steps.values() for st in k if st["kind"] == perf_kind.DOT]
        assert {eng.pair_rate(st["d"]) for st in dots} == {pairs, pairs * slots}, dots
        assert max(eng.fill_rate(st["pack"]) for st in dots) == banks, dots


def test_model_lookup_rate_on_a_gather_bound_query(tmp_path):
    """`baseline` (one embedding unit, one id a query beat) on Criteo-shaped queries of 8
    tables with bags of 12 ids and rows of 4: the lookups, not the engine, bound it. The
    model within 5% of the native Verilator run, latency and throughput (an embedding unit
    taking a lookup every other cycle instead of every cycle was 52% slow here)."""
    from rpaccel.scripts.perf_report import criteo_accelerator

    acc, queries = criteo_accelerator(get_config("baseline"), 8, "dot", bag=12, dims=(4,))
    batches = queries((128, 128))
    pred = perf.predict(acc, batches)
    assert pred.busy["gather0"] > 1.5 * pred.busy["engine0"], pred.busy
    sim_run, _ = acc.simulate(batches, workdir=tmp_path, bench="native")
    assert sim_run.mismatches == 0
    for r in compare("gather-bound", "baseline", pred, sim_run):
        assert abs(r["error"]) <= TOLERANCE, r


@pytest.mark.slow  # make bench perf checks the model against Verilator on 15 cases
def test_model_within_tolerance_of_verilator_on_an_unseen_case(tmp_path):
    """A case the model was not tuned on (7 tables, ``cat`` then ``dot``, k 12 / 5, odd
    query sizes): latency of the first query and cycles per query back to back within 5%
    of Verilator, and the model's embedding counters equal the RTL's."""
    case = CalCase("default", "criteo", tables=7, inter="cat,dot", bag=1, sizes=(57, 111, 33),
                   ks=(12, 5), seed=4)
    assert all(case.name != c.name or case.config != c.config for c in CALIBRATION)
    acc, batches = case_accelerator(case)
    pred = perf.predict(acc, batches)
    sim_run, (tests, failed) = acc.simulate(batches, workdir=tmp_path, load="stream")
    assert (tests, failed) == (1, 0) and sim_run.mismatches == 0
    rows = compare(case.name, case.config, pred, sim_run)
    assert [r["metric"] for r in rows] == ["latency", "throughput"]
    for r in rows:
        assert abs(r["error"]) <= TOLERANCE, r
    for s in range(2):
        assert sum(q.stages[s]["emb"]["lookups"] for q in pred.queries) == \
            sim_run.counters[f"s{s}_lookups"]
        assert sum(q.stages[s]["emb"]["misses"] for q in pred.queries) == \
            sim_run.counters[f"s{s}_misses"]
        assert sum(q.stages[s]["engine"]["cycles"] for q in pred.queries) == \
            sim_run.counters[f"s{s}_engine_cycles"]
    assert pred.alone[0] == pred.queries[0].latency


def test_queueing_low_load_and_saturation():
    """At a trickle the tail is the latency alone; past the slowest stage's rate the load
    is refused as saturated; more load never lowers the p95."""
    service, latency = [1000.0, 4000.0], [3000.0, 6000.0]
    low = perf.queueing(service, latency, 2, qps=10, fclk_mhz=100.0, n=500)
    assert low["p50_ms"] == pytest.approx(0.09, rel=1e-6)
    assert not low["saturated"]
    assert perf.queueing(service, latency, 2, qps=26_000, fclk_mhz=100.0)["saturated"]
    p95 = [perf.queueing(service, latency, 2, q, 100.0, n=2000)["p95_ms"]
           for q in (1000, 10_000, 20_000)]
    assert p95 == sorted(p95) and p95[-1] > p95[0]
    one = perf.batch_queueing(lambda b: 0.001 * b ** 0.5, 16, qps=5, n=300)
    assert one["p50_ms"] == pytest.approx(1.0, rel=1e-6)
    assert perf.batch_queueing(lambda b: 0.001 * b ** 0.5, 16, qps=5000)["saturated"]


def test_perf_cli_paper_scale_json(capsys):
    """``rpaccel perf`` on the paper config (small tables and queries to keep it short):
    rows per design and pipeline with the fields the report promises, the measured
    CPU / GPU beside them, the paper's loads, plots written."""
    from rpaccel.scripts.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        assert main(["perf", "--config", "paper", "--workload", "recpipe-criteo", "--rows",
                     "3000", "--candidates", "640", "--queries", "1", "--quiet", "--json",
                     "--plots", tmp]) == 0
        rep = json.loads(capsys.readouterr().out)
        assert sorted(Path(p).name for p in rep["plots"]) == [
            "perf-breakdown-recpipe-criteo.png", "perf-load-recpipe-criteo.png"]
    rows = rep["rows"]
    assert [(r["design"], r["pipeline"]) for r in rows] == [
        ("paper", "1-stage large"), ("paper", "2-stage small->large"),
        ("paper", "3-stage small->med->large"), ("paper-baseline", "1-stage large")]
    for r in rows:
        assert r["latency_us"] > r["compute_limit_us"] > 0 and r["qps"] > 0
        assert r["bottleneck"].startswith(("engine", "gather", "fe", "replay", "axi"))
        assert r["stages"][0]["items"] == 640
    assert rows[1]["stages"][1]["items"] == 512
    assert {a["device"] for a in rep["alternatives"]} == {"cpu", "cuda"}
    assert {p["system"] for p in rep["paper_loads_p95_ms"]} >= {"paper: 2-stage small->large"}
    tg = rep["targets"]
    assert tg["qps"]["value"] == rows[1]["qps"]
    assert tg["latency_x_baseline"]["value"] == round(rows[3]["latency_us"] /
                                                      rows[1]["latency_us"], 2)
    assert tg["qps"]["met"] == (rows[1]["qps"] >= 6000)
    assert main(["perf", "--workload", "nope"]) == 2


def test_issue16_targets_met_and_missed():
    """The report's targets (`perf_report.targets`): each one met or not by its own rule,
    the p95 comparison only at loads the accelerator sustains."""
    from rpaccel.scripts.perf_report import targets

    def rep(lat_us, qps, p95):
        pipe = "2-stage small->large"
        gpu = {"device": "cuda", "mode": "cuda-graph", "dtype": "bf16", "pipeline": pipe,
               "qps_per_w": 50.0}
        pts = [{"qps": q, "p95_ms": p, "saturated": p is None} for q, p in p95]
        return {"rows": [{"design": "paper", "pipeline": pipe, "latency_us": lat_us,
                          "qps": qps},
                         {"design": "base", "pipeline": "1-stage large", "latency_us": 600.0,
                          "qps": 700.0}],
                "alternatives": [gpu],
                "load": [{"label": f"paper: {pipe}", "points": pts},
                         {"label": f"cuda cuda-graph bf16: {pipe}",
                          "points": [{"qps": 10, "p95_ms": 0.3}, {"qps": 100, "p95_ms": 0.4},
                                     {"qps": 1000, "p95_ms": 0.5}]}]}

    good = targets(rep(140.0, 6000.0, [(10, 0.15), (100, 0.2), (1000, None)]))
    assert all(v["met"] for v in good.values() if isinstance(v, dict)), good
    assert good["qps_per_w_x_gpu"]["value"] == round(6000 / 4.66 / 50, 2)
    bad = targets(rep(160.0, 4000.0, [(10, 0.15), (100, 0.45), (1000, 0.2)]))
    assert not bad["latency_us"]["met"] and not bad["qps"]["met"]
    assert bad["latency_x_baseline"]["value"] == 3.75 and not bad["latency_x_baseline"]["met"]
    assert not bad["qps_x_baseline"]["met"] and not bad["qps_per_w_x_gpu"]["met"]
    assert not bad["p95_below_gpu"]["met"]
    assert [w["qps"] for w in bad["p95_below_gpu"]["first_not_below"]] == [100]
    # on 8x8 the cycles beyond the MAC limit per added pair: ~1 with default's one-product
    # unit (one pair a cycle), within 0.25 with 4 products of 2 slots
    growth = good["pair_growth_8x8"]["units"]
    assert growth["default's unit: 1 product, 2 memories"] > 0.9, growth
    assert growth["4 products x 2 slots, 4 memories"] <= 0.25, growth
    assert good["pair_growth_8x8"]["value"] == min(growth.values())


def test_pair_growth_against_the_mac_limit():
    """`perf_report.pair_growth`: the MAC limit is the MLPs' MACs over the 64 PEs (RM-small
    of 2 / 8 / 26 tables: 13x64 + 64x4 + (4 + pairs)x64 + 64), and cycles per item are
    above it."""
    from rpaccel.scripts.perf_report import pair_growth

    g = pair_growth(units=(("one", 1, 1, 2),))
    u = g["units"][0]
    assert u["mac_limit"] == [(13 * 64 + 64 * 4 + (4 + p) * 64 + 64) / 64 for p in (3, 36, 351)]
    assert all(c > m for c, m in zip(u["cycles_per_item"], u["mac_limit"], strict=True))


@pytest.mark.slow
def test_ml1000_quality_table_queries_on_verilator(tmp_path, models_dir, ml):
    """``ml1000`` answers the quality table's 1,000-candidate MovieLens queries bit-exact on
    Verilator (16 sub-batches through stage 0), with the error status clean, and the model
    predicts them within 5%."""
    case = CalCase("ml1000", "ml", "small:32,large:10", queries=2, candidates=1000)
    acc, batches = case_accelerator(case, models_dir, ml)
    assert [b.size for b in batches] == [1000, 1000]
    pred = perf.predict(acc, batches, alone=False)
    sim_run, (tests, failed) = acc.simulate(batches, workdir=tmp_path, load="stream")
    assert (tests, failed) == (1, 0) and sim_run.mismatches == 0 and sim_run.status_ok
    for r in compare(case.name, case.config, pred, sim_run):
        assert abs(r["error"]) <= TOLERANCE, r


def test_config_tradeoffs_name_each_field_and_its_cycles():
    """`rpaccel bench fit`: every field in which fpga-ecp5 differs from default, alone; a
    narrower bag requantizer costs cycles, a shallower buffer costs none, and the last row
    is fpga-ecp5 itself."""
    from rpaccel.scripts.perf_report import config_tradeoffs

    case = next(c for c in CALIBRATION if c.config == "fpga-ecp5" and c.kind == "criteo")
    rep = config_tradeoffs("fpga-ecp5", "default", cases=[case], log=lambda s: None)
    cfg, ref = get_config("fpga-ecp5"), get_config("default")
    assert set(rep["fields"]) == {f for f in cfg.to_dict()
                                  if f != "name" and getattr(cfg, f) != getattr(ref, f)}
    rows = {r["change"]: r["cases"][case.name] for r in rep["rows"]}
    assert rows["default"]["latency_change_pct"] == 0
    assert rows["emb_requant_lanes=4"]["latency"] > rows["default"]["latency"]
    assert rows["param_rows=64"]["cycles_per_query"] == rows["default"]["cycles_per_query"]
    acc, batches = case_accelerator(case)
    pred = perf.predict(acc, batches, alone=False)
    assert rows["fpga-ecp5"]["latency"] == pred.queries[0].latency


def test_interaction_growth_per_pair_on_an_8x8_build():
    """Issue 16's 8x8 target by the engine's cycle model (exact against the engine on
    Verilator): an RM-small-shaped stage's cycles per item beyond its MAC limit grow by at
    most 0.25 per added `dot` pair from 2 to 8 tables with 4 products x 2 slots and 4
    register-file memories; about one per pair with one product."""
    from rpaccel.golden.data import criteo_synthetic
    from rpaccel.golden.quantize import quantize_model
    from rpaccel.golden.zoo import ModelSize, random_model
    from rpaccel.interface import EngineGeometry
    from rpaccel.program import compile_stage

    base = CFG.replace(name="one-stage", partitions=1, stages=1, max_pairs=512,
                       emb_tables=26, max_width=512)

    def beyond(cfg, tables, n=64):
        rows = [100] * tables
        m = quantize_model(random_model(ModelSize("s", 4, (64,), (64,)), 13, rows, "dot",
                                        seed=1), criteo_synthetic(200, rows, seed=2))
        steps = compile_stage(cfg, slot_width(cfg, 0), 0, m).steps
        eng = perf.EngineTiming(cfg.array_rows, cfg.array_cols, cfg.inter_pairs,
                                EngineGeometry(cfg).lanes, cfg.inter_slots, cfg.inter_banks)
        f = tables + 1
        macs = 13 * 64 + 64 * 4 + (4 + f * (f - 1) // 2) * 64 + 64
        return eng.run(steps, n)["cycles"] / n - macs / 64, f * (f - 1) // 2

    for cfg, lo, hi in ((base, 0.9, 1.1),
                        (base.replace(inter_pairs=4, inter_slots=2, inter_banks=4), 0, 0.25)):
        (o2, p2), (o8, p8) = beyond(cfg, 2), beyond(cfg, 8)
        assert lo <= (o8 - o2) / (p8 - p2) <= hi, (cfg.inter_pairs, o2, o8)
