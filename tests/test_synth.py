import re

import pytest

from rpaccel.config import get_config
from rpaccel.scripts.synth import synthesize


@pytest.mark.parametrize("router,placer", [("router1", "heap"), ("router2", "static")])
def test_ecp5_flow_reports_resources(tmp_path, router, placer):
    cfg = get_config("fpga-ecp5").replace(requant_lanes=1)
    res = synthesize("requant", cfg, "ecp5-85f", out_dir=tmp_path, freq_mhz=100,
                     router=router, placer=placer)
    assert res["router"] == router and res["placer"] == placer
    assert res["dsp"] >= 1  # the 33x16 multiplier maps to MULT18X18D
    assert res["lut"] > 50 and res["ff"] > res["harness_ff"]
    assert 10 < res["fmax_mhz"] < 500
    # the worst path is named by design signals, its delay the inverse of fmax
    cp = res["critical_path"]
    assert cp["from"].startswith("dut.") and cp["to"].startswith("dut.")
    assert "TRELLIS" not in cp["to"] and all(n.startswith("dut.") for n in cp["through"])
    assert abs(1000 / cp["delay_ns"] - res["fmax_mhz"]) < 0.02 * res["fmax_mhz"]
    assert abs(cp["logic_ns"] + cp["routing_ns"] - cp["delay_ns"]) < 0.05
    # the clock is pinned to a PCLK pin by the flow's LPF; the other pins are free
    log = (tmp_path / "nextpnr.log").read_text()
    assert ("system potential" in log) == (placer == "static")  # the electrostatic placer
    assert "IO 'rst' is unconstrained" in log and "IO 'clk' is unconstrained" not in log
    # the block's reset reaches its flip-flops over a global network, through the DCCA
    assert re.search(r"routing clock net core_rst using global \d+", log)


def test_synth_rejects_unknown_target_router_and_placer():
    with pytest.raises(ValueError, match="target must be one of"):
        synthesize("requant", get_config("default"), "xc7a35t")
    with pytest.raises(ValueError, match="router must be 'router1' or 'router2', not 'r3'"):
        synthesize("requant", get_config("default"), router="r3")
    with pytest.raises(ValueError, match="placer must be 'heap' or 'static', not 'sa'"):
        synthesize("requant", get_config("default"), placer="sa")
    # the board's bitstream flow takes the same placers and routers, checked first
    from rpaccel.scripts.commands.board import build_bitstream

    with pytest.raises(ValueError, match="placer must be 'heap' or 'static', not 'sa'"):
        build_bitstream(get_config("default"), placer="sa")


def test_estimate_only_above_the_placement_cap(tmp_path):
    cfg = get_config("fpga-ecp5").replace(requant_lanes=1)
    res = synthesize("requant", cfg, "ecp5-85f", out_dir=tmp_path, max_place_luts=1)
    assert res["placed"] is False and res["fits"] is True
    assert res["lut"] > 50 and res["dsp"] >= 1 and res["fmax_mhz"] is None
    # the same run again comes from the cache; another config digest or --force runs
    again = synthesize("requant", cfg, "ecp5-85f", out_dir=tmp_path, max_place_luts=1)
    assert again["cached"] is True and again["lut"] == res["lut"] and "cached" not in res
    assert again["key"]["config_digest"] == cfg.digest() and again["tools"]["amaranth"]
    other = cfg.replace(mult_bits=8)
    assert "cached" not in synthesize("requant", other, "ecp5-85f", out_dir=tmp_path,
                                      max_place_luts=1)
    assert "cached" not in synthesize("requant", cfg, "ecp5-85f", out_dir=tmp_path,
                                      max_place_luts=1, force=True)


def test_placed_figures_from_a_log_stopped_while_routing():
    """A run stopped in the router (timeout) still reports what placement measured."""
    from rpaccel.scripts.synth import placed_from_log

    log = """Info: Device utilisation:
Info: 	              DP16KD:      16/    208     7%
Info: 	          MULT18X18D:       0/    156     0%
Info: 	          TRELLIS_FF:   15641/  83640    18%
Info: 	        TRELLIS_COMB:   49292/  83640    58%
Info: Max frequency for clock '$glbnet$clk$TRELLIS_IO_IN': 32.25 MHz (FAIL at 200.00 MHz)
Info: Routing..
Info:     iter=1 wires=553148 overused=44261 overuse=51509 archfail=NA
"""
    assert placed_from_log(log) == {"lut": 49292, "ff": 15641, "dsp": 0, "bram": 16,
                                    "fmax_mhz": None, "fmax_placed_estimate_mhz": 32.25}
    assert placed_from_log(log.split("Info: Max")[0]) is None  # placement unfinished


def test_group_by_block_sums_each_subtree():
    from rpaccel.scripts.synth import group_by_block

    mods = {"\\top": {"LUT4": 1}, "\\top.dut": {"LUT4": 2, "TRELLIS_FF": 3},
            "\\top.dut.a": {"LUT4": 10, "CCU2C": 2}, "\\top.dut.a.x": {"LUT4": 5},
            "\\top.dut.b": {"MULT18X18D": 1, "DP16KD": 2, "LUT4": 20, "TRELLIS_DPR16X4": 4}}
    got = group_by_block(mods, depth=1)
    assert list(got) == ["b", "a", "(glue)"]  # largest first; the harness is not counted
    assert got["a"] == {"lut": 19, "ff": 0, "dsp": 0, "bram": 0, "lutram": 0}
    assert got["b"] == {"lut": 20, "ff": 0, "dsp": 1, "bram": 2, "lutram": 4}
    assert got["(glue)"] == {"lut": 2, "ff": 3, "dsp": 0, "bram": 0, "lutram": 0}


def test_breakdown_of_a_mesh_adds_up(tmp_path):
    """Yosys with the hierarchy kept: the mesh's tiles each hold their PEs' multipliers,
    and the per-tile figures add up to the whole."""
    from rpaccel.scripts.synth import breakdown

    cfg = get_config("default").replace(array_rows=2, array_cols=2, block=1)
    res = breakdown("mesh", cfg, out_dir=tmp_path, depth=1)
    tiles = {k: v for k, v in res["blocks"].items() if k.startswith("tile_")}
    assert len(tiles) == 4 and all(v["dsp"] == 1 for v in tiles.values()), res["blocks"]
    for key in ("lut", "ff", "dsp", "bram", "lutram"):
        assert sum(v[key] for v in res["blocks"].values()) == res["total"][key], (key, res)
    assert (tmp_path / "breakdown.json").exists()
