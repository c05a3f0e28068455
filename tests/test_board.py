"""The board top (`rpaccel.hw.board`): the whole fpga-ecp5 accelerator behind its UART
host link and block-RAM table memory, on Verilator, driven byte by byte over the line by
the same host code a real board gets (`rpaccel.board`)."""

import pickle

import pytest

from rpaccel.board import host_script
from rpaccel.config import get_config
from rpaccel.runtime import Accelerator
from rpaccel.sim.runner import build, run
from rpaccel.sim.tb_board import board_harness


@pytest.mark.slow  # ~400 kB over a simulated UART: make board, make test-all
def test_board_answers_real_queries_over_the_uart(models_dir, ml, tmp_path):
    """The model goes in over the UART (tables into the table memory, load beats, CSRs),
    then three real MovieLens queries: bit-exact against golden, the second with an
    out-of-range id (flagged; the third right)."""
    cfg = get_config("fpga-ecp5")
    acc = Accelerator.from_models(cfg, models_dir, pipeline=(("small", 16), ("medium", 10)),
                                  ml=ml)
    qs = acc.movielens_queries(ml, 3, seed=41, candidates=40)
    job = acc.job([b for b, _ in qs], {1: "id"})
    job["script"] = host_script(acc, job)
    path = tmp_path / "job.pkl"
    path.write_bytes(pickle.dumps(job))
    sb = build(board_harness, cfg, "board_top", public="top")
    tests, failed = run(sb, "rpaccel.sim.tb_board", tmp_path, {"jobs": str(path)})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]


@pytest.mark.slow  # ~5 min each: make test-all
@pytest.mark.parametrize("mapping", ["abc9", "abc"])
def test_board_bitstream_of_a_small_config(tmp_path, mapping):
    """The bitstream flow (amaranth-boards ULX3S-85F, YoWASP Yosys / nextpnr / ecppack) on
    a small one-stage 4x4 build, with Yosys' ABC9 and with the classic LUT mapper (the
    fallback where ABC9 trips): a bitstream, nextpnr's fmax above the board's 25 MHz, the
    worst path named; a second call returns the cached build."""
    from rpaccel.scripts.commands.board import build_bitstream

    cfg = get_config("default").replace(
        name="tiny", array_rows=4, array_cols=4, partitions=1, stages=1, topk_k=4,
        topk_lanes=1, max_items=16, sub_batch=8, max_width=16, weight_rows=256, param_rows=16,
        emb_tables=2, emb_dim=4, emb_map_rows=64, static_rows=8, cache_sets=2, cache_ways=1,
        line_bytes=8, mshrs=1, cand_beats=4, max_pairs=4, max_steps=8, requant_lanes=1)
    res = build_bitstream(cfg, tmp_path, table_words=256, lut_mapping=mapping)
    assert res["cached"] is False and res["bytes"] > 100_000 and res["lut_mapping"] == mapping
    assert res["fmax_mhz"] > 25 and res["critical_path"]["to"].startswith("board.")
    assert build_bitstream(cfg, tmp_path, table_words=256,
                           lut_mapping=mapping)["cached"] is True
    with pytest.raises(ValueError, match="lut_mapping must be one of"):
        build_bitstream(cfg, tmp_path, lut_mapping="vpr")


def test_host_script_refuses_tables_larger_than_the_table_memory(models_dir, ml):
    """The small and medium models' tables (94,208 bytes, aligned) fit the board's 12,288
    words; a board built with fewer words is refused before a byte is sent, naming the
    sizes."""
    cfg = get_config("fpga-ecp5")
    acc = Accelerator.from_models(cfg, models_dir, pipeline=(("small", 16), ("medium", 10)),
                                  ml=ml)
    job = acc.job([b for b, _ in acc.movielens_queries(ml, 1, seed=41, candidates=20)])
    assert host_script(acc, job)
    with pytest.raises(ValueError, match=r"table_words: the embedding tables \(94,208 bytes\) "
                                         r"must fit the board's table memory \(11,775 words"):
        host_script(acc, job, table_words=11775)
