import json

import numpy as np
import pytest

from rpaccel.golden.data import criteo_synthetic
from rpaccel.golden.model import load_batch, save_batch, save_model
from rpaccel.golden.quantize import load_quantized
from rpaccel.golden.zoo import random_model
from rpaccel.scripts.cli import main

ROWS = [100] * 26


@pytest.fixture
def files(tmp_path):
    model = random_model("small", 13, ROWS, seed=1)
    save_model(tmp_path / "m.npz", model)
    save_batch(tmp_path / "x.npz", criteo_synthetic(40, ROWS, seed=2, bag_size=2))
    save_batch(tmp_path / "calib.npz", criteo_synthetic(400, ROWS, seed=3))
    return tmp_path, model


def test_score_float_and_int8(files):
    d, model = files
    assert main(["score", "--model", str(d / "m.npz"), "--batch", str(d / "x.npz"),
                 "--out", str(d / "s.npy")]) == 0
    s = np.load(d / "s.npy")
    assert s.dtype == np.float32
    np.testing.assert_array_equal(s, model.forward(load_batch(d / "x.npz")))
    assert main(["quantize", "--model", str(d / "m.npz"), "--calib", str(d / "calib.npz"),
                 "--out", str(d / "q.npz")]) == 0
    assert main(["score", "--model", str(d / "q.npz"), "--batch", str(d / "x.npz"), "--int8",
                 "--out", str(d / "si.npy")]) == 0
    si = np.load(d / "si.npy")
    assert si.dtype == np.int32
    assert si.tolist() == load_quantized(d / "q.npz").forward(load_batch(d / "x.npz")).tolist()


def test_score_bad_batch_is_a_clear_error(files, capsys):
    d, _ = files
    b = load_batch(d / "x.npz")
    b.indices[3][0] = 100
    save_batch(d / "bad.npz", b)
    assert main(["score", "--model", str(d / "m.npz"), "--batch", str(d / "bad.npz"),
                 "--out", str(d / "s.npy")]) == 2
    assert "indices_3 must be in [0, 100), found 100" in capsys.readouterr().err
    assert not (d / "s.npy").exists()


def test_score_int8_needs_quantized_model(files, capsys):
    d, _ = files
    assert main(["score", "--model", str(d / "m.npz"), "--batch", str(d / "x.npz"), "--int8",
                 "--out", str(d / "s.npy")]) == 2
    assert "holds no int8 parameters" in capsys.readouterr().err


def test_generate_writes_verilog_and_config(tmp_path):
    assert main(["generate", "--config", "default", "--block", "requant",
                 "--out", str(tmp_path)]) == 0
    assert "module requant" in (tmp_path / "requant.v").read_text()
    assert '"requant_lanes": 4' in (tmp_path / "config.json").read_text()


def test_generate_top_level_with_fusesoc_core_and_csr_map(tmp_path):
    """The default block is the whole accelerator: Verilog, config, a FuseSoC CAPI2 core
    naming the Verilog and the top module, the CSR map and its C header."""
    import json

    assert main(["generate", "--config", "baseline", "--out", str(tmp_path)]) == 0
    assert "module rpaccel(" in (tmp_path / "rpaccel.v").read_text()
    core = (tmp_path / "rpaccel.core").read_text()
    assert core.startswith("CAPI=2:")
    assert "name: rpaccel:kit:rpaccel_baseline:0.1.0" in core
    assert "- rpaccel.v" in core and "toplevel: rpaccel" in core
    csr = json.loads((tmp_path / "csr.json").read_text())
    assert csr["ID"] == {"addr": 0, "access": "ro"}
    assert csr["S0_K"] == {"addr": 0x40, "access": "rw"}
    assert json.loads((tmp_path / "config.json").read_text())["stages"] == 1
    header = (tmp_path / "rpaccel.h").read_text()
    assert "#define RPACCEL_CSR_LOAD_CTRL 0x030u" in header
    assert "#define RPACCEL_STAGES 1u" in header
    assert "RPACCEL_LOAD_ENGINE0_BEAT_BITS" in header and "RPACCEL_ERR_LOAD_BUS 5u" in header


def test_generate_unknown_config_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "--config", "nope", "--out", str(out)]) == 2
    assert "config must be one of" in capsys.readouterr().err
    assert not out.exists()


def test_verify_cli_runs_a_block_testbench(capsys):
    import json

    assert main(["verify", "--block", "requant", "--beats", "200", "--seed", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert (res["tests"], res["failures"], res["beats"]) == (2, 0, 200)


@pytest.mark.slow  # CI: tests/test_topk.py runs the units at full rate on Verilator
def test_bench_topk_reports_full_rate(tmp_path, capsys):
    import json

    out = tmp_path / "topk.json"
    assert main(["bench", "topk", "--lanes", "2", "--k", "4", "--long-n", "64", "--no-synth",
                 "--out", str(out)]) == 0
    queue, heap = json.loads(out.read_text())["rows"]
    assert (queue["impl"], heap["impl"]) == ("queue", "heap")
    for row in (queue, heap):
        assert row["items_per_cycle"] == 2.0 and row["stall_free"]
    assert queue["last_to_final_output_cycles"] == 5  # k + 1
    # 2 x k pops (one every other cycle), k merged, log2 levels, 9 of hand-over
    assert heap["last_to_final_output_cycles"] == 2 * 4 + 4 + 3 + 9


def test_bench_rejects_unknown_benchmark(capsys):
    assert main(["bench", "nope"]) == 2
    assert ("WHAT must be 'array', 'topk', 'cache', 'top', 'perf' or 'fit', not 'nope'"
            in capsys.readouterr().err)


def test_bench_array_rejects_unknown_array(capsys):
    assert main(["bench", "array", "--arrays", "default,huge"]) == 2
    assert "array must be one of ['16x16', 'default'], not 'huge'" in capsys.readouterr().err


def test_board_run_needs_a_port():
    with pytest.raises(SystemExit, match="--port must name the board's serial port"):
        main(["board", "run"])


def test_fpga_estimate_reports_blocks_and_fits(capsys):
    assert main(["fpga", "estimate", "--config", "fpga-ecp5", "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["lut"] == sum(b["lut"] for b in est["blocks"].values()) > 0
    assert set(est["fits"]) == {"ecp5-25f", "ecp5-45f", "ecp5-85f"}
    assert main(["fpga", "estimate", "--config", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_bench_top_iso_quality_is_a_paired_test(models_dir):
    """`bench top`'s quality check: the reference against itself is equal with a zero
    difference; a first stage keeping only 10 (the large model cannot recover what it
    dropped) is lower by more than its paired standard error; every pipeline is scored on
    the same queries."""
    from rpaccel.scripts.commands.bench import iso_quality

    iso = iso_quality(models_dir, ["large:10", "small:10,large:10", "small:32,large:10"],
                      "large:10", users=range(80))
    assert iso["large:10"]["diff"] == 0 and iso["large:10"]["equal"], iso
    worse = iso["small:10,large:10"]
    assert worse["diff"] < -worse["se"] and not worse["equal"], iso
    assert len({v["queries"] for v in iso.values()}) == 1, iso
