"""The FPGA resource model (`rpaccel.fpga`): its instances follow the configuration, the
block RAM count follows the DP16KD shapes, the committed coefficients are the fit of the
committed Yosys runs, and the model reproduces the whole-accelerator run it was
calibrated on."""

import json
import math
from pathlib import Path

import pytest

from rpaccel import fpga
from rpaccel.area import memories
from rpaccel.config import RPAccelConfig, get_config

REPORT = Path(__file__).parent.parent / "docs" / "reports" / "fpga-calibration.json"


def _report():
    return json.loads(REPORT.read_text())


def _close(a, b) -> bool:
    """``a`` equals ``b`` with every number within one unit of the fourth significant
    digit (the coefficients' rounding) or 1e-4 (the errors' rounding): the least-squares
    fit's last bits follow the machine's BLAS, and a value on a rounding boundary may
    round either way (190.05 -> 190.0 or 190.1, a model count 1 LUT apart)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k])
                                                                    for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(_close, a, b))
    if isinstance(a, int | float) and isinstance(b, int | float) and \
            not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1.001e-3, abs_tol=1.001e-4)
    return a == b


def test_instances_follow_the_configuration():
    cfg = get_config("wide-lookup").replace(stages=2, partitions=2, engines=2, emb_units=2)
    inst = fpga.instances(cfg)
    assert sorted(inst["engine"]) == ["engine0", "engine1"]
    assert sorted(inst["emb_unit"]) == ["embedding0.unit0", "embedding0.unit1",
                                        "embedding1.unit0", "embedding1.unit1"]
    assert inst["mesh"]["mesh"]["pe"] == cfg.array_rows * cfg.array_cols
    # the top level builds every engine one partition wide; alone, engine 0 spans the array
    assert [e["cols"] for e in inst["engine"].values()] == [cfg.array_cols // 2] * 2
    slot = fpga.instances(cfg, engine_cols="slot")["engine"]
    assert [slot[e]["cols"] for e in ("engine0", "engine1")] == [cfg.array_cols,
                                                               cfg.array_cols // 2]
    with pytest.raises(ValueError, match="engine_cols must be 'top' or 'slot', not 'x'"):
        fpga.instances(cfg, engine_cols="x")
    assert inst["cluster"]["cluster1"] == {"units": 2}
    assert fpga.instances(cfg.replace(emb_units=1))["cluster"]["cluster0"] == {"units": 0}
    heap = fpga.instances(cfg.replace(topk_impl="heap", topk_k=64))["topk"]["topk0"]
    assert heap == {"q": 0, "q_lane_cells": 0, "h_lane_levels": cfg.topk_lanes * 6}


@pytest.mark.parametrize("name, units, want", [
    ("compute.engine1", 1, ("engine", "engine1")),
    ("compute.mesh.tile_0_1", 1, ("mesh", "mesh")),
    ("embedding1", 1, ("emb_unit", "embedding1.unit0")),
    ("embedding1.requant", 1, ("emb_unit", "embedding1.unit0")),
    ("embedding0.unit1", 2, ("emb_unit", "embedding0.unit1")),
    ("embedding0.arbiter", 2, ("cluster", "cluster0")),
    ("controller1.started", 1, ("stage", "stage1")),
    ("topk0", 1, ("topk", "topk0")),
    ("csr", 1, ("top", "top")),
    ("(glue)", 1, ("top", "top")),
])
def test_sub_blocks_map_to_model_blocks(name, units, want):
    assert fpga.block_of(name, units) == want


def test_block_rams_follow_the_dp16kd_shapes():
    cfg = get_config("fpga-ecp5")
    mems = {m[0]: m for m in memories(cfg)}
    # 4096 rows of one partition's 4 columns, 32 bits: 4096 x 4 shapes, 8 blocks
    w = mems["compute/engine0/w_mem"]
    assert (w[1], w[2]) == (4096, 32)
    one = get_config("fpga-ecp5").replace(stages=1)
    # the RAMs deeper than 64 words of a one-stage design: act 3072 x 64 (1024 x 18:
    # 12), w 4096 x 32 (8), cbuf/clen none (one stage), map 8192 x 8 (8192 x 2: 4),
    # static 128 x 128 (512 x 36: 4)
    b = fpga.brams(one, min_depth=65)
    assert b["by_block"] == {"compute": 12 + 8, "embedding0": 4 + 4}
    # as wide as its slot (the whole array, as ComputeEngine alone builds it): 16 blocks
    slot = fpga.brams(one, min_depth=65, engine_cols="slot")["by_block"]
    assert slot["compute"] == 12 + 16
    # shallower RAMs join as the threshold falls; none is left above every depth
    assert fpga.brams(one, min_depth=1)["total"] > b["total"]
    assert fpga.brams(one, min_depth=1 << 20)["total"] == 0
    # a second stage's engine adds its buffers' blocks
    two = fpga.brams(cfg, min_depth=65)["by_block"]
    assert two["compute"] > b["by_block"]["compute"] and "cbuf" in two


def test_committed_coefficients_are_the_fit_of_the_committed_runs():
    rep = _report()
    assert fpga.coefficients() == rep["coefficients"]
    fitted = fpga._coefficients(rep["runs"])
    assert _close(fitted, rep["coefficients"]), (fitted, rep["coefficients"])


def test_calibration_report_is_what_its_runs_give(monkeypatch):
    """`calibrate` on the committed runs (Yosys replaced by them) gives the committed
    report: fit, per-run errors and the leave-one-out rows with their extrapolation
    flags."""
    rep = _report()
    by = {(r["block"], r["config_digest"]): r for r in rep["runs"]}
    runs = [(r["block"], RPAccelConfig(**r["config"])) for r in rep["runs"]]

    def fake_map(fn, tasks, *a, **k):
        return [by[(b, RPAccelConfig(**c).digest())] for b, c, *_ in tasks], 1

    monkeypatch.setattr("rpaccel.sim.regress.map_tasks", fake_map)
    got = fpga.calibrate(runs, log=lambda m: None)
    for k in ("coefficients", "fitted", "fit_error", "leave_one_out", "error"):
        assert _close(got[k], rep[k]), (k, got[k], rep[k])
    # the one whole-accelerator run is the only one of the stage and top logic
    whole = next(x for x in got["leave_one_out"] if x["block"] == "rpaccel")
    assert {"stage", "top"} <= set(whole["extrapolated"])
    # without it the model would count that logic as nothing: refused
    with pytest.raises(RuntimeError, match="unmeasured"):
        fpga.calibrate([r for r in runs if r[0] != "rpaccel"], log=lambda m: None)


def test_model_reproduces_its_whole_accelerator_run():
    rep = _report()
    whole = next(r for r in rep["runs"] if r["block"] == "rpaccel")
    assert whole["name"] == "fpga-ecp5"
    assert whole["config_digest"] == fpga.CALIBRATED_FPGA_ECP5.digest()
    # that run's RTL built engine 0 as wide as its slot (8 columns), as "slot" counts it
    est = fpga.estimate(fpga.CALIBRATED_FPGA_ECP5, engine_cols="slot")
    for k in ("lut", "ff", "dsp"):
        assert est[k] == pytest.approx(whole["total"][k], rel=0.15), (k, est[k], whole["total"])
    # about 80% of an ECP5-85F's LUTs: the design that placed but did not route there
    assert 0.7 < est["lut"] / fpga.DEVICES["ecp5-85f"]["lut"] < 0.9
    assert not est["fits"]["ecp5-85f"]
    assert not est["fits"]["ecp5-45f"] and not est["fits"]["ecp5-25f"]
    # today's fpga-ecp5 (a one-bank queue top-k) leaves the headroom
    now = fpga.estimate(get_config("fpga-ecp5"))
    assert now["lut"] < est["lut"] and now["fits"]["ecp5-85f"]
    # a block that grows grows the estimate: four times the array's PEs
    big = fpga.estimate(fpga.CALIBRATED_FPGA_ECP5.replace(array_rows=16, array_cols=16,
                                                          requant_lanes=16))
    assert big["blocks"]["mesh"]["dsp"] == pytest.approx(4 * est["blocks"]["mesh"]["dsp"],
                                                         abs=2)
    assert big["lut"] > est["lut"]


def test_fits_names_the_device_limits():
    ok = {"lut": 60000, "ff": 30000, "dsp": 100, "bram": 100}
    assert fpga.fits(ok, "ecp5-85f") and not fpga.fits(ok, "ecp5-45f")
    assert not fpga.fits({**ok, "lut": 70000}, "ecp5-85f")  # 84% of the LUTs: no headroom
    assert fpga.fits({**ok, "lut": 70000}, "ecp5-85f", headroom=0.1)
    assert not fpga.fits({**ok, "bram": 209}, "ecp5-85f")
