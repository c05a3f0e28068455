"""Design-space exploration (`rpaccel.dse`) and the area model (`rpaccel.area`): the RAM
inventory equals the elaborated design's, the GF12 fit reproduces its anchors, the cascaded
quality equals the golden pipeline's, Pareto fronts are the non-dominated sets, and a sweep
resumes from its cache."""

import json

import numpy as np
import pytest

from rpaccel import dse
from rpaccel.area import GF12, asic_area, elaborated_memories, memories
from rpaccel.config import get_config
from rpaccel.golden.pipeline import evaluate, parse_pipeline
from rpaccel.hw.top import RPAccel


def _elaborated_memories(cfg):
    return {m[0]: (m[1], m[2]) for m in elaborated_memories(RPAccel(cfg))}


@pytest.mark.parametrize("cfg", [get_config("shared-engines"),
                                 get_config("three-stage").replace(
                                     name="heap3", topk_impl="heap", topk_k=16, sub_batch=32,
                                     static_rows=64, cache_sets=32),
                                 get_config("wide-lookup"),
                                 get_config("default").replace(name="slots", inter_pairs=2,
                                                               inter_slots=2, inter_banks=4)],
                         ids=["shared-engines", "three-stage-heap", "wide-lookup", "slots"])
def test_memories_are_the_elaborated_designs(cfg):
    got = _elaborated_memories(cfg)
    mine = {m[0]: (m[1], m[2]) for m in memories(cfg)}
    for name, shape in mine.items():
        assert got.get(name) == shape, f"{name}: expected {got.get(name)}, model {shape}"
    # what the inventory leaves out: the small FIFOs of the embedding units and controllers
    left = {k: v for k, v in got.items() if k not in mine}
    assert all(k.endswith("/storage") for k in left), sorted(left)
    assert sum(d * w for d, w in left.values()) < 1e-3 * sum(d * w for d, w in got.values())


def test_gf12_fit_reproduces_the_artifact_chips():
    pe, pe_r, mb = GF12["pe_um2"], GF12["pe_um2_reconfigurable"], GF12["sram_mm2_per_mb"]
    base = 128 * 128 * pe / 1e6 + 24 * mb
    rpaccel = 128 * 128 * pe_r / 1e6 + 24 * mb + 3 * GF12["slot_mm2"]
    assert base == pytest.approx(26.52, abs=1e-9) and rpaccel == pytest.approx(28.55, abs=1e-9)
    assert 32 * 32 * pe / 1e6 == pytest.approx(0.506891)
    # a design's area grows with its array and its RAMs
    small = asic_area(get_config("default"))
    big = asic_area(get_config("default").replace(array_rows=16, array_cols=16))
    more_sram = asic_area(get_config("default").replace(static_rows=4096))
    assert big["array_mm2"] == pytest.approx(4 * small["array_mm2"])
    assert more_sram["sram_mm2"] > small["sram_mm2"]
    assert more_sram["total_mm2"] == pytest.approx(
        more_sram["array_mm2"] + more_sram["sram_mm2"] + more_sram["logic_mm2"], abs=1e-3)


def test_cascaded_quality_is_the_golden_pipelines(qmodels, ml):
    users = list(range(0, 943, 47))
    table = dse.QualityTable(qmodels, ml, users=users)
    for spec in ((("small", 100), ("large", 10)), (("small", 300), ("medium", 50),
                                                   ("large", 10)), (("medium", 10),)):
        text = ",".join(f"{m}:{k}" for m, k in spec)
        ref = evaluate(parse_pipeline(text, qmodels), ml, table.queries, ranks=True)
        got = table.ranks(spec)
        assert np.array_equal(got, ref["ranks"]), f"{text}: expected {ref['ranks']}, got {got}"
        assert table.metrics(spec)["hr@10"] == ref["hr@10"]


def test_pareto_is_the_non_dominated_set():
    rng = np.random.default_rng(3)
    rows = [{"a": float(a), "b": float(b), "q": float(q)}
            for a, b, q in rng.integers(0, 6, (60, 3))]
    rows.append({"a": None, "b": 0.0, "q": 9.0})  # incomplete: never on the front
    keys = {"a": "min", "b": "min", "q": "max"}
    front = dse.pareto(rows, keys)

    def beats(x, y):
        ge = x["a"] <= y["a"] and x["b"] <= y["b"] and x["q"] >= y["q"]
        return ge and (x["a"] < y["a"] or x["b"] < y["b"] or x["q"] > y["q"])

    full = [r for r in rows if r["a"] is not None]
    expect = [r for r in full if not any(beats(o, r) for o in full)]
    assert sorted(map(str, front)) == sorted(map(str, expect))
    assert all(r["a"] is not None for r in front)


