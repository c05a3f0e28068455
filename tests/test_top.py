"""The RPAccel top level end to end on Verilator: real MovieLens-100k queries through the
generated Verilog (CSRs over AXI4-Lite, query / result streams, DRAM over AXI4) against
the golden int8 pipeline, bit for bit."""

import numpy as np
import pytest

from rpaccel.config import get_config
from rpaccel.runtime import Accelerator, AccelError, parse_stages


@pytest.fixture(scope="module")
def default_acc(models_dir, qmodels, ml):
    return Accelerator.from_models(get_config("default"), models_dir, ml=ml)


def test_runtime_refuses_bad_input(default_acc, qmodels, ml):
    cfg = get_config("default")
    with pytest.raises(AccelError, match="number of stage models must be config.stages"):
        Accelerator(cfg, [(qmodels["large"], 10)])
    with pytest.raises(AccelError, match=r"k of stage 0 must be from 1 to topk_k \(16\)"):
        Accelerator(cfg, [(qmodels["small"], 17), (qmodels["large"], 10)])
    with pytest.raises(AccelError, match="candidates of a query must be from 1 to max_items"):
        default_acc.query_beats(ml.batch(np.zeros(200, int), np.arange(200)))
    with pytest.raises(AccelError, match="a stage must be written MODEL:K"):
        parse_stages("small:16,large")


def test_golden_answers_are_the_pipelines(default_acc, ml):
    """The runtime's expectation is the golden pipeline's answer, k of the last stage."""
    (batch, _), = default_acc.movielens_queries(ml, 1, seed=3)
    ans = default_acc.golden(batch)
    assert len(ans) == 10
    assert [s for _, s in ans] == sorted((s for _, s in ans), reverse=True)


def test_verilator_default_real_queries(default_acc, ml, tmp_path):
    """Four real queries (100 candidates: small keeps 16, large keeps 10) back to back,
    the second with an out-of-range id: its answer is flagged and the status names the
    id; all others are bit-exact, with idle gaps, result backpressure and a stalling DRAM,
    after a reset in the middle of a query."""
    qs = default_acc.movielens_queries(ml, 4, seed=5)
    run, (tests, failed) = default_acc.simulate(
        [b for b, _ in qs], workdir=tmp_path, idle=0.2, backpressure=0.3, dram_stall=0.2,
        bad=[1], reset_mid=True, check=True)
    assert (tests, failed) == (1, 0), (tmp_path / "sim.log").read_text()[-5000:]
    assert run.errors == [False, True, False, False]
    assert run.counters["queries"] == 4
    assert run.counters["s0_items"] == sum(b.size for b, _ in qs)
    assert run.counters["s1_items"] == 4 * 16
