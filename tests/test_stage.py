"""One ranking stage end to end (`StageTop`) on Verilator: real MovieLens-100k queries
through gather (AXI RAM DRAM, caches), the MLP engine and the top-k unit."""

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.sim.stage_jobs import stage_query_job, write_stage_job

CFG = get_config("default")


@pytest.mark.slow  # the whole accelerator (tests/test_top.py) covers this path in CI
def test_verilator_stage_small_model_real_queries(tmp_path, qmodels, ml):
    """Two queries of 100 candidates (two sub-batches each) with the small model, k = 10:
    every survivor id and integer score equals golden, with idle gaps, backpressure and
    a stalling DRAM."""
    from rpaccel.hw.stage import StageTop
    from rpaccel.sim.runner import build, run

    rng = np.random.default_rng(0)
    users, items, _ = ml.training_samples(1, rng)
    pick = rng.choice(len(users), 400, replace=False)
    prof = ml.batch(users[pick], items[pick])
    queries = [ml.batch(np.full(100, u), cands[:100])
               for u, cands, _ in ml.queries(1000, seed=0, users=[3, 9])]
    job = stage_query_job(CFG, qmodels["small"], prof, queries, k=10)
    path = write_stage_job(tmp_path / "jobs.pkl", job)
    sb = build(StageTop, CFG, "stage")
    tests, failed = run(sb, "rpaccel.sim.tb_stage", tmp_path,
                        {"jobs": str(path), "idle": 0.2, "backpressure": 0.3,
                         "dram_stall": 0.2})
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-4000:]