def test_sample_is_seeded_distinct_and_valid():
    a = dse.sample("recpipe-criteo", 40, seed=5)
    b = dse.sample("recpipe-criteo", 40, seed=5)
    c = dse.sample("recpipe-criteo", 40, seed=6)
    assert [p.key for p in a] == [p.key for p in b] != [p.key for p in c]
    assert len({p.key for p in a}) == 40
    for p in a:
        cfg = p.config()
        assert cfg.stages == len(p.pipeline) and cfg.partitions >= cfg.stages
        assert cfg.engine_count == (cfg.partitions if p.engine_map else cfg.stages)
    assert any(p.split == "unequal" for p in a) and any(p.split == "equal" for p in a)
    assert len(dse.sample("ml100k", 10**6, seed=0)) <= dse.space_size("ml100k")


def test_sweep_models_points_and_resumes(tmp_path, models_dir):
    cache = tmp_path / "ml.jsonl"
    kw = dict(points=3, seed=11, models_dir=models_dir, cache=cache, workers=1,
              log=lambda m: None, progress=False, quality_users=range(0, 943, 90))
    first = dse.sweep("ml100k", **kw)
    assert first["modelled_now"] == 3 and len(cache.read_text().splitlines()) == 3
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    for r in rows:
        if "infeasible" in r:
            continue
        assert r["latency_cycles"] > 0 and r["interval_cycles"] > 0
        # the static map fitted to MovieLens' rows (a power of two), not paper's 2**22
        m = r["config"]["emb_map_rows"]
        assert m & (m - 1) == 0 and r["config"]["static_rows"] <= m < 1 << 22
        for c in r["clocks"]:  # cycles are the clock's: time halves when the clock doubles
            assert c["latency_us"] == pytest.approx(r["latency_cycles"] / c["fclk_mhz"], 1e-3)
    again = dse.sweep("ml100k", **kw)
    assert again["modelled_now"] == 0 and len(cache.read_text().splitlines()) == 3
    assert again["designs"] == first["designs"]
    for d in first["designs"]:  # modelled ECP5 resources on every design row
        assert d["fpga_lut"] > 0 and d["fpga_dsp"] >= d["side"] ** 2
        assert d["fits_ecp5_85f"] == (d["fpga_lut"] <= 0.8 * 83640 and d["fpga_dsp"] <= 156
                                      and d["fpga_bram"] <= 208 and d["fpga_ff"] <= 83640)
    assert set(again["best_per_load"]) == {"iso_quality", "low", "medium", "high"}
    # a point cached by another model's sources is modelled again
    stale = [{**r, "model_digest": "0" * 12} if i == 0 else r for i, r in enumerate(rows)]
    cache.write_text("".join(json.dumps(r) + "\n" for r in stale))
    assert dse.sweep("ml100k", **kw)["modelled_now"] == 1
    with pytest.raises(ValueError, match="queries must be an integer of at least 2"):
        dse.sweep("ml100k", **{**kw, "queries": 1})


def test_tandem_queue_of_the_scheduler():
    accel = {"kind": "accel", "service_s": 1e-3, "latency_s": 2e-3}
    # far below saturation every query takes its latency; at or past the service rate: None
    assert dse._tandem([accel], 10.0) == pytest.approx(2.0, abs=0.05)
    assert dse._tandem([accel], 1000.0) is None
    # a batching server: b queries in 1 ms + 0.1 ms each, batches of up to 8
    gpu = {"kind": "gpu", "batch": (lambda b: 1e-3 + 1e-4 * b, 8)}
    low = dse._tandem([gpu], 5.0)
    assert low == pytest.approx(1.1, abs=0.05)
    # 3,000 QPS: one at a time cannot keep up (1.1 ms each), batches of 8 can (1.8 ms)
    assert dse._tandem([gpu], 3000.0) is not None and dse._tandem([gpu], 3000.0) > low
    assert dse._tandem([gpu], 3000.0, n=500) is not None
    assert dse._tandem([{"kind": "gpu", "batch": (lambda b: 1e-3 + 1e-4 * b, 1)}],
                       3000.0) is None
    # segments add up, with the hand-over between platforms
    both = dse._tandem([accel, gpu], 5.0)
    assert both == pytest.approx(2.0 + 1.1 + dse.TRANSFER_US / 1000, abs=0.06)


def test_fpga_figure_with_and_without_designs(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    row = {"p95_medium_ms": 1.5, "fclk_mhz": 50.0, "fpga_lut": 60000, "fits_ecp5_85f": True}
    rep = {"workload": "ml100k", "space": {"fclk_mhz": [50.0, 125.0]},
           "designs": [row, {**row, "fpga_lut": 2e5, "fits_ecp5_85f": False},
                       {**row, "fclk_mhz": 125.0}]}
    f = dse._fpga_plot(rep, tmp_path, plt)
    assert f.endswith("dse-ml100k-fpga.png") and (tmp_path / "dse-ml100k-fpga.png").stat().st_size
    # no design sustains the load at that clock: a figure that says so, not a crash
    none = {**rep, "designs": [{**d, "p95_medium_ms": None} for d in rep["designs"]]}
    (tmp_path / "dse-ml100k-fpga.png").unlink()
    dse._fpga_plot(none, tmp_path, plt)
    assert (tmp_path / "dse-ml100k-fpga.png").exists()
