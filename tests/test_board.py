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
